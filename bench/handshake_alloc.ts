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
 * (before any closing handshake); the difference of the totals over the
 * difference of the counts is the figure, free of start-up allocation.
 * Servers alternate within each round; the median of the rounds is printed.
 * Bounded: each process lives a few seconds (at most 60 s to open).
 *
 * @module
 */

import { LOADGEN, median, parseArgs, startServer } from "./server_runs.ts";

const V8_FLAGS = [
  "--trace-gc-nvp",
  "--min-semi-space-size=1",
  "--max-semi-space-size=1",
  "--semi-space-growth-factor=1",
].join(",");

const { options, servers } = parseArgs(Deno.args, { rounds: 3, small: 2000, large: 10000 });

/** Total bytes V8 reported allocated while `n` connections were opened to a fresh server. */
async function allocatedFor(command: string, n: number): Promise<number> {
  const { port, process: server } = await startServer(command, {
    env: { DENO_V8_FLAGS: V8_FLAGS },
    stdout: "piped",
  });
  const output = server.output();
  const loadgen = new Deno.Command(LOADGEN, {
    args: ["idle", "-p", String(port), "-n", String(n), "-H", "5", "--json-only"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
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
    loadgen.kill("SIGKILL");
    await loadgen.status;
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

const figures = new Map<string, number[]>(servers.map(([name]) => [name, []]));
for (let round = 0; round < options.rounds; round++) {
  for (const [name, command] of servers) {
    const few = await allocatedFor(command, options.small);
    const many = await allocatedFor(command, options.large);
    const perHandshake = (many - few) / (options.large - options.small);
    figures.get(name)!.push(perHandshake);
    console.log(`round ${round + 1} ${name}: ${Math.round(perHandshake)} bytes per handshake`);
  }
}
console.log("\n| server | bytes per handshake (median) | rounds |\n| --- | ---: | --- |");
for (const [name, values] of figures) {
  console.log(
    `| ${name} | ${Math.round(median(values))} | ${values.map(Math.round).join(", ")} |`,
  );
}
