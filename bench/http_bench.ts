/**
 * Plain-HTTP throughput, side by side in one run: `wrk` pinned to core 1
 * against each server pinned to core 0, for a small response and a 64 KiB
 * static file, with keep-alive and without (`Connection: close` on every
 * request), repeated and summarised by medians.
 *
 *   deno run -A bench/http_bench.ts [--runs 3] [--duration 5] [--warmup 1]
 *     [--connections 50] [--targets deno,deno-static,tsunagu,cli,limit]
 *     [--modes keep-alive,close] [--paths small,file.bin] [--raw DIR]
 *     [--wait-quiet S] [--max-foreign PCT] [--retries N] [--nice N]
 *
 * Targets (see bench/http_server.ts):
 * - `deno`         `Deno.serve`, `/small` text and `/file.bin` from `file.readable`
 * - `deno-static`  `Deno.serve` with tsunagu's static-file handler
 * - `tsunagu`      tsunagu `serve()` with the same `/small` and static handler
 * - `cli`          `tsunagu serve --static DIR --health /small -q` (the small
 *                  response is the health check's `ok`)
 * - `limit`        bench/http_limit.ts: the fastest plain-TypeScript keep-alive
 *                  answer on Deno's public API (a yardstick, not a server:
 *                  `/small` with keep-alive only)
 *
 * Each run starts every target in turn (the order rotates from run to run),
 * checks that it answers both paths correctly, warms it up, then measures
 * each path and mode for `--duration` seconds. Needs `wrk` and `taskset`
 * (Linux) and two cores. The markdown summary goes to stdout, progress to
 * stderr; `--raw DIR` keeps every wrk output.
 *
 * On a machine shared with other work: before each measurement the script
 * waits (at most `--wait-quiet` s, default 20) until the machine is less
 * than 10% busy, counts the CPU other processes use during it (from
 * /proc), and repeats a measurement during which they used more than
 * `--max-foreign` % of a core (default 25) up to `--retries` times
 * (default 2); the share is shown with each result. Server and wrk run at
 * `--nice` -10 (as root; 0 turns it off).
 *
 * Each result also gives the server's own CPU time per request (user +
 * system, all threads, from /proc/PID/stat): on a shared machine, where
 * req/s of one run can vary 2x, the steadier figure.
 *
 * "keep-alive on" is wrk's default (HTTP/1.1 persistent connections);
 * against a server that closes after each response wrk reconnects, so for
 * a server without keep-alive those rows show one request per connection.
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);
const FILE_SIZE = 64 * 1024;

type Target = "deno" | "deno-static" | "tsunagu" | "cli" | "limit";
type Mode = "keep-alive" | "close";
type Path = "/small" | "/file.bin";

interface Options {
  runs: number;
  duration: number;
  warmup: number;
  connections: number;
  targets: Target[];
  modes: Mode[];
  paths: Path[];
  raw: string | undefined;
  waitQuiet: number;
  maxForeign: number;
  retries: number;
  nice: number;
}

interface Sample {
  target: Target;
  path: Path;
  mode: Mode;
  rps: number;
  p50: number;
  p99: number;
  transfer: string;
  errors: number;
  non2xx: number;
  /** CPU other processes used during the run, in % of one core. */
  foreign: number;
  /**
   * The server's own CPU time (user + system, all threads) per request, in
   * µs: far less sensitive to other load on a shared machine than req/s.
   */
  cpu: number;
}

function usage(message: string): never {
  console.error(`http_bench: ${message}`);
  console.error(
    "usage: http_bench.ts [--runs N] [--duration S] [--warmup S] [--connections N] " +
      "[--targets deno,deno-static,tsunagu,cli,limit] [--modes keep-alive,close] " +
      "[--paths small,file.bin] [--raw DIR] " +
      "[--wait-quiet S] [--max-foreign PCT] [--retries N] [--nice N]",
  );
  Deno.exit(2);
}

