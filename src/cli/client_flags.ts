/**
 * The arguments of the client commands, `tsunagu connect` and `tsunagu
 * load`: one ws(s) URL and a few flags each. Pure.
 *
 * @module
 */

import { type CliError, fail } from "./cli_error.ts";
import type { LoadOptions } from "./load_tool.ts";
import { formatSize, parseDuration, parseSize } from "./values.ts";
import { CONNECTION_DEFAULTS } from "../connection/options.ts";

/**
 * The largest `--size` of `tsunagu load`: the largest message the client
 * accepts (its `maxPayload`), since every message comes back as an echo.
 */
export const MAX_LOAD_SIZE: number = CONNECTION_DEFAULTS.maxPayload;

/**
 * The most `--clients` × `--size` of `tsunagu load` may come to: each client
 * holds its message and the echo, so this bounds the tool's memory.
 */
export const MAX_LOAD_BYTES: number = 1024 ** 3;

/**
 * What `tsunagu connect` runs with.
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "@tsunagu/ws/cli";
 * const parsed = parseCliArgs(["connect", "ws://127.0.0.1:8080/", "--protocol", "chat"]);
 * if ("command" in parsed && parsed.command === "connect") console.log(parsed.protocols); // [ "chat" ]
 * ```
 */
export interface ConnectCommand {
  /** The command. */
  command: "connect";
  /** The ws:// or wss:// URL to connect to. */
  url: string;
  /** Subprotocols to offer (`--protocol`, repeatable). */
  protocols: string[];
  /** Milliseconds of quiet from the server after the end of stdin before closing (`--wait`). */
  wait: number;
  /** Whether to offer permessage-deflate (`--deflate`). */
  deflate: boolean;
  /** A PEM file of extra trusted certificates (a private CA) for `wss://`. */
  caFile?: string;
}

/**
 * What `tsunagu load` runs with.
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "@tsunagu/ws/cli";
 * const parsed = parseCliArgs(["load", "ws://127.0.0.1:8080/", "--clients", "4"]);
 * if ("command" in parsed && parsed.command === "load") console.log(parsed.options.clients); // 4
 * ```
 */
export interface LoadCommand {
  /** The command. */
  command: "load";
  /** What to run: URL, clients, duration, message size and kind. */
  options: LoadOptions;
}

type HelpCommand = { command: "help"; topic: "connect" | "load" };

/** `--flag=value` as `[flag, value]`; anything else as `[arg, undefined]`. */
function splitFlag(arg: string): [string, string | undefined] {
  const equals = arg.indexOf("=");
  return arg.startsWith("--") && equals > 0 ? [arg.slice(0, equals), arg.slice(equals + 1)] : [
    arg,
    undefined,
  ];
}

/** Null when `url` is a ws:// or wss:// URL, else the error. */
function wsUrlProblem(url: string | undefined, command: "connect" | "load"): CliError | null {
  if (url === undefined) return fail(`${command} needs a ws:// or wss:// URL`, command);
  if (!/^wss?:\/\/[^/]/i.test(url) || !URL.canParse(url)) {
    return fail(
      `invalid URL ${JSON.stringify(url)} (expected ws://host[:port]/path or wss://…)`,
      command,
    );
  }
  return null;
}

/**
 * Handles one flag of a client command: true when taken, false when
 * unknown, or the error for a bad value. `value()` takes the flag's value
 * (inline after `=`, or the next argument).
 */
type FlagHandler = (flag: string, value: () => string) => boolean | CliError;

/** Walks `tsunagu <command> URL [flags]`: one ws(s) URL, flags through `handle`. */
function parseUrlCommand(
  args: readonly string[],
  command: "connect" | "load",
  handle: FlagHandler,
): { url: string } | HelpCommand | CliError {
  // --help wins over a mistake next to it: the user is asking how to fix it.
  if (args.some((arg) => arg === "--help" || arg === "-h")) {
    return { command: "help", topic: command };
  }
  let url: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [flag, inline] = splitFlag(arg);
    if (flag.startsWith("-")) {
      const handled = handle(flag, () => inline ?? args[++i] ?? "");
      if (handled === false) return fail(`unknown flag ${flag} for ${command}`, command);
      if (handled !== true) return handled;
    } else if (url === undefined) {
      url = arg;
    } else {
      return fail(`unexpected argument ${JSON.stringify(arg)} (one URL only)`, command);
    }
  }
  return wsUrlProblem(url, command) ?? { url: url! };
}

