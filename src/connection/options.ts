/**
 * What one open connection needs to know, whichever end opened it: its
 * limits and timeouts ({@linkcode ConnectionOptions}) and the application's
 * callbacks ({@linkcode SocketHandlers}). The server's options and handlers
 * extend these with what only a server has (port, TLS, `upgrade`, `fetch`);
 * the client's options map onto them.
 *
 * @module
 */

import type { Socket } from "./socket.ts";

/**
 * Limits and timeouts of one WebSocket connection. Durations are
 * milliseconds (1 to 99 are refused as a likely slip for seconds); sizes
 * are bytes. See the README's "Limits and security"
 * section for why each default was chosen.
 *
 * @example
 * ```ts
 * import { type ConnectionOptions, serve } from "@tsunagu/ws";
 * const limits: ConnectionOptions = { maxPayload: 1 << 20, idleTimeout: 60_000 };
 * const server = serve({ port: 0, hostname: "127.0.0.1", ...limits });
 * await server.shutdown();
 * ```
 */
export interface ConnectionOptions {
  /**
   * Largest message accepted, in bytes, after reassembly of fragments.
   * Larger ones close the connection with 1009 as soon as a frame header
   * announces them. Default 16 MiB.
   */
  maxPayload?: number;
  /**
   * Bytes a connection may have waiting to be sent before further sends are
   * refused and the connection is closed with 1008 (a peer that does not read
   * must not grow memory without bound). A single message larger than the
   * limit is still accepted when the buffer is below it. Default 16 MiB.
   */
  maxBufferedAmount?: number;
  /**
   * Milliseconds without any frame from the peer (data, ping or pong) after
   * which the connection is closed with 1001. A plain HTTP response whose
   * writes make no progress for this long is dropped too. 0 disables.
   * Default 120 000.
   */
  idleTimeout?: number;
  /** Milliseconds between heartbeat pings. 0 disables. Default 30 000. */
  pingInterval?: number;
  /** Milliseconds to wait for the pong to a heartbeat before dropping the peer (1006). Default 10 000. */
  pongTimeout?: number;
  /** Milliseconds to wait for the peer's close frame (and for queued data to drain) after we send ours. Default 5 000. */
  closeTimeout?: number;
  /**
   * What the `message` handler receives for a binary message:
   * - `"copy"` (default): a `Uint8Array` of its own, the handler's to keep.
   * - `"view"`: a view of the connection's receive memory, valid only until
   *   the handler returns (or reaches its first `await`); the same memory
   *   then holds later messages. Sending it (`send`, `publish`) during the
   *   call is safe: sends copy, except that the view sent straight back on
   *   its own connection is written from where it lies (do not change its
   *   bytes after sending them). Keep anything longer with `data.slice()`.
   *   This is uWebSockets' model, and it saves an allocation per message:
   *   for messages of many KiB the fresh memory (zeroed and page-faulted
   *   in) costs more than the rest of receiving them (bench/RESULTS.md,
   *   "Large messages"). Event listeners and async iterators get a copy
   *   either way.
   *
   * Text messages are strings and always the handler's to keep.
   */
  binaryMessages?: "copy" | "view";
}

/** Connection options after defaults are applied. */
export type ResolvedConnectionOptions = Required<ConnectionOptions>;

/** The defaults, as documented on {@linkcode ConnectionOptions}. */
export const CONNECTION_DEFAULTS: ResolvedConnectionOptions = {
  maxPayload: 16 * 1024 * 1024,
  maxBufferedAmount: 16 * 1024 * 1024,
  idleTimeout: 120_000,
  pingInterval: 30_000,
  pongTimeout: 10_000,
  closeTimeout: 5_000,
  binaryMessages: "copy",
};

/**
 * Checks that `value` is a number >= 0, naming the option otherwise.
 *
 * @throws {RangeError} for a negative or non-numeric value.
 */
export function checkNonNegative(name: string, value: number): number {
  if (typeof value !== "number" || Number.isNaN(value) || value < 0) {
    throw new RangeError(`${name} must be a number >= 0, got ${value}`);
  }
  return value;
}

/** The smallest non-zero duration accepted, in milliseconds. */
export const MIN_DURATION_MS = 100;

