/**
 * The life of an accepted TCP connection before it is a WebSocket: read the
 * request head, then either upgrade (101), refuse (4xx/5xx), or answer a
 * plain HTTP request through the application's `fetch` handler.
 *
 * @module
 */

import { ByteReader, type ByteReaderOptions } from "../connection/byte_reader.ts";
import { concatBytes } from "../protocol/bytes.ts";
import { negotiateDeflate } from "../protocol/permessage_deflate.ts";
import { ResponseWriter } from "./response_writer.ts";
import { Connection, type ConnectionHost } from "../connection/connection.ts";
import {
  decodeRequestHead,
  encodeRejection,
  encodeResponseHead,
  encodeSwitchingProtocols,
  findHeadEnd,
  type HandshakeRejection,
  headerValues,
  isRejection,
  isUpgradeRequest,
  parseRequestText,
  type RequestAddress,
  requestAddress,
  type RequestHead,
  type UpgradeRequest,
  validateUpgrade,
} from "../protocol/handshake.ts";
import type { Handlers, ResolvedOptions, UpgradeAccept } from "./options.ts";
import type { Server } from "./server.ts";

/** What the server provides to a handshake in progress. */
export interface SessionHost<T> extends ConnectionHost<T> {
  /** The server's options: the connection's and the HTTP side's. */
  readonly options: ResolvedOptions;
  /** The server's handlers: the connection's plus `upgrade` and `fetch`. */
  readonly handlers: Handlers<T>;
  /** The public server, given to every handler. */
  readonly owner: Server<T>;
  /** Whether another WebSocket connection may open (maxConnections). */
  canAccept(): boolean;
  /**
   * Takes one of the maxConnections slots for an upgrade whose 101 is about
   * to be written; false when none is free. Every `true` is paired with one
   * {@linkcode SessionHost.releaseSlot}, made after `connectionOpened` when
   * the upgrade succeeds. Without it, concurrent upgrades that all passed
   * `canAccept` while their 101 was being written would exceed the limit.
   */
  reserveSlot(): boolean;
  /** Gives back a slot taken by {@linkcode SessionHost.reserveSlot}. */
  releaseSlot(): void;
  /** A new WebSocket connection is open. */
  connectionOpened(connection: Connection<T>): void;
  /** A plain HTTP response with `status` is being sent (metrics). */
  httpResponded(status: number): void;
  /** `"ws"` or `"wss"`. */
  readonly scheme: "ws" | "wss";
  /** How every connection's {@linkcode ByteReader} sizes and reads its buffer. */
  readonly readerOptions: ByteReaderOptions;
}

// An upgraded connection's read buffer starts (and shrinks back to) this
// size: chat-sized frames fit, and an idle connection keeps ~1 KiB less
// than with the buffer that read its request head (bench/RESULTS.md, idle).
const SETTLED_READ_BUFFER = 256;

/** The read buffer sizing for every connection of a server with `options`. */
export function readerOptions(options: ResolvedOptions): ByteReaderOptions {
  return {
    initialSize: options.readBufferSize,
    settledSize: Math.min(options.readBufferSize, SETTLED_READ_BUFFER),
    maxSize: Math.max(options.maxHeaderBytes, 256 * 1024),
    mode: options.readMode,
  };
}

// Bounds on reading after a response, before the connection is closed.
// Closing while the client is still sending makes the kernel reset the
// connection, and a client still writing then sees its write fail instead of
// reading the response: a 431 for a head that is far too large is sent while
// most of that head may still be on its way. 1 MiB covers any head a real
// client sends (64 KiB did not: a 512 KiB head sent fast was reset); a peer
// sending more, or for longer, is cut off. Discarding reuses the read buffer.
const RESPONSE_LINGER_MS = 1000;
const RESPONSE_LINGER_BYTES = 1024 * 1024;

/** Writes all of `bytes`; `conn.write` may write only part. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Serves one accepted TCP connection. Never throws. */
export class HttpSession<T> {
  #host: SessionHost<T>;
  #conn: Deno.Conn;
  #reader: ByteReader;
  /**
   * When the request must be complete by (real time, ms since the epoch):
   * the head, and a plain HTTP request's body. Infinite once it is, so the
   * application's handler and a streamed response take the time they need.
   */
  deadline: number;
  #done = false;
  /** The response being written to a plain HTTP request, if any. */
  #response: ResponseWriter | null = null;
  /** Where the request is addressed, once its head is parsed and validated. */
  #address: RequestAddress | null = null;
  /** Settles when the client closes or the connection fails (see #watchPeer). */
  #peerGone: Promise<void> | null = null;
  /** The response is complete: the client's EOF is now expected, not a reason to abort. */
  #finishing = false;