function parseOptions(args: string[]): Options {
  const options: Options = {
    runs: 3,
    duration: 5,
    warmup: 1,
    connections: 50,
    targets: ["deno", "deno-static", "tsunagu", "cli"],
    modes: ["keep-alive", "close"],
    paths: ["/small", "/file.bin"],
    raw: undefined,
    waitQuiet: 20,
    maxForeign: 25,
    retries: 2,
    nice: -10,
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = args[++i] ?? usage(`${flag} needs a value`);
    const count = (min: number, max: number) => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < min || n > max) usage(`${flag}: ${min} to ${max}`);
      return n;
    };
    if (flag === "--runs") options.runs = count(1, 20);
    else if (flag === "--duration") options.duration = count(1, 60);
    else if (flag === "--warmup") options.warmup = count(0, 30);
    else if (flag === "--connections") options.connections = count(1, 1000);
    else if (flag === "--raw") options.raw = value;
    else if (flag === "--wait-quiet") options.waitQuiet = count(0, 600);
    else if (flag === "--max-foreign") options.maxForeign = count(1, 200);
    else if (flag === "--retries") options.retries = count(0, 10);
    else if (flag === "--nice") options.nice = count(-20, 19);
    else if (flag === "--targets") {
      options.targets = value.split(",") as Target[];
      for (const t of options.targets) {
        if (!["deno", "deno-static", "tsunagu", "cli", "limit"].includes(t)) {
          usage(`unknown target ${t}`);
        }
      }
    } else if (flag === "--paths") {
      options.paths = value.split(",").map((p) => p.startsWith("/") ? p : `/${p}`) as Path[];
      for (const p of options.paths) {
        if (p !== "/small" && p !== "/file.bin") usage(`unknown path ${p}`);
      }
    } else if (flag === "--modes") {
      options.modes = value.split(",") as Mode[];
      for (const m of options.modes) {
        if (m !== "keep-alive" && m !== "close") usage(`unknown mode ${m}`);
      }
    } else usage(`unknown option ${flag}`);
  }
  return options;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function serverCommand(target: Target, port: number, dir: string): string[] {
  const deno = Deno.execPath();
  if (target === "cli") {
    return [
      deno,
      "run",
      "-A",
      "src/cli/main.ts",
      "serve",
      "--static",
      dir,
      "--health",
      "/small",
      "--port",
      String(port),
      "--hostname",
      "127.0.0.1",
      "-q",
    ];
  }
  if (target === "limit") return [deno, "run", "-A", "bench/http_limit.ts", String(port)];
  return [deno, "run", "-A", "bench/http_server.ts", target, String(port), dir];
}

async function waitListening(port: number, child: Deno.ChildProcess): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && !exited) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`the server on port ${port} did not start`);
}

/** One GET with `Connection: close`; its status and body length. */
async function check(port: number, path: Path): Promise<[number, number]> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    headers: { connection: "close" },
  });
  return [response.status, (await response.arrayBuffer()).byteLength];
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // Already gone.
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited meanwhile.
    }
  }, 5_000);
  await child.status;
  clearTimeout(timer);
}

/** Milliseconds from a wrk duration (`812.00us`, `1.23ms`, `2.00s`). */
function ms(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (match === null) return NaN;
  const value = Number(match[1]);
  return { us: value / 1000, ms: value, s: value * 1000, m: value * 60_000 }[match[2]]!;
}

/** The command that runs `command` pinned to `core`, niced as the options say. */
function pinned(options: Options, core: number, command: string[]): string[] {
  const nice = options.nice === 0 ? [] : ["nice", "-n", String(options.nice)];
  return [...nice, "taskset", "-c", String(core), ...command];
}

