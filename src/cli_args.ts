/**
 * Command-line parsing for `tsunagu`: a pure function from the argument list
 * to a command (or one error message), the size and duration syntax, and the
 * help texts. Nothing here touches the file system or the network, so all of
 * it is unit-testable; `src/cli.ts` does the running.
 *
 * @module
 */

import { CHAT_SOCKET_PATH } from "./chat.ts";
import type { LoadOptions } from "./load_tool.ts";
import { DEFAULTS } from "./options.ts";

/**
 * What `--mode` selects.
 *
 * - `echo`: every message comes back to its sender, on any path.
 * - `broadcast`: every message goes to every client on the same path.
 * - `chat`: serves the chat page on `/`; its messages go to everyone on the
 *   same path (the page uses `/chat`).
 *
 * @example
 * ```ts
 * import type { Mode } from "@tsunagu/ws/cli";
 * const mode: Mode = "broadcast";
 * ```
 */
export type Mode = "echo" | "broadcast" | "chat";

/**
 * How log lines are written: `text` for people, `json` for one JSON object
 * per line.
 *
 * @example
 * ```ts
 * import type { LogFormat } from "@tsunagu/ws/cli";
 * const format: LogFormat = "json";
 * ```
 */
export type LogFormat = "text" | "json";

/**
 * The settings of `tsunagu serve`, after parsing and validation.
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "@tsunagu/ws/cli";
 * const parsed = parseCliArgs(["serve", "--port", "9000"]);
 * if ("command" in parsed && parsed.command === "serve") console.log(parsed.config.port); // 9000
 * ```
 */
export interface ServeConfig {
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Interface to listen on. */
  hostname: string;
  /** What the server does with messages. */
  mode: Mode;
  /** When set, upgrades are accepted only on this path; others get 404. */
  path?: string;
  /** When set, plain HTTP requests are answered with files from this directory. */
  staticDir?: string;
  /** When set, GET on this path answers the server's metrics in Prometheus text format. */
  metricsPath?: string;
  /** When set, GET on this path answers 200 "ok" (for load balancer health checks). */
  healthPath?: string;
  /** Largest message in bytes; a larger one closes the connection with 1009. */
  maxPayload: number;
  /** Open connections allowed (`Infinity` for no limit); upgrades beyond get 503. */
  maxConnections: number;
  /** Milliseconds of silence after which a connection is closed with 1001; 0 disables. */
  idleTimeout: number;
  /** Path of the PEM certificate chain file (with {@linkcode ServeConfig.keyFile}: wss). */
  certFile?: string;
  /** Path of the PEM private key file. */
  keyFile?: string;
  /** Log line format. */
  logFormat: LogFormat;
  /** Whether to leave out the per-connection log lines. */
  quiet: boolean;
  /** Whether to accept permessage-deflate (compression) when clients offer it. */
  deflate: boolean;
  /** Whether to share the port with other tsunagu processes (SO_REUSEPORT). */
  reusePort: boolean;
}

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
  | { command: "connect"; url: string; protocols: string[]; wait: number; deflate: boolean }
  | { command: "load"; options: LoadOptions };

/**
 * Which help text to show: the overview or the `serve` command's.
 *
 * @example
 * ```ts
 * import { usage, type HelpTopic } from "@tsunagu/ws/cli";
 * const topic: HelpTopic = "serve";
 * console.log(usage(topic));
 * ```
 */
export type HelpTopic = "main" | "serve";

/**
 * A command line that cannot run: one message for the user (no `tsunagu:`
 * prefix) and the help topic the usage hint should point to.
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "@tsunagu/ws/cli";
 * const parsed = parseCliArgs(["serve", "--port", "99999"]);
 * if ("error" in parsed) console.log(parsed.error); // invalid value "99999" for --port: …
 * ```
 */
export interface CliError {
  /** What is wrong, in one line. */
  error: string;
  /** The help topic for the usage hint. */
  topic: HelpTopic;
}

/** The defaults of `tsunagu serve`, as the help text shows them. */
export const SERVE_DEFAULTS: Readonly<ServeConfig> = {
  // The library's defaults, so the CLI and serve() can never disagree.
  port: DEFAULTS.port,
  hostname: DEFAULTS.hostname,
  mode: "echo",
  maxPayload: DEFAULTS.maxPayload,
  maxConnections: DEFAULTS.maxConnections,
  idleTimeout: DEFAULTS.idleTimeout,
  logFormat: "text",
  quiet: false,
  deflate: false,
  reusePort: false,
};

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

