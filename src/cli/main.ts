/**
 * `tsunagu`: the command-line WebSocket server.
 *
 * ```sh
 * deno run --allow-net --allow-read jsr:@tsunagu/ws/cli serve --port 9000 --mode chat
 * ```
 *
 * `tsunagu serve` runs an echo, broadcast or chat server, optionally with
 * static files for plain HTTP requests and TLS (`--cert`/`--key`: wss://).
 * Run `tsunagu --help` for every flag. Errors in the command line print one
 * line and a usage hint to stderr and exit with 2; a missing Deno permission
 * or a port in use exits with 1; SIGINT/SIGTERM close every client with 1001
 * and exit with 0.
 *
 * The argument parser and the runner are exported for embedding and tests.
 *
 * @example Run the CLI in-process; aborting the signal shuts it down
 * ```ts
 * import { runCli } from "@tsunagu/ws/cli";
 * const stop = new AbortController();
 * const code = await runCli(["serve", "--port", "0", "--hostname", "127.0.0.1", "--quiet"], {
 *   signal: stop.signal,
 *   onListen(addr) {
 *     console.log("listening on port", addr.port);
 *     stop.abort(); // as SIGINT/SIGTERM would: close clients with 1001, then resolve
 *   },
 * });
 * console.log(code); // 0
 * ```
 *
 * @module
 */
import { parseCliArgs, usage, usageHint } from "./args.ts";
import type { HelpTopic } from "./cli_error.ts";
import { runConnect } from "./connect_command.ts";
import type { CliIo } from "./io.ts";
import { StartError } from "./io.ts";
import { formatReport, loadSucceeded, runLoad } from "./load_tool.ts";
import { runServe } from "./serve_command.ts";
import { VERSION } from "./version.ts";

export { type CliCommand, parseCliArgs, usage, usageHint } from "./args.ts";
export type { CliError, HelpTopic } from "./cli_error.ts";
export type { ConnectCommand, LoadCommand } from "./client_flags.ts";
export type { CliIo } from "./io.ts";
export type { LoadOptions } from "./load_tool.ts";
export type { LogFormat, Mode, ServeConfig } from "./serve_flags.ts";
export { parseDuration, parseSize } from "./values.ts";
export { VERSION } from "./version.ts";

/** Runs of `tsunagu load` this long (ms) or longer print progress on stderr. */
const LOAD_PROGRESS_AFTER = 3000;

/**
 * Runs `tsunagu` with `args` (without the program name) and resolves with
 * the exit code: 0 on success (including after a graceful shutdown), 1 for a
 * runtime failure (missing permission, port in use), 2 for an invalid command
 * line or an unreadable `--cert`/`--key`/`--static`. User mistakes print one
 * line plus a usage hint to stderr, never a stack trace.
 *
 * `serve` resolves only once the server has shut down: on SIGINT/SIGTERM, or
 * when `io.signal` is aborted.
 *
 * @example
 * ```ts
 * import { runCli } from "@tsunagu/ws/cli";
 * const lines: string[] = [];
 * const code = await runCli(["--version"], { stdout: (line) => lines.push(line) });
 * console.log(code, lines[0]); // 0 "tsunagu 0.1.0"
 * ```
 */
export async function runCli(args: readonly string[], io: CliIo = {}): Promise<number> {
  const out = io.stdout ?? ((line: string) => console.log(line));
  const err = io.stderr ?? ((line: string) => console.error(line));
  const fail = (message: string, code: number, topic?: HelpTopic) => {
    err(`tsunagu: ${message}`);
    if (topic !== undefined) err(usageHint(topic));
    return code;
  };
  const parsed = parseCliArgs(args);
  if ("error" in parsed) return fail(parsed.error, 2, parsed.topic);
  switch (parsed.command) {
    case "help":
      out(usage(parsed.topic, VERSION).trimEnd());
      return 0;
    case "version":
      out(`tsunagu ${VERSION}`);
      return 0;
    case "connect":
      return await runConnect(parsed, io, out, err);
    case "load": {
      // Runs of a few seconds and more say how they are doing once a second.
      const progress = parsed.options.duration >= LOAD_PROGRESS_AFTER ? { write: err } : undefined;
      const report = await runLoad(parsed.options, progress);
      for (const line of formatReport(parsed.options, report).split("\n")) out(line);
      return loadSucceeded(report) ? 0 : 1;
    }
    case "serve":
      try {
        return await runServe(parsed.config, io, out, err);
      } catch (error) {
        if (!(error instanceof StartError)) throw error;
        return fail(error.message, error.exitCode, error.exitCode === 2 ? "serve" : undefined);
      }
  }
}

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