/** `tsunagu connect URL [--protocol P]… [--wait D] [--deflate] [--ca FILE]`. */
export function parseConnect(args: readonly string[]): ConnectCommand | HelpCommand | CliError {
  const protocols: string[] = [];
  let wait = 1000;
  let deflate = false;
  let caFile: string | undefined;
  const parsed = parseUrlCommand(args, "connect", (flag, value) => {
    if (flag === "--protocol") {
      const protocol = value();
      if (protocol === "") return fail("missing value for --protocol", "connect");
      protocols.push(protocol);
    } else if (flag === "--deflate") {
      deflate = true;
    } else if (flag === "--wait") {
      const duration = parseDuration(value());
      if (duration === null) {
        return fail("invalid value for --wait: expected a duration such as 2s", "connect");
      }
      wait = duration;
    } else if (flag === "--ca") {
      caFile = value();
      if (caFile === "") return fail("missing value for --ca: expected a PEM file", "connect");
    } else {
      return false;
    }
    return true;
  });
  if (!("url" in parsed)) return parsed;
  if (caFile !== undefined && !parsed.url.toLowerCase().startsWith("wss:")) {
    return fail("--ca is for wss:// URLs (it adds a trusted certificate for TLS)", "connect");
  }
  const command: ConnectCommand = { command: "connect", url: parsed.url, protocols, wait, deflate };
  if (caFile !== undefined) command.caFile = caFile;
  return command;
}

/** `tsunagu load URL [--clients N] [--duration D] [--size S] [--binary]`. */
export function parseLoad(args: readonly string[]): LoadCommand | HelpCommand | CliError {
  const options = { clients: 10, duration: 5000, size: 32, binary: false };
  const parsed = parseUrlCommand(args, "load", (flag, value) => {
    if (flag === "--clients") {
      const clients = Number(value());
      if (!Number.isInteger(clients) || clients < 1 || clients > 10_000) {
        return fail("invalid value for --clients: expected 1 to 10000", "load");
      }
      options.clients = clients;
    } else if (flag === "--duration") {
      const duration = parseDuration(value());
      if (duration === null || duration <= 0) {
        return fail("invalid value for --duration: expected a duration such as 10s", "load");
      }
      options.duration = duration;
    } else if (flag === "--size") {
      const size = parseSize(value());
      if (size === null) {
        return fail("invalid value for --size: expected a size such as 1kb", "load");
      }
      if (size > MAX_LOAD_SIZE) {
        return fail(
          `invalid value for --size: at most ${formatSize(MAX_LOAD_SIZE)}, the largest echo ` +
            `the client accepts`,
          "load",
        );
      }
      options.size = size;
    } else if (flag === "--binary") {
      options.binary = true;
    } else {
      return false;
    }
    return true;
  });
  if (!("url" in parsed)) return parsed;
  if (options.clients * options.size > MAX_LOAD_BYTES) {
    return fail(
      `--clients × --size is ${formatSize(options.clients * options.size)}: at most ` +
        `${formatSize(MAX_LOAD_BYTES)}, since each client holds its message and the echo`,
      "load",
    );
  }
  return { command: "load", options: { url: parsed.url, ...options } };
}

/** The help text of `tsunagu connect` (without the title line). */
export const CONNECT_HELP = `Usage: tsunagu connect URL [flags]

Connects to URL (ws:// or wss://) as a client: each line of stdin is sent
as a text message, each message received is printed on stdout (binary ones
as <binary N bytes>), and status lines go to stderr. At the end of stdin it
closes with 1000 once the server has been quiet for --wait.

Flags:
  --protocol NAME     offer a subprotocol; repeat for several, in order of
                      preference (default: none)
  --deflate           offer permessage-deflate compression (default: off)
  --wait DURATION     how long the server must be quiet after stdin ends
                      before closing (default: 1s)
  --ca FILE           trust the certificates in this PEM file too, for a
                      wss:// server with a private CA or a self-signed
                      certificate (needs --allow-read) (default: none)
  -h, --help          show this help

Example:
  echo '{"name":"ann","text":"hi"}' | tsunagu connect ws://127.0.0.1:8080/chat

Exit codes: 0 after a clean close, 1 when the connection fails or ends
abnormally, 2 invalid command line or unreadable --ca file.
`;

/** The help text of `tsunagu load` (without the title line). */
export const LOAD_HELP = `Usage: tsunagu load URL [flags]

Loads an echo endpoint: each client sends a message, waits for the echo,
checks it byte for byte and repeats until the time is up; then one line
reports round trips per second, p50 and p99 latency and errors, followed by
what failed, if anything (close codes, wrong replies, refused connections).
Runs of 3 s or more print progress on stderr once a second.

Flags:
  --clients N         concurrent connections, 1 to 10000 (default: 10)
  --duration DURATION how long to send (default: 5s)
  --size SIZE         bytes per message, at most ${formatSize(MAX_LOAD_SIZE)} (the largest echo
                      the client accepts); --clients × --size at most
                      ${formatSize(MAX_LOAD_BYTES)} (default: 32)
  --binary            send binary messages instead of text (default: off)
  -h, --help          show this help

Sizes are bytes, or a number with a unit: kb, mb, gb (1kb = 1024 bytes).
Durations are seconds, or a number with a unit: ms, s, m, h.

Example:
  tsunagu load ws://127.0.0.1:8080/echo --clients 50 --duration 10s --size 1kb

Exit codes: 0 when every round trip was right, 1 on any failure (the
summary says which), 2 invalid command line.
`;
