/**
 * The arguments of the client commands, `tsunagu connect` and `tsunagu
 * load`: one ws(s) URL and a few flags each. Pure.
 *
 * @module
 */

import { type CliError, fail } from "./cli_error.ts";
import type { LoadOptions } from "./load_tool.ts";
import { parseDuration, parseSize } from "./values.ts";

/** What `tsunagu connect` runs with. */
export interface ConnectCommand {
  command: "connect";
  url: string;
  protocols: string[];
  wait: number;
  deflate: boolean;
}

/** What `tsunagu load` runs with. */
export interface LoadCommand {
  command: "load";
  options: LoadOptions;
}

type HelpCommand = { command: "help"; topic: "main" };

/** `--flag=value` as `[flag, value]`; anything else as `[arg, undefined]`. */
function splitFlag(arg: string): [string, string | undefined] {
  const equals = arg.indexOf("=");
  return arg.startsWith("--") && equals > 0 ? [arg.slice(0, equals), arg.slice(equals + 1)] : [
    arg,
    undefined,
  ];
}

/** Null when `url` is a ws:// or wss:// URL, else the error. */
function wsUrlProblem(url: string | undefined, command: string): CliError | null {
  if (url === undefined) return fail(`${command} needs a ws:// or wss:// URL`, "main");
  if (!/^wss?:\/\/[^/]/i.test(url) || !URL.canParse(url)) {
    return fail(
      `invalid URL ${JSON.stringify(url)} (expected ws://host[:port]/path or wss://…)`,
      "main",
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
  command: string,
  handle: FlagHandler,
): { url: string } | HelpCommand | CliError {
  let url: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") return { command: "help", topic: "main" };
    const [flag, inline] = splitFlag(arg);
    if (flag.startsWith("-")) {
      const handled = handle(flag, () => inline ?? args[++i] ?? "");
      if (handled === false) return fail(`unknown flag ${flag} for ${command}`, "main");
      if (handled !== true) return handled;
    } else if (url === undefined) {
      url = arg;
    } else {
      return fail(`unexpected argument ${JSON.stringify(arg)} (one URL only)`, "main");
    }
  }
  return wsUrlProblem(url, command) ?? { url: url! };
}

/** `tsunagu connect URL [--protocol P]… [--wait D] [--deflate]`. */
export function parseConnect(args: readonly string[]): ConnectCommand | HelpCommand | CliError {
  const protocols: string[] = [];
  let wait = 1000;
  let deflate = false;
  const parsed = parseUrlCommand(args, "connect", (flag, value) => {
    if (flag === "--protocol") {
      const protocol = value();
      if (protocol === "") return fail("missing value for --protocol", "main");
      protocols.push(protocol);
    } else if (flag === "--deflate") {
      deflate = true;
    } else if (flag === "--wait") {
      const duration = parseDuration(value());
      if (duration === null) {
        return fail("invalid value for --wait: expected a duration such as 2s", "main");
      }
      wait = duration;
    } else {
      return false;
    }
    return true;
  });
  if (!("url" in parsed)) return parsed;
  return { command: "connect", url: parsed.url, protocols, wait, deflate };
}

/** `tsunagu load URL [--clients N] [--duration D] [--size S] [--binary]`. */
export function parseLoad(args: readonly string[]): LoadCommand | HelpCommand | CliError {
  const options = { clients: 10, duration: 5000, size: 32, binary: false };
  const parsed = parseUrlCommand(args, "load", (flag, value) => {
    if (flag === "--clients") {
      const clients = Number(value());
      if (!Number.isInteger(clients) || clients < 1 || clients > 10_000) {
        return fail("invalid value for --clients: expected 1 to 10000", "main");
      }
      options.clients = clients;
    } else if (flag === "--duration") {
      const duration = parseDuration(value());
      if (duration === null || duration <= 0) {
        return fail("invalid value for --duration: expected a duration such as 10s", "main");
      }
      options.duration = duration;
    } else if (flag === "--size") {
      const size = parseSize(value());
      if (size === null) {
        return fail("invalid value for --size: expected a size such as 1kb", "main");
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
  return { command: "load", options: { url: parsed.url, ...options } };
}
