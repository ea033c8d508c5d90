/**
 * Runs a command to its end with a deadline (SIGKILL when it passes) and
 * returns its exit code and decoded output: for CLI runs that should end by
 * themselves (help, version, errors, `deno compile`).
 *
 * Test tooling, not part of the published library.
 *
 * @module
 */

import { killQuietly, spawnInRoot } from "./example_process.ts";

/** What a finished command left. */
export interface Finished {
  /** The exit code (137 when it was killed at the deadline). */
  code: number;
  /** Everything written to stdout. */
  stdout: string;
  /** Everything written to stderr. */
  stderr: string;
}

/**
 * Runs `command args…` in the repository root with stdin closed (and `env`
 * added to its environment) and waits for it, killing it after `timeoutMs`.
 */
export async function runToEnd(
  command: string,
  args: string[],
  timeoutMs = 30_000,
  env: Record<string, string> = {},
): Promise<Finished> {
  const child = spawnInRoot(command, args, env);
  const timer = setTimeout(() => killQuietly(child), timeoutMs);
  try {
    const { code, stdout, stderr } = await child.output();
    const decoder = new TextDecoder();
    return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `deno run <flags> src/cli/main.ts <args>` to its end. */
export function runCliProcess(args: string[], flags: string[]): Promise<Finished> {
  return runToEnd(Deno.execPath(), ["run", ...flags, "src/cli/main.ts", ...args]);
}
