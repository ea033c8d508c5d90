/**
 * The life of an accepted TCP connection before it is a WebSocket: read a
 * request head, then either upgrade (101), refuse (4xx/5xx), or answer a
 * plain HTTP request through the application's `fetch` handler, and, while
 * the connection persists (RFC 9112 §9.3), read the next request: the
 * bytes after one request are the next one's head (pipelining), answered
 * in order, one at a time. An upgrade may come after any number of plain
 * requests.
 *
 * @module
 */

import { ByteReader, type ByteReaderOptions } from "../connection/byte_reader.ts";
import { type DeflateAgreement, negotiateDeflate } from "../protocol/permessage_deflate.ts";
import { type AnsweredRequest, ResponseWriter, type WriteOutcome } from "./response_writer.ts";
import { Connection, type ConnectionHost } from "../connection/connection.ts";
import {
  checkUpgrade,
  decodeRequestHead,
  encodeRejection,
  encodeResponseHead,
  encodeSwitchingProtocols,
  findHeadEnd,
  findStrictHeadEnd,
  type HandshakeRejection,
  headerValues,
  type HeadFields,
  headOf,
  isRejection,
  isUpgradeRequest,
  type RequestAddress,
  requestAddress,
  type RequestHead,
  scanRequestHead,
  type SwitchingProtocolsOptions,
  upgradeOf,
  type UpgradeRequest,
  usualRequestOf,
} from "../protocol/handshake.ts";
import { requestBodyFraming } from "../protocol/http1_body.ts";
import { requestHref } from "../protocol/request_url.ts";
import {
  isHttp11,
  leadingEmptyLines,
  plainRequestKeepsAlive,
  requestExpectation,
  requestKeepsAlive,
} from "../protocol/http1_request.ts";
import { checkNonNegative } from "../connection/options.ts";
import { writeTo } from "../connection/raw_io.ts";
import { type BodyHost, RequestBody } from "./request_body.ts";
import { httpDate } from "./http_date.ts";
import {
  fastRequest,
  FastRequestState,
  fetchInternalsAvailable,
  type RequestFields,
  takeStaticResponse,
} from "./fetch_internals.ts";
import type { Handlers, RequestInfo, ResolvedOptions, UpgradeAccept } from "./options.ts";
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
  /**
   * The session started by {@linkcode HttpSession.start} is over: with the
   * upgraded connection (to be started), or null once it is closed.
   */
  sessionEnded(session: HttpSession<T>, connection: Connection<T> | null): void;
  /** A plain HTTP response with `status` is being sent (metrics). */
  httpResponded(status: number): void;
  /** Whether the server is shutting down: no connection persists. */
  readonly stopping: boolean;
  /** `"ws"` or `"wss"`. */
  readonly scheme: "ws" | "wss";
  /** How every connection's {@linkcode ByteReader} sizes and reads its buffer. */
  readonly readerOptions: ByteReaderOptions;
}

// An upgraded connection's read buffer starts (and shrinks back to) this
// size: chat-sized frames fit (a 32-byte echo frame is 38 bytes), and an
// idle connection keeps ~1 KiB less than with the buffer that read its
// request head (bench/RESULTS.md, changes 12 and 18). A read that fills it
// doubles it for the next, so bursts and large messages grow it at once.
const SETTLED_READ_BUFFER = 128;

