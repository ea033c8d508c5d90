/**
 * A plain HTTP request's body, read from the connection only as the
 * application asks for it: `request.body` is a stream that pulls from the
 * socket one read at a time (a handler that does not read holds the client
 * back through TCP, it does not fill memory), delimited by `Content-Length`
 * or decoded from `Transfer-Encoding: chunked` (protocol/http1_body.ts).
 * Bytes after the body's end are never taken: they are the next request's.
 *
 * @module
 */

import type { ByteReader } from "../connection/byte_reader.ts";
import { type BodyFraming, ChunkedDecoder } from "../protocol/http1_body.ts";

/** What a body needs from the session that owns the connection. */
export interface BodyHost {
  /** The connection's reader; bytes `[0, filled)` of its buffer are unread input. */
  readonly reader: ByteReader;
  /**
   * Reads more into the reader (one read at a time per connection, shared
   * with whoever else waits); resolves with the bytes read, 0 at the end.
   */
  fill(): Promise<number>;
  /** Before the body's first read from the socket: sends `100 Continue` when owed. */
  beforeRead(): Promise<void>;
  /** A body read is (true) or is no longer (false) waiting on the client: its deadline. */
  waiting(waiting: boolean): void;
  /** The whole body has been read: what follows is the next request. */
  ended(): void;
}

/** Why a body failed: the status the client gets (0: the client left; no answer). */
export interface BodyFailure {
  /** 400 (malformed or cut short), 408 (too slow), 413 (too large), or 0 (client gone). */
  status: 0 | 400 | 408 | 413;
  /** Said to the client (and to the handler, as the stream's error). */
  message: string;
}

/** The chunked decoder's bounds on a chunk-size line and on trailer fields (ignored). */
const CHUNK_LINE_BYTES = 4096;
const TRAILER_BYTES = 8192;

/**
 * One request's body. The session makes it when the head names a body,
 * hands {@linkcode RequestBody.stream} to the application, and after the
 * response either finds it {@linkcode RequestBody.done}, drains what is left
 * ({@linkcode RequestBody.drain}, bounded), or closes the connection.
 */
export class RequestBody {
  /** The most payload bytes this body may deliver (the request's `maxBodyBytes`). */
  limit: number;
  /** Set once the body has failed; the connection must then close. */
  failure: BodyFailure | null = null;
  #host: BodyHost;
  /** Bytes of a Content-Length body still to come (Infinity when chunked). */
  #left: number;
  #declared: number | null;
  #decoder: ChunkedDecoder | null;
  #received = 0;
  #done = false;
  /** Whether any byte of the body (payload or chunk framing) has been taken. */
  #touched = false;
  /** The response is complete: the application may no longer read. */
  #detached = false;
  #started = false;
  #controller: ReadableStreamDefaultController<Uint8Array> | null = null;

