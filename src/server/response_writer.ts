/**
 * Writes an application's `Response` (from the `fetch` handler) to a plain
 * HTTP connection: the head, then the body as it is produced. A streamed
 * body (server-sent events, a large file) goes out piece by piece, each
 * write awaited so a slow client holds back the producer, instead of being
 * buffered whole first, which never ended for an endless stream.
 *
 * @module
 */

import { writeTo } from "../connection/raw_io.ts";
import { reasonPhrase } from "../protocol/handshake.ts";
import type { StaticResponse } from "./fetch_internals.ts";
import { httpDate } from "./http_date.ts";

// A body that is complete within this many bytes, and whose pieces are all
// ready at once, is sent with a Content-Length in one write (the usual case:
// `new Response("text")` or bytes already in memory).
const PREFETCH_BYTES = 1024 * 1024;

// A body whose length the application declared (a static file) needs no
// prefetch to learn it: only this much is read ahead, enough for a small
// file to go out with its head in one write. Reading up to PREFETCH_BYTES
// ahead of a client that has stopped reading pinned over a MiB per response
// until idleTimeout dropped it; now such a response holds about this plus
// the piece being written.
const READ_AHEAD_BYTES = 64 * 1024;

// Stands in for a piece once written, so the array of prefetched pieces
// does not keep it alive while the rest is streamed.
const WRITTEN = new Uint8Array(0);

const encoder = new TextEncoder();
const CRLF = encoder.encode("\r\n");
const LAST_CHUNK = encoder.encode("0\r\n\r\n");

/**
 * One chunk of a `Transfer-Encoding: chunked` body (RFC 9112 §7.1): the size
 * in hex, CRLF, the bytes, CRLF. An empty input would end the body, so it
 * gives an empty result instead.
 */
export function encodeChunk(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 0) return bytes;
  const size = encoder.encode(bytes.length.toString(16));
  const chunk = new Uint8Array(size.length + 2 + bytes.length + 2);
  chunk.set(size);
  chunk.set(CRLF, size.length);
  chunk.set(bytes, size.length + 2);
  chunk.set(CRLF, chunk.length - 2);
  return chunk;
}

/**
 * Told when a write to the client starts and ends: the session gives a
 * write a deadline (a client that stops reading must not hold the
 * connection forever) but none while the body is being produced. `now`,
 * when given, is the current time (`Date.now()`), read by the writer.
 */
export type WriteWatcher = (writing: boolean, now?: number) => void;

/** What the writer needs to know of the request it answers. */
export interface AnsweredRequest {
  method: string;
  /** `[major, minor]`; chunked encoding needs HTTP/1.1. */
  version: [number, number];
}

/**
 * How a response ended: `"keep"` (sent whole, and its head told the client
 * the connection stays open for another request), `"close"` (sent whole;
 * its head said `Connection: close`, or its end was marked by closing), or
 * `"cut"` (cut short: the client left, the body failed or broke its
 * declared length, or abort; the connection must be dropped).
 */
export type WriteOutcome = "keep" | "close" | "cut";

/** Whether a `Connection` field's value lists `close`. */
function saysClose(value: string): boolean {
  return value.split(",").some((token) => token.trim().toLowerCase() === "close");
}

// What one pass over a response's headers found (see scanHeaders): module
// state, written and read synchronously, so the pass needs no closure and
// no result object per response.
let scannedLines = "";
let scannedConnection: string | null = null;
let scannedLength: string | null = null;
let scannedDate = false;

/**
 * One field of the application's headers, in the order Headers#forEach
 * gives them: lower-case names, and values that Headers has already
 * refused if they held a CR, LF or NUL (so a value cannot inject a field,
 * and nothing is checked again here). The framing and connection fields
 * are the server's to write: read, not passed through.
 */
