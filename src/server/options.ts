/**
 * Server options and application handlers, with the defaults in one place.
 *
 * @module
 */

import {
  type PerMessageDeflateOptions,
  validateDeflateOptions,
} from "../protocol/permessage_deflate.ts";
import type { ReadMode } from "../connection/byte_reader.ts";
import {
  checkBinaryMessages,
  checkDuration,
  checkNonNegative,
  CONNECTION_DEFAULTS,
  type ConnectionOptions,
  type ResolvedConnectionOptions,
  type SocketHandlers,
} from "../connection/options.ts";
import type { Broker } from "./broker.ts";
import type { Server } from "./server.ts";

/**
 * Options for {@linkcode serve}. Every limit has a safe default; see the
 * README's "Limits and security" section for why each default was chosen.
 *
 * @example
 * ```ts
 * import { serve, type ServeOptions } from "@tsunagu/ws";
 * const options: ServeOptions = { port: 0, hostname: "127.0.0.1", maxPayload: 1 << 20 };
 * const server = serve(options, {
 *   message(socket, data) {
 *     socket.send(data);
 *   },
 * });
 * await server.shutdown();
 * ```
 */
export interface ServeOptions extends ConnectionOptions {
  /** TCP port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Interface to listen on. Default `"0.0.0.0"`. */
  hostname?: string;
  /**
   * Let several listeners share the port (`SO_REUSEPORT`; Linux and
   * FreeBSD): run one server per core, in processes or workers, and the
   * kernel spreads new connections over them. Needs `--unstable-net`.
   * Each server keeps its own connections, topics and limits. Default false.
   */
  reusePort?: boolean;
  /** PEM certificate chain: with {@linkcode ServeOptions.key}, serve `wss://` over TLS. */
  cert?: string;
  /** PEM private key for {@linkcode ServeOptions.cert}. */
  key?: string;
  /** Aborting it shuts the server down, as {@linkcode Server.shutdown} does. */
  signal?: AbortSignal;
  /** Called once the server listens. */
  onListen?: (addr: Deno.NetAddr) => void;
  /**
   * Bytes all connections together may hold in messages still being
   * received (fragments so far, or a message arriving over several reads).
   * A connection whose message would take more than is left is closed with
   * 1013 (try again later): its message is within `maxPayload`, the server
   * is short of memory for it now. Default 64 MiB, or 4 x `maxPayload`
   * when that is more.
   */
  maxPendingMessageBytes?: number;
  /** Largest request head in bytes; a longer one gets 431. Default 16 KiB. */
  maxHeaderBytes?: number;
  /**
   * Largest plain-HTTP request body a `fetch` handler may read, by default:
   * reading past it fails the body and the client gets 413. A handler that
   * consumes the body as a stream may raise it for one request
   * ({@linkcode RequestInfo.maxBodyBytes}). Default 1 MiB.
   */
  maxBodyBytes?: number;
  /**
   * Whether plain-HTTP requests without a body are built, and simple
   * responses (status 200, at most a `Content-Type`, a string or bytes
   * body) are read, the way `Deno.serve` does it: through the private slots
   * of the runtime's `Request` and `Response`, skipping the public
   * constructor's and `response.body`'s costly objects (about a third of
   * the CPU of a small keep-alive response). Used only on the Deno
   * versions this was checked against (2.9), and only after a self-check
   * at the first request finds every slot as expected; anywhere else the
   * public path is taken, as it is with `false`. Handlers see a real
   * `Request` either way; with this on, `request.signal` aborts with the
   * runtime's own reason ("The request has been cancelled.") as under
   * `Deno.serve`. It also reads and writes plain TCP connections (HTTP
   * and WebSocket) through the runtime's ops rather than the `conn.read`
   * and `conn.write` wrappers (src/connection/raw_io.ts). Default `true`.
   */
  runtimeInternals?: boolean;
  /**
   * Milliseconds a persistent (keep-alive) HTTP connection may wait idle
   * for its next request before the server closes it. Once a request's
   * first byte arrives, its head has `handshakeTimeout`. 0 turns keep-alive
   * off: every response closes its connection. Default 5 000.
   */
  keepAliveTimeout?: number;
  /**
   * Plain HTTP requests served on one connection; the last response says
   * `Connection: close`. An upgrade may still follow below the limit.
   * `Infinity` for no limit. Default 1000.
   */
  maxRequestsPerConnection?: number;
  /**
   * Open WebSocket connections allowed; upgrades beyond it get 503. Default:
   * the process's open-file limit less a reserve for handshakes in progress,
   * files and the runtime ({@linkcode defaultMaxConnections}), so the server
   * refuses before it runs out of descriptors; `Infinity` for no limit. The
   * value in force is {@linkcode Server.maxConnections}.
   */
  maxConnections?: number;
  /**
   * Milliseconds a client has to complete each request head, counted from
   * the connection's start for the first request and from the first byte of
   * each later one; also the longest a plain request's body may make no
   * progress while the handler reads it (408). Default 10 000.
   */
  handshakeTimeout?: number;
  /** Subprotocols the server speaks, in its order of preference. */
  protocols?: string[];
  /**
   * Bytes of each connection's initial read buffer, which reads the request
   * head. Default 1 KiB; it grows on demand. Once upgraded, the buffer is
   * this or 256 bytes, whichever is smaller, grows while reads fill it, and
   * shrinks back when they stop.
   */
  readBufferSize?: number;
  /** How sockets are read: see {@linkcode ReadMode}. Default `"read"`. */
  readMode?: ReadMode;
  /**
   * Compression (RFC 7692): `true` or options to accept clients that offer
   * permessage-deflate (browsers do); each message is compressed on its own
   * (no context kept between messages, no zlib state per connection).
   * Default `false`, as in ws and Bun: compression costs CPU per message.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /**
   * Carries topic messages to and from other servers (other processes or
   * machines; e.g. a `RedisBroker`). `publish` still delivers to
   * local subscribers at once; the broker brings other servers' messages to
   * local subscribers only. The server starts it, keeps its subscriptions
   * to the topics with local subscribers, and closes it on shutdown.
   * `broadcast` stays local. Default: none.
   */
  broker?: Broker;
}

