/**
 * Runs `tsunagu serve` (src/cli/main.ts) as a subprocess on 127.0.0.1, port 0, and
 * exposes what load tests measure from outside: the port and the process's
 * resident memory (VmRSS from /proc). Running the server in its own process
 * keeps the test's clients off its event loop and makes its RSS its own.
 *
 * Every wait is bounded; {@linkcode ServerProcess.close} kills the process
 * and awaits its exit and output, so nothing outlives a test.
 *
 * Test tooling, not part of the published library.
 *
 * @module
 */

import { killQuietly, spawnInRoot } from "./example_process.ts";

/** How long the server may take to print its URL. */
const START_TIMEOUT_MS = 20_000;

/** A running `tsunagu serve`. */
export interface ServerProcess {
  /** The port it listens on. */
  readonly port: number;
  /** Its process id. */
  readonly pid: number;
  /** Its resident set size now, in bytes (VmRSS). */
  rss(): Promise<number>;
  /** Everything it wrote so far, for failure messages. */
  output(): string;
  /** Kills it (SIGKILL) and waits for its exit and output; safe to call twice. */
  close(): Promise<void>;
}

/** VmRSS of process `pid`, in bytes. */
export async function readRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (match === null) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]) * 1024;
}

/**
 * Starts `deno run -A --unstable-net src/cli/main.ts serve --port 0 --hostname
 * 127.0.0.1 -q <args>` and waits for its "listening on" line. With `quiet`
 * false, `-q` is left out: the per-connection lines are logged.
 */
export async function startServerProcess(args: string[], quiet = true): Promise<ServerProcess> {
  const child = spawnInRoot(Deno.execPath(), [
    "run",
    "-A",
    "--unstable-net",
    "src/cli/main.ts",
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    ...(quiet ? ["-q"] : []),
    ...args,
  ]);
  let text = "";
  let wake = () => {};
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const piece of stream.pipeThrough(new TextDecoderStream())) {
      text += piece;
      wake();
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let exited = false;
  const status = child.status.then(() => {
    exited = true;
    wake();
  });
  let closing: Promise<void> | null = null;
  const close = () =>
    closing ??= (async () => {
      killQuietly(child);
      await status;
      await pumps;
    })();
  const deadline = Date.now() + START_TIMEOUT_MS;
  let match: RegExpExecArray | null;
  while ((match = /listening on ws:\/\/127\.0\.0\.1:(\d+)/.exec(text)) === null) {
    const left = deadline - Date.now();
    if (exited || left <= 0) {
      await close();
      throw new Error(`tsunagu serve did not start:\n${text}`);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, left);
    });
    clearTimeout(timer);
  }
  wake = () => {};
  return {
    port: Number(match[1]),
    pid: child.pid,
    rss: () => readRss(child.pid),
    output: () => text,
    close,
  };
}