function scanField(value: string, name: string): void {
  switch (name) {
    case "content-length":
      scannedLength = value;
      return;
    case "connection":
      scannedConnection = value;
      return;
    case "transfer-encoding":
    case "keep-alive":
      return;
    case "date":
      // The application's own Date is sent as it is, instead of ours.
      scannedDate = true;
  }
  scannedLines += name + ": " + value + "\r\n";
}

/**
 * Reads the application's headers once, when the response is handed over
 * (as `Deno.serve` does): the lines to send, its `Connection` and its
 * `Content-Length`. One forEach (a fifth of the cost of Headers' iterator:
 * no sorted copy wrapped in iterator objects) instead of two `get`s, a
 * forEach and a closure per response.
 */
function scanHeaders(headers: Headers): void {
  scannedLines = "";
  scannedConnection = null;
  scannedLength = null;
  scannedDate = false;
  headers.forEach(scanField);
  // RFC 9110 §6.6.1: a response this server originates carries a Date.
  if (!scannedDate) scannedLines += "date: " + httpDate() + "\r\n";
}

/** The Content-Length the application declared, if it is a valid one. */
function declaredLength(value: string | null): number | null {
  if (value === null || !/^\d+$/.test(value)) return null;
  const length = Number(value);
  return Number.isSafeInteger(length) ? length : null;
}

// Whole responses (head and body) up to this size are encoded into a
// buffer taken from a small pool, given back once the write has completed:
// allocating an ArrayBuffer per response cost ~0.3 µs and fed the young
// generation with off-heap memory that scavenges must track. Bounded, so
// a burst leaves at most POOL_MAX * POOLED_BYTES behind.
const POOLED_BYTES = 2048;
// A complete body of one piece at least this long is written after its
// head instead of being copied in with it: two writes rather than one, but
// no fresh array the size of the body per response.
const SEPARATE_BODY_BYTES = 16 * 1024;
const POOL_MAX = 64;
const pool: ArrayBuffer[] = [];

/** Gives back a whole response's buffer once its write has completed. */
function release(bytes: Uint8Array): void {
  // Only encodeHead's arrays reach here: one of this size is ours to reuse.
  const buffer = bytes.buffer as ArrayBuffer;
  if (buffer.byteLength === POOLED_BYTES && pool.length < POOL_MAX) pool.push(buffer);
}

/**
 * A response head (`lines`: the application's fields, each ending in CRLF)
 * and then `body`, in one new array, so a small response goes out in one
 * write. The framing field is the server's: a byte count
 * (`Content-Length`), `"chunked"`, or null for none (no body, or one ended
 * by closing). An ASCII head (the usual one) is copied in char by char,
 * with no call into the runtime's encoder and no second array to join.
 */
function encodeHead(
  status: number,
  lines: string,
  framing: number | "chunked" | null,
  connection: "close" | "keep-alive" | null,
  body: readonly Uint8Array[] | null,
  bodyLength: number,
): Uint8Array {
  let text = "HTTP/1.1 " + status + " " + reasonPhrase(status) + "\r\n" + lines;
  if (framing === "chunked") text += "Transfer-Encoding: chunked\r\n";
  else if (framing !== null) text += "Content-Length: " + framing + "\r\n";
  if (connection !== null) text += "Connection: " + connection + "\r\n";
  text += "\r\n";
  const length = text.length;
  const size = length + bodyLength;
  let bytes = size <= POOLED_BYTES
    ? new Uint8Array(pool.pop() ?? new ArrayBuffer(POOLED_BYTES), 0, size)
    : new Uint8Array(size);
  let at = 0;
  for (; at < length; at++) {
    const code = text.charCodeAt(at);
    if (code > 0x7f) break;
    bytes[at] = code;
  }
  if (at < length) {
    // A header value with non-ASCII characters: encoded as UTF-8.
    const head = encoder.encode(text);
    bytes = new Uint8Array(head.length + bodyLength);
    bytes.set(head);
    at = head.length;
  }
  if (body !== null) {
    for (let i = 0; i < body.length; i++) {
      bytes.set(body[i], at);
      at += body[i].length;
    }
  }
  return bytes;
}