/**
 * Details of an upgrade request, beside the `Request` itself.
 *
 * @example
 * ```ts
 * import { serve, type UpgradeInfo } from "@tsunagu/ws";
 * function pickProtocol(info: UpgradeInfo): string | undefined {
 *   return info.protocols.find((protocol) => protocol === "chat");
 * }
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, {
 *   upgrade: (_request, info) => ({ protocol: pickProtocol(info) }),
 * });
 * const client = new WebSocket(server.url, ["superchat", "chat"]);
 * await new Promise((resolve) => client.onopen = resolve);
 * console.log(client.protocol); // chat
 * client.close();
 * await server.shutdown();
 * ```
 */
export interface UpgradeInfo {
  /** The client's address. */
  remoteAddr: Deno.NetAddr;
  /** Subprotocols offered by the client, in its order of preference. */
  protocols: string[];
  /**
   * The server the request came to. Typed without its socket data type:
   * a parameter typed from `T` would stop TypeScript inferring `T` from
   * what `upgrade` returns.
   */
  server: Server<unknown>;
}

/**
 * What an `upgrade` handler may return to accept: all fields optional.
 *
 * @example
 * ```ts
 * import type { Handlers, UpgradeAccept } from "@tsunagu/ws";
 * const accept: UpgradeAccept<{ user: string }> = {
 *   protocol: "chat",
 *   headers: { "set-cookie": "session=1" },
 *   data: { user: "ann" },
 * };
 * const handlers: Handlers<{ user: string }> = {
 *   upgrade(_request, info) {
 *     return info.protocols.includes("chat") ? accept : new Response(null, { status: 400 });
 *   },
 * };
 * console.log(accept.data?.user); // ann
 * ```
 */
export interface UpgradeAccept<T> {
  /** The subprotocol to answer; must be one the client offered. */
  protocol?: string;
  /** Extra response headers for the 101 response (e.g. `Set-Cookie`). */
  headers?: HeadersInit;
  /** Application data attached to the socket as {@linkcode Socket.data}. */
  data?: T;
}

/**
 * Details of a plain HTTP request, beside the `Request` itself: what
 * `Deno.serve` passes its handlers (`remoteAddr`, `completed`), so a
 * handler written for it (`app.fetch` of Hono and the like) runs unchanged,
 * plus the server and the request's body limit.
 *
 * @example
 * ```ts
 * import { type RequestInfo, serve } from "@tsunagu/ws";
 * function fetchHandler(request: Request, info: RequestInfo): Response {
 *   info.completed.then(() => console.log("sent", new URL(request.url).pathname));
 *   const open = info.server.connectionCount;
 *   return new Response(`hello ${info.remoteAddr.hostname}, ${open} sockets open`);
 * }
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, { fetch: fetchHandler });
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * console.log(await response.text()); // hello 127.0.0.1, 0 sockets open
 * await server.shutdown();
 * ```
 */