  constructor(host: SessionHost<T>, conn: Deno.Conn) {
    this.#host = host;
    this.#conn = conn;
    // One options object per server, not per connection (idle memory).
    this.#reader = new ByteReader(conn, host.readerOptions);
    // Real time, not the host's coarse clock: that may be a housekeeping
    // tick old, and a deadline counted from it would fire up to a tick
    // early. One Date.now() per connection costs nothing that shows.
    this.deadline = Date.now() + host.options.handshakeTimeout;
  }

  /** Drops the connection (handshake deadline passed, or the server is stopping). */
  abort(): void {
    if (this.#done) return;
    this.#done = true;
    this.#response?.abort();
    closeQuietly(this.#conn);
  }

  /** Whether the session ended (answered, upgraded or aborted). */
  get done(): boolean {
    return this.#done;
  }

  /** Runs the session; resolves with the upgraded connection, if any. */
  async run(): Promise<Connection<T> | null> {
    try {
      const headEnd = await this.#readHead();
      if (headEnd < 0 || this.#done) return null;
      const text = decodeRequestHead(this.#reader.buffer.subarray(0, headEnd));
      const head = parseRequestText(text);
      if (isRejection(head)) {
        await this.#reject(head);
        return null;
      }
      this.#reader.consume(headEnd);
      if (head.target === "*") {
        // Asterisk-form (RFC 9112 §3.2.4) asks about the server as a whole,
        // which a Request (whose URL needs a path) cannot carry to the
        // application: the server answers OPTIONS * itself, with nothing to
        // announce, and refuses "*" with any other method.
        if (head.method === "OPTIONS") await this.#respondEmpty(204);
        else await this.#reject({ status: 400, message: "a * target is only for OPTIONS" });
        return null;
      }
      const address = requestAddress(head);
      if (isRejection(address)) {
        await this.#reject(address);
        return null;
      }
      this.#address = address;
      if (!isUpgradeRequest(head)) {
        await this.#serveHttp(head);
        return null;
      }
      const upgrade = validateUpgrade(head);
      if (isRejection(upgrade)) {
        await this.#reject(upgrade);
        return null;
      }
      return await this.#upgrade(head, upgrade, text);
    } catch (error) {
      // An application hook failed (or chose an impossible subprotocol).
      if (!this.#done) {
        this.#host.reportError(error);
        await this.#reject({ status: 500, message: "internal server error" });
      }
      return null;
    }
  }

  /** Reads until CRLF CRLF; returns the head length, or -1 if the connection ended first. */
  async #readHead(): Promise<number> {
    const reader = this.#reader;
    const limit = this.#host.options.maxHeaderBytes;
    let scanned = 0;
    while (true) {
      const n = await reader.fill().catch(() => 0);
      if (n === 0 || this.#done) {
        this.abort();
        return -1;
      }
      const end = findHeadEnd(reader.buffer, Math.max(scanned - 3, 0), reader.filled);
      if (end >= 0 && end <= limit) return end;
      scanned = reader.filled;
      if (end > limit || reader.filled >= limit) {
        await this.#reject({ status: 431, message: "request head too large" });
        return -1;
      }
    }
  }

  async #reject(rejection: HandshakeRejection): Promise<void> {
    this.#host.httpResponded(rejection.status);
    await this.#respondBytes(encodeRejection(rejection));
  }

  /** Answers `status` with no body (and no Content-Type). */
  async #respondEmpty(status: number): Promise<void> {
    this.#host.httpResponded(status);
    // No Content-Length: a 204 must not carry one (RFC 9110 §8.6).
    await this.#respondBytes(encodeResponseHead(status, [], null));
  }

  async #respondBytes(bytes: Uint8Array): Promise<void> {
    if (this.#done) return;
    try {
      await writeAll(this.#conn, bytes);
    } catch {
      // The peer left; nothing to tell it.
      return this.abort();
    }
    await this.#finishResponse();
  }

  /** After a complete response: half-close, wait briefly for the client's EOF, close. */
  async #finishResponse(): Promise<void> {
    this.#finishing = true;
    try {
      await this.#conn.closeWrite();
      if (this.#peerGone === null) {
        await this.#drainBriefly();
      } else {
        // The watcher is already reading until the client's EOF.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const linger = new Promise((resolve) => (timer = setTimeout(resolve, RESPONSE_LINGER_MS)));
        await Promise.race([this.#peerGone, linger]);
        clearTimeout(timer);
      }
    } catch {
      // The peer left; nothing to tell it.
    }
    this.abort();
  }

  /**
   * After a response, reads and discards what the client still sends, until
   * its EOF or a short deadline: closing with unread bytes would make the
   * kernel send a reset, which can destroy the response before the client
   * reads it (a 431 or 503 must arrive to be useful).
   */
  async #drainBriefly(): Promise<void> {
    const reader = this.#reader;
    const timer = setTimeout(() => this.abort(), RESPONSE_LINGER_MS);
    try {
      let discarded = 0;
      while (!this.#done && discarded < RESPONSE_LINGER_BYTES) {
        reader.filled = 0;
        const n = await reader.fill();
        if (n === 0) break;
        discarded += n;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The request URL, from validated parts only (see requestAddress): the
   * connection's scheme, the authority the request names (or, for HTTP/1.0
   * without Host, the address it arrived on), and the path.
   */
  #url(scheme: string): string {
    const address = this.#address!;
    let authority = address.authority;
    if (authority === null) {
      const { hostname, port } = this.#conn.localAddr as Deno.NetAddr;
      authority = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
    }
    return `${scheme}://${authority}${address.path}`;
  }

  #request(head: RequestHead, body?: Uint8Array<ArrayBuffer>): Request | null {
    try {
      const scheme = this.#host.scheme === "wss" ? "https" : "http";
      return new Request(this.#url(scheme), {
        method: head.method,
        headers: head.headers,
        body: body && body.length > 0 ? body : undefined,
      });
    } catch {
      return null;
    }
  }

  async #upgrade(
    head: RequestHead,
    upgrade: UpgradeRequest,
    text: string,
  ): Promise<Connection<T> | null> {
    const host = this.#host;
    if (!host.canAccept()) {
      await this.#reject({ status: 503, message: "too many connections" });
      return null;
    }
    let accepted: UpgradeAccept<T> = {};
    const hook = host.handlers.upgrade;
    if (hook !== undefined) {
      const request = this.#request(head);
      if (request === null) {
        await this.#reject({ status: 400, message: "invalid request target or headers" });
        return null;
      }
      const result = await hook.call(host.handlers, request, {
        remoteAddr: this.#conn.remoteAddr as Deno.NetAddr,
        protocols: upgrade.protocols,
        server: host.owner,
      });
      if (result instanceof Response) {
        await this.#respond(result, head);
        return null;
      }
      accepted = result ?? {};
    }
    const protocol = this.#chooseProtocol(upgrade, accepted.protocol);
    if (this.#done) return null;
    const deflateOption = host.options.perMessageDeflate;
    const deflate = deflateOption === false ? null : negotiateDeflate(
      headerValues(head, "sec-websocket-extensions"),
      deflateOption === true ? {} : deflateOption,
    );
    const response = encodeSwitchingProtocols(upgrade.key, {
      protocol,
      extensions: deflate?.response,
      headers: accepted.headers ? new Headers(accepted.headers) : undefined,
    });
    // The hook may have taken long, and other upgrades may be writing their
    // 101 right now: hold a slot from here until the connection is registered.
    if (!host.reserveSlot()) {
      await this.#reject({ status: 503, message: "too many connections" });
      return null;
    }
    try {
      try {
        await writeAll(this.#conn, response);
      } catch {
        // The peer left (or the deadline closed it) before its 101 was
        // written: nothing opened, and nothing for the application to hear.
        this.abort();
        return null;
      }
      if (this.#done) return null;
      this.#done = true;
      this.#reader.settle();
      const connection = new Connection<T>(host, {
        conn: this.#conn,
        reader: this.#reader,
        url: this.#url(host.scheme),
        protocol,
        // Parsed again on first use: the closure keeps only the head's
        // text (one flat string), not the parsed head with an array and two
        // strings per header (~600 bytes per idle connection).
        headers: () => new Headers((parseRequestText(text) as RequestHead).headers),
        data: accepted.data as T,
        deflate: deflate?.params ?? null,
        extensions: deflate?.response ?? "",
      });
      host.connectionOpened(connection);
      return connection;
    } finally {
      host.releaseSlot();
    }
  }

  /**
   * The subprotocol to answer: the application's pick (which must be one the
   * client offered), else the first of the server's `protocols` option the
   * client offered, else none.
   */
  #chooseProtocol(upgrade: UpgradeRequest, picked: string | undefined): string {
    if (picked !== undefined && picked !== "") {
      if (!upgrade.protocols.includes(picked)) {
        throw new Error(
          `upgrade handler chose subprotocol "${picked}", which the client did not offer`,
        );
      }
      return picked;
    }
    const supported = this.#host.options.protocols;
    if (supported === undefined) return "";
    return supported.find((p) => upgrade.protocols.includes(p)) ?? "";
  }

  async #serveHttp(head: RequestHead): Promise<void> {
    const fetch = this.#host.handlers.fetch;
    if (fetch === undefined) {
      await this.#reject(
        head.method === "GET" || head.method === "HEAD"
          ? {
            status: 426,
            message: "this is a WebSocket endpoint: upgrade required",
            headers: [["upgrade", "websocket"], ["sec-websocket-version", "13"]],
          }
          : { status: 405, message: "method not allowed", headers: [["allow", "GET"]] },
      );
      return;
    }
    const body = await this.#readBody(head);
    if (body === null) return;
    const request = this.#request(head, body);
    if (request === null) {
      await this.#reject({ status: 400, message: "invalid request target or headers" });
      return;
    }
    // The client has sent everything: from here on, time is the application's.
    this.deadline = Infinity;
    this.#watchPeer();
    let response: Response;
    try {
      response = await fetch.call(this.#host.handlers, request, {
        remoteAddr: this.#conn.remoteAddr as Deno.NetAddr,
        server: this.#host.owner,
      });
    } catch (error) {
      this.#host.reportError(error);
      await this.#reject({ status: 500, message: "internal server error" });
      return;
    }
    await this.#respond(response, head);
  }

  /** Reads a Content-Length body; answers 411/413/501 itself and returns null on those. */
  async #readBody(head: RequestHead): Promise<Uint8Array<ArrayBuffer> | null> {
    if (headerValues(head, "transfer-encoding").length > 0) {
      await this.#reject({ status: 501, message: "chunked request bodies are not supported" });
      return null;
    }
    const lengths = headerValues(head, "content-length");
    if (lengths.length === 0) return new Uint8Array(0);
    const length = Number(lengths[0]);
    if (lengths.length > 1 || !/^\d+$/.test(lengths[0]) || !Number.isSafeInteger(length)) {
      await this.#reject({ status: 400, message: "invalid Content-Length" });
      return null;
    }
    if (length > this.#host.options.maxBodyBytes) {
      await this.#reject({ status: 413, message: "request body too large" });
      return null;
    }
    // Memory follows the bytes that arrive, never the length the header
    // claims: many peers announcing large bodies and sending none cost little.
    const reader = this.#reader;
    const chunks: Uint8Array[] = [];
    let got = 0;
    while (got < length) {
      if (reader.filled === 0 && await reader.fill().catch(() => 0) === 0) {
        this.abort();
        return null;
      }
      const take = Math.min(reader.filled, length - got);
      chunks.push(reader.buffer.slice(0, take));
      reader.consume(take);
      got += take;
    }
    return concatBytes(chunks, length);
  }

  async #respond(response: Response, head: RequestHead): Promise<void> {
    if (this.#done) {
      response.body?.cancel().catch(() => {});
      return;
    }
    if (response.bodyUsed || response.body?.locked) {
      // Thrown to run(), which answers 500 and reports it.
      throw new TypeError("the handler returned a Response whose body was already used");
    }
    this.deadline = Infinity;
    this.#watchPeer();
    this.#host.httpResponded(response.status);
    // A write that makes no progress for idleTimeout (a client that stopped
    // reading) drops the client; waiting for the body to be produced does not.
    const stall = this.#host.options.idleTimeout;
    const writer = this.#response = new ResponseWriter(this.#conn, (writing) => {
      this.deadline = writing && stall > 0 ? Date.now() + stall : Infinity;
    });
    const complete = await writer.write(response, head);
    this.#response = null;
    if (!complete || this.#done) return this.abort();
    await this.#finishResponse();
  }

  /**
   * Once a plain HTTP request is complete nothing more is read from the
   * client, but a read stays pending, so a client that leaves is noticed
   * while the handler or a streamed response is still running (an idle
   * server-sent-events stream would otherwise outlive its client until its
   * next write). Bytes that still arrive are discarded: every response ends
   * with Connection: close.
   */
  #watchPeer(): void {
    if (this.#peerGone !== null) return;
    this.#peerGone = this.#discardUntilEnd().then(() => {
      if (!this.#finishing) this.abort();
    });
  }

  async #discardUntilEnd(): Promise<void> {
    const reader = this.#reader;
    while (!this.#done) {
      reader.filled = 0;
      if (await reader.fill().catch(() => 0) === 0) return;
    }
  }
}
