/**
 * Reads a TCP connection into one reused, adaptively sized buffer.
 *
 * @module
 */

import { rawId, readFrom } from "./raw_io.ts";

/**
 * How bytes are read from the socket.
 * - `"read"`: `conn.read(buffer)` straight into the connection's buffer.
 * - `"stream"`: a BYOB reader on `conn.readable`, same buffer, through the
 *   Streams machinery.
 *
 * Both read into the same reused buffer. `"read"` is the default because it
 * measured faster per read (see bench/RESULTS.md, "Read path").
 *
 * @example
 * ```ts
 * import { type ReadMode, serve } from "@tsunagu/ws";
 * const readMode: ReadMode = "stream";
 * const server = serve({ port: 0, hostname: "127.0.0.1", readMode });
 * await server.shutdown();
 * ```
 */
export type ReadMode = "read" | "stream";

/** Buffer sizing for {@linkcode ByteReader}. */
export interface ByteReaderOptions {
  /** Bytes of the initial buffer (the HTTP request head is read into it). */
  initialSize: number;
  /**
   * Bytes of the buffer once the connection is upgraded ({@linkcode ByteReader.settle}),
   * and the size it shrinks back to when quiet. Smaller than `initialSize`:
   * an open WebSocket mostly waits, and small frames fit.
   */
  settledSize: number;
  /** The buffer never grows past this (a single read is at most this long). */
  maxSize: number;
  /** Which read path to use. */
  mode: ReadMode;
  /**
   * Carve the initial buffer out of a slab shared with other readers
   * (`"read"` mode only): the first read (a request head, usually all of
   * it) goes there, and the reader takes a buffer of its own at its second
   * read or at {@linkcode ByteReader.settle}, whichever comes first, so
   * that a connection that lives on neither pins the slab nor detaches it.
   * Default false.
   */
  sharedInitial?: boolean;
  /**
   * Read a plain TCP connection through the runtime's read op rather than
   * the `conn.read` wrapper, where the runtime is a tested version
   * (`"read"` mode only; see raw_io.ts). Default false.
   */
  runtimeInternals?: boolean;
}

// Initial buffers of server connections (sharedInitial): views into 64 KiB
// slabs, handed out once each (bump pointer; a full slab is left to the GC
// once its views are gone). A fresh Uint8Array per accepted connection was
// a backing store allocated, tracked and swept by the GC for a buffer that
// lives for one request head: ~2% of the server's CPU in the connect
// benchmark (bench/RESULTS.md), against a few arithmetic operations here.
const INITIAL_SLAB_SIZE = 64 * 1024;
let initialSlab: ArrayBuffer | null = null;
let initialSlabUsed = 0;

function sharedInitialBuffer(size: number): Uint8Array {
  if (size > INITIAL_SLAB_SIZE / 8) return new Uint8Array(size);
  if (initialSlab === null || initialSlabUsed + size > INITIAL_SLAB_SIZE) {
    initialSlab = new ArrayBuffer(INITIAL_SLAB_SIZE);
    initialSlabUsed = 0;
  }
  const view = new Uint8Array(initialSlab, initialSlabUsed, size);
  initialSlabUsed += size;
  return view;
}

// A buffer shrinks after this many consecutive reads that used under an
// eighth of it: bursts keep their large buffer, quiet connections give it back.
const SHRINK_AFTER_SMALL_READS = 16;

/**
 * One connection's read side: a buffer that starts small, doubles when a read
 * fills it, and halves again after a run of small reads.
 */
export class ByteReader {
  /** The buffer; bytes `[0, filled)` are unconsumed input. */
  buffer: Uint8Array;
  /** How many bytes at the start of {@linkcode buffer} hold data. */
  filled = 0;
  #conn: Deno.Conn;
  #options: ByteReaderOptions;
  #byob: ReadableStreamBYOBReader | null = null;
  #smallReads = 0;
  #nextSize = 0;
  // The size the buffer shrinks back to: initialSize, then settledSize.
  #floor: number;
  // The size it never grows past: maxSize, unless capped (see capSize).
  #ceiling: number;
  #space = 0;
  // The resource id for the runtime's read op, or null: conn.read (see
  // raw_io.ts; ~600 bytes and a microtask less per read).
  #rid: number | null;

  // Whether `buffer` is a view into a shared slab (see sharedInitial), and
  // whether its one read has started.
  #shared: boolean;
  #sharedRead = false;

  constructor(conn: Deno.Conn, options: ByteReaderOptions) {
    this.#conn = conn;
    this.#options = options;
    this.#shared = options.sharedInitial === true && options.mode === "read";
    this.buffer = this.#shared
      ? sharedInitialBuffer(options.initialSize)
      : new Uint8Array(options.initialSize);
    this.#floor = options.initialSize;
    this.#ceiling = options.maxSize;
    this.#rid = options.runtimeInternals === true && options.mode === "read" ? rawId(conn) : null;
  }

  /**
   * The connection's resource id for the runtime's ops when this reader
   * uses them (see raw_io.ts), else null: the connection's writers use the
   * same path for their writes.
   */
  get rid(): number | null {
    return this.#rid;
  }

  /**
   * Lowers the largest the buffer may grow to, so that one read brings at
   * most `size` bytes (a connection whose input is expensive per byte, such
   * as compressed messages, then yields to the others after every `size`).
   */
  capSize(size: number): void {
    this.#ceiling = Math.max(this.#floor, Math.min(this.#ceiling, size));
  }

