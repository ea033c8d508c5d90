/**
 * The CLI's log lines: `text` for people, `json` for one JSON object per line
 * (with `time`, `level`, `event` and `message` first, then the event's fields). Lines go to the writers given, so
 * tests can collect them.
 *
 * @module
 */

import type { LogFormat } from "./serve_flags.ts";

/** Extra fields of a log line; values must be JSON-serialisable. */
export type LogFields = Record<string, string | number | boolean | string[] | undefined>;

/** Where and how the {@linkcode Logger} writes. */
export interface LoggerOptions {
  /** `text` or `json`. */
  format: LogFormat;
  /** Leave out per-connection and per-request lines ({@linkcode Logger.connection}). */
  quiet: boolean;
  /** Writes one line (without newline) for info lines. */
  out: (line: string) => void;
  /** Writes one line (without newline) for error lines. */
  err: (line: string) => void;
  /** The clock; defaults to the real one. */
  now?: () => Date;
}

/**
 * Writes the CLI's log lines.
 *
 * @example
 * ```ts
 * import { Logger } from "./logger.ts";
 * const lines: string[] = [];
 * const log = new Logger({ format: "json", quiet: false, out: (l) => lines.push(l), err: console.error });
 * log.connection("open", "open 127.0.0.1:5000 /chat", { peer: "127.0.0.1:5000", path: "/chat" });
 * console.log(JSON.parse(lines[0]).event); // "open"
 * ```
 */
export class Logger {
  #options: LoggerOptions;

  /** Creates a logger writing through `options.out` and `options.err`. */
  constructor(options: LoggerOptions) {
    this.#options = options;
  }

  /** Whether per-connection and per-request lines are left out. */
  get quiet(): boolean {
    return this.#options.quiet;
  }

  /** A line always shown (start-up, shutdown). `message` is the text form. */
  info(event: string, message: string, fields: LogFields = {}): void {
    this.#options.out(this.#format("info", event, message, fields));
  }

  /** A per-connection or per-request line: left out when quiet. */
  connection(event: string, message: string, fields: LogFields = {}): void {
    if (!this.#options.quiet) this.#options.out(this.#format("info", event, message, fields));
  }

  /** An error line, written to the error writer. */
  error(event: string, message: string, fields: LogFields = {}): void {
    this.#options.err(this.#format("error", event, message, fields));
  }

  #format(level: string, event: string, message: string, fields: LogFields): string {
    const time = (this.#options.now?.() ?? new Date()).toISOString();
    if (this.#options.format === "json") {
      return JSON.stringify({ time, level, event, message, ...fields });
    }
    return `${time} ${level === "error" ? "error: " : ""}${message}`;
  }
}

/**
 * Formats an address as `host:port`, bracketing IPv6 hosts.
 *
 * @example
 * ```ts
 * import { formatAddr } from "./logger.ts";
 * console.log(formatAddr({ transport: "tcp", hostname: "::1", port: 80 })); // [::1]:80
 * ```
 */
export function formatAddr(addr: Deno.NetAddr): string {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `${host}:${addr.port}`;
}