/** The read buffer sizing for every connection of a server with `options`. */
export function readerOptions(options: ResolvedOptions): ByteReaderOptions {
  return {
    initialSize: options.readBufferSize,
    settledSize: Math.min(options.readBufferSize, SETTLED_READ_BUFFER),
    maxSize: Math.max(options.maxHeaderBytes, 256 * 1024),
    mode: options.readMode,
    // The head's buffer is replaced at the upgrade (settle) or at the
    // second read (a connection that lives on): see sharedInitial.
    sharedInitial: true,
    runtimeInternals: options.runtimeInternals,
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

// A request body the handler did not read (or not to its end) is read and
// discarded after the response, up to this many bytes, so the connection
// can serve the next request; with more left, the connection closes instead
// (the response then says so). Enough for any form post or JSON body that
// an endpoint refuses unread; not an upload's worth of waiting.
const DRAIN_BODY_BYTES = 64 * 1024;

const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");

/** Writes all of `bytes` (a write may take only part), through the op for `rid` (see raw_io.ts). */
async function writeAll(conn: Deno.Conn, rid: number | null, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await writeTo(conn, rid, bytes.subarray(offset));
}

const never = (): boolean => false;

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

// Where a session is. Shutdown closes the first three at once and lets
// ANSWERING finish (within its timeout).
/** Reading the connection's first request head (deadline from the accept). */
const FIRST_HEAD = 0;
/** Between requests on a persistent connection: nothing of the next one yet. */
const IDLE = 1;
/** Reading a later request's head (deadline from its first byte), or upgrading. */
const HEAD = 2;
/** A plain request is being answered: the handler, its body, the response. */
const ANSWERING = 3;

/** What run() resolves with when the callbacks have taken the connection on. */
const HANDED_OFF = Symbol("handed off");

// What #scanHead finds when the buffer holds no complete, acceptable head.
const HEAD_INCOMPLETE = -1;
const HEAD_BARE_LF = -2;
const HEAD_TOO_LARGE = -3;

/**
 * The `info` a `fetch` handler gets: what `Deno.serve` passes (`remoteAddr`,
 * `completed`) and the server, and this request's body limit.
 */
class FetchInfo implements RequestInfo {
  remoteAddr: Deno.NetAddr;
  server: Server<unknown>;
  #body: RequestBody | null;
  #limit: number;
  #completed: Promise<void> | null = null;
  #settle: (() => void) | null = null;
  #settled = false;

  constructor(
    remoteAddr: Deno.NetAddr,
    server: Server<unknown>,
    body: RequestBody | null,
    limit: number,
  ) {
    this.remoteAddr = remoteAddr;
    this.server = server;
    this.#body = body;
    this.#limit = limit;
  }

  // Made when first asked for: most handlers never look.
  get completed(): Promise<void> {
    if (this.#completed === null) {
      this.#completed = this.#settled
        ? Promise.resolve()
        : new Promise<void>((resolve) => this.#settle = resolve);
    }
    return this.#completed;
  }

  get maxBodyBytes(): number {
    return this.#limit;
  }

  set maxBodyBytes(bytes: number) {
    this.#limit = checkNonNegative("maxBodyBytes", bytes);
    if (this.#body !== null) this.#body.limit = bytes;
  }

  /** The response was sent or abandoned. */
  settle(): void {
    this.#settled = true;
    this.#settle?.();
  }
}

// What the response writer needs of the usual request (method, and
// HTTP/1.0 or 1.1): one shared object per kind, not one per request. The
// writer reads 1.x above 1.1 as 1.1, so [1, 1] stands for them all.
const ANSWERED_GET_10: AnsweredRequest = { method: "GET", version: [1, 0] };
const ANSWERED_GET_11: AnsweredRequest = { method: "GET", version: [1, 1] };
const ANSWERED_HEAD_10: AnsweredRequest = { method: "HEAD", version: [1, 0] };
const ANSWERED_HEAD_11: AnsweredRequest = { method: "HEAD", version: [1, 1] };

/** The shared {@linkcode AnsweredRequest} for a usual request (usualRequestOf). */
function answeredAs(method: string, minor: number): AnsweredRequest {
  if (method === "GET") return minor === 0 ? ANSWERED_GET_10 : ANSWERED_GET_11;
  return minor === 0 ? ANSWERED_HEAD_10 : ANSWERED_HEAD_11;
}

/** Why a request's signal aborts: the connection ended before its response did. */
const CLIENT_LEFT = () =>
  new DOMException("the connection closed before the response was complete", "AbortError");

/**
 * The `Request` a `fetch` handler gets: a real one (the runtime's class, its
 * brand, methods and body), whose `signal` aborts when the client leaves
 * (or the server drops the connection) before the response is complete, as
 * `Deno.serve`'s requests do: a handler streaming a response or waiting on
 * slow work can stop. The runtime's own `signal` cannot be aborted from
 * outside, so the getter is overridden, here on the prototype, and the
 * state lives in the request itself: defining the getter on each instance
 * cost ~0.9 µs per request (a descriptor, a closure and a state object per
 * request, and the object left in dictionary mode). The AbortController is
 * made when the handler first reads the signal, so the many handlers that
 * never look pay for none.
 */
class ServedRequest extends Request {
  #controller: AbortController | null = null;
  #left = false;

  override get signal(): AbortSignal {
    let controller = this.#controller;
    if (controller === null) {
      controller = this.#controller = new AbortController();
      if (this.#left) controller.abort(CLIENT_LEFT());
    }
    return controller.signal;
  }

  /**
   * The client left before `request`'s response was complete: its signal
   * aborts (now, or as it is made). Static, so that handlers see no extra
   * method on the request.
   */
  static clientLeft(request: ServedRequest): void {
    request.#left = true;
    request.#controller?.abort(CLIENT_LEFT());
  }
}
// Prints (Deno.inspect, console.log) as the Request it is.
Object.defineProperty(ServedRequest, "name", { value: "Request" });

// The plain 101's options: shared, not an object per handshake.
const PLAIN_101: SwitchingProtocolsOptions = Object.freeze({});

/** The 101 for an upgrade with what was agreed. */
function switchingProtocols(
  upgrade: UpgradeRequest,
  protocol: string,
  deflate: DeflateAgreement | null,
  headers: Headers | undefined,
): Uint8Array {
  return encodeSwitchingProtocols(
    upgrade.key,
    protocol === "" && deflate === null && headers === undefined
      ? PLAIN_101
      : { protocol, extensions: deflate?.response, headers },
  );
}

/** Serves one accepted TCP connection. Never throws. */
export class HttpSession<T> implements BodyHost {
  #host: SessionHost<T>;
  #conn: Deno.Conn;
  readonly reader: ByteReader;
  #done = false;
  #phase = FIRST_HEAD;
  /**
   * Deadlines (real time, ms since the epoch; Infinity when none): the
   * request head's (or the keep-alive wait's), a body read waiting on the
   * client, and a response write making no progress. The session is
   * expired when the earliest passes.
   */
  #headDeadline: number;
  #bodyDeadline = Infinity;
  #writeDeadline = Infinity;
  /** Plain requests answered on this connection. */
  #requests = 0;
  /** The server asked this session to end after its current response. */
  #stopping = false;
  #stopped: (() => void) | null = null;
  /** The one read in flight on the connection, shared by whoever waits for bytes. */
  #filling: Promise<number> | null = null;
  /** The runtime's read promise while a request head is read (see #serveOne). */
  #headRead: Promise<number | null> | null = null;
  /** The response being written to a plain HTTP request, if any. */
  #response: ResponseWriter | null = null;
  /** The body of the request being answered, if it has one. */
  #body: RequestBody | null = null;
  /** The client's `Connection` field lets the connection persist. */
  #clientKeepsAlive = false;
  /** A `100 Continue` is owed before the body's first read. */
  #continueOwed = false;
  /** The `100 Continue` being written: the response waits for it. */
  #interim: Promise<void> | null = null;
  /** Where the request is addressed, once its head is parsed and validated. */
  #address: RequestAddress | null = null;
  // The view a later head is decoded from, and the buffer it is a view of:
  // kept while the heads of a connection have one length (a client
  // repeating its request), so no typed array is made per request.
  #headView: Uint8Array | null = null;
  #headViewOf: Uint8Array | null = null;
  /** Whether a read is kept pending to notice the client leaving (see #watchPeer). */
  #watching = false;
  /** The response is complete: the client's EOF is now expected, not a reason to abort. */
  #finishing = false;
  /**
   * The request being answered, while its response is not complete: its
   * `signal` aborts if the connection is dropped first (see ServedRequest).
   * The controller is made when the handler first reads `request.signal`.
   */
  #answering: ServedRequest | FastRequestState | null = null;
  // The read callbacks (see #fillOnce and #watch), made on first use.
  #filled: ((n: number | null) => number) | null = null;
  #fillFailed: (() => number) | null = null;
  #watched: ((n: number) => void) | null = null;
  // The callbacks of the keep-alive path (see #nextRequest), made on first
  // use (a connection that upgrades at once never makes them), and the
  // info of the request whose response they are writing.
  #nextFilled: ((n: number) => void) | null = null;
  #nextRead: ((n: number | null) => void) | null = null;
  #nextFailed: (() => void) | null = null;
  #nextSent: ((outcome: WriteOutcome) => void) | null = null;
  #info: FetchInfo | null = null;
  /** The host has been told that the session is over. */
  #reported = false;
  /** The connection's response writer, made for its first response. */
  #writer: ResponseWriter | null = null;
  // The first request's callback path (see start): how much of the buffer
  // the head's scan has searched, and, while the 101 is written, its
  // bytes, how many are written, and what the connection is then opened
  // with.
  #scanned = 0;
  #reply: Uint8Array | null = null;
  #replied = 0;
  #replyText = "";
  #replyProtocol = "";
  #replyDeflate: DeflateAgreement | null = null;
  // The writer's callbacks, made on first use and reused for every response
  // on the connection (closures per request otherwise).
  #mayPersist: (() => boolean) | null = null;
  #prelude: (() => Promise<void> | undefined) | null = null;

  constructor(host: SessionHost<T>, conn: Deno.Conn) {
    this.#host = host;
    this.#conn = conn;
    // One options object per server, not per connection (idle memory).
    this.reader = new ByteReader(conn, host.readerOptions);
    // Real time, not the host's coarse clock: that may be a housekeeping
    // tick old, and a deadline counted from it would fire up to a tick
    // early. One Date.now() per connection costs nothing that shows.
    this.#headDeadline = Date.now() + host.options.handshakeTimeout;
  }

  /** When the session must be dropped (or its body failed) unless something happens first. */
  get deadline(): number {
    return Math.min(this.#headDeadline, this.#bodyDeadline, this.#writeDeadline);
  }

  /** Drops the connection (a deadline passed, or the server is stopping). */
  abort(): void {
    if (this.#done) return;
    this.#done = true;
    this.#headDeadline = this.#bodyDeadline = this.#writeDeadline = Infinity;
    this.#response?.abort();
    this.#body?.fail(0, "the connection was closed");
    const answering = this.#answering;
    if (answering !== null) {
      this.#answering = null;
      if (answering instanceof FastRequestState) answering.clientLeft();
      else ServedRequest.clientLeft(answering);
    }
    closeQuietly(this.#conn);
  }

  /**
   * The deadline passed at `now`. A body read that waited too long fails
   * the body (the handler sees its stream error, the client gets 408) and
   * leaves the handler `handshakeTimeout` to answer; anything else (a slow
   * head, an idle keep-alive connection, a stalled response write) drops
   * the connection.
   */
  expire(now: number): void {
    const body = this.#body;
    if (this.#bodyDeadline <= now && body !== null && body.failure === null) {
      this.#bodyDeadline = Infinity;
      body.fail(408, "request body timed out");
      this.#headDeadline = now + this.#host.options.handshakeTimeout;
      return;
    }
    this.abort();
  }

  /**
   * The server is shutting down. A session reading a head, waiting idle
   * between requests, or upgrading is closed at once (true); one answering a
   * request finishes that response, which then says `Connection: close`,
   * and closes: the promise settles when it is over.
   */
  stop(): Promise<void> | true {
    if (this.#done || this.#phase !== ANSWERING) {
      this.abort();
      return true;
    }
    this.#stopping = true;
    return new Promise<void>((resolve) => this.#stopped = resolve);
  }

  /** Whether the session ended (answered, upgraded or aborted). */
  get done(): boolean {
    return this.#done;
  }

  /**
   * Serves the connection, then tells the host
   * ({@linkcode SessionHost.sessionEnded}). The first request head is read,
   * and the usual upgrade answered, by callbacks (#headIn, #replyWritten);
   * anything else goes on in {@linkcode HttpSession.run} from where the
   * callbacks got to. A connection that upgrades at once (most WebSocket
   * clients) thus never has an async frame, its promise and the awaits'
   * reactions and closures (~2 KB allocated per handshake), nor a promise
   * for the server to wait on.
   *
   * The callbacks are made afresh for each read and write, never kept in a
   * field: one callback kept per session (an arrow made once and stored)
   * measured +0.5 KiB per idle connection in the idle shape, at the same
   * live heap (bench/RESULTS.md change 18; change 17 saw the same with the
   * writer's callbacks under connection churn).
   */
  start(): void {
    this.#readHead();
  }

  /** Reads (more of) the first request head; #headIn takes the result. */
  #readHead(): void {
    let raw: Promise<number | null>;
    try {
      raw = this.#headRead = this.reader.readRaw();
    } catch {
      // The buffer cannot grow (not below maxHeaderBytes): as run() does.
      return this.#continue(HEAD_INCOMPLETE, null, "");
    }
    // One closure for both outcomes (a rejection's reason is never a
    // number or null), made per read, not kept (see start).
    const done = (result: unknown) => this.#headIn(result);
    raw.then(done, done);
  }

  /** A read of the first head completed: `result` is its byte count, or why it failed. */
  #headIn(result: unknown): void {
    this.#headRead = null;
    const reader = this.reader;
    const n = typeof result === "number" || result === null ? reader.commit(result) : 0;
    if (n === 0 || this.#done) {
      this.abort();
      return this.#ended(null);
    }
    const headEnd = this.#scanHead(this.#scanned);
    if (headEnd === HEAD_INCOMPLETE) {
      this.#scanned = reader.filled;
      return this.#readHead();
    }
    if (headEnd < 0 || this.#done) return this.#continue(headEnd, null, "");
    // The usual upgrade is answered here; anything else (a plain request,
    // a refusal, an upgrade hook, no slot free) goes on in run(), with the
    // head as scanned (the scan is shared: run() uses it before any await).
    const host = this.#host;
    const text = decodeRequestHead(reader.buffer.subarray(0, headEnd));
    const fields = scanRequestHead(text);
    if (isRejection(fields) || host.handlers.upgrade !== undefined) {
      return this.#continue(headEnd, fields, text);
    }
    const upgrade = upgradeOf(fields);
    if (upgrade === null) {
      // A plain request (or an unusual upgrade, which #nextComplete hands
      // to run()): answered as a later request of a persistent connection.
      try {
        return this.#nextComplete(headEnd, text, fields);
      } catch (error) {
        this.#host.reportError(error);
        return this.#closed();
      }
    }
    if (!host.canAccept()) return this.#continue(headEnd, fields, text);
    // What #serveOne and #upgrade do for this request, without their frames.
    reader.consume(headEnd);
    this.#address = upgrade;
    this.#phase = HEAD;
    const protocol = this.#chooseProtocol(upgrade, undefined);
    const deflate = this.#negotiate(upgrade.extensionValues);
    const reply = switchingProtocols(upgrade, protocol, deflate, undefined);
    if (!host.reserveSlot()) {
      return this.#endWith(
        this.#reject({ status: 503, message: "too many connections" }).then(() => null),
      );
    }
    this.#reply = reply;
    this.#replyText = text;
    this.#replyProtocol = protocol;
    this.#replyDeflate = deflate;
    this.#writeReply();
  }

  /** Writes (the rest of) the 101; #replyWritten takes the result. */
  #writeReply(): void {
    const reply = this.#reply!;
    let written: Promise<number>;
    try {
      const bytes = this.#replied === 0 ? reply : reply.subarray(this.#replied);
      written = writeTo(this.#conn, this.reader.rid, bytes);
    } catch (error) {
      return this.#replyWritten(error);
    }
    const done = (result: unknown) => this.#replyWritten(result);
    written.then(done, done);
  }

  /** A write of the 101 completed: `result` is its byte count, or why it failed. */
  #replyWritten(result: unknown): void {
    const host = this.#host;
    if (typeof result !== "number") {
      // The peer left (or the deadline closed it) before its 101 was
      // written: nothing opened, and nothing for the application to hear.
      this.abort();
      host.releaseSlot();
      return this.#ended(null);
    }
    this.#replied += result;
    if (this.#replied < this.#reply!.length) return this.#writeReply();
    let connection: Connection<T> | null = null;
    try {
      connection = this.#open(
        this.#replyProtocol,
        this.#replyDeflate,
        this.#replyText,
        undefined as T,
      );
    } catch (error) {
      host.reportError(error);
      this.abort();
    } finally {
      host.releaseSlot();
    }
    this.#ended(connection);
  }

  /** Goes on in run() from what the callbacks found of the first request. */
  #continue(headEnd: number, fields: HeadFields | HandshakeRejection | null, text: string): void {
    this.#endWith(this.run(headEnd, fields, text));
  }

  /** The session ends when `work` does, unless the callbacks have taken it on. */
  #endWith(work: Promise<Connection<T> | null | typeof HANDED_OFF>): void {
    work.then(
      (connection) => {
        if (connection !== HANDED_OFF) this.#ended(connection);
      },
      (error) => {
        this.#host.reportError(error);
        this.#ended(null);
      },
    );
  }

  /**
   * A persistent connection waits for its next request, read and (in the
   * usual case) answered by callbacks: a request without a body whose
   * handler answers at once with a response the runtime holds whole (see
   * fetch_internals.ts) is read, answered and written with no async frame
   * of ours — #serveOne's, #serveHttp's, the writer's, and run()'s loop
   * cost ~1.5 µs of ~15 µs per keep-alive request (profiled). Anything else
   * (a body, an upgrade, a refusal, a promise from the handler, any other
   * response) goes on by the async path, from where the callbacks got to
   * (run()).
   */
  #nextRequest(): void {
    if (this.#stopping || this.#host.stopping) {
      // stop() came while the last response was finishing (a handler's
      // `completed` reaction runs then): the session was still answering,
      // so it was asked to end after the response, which is now. Idle, it
      // would otherwise wait for a next request until shutdown's timeout.
      return this.#closed();
    }
    this.#phase = IDLE;
    this.#headDeadline = Date.now() + this.#host.options.keepAliveTimeout;
    this.#scanned = 0;
    this.#nextHead();
  }

  /**
   * Tells the host that the session is over, once: a path that could end
   * it twice (an unexpected error in a callback while a write is out)
   * would otherwise count its task as ended twice.
   */
  #ended(connection: Connection<T> | null): void {
    if (this.#reported) return;
    this.#reported = true;
    // A stop() waiting for the response in progress is over only now: not
    // when a run() ends, since one that hands the connection to the
    // callbacks may have started answering a pipelined request (whose
    // handler may be the one that stopped the server).
    this.#stopped?.();
    this.#host.sessionEnded(this, connection);
  }

  /** Looks for the next head in what has been read, or reads more (#nextIn). */
  #nextHead(): void {
    // A promise callback: an error thrown here would be an unhandled
    // rejection, which ends the process. Reported, and the connection closed.
    try {
      this.#nextStep();
    } catch (error) {
      this.#host.reportError(error);
      this.#closed();
    }
  }

  /** #nextHead's work: answers a head in the buffer, or posts the read for one. */
  #nextStep(): void {
    if (this.#done) return this.#closed();
    const reader = this.reader;
    const headEnd = this.#scanHead(this.#scanned);
    if (headEnd !== HEAD_INCOMPLETE) return this.#nextComplete(headEnd);
    this.#scanned = reader.filled;
    // The watch of the last request may have a read out already.
    const pending = this.#filling;
    if (pending !== null) {
      pending.then(this.#nextFilled ??= (n) => this.#nextIn(n));
      return;
    }
    // As #serveOne: nobody else reads while a head is awaited.
    let raw: Promise<number | null>;
    try {
      raw = this.#headRead = reader.readRaw();
    } catch {
      return this.#endWith(this.run());
    }
    // The read may have moved to another buffer (the reader's own after the
    // shared one, or a resized one): the kept head view is dropped rather
    // than keep the old buffer alive while the connection idles.
    if (this.#headViewOf !== null && this.#headViewOf !== reader.buffer) {
      this.#headView = this.#headViewOf = null;
    }
    raw.then(
      this.#nextRead ??= (n) => {
        this.#headRead = null;
        this.#nextIn(this.reader.commit(n));
      },
      this.#nextFailed ??= () => {
        this.#headRead = null;
        this.#nextIn(0);
      },
    );
  }

  /** A read for the next head is in: `n` bytes, 0 at the end. */
  #nextIn(n: number): void {
    if (n === 0 || this.#done) return this.#closed();
    this.#nextHead();
  }

  /** The client left (or the session was dropped) between requests. */
  #closed(): void {
    this.abort();
    this.#ended(null);
  }

  /**
   * The next request's head is complete (or refused: `headEnd` < 0). The
   * usual request is answered here, what #serveOne and #serveHttp would do
   * for it; anything else goes to run() before anything is consumed. Also
   * a connection's first request, when it is not the usual upgrade
   * (#headIn): `scannedText` and `scan` are then its head, as scanned.
   */
  #nextComplete(headEnd: number, scannedText = "", scan: HeadFields | null = null): void {
    if (headEnd < 0) return this.#endWith(this.run(headEnd));
    const host = this.#host;
    const fetch = host.handlers.fetch;
    // A first request comes decoded and scanned (by #headIn).
    const text = scan === null ? decodeRequestHead(this.#headBytes(headEnd)) : scannedText;
    const fields = scan ?? scanRequestHead(text);
    if (isRejection(fields) || fetch === undefined || !host.options.runtimeInternals) {
      return this.#endWith(this.run(headEnd, fields, text));
    }
    let request: Request | null;
    let answered: AnsweredRequest;
    const usual = fetchInternalsAvailable() ? usualRequestOf(fields) : null;
    if (usual !== null) {
      // The usual GET or HEAD, checked in place (see usualRequestOf): no
      // RequestHead, no address object, and the handler's headers made
      // from the text only if it reads them.
      this.#address = null;
      this.#answerPlain(headEnd, usual.keepsAlive);
      answered = answeredAs(usual.method, usual.minor);
      request = this.#usualRequest(usual.method, usual.authority, usual.target, text);
    } else {
      const head = headOf(fields);
      // Not a body, an expectation or an upgrade, in one pass over the fields.
      const keepsAlive = head.version[0] === 1 && head.target !== "*"
        ? plainRequestKeepsAlive(head)
        : null;
      const address = keepsAlive === null ? null : requestAddress(head);
      if (address === null || isRejection(address)) {
        return this.#endWith(this.run(headEnd, fields, text));
      }
      // What #serveOne does for a plain request, then #serveHttp for one
      // without a body.
      this.#address = address;
      this.#answerPlain(headEnd, keepsAlive!);
      answered = head;
      request = this.#request(head, true);
    }
    if (request === null) {
      const refused = this.#reject({ status: 400, message: "invalid request target or headers" });
      return this.#endWith(this.run(HEAD_INCOMPLETE, null, "", refused.then(() => false)));
    }
    const info = new FetchInfo(
      this.#conn.remoteAddr as Deno.NetAddr,
      host.owner,
      null,
      host.options.maxBodyBytes,
    );
    const result = this.#callFetch(fetch, request, info);
    // The connection may have been dropped while the handler ran.
    const held = result instanceof Response && !this.#done ? takeStaticResponse(result) : null;
    if (held === null || held === "used") {
      // The handler's work goes on (or its response is streamed): the
      // watch notices a client that leaves meanwhile, as in #serveHttp.
      // Started after the handler returned, not before: nothing of it runs
      // before then that could see the signal abort.
      this.#watchPeer();
      return this.#endWith(
        this.run(HEAD_INCOMPLETE, null, "", this.#answer(result, answered, info)),
      );
    }
    // A response complete at once goes out now, and the next head is read
    // after it, as bench/http_limit.ts does: no watch read, and its chain
    // of promises, per request (a client leaving now fails the write). In
    // alternating runs no faster or slower than with the watch: kept as
    // the simpler of the two.
    this.#info = info;
    this.#readyWriter(200, true).sendStatic(
      held,
      answered,
      this.#nextSent ??= (outcome) => this.#sentNext(outcome),
    );
  }

  /** The first `headEnd` bytes of the read buffer, where a later head lies. */
  #headBytes(headEnd: number): Uint8Array {
    const buffer = this.reader.buffer;
    const view = this.#headView;
    if (view !== null && view.length === headEnd && this.#headViewOf === buffer) return view;
    this.#headViewOf = buffer;
    return this.#headView = buffer.subarray(0, headEnd);
  }

  /**
   * A plain request without a body (its head `headEnd` bytes long) is
   * answered from now on: what #serveOne and #serveHttp set for one.
   */
  #answerPlain(headEnd: number, keepsAlive: boolean): void {
    this.reader.consume(headEnd);
    this.#beginAnswer();
    this.#body = null;
    this.#continueOwed = false;
    this.#interim = null;
    this.#clientKeepsAlive = keepsAlive;
  }

  /**
   * The handler's `Request` for the usual request (see usualRequestOf),
   * made as {@linkcode #request} makes a GET's or a HEAD's through the
   * runtime's slots, from the head's parts; null when the runtime's URL
   * parser refuses its URL.
   */
  #usualRequest(method: string, authority: string, target: string, text: string): Request | null {
    let href: string;
    try {
      href = requestHref(this.#host.scheme === "wss" ? "https" : "http", authority, target);
    } catch {
      return null;
    }
    return this.#slotRequest(method, href, text, true);
  }

  /**
   * A `Request` without a body made through the runtime's slots (see
   * fetch_internals.ts; the caller has checked they are usable), with
   * `fields` the head's fields or its text; when `served`, the one being
   * answered (its signal follows the connection).
   */
  #slotRequest(
    method: string,
    href: string,
    fields: RequestFields | string,
    served: boolean,
  ): Request {
    const state = new FastRequestState(method, href, fields);
    if (served) this.#answering = state;
    return fastRequest(state)!;
  }

  /** A plain request's head is read: it is answered from now on (no head deadline). */
  #beginAnswer(): void {
    this.#phase = ANSWERING;
    this.#headDeadline = Infinity;
    this.#requests++;
  }

  /** The response written by #nextComplete is out (or cut). */
  #sentNext(outcome: WriteOutcome): void {
    // A write cut short: the client left before the response was complete,
    // which its request.signal must tell. No watch read was out to notice
    // it (see #nextComplete), so the failed write is how it is learnt: the
    // session is dropped now, while the request is still the one answered.
    if (outcome === "cut") this.abort();
    // As #serveHttp: the response is complete, the signal stays as it is.
    this.#answering = null;
    const info = this.#info!;
    this.#info = null;
    info.settle();
    if (outcome === "keep" && !this.#done && !this.#stopping && !this.#host.stopping) {
      this.#response = null;
      this.#watching = false;
      return this.#nextRequest();
    }
    this.#endWith(this.run(HEAD_INCOMPLETE, null, "", this.#afterResponse(outcome)));
  }

  /**
   * Serves a request by the async path: resolves with the upgraded
   * connection, or null once the connection is closed, or HANDED_OFF when
   * it persists and its next request is read by callbacks (#nextRequest).
   * `headEnd`, `fields` and `text`: what the callbacks found of the request
   * already (see #serveOne); `answering`: a request the callbacks began to
   * answer, finished by this promise (true when the connection persists).
   */
  async run(
    headEnd = HEAD_INCOMPLETE,
    fields: HeadFields | HandshakeRejection | null = null,
    text = "",
    answering: Promise<boolean> | null = null,
  ): Promise<Connection<T> | null | typeof HANDED_OFF> {
    try {
      const next = answering !== null
        ? await answering
        : await this.#serveOne(headEnd, fields, text);
      if (next !== true) return next || null;
      // The connection persists: its next request is read by callbacks.
      this.#nextRequest();
      return HANDED_OFF;
    } catch (error) {
      // An application hook failed (or chose an impossible subprotocol).
      if (!this.#done) {
        this.#host.reportError(error);
        if (this.#response?.started) this.abort();
        else await this.#reject({ status: 500, message: "internal server error" });
      }
      return null;
    }
  }

  /**
   * Reads and answers one request. True when the connection persists for
   * another; else the upgraded connection, or null once it is closed.
   */
  async #serveOne(
    found = HEAD_INCOMPLETE,
    scan: HeadFields | HandshakeRejection | null = null,
    scannedText = "",
  ): Promise<Connection<T> | null | true> {
    // The head is read here, not in a helper: every async layer between
    // this frame and the runtime's read promise is one more promise and
    // microtask per read, and a connection's first read is most of its
    // handshake (connect benchmark, bench/RESULTS.md).
    const reader = this.reader;
    let scanned = 0;
    let headEnd = found;
    while (headEnd === HEAD_INCOMPLETE && (headEnd = this.#scanHead(scanned)) === HEAD_INCOMPLETE) {
      scanned = reader.filled;
      let n: number;
      const pending = this.#filling;
      if (pending !== null) {
        // A read started by the previous request's watch is still out.
        n = await pending;
      } else {
        // Nobody else reads while a head is awaited (the previous request's
        // body is detached and its watch has ended), so the runtime's
        // promise is awaited directly; fill() waits for it if asked.
        const raw = this.#headRead = reader.readRaw();
        try {
          n = reader.commit(await raw);
        } catch {
          n = 0;
        } finally {
          this.#headRead = null;
        }
      }
      if (n === 0 || this.#done) {
        this.abort();
        return null;
      }
    }
    if (headEnd < 0) {
      await this.#reject(
        headEnd === HEAD_BARE_LF
          ? { status: 400, message: "request lines must end in CRLF" }
          : { status: 431, message: "request head too large" },
      );
      return null;
    }
    if (this.#done) return null;
    // A first head may come scanned already (by #headIn, which answers the
    // usual upgrade itself and leaves the rest here). `scan` is the shared
    // scan result: used here, before any await, and not kept. A later head
    // on a persistent connection, upgrade or not, takes the general path
    // (rare: no need to save its parsed head).
    const text = scan === null
      ? decodeRequestHead(reader.buffer.subarray(0, headEnd))
      : scannedText;
    const fields = scan ?? scanRequestHead(text);
    if (isRejection(fields)) {
      await this.#reject(fields);
      return null;
    }
    reader.consume(headEnd);
    const head = headOf(fields);
    if (head.version[0] !== 1) {
      await this.#reject({ status: 505, message: "this server speaks HTTP/1.x" });
      return null;
    }
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
      this.#beginAnswer();
      return await this.#serveHttp(head) || null;
    }
    // The Host was checked by requestAddress, HTTP/1.1 requiring exactly one.
    const upgrade = checkUpgrade(head, true);
    if (isRejection(upgrade)) {
      await this.#reject(upgrade);
      return null;
    }
    const framing = requestBodyFraming(
      headerValues(head, "content-length"),
      headerValues(head, "transfer-encoding"),
    );
    if (framing.kind !== "none") {
      // What follows the head must be frames, not a body of unclear end.
      await this.#reject(
        framing.kind === "error" ? framing : {
          status: 400,
          message: "an upgrade request cannot have a body",
        },
      );
      return null;
    }
    return await this.#upgrade(head, upgrade, text);
  }

  /** Reads more into the reader; one read at a time, shared by all who wait. 0 at the end. */
  fill(): Promise<number> {
    if (this.#filling !== null) return this.#filling;
    // A head read in flight is not shared (its bytes are the head's): the
    // next read starts after it.
    const head = this.#headRead;
    if (head !== null) {
      return this.#filling = head.then(() => this.#fillOnce(), () => this.#fillOnce());
    }
    return this.#filling = this.#fillOnce();
  }

  #fillOnce(): Promise<number> {
    let raw: Promise<number | null>;
    try {
      // readRaw + commit, not reader.fill(): one async layer fewer per read.
      raw = this.reader.readRaw();
    } catch {
      // The buffer is full at its maximum size: as the end of input.
      return Promise.resolve(0);
    }
    // Callbacks made once per session, not an async function: no suspended
    // frame and promise per read (one read per request: the watch's).
    return raw.then(
      this.#filled ??= (n) => {
        this.#filling = null;
        return this.reader.commit(n);
      },
      this.#fillFailed ??= () => {
        this.#filling = null;
        return 0;
      },
    );
  }

  /**
   * Looks for the end of the request head in what has been read: its
   * length, or HEAD_INCOMPLETE (read more), HEAD_BARE_LF or HEAD_TOO_LARGE.
   * Empty lines before the request line are skipped. `scanned`: how much of
   * the buffer earlier calls have searched already.
   */
  #scanHead(scanned: number): number {
    const reader = this.reader;
    if (reader.filled === 0) return HEAD_INCOMPLETE;
    if (this.#phase === IDLE) {
      // The next request has begun: its head has handshakeTimeout.
      this.#phase = HEAD;
      this.#headDeadline = Date.now() + this.#host.options.handshakeTimeout;
    }
    const empty = leadingEmptyLines(reader.buffer, reader.filled);
    if (empty > 0) {
      reader.consume(empty);
      scanned = 0;
      if (reader.filled === 0) return HEAD_INCOMPLETE;
    }
    const limit = this.#host.options.maxHeaderBytes;
    const end = findStrictHeadEnd(reader.buffer, scanned, reader.filled);
    if (end < -1) return HEAD_BARE_LF;
    if (end >= 0 && end <= limit) return end;
    if (end > limit || reader.filled >= limit) return HEAD_TOO_LARGE;
    return HEAD_INCOMPLETE;
  }

  async #reject(rejection: HandshakeRejection): Promise<void> {
    this.#host.httpResponded(rejection.status);
    // With a Date, as every response this server originates (RFC 9110 §6.6.1).
    const headers: [string, string][] = [["Date", httpDate()]];
    if (rejection.headers !== undefined) headers.push(...rejection.headers);
    await this.#respondBytes(encodeRejection({ ...rejection, headers }));
  }

  /** Answers `status` with no body (and no Content-Type), then closes. */
  async #respondEmpty(status: number): Promise<void> {
    this.#host.httpResponded(status);
    // No Content-Length: a 204 must not carry one (RFC 9110 §8.6).
    await this.#respondBytes(encodeResponseHead(status, [["Date", httpDate()]], null));
  }

  async #respondBytes(bytes: Uint8Array): Promise<void> {
    if (this.#done) return;
    try {
      await this.#interim;
      await writeAll(this.#conn, this.reader.rid, bytes);
    } catch {
      // The peer left; nothing to tell it.
      return this.abort();
    }
    await this.#finishResponse();
  }

  /** After a response that ends the connection: half-close, wait briefly for the client's EOF, close. */
  async #finishResponse(): Promise<void> {
    this.#finishing = true;
    this.#watching = false;
    try {
      await this.#conn.closeWrite();
      await this.#drainBriefly();
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
    const reader = this.reader;
    const timer = setTimeout(() => this.abort(), RESPONSE_LINGER_MS);
    try {
      let discarded = 0;
      while (!this.#done && discarded < RESPONSE_LINGER_BYTES) {
        reader.filled = 0;
        const n = await this.fill();
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

  /**
   * {@linkcode #url} as the URL parser normalizes it (what `new
   * Request(url).url` would be); throws when the parser refuses it.
   */
  #href(scheme: string): string {
    const address = this.#address!;
    if (address.authority === null) return new URL(this.#url(scheme)).href;
    return requestHref(scheme, address.authority, address.path);
  }

  /**
   * The handler's `Request`; when `served`, one whose `signal` follows the
   * connection (see ServedRequest). Null when the runtime refuses the URL
   * or a header.
   */
  #request(head: RequestHead, served: boolean, body?: ReadableStream<Uint8Array>): Request | null {
    try {
      const scheme = this.#host.scheme === "wss" ? "https" : "http";
      const method = head.method;
      if (
        body === undefined && (method === "GET" || method === "HEAD") &&
        this.#host.options.runtimeInternals && fetchInternalsAvailable()
      ) {
        // Built as Deno.serve builds its own, when the runtime allows (see
        // fetch_internals.ts). The URL is parsed as `new Request` would:
        // the same href, and the same refusal of one the runtime rejects.
        return this.#slotRequest(method, this.#href(scheme), head.headers, served);
      }
      const url = this.#url(scheme);
      if (body === undefined && method === "GET") {
        // The usual request: no init dictionary for the runtime to convert
        // member by member (RequestInit has a dozen), and the fields added
        // one by one, as the init's would be: the same Request, ~20% less
        // time to build.
        const request = served ? new ServedRequest(url) : new Request(url);
        const headers = request.headers;
        const fields = head.headers;
        for (let i = 0; i < fields.length; i++) headers.append(fields[i][0], fields[i][1]);
        if (served) this.#answering = request as ServedRequest;
        return request;
      }
      const init: RequestInit & { duplex?: "half" } = {
        method: head.method,
        headers: head.headers,
      };
      if (body !== undefined) {
        init.body = body;
        init.duplex = "half";
      }
      if (!served) return new Request(url, init);
      const request = new ServedRequest(url, init);
      this.#answering = request;
      return request;
    } catch {
      return null;
    }
  }

  /**
   * Upgrades: the hook (when there is one), the 101, the connection. (The
   * usual first upgrade does the same by callbacks: see #headIn.)
   */
  async #upgrade(
    head: RequestHead,
    upgrade: UpgradeRequest,
    text: string,
  ): Promise<Connection<T> | null> {
    const host = this.#host;
    this.#phase = HEAD;
    if (!host.canAccept()) {
      await this.#reject({ status: 503, message: "too many connections" });
      return null;
    }
    let accepted: UpgradeAccept<T> = {};
    const hook = host.handlers.upgrade;
    if (hook !== undefined) {
      const request = this.#request(head, false);
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
        // A refused upgrade closes: the client asked for another protocol.
        await this.#afterResponse(await this.#respond(result, head, false));
        return null;
      }
      accepted = result ?? {};
    }
    const protocol = this.#chooseProtocol(upgrade, accepted.protocol);
    if (this.#done) return null;
    const deflate = this.#negotiate(headerValues(head, "sec-websocket-extensions"));
    const response = switchingProtocols(
      upgrade,
      protocol,
      deflate,
      accepted.headers ? new Headers(accepted.headers) : undefined,
    );
    // The hook may have taken long, and other upgrades may be writing their
    // 101 right now: hold a slot from here until the connection is registered.
    if (!host.reserveSlot()) {
      await this.#reject({ status: 503, message: "too many connections" });
      return null;
    }
    try {
      try {
        // Inline rather than writeAll(): no async layer around the write.
        const conn = this.#conn;
        const rid = this.reader.rid;
        let written = await writeTo(conn, rid, response);
        while (written < response.length) {
          written += await writeTo(conn, rid, response.subarray(written));
        }
      } catch {
        // The peer left (or the deadline closed it) before its 101 was
        // written: nothing opened, and nothing for the application to hear.
        this.abort();
        return null;
      }
      return this.#open(protocol, deflate, text, accepted.data as T);
    } finally {
      host.releaseSlot();
    }
  }

  /** The permessage-deflate agreement for the client's offers, if any. */
  #negotiate(offers: string[]): DeflateAgreement | null {
    const option = this.#host.options.perMessageDeflate;
    // No offer, no agreement: nothing to parse (the usual request).
    if (option === false || offers.length === 0) return null;
    return negotiateDeflate(offers, option === true ? {} : option);
  }

  /** The 101 is written: the connection opens, unless the session ended meanwhile. */
  #open(
    protocol: string,
    deflate: DeflateAgreement | null,
    text: string,
    data: T,
  ): Connection<T> | null {
    if (this.#done) return null;
    this.#done = true;
    this.reader.settle();
    const host = this.#host;
    const connection = new Connection<T>(host, {
      conn: this.#conn,
      reader: this.reader,
      url: this.#url(host.scheme),
      protocol,
      // Parsed again on first use: the connection keeps only the head's
      // text (one flat string), not the parsed head with an array and two
      // strings per header (~600 bytes per idle connection), nor a
      // closure over it (~100 bytes).
      headers: text,
      data,
      deflate: deflate?.params ?? null,
      extensions: deflate?.response ?? "",
    });
    host.connectionOpened(connection);
    return connection;
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

  /** Answers one plain request; true when the connection persists for the next. */
  async #serveHttp(head: RequestHead): Promise<boolean> {
    const host = this.#host;
    const fetch = host.handlers.fetch;
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
      return false;
    }
    // Request smuggling defences: any doubt about where the body ends is
    // refused, and the connection closes (RFC 9112 §6.3).
    const framing = requestBodyFraming(
      headerValues(head, "content-length"),
      headerValues(head, "transfer-encoding"),
    );
    if (framing.kind === "error") {
      await this.#reject(framing);
      return false;
    }
    if (framing.kind === "chunked" && !isHttp11(head)) {
      // An HTTP/1.0 message with Transfer-Encoding has faulty framing (§6.1).
      await this.#reject({ status: 400, message: "Transfer-Encoding needs HTTP/1.1" });
      return false;
    }
    const expectation = requestExpectation(head);
    if (expectation === "unsupported") {
      await this.#reject({ status: 417, message: "only 100-continue can be expected" });
      return false;
    }
    const limit = host.options.maxBodyBytes;
    const body = this.#body = framing.kind === "none"
      ? null
      : new RequestBody(this, framing, limit);
    this.#continueOwed = expectation === "continue" && body !== null;
    this.#interim = null;
    this.#clientKeepsAlive = requestKeepsAlive(head);
    // A Request cannot carry a GET or HEAD body: such a body is drained.
    const exposed = body !== null && head.method !== "GET" && head.method !== "HEAD";
    const request = this.#request(head, true, exposed ? body.stream() : undefined);
    if (request === null) {
      await this.#reject({ status: 400, message: "invalid request target or headers" });
      return false;
    }
    // With no body to read, what arrives now is the next request, or the
    // client leaving; a body starts the watch when it ends.
    if (body === null) this.#watchPeer();
    const info = new FetchInfo(this.#conn.remoteAddr as Deno.NetAddr, host.owner, body, limit);
    return await this.#answer(this.#callFetch(fetch, request, info), head, info);
  }

  /** The handler's result: its Response, or a promise of one (rejected when it threw). */
  #callFetch(
    fetch: NonNullable<Handlers<T>["fetch"]>,
    request: Request,
    info: FetchInfo,
  ): Response | Promise<Response> {
    try {
      return fetch.call(this.#host.handlers, request, info);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Answers a plain request whose handler has been called (`result`):
   * true when the connection persists for the next.
   */
  async #answer(
    result: Response | Promise<Response>,
    head: AnsweredRequest,
    info: FetchInfo,
  ): Promise<boolean> {
    const host = this.#host;
    const body = this.#body;
    try {
      let response: Response;
      try {
        // A handler that answers at once (no promise) is not awaited: no
        // suspension and resumption of this frame for it.
        response = result instanceof Response ? result : await result;
      } catch (error) {
        if (body?.failure) return await this.#bodyFailed();
        host.reportError(error);
        await this.#reject({ status: 500, message: "internal server error" });
        return false;
      }
      if (body?.failure) {
        if (response instanceof Response) response.body?.cancel().catch(() => {});
        return await this.#bodyFailed();
      }
      const outcome = await this.#respond(response, head, true);
      // The response is complete (or abandoned): the signal stays as it is.
      this.#answering = null;
      if (
        outcome === "keep" && this.#body === null && !this.#done && !this.#stopping &&
        !this.#host.stopping
      ) {
        // #afterResponse's answer for the usual request (no body, kept
        // alive), without its async frame.
        this.#response = null;
        this.#watching = false;
        return true;
      }
      return await this.#afterResponse(outcome);
    } finally {
      this.#answering = null;
      info.settle();
    }
  }

  /**
   * The request body failed (malformed, too large, too slow, or the client
   * left): the client gets that status, whatever the handler made of it,
   * and the connection closes.
   */
  async #bodyFailed(): Promise<false> {
    const failure = this.#body!.failure!;
    if (failure.status === 0) this.abort();
    else await this.#reject({ status: failure.status, message: failure.message });
    return false;
  }

  /** After a response: whether the connection goes on to the next request. */
  async #afterResponse(outcome: WriteOutcome): Promise<boolean> {
    this.#response = null;
    const body = this.#body;
    this.#body = null;
    if (outcome === "cut" || this.#done) {
      this.abort();
      return false;
    }
    body?.detach();
    if (outcome === "close") {
      await this.#finishResponse();
      return false;
    }
    // The request's unread body, if any, is not the next request.
    if (body !== null && !await body.drain(DRAIN_BODY_BYTES)) {
      await this.#finishResponse();
      return false;
    }
    this.#watching = false;
    if (this.#done || this.#stopping || this.#host.stopping) {
      await this.#finishResponse();
      return false;
    }
    return true;
  }

  /**
   * Whether the connection may persist after the response now being
   * written (asked when its head is encoded): the client allows it, the
   * server is not stopping, the request limit is not reached, and the
   * request's body is read or can be drained.
   */
  #persists(): boolean {
    const options = this.#host.options;
    if (
      !this.#clientKeepsAlive || this.#stopping || this.#host.stopping ||
      options.keepAliveTimeout === 0 || this.#requests >= options.maxRequestsPerConnection
    ) {
      return false;
    }
    const body = this.#body;
    if (body === null || body.done) return true;
    if (body.failure !== null) return false;
    // The client may be waiting for a 100 Continue it will not get, or may
    // send the body anyway: where the next request starts is unclear.
    if (this.#continueOwed && !body.touched) return false;
    // A chunked body's size is unknown: draining is tried, and the
    // connection closes if more than the budget is left.
    return body.left === Infinity || body.left <= DRAIN_BODY_BYTES;
  }

  /** Before the body's first read from the socket: a `100 Continue` when owed. */
  beforeRead(): Promise<void> {
    if (!this.#continueOwed || this.#done || this.#response?.started) {
      return Promise.resolve();
    }
    this.#continueOwed = false;
    this.#interim = writeAll(this.#conn, this.reader.rid, CONTINUE).catch(() => this.abort());
    return this.#interim;
  }

  /** A body read waits on the client (its deadline runs) or has its bytes. */
  waiting(waiting: boolean): void {
    this.#bodyDeadline = waiting && !this.#done
      ? Date.now() + this.#host.options.handshakeTimeout
      : Infinity;
  }

  /** The request's body has been read to its end. */
  ended(): void {
    if (this.#phase === ANSWERING && !this.#finishing) this.#watchPeer();
  }

  /**
   * Writes the application's response. `persist`: whether the connection
   * may stay open after it (also subject to {@linkcode #persists}).
   */
  #respond(response: Response, head: AnsweredRequest, persist: boolean): Promise<WriteOutcome> {
    // Not async: the writer's promise is the caller's to await (one async
    // layer fewer per response); the caller clears #response.
    if (this.#done) {
      response.body?.cancel().catch(() => {});
      return Promise.resolve("cut");
    }
    // A response the runtime holds whole is read from its slots (see
    // fetch_internals.ts); any other through its Headers and body stream.
    const held = this.#host.options.runtimeInternals && response instanceof Response
      ? takeStaticResponse(response)
      : null;
    if (held === "used" || (held === null && (response.bodyUsed || response.body?.locked))) {
      // Thrown to run(), which answers 500 and reports it.
      throw new TypeError("the handler returned a Response whose body was already used");
    }
    const writer = this.#readyWriter(response.status, persist);
    return held === null ? writer.write(response, head) : writer.writeStatic(held, head);
  }

  /**
   * The connection's writer, readied for a response with `status` (see
   * {@linkcode #respond} for `persist`).
   */
  #readyWriter(status: number, persist: boolean): ResponseWriter {
    this.#headDeadline = Infinity;
    this.#host.httpResponded(status);
    // A write that makes no progress for idleTimeout (a client that stopped
    // reading) drops the client; waiting for the body to be produced does not.
    // One writer per connection, made for its first response and readied
    // for each later one (see ResponseWriter.reuse).
    return this.#response = (this.#writer ??= new ResponseWriter(
      this.#conn,
      (writing, now) => {
        const stall = this.#host.options.idleTimeout;
        this.#writeDeadline = writing && stall > 0 ? (now ?? Date.now()) + stall : Infinity;
      },
      undefined,
      null,
      this.reader.rid,
    )).reuse(
      persist ? this.#mayPersist ??= () => this.#persists() : never,
      // A 100 Continue may start while the response is being prepared
      // (a handler that streams its request body back): it goes out first.
      // None owed (the usual request): no prelude to ask about.
      this.#interim === null && !this.#continueOwed
        ? null
        : this.#prelude ??= () => this.#interim ?? undefined,
    );
  }

  /**
   * While a request is answered and nothing more of it is to be read, a
   * read stays pending, so a client that leaves is noticed while the
   * handler or a streamed response is still running (an idle
   * server-sent-events stream would otherwise outlive its client until its
   * next write). What arrives is kept: it is the next request (pipelining).
   * The watch stops once a whole head is waiting (or the buffer holds
   * maxHeaderBytes), so no read is pending when that request is answered
   * or upgraded. A bare LF does not stop it: the next head will be refused,
   * but the client leaving during this request must still abort its signal.
   */
  #watchPeer(): void {
    if (this.#watching) return;
    this.#watching = true;
    this.#watch();
  }

  /**
   * One step of the watch: it ends, or reads once more and takes the next
   * step when the read is in. A callback made once per session, not an
   * async loop: no suspended frame and promise per request.
   */
  #watch(): void {
    const reader = this.reader;
    if (
      !this.#watching || this.#done || reader.filled >= this.#host.options.maxHeaderBytes ||
      findHeadEnd(reader.buffer, 0, reader.filled) >= 0
    ) {
      this.#watching = false;
      return;
    }
    this.fill().then(
      this.#watched ??= (n) => {
        if (n === 0) {
          if (this.#watching && !this.#finishing) this.abort();
          this.#watching = false;
          return;
        }
        this.#watch();
      },
    );
  }
}