/** CPU ticks (user + system) by pid, of every process but kernel threads and `exclude`. */
function processTicks(exclude: Set<number>): Map<number, number> {
  const ticks = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name) || exclude.has(Number(entry.name))) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
    } catch {
      continue; // Exited meanwhile.
    }
    // After "pid (comm) ": state ppid pgrp session tty tpgid flags minflt
    // cminflt majflt cmajflt utime stime …
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const PF_KTHREAD = 0x00200000;
    if ((Number(fields[6]) & PF_KTHREAD) !== 0) continue;
    ticks.set(Number(entry.name), Number(fields[11]) + Number(fields[12]));
  }
  return ticks;
}

/** One process's CPU ticks (user + system, all its threads) so far. */
function ownTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * Ticks used between two snapshots by the processes alive at the second
 * (all of a new one's; what one that exited meanwhile used is not seen).
 */
function ticksBetween(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, ticks] of after) sum += Math.max(0, ticks - (before.get(pid) ?? 0));
  return sum;
}

/** Busy share of all cores over `ms`, from /proc/stat, in %. */
async function machineBusy(ms: number): Promise<number> {
  const read = () =>
    Deno.readTextFileSync("/proc/stat").split("\n")[0].split(/\s+/).slice(1, 9).map(Number);
  const a = read();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = read();
  const d = b.map((v, i) => v - a[i]);
  const total = d.reduce((sum, v) => sum + v, 0);
  const idle = d[3] + d[4];
  return total > 0 ? (100 * (total - idle)) / total : 0;
}

/** Waits (at most `--wait-quiet` s) until the machine is less than 10% busy. */
async function waitQuiet(options: Options): Promise<void> {
  const deadline = Date.now() + options.waitQuiet * 1000;
  while (Date.now() < deadline) {
    if (await machineBusy(500) < 10) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/**
 * Runs wrk for `seconds` against `path`; resolves with its output and the
 * CPU that processes other than the server, wrk and this script used
 * meanwhile (% of one core).
 */
async function wrk(
  options: Options,
  server: number,
  port: number,
  path: Path,
  mode: Mode,
  seconds: number,
): Promise<{ text: string; foreign: number; serverTicks: number }> {
  const [command, ...args] = pinned(options, 1, [
    "wrk",
    "-t1",
    `-c${options.connections}`,
    `-d${seconds}s`,
    "--latency",
    ...(mode === "close" ? ["-H", "Connection: close"] : []),
    `http://127.0.0.1:${port}${path}`,
  ]);
  const child = new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).spawn();
  // nice and taskset exec wrk, so the child's pid is wrk's.
  const exclude = new Set([server, child.pid, Deno.pid]);
  const before = processTicks(exclude);
  const serverBefore = ownTicks(server);
  const started = performance.now();
  const output = await child.output();
  const elapsed = (performance.now() - started) / 1000;
  const serverTicks = ownTicks(server) - serverBefore;
  // 100 ticks a second is one core: ticks per second is % of a core.
  const foreign = ticksBetween(before, processTicks(exclude)) / elapsed;
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`wrk failed:\n${text}`);
  return { text, foreign, serverTicks };
}