export interface RequestInfo {
  /** The client's address. */
  remoteAddr: Deno.NetAddr;
  /**
   * The server the request came to. Typed without its socket data type:
   * a parameter typed from `T` would stop TypeScript inferring `T` from
   * what `upgrade` returns.
   */
  server: Server<unknown>;
  /**
   * Settles once the response has been sent, or abandoned (the client left,
   * the server stopped, the body failed). Never rejects, as in `Deno.serve`.
   */
  readonly completed: Promise<void>;
  /**
   * The most body bytes this request may deliver to the handler; starts at
   * the server's `maxBodyBytes`. A handler that consumes `request.body` as a
   * stream (an upload written to disk as it arrives) raises it before
   * reading to accept a larger body on this request only; reading past it
   * fails the body and the client gets 413.
   *
   * @example
   * ```ts
   * import { serve } from "@tsunagu/ws";
   * const server = serve({ port: 0, hostname: "127.0.0.1" }, {
   *   async fetch(request, info) {
   *     info.maxBodyBytes = 64 * 1024 * 1024; // this upload route streams: up to 64 MiB
   *     let size = 0;
   *     for await (const piece of request.body ?? []) size += piece.length;
   *     return new Response(`${size} bytes`);
   *   },
   * });
   * const body = new Uint8Array(3 * 1024 * 1024); // over the default 1 MiB
   * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, { method: "POST", body });
   * console.log(await response.text()); // 3145728 bytes
   * await server.shutdown();
   * ```
   */
  maxBodyBytes: number;
}

/**
 * Application callbacks of a server: the {@linkcode SocketHandlers} of every
 * connection, plus `upgrade` and `fetch` for the HTTP requests before them.
 * All are optional; each may be async (return values are ignored, except
 * that a rejected promise counts as a throw). An exception thrown (or
 * promise rejected) in `open` or `message` closes that socket with 1011 and
 * is passed to `error`; in `upgrade` or `fetch` it answers 500 and is passed
 * to `error` without a socket.
 *
 * @example
 * ```ts
 * import type { Handlers } from "@tsunagu/ws";
 * const handlers: Handlers<{ name: string }> = {
 *   upgrade: (request) => ({ data: { name: new URL(request.url).searchParams.get("name") ?? "guest" } }),
 *   open(socket) {
 *     socket.send(`hello ${socket.data.name}`);
 *   },
 *   message(socket, data) {
 *     socket.send(data);
 *   },
 * };
 * ```
 */
export interface Handlers<T = undefined> extends SocketHandlers<T, Server<T>> {
  /**
   * Decides on an upgrade request (auth, origin check, subprotocol, user
   * data). Return a `Response` to refuse, or nothing / {@linkcode UpgradeAccept}
   * to accept.
   */
  upgrade?(
    request: Request,
    info: UpgradeInfo,
  ): Response | UpgradeAccept<T> | void | Promise<Response | UpgradeAccept<T> | void>;
  /** Answers plain HTTP requests (not upgrades). Without it: 426 for GET, 405 otherwise. */
  fetch?(request: Request, info: RequestInfo): Response | Promise<Response>;
}

/** Options after defaults are applied. */
export type ResolvedOptions =
  & ResolvedConnectionOptions
  & Required<
    Omit<
      ServeOptions,
      keyof ConnectionOptions | "cert" | "key" | "signal" | "onListen" | "protocols" | "broker"
    >
  >
  & Pick<ServeOptions, "cert" | "key" | "signal" | "onListen" | "protocols" | "broker">;

// The open-file limit assumed when the real one cannot be read: not Linux,
// or Deno without --allow-all (it lets only that read /proc/self). The
// smallest limit in common use (Linux's traditional soft limit), so the
// default stays below the real limit wherever it runs.
const ASSUMED_FILE_LIMIT = 1024;
// Descriptors kept out of maxConnections' reach: handshakes in progress and
// the 503s refusing upgrades over the limit need one each, as do static
// files, the listener and the runtime itself (~20 in Deno).
const MIN_FILE_RESERVE = 64;

let defaultConnections: number | undefined;