// A text body of a static response is encoded here when it fits (and then
// copied into the response's pooled buffer at once): no off-heap array per
// response, as TextEncoder#encode would make.
const SCRATCH_BYTES = 4096;
const scratch = new Uint8Array(SCRATCH_BYTES);

/** `text` as UTF-8: in the shared scratch array (valid until the next call) when it fits, else a new array. */
function encodeText(text: string): Uint8Array {
  // At most 3 bytes per UTF-16 code unit.
  if (text.length * 3 > SCRATCH_BYTES) return encoder.encode(text);
  return scratch.subarray(0, encoder.encodeInto(text, scratch).written);
}

// A static response's text body up to this long is compared with the
// last one's, and its bytes kept when the same (see ResponseWriter#textBytes).
const REPEATED_BODY_CHARS = 1024;
/** The last static text response: what made its bytes, and them once repeated. */
const repeated = {
  body: "",
  contentType: null as string | null,
  date: "",
  connection: null as "close" | "keep-alive" | null,
  noBody: false,
  bytes: null as Uint8Array | null,
};

type Read = ReadableStreamReadResult<Uint8Array>;
const LATE = Symbol("late");

/**
 * A body piece as the Fetch standard requires it: a Uint8Array. Anything
 * else (a string, a Uint16Array) would go out as wrong bytes under valid
 * framing, so it fails the response instead.
 */
function checkedPiece(piece: unknown): Uint8Array {
  if (piece instanceof Uint8Array) return piece;
  throw new TypeError("a response body chunk must be a Uint8Array");
}

/**
 * Writes one response. {@linkcode abort} (the server is stopping, or the
 * session was dropped) cancels the body stream, so its producer learns that
 * nobody is listening.
 */