function parseWrk(text: string): Omit<Sample, "target" | "path" | "mode" | "foreign" | "cpu"> & {
  requests: number;
} {
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
  const p50 = ms(/^\s+50%\s+(\S+)/m.exec(text)?.[1] ?? "");
  const p99 = ms(/^\s+99%\s+(\S+)/m.exec(text)?.[1] ?? "");
  const transfer = /Transfer\/sec:\s+(\S+)/.exec(text)?.[1] ?? "?";
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = socket === null ? 0 : socket.slice(1).reduce((sum, n) => sum + Number(n), 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  return { rps, p50, p99, transfer, errors, non2xx, requests };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function environment(): Promise<string> {
  const run = async (command: string, args: string[]) => {
    try {
      const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
        .output();
      return new TextDecoder().decode(output.stdout).trim() ||
        new TextDecoder().decode(output.stderr).trim();
    } catch {
      return "?";
    }
  };
  const cpu = (await run("lscpu", [])).split("\n").find((line) => line.startsWith("Model name"))
    ?.replace(/^Model name:\s*/, "") ?? "?";
  const wrkVersion = (await run("wrk", ["--version"])).split("\n")[0];
  return `deno ${Deno.version.deno}, ${wrkVersion.replace(/ Copyright.*/, "")}, ` +
    `${cpu}, ${navigator.hardwareConcurrency} cores, Linux ${Deno.osRelease()}`;
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const dir = await Deno.makeTempDir({ prefix: "tsunagu-http-bench-" });
  const samples: Sample[] = [];
  try {
    const bytes = new Uint8Array(FILE_SIZE);
    crypto.getRandomValues(bytes);
    await Deno.writeFile(`${dir}/file.bin`, bytes);
    if (options.raw !== undefined) await Deno.mkdir(options.raw, { recursive: true });
    for (let run = 0; run < options.runs; run++) {
      const order = options.targets.map((_, i) =>
        options.targets[(i + run) % options.targets.length]
      );
      for (const target of order) {
        const port = freePort();
        const [command, ...args] = pinned(options, 0, serverCommand(target, port, dir));
        const child = new Deno.Command(command, {
          args,
          cwd: ROOT,
          stdin: "null",
          stdout: "null",
          stderr: "inherit",
        }).spawn();
        try {
          await waitListening(port, child);
          // The yardstick answers /small, and only with keep-alive.
          const limit = target === "limit";
          for (const path of (limit ? ["/small"] : ["/small", "/file.bin"]) as Path[]) {
            const [status, length] = await check(port, path);
            const want = path === "/small" ? length > 0 : length === FILE_SIZE;
            if (status !== 200 || !want) {
              throw new Error(`${target} ${path}: status ${status}, ${length} bytes`);
            }
          }
          for (const path of options.paths) {
            for (const mode of options.modes) {
              if (limit && (path !== "/small" || mode !== "keep-alive")) continue;
              // Of the attempts, the one other processes disturbed least is kept.
              let sample: Sample | undefined;
              let text = "";
              for (let attempt = 0; attempt <= options.retries; attempt++) {
                await waitQuiet(options);
                if (options.warmup > 0) {
                  await wrk(options, child.pid, port, path, mode, options.warmup);
                }
                const result = await wrk(options, child.pid, port, path, mode, options.duration);
                const parsed = parseWrk(result.text);
                const tried = {
                  target,
                  path,
                  mode,
                  ...parsed,
                  foreign: result.foreign,
                  // 100 ticks a second (as above): a tick is 10,000 µs.
                  cpu: result.serverTicks * 10_000 / parsed.requests,
                };
                if (sample === undefined || tried.foreign < sample.foreign) {
                  sample = tried;
                  text = result.text;
                }
                if (sample.foreign <= options.maxForeign) break;
                console.error(
                  `  (other processes used ${Math.round(tried.foreign)}% of a core: again)`,
                );
              }
              if (sample === undefined) throw new Error("no attempt ran");
              samples.push(sample);
              console.error(
                `run ${run + 1}/${options.runs} ${target} ${path} ${mode}: ` +
                  `${Math.round(sample.rps)} req/s, p99 ${sample.p99} ms, ` +
                  `server CPU ${sample.cpu.toFixed(1)} µs/request, ` +
                  `foreign ${Math.round(sample.foreign)}%` +
                  (sample.errors + sample.non2xx > 0
                    ? ` (${sample.errors} socket errors, ${sample.non2xx} non-2xx)`
                    : ""),
              );
              if (options.raw !== undefined) {
                await Deno.writeTextFile(
                  `${options.raw}/run${run + 1}-${target}-${path.slice(1)}-${mode}.txt`,
                  text,
                );
              }
            }
          }
        } finally {
          await stop(child);
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log(await report(options, samples));
}

async function report(options: Options, samples: Sample[]): Promise<string> {
  const lines = [
    `Environment: ${await environment()}.`,
    `wrk -t1 -c${options.connections} -d${options.duration}s --latency (pinned to core 1), ` +
    `server pinned to core 0, both at nice ${options.nice}; ${options.runs} runs, ` +
    `${options.warmup} s warm-up before each; medians. A run during which other processes ` +
    `used more than ${options.maxForeign}% of a core was repeated (up to ${options.retries} ` +
    `times) and the least disturbed attempt kept; "other CPU" is that share per run, with ` +
    `"!" where it stayed above the limit.`,
    "",
    "| target | path | keep-alive | req/s (median) | req/s (runs) | server CPU µs/req (median) | p50 ms | p99 ms | socket errors | non-2xx | other CPU % |",
    "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
  ];
  const medians = new Map<string, number>();
  const cpuMedians = new Map<string, number>();
  for (const path of ["/small", "/file.bin"] as Path[]) {
    for (const mode of options.modes) {
      for (const target of options.targets) {
        const group = samples.filter((s) =>
          s.target === target && s.path === path && s.mode === mode
        );
        if (group.length === 0) continue;
        const rps = median(group.map((s) => s.rps));
        medians.set(`${target} ${path} ${mode}`, rps);
        const cpu = median(group.map((s) => s.cpu));
        cpuMedians.set(`${target} ${path} ${mode}`, cpu);
        lines.push(
          `| ${target} | ${path} | ${mode === "keep-alive" ? "on" : "off (Connection: close)"} | ` +
            `${Math.round(rps)} | ${group.map((s) => Math.round(s.rps)).join(", ")} | ` +
            `${cpu.toFixed(1)} | ` +
            `${median(group.map((s) => s.p50)).toFixed(2)} | ` +
            `${median(group.map((s) => s.p99)).toFixed(2)} | ` +
            `${group.map((s) => s.errors).join(", ")} | ${
              group.map((s) => s.non2xx).join(", ")
            } | ` +
            `${
              group.map((s) =>
                `${Math.round(s.foreign)}${s.foreign > options.maxForeign ? "!" : ""}`
              ).join(", ")
            } |`,
        );
      }
    }
  }
  const ratios: string[] = [];
  for (const path of ["/small", "/file.bin"] as Path[]) {
    for (const mode of options.modes) {
      const base = medians.get(`deno ${path} ${mode}`);
      for (const target of ["tsunagu", "cli", "deno-static"] as Target[]) {
        const value = medians.get(`${target} ${path} ${mode}`);
        if (base !== undefined && value !== undefined) {
          // CPU as deno's over ours: above 1 where ours costs less per request.
          const cpuRatio = cpuMedians.get(`deno ${path} ${mode}`)! /
            cpuMedians.get(`${target} ${path} ${mode}`)!;
          ratios.push(
            `${target}/deno ${path} ${mode}: ${(value / base).toFixed(2)}× req/s, ` +
              `${cpuRatio.toFixed(2)}× (deno's CPU per request / ${target}'s)`,
          );
        }
      }
      const limit = medians.get(`limit ${path} ${mode}`);
      const tsunagu = medians.get(`tsunagu ${path} ${mode}`);
      if (limit !== undefined && tsunagu !== undefined) {
        ratios.push(`tsunagu/limit ${path} ${mode}: ${(tsunagu / limit).toFixed(2)}× req/s`);
      }
      const staticBase = medians.get(`deno-static ${path} ${mode}`);
      const ours = medians.get(`tsunagu ${path} ${mode}`);
      if (path === "/file.bin" && staticBase !== undefined && ours !== undefined) {
        ratios.push(`tsunagu/deno-static ${path} ${mode}: ${(ours / staticBase).toFixed(2)}×`);
      }
    }
  }
  if (ratios.length > 0) lines.push("", "Ratios of medians:", "", ...ratios.map((r) => `- ${r}`));
  return lines.join("\n");
}

if (import.meta.main) await main();