  constructor(
    host: BodyHost,
    framing: BodyFraming & { kind: "length" | "chunked" },
    limit: number,
  ) {
    this.#host = host;
    this.limit = limit;
    if (framing.kind === "length") {
      this.#left = framing.length;
      this.#declared = framing.length;
      this.#decoder = null;
    } else {
      this.#left = Infinity;
      this.#declared = null;
      this.#decoder = new ChunkedDecoder({
        maxLineBytes: CHUNK_LINE_BYTES,
        maxTrailerBytes: TRAILER_BYTES,
      });
    }
  }

  /** Whether the whole body has been read from the connection. */
  get done(): boolean {
    return this.#done;
  }

  /** Whether any of the body has been read from the connection. */
  get touched(): boolean {
    return this.#touched;
  }

  /** Bytes of a Content-Length body not read yet (Infinity for a chunked one). */
  get left(): number {
    return this.#done ? 0 : this.#left;
  }

  /**
   * The body as a stream of `Uint8Array`s (each the application's to keep),
   * for the `Request`. Nothing is read before the application asks (high
   * water mark 0), and one ask reads at most once from the socket.
   */
  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: (controller) => this.#pull(controller),
      // The application gave up on the body: what is left is drained or the
      // connection closed, after the response.
      cancel: () => {
        this.#controller = null;
      },
    }, { highWaterMark: 0 });
  }

  /** Fails the body: its stream errors with `message`, and the connection must close. */
  fail(status: BodyFailure["status"], message: string): void {
    if (this.failure !== null || this.#done) return;
    this.failure = { status, message };
    this.#error(message);
  }

  /**
   * The response is complete: the application can read no more (a read
   * would take the next request's bytes), so a stream still open errors.
   */
  detach(): void {
    this.#detached = true;
    if (!this.#done) this.#error("the response was sent; the request body can no longer be read");
  }

  #error(message: string): void {
    const controller = this.#controller;
    this.#controller = null;
    try {
      controller?.error(new Error(message));
    } catch {
      // Already closed or errored.
    }
  }

  async #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    if (!this.#started) {
      this.#started = true;
      // Checked at the first read, not at the head: the handler may have
      // raised the limit for this request (RequestInfo.maxBodyBytes).
      if (this.#declared !== null && this.#declared > this.limit) {
        return this.fail(413, `request body over ${this.limit} bytes`);
      }
    }
    while (true) {
      if (this.#detached || this.failure !== null) return;
      const pieces: Uint8Array[] = [];
      this.#take(pieces);
      if (this.failure !== null) return;
      for (const piece of pieces) controller.enqueue(piece);
      if (this.#done) {
        this.#controller = null;
        controller.close();
        return;
      }
      if (pieces.length > 0) return;
      if (!this.#touched) await this.#host.beforeRead();
      if (!await this.#read()) return;
    }
  }

  /** One read from the socket for the body; false (the body failed) at the end of the stream. */
  async #read(): Promise<boolean> {
    this.#host.waiting(true);
    const n = await this.#host.fill();
    this.#host.waiting(false);
    if (this.#detached || this.failure !== null) return false;
    if (n === 0) {
      this.fail(0, "the client closed the connection before the request body ended");
      return false;
    }
    return true;
  }

  /**
   * Takes the body's bytes from the reader's buffer, copying the payload
   * into `pieces` (or discarding it when `pieces` is null); stops at the
   * body's end. Returns how many bytes of input it used.
   */
  #take(pieces: Uint8Array[] | null): number {
    const reader = this.#host.reader;
    if (reader.filled === 0 || this.#done) return 0;
    this.#touched = true;
    let used: number;
    let payload = 0;
    if (this.#decoder === null) {
      used = Math.min(reader.filled, this.#left);
      payload = used;
      if (pieces !== null && this.#over(used)) return 0;
      pieces?.push(reader.buffer.slice(0, used));
      this.#left -= used;
      if (this.#left === 0) this.#done = true;
    } else {
      const decoder = this.#decoder;
      let over = false;
      used = decoder.push(reader.buffer.subarray(0, reader.filled), (data) => {
        payload += data.length;
        if (pieces === null || over) return;
        if (this.#over(data.length)) over = true;
        else pieces.push(data.slice());
      });
      if (over) return 0;
      if (decoder.error !== null) {
        this.fail(400, `malformed chunked body: ${decoder.error}`);
        return 0;
      }
      if (decoder.done) this.#done = true;
    }
    if (pieces !== null) this.#received += payload;
    reader.consume(used);
    if (this.#done) this.#host.ended();
    return used;
  }

  /** Whether `more` payload bytes would pass the limit (then the body fails with 413). */
  #over(more: number): boolean {
    if (this.#received + more <= this.limit) return false;
    this.fail(413, `request body over ${this.limit} bytes`);
    return true;
  }

  /**
   * Reads and discards the rest of the body, at most `budget` bytes of
   * input, so the connection can serve the next request. Resolves true when
   * the body ended within the budget, false otherwise (the connection must
   * close): too much left, malformed, or the client left.
   */
  async drain(budget: number): Promise<boolean> {
    this.#detached = true;
    if (this.#done) return true;
    // A Content-Length body's rest is known: more than the budget is not tried.
    if (this.failure !== null || (this.#decoder === null && this.#left > budget)) return false;
    let discarded = 0;
    while (true) {
      discarded += this.#take(null);
      if (this.failure !== null) return false;
      if (this.#done) return true;
      if (discarded > budget) return false;
      this.#host.waiting(true);
      const n = await this.#host.fill();
      this.#host.waiting(false);
      if (n === 0 || this.failure !== null) return false;
    }
  }
}