export class ResponseWriter {
  #conn: Deno.Conn;
  // The id for the runtime's write op, or null: conn.write (raw_io.ts).
  #rid: number | null;
  #watch: WriteWatcher;
  #body: ReadableStreamDefaultReader<Uint8Array> | null = null;
  #aborted = false;
  /** Whether the head said the connection persists. */
  #keep = false;
  /** Whether the head has been handed to the socket. */
  #started = false;
  #persist: () => boolean;
  #prelude: (() => Promise<void> | undefined) | null;
  /** The application's header lines, read once by {@linkcode write}. */
  #lines = "";
  /** Whether the application's own `Connection` field says `close`. */
  #appCloses = false;
  // The body read being probed (see write): what it settled with. The two
  // callbacks are made once per writer, and a writer serves every response
  // of its connection: the probe allocates no closure per read.
  #probed: Read | null = null;
  #probeFailed = false;
  #probeError: unknown = undefined;
  #onProbe = (result: Read): void => {
    this.#probed = result;
  };
  #onProbeFailed = (reason: unknown): void => {
    this.#probeFailed = true;
    this.#probeError = reason;
  };

  /**
   * `persist` is asked, when the head is written, whether the connection
   * may stay open after this response (the client asked for it and the
   * server has no reason to close); `prelude`, if given, is awaited before
   * the first byte is written (a `100 Continue` still being sent); `rid`,
   * the connection's id for the runtime's write op when its reader uses
   * the runtime's ops (see raw_io.ts), else null (conn.write).
   */
  constructor(
    conn: Deno.Conn,
    watch: WriteWatcher = () => {},
    persist: () => boolean = () => false,
    prelude: (() => Promise<void> | undefined) | null = null,
    rid: number | null = null,
  ) {
    this.#conn = conn;
    this.#rid = rid;
    this.#watch = watch;
    this.#persist = persist;
    this.#prelude = prelude;
  }

  /** One write of `bytes` (or their start): the runtime's op where it is used. */
  #write(bytes: Uint8Array): Promise<number> {
    return writeTo(this.#conn, this.#rid, bytes);
  }

  /**
   * Readies the writer for the connection's next response (the previous
   * one is complete): one writer per connection, not one per response.
   * `persist` and `prelude` as for the constructor.
   */
  reuse(persist: () => boolean, prelude: (() => Promise<void> | undefined) | null): this {
    this.#body = null;
    this.#aborted = false;
    this.#keep = false;
    this.#started = false;
    this.#persist = persist;
    this.#prelude = prelude;
    return this;
  }

  /** Whether any of the response has been (or is being) written. */
  get started(): boolean {
    return this.#started;
  }

  /** Stops writing and cancels the body stream. */
  abort(): void {
    this.#aborted = true;
    this.#body?.cancel().catch(() => {});
  }

  /**
   * Writes `response` as the answer to `request`; see
   * {@linkcode WriteOutcome} for what the result means.
   *
   * How the body is delimited: a body that is complete at once (within 1
   * MiB) gets its exact Content-Length; otherwise a Content-Length the
   * application set is kept and enforced, else HTTP/1.1 clients get chunked
   * encoding and HTTP/1.0 clients a body ended by closing the connection
   * (the one case where the server must close). No body is sent for HEAD,
   * 1xx, 204 and 304. The head says `Connection: close` unless the
   * connection persists (then nothing for HTTP/1.1, `Connection:
   * keep-alive` for HTTP/1.0); an application's own `Connection: close`
   * is honoured.
   */
  async write(response: Response, request: AnsweredRequest): Promise<WriteOutcome> {
    // One async frame from here to the socket for a complete body (the
    // usual response): each layer of async function between the session
    // and conn.write was a promise, a suspended frame and a microtask per
    // response.
    const status = response.status;
    const bodiless = status === 204 || status === 304 || status < 200;
    const noBody = request.method === "HEAD" || bodiless;
    scanHeaders(response.headers);
    this.#lines = scannedLines;
    this.#appCloses = scannedConnection !== null && saysClose(scannedConnection);
    const declared = declaredLength(scannedLength);
    /** The whole response, when its body is complete at once. */
    let whole: Uint8Array;
    /** A body written after `whole`, from where it lies (see SEPARATE_BODY_BYTES). */
    let tail: Uint8Array | null = null;
    if (response.body === null) {
      // HEAD may announce the length GET would send (RFC 9110 §9.3.2).
      const length = bodiless ? null : request.method === "HEAD" ? declared : 0;
      whole = this.#head(status, length, request, true);
    } else {
      const body = this.#body = response.body.getReader();
      try {
        const pieces: Uint8Array[] = [];
        let total = 0;
        let pending: Promise<Read> | null = null;
        let complete = false;
        const prefetch = declared === null ? PREFETCH_BYTES : READ_AHEAD_BYTES;
        // Read what is ready now; stop at the first piece that is not.
        while (total <= prefetch) {
          const read = body.read();
          // Whether the read settles within this turn of the event loop (a
          // piece already in memory) or not (one still being produced). Up
          // to READY_TICKS microtasks are checked here, inline: an async
          // helper was a promise, a frame and two closures per read, two
          // reads per response.
          this.#probed = null;
          this.#probeFailed = false;
          read.then(this.#onProbe, this.#onProbeFailed);
          let result: Read | null = null;
          for (let i = 0; i < READY_TICKS; i++) {
            await null;
            if ((result = this.#probed) !== null) break;
            if (this.#probeFailed) throw this.#probeError;
          }
          if (result === null) {
            const late = await byNextTick(read);
            if (late === LATE) {
              pending = read;
              break;
            }
            result = late;
          }
          if (result.done) {
            complete = true;
            break;
          }
          pieces.push(checkedPiece(result.value));
          total += result.value.length;
        }
        if (complete) {
          whole = this.#complete(status, request, noBody, bodiless ? null : total, pieces);
          tail = this.#tail;
        } else {
          if (this.#aborted) return "cut";
          if (!noBody) {
            const sent = await this.#stream(status, request, pieces, pending, declared);
            return !sent ? "cut" : this.#keep ? "keep" : "close";
          }
          // Not awaited: the producer's cancel callback must not hold up, or
          // by throwing lose, the response.
          body.cancel().catch(() => {});
          whole = this.#head(status, declared, request, true);
        }
      } catch {
        // The body stream failed, or the client left: cut the response short.
        body.cancel().catch(() => {});
        return "cut";
      } finally {
        this.#body = null;
      }
    }
    return this.#send(whole, tail);
  }

  /**
   * Writes a response the runtime holds whole (see
   * {@linkcode takeStaticResponse}: status 200, at most a Content-Type, a
   * body in memory), without making its Headers or its body stream: the
   * same bytes {@linkcode write} sends for it. `response` is read at once
   * (it is shared).
   */
  writeStatic(response: StaticResponse, request: AnsweredRequest): Promise<WriteOutcome> {
    const whole = this.#staticBytes(response, request);
    return this.#send(whole, this.#tail);
  }

  /**
   * {@linkcode writeStatic} by callbacks, for a caller with no async frame
   * to await in (the session's keep-alive path): `done` gets the outcome
   * once the response is written or cut. The usual response, written by one
   * write, costs no promise of ours and no suspended frame; anything else
   * (a short write, a large body written after its head, a prelude) goes
   * through {@linkcode writeStatic}'s own path.
   */
  sendStatic(
    response: StaticResponse,
    request: AnsweredRequest,
    done: (outcome: WriteOutcome) => void,
  ): void {
    // One clock reading for the Date and the write's deadline: read in the
    // same turn, microseconds apart (~45 ns a reading).
    const now = Date.now();
    const whole = this.#staticBytes(response, request, now);
    const tail = this.#tail;
    if (tail !== null || this.#prelude !== null || this.#aborted) {
      this.#send(whole, tail).then(done);
      return;
    }
    this.#watch(true, now);
    let written: Promise<number>;
    try {
      written = this.#write(whole);
    } catch {
      this.#watch(false);
      release(whole);
      return done("cut");
    }
    this.#sending = whole;
    this.#sent = done;
    written.then(
      this.#onSent ??= (n) => this.#sentSome(n),
      this.#onSendFailed ??= () => {
        this.#watch(false);
        this.#sentAll("cut");
      },
    );
  }

  // sendStatic's write in flight: its bytes and who is told; the two
  // callbacks are made once per writer (one per connection).
  #sending: Uint8Array | null = null;
  #sent: ((outcome: WriteOutcome) => void) | null = null;
  #onSent: ((n: number) => void) | null = null;
  #onSendFailed: (() => void) | null = null;

  #sentSome(n: number): void {
    this.#watch(false);
    const whole = this.#sending!;
    if (n >= whole.length) return this.#sentAll(this.#keep ? "keep" : "close");
    // A short write: the rest as writeStatic would.
    this.#writeAll(whole.subarray(n)).then(
      () => this.#sentAll(this.#keep ? "keep" : "close"),
      () => this.#sentAll("cut"),
    );
  }

  #sentAll(outcome: WriteOutcome): void {
    const done = this.#sent!;
    release(this.#sending!);
    this.#sending = null;
    this.#sent = null;
    done(outcome);
  }

  /** A static response's bytes (its head, and its body unless in {@linkcode #tail}). */
  #staticBytes(
    response: StaticResponse,
    request: AnsweredRequest,
    now: number = Date.now(),
  ): Uint8Array {
    const contentType = response.contentType;
    const body = response.body;
    this.#tail = null;
    if (typeof body === "string" && body.length <= REPEATED_BODY_CHARS) {
      return this.#textBytes(body, contentType, request, now);
    }
    this.#lines = (contentType === null ? "" : "content-type: " + contentType + "\r\n") +
      "date: " + httpDate(now) + "\r\n";
    this.#appCloses = false;
    const bytes = typeof body === "string" ? encodeText(body) : body;
    return this.#complete(200, request, request.method === "HEAD", bytes.length, [bytes]);
  }

  /**
   * The bytes of a static response with a short text body. One the same as
   * the last one's (a health check, a fixed page or message: the same
   * string, type, Date second and Connection field give the same bytes) is
   * kept from the time before: no head to build and encode, no body to
   * encode and copy (~1 µs of a ~20 µs keep-alive response, profiled).
   */
  #textBytes(
    body: string,
    contentType: string | null,
    request: AnsweredRequest,
    now: number,
  ): Uint8Array {
    this.#started = true;
    this.#appCloses = false;
    const keep = this.#keep = this.#persist();
    const connection = keep ? request.version[1] === 0 ? "keep-alive" : null : "close";
    const noBody = request.method === "HEAD";
    const date = httpDate(now);
    const last = repeated;
    const same = last.body === body && last.contentType === contentType && last.date === date &&
      last.connection === connection && last.noBody === noBody;
    if (same && last.bytes !== null) return last.bytes;
    if (!same) {
      last.body = body;
      last.contentType = contentType;
      last.date = date;
      last.connection = connection;
      last.noBody = noBody;
      last.bytes = null;
    }
    // HEAD announces the length GET would send (RFC 9110 §9.3.2).
    this.#lines = (contentType === null ? "" : "content-type: " + contentType + "\r\n") +
      "date: " + date + "\r\n";
    const text = encodeText(body);
    const whole = encodeHead(
      200,
      this.#lines,
      text.length,
      connection,
      noBody ? null : [text],
      noBody ? 0 : text.length,
    );
    // Kept the second time running: a body that changes with every
    // response (a counter, a timestamp) costs one comparison, no copy. The
    // kept bytes have an array of their own, shorter than a pooled buffer,
    // so release() never takes it into the pool while other writes hold
    // it; a longer response is sent as made and not kept.
    if (!same || whole.length >= POOLED_BYTES) return whole;
    last.bytes = whole.slice();
    release(whole);
    return last.bytes;
  }

  /** Set by {@linkcode #complete}: a body to write after the head, from where it lies. */
  #tail: Uint8Array | null = null;

  /**
   * A response whose body is complete: the head with its Content-Length
   * (`length`; null for a status that has none), and the body copied in
   * after it, or left in {@linkcode #tail} when it is one large piece.
   * `noBody`: HEAD, or a status without a body (a HEAD still announces
   * the length GET would send, RFC 9110 §9.3.2).
   */
  #complete(
    status: number,
    request: AnsweredRequest,
    noBody: boolean,
    length: number | null,
    pieces: Uint8Array[],
  ): Uint8Array {
    this.#tail = null;
    if (noBody) return this.#head(status, length, request, true);
    if (pieces.length === 1 && length! >= SEPARATE_BODY_BYTES) {
      // A large body in one piece (a static file's first read) goes out as
      // it lies, after its head: a second write op costs less than a fresh
      // array of its size, zeroed, copied into and swept (8% of the CPU of
      // serving a 64 KiB file, bench/RESULTS.md).
      this.#tail = pieces[0];
      return this.#head(status, length, request, true);
    }
    return this.#headAndBody(status, length!, request, pieces);
  }

  /**
   * Writes a whole response (head and body ready) and `tail` after it. The
   * write op holds the array until its promise settles; only then may the
   * pool hand it out again.
   */
  async #send(whole: Uint8Array, tail: Uint8Array | null): Promise<WriteOutcome> {
    try {
      if (this.#prelude === null && !this.#aborted) {
        // The usual case: one write takes it all.
        this.#watch(true);
        let written: number;
        try {
          written = await this.#write(whole);
        } finally {
          this.#watch(false);
        }
        if (written < whole.length) await this.#writeAll(whole.subarray(written));
      } else {
        await this.#writeAll(whole);
      }
      if (tail !== null) await this.#writeAll(tail);
    } catch {
      return "cut";
    } finally {
      release(whole);
    }
    return this.#keep ? "keep" : "close";
  }

  /**
   * The head, with the Connection field decided now: the connection
   * persists only when the body's end is marked (`delimited`), the
   * application did not ask to close, and the session agrees.
   */
  #head(
    status: number,
    framing: number | "chunked" | null,
    request: AnsweredRequest,
    delimited: boolean,
  ): Uint8Array {
    this.#started = true;
    this.#keep = delimited && !this.#appCloses && this.#persist();
    let connection: "close" | "keep-alive" | null = "close";
    if (this.#keep) connection = request.version[1] === 0 ? "keep-alive" : null;
    return encodeHead(status, this.#lines, framing, connection, null, 0);
  }

  /** {@linkcode #head} with a Content-Length of `total`, and the body after it. */
  #headAndBody(
    status: number,
    total: number,
    request: AnsweredRequest,
    pieces: Uint8Array[],
  ): Uint8Array {
    this.#started = true;
    this.#keep = !this.#appCloses && this.#persist();
    let connection: "close" | "keep-alive" | null = "close";
    if (this.#keep) connection = request.version[1] === 0 ? "keep-alive" : null;
    return encodeHead(status, this.#lines, total, connection, pieces, total);
  }

  async #stream(
    status: number,
    request: AnsweredRequest,
    pieces: Uint8Array[],
    pending: Promise<Read> | null,
    declared: number | null,
  ): Promise<boolean> {
    const chunked = declared === null && request.version[0] === 1 && request.version[1] >= 1;
    const framing = declared ?? (chunked ? "chunked" : null);
    await this.#writeAll(this.#head(status, framing, request, framing !== null));
    let left = declared ?? Infinity;
    const body = this.#body!;
    for (let i = 0;; i++) {
      let piece: Uint8Array;
      if (i < pieces.length) {
        piece = pieces[i];
        pieces[i] = WRITTEN;
      } else {
        const result = await (pending ?? body.read());
        pending = null;
        if (this.#aborted) return false;
        if (result.done) break;
        piece = checkedPiece(result.value);
      }
      if (piece.length > left) {
        // More than the declared length: what the client was promised is
        // sent, and the connection closes (the rest cannot be delimited).
        await this.#writeAll(piece.subarray(0, left));
        body.cancel().catch(() => {});
        return false;
      }
      left -= piece.length;
      await this.#writeAll(chunked ? encodeChunk(piece) : piece);
    }
    if (chunked) await this.#writeAll(LAST_CHUNK);
    // Fewer bytes than declared: the client sees the connection end early.
    return left === 0 || declared === null;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    if (this.#prelude !== null) {
      const interim = this.#prelude();
      this.#prelude = null;
      if (interim !== undefined) await interim;
    }
    try {
      while (offset < bytes.length) {
        if (this.#aborted) throw new Error("response aborted");
        // Each write that makes progress earns a fresh deadline.
        this.#watch(true);
        offset += await this.#write(bytes.subarray(offset));
      }
    } finally {
      this.#watch(false);
    }
  }
}

// A read of a body already in memory settles within a few microtasks (a
// string or bytes: 1-2; ReadableStream.from over an array: 3-5). Waiting
// this many before a timer keeps the common case free of timers, which cost
// more per response than the rest of the writer (profiled: a plain GET).
const READY_TICKS = 16;

/**
 * `read`'s result if it settles by the next timer tick, else LATE: for a
 * read still pending after {@linkcode READY_TICKS} microtasks.
 */
async function byNextTick(read: Promise<Read>): Promise<Read | typeof LATE> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<typeof LATE>((resolve) => {
    timer = setTimeout(resolve, 0, LATE);
  });
  try {
    return await Promise.race([read, late]);
  } finally {
    clearTimeout(timer);
  }
}