const DURATION_UNITS: Record<string, number> = {
  "": 1000,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

function parseWithUnits(text: string, units: Record<string, number>): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (match === null) return null;
  const unit = units[match[2].toLowerCase()];
  if (unit === undefined) return null;
  const value = Math.floor(Number(match[1]) * unit);
  return Number.isSafeInteger(value) ? value : null;
}

/**
 * Parses a size: a number of bytes, or a number with a binary unit — `k`,
 * `kb`, `kib` (1024), `m`, `mb`, `mib` (1024²), `g`, `gb`, `gib` (1024³),
 * any case. Fractions are rounded down to whole bytes. Returns `null` when
 * the text is not a size.
 *
 * @example
 * ```ts
 * import { parseSize } from "@tsunagu/ws/cli";
 * console.log(parseSize("16mb")); // 16777216
 * console.log(parseSize("1.5k")); // 1536
 * console.log(parseSize("lots")); // null
 * ```
 */
export function parseSize(text: string): number | null {
  return parseWithUnits(text, SIZE_UNITS);
}

/**
 * Parses a duration into milliseconds: a number of seconds, or a number with
 * a unit — `ms`, `s`, `m` (minutes), `h`. Returns `null` when the text is not
 * a duration.
 *
 * @example
 * ```ts
 * import { parseDuration } from "@tsunagu/ws/cli";
 * console.log(parseDuration("30s")); // 30000
 * console.log(parseDuration("90")); // 90000 (plain numbers are seconds)
 * console.log(parseDuration("250ms")); // 250
 * ```
 */
export function parseDuration(text: string): number | null {
  return parseWithUnits(text, DURATION_UNITS);
}

