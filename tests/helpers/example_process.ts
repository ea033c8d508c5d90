/**
 * Runs an example (`examples/…`) as a `deno run` subprocess on 127.0.0.1,
 * port 0, and reads the URL it prints once it listens. Every wait is bounded;
 * {@linkcode ExampleProcess.stop} and {@linkcode ExampleProcess.close} always
 * await the exit status and drain stdout and stderr, so nothing outlives a
 * test (Deno's sanitizers stay quiet).
 *
 * Test tooling, not part of the published library.
 *
 * @module
 */

/** The repository root (the folder holding deno.json), as a file URL. */
export const ROOT: URL = new URL("../../", import.meta.url);

/** How long an example may take to print its URL. */
const START_TIMEOUT_MS = 20_000;
/** How long an example may take to exit after a signal before it gets SIGKILL. */
const EXIT_TIMEOUT_MS = 10_000;

/**
 * Spawns `command args…` in the repository root with stdin closed, output
 * piped and colours off: how every test subprocess is started.
 */
export function spawnInRoot(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Deno.ChildProcess {
  return new Deno.Command(command, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...env },
  }).spawn();
}

/** Sends `signal` to `child`, ignoring the error if it has already exited. */
export function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal = "SIGKILL"): void {
  try {
    child.kill(signal);
  } catch {
    // Exited meanwhile.
  }
}

/** A running example. */
export interface ExampleProcess {
  /** The URL the example printed (`ws://…` or `http://…`), with its real port. */
  readonly url: URL;
  /** Everything the example wrote to stdout and stderr so far, for failure messages. */
  output(): string;
  /**
   * Sends `signal` (default SIGTERM), waits (bounded) for the exit and for
   * stdout/stderr to end, and resolves with the exit status. If the example
   * does not exit in time it gets SIGKILL and this rejects.
   */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  /** Kills the example if it still runs and waits for it; safe to call more than once. */
  close(): Promise<void>;
}

/** Resolves after `ms`, or never if `signal` aborts first (the timer is then cleared). */
function timeout(ms: number, signal: AbortSignal): Promise<"timeout"> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), ms);
    signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
  });
}

/**
 * Starts `deno run <flags> <file> <args>` in the repository root and waits
 * until stdout has a line matching `listening on <url>`.
 *
 * @param file path relative to the repository root, e.g. `examples/echo.ts`
 * @param flags permission flags, e.g. `["--allow-net"]`
 * @param args the example's own arguments, e.g. `["0"]`
 */
export function startExample(
  file: string,
  flags: string[],
  args: string[],
): Promise<ExampleProcess> {
  return startProcess(file, ["run", ...flags, file, ...args]);
}

/**
 * Starts `deno <denoArgs>` in the repository root (with `env` added to its
 * environment) and waits until stdout has a line matching
 * `listening on <url>`: for commands other than `deno run`, such as
 * `deno task start`.
 *
 * @param label what failure messages call the process, e.g. `deno task start`
 */
export async function startProcess(
  label: string,
  denoArgs: string[],
  env: Record<string, string> = {},
): Promise<ExampleProcess> {
  const file = label;
  const child = spawnInRoot(Deno.execPath(), denoArgs, env);

  let stdout = "";
  let stderr = "";
  let onStdout = () => {};
  const pumpStdout = (async () => {
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      stdout += text;
      onStdout();
    }
    onStdout();
  })();
  const pumpStderr = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) stderr += text;
  })();
  // Set from a callback, so TypeScript must not narrow it to null here.
  let exited = null as Deno.CommandStatus | null;
  const status = child.status.then((s) => exited = s);
  const output = () => `--- stdout ---\n${stdout}--- stderr ---\n${stderr}`;
  const finish = async () => {
    await status;
    await Promise.all([pumpStdout, pumpStderr]);
  };

  let stopping: Promise<Deno.CommandStatus> | null = null;
  const stop = (signal: Deno.Signal = "SIGTERM") =>
    stopping ??= (async () => {
      if (exited === null) killQuietly(child, signal);
      const cancel = new AbortController();
      const outcome = await Promise.race([status, timeout(EXIT_TIMEOUT_MS, cancel.signal)]);
      cancel.abort();
      if (outcome === "timeout") {
        killQuietly(child);
        await finish();
        throw new Error(
          `${file} did not exit within ${EXIT_TIMEOUT_MS} ms of ${signal}\n${output()}`,
        );
      }
      await finish();
      return outcome;
    })();
  const close = async () => {
    try {
      await stop("SIGKILL");
    } catch {
      // stop() already killed it and waited; the caller is cleaning up.
    }
  };

  // Wait for the "listening on URL" line, the process's exit, or the deadline.
  const pattern = /listening on ((?:ws|http)s?:\/\/\S+)/;
  const cancel = new AbortController();
  const deadline = timeout(START_TIMEOUT_MS, cancel.signal);
  let match: RegExpExecArray | null = null;
  try {
    while ((match = pattern.exec(stdout)) === null) {
      if (exited !== null) {
        await finish(); // read what is left in the pipes before giving up
        if ((match = pattern.exec(stdout)) !== null) break;
        throw new Error(`${file} exited (code ${exited.code}) before listening`);
      }
      const more = new Promise<"more">((resolve) => onStdout = () => resolve("more"));
      const why = await Promise.race([more, status, deadline]);
      if (why === "timeout") {
        throw new Error(`${file} printed no "listening on URL" within ${START_TIMEOUT_MS} ms`);
      }
    }
  } catch (error) {
    cancel.abort();
    await close();
    throw new Error(`${(error as Error).message}\n${output()}`, { cause: error });
  } finally {
    cancel.abort();
    onStdout = () => {};
  }
  return { url: new URL(match[1]), output, stop, close };
}