  /**
   * Switches to the post-upgrade size: the buffer that read the request
   * head is replaced by a `settledSize` one (keeping any bytes already read,
   * which may be the first frames) when those fit. Saves ~1 KiB per idle
   * connection; a connection that receives more grows the buffer again.
   */
  settle(): void {
    const size = this.#options.settledSize;
    this.#floor = size;
    if (this.#shared) {
      // Never kept: the connection may detach its buffer when it ends.
      // The same size rule as below: bytes beyond `size` keep the size.
      this.#own(this.filled > size ? this.buffer.length : size);
      return;
    }
    if (this.buffer.length <= size || this.filled > size) return;
    const next = new Uint8Array(size);
    if (this.filled > 0) next.set(this.buffer.subarray(0, this.filled));
    this.buffer = next;
    this.#nextSize = 0;
    this.#smallReads = 0;
  }

  #own(size: number): void {
    const next = new Uint8Array(size);
    if (this.filled > 0) next.set(this.buffer.subarray(0, this.filled));
    this.buffer = next;
    this.#shared = false;
    this.#nextSize = 0;
    this.#smallReads = 0;
  }

  /**
   * Reads more bytes after the `filled` ones. Resolves with the number read,
   * 0 at end of stream. When the buffer is full it grows first (up to
   * `maxSize`); callers that need more than `maxSize` unconsumed bytes must
   * consume some first.
   */
  async fill(): Promise<number> {
    return this.commit(await this.readRaw());
  }

  /**
   * The hot-path form of {@linkcode fill}, in two halves:
   * `reader.commit(await reader.readRaw())`. Awaiting the runtime's read
   * promise directly saves the extra promise and microtask hop an async
   * wrapper costs on every read.
   */
  readRaw(): Promise<number | null> {
    if (this.#shared) {
      // The second read: the connection lives on (see sharedInitial). No
      // read is in flight into the old buffer, so it can be swapped.
      if (this.#sharedRead) this.#own(this.buffer.length);
      this.#sharedRead = true;
    }
    if (this.filled === this.buffer.length) this.#nextSize = this.buffer.length * 2;
    if (this.#nextSize !== 0) {
      this.#resize(this.#nextSize);
      this.#nextSize = 0;
    }
    const space = this.buffer.length - this.filled;
    if (space === 0) throw new RangeError("read buffer is full at its maximum size");
    this.#space = space;
    if (this.#options.mode !== "read") return this.#readStream();
    // An empty buffer (the usual case: the parser consumes whole reads) is
    // passed as is, so no view is allocated per read.
    const target = this.filled === 0 ? this.buffer : this.buffer.subarray(this.filled);
    return readFrom(this.#conn, this.#rid, target);
  }

  /**
   * Whether {@linkcode readInto} is available: only `conn.read` can fill a
   * caller's buffer in place (a BYOB stream read transfers, i.e. detaches,
   * the buffer it is given).
   */
  get canReadInto(): boolean {
    return this.#options.mode === "read";
  }

  /**
   * Reads straight into `target` (not the reader's buffer), for payload that
   * has a home already. Resolves with the bytes read, null or 0 at end of
   * stream.
   */
  readInto(target: Uint8Array): Promise<number | null> {
    return readFrom(this.#conn, this.#rid, target);
  }

  /** Accounts for a read started by {@linkcode readRaw}; returns the bytes read (0 at end). */
  commit(n: number | null): number {
    if (n === null || n === 0) return 0;
    this.filled += n;
    this.#adapt(n, this.#space);
    return n;
  }

  /**
   * Cancels a growth planned by the last read: its bytes were the start of a
   * long payload whose rest goes straight to its message (see
   * {@linkcode readInto}), so a larger buffer would only add copying.
   */
  keepSize(): void {
    if (this.#nextSize > this.buffer.length) this.#nextSize = 0;
  }

  /** Drops the first `n` bytes, moving the rest to the start of the buffer. */
  consume(n: number): void {
    if (n >= this.filled) {
      this.filled = 0;
      return;
    }
    this.buffer.copyWithin(0, n, this.filled);
    this.filled -= n;
  }

  /** Releases the stream reader, if one was taken. */
  release(): void {
    if (this.#byob !== null) {
      try {
        this.#byob.releaseLock();
      } catch {
        // A pending read keeps the lock until the stream errors; nothing to do.
      }
      this.#byob = null;
    }
  }

  async #readStream(): Promise<number> {
    this.#byob ??= this.#conn.readable.getReader({ mode: "byob" });
    const view = new Uint8Array(this.buffer.buffer, this.filled, this.buffer.length - this.filled);
    const { value, done } = await this.#byob.read(view);
    // The BYOB protocol transfers the buffer: take the returned one back.
    if (value !== undefined) this.buffer = new Uint8Array(value.buffer);
    if (done || value === undefined) return 0;
    return value.length;
  }

  #adapt(n: number, space: number): void {
    const size = this.buffer.length;
    // Resizing is deferred to the next fill, when the caller has usually
    // consumed everything and there is nothing to copy.
    if (n === space) {
      // Filled to the brim: more was probably waiting. Grow for next time.
      this.#smallReads = 0;
      this.#nextSize = size * 2;
    } else if (n < size >>> 3 && size > this.#floor) {
      if (++this.#smallReads >= SHRINK_AFTER_SMALL_READS) {
        this.#smallReads = 0;
        this.#nextSize = size >>> 1;
      }
    } else {
      this.#smallReads = 0;
    }
  }

  #resize(size: number): void {
    const target = Math.max(this.#floor, Math.min(size, this.#ceiling));
    if (target === this.buffer.length || target < this.filled) return;
    const next = new Uint8Array(target);
    next.set(this.buffer.subarray(0, this.filled));
    this.buffer = next;
    this.#shared = false;
  }
}