/**
 * Checks a duration option: a number of milliseconds >= 0, where a value
 * from 1 to 99 is refused. Durations are milliseconds everywhere, as in
 * `setTimeout`; other servers (Bun's `idleTimeout: 120`) take seconds, and
 * a value written in seconds would otherwise act at once — `idleTimeout:
 * 120` would close every client after 0.12 s without a word. No timeout
 * this short is useful on a network, so the mistake is caught instead.
 *
 * @throws {RangeError} for a negative or non-numeric value.
 * @throws {TypeError} for a value from 1 to 99 ms, naming the option.
 */
export function checkDuration(name: string, value: number): number {
  checkNonNegative(name, value);
  if (value > 0 && value < MIN_DURATION_MS) {
    throw new TypeError(
      `${name} is in milliseconds: ${value} ms is too short to be meant ` +
        `(for ${value} s write ${
          value * 1000
        }); use 0 to turn it off or at least ${MIN_DURATION_MS}`,
    );
  }
  return value;
}

/** The options of {@linkcode ConnectionOptions} that are durations (ms). */
const DURATIONS: ReadonlySet<string> = new Set([
  "idleTimeout",
  "pingInterval",
  "pongTimeout",
  "closeTimeout",
]);

/**
 * Applies the connection defaults to `options` (undefined fields take the
 * default) and checks ranges.
 *
 * @throws {RangeError} for a negative or non-numeric value.
 * @throws {TypeError} for a duration from 1 to 99 ms (see {@linkcode checkDuration}).
 */
export function resolveConnectionOptions(options: ConnectionOptions): ResolvedConnectionOptions {
  const resolved = { ...CONNECTION_DEFAULTS };
  for (const name of Object.keys(CONNECTION_DEFAULTS) as (keyof ConnectionOptions)[]) {
    const value = options[name];
    if (value === undefined) continue;
    if (name === "binaryMessages") {
      resolved.binaryMessages = checkBinaryMessages(value as string);
      continue;
    }
    resolved[name] = DURATIONS.has(name)
      ? checkDuration(name, value as number)
      : checkNonNegative(name, value as number) as never;
  }
  return resolved;
}

/**
 * Checks a `binaryMessages` option value.
 *
 * @throws {RangeError} for anything but `"copy"` or `"view"`.
 */
export function checkBinaryMessages(value: string): "copy" | "view" {
  if (value !== "copy" && value !== "view") {
    throw new RangeError(`binaryMessages must be "copy" or "view", got ${value}`);
  }
  return value;
}

/**
 * The application's callbacks for an open connection. All are optional;
 * each may be async (return values are ignored, except that a rejected
 * promise counts as a throw). An exception thrown (or promise rejected) in
 * `open` or `message` closes that socket with 1011 and is passed to `error`.
 * The server's {@linkcode Handlers} add `upgrade` and `fetch`.
 *
 * Every handler gets, as its last argument, what owns the connection (`S`):
 * for a server, the `Server` itself, so handlers can `publish` or read
 * `metrics()` without a closure over the variable `serve()` returns (a
 * closure TypeScript cannot type without an annotation).
 *
 * @example
 * ```ts
 * import type { SocketHandlers } from "@tsunagu/ws";
 * const echo: SocketHandlers = {
 *   message(socket, data) {
 *     socket.send(data);
 *   },
 *   close(_socket, code, reason) {
 *     console.log("closed", code, reason);
 *   },
 * };
 * console.log(typeof echo.message); // function
 * ```
 */
export interface SocketHandlers<T = undefined, S = unknown> {
  /** A connection is open. */
  open?(socket: Socket<T>, server: S): unknown;
  /**
   * A message arrived: a string for text, a `Uint8Array` for binary, the
   * handler's to keep (or, with `binaryMessages: "view"`, valid only during
   * the call).
   */
  message?(socket: Socket<T>, data: string | Uint8Array, server: S): unknown;
  /**
   * A connection closed. `code` and `reason` are those of the side that
   * started the closing handshake: the peer's (1005 when it sent no code),
   * or ours when we closed first (`close()`, idle timeout, shutdown); 1006
   * when TCP ended without one, or the code we failed the connection with.
   */
  close?(socket: Socket<T>, code: number, reason: string, server: S): unknown;
  /** A pong arrived (heartbeat replies included). */
  pong?(socket: Socket<T>, payload: Uint8Array, server: S): unknown;
  /** A handler failed; the socket, if any, is being closed with 1011. */
  error?(error: unknown, socket: Socket<T> | undefined, server: S): void;
}
