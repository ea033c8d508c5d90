/**
 * What every command of `tsunagu` shares: where it writes, how it is
 * stopped, and the start-up errors it turns into one line and an exit code.
 *
 * @module
 */

/**
 * Where {@linkcode runCli} writes and how it is stopped. Every field is
 * optional; the defaults are the console and the process's SIGINT/SIGTERM.
 *
 * @example
 * ```ts
 * import type { CliIo } from "@tsunagu/ws/cli";
 * const lines: string[] = [];
 * const io: CliIo = { stdout: (line) => lines.push(line), stderr: (line) => lines.push(line) };
 * ```
 */
export interface CliIo {
  /** Writes one line of output: help, version, log lines. Default `console.log`. */
  stdout?: (line: string) => void;
  /** Writes one line of error output. Default `console.error`. */
  stderr?: (line: string) => void;
  /**
   * Aborting it shuts the server down as SIGINT/SIGTERM would. When given, no
   * process signal listeners are installed.
   */
  signal?: AbortSignal;
  /** Called once the server listens, with its address. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** What `connect` sends, line by line. Default: the process's standard input. */
  stdin?: ReadableStream<Uint8Array>;
}

/** A start-up failure with its exit code: 2 for the user's input, 1 otherwise. */
export class StartError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2) {
    super(message);
  }
}

/** Turns Deno's NotCapable message into one naming the flag to add. */
export function permissionError(error: Error, flag: string): StartError {
  const match = /^Requires (.+?), run again with the (--allow-[a-z-]+) flag/.exec(error.message);
  const what = match ? match[1] : error.message;
  return new StartError(
    `missing permission: ${what}; run again with ${match?.[2] ?? flag}` +
      ` (e.g. deno run --allow-net --allow-read …)`,
    1,
  );
}

/** A start-up error for a file or directory named on the command line. */
export function pathError(error: unknown, subject: string, missing: string): StartError {
  if (error instanceof Deno.errors.NotCapable) return permissionError(error, "--allow-read");
  const reason = error instanceof Deno.errors.NotFound
    ? missing
    : error instanceof Deno.errors.PermissionDenied
    ? "permission denied by the operating system"
    : error instanceof Deno.errors.IsADirectory
    ? "is a directory"
    : error instanceof Deno.errors.NotADirectory
    ? "not a directory"
    : (error as Error).message;
  return new StartError(`${subject}: ${reason}`, 2);
}
