/**
 * What the bench scripts that start servers themselves share (see
 * handshake_alloc.ts, echo_ab.ts): `name='command {PORT}'` arguments, the
 * wsbench load generator's path, a server started fresh on a port of its
 * own, waiting for it to listen, and medians.
 *
 * @module
 */

/** The wsbench load generator (built by ../shared/wsbench/setup.sh). */
export const LOADGEN = `${
  Deno.env.get("WSBENCH_BUILD") ?? `${Deno.env.get("HOME")}/.cache/tsunagu-wsbench`
}/bin/loadgen`;

/**
 * Splits a script's arguments into its `--flag value` options (those named
 * in `numbers`, parsed as numbers) and its servers (`name='command {PORT}'`).
 */
export function parseArgs(
  args: string[],
  numbers: Record<string, number>,
): { options: Record<string, number>; servers: [string, string][] } {
  const options = { ...numbers };
  const servers: [string, string][] = [];
  const rest = [...args];
  while (rest.length > 0) {
    const arg = rest.shift()!;
    if (arg.startsWith("--") && arg.slice(2) in options) {
      options[arg.slice(2)] = Number(rest.shift());
      continue;
    }
    const eq = arg.indexOf("=");
    if (eq <= 0) throw new Error(`expected name='command {PORT}', got ${arg}`);
    servers.push([arg.slice(0, eq), arg.slice(eq + 1)]);
  }
  if (servers.length === 0) throw new Error("no servers given");
  return { options, servers };
}

let nextPort = 19300;

/** A server started from `command` on a fresh port, listening. */
export interface StartedServer {
  port: number;
  process: Deno.ChildProcess;
}

/**
 * Starts `command` (`{PORT}` replaced) with `env` added, pinned to `cpu`
 * and at niceness `nice` when given, and waits (at most 15 s) until it
 * listens.
 */
export async function startServer(
  command: string,
  options: {
    env?: Record<string, string>;
    cpu?: number;
    nice?: number;
    stdout?: "piped" | "null";
  } = {},
): Promise<StartedServer> {
  const port = nextPort++;
  let argv = command.replaceAll("{PORT}", String(port)).split(/\s+/);
  if (options.cpu !== undefined) argv = ["taskset", "-c", String(options.cpu), ...argv];
  if (options.nice !== undefined) argv = ["nice", "-n", String(options.nice), ...argv];
  const process = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: options.env,
    stdout: options.stdout ?? "null",
    stderr: "null",
  }).spawn();
  const until = Date.now() + 15_000;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return { port, process };
    } catch {
      if (Date.now() > until) {
        process.kill("SIGKILL");
        throw new Error(`nothing listens on port ${port}: ${command}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** The median of `values` (the upper one of an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
