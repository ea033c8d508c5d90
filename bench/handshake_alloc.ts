/**
 * Bytes of JavaScript heap a server allocates per WebSocket handshake, as V8
 * counts them (`--trace-gc-nvp`: each collection reports what was allocated
 * since the one before). Garbage included: what a burst of handshakes
 * allocates is what makes V8 touch (and keep) young-generation pages, which
 * is most of the idle-memory gap to deno_limit (bench/RESULTS.md, change 18).
 *
 *   deno run -A bench/handshake_alloc.ts [--rounds 3] [--small 2000] [--large 10000] \
 *     new='deno run -A bench/echo_server.ts {PORT}' \
 *     limit='deno run -A ../shared/wsbench/servers/deno_limit.ts {PORT}'
 *
 * Each server (a Deno command; `{PORT}` is replaced) is started fresh under
 * `DENO_V8_FLAGS=--trace-gc-nvp` with a 1 MiB young generation (so a
 * collection runs every ~1 MiB and at most that much goes uncounted at the
 * end), then `loadgen idle` opens `--small` connections in one process and
 * `--large` in another, and the server is killed once they are all open
 * (before any closing handshake); the difference of the totals over the difference of
 * the counts is the figure, free of start-up allocation. Servers alternate
 * within each round; the median of the rounds is printed. Bounded: each
 * process lives a few seconds (loadgen's setup timeout is 60 s).
 *
 * @module
 */

const LOADGEN = `${
  Deno.env.get("WSBENCH_BUILD") ?? `${Deno.env.get("HOME")}/.cache/tsunagu-wsbench`
}/bin/loadgen`;
const V8_FLAGS = [
  "--trace-gc-nvp",
  "--min-semi-space-size=1",
  "--max-semi-space-size=1",
  "--semi-space-growth-factor=1",
].join(",");

let rounds = 3;
let small = 2000;
let large = 10000;
const servers: [string, string][] = [];
const args = [...Deno.args];
while (args.length > 0) {
  const arg = args.shift()!;
  if (arg === "--rounds") rounds = Number(args.shift());
  else if (arg === "--small") small = Number(args.shift());
  else if (arg === "--large") large = Number(args.shift());
  else {
    const eq = arg.indexOf("=");
    if (eq <= 0) throw new Error(`expected name='command {PORT}', got ${arg}`);
    servers.push([arg.slice(0, eq), arg.slice(eq + 1)]);
  }
}
if (servers.length === 0) throw new Error("no servers given");

let nextPort = 19300;

/** Total bytes V8 reported allocated while `n` connections were opened to a fresh server. */
async function allocatedFor(command: string, n: number): Promise<number> {
  const port = nextPort++;
  const argv = command.replaceAll("{PORT}", String(port)).split(/\s+/);
  const server = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: { DENO_V8_FLAGS: V8_FLAGS },
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const output = server.output();
  const load = new Deno.Command(LOADGEN, {
    args: ["idle", "-p", String(port), "-n", String(n), "-H", "5", "--json-only"],
    stdout: "null",
    stderr: "null",
  });
  let loadgen: Deno.ChildProcess | null = null;
  try {
    await waitForPort(port);
    loadgen = load.spawn();
    // Only the opening handshakes are counted: once all n connections are
    // established (and a moment later, upgraded), the server is killed
    // while loadgen still holds them, before any closing handshake.
    const until = Date.now() + 60_000;
    while (await established(port) < n) {
      if (Date.now() > until) throw new Error(`${command}: ${n} connections never opened`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  } finally {
    server.kill("SIGKILL");
    if (loadgen !== null) {
      loadgen.kill("SIGKILL");
      await loadgen.status;
    }
  }
  const text = new TextDecoder().decode((await output).stdout);
  let total = 0;
  for (const match of text.matchAll(/"allocated":(\d+)/g)) total += Number(match[1]);
  return total;
}

/** Established TCP connections whose server side is `port`. */
async function established(port: number): Promise<number> {
  const ss = await new Deno.Command("ss", {
    args: ["-Htn", "state", "established", `( sport = :${port} )`],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(ss.stdout).split("\n").filter((l) => l !== "").length;
}

async function waitForPort(port: number): Promise<void> {
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`nothing listens on port ${port}`);
}

const figures = new Map<string, number[]>(servers.map(([name]) => [name, []]));
for (let round = 0; round < rounds; round++) {
  for (const [name, command] of servers) {
    const few = await allocatedFor(command, small);
    const many = await allocatedFor(command, large);
    const perHandshake = (many - few) / (large - small);
    figures.get(name)!.push(perHandshake);
    console.log(`round ${round + 1} ${name}: ${Math.round(perHandshake)} bytes per handshake`);
  }
}
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
console.log("\n| server | bytes per handshake (median) | rounds |\n| --- | ---: | --- |");
for (const [name, values] of figures) {
  console.log(
    `| ${name} | ${Math.round(median(values))} | ${values.map(Math.round).join(", ")} |`,
  );
}
