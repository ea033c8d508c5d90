/**
 * The flags of `tsunagu serve`: one table drives both parsing and the help
 * text, so the two cannot disagree. Pure: nothing here touches the file
 * system or the network.
 *
 * @module
 */

import { CHAT_SOCKET_PATH } from "./chat.ts";
import { type CliError, fail } from "./cli_error.ts";
import { formatDuration, formatSize, parseDuration, parseSize } from "./values.ts";
import { MIN_DURATION_MS } from "../connection/options.ts";
import { DEFAULTS } from "../server/options.ts";
import { parseRedisUrl } from "../server/redis_connection.ts";

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
  /**
   * Subprotocols the server speaks: of those a client offers, the first
   * (in the client's order) that is listed here is chosen. Empty: none.
   */
  protocols: readonly string[];
  /**
   * Origins (`scheme://host[:port]`) whose pages may connect; an upgrade
   * with another `Origin` gets 403. Empty: any. Requests without an
   * `Origin` header (not from a browser) are accepted.
   */
  origins: readonly string[];
  /** When set, plain HTTP requests are answered with files from this directory. */
  staticDir?: string;
  /** When set, GET on this path answers the server's metrics in Prometheus text format. */
  metricsPath?: string;
  /** When set, GET on this path answers 200 "ok" (for load balancer health checks). */
  healthPath?: string;
  /** Largest message in bytes; a larger one closes the connection with 1009. */
  maxPayload: number;
  /**
   * Open connections allowed (`Infinity` for no limit); upgrades beyond get
   * 503. Unset: the library's default, from the open-file limit.
   */
  maxConnections?: number;
  /** Milliseconds of silence after which a connection is closed with 1001; 0 disables. */
  idleTimeout: number;
  /** Path of the PEM certificate chain file (with {@linkcode ServeConfig.keyFile}: wss). */
  certFile?: string;
  /** Path of the PEM private key file. */
  keyFile?: string;
  /** Log line format. */
  logFormat: LogFormat;
  /** Whether to leave out the per-connection and per-request log lines. */
  quiet: boolean;
  /** Whether to accept permessage-deflate (compression) when clients offer it. */
  deflate: boolean;
  /** Whether to share the port with other tsunagu processes (SO_REUSEPORT). */
  reusePort: boolean;
  /** Servers to run on the port, one per worker, sharing rooms (1: no workers). */
  workers: number;
  /**
   * When set, rooms span every server on this Redis (`redis://` or
   * `rediss://`); the password may come from `TSUNAGU_REDIS_PASSWORD`.
   */
  redisUrl?: string;
  /** Redis channel prefix for the rooms. */
  redisPrefix: string;
}

/** The defaults of `tsunagu serve`, as the help text shows them. */
export const SERVE_DEFAULTS: Readonly<ServeConfig> = {
  // The library's defaults, so the CLI and serve() can never disagree.
  port: DEFAULTS.port,
  hostname: DEFAULTS.hostname,
  mode: "echo",
  maxPayload: DEFAULTS.maxPayload,
  idleTimeout: DEFAULTS.idleTimeout,
  logFormat: "text",
  quiet: false,
  deflate: false,
  reusePort: false,
  workers: 1,
  protocols: [],
  origins: [],
  redisPrefix: "tsunagu:",
};

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
    help: "open connections allowed; more get 503\n(auto: the open-file limit less a reserve)",
    shown: "auto",
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
      // As serve() requires: under 100 ms is no useful timeout (0 turns it off).
      if (ms > 0 && ms < MIN_DURATION_MS) return "expected 0 (off) or at least 100ms";
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
    name: "protocol",
    value: "NAME",
    help: "a subprotocol to speak (repeatable): the\nfirst the client offers that is listed",
    shown: "none",
    set(config, value) {
      // RFC 6455 §4.1: a subprotocol is an HTTP token.
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(value)) return "expected a token such as chat.v1";
      config.protocols = [...config.protocols, value];
    },
  },
  {
    name: "origin",
    value: "ORIGIN",
    help: "allow browser pages from ORIGIN only\n(repeatable; others get 403)",
    shown: "any",
    set(config, value) {
      const origin = value.replace(/\/$/, "").toLowerCase();
      if (!URL.canParse(origin) || new URL(origin).origin !== origin) {
        return "expected an origin such as https://example.com (scheme, host, optional port)";
      }
      config.origins = [...config.origins, origin];
    },
  },
  {
    name: "workers",
    value: "N",
    help: "run N servers in workers on the port,\nrooms shared; auto: one per core\n" +
      "(needs deno --unstable-net)",
    shown: "1",
    set(config, value) {
      if (value === "auto") {
        config.workers = Math.max(1, navigator.hardwareConcurrency || 1);
        return;
      }
      const workers = Number(value);
      if (!/^\d+$/.test(value) || workers < 1 || workers > 256) {
        return "expected auto or an integer from 1 to 256";
      }
      config.workers = workers;
    },
  },
  {
    name: "redis",
    value: "URL",
    help: "share rooms with every server on this Redis:\n" +
      "redis://[user:password@]host[:port][/db]\n" +
      "or rediss:// (TLS); the password may come\nfrom TSUNAGU_REDIS_PASSWORD instead",
    shown: "off",
    set(config, value) {
      try {
        parseRedisUrl(value);
      } catch (error) {
        return (error as Error).message;
      }
      config.redisUrl = value;
    },
  },
  {
    name: "redis-prefix",
    value: "PREFIX",
    help: "Redis channel name prefix for rooms",
    shown: SERVE_DEFAULTS.redisPrefix,
    set(config, value) {
      config.redisPrefix = value;
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
    help: "leave out the per-connection and\nper-request log lines",
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
/** Parses the arguments after `serve`. */
export function parseServe(
  args: readonly string[],
): { command: "serve"; config: ServeConfig } | { command: "help"; topic: "serve" } | CliError {
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

const HELP_INDENT = 32;
const HELP_WIDTH = 80;

/** The flags of `serve` with their help and defaults, as `--help` shows them. */
export function flagTable(): string {
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