/** Formats a byte count the way sizes are written on the command line. */
function formatSize(bytes: number): string {
  for (const [unit, size] of [["gb", 1024 ** 3], ["mb", 1024 ** 2], ["kb", 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}`;
}

/** Formats milliseconds the way durations are written on the command line. */
function formatDuration(ms: number): string {
  if (ms === 0) return "0 (off)";
  if (ms % 1000 !== 0) return `${ms}ms`;
  return `${ms / 1000}s`;
}

type Setter = (config: ServeConfig, value: string) => string | undefined;

interface FlagSpec {
  /** Long name without dashes. */
  name: string;
  short?: string;
  /** Placeholder for the value; absent for switches. */
  value?: string;
  help: string;
  /** The default, as shown in the help. */
  shown: string;
  /** Stores the value; returns an error reason when it is invalid. */
  set: Setter;
}

function oneOf<K extends "mode" | "logFormat">(key: K, choices: readonly ServeConfig[K][]): Setter {
  return (config, value) => {
    if (!(choices as readonly string[]).includes(value)) return `expected ${choices.join(", ")}`;
    config[key] = value as ServeConfig[K];
  };
}

/** A setter for a URL path (starts with /, no query); `example` goes into the error message. */
function urlPath<K extends "path" | "metricsPath" | "healthPath">(key: K, example: string): Setter {
  return (config, value) => {
    if (!value.startsWith("/") || /[?#\s]/.test(value)) {
      return `expected a URL path such as ${example} (starting with /, no query)`;
    }
    config[key] = value;
  };
}

function text<K extends "hostname" | "staticDir" | "certFile" | "keyFile">(
  key: K,
): Setter {
  return (config, value) => {
    if (value === "") return "expected a non-empty value";
    config[key] = value;
  };
}

const FLAGS: readonly FlagSpec[] = [
  {
    name: "port",
    short: "p",
    value: "N",
    help: "TCP port to listen on; 0 picks a free one",
    shown: `${SERVE_DEFAULTS.port}`,
    set(config, value) {
      const port = Number(value);
      if (!/^\d+$/.test(value) || port > 65535) return "expected an integer from 0 to 65535";
      config.port = port;
    },
  },
  {
    name: "hostname",
    value: "HOST",
    help: "interface to listen on\n(127.0.0.1: this machine only)",
    shown: SERVE_DEFAULTS.hostname,
    set: text("hostname"),
  },
  {
    name: "mode",
    value: "MODE",
    help: "echo: messages come back to their sender\n" +
      "broadcast: each message goes to every client\n" +
      "  on the same path\n" +
      "chat: serves a chat page on /; rooms by path\n" +
      "  (the page connects to /chat)",
    shown: SERVE_DEFAULTS.mode,
    set: oneOf("mode", ["echo", "broadcast", "chat"]),
  },
  {
    name: "path",
    value: "PATH",
    help: "accept upgrades only on PATH; others get 404",
    shown: "any path",
    set: urlPath("path", "/ws"),
  },
  {
    name: "metrics",
    value: "PATH",
    help: "answer GET PATH with Prometheus metrics\n(connections, messages, bytes, close codes)",
    shown: "off",
    set: urlPath("metricsPath", "/metrics"),
  },
  {
    name: "health",
    value: "PATH",
    help: "answer GET PATH with 200 ok, for load\nbalancer health checks",
    shown: "off",
    set: urlPath("healthPath", "/healthz"),
  },
  {
    name: "static",
    value: "DIR",
    help: "answer plain HTTP GET/HEAD with files in DIR\n" +
      "(index.html for directories; dotfiles and\n" +
      "paths that leave DIR are refused)",
    shown: "none",
    set: text("staticDir"),
  },
  {
    name: "max-payload",
    value: "SIZE",
    help: "largest message accepted; a larger one\ncloses the connection with 1009",
    shown: formatSize(SERVE_DEFAULTS.maxPayload),
    set(config, value) {
      const size = parseSize(value);
      if (size === null || size < 1) {
        return "expected a size of at least 1 byte, such as 64kb or 16mb";
      }
      config.maxPayload = size;
    },
  },
  {
    name: "max-connections",
    value: "N",
    help: "open connections allowed; more get 503",
    shown: "unlimited",
    set(config, value) {
      if (value === "unlimited") {
        config.maxConnections = Infinity;
        return;
      }
      const count = Number(value);
      if (!/^\d+$/.test(value) || count < 1 || !Number.isSafeInteger(count)) {
        return 'expected a whole number of at least 1, or "unlimited"';
      }
      config.maxConnections = count;
    },
  },
  {
    name: "idle-timeout",
    value: "DURATION",
    help: "close connections silent this long\nwith 1001; 0 disables",
    shown: formatDuration(SERVE_DEFAULTS.idleTimeout),
    set(config, value) {
      const ms = parseDuration(value);
      if (ms === null) return "expected a duration such as 30s, 5m or 0";
      config.idleTimeout = ms;
    },
  },
  {
    name: "cert",
    value: "FILE",
    help: "PEM certificate chain; with --key,\nserve wss:// (and https://)",
    shown: "none",
    set: text("certFile"),
  },
  {
    name: "key",
    value: "FILE",
    help: "PEM private key for --cert",
    shown: "none",
    set: text("keyFile"),
  },
  {
    name: "deflate",
    help: "compress messages of 1 KiB and more for\nclients that offer permessage-deflate",
    shown: "off",
    set(config) {
      config.deflate = true;
    },
  },
  {
    name: "reuse-port",
    help: "share the port with other tsunagu processes\n(one per core; needs deno --unstable-net)",
    shown: "off",
    set(config) {
      config.reusePort = true;
    },
  },
  {
    name: "log-format",
    value: "FORMAT",
    help: "text, or json: one JSON object a line",
    shown: SERVE_DEFAULTS.logFormat,
    set: oneOf("logFormat", ["text", "json"]),
  },
  {
    name: "quiet",
    short: "q",
    help: "leave out the per-connection log lines",
    shown: "off",
    set(config) {
      config.quiet = true;
    },
  },
];

function findFlag(arg: string): FlagSpec | undefined {
  if (arg.startsWith("--")) return FLAGS.find((flag) => flag.name === arg.slice(2));
  return FLAGS.find((flag) => flag.short !== undefined && arg === `-${flag.short}`);
}

function fail(error: string, topic: HelpTopic = "serve"): CliError {
  return { error, topic };
}

function parseServe(args: readonly string[]): CliCommand | CliError {
  if (args.includes("--help") || args.includes("-h")) return { command: "help", topic: "serve" };
  const config: ServeConfig = { ...SERVE_DEFAULTS };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("-") || arg === "-" || arg === "--") {
      return fail(`unexpected argument ${JSON.stringify(arg)}`);
    }
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const flag = findFlag(name);
    if (flag === undefined) return fail(`unknown flag ${name}`);
    let value: string;
    if (flag.value === undefined) {
      if (eq > 0) return fail(`${name} takes no value`);
      value = "";
    } else if (eq > 0) {
      value = arg.slice(eq + 1);
    } else {
      const next = args[i + 1];
      if (next === undefined || next.startsWith("--")) {
        return fail(`missing value for ${name} (expected ${flag.value})`);
      }
      value = next;
      i++;
    }
    const reason = flag.set(config, value);
    if (reason !== undefined) {
      return fail(`invalid value ${JSON.stringify(value)} for --${flag.name}: ${reason}`);
    }
  }
  if ((config.certFile === undefined) !== (config.keyFile === undefined)) {
    return fail("--cert and --key must be given together");
  }
  if (config.mode === "chat" && config.path !== undefined && config.path !== CHAT_SOCKET_PATH) {
    return fail(
      "--mode chat: the chat page connects to /chat, so --path must be /chat or left out",
    );
  }
  return { command: "serve", config };
}

/**
 * Parses the arguments of `tsunagu` (without the program name). Never
 * throws: a command line that cannot run gives a {@linkcode CliError}.
 *
 * Values follow their flag as `--port 9000` or `--port=9000`; a flag given
 * twice keeps the last value. `-h`/`--help` anywhere after `serve` asks for
 * the `serve` help.
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
      return fail("missing command (expected serve)", "main");
    case "serve":
      return parseServe(rest);
    case "connect":
      return parseConnect(rest);
    case "load":
      return parseLoad(rest);
    case "help":
    case "--help":
    case "-h":
      return rest[0] === "serve" ? { command: "help", topic: "serve" } : {
        command: "help",
        topic: "main",
      };
    case "version":
    case "--version":
    case "-V":
      return { command: "version" };
    default:
      return first.startsWith("-")
        ? fail(`unknown flag ${first.split("=")[0]}`, "main")
        : fail(`unknown command ${JSON.stringify(first)} (expected serve)`, "main");
  }
}

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
): { url: string } | CliCommand | CliError {
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
function parseConnect(args: readonly string[]): CliCommand | CliError {
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
function parseLoad(args: readonly string[]): CliCommand | CliError {
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

const HELP_INDENT = 32;
const HELP_WIDTH = 80;

function flagTable(): string {
  const pad = " ".repeat(HELP_INDENT);
  const rows = FLAGS.map((flag) => {
    const names = `${flag.short ? `-${flag.short}, ` : "    "}--${flag.name}`;
    const left = `  ${flag.value ? `${names} ${flag.value}` : names}`.padEnd(HELP_INDENT);
    const lines = flag.help.split("\n").map((line, i) => (i === 0 ? left : pad) + line);
    const shown = ` (default: ${flag.shown})`;
    if (lines[lines.length - 1].length + shown.length <= HELP_WIDTH) {
      lines[lines.length - 1] += shown;
    } else lines.push(pad + shown.trimStart());
    return lines.join("\n");
  });
  rows.push(`${"  -h, --help".padEnd(HELP_INDENT)}show this help`);
  return rows.join("\n");
}

const VALUE_NOTES = `Sizes are bytes, or a number with a unit: kb, mb, gb (binary: 1kb = 1024
bytes; k/kib, m/mib, g/gib also work), e.g. 512kb, 16mb, 1.5gb.
Durations are seconds, or a number with a unit: ms, s, m, h, e.g. 500ms,
30s, 5m. Values follow their flag as --port 9000 or --port=9000.`;

/**
 * The help text for a topic: the overview (`tsunagu --help`) or the `serve`
 * command (`tsunagu serve --help`). Both list every flag with its default.
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
                            connect as a client: each line of stdin is sent
                            as a text message, each message received is
                            printed (binary as <binary N bytes>); at the end
                            of stdin, close once the server has been quiet
                            for --wait (default 1s); --deflate offers
                            compression
  tsunagu load URL [--clients N] [--duration D] [--size S] [--binary]
                            load an echo endpoint: N clients (default 10)
                            send S-byte messages (default 32) for D
                            (default 5s), check every echo, and report
                            round trips per second and latency
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
  return `Run 'tsunagu ${topic === "serve" ? "serve " : ""}--help' for usage.`;
}