/**
 * The default for `maxConnections`: the process's open-file limit less a
 * reserve of an eighth of it, at least 64. The limit is the one Deno runs
 * with (it raises the soft limit to the hard one at start-up), read from
 * /proc/self/limits, which Deno allows only with --allow-all; elsewhere it
 * is assumed to be 1024, giving 896. Read once per process.
 */
export function defaultMaxConnections(): number {
  if (defaultConnections === undefined) {
    const limit = openFileLimit() ?? ASSUMED_FILE_LIMIT;
    defaultConnections = Math.max(1, limit - Math.max(MIN_FILE_RESERVE, Math.ceil(limit / 8)));
  }
  return defaultConnections;
}

/** The soft limit on open files from /proc/self/limits, or null when it cannot be read. */
function openFileLimit(): number | null {
  const path = "/proc/self/limits";
  try {
    // Queried first: without read permission, reading could make Deno
    // prompt. With it but without --allow-all, reading throws (no prompt).
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return null;
    const match = /^Max open files\s+(\d+)\s/m.exec(Deno.readTextFileSync(path));
    return match === null ? null : Number(match[1]);
  } catch {
    return null;
  }
}

/** The defaults, as documented on {@linkcode ServeOptions}. */
export const DEFAULTS = {
  ...CONNECTION_DEFAULTS,
  port: 8080,
  hostname: "0.0.0.0",
  maxHeaderBytes: 16 * 1024,
  maxBodyBytes: 1024 * 1024,
  keepAliveTimeout: 5_000,
  runtimeInternals: true,
  maxRequestsPerConnection: 1000,
  handshakeTimeout: 10_000,
  readBufferSize: 1024,
  readMode: "read",
  perMessageDeflate: false,
  reusePort: false,
} as const;

/**
 * Applies defaults and checks ranges.
 *
 * @throws {RangeError} for a negative, non-numeric or out-of-range value.
 * @throws {TypeError} for a duration from 1 to 99 ms: durations are
 * milliseconds, and such a value is almost surely seconds.
 */
export function resolveOptions(options: ServeOptions): ResolvedOptions {
  const resolved = { ...DEFAULTS, ...stripUndefined(options) } as ResolvedOptions;
  resolved.maxConnections ??= defaultMaxConnections();
  // 64 MiB: four messages of the default largest size in progress at once,
  // or thousands of ordinary ones; it follows a larger maxPayload so that
  // raising one raises both.
  resolved.maxPendingMessageBytes ??= Math.max(64 * 1024 * 1024, 4 * resolved.maxPayload);
  for (
    const name of [
      "maxPayload",
      "maxPendingMessageBytes",
      "maxHeaderBytes",
      "maxBodyBytes",
      "maxConnections",
      "maxBufferedAmount",
      "readBufferSize",
      "maxRequestsPerConnection",
    ] as const
  ) checkNonNegative(name, resolved[name]);
  for (
    const name of [
      "handshakeTimeout",
      "keepAliveTimeout",
      "idleTimeout",
      "pingInterval",
      "pongTimeout",
      "closeTimeout",
    ] as const
  ) checkDuration(name, resolved[name]);
  if (!Number.isInteger(resolved.port) || resolved.port < 0 || resolved.port > 65535) {
    throw new RangeError(`port must be an integer from 0 to 65535, got ${resolved.port}`);
  }
  if (resolved.maxHeaderBytes < 64) throw new RangeError("maxHeaderBytes must be at least 64");
  if (resolved.readBufferSize < 64) throw new RangeError("readBufferSize must be at least 64");
  if (resolved.maxRequestsPerConnection < 1) {
    throw new RangeError("maxRequestsPerConnection must be at least 1");
  }
  if (typeof resolved.runtimeInternals !== "boolean") {
    throw new TypeError(`runtimeInternals must be a boolean, got ${resolved.runtimeInternals}`);
  }
  checkBinaryMessages(resolved.binaryMessages);
  if (resolved.readMode !== "read" && resolved.readMode !== "stream") {
    throw new RangeError(`readMode must be "read" or "stream", got ${resolved.readMode}`);
  }
  if (typeof resolved.perMessageDeflate === "object") {
    validateDeflateOptions(resolved.perMessageDeflate);
  }
  if ((resolved.cert === undefined) !== (resolved.key === undefined)) {
    throw new TypeError("cert and key must be given together");
  }
  return resolved;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
