/**
 * A WebSocket client built on the same protocol modules as the server: the
 * frame parser and message assembler (expecting unmasked frames), masked
 * frames on the way out, the same writer, limits, close handshake and
 * socket API.
 *
 * @module
 */

import { ByteReader } from "../connection/byte_reader.ts";
import {
  createClientKey,
  encodeClientRequest,
  parseResponseHead,
  validateServerResponse,
} from "../protocol/client_handshake.ts";
import { Connection, type ConnectionHost } from "../connection/connection.ts";
import { decodeRequestHead, findHeadEnd } from "../protocol/handshake.ts";
import {
  checkDuration,
  resolveConnectionOptions,
  type ResolvedConnectionOptions,
} from "../connection/options.ts";
import {
  acceptDeflateResponse,
  CLIENT_DEFLATE_OFFER,
  type DeflateParams,
  type PerMessageDeflateOptions,
  validateDeflateOptions,
} from "../protocol/permessage_deflate.ts";
import type { Socket } from "../connection/socket.ts";

/** Milliseconds for the TCP connection and the handshake together, by default. */
const CLIENT_HANDSHAKE_TIMEOUT = 10_000;
/** The largest response head accepted (a server's 101 is a few hundred bytes). */
const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;

/**
 * Options for {@linkcode connect}.
 *
 * @example
 * ```ts
 * import { type ConnectOptions } from "@tsunagu/ws";
 * const options: ConnectOptions = { protocols: ["chat"], headers: { authorization: "Bearer x" } };
 * console.log(options.protocols); // [ "chat" ]
 * ```
 */
export interface ConnectOptions {
  /** Subprotocols to offer, in order of preference. */
  protocols?: string[];
  /** Extra request headers (not the handshake's own). */
  headers?: HeadersInit;
  /** Largest message accepted from the server, in bytes (1009 beyond). Default 16 MiB. */
  maxPayload?: number;
  /** Bytes allowed to wait in the send queue before the connection is failed (1008). Default 16 MiB. */
  maxBufferedAmount?: number;
  /** Milliseconds for the TCP connection and the handshake together; 0 for no limit. Default 10 000. */
  handshakeTimeout?: number;
  /** Milliseconds between pings to the server; 0 (the default) sends none. */
  pingInterval?: number;
  /** Milliseconds to wait for a pong before dropping the connection. Default 10 000. */
  pongTimeout?: number;
  /** Milliseconds to wait for the server's close frame after ours. Default 5 000. */
  closeTimeout?: number;
  /** Extra trusted root certificates (PEM) for `wss:`. */
  caCerts?: string[];
  /**
   * Offer permessage-deflate (RFC 7692) without context takeover either
   * way: `true` or `{ threshold, level }` as for the server. Used when the
   * server agrees. Default false.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
}

/**
 * A client-side socket: the same {@linkcode Socket} as the server's (`send`,
 * `close`, events, async iteration, `bufferedAmount`, `drained()`).
 * Topics are the server's: a client socket's `publish` reaches no one.
 *
 * @example
 * ```ts
 * import { type ClientWebSocket, connect, serve } from "@tsunagu/ws";
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, {
 *   message(socket, data) {
 *     socket.send(data);
 *   },
 * });
 * const socket: ClientWebSocket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
 * socket.close();
 * await socket.closed;
 * await server.shutdown();
 * ```
 */
export type ClientWebSocket = Socket<undefined>;

/** What a client connection needs: options, a clock and a timer for its deadlines. */
class ClientHost implements ConnectionHost<undefined> {
  readonly options: ResolvedConnectionOptions;
  readonly handlers = {};
  readonly owner = undefined;
  now = Date.now();
  #timer: ReturnType<typeof setInterval> | null = null;
  #starting: ReturnType<typeof setTimeout> | null = null;

  constructor(options: ResolvedConnectionOptions) {
    this.options = options;
  }

  /**
   * Starts the connection's read loop on the next turn of the event loop,
   * not now: frames that came in the same read as the 101 would otherwise
   * be delivered before the caller, who gets the socket when `connect`
   * resolves, could listen. Then runs its housekeeping (heartbeat, close
   * deadline) until it ends.
   */
  start(connection: Connection<undefined>): void {
    this.#starting = setTimeout(() => {
      this.#starting = null;
      connection.run().catch((error) => this.reportError(error));
    }, 0);
    const periods = [this.options.pingInterval, this.options.pongTimeout, this.options.closeTimeout]
      .filter((period) => period > 0);
    const every = Math.min(1000, Math.max(10, Math.floor(Math.min(...periods) / 4)));
    this.#timer = setInterval(() => {
      this.now = Date.now();
      connection.tick(this.now);
    }, every);
  }

  connectionClosed(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    if (this.#starting !== null) clearTimeout(this.#starting);
    this.#timer = this.#starting = null;
  }

  socketClosed(): void {}

  setSubscribed(): void {}

  publishFrame(): number {
    return 0;
  }

  reportError(error: unknown): void {
    console.error("tsunagu client:", error);
  }
}

function failHandshake(conn: Deno.Conn, message: string): never {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
  throw new Error(`WebSocket handshake failed: ${message}`);
}

