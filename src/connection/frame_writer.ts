/**
 * The send side of one connection: a queue of encoded frames written to the
 * socket with as few `write` calls as possible.
 *
 * @module
 */

import {
  currentSlab,
  encodeFrameShared,
  encodeTextFrame,
  frameHeaderSize,
  Opcode,
  SLAB_MAX_FRAME,
  slabEnd,
  slabText,
  writeFrameHeader,
} from "../protocol/frame.ts";
import { freeBuffer, giveBuffer, joinPool, leavePool, takeBuffer } from "./buffer_pool.ts";
import { writeTo } from "./raw_io.ts";

// Frames are joined into one write up to this size; larger ones go alone.
const JOIN_LIMIT = 256 * 1024;

// Large binary frames sent by one connection (an echo of a 16 KiB or 1 MiB
// message) are built in buffers from the shared pool (buffer_pool.ts) and
// given back once everything queued before and with them has been written:
// a fresh allocation per message made allocation, page faults and GC cost
// more than the copy itself (bench/RESULTS.md, medium echo profile).

// Writers with frames queued since the last flush, all flushed by one
// microtask: a publish to 1,000 subscribers queues one microtask, not 1,000
// (each a queueMicrotask call and a closure per writer).
let dirty: FrameWriter[] = [];
let flushScheduled = false;

function flushDirty(): void {
  flushScheduled = false;
  const writers = dirty;
  dirty = [];
  for (let i = 0; i < writers.length; i++) writers[i].flush();
}

/**
 * Told when the writer fails (the peer went away); the connection tears
 * down. An object with a method rather than a callback, so the owner passes
 * itself instead of making a closure per connection (idle memory).
 */
export interface WriteErrorHandler {
  /** A write failed; nothing more will be written. */
  writeFailed(error: unknown): void;
}

/**
 * Corks frames: everything queued during one run of JavaScript (for example
 * all echoes produced while handling one read) goes out in a single `write`
 * from a microtask. Only one write is in flight at a time; frames queued
 * meanwhile are written together when it completes.
 *
 * Why it is cheap per frame:
 * - Frames that sit back to back in the same buffer (the send path encodes
 *   into a shared slab, so consecutive frames do) are merged into one range
 *   by arithmetic on offsets: a burst of 16 pipelined echoes, or 8 published
 *   messages queued for one subscriber, is one write with no copy. Only
 *   non-adjacent frames are joined by copying.
 * - No async function: one `write` promise per batch with its two
 *   callbacks, and one microtask flushes every writer that has something
 *   queued (a publish to 1,000 subscribers schedules one, not 1,000).
 *
 * `bufferedAmount` counts the bytes of frames (headers included) accepted but
 * not yet handed to the kernel.
 */
export class FrameWriter {
  #conn: Deno.Conn;
  // The id for the runtime's write op, or null: conn.write (raw_io.ts).
  #rid: number | null;
  #onError: WriteErrorHandler;
  // Closed chunks waiting to be written, oldest first.
  #queue: Uint8Array[] = [];
  // The open tail: a range of #tailBuffer that new adjacent frames extend.
  // #tailView is the frame itself while the tail is a single frame (so the
  // common one-frame write allocates nothing).
  #tailBuffer: ArrayBufferLike | null = null;
  #tailStart = 0;
  #tailEnd = 0;
  #tailView: Uint8Array | null = null;
  #queued = 0;
  #writtenBytes = 0;
  #inFlight: Uint8Array | null = null;
  #inFlightOffset = 0;
  #scheduled = false;
  #failed = false;
  #drainWaiters: (() => void)[] | null = null;
  // Waiters for the queue to fall to a mark (see drainedTo): made on first use.
  #lowWaiters: { mark: number; resolve: () => void }[] | null = null;
  // The pong owed to the peer's most recent ping, not yet taken for writing
  // (see enqueuePong): at most one waits, whatever the peer sends.
  #pong: Uint8Array | null = null;
  // Pooled buffers of frames queued by enqueueMessage, returned at drain.
  #owned: Uint8Array[] | null = null;
  // Buffers of lent messages sent from where they lie (enqueueLentMessage):
  // returned at drain too, but only dropped at abort, never freed, as the
  // application or the frame parser may still be reading them.
  #takenOver: Uint8Array[] | null = null;
  // Whether this writer counts among the pool's users.
  #usesPool = false;
  // A write is in flight at the runtime (until its promise settles, even
  // after abort): buffers it may read must not be freed before.
  #writing = false;
  // Pooled buffers dropped by abort while a write was in flight: freed
  // once it settles.
  #orphans: Uint8Array[] | null = null;

