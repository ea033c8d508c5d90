/**
 * Command-line parsing for `tsunagu`: a pure function from the argument list
 * to a command (or one error message), and the help texts. Each command's
 * flags live beside it (`serve_flags.ts`, `client_flags.ts`); nothing here
 * touches the file system or the network, so all of it is unit-testable;
 * `main.ts` does the running.
 *
 * @module
 */

import { type CliError, fail, type HelpTopic } from "./cli_error.ts";
import {
  CONNECT_HELP,
  type ConnectCommand,
  LOAD_HELP,
  type LoadCommand,
  parseConnect,
  parseLoad,
} from "./client_flags.ts";
import { flagTable, parseServe, type ServeConfig } from "./serve_flags.ts";

/**
 * A successfully parsed command line.
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "@tsunagu/ws/cli";
 * const parsed = parseCliArgs(["--version"]);
 * console.log("command" in parsed && parsed.command); // "version"
 * ```
 */
export type CliCommand =
  | { command: "help"; topic: HelpTopic }
  | { command: "version" }
  | { command: "serve"; config: ServeConfig }
  | ConnectCommand
  | LoadCommand;

/**
 * Parses the arguments of `tsunagu` (without the program name). Never
 * throws: a command line that cannot run gives a {@linkcode CliError}.
 *
 * Values follow their flag as `--port 9000` or `--port=9000`; a flag given
 * twice keeps the last value. `-h`/`--help` anywhere after a command asks
 * for that command's help (`tsunagu help COMMAND` too).
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "@tsunagu/ws/cli";
 * const parsed = parseCliArgs(["serve", "--mode=broadcast", "--max-payload", "64kb"]);
 * if ("error" in parsed) throw new Error(parsed.error);
 * if (parsed.command === "serve") console.log(parsed.config.maxPayload); // 65536
 * ```
 */
export function parseCliArgs(args: readonly string[]): CliCommand | CliError {
  const [first, ...rest] = args;
  switch (first) {
    case undefined:
      return fail(`missing command (expected ${COMMANDS})`, "main");
    case "serve":
      return parseServe(rest);
    case "connect":
      return parseConnect(rest);
    case "load":
      return parseLoad(rest);
    case "help":
    case "--help":
    case "-h":
      return {
        command: "help",
        topic: rest[0] === "serve" || rest[0] === "connect" || rest[0] === "load"
          ? rest[0]
          : "main",
      };
    case "version":
    case "--version":
    case "-V":
      return { command: "version" };
    default:
      return first.startsWith("-")
        ? fail(`unknown flag ${first.split("=")[0]}`, "main")
        : fail(`unknown command ${JSON.stringify(first)} (expected ${COMMANDS})`, "main");
  }
}

/** The commands, as error messages list them. */
const COMMANDS = "serve, connect or load";

const VALUE_NOTES = `Sizes are bytes, or a number with a unit: kb, mb, gb (binary: 1kb = 1024
bytes; k/kib, m/mib, g/gib also work), e.g. 512kb, 16mb, 1.5gb.
Durations are seconds, or a number with a unit: ms, s, m, h, e.g. 500ms,
30s, 5m. Values follow their flag as --port 9000 or --port=9000.`;

/**
 * The help text for a topic: the overview (`tsunagu --help`) or one
 * command's (`tsunagu serve --help`, `connect --help`, `load --help`). The
 * overview and `serve` list every flag of `serve` with its default; each
 * client command's lists its own flags.
 *
 * @example
 * ```ts
 * import { usage } from "@tsunagu/ws/cli";
 * console.log(usage("serve").includes("--max-payload SIZE")); // true
 * ```
 */
export function usage(topic: HelpTopic, version?: string): string {
  const title = `tsunagu${version ? ` ${version}` : ""}: an RFC 6455 WebSocket server`;
  const about = `SIGINT or SIGTERM shuts the server down gracefully: clients are closed
with 1001 and the exit code is 0.`;
  const flags = `${flagTable()}

${VALUE_NOTES}`;
  if (topic === "connect") return `${title}\n\n${CONNECT_HELP}`;
  if (topic === "load") return `${title}\n\n${LOAD_HELP}`;
  if (topic === "serve") {
    return `${title}

Usage: tsunagu serve [flags]

Starts a WebSocket server: ws://, or wss:// with --cert and --key.
${about}

Flags:
${flags}
`;
  }
  return `${title}

Usage:
  tsunagu serve [flags]     start a WebSocket server
  tsunagu serve --help      show the flags of serve only
  tsunagu connect URL [--protocol P]... [--wait DURATION] [--deflate]
                      [--ca FILE]
                            connect as a client: each line of stdin is sent
                            as a text message, each message received is
                            printed (binary as <binary N bytes>); at the end
                            of stdin, close once the server has been quiet
                            for --wait (default 1s); --deflate offers
                            compression; --ca trusts a private CA (wss://)
  tsunagu connect --help    show the flags of connect
  tsunagu load URL [--clients N] [--duration D] [--size S] [--binary]
                            load an echo endpoint: N clients (default 10)
                            send S-byte messages (default 32) for D
                            (default 5s), check every echo, and report
                            round trips per second, latency and failures
  tsunagu load --help       show the flags of load
  tsunagu --help, -h        show this help
  tsunagu --version, -V     show the version

Flags of serve:
${flags}

${about}

Examples:
  tsunagu serve --port 9000 --mode broadcast
  tsunagu serve --mode chat --hostname 127.0.0.1
  tsunagu serve --static ./public --path /ws --log-format json
  tsunagu serve --cert cert.pem --key key.pem --port 8443

Exit codes: 0 success, 1 runtime failure (e.g. missing permission, port in
use), 2 invalid command line or unreadable --cert/--key/--static.
`;
}

/**
 * The line that follows an error, pointing at the help for `topic`.
 *
 * @example
 * ```ts
 * import { usageHint } from "@tsunagu/ws/cli";
 * console.log(usageHint("serve")); // Run 'tsunagu serve --help' for usage.
 * ```
 */
export function usageHint(topic: HelpTopic): string {
  return `Run 'tsunagu ${topic === "main" ? "" : `${topic} `}--help' for usage.`;
}