/** `connecting`, unless it takes longer than `ms`; a connection that arrives late is closed. */
async function openConnection(connecting: Promise<Deno.Conn>, ms: number): Promise<Deno.Conn> {
  if (ms <= 0) return await connecting;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`WebSocket connection timed out after ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([connecting, late]);
  } catch (error) {
    connecting.then((conn) => conn.close(), () => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Reads the response head; the bytes after it (early frames) stay in the reader. */
async function readResponse(conn: Deno.Conn, reader: ByteReader, limit: number): Promise<string> {
  let scanned = 0;
  for (;;) {
    const end = findHeadEnd(reader.buffer, Math.max(scanned - 3, 0), reader.filled);
    if (end >= 0) {
      const text = decodeRequestHead(reader.buffer.subarray(0, end));
      reader.consume(end);
      return text;
    }
    scanned = reader.filled;
    if (reader.filled >= limit) failHandshake(conn, "the response head is too large");
    if (await reader.fill() === 0) failHandshake(conn, "the server closed the connection");
  }
}

/**
 * Opens a WebSocket connection to `url` (`ws:` or `wss:`) and resolves with
 * the open socket once the server has accepted the handshake. Rejects (with
 * the reason in the message) when the connection or the handshake fails.
 *
 * @example
 * ```ts
 * import { connect, serve } from "@tsunagu/ws";
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, {
 *   message: (socket, data) => socket.send(data),
 * });
 * const socket = await connect(server.url);
 * socket.send("hello");
 * for await (const message of socket) {
 *   console.log(message); // hello
 *   break;
 * }
 * socket.close();
 * await socket.closed;
 * await server.shutdown();
 * ```
 */
export async function connect(
  url: string | URL,
  options: ConnectOptions = {},
): Promise<ClientWebSocket> {
  const target = new URL(url);
  if (target.protocol !== "ws:" && target.protocol !== "wss:") {
    throw new TypeError(`expected a ws: or wss: URL, got ${target.protocol}`);
  }
  if (typeof options.perMessageDeflate === "object") {
    validateDeflateOptions(options.perMessageDeflate);
  }
  const resolved = resolveConnectionOptions({
    maxPayload: options.maxPayload,
    maxBufferedAmount: options.maxBufferedAmount,
    pingInterval: options.pingInterval ?? 0,
    pongTimeout: options.pongTimeout,
    closeTimeout: options.closeTimeout,
    idleTimeout: 0,
  });
  const handshakeTimeout = checkDuration(
    "handshakeTimeout",
    options.handshakeTimeout ?? CLIENT_HANDSHAKE_TIMEOUT,
  );
  const secure = target.protocol === "wss:";
  const hostname = target.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(target.port || (secure ? 443 : 80));
  const protocols = options.protocols ?? [];
  const key = createClientKey();
  // Built first: a bad header or subprotocol is the caller's TypeError, and
  // no connection is opened for it.
  const deflateOption = options.perMessageDeflate ?? false;
  const request = encodeClientRequest(target, key, {
    protocols,
    headers: new Headers(options.headers),
    extensions: deflateOption === false ? undefined : CLIENT_DEFLATE_OFFER,
  });
  // One deadline for the TCP connection and the handshake (0: none).
  const limit = handshakeTimeout;
  const deadline = limit > 0 ? Date.now() + limit : Infinity;
  const conn = await openConnection(
    secure
      ? Deno.connectTls({ hostname, port, caCerts: options.caCerts })
      : Deno.connect({ hostname, port }),
    limit,
  );
  try {
    (conn as Deno.TcpConn).setNoDelay?.(true);
  } catch {
    // Not plain TCP, or already reset: the handshake below reports it.
  }
  let timedOut = false;
  const timer = deadline === Infinity ? undefined : setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }, Math.max(0, deadline - Date.now()));
  const reader = new ByteReader(conn, {
    initialSize: 1024,
    settledSize: 256,
    maxSize: 256 * 1024,
    mode: "read",
  });
  let head;
  try {
    for (let offset = 0; offset < request.length;) {
      offset += await conn.write(request.subarray(offset));
    }
    const text = await readResponse(conn, reader, MAX_RESPONSE_HEAD_BYTES);
    head = parseResponseHead(text);
  } catch (error) {
    clearTimeout(timer);
    if (timedOut) failHandshake(conn, `no response within ${limit} ms`);
    if (error instanceof Error && error.message.startsWith("WebSocket handshake failed")) {
      throw error;
    }
    failHandshake(conn, error instanceof Error ? error.message : String(error));
  }
  clearTimeout(timer);
  if (head === null) failHandshake(conn, "the response head is not valid HTTP");
  const checked = validateServerResponse(head, key, protocols, deflateOption !== false);
  if ("error" in checked) failHandshake(conn, checked.error);
  let deflate: DeflateParams | null = null;
  if (checked.extensions !== "") {
    const agreed = acceptDeflateResponse(
      checked.extensions,
      deflateOption === true || deflateOption === false ? {} : deflateOption,
    );
    if ("error" in agreed) failHandshake(conn, agreed.error);
    deflate = agreed;
  }
  reader.settle();
  const host = new ClientHost(resolved);
  const connection = new Connection<undefined>(host, {
    conn,
    reader,
    url: target.href,
    protocol: checked.protocol,
    headers: head.headers,
    data: undefined,
    role: "client",
    deflate,
    extensions: checked.extensions,
  });
  host.start(connection);
  return connection.socket;
}