  /**
   * `rid`: the connection's id for the runtime's write op, when its reader
   * uses the runtime's ops (see raw_io.ts), else null (conn.write).
   */
  constructor(conn: Deno.Conn, onError: WriteErrorHandler, rid: number | null = null) {
    this.#conn = conn;
    this.#onError = onError;
    this.#rid = rid;
  }

  /** Bytes accepted and not yet written to the socket. */
  get bufferedAmount(): number {
    const inFlight = this.#inFlight;
    return this.#queued + (inFlight === null ? 0 : inFlight.length - this.#inFlightOffset);
  }

  /**
   * Bytes handed to the kernel since the writer was made: a position in the
   * stream of accepted bytes, so a caller can tell when a given frame has
   * left (the heartbeat's pong clock starts then).
   */
  get writtenBytes(): number {
    return this.#writtenBytes;
  }

  /**
   * The pong queued by {@linkcode enqueuePong} while it still waits to be
   * taken for writing (its bytes may then be rewritten in place), else null.
   */
  get waitingPong(): Uint8Array | null {
    return this.#pong;
  }

  /** Whether a write failed; nothing more will be written. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Queues one encoded frame (or several, concatenated). The bytes must not change afterwards. */
  enqueue(bytes: Uint8Array): void {
    if (this.#failed) return;
    if (bytes.length === 0) return;
    const start = bytes.byteOffset;
    this.#enqueueRange(bytes.buffer, start, start + bytes.length, bytes);
  }

  /** Queues `buffer[start, end)`; `view` is that range as an array, if one exists. */
  #enqueueRange(
    buffer: ArrayBufferLike,
    start: number,
    end: number,
    view: Uint8Array | null,
  ): void {
    this.#queued += end - start;
    if (buffer === this.#tailBuffer && start === this.#tailEnd) {
      // Adjacent to the tail: extend the range, no copy, no allocation.
      this.#tailEnd = end;
      this.#tailView = null;
    } else {
      if (this.#tailBuffer !== null) this.#closeTail();
      this.#tailBuffer = buffer;
      this.#tailStart = start;
      this.#tailEnd = end;
      this.#tailView = view;
    }
    if (!this.#scheduled && this.#inFlight === null) this.#schedule();
  }

  /**
   * Queues a pong, replacing one that is still waiting: RFC 6455 §5.5.3 lets
   * an endpoint answer only the most recent of several pings. A peer that
   * floods pings and reads nothing thus makes us hold one pong, not one
   * allocation per ping (each a few wire bytes but ~100 bytes of memory, so
   * a wire-byte limit let ~8 M of them pile up). It goes out ahead of data
   * already queued (control frames may come between any two frames, RFC
   * 6455 §5.4): the peer's liveness check is not held back by a backlog.
   */
  enqueuePong(frame: Uint8Array): void {
    if (this.#failed) return;
    const waiting = this.#pong;
    if (waiting !== null) this.#queued -= waiting.length;
    this.#pong = frame;
    this.#queued += frame.length;
    if (!this.#scheduled && this.#inFlight === null) this.#schedule();
  }

  /**
   * Encodes and queues one data message: text as a text frame, bytes as a
   * binary frame. The frame belongs to this writer alone, so a large binary
   * one is built in a pooled buffer that is recycled once written (no
   * per-message allocation); small ones come from the shared slab.
   */
  enqueueMessage(payload: string | Uint8Array): void {
    if (this.#failed) return;
    if (typeof payload === "string") {
      const start = slabText(payload);
      // Too long for the slab (over 4 KiB encoded): a buffer of its own.
      if (start < 0) this.enqueue(encodeTextFrame(payload));
      else this.#enqueueRange(currentSlab().buffer, start, slabEnd(), null);
      return;
    }
    const length = payload.length;
    const size = frameHeaderSize(length) + length;
    if (size <= SLAB_MAX_FRAME) {
      this.enqueue(encodeFrameShared(Opcode.Binary, payload));
      return;
    }
    const buffer = takeBuffer(size);
    if (!this.#usesPool) {
      this.#usesPool = true;
      joinPool();
    }
    buffer.set(payload, writeFrameHeader(buffer, 0, true, Opcode.Binary, length));
    (this.#owned ??= []).push(buffer);
    this.enqueue(buffer.length === size ? buffer : buffer.subarray(0, size));
  }

  /**
   * Queues a binary message whose payload sits in a buffer with room for
   * its frame header just before it (a message lent to the application and
   * sent back as it is, from a pooled buffer or the read buffer where the
   * client's longer header was): the header is written in place and the
   * frame goes out from that buffer, no copy. The writer takes the buffer
   * over and gives it to the pool once written.
   */
  enqueueLentMessage(payload: Uint8Array): void {
    if (this.#failed) return;
    const length = payload.length;
    const start = payload.byteOffset - frameHeaderSize(length);
    const whole = new Uint8Array(payload.buffer);
    writeFrameHeader(whole, start, true, Opcode.Binary, length);
    if (!this.#usesPool) {
      this.#usesPool = true;
      joinPool();
    }
    (this.#takenOver ??= []).push(whole);
    this.#enqueueRange(whole.buffer, start, payload.byteOffset + length, null);
  }

  /** Resolves once everything queued so far is written (or the writer failed). */
  drained(): Promise<void> {
    if (this.bufferedAmount === 0 || this.#failed) return Promise.resolve();
    return new Promise((resolve) => (this.#drainWaiters ??= []).push(resolve));
  }

  /**
   * Resolves once no more than `mark` bytes wait to be written (at once if
   * that is so now), or the writer failed. Read loops use it to pause a
   * producer until the queue it filled has drained.
   */
  drainedTo(mark: number): Promise<void> {
    if (this.bufferedAmount <= mark || this.#failed) return Promise.resolve();
    return new Promise((resolve) => (this.#lowWaiters ??= []).push({ mark, resolve }));
  }

  /** Stops writing and drops what is queued (the socket is gone). */
  abort(): void {
    this.#failed = true;
    this.#queue = [];
    this.#tailBuffer = null;
    this.#tailView = null;
    this.#pong = null;
    this.#queued = 0;
    this.#inFlight = null;
    this.#takenOver = null;
    // Not returned to the pool, and freed only once no write can read them.
    const owned = this.#owned;
    this.#owned = null;
    if (owned !== null) {
      if (this.#writing) this.#orphans = owned;
      else for (const buffer of owned) freeBuffer(buffer);
    }
    if (this.#usesPool) {
      this.#usesPool = false;
      leavePool();
    }
    this.#resolveDrain();
    this.#resolveLow();
  }

  #closeTail(): void {
    this.#queue.push(
      this.#tailView ??
        new Uint8Array(this.#tailBuffer!, this.#tailStart, this.#tailEnd - this.#tailStart),
    );
    this.#tailBuffer = null;
    this.#tailView = null;
  }

  #schedule(): void {
    this.#scheduled = true;
    dirty.push(this);
    if (!flushScheduled) {
      flushScheduled = true;
      queueMicrotask(flushDirty);
    }
  }

  /** Writes what was queued since the last flush (called by the shared flush microtask). */
  flush(): void {
    this.#scheduled = false;
    if (this.#inFlight !== null || this.#failed || this.#queued === 0) return;
    this.#write(this.#take(), 0);
  }

  #write(chunk: Uint8Array, offset: number): void {
    this.#inFlight = chunk;
    this.#inFlightOffset = offset;
    let pending: Promise<number>;
    try {
      const bytes = offset === 0 ? chunk : chunk.subarray(offset);
      pending = writeTo(this.#conn, this.#rid, bytes);
    } catch (error) {
      this.#fail(error);
      return;
    }
    this.#writing = true;
    // Fresh callbacks per write, not two made once and kept on the writer:
    // kept ones made ~14% of the young generation survive each scavenge in
    // the connect benchmark (4% with fresh ones, as deno_limit's 3-4%), so
    // every short-lived connection was copied and promoted, and scavenges
    // took 7% of the time with pauses up to 40 ms (V8 --trace-gc-nvp).
    pending.then((n) => this.#onWritten(n), (error) => this.#fail(error));
  }

  #onWritten(n: number): void {
    this.#writing = false;
    const chunk = this.#inFlight;
    if (this.#failed || chunk === null) return this.#freeOrphans();
    this.#writtenBytes += n;
    if (this.#lowWaiters !== null) this.#resolveLow(n);
    const offset = this.#inFlightOffset + n;
    if (offset < chunk.length) {
      this.#write(chunk, offset);
      return;
    }
    this.#inFlight = null;
    if (this.#queued > 0) {
      // Frames queued while the write was in flight: they are all there now.
      this.#write(this.#take(), 0);
      return;
    }
    // Everything is written: pooled frame buffers are free again.
    const owned = this.#owned;
    if (owned !== null) {
      this.#owned = null;
      for (const buffer of owned) giveBuffer(buffer);
    }
    const takenOver = this.#takenOver;
    if (takenOver !== null) {
      this.#takenOver = null;
      for (const buffer of takenOver) giveBuffer(buffer);
    }
    this.#resolveDrain();
  }

  #fail(error: unknown): void {
    this.#writing = false;
    if (this.#failed) return this.#freeOrphans();
    this.abort();
    this.#onError.writeFailed(error);
  }

  /** The write that was in flight at abort has settled: its pooled buffers can go. */
  #freeOrphans(): void {
    const orphans = this.#orphans;
    if (orphans === null) return;
    this.#orphans = null;
    for (const buffer of orphans) freeBuffer(buffer);
  }

  /**
   * The next write: the queued chunks joined into one buffer (one syscall for
   * a whole batch), or one chunk on its own when it is alone or large
   * (joining would only add a copy).
   */
  #take(): Uint8Array {
    if (this.#pong !== null) this.#takePong();
    const queue = this.#queue;
    if (queue.length === 0) {
      // Only the tail: the common case, written as is.
      const view = this.#tailView ??
        new Uint8Array(this.#tailBuffer!, this.#tailStart, this.#tailEnd - this.#tailStart);
      this.#tailBuffer = null;
      this.#tailView = null;
      this.#queued = 0;
      return view;
    }
    if (this.#tailBuffer !== null) this.#closeTail();
    const first = queue[0];
    if (queue.length === 1 || first.length >= JOIN_LIMIT) {
      this.#queue = queue.length === 1 ? [] : queue.slice(1);
      this.#queued -= first.length;
      return first;
    }
    let count = 0;
    let total = 0;
    while (count < queue.length && total + queue[count].length <= JOIN_LIMIT) {
      total += queue[count++].length;
    }
    const joined = new Uint8Array(total);
    let offset = 0;
    for (let i = 0; i < count; i++) {
      joined.set(queue[i], offset);
      offset += queue[i].length;
    }
    this.#queue = count === queue.length ? [] : queue.slice(count);
    this.#queued -= total;
    return joined;
  }

  /** Puts the waiting pong at the head of the queue, so the next write starts with it. */
  #takePong(): void {
    const pong = this.#pong!;
    this.#pong = null;
    if (this.#queue.length === 0 && this.#tailBuffer === null) {
      // Nothing else waits: the pong becomes the tail, written alone.
      this.#tailBuffer = pong.buffer;
      this.#tailStart = pong.byteOffset;
      this.#tailEnd = pong.byteOffset + pong.length;
      this.#tailView = pong;
      return;
    }
    if (this.#tailBuffer !== null) this.#closeTail();
    this.#queue.unshift(pong);
  }

  /**
   * Resolves the drainedTo waiters whose mark the queue has reached (all of
   * them once the writer failed). `written` is the write just completed;
   * the in-flight chunk still counts until the caller moves on, so it is
   * taken off here.
   */
  #resolveLow(written = 0): void {
    const waiters = this.#lowWaiters;
    if (waiters === null) return;
    const left = this.#failed ? -1 : this.bufferedAmount - written;
    let kept: { mark: number; resolve: () => void }[] | null = null;
    for (const waiter of waiters) {
      if (left <= waiter.mark) waiter.resolve();
      else (kept ??= []).push(waiter);
    }
    this.#lowWaiters = kept;
  }

  #resolveDrain(): void {
    const waiters = this.#drainWaiters;
    if (waiters === null) return;
    this.#drainWaiters = null;
    for (const resolve of waiters) resolve();
  }
}
