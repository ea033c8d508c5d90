/**
 * Writes an application's `Response` (from the `fetch` handler) to a plain
 * HTTP connection: the head, then the body as it is produced. A streamed
 * body (server-sent events, a large file) goes out piece by piece, each
 * write awaited so a slow client holds back the producer, instead of being
 * buffered whole first, which never ended for an endless stream.
 *
 * @module
 */

import { type ConnectionField, encodeResponse, encodeResponseHead } from "../protocol/handshake.ts";

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
 * connection forever) but none while the body is being produced.
 */
export type WriteWatcher = (writing: boolean) => void;

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

/** Whether the application's own `Connection` field asks to close. */
function appSaysClose(headers: Headers): boolean {
  const value = headers.get("connection");
  return value !== null && value.split(",").some((token) => token.trim().toLowerCase() === "close");
}

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

/** The Content-Length the application declared, if it is a valid one. */
function declaredLength(headers: Headers): number | null {
  const value = headers.get("content-length");
  if (value === null || !/^\d+$/.test(value)) return null;
  const length = Number(value);
  return Number.isSafeInteger(length) ? length : null;
}

/**
 * Writes one response. {@linkcode abort} (the server is stopping, or the
 * session was dropped) cancels the body stream, so its producer learns that
 * nobody is listening.
 */
export class ResponseWriter {
  #conn: Deno.Conn;
  #watch: WriteWatcher;
  #body: ReadableStreamDefaultReader<Uint8Array> | null = null;
  #aborted = false;
  /** Whether the head said the connection persists. */
  #keep = false;
  /** Whether the head has been handed to the socket. */
  #started = false;
  #persist: () => boolean;
  #prelude: (() => Promise<void> | undefined) | null;

  /**
   * `persist` is asked, when the head is written, whether the connection
   * may stay open after this response (the client asked for it and the
   * server has no reason to close); `prelude`, if given, is awaited before
   * the first byte is written (a `100 Continue` still being sent).
   */
  constructor(
    conn: Deno.Conn,
    watch: WriteWatcher = () => {},
    persist: () => boolean = () => false,
    prelude: (() => Promise<void> | undefined) | null = null,
  ) {
    this.#conn = conn;
    this.#watch = watch;
    this.#persist = persist;
    this.#prelude = prelude;
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
    // and conn.write was a promise and a microtask per response.
    const status = response.status;
    const bodiless = status === 204 || status === 304 || status < 200;
    const noBody = request.method === "HEAD" || bodiless;
    const headers = response.headers;
    const declared = declaredLength(headers);
    if (response.body === null) {
      // HEAD may announce the length GET would send (RFC 9110 §9.3.2).
      const length = bodiless ? null : request.method === "HEAD" ? declared : 0;
      return await this.#writeWhole(this.#head(status, headers, length, request, true));
    }
    const body = this.#body = response.body.getReader();
    try {
      const pieces: Uint8Array[] = [];
      let total = 0;
      let pending: Promise<Read> | null = null;
      const prefetch = declared === null ? PREFETCH_BYTES : READ_AHEAD_BYTES;
      // Read what is ready now; stop at the first piece that is not.
      while (total <= prefetch) {
        const read = body.read();
        const result = await readyNow(read);
        if (result === LATE) {
          pending = read;
          break;
        }
        if (result.done) {
          this.#body = null;
          return await this.#writeWhole(
            noBody
              ? this.#head(status, headers, bodiless ? null : total, request, true)
              : this.#headAndBody(status, headers, total, request, pieces),
          );
        }
        pieces.push(checkedPiece(result.value));
        total += result.value.length;
      }
      if (this.#aborted) return "cut";
      if (noBody) {
        // Not awaited: the producer's cancel callback must not hold up, or
        // by throwing lose, the response.
        body.cancel().catch(() => {});
        this.#body = null;
        return await this.#writeWhole(this.#head(status, headers, declared, request, true));
      }
      const complete = await this.#stream(status, headers, request, pieces, pending, declared);
      return !complete ? "cut" : this.#keep ? "keep" : "close";
    } catch {
      // The body stream failed, or the client left: cut the response short.
      body.cancel().catch(() => {});
      return "cut";
    } finally {
      this.#body = null;
    }
  }

  /** Writes a whole response (head and body ready); never throws. */
  async #writeWhole(bytes: Uint8Array): Promise<WriteOutcome> {
    try {
      if (this.#prelude === null && !this.#aborted) {
        // The usual case, inline: one write takes it all.
        this.#watch(true);
        let written: number;
        try {
          written = await this.#conn.write(bytes);
        } finally {
          this.#watch(false);
        }
        if (written < bytes.length) await this.#writeAll(bytes.subarray(written));
      } else {
        await this.#writeAll(bytes);
      }
    } catch {
      return "cut";
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
    headers: Headers,
    framing: number | "chunked" | null,
    request: AnsweredRequest,
    delimited: boolean,
  ): Uint8Array {
    this.#started = true;
    this.#keep = delimited && !appSaysClose(headers) && this.#persist();
    let connection: ConnectionField = "close";
    if (this.#keep) connection = request.version[1] === 0 ? "keep-alive" : null;
    return encodeResponseHead(status, headers, framing, connection);
  }

  /** {@linkcode #head} with a Content-Length of `total`, and the body after it. */
  #headAndBody(
    status: number,
    headers: Headers,
    total: number,
    request: AnsweredRequest,
    pieces: Uint8Array[],
  ): Uint8Array {
    this.#started = true;
    this.#keep = !appSaysClose(headers) && this.#persist();
    let connection: ConnectionField = "close";
    if (this.#keep) connection = request.version[1] === 0 ? "keep-alive" : null;
    return encodeResponse(status, headers, total, connection, pieces, total);
  }

  async #stream(
    status: number,
    headers: Headers,
    request: AnsweredRequest,
    pieces: Uint8Array[],
    pending: Promise<Read> | null,
    declared: number | null,
  ): Promise<boolean> {
    const chunked = declared === null && request.version[0] === 1 && request.version[1] >= 1;
    const framing = declared ?? (chunked ? "chunked" : null);
    await this.#writeAll(this.#head(status, headers, framing, request, framing !== null));
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
        offset += await this.#conn.write(bytes.subarray(offset));
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
 * `read`'s result if it settles within the current turn of the event loop
 * (a piece already in memory), else LATE (one still being produced). Up to
 * {@linkcode READY_TICKS} microtasks are checked first; only a read still
 * pending then is given until the next timer tick.
 */
async function readyNow(read: Promise<Read>): Promise<Read | typeof LATE> {
  let result: Read | null = null;
  let failed = false;
  let error: unknown;
  read.then((value) => result = value, (reason) => {
    failed = true;
    error = reason;
  });
  for (let i = 0; i < READY_TICKS; i++) {
    await null;
    if (result !== null) return result;
    if (failed) throw error;
  }
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
