/**
 * The send side of one connection: a queue of encoded frames written to the
 * socket with as few `write` calls as possible.
 *
 * @module
 */

// Frames are joined into one write up to this size; larger ones go alone.
const JOIN_LIMIT = 256 * 1024;

/** Called when the writer fails (the peer went away); the connection tears down. */
export type WriteErrorHandler = (error: unknown) => void;

/**
 * Corks frames: everything queued during one run of JavaScript (for example
 * all echoes produced while handling one read) goes out in a single `write`
 * from a microtask. Only one write is in flight at a time; frames queued
 * meanwhile are written together when it completes.
 *
 * `bufferedAmount` counts the bytes of frames (headers included) accepted but
 * not yet handed to the kernel.
 */
export class FrameWriter {
  #conn: Deno.Conn;
  #onError: WriteErrorHandler;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #inFlight = 0;
  #scheduled = false;
  #writing = false;
  #failed = false;
  #drainWaiters: (() => void)[] = [];
  #flush = () => this.#startWrite();

  constructor(conn: Deno.Conn, onError: WriteErrorHandler) {
    this.#conn = conn;
    this.#onError = onError;
  }

  /** Bytes accepted and not yet written to the socket. */
  get bufferedAmount(): number {
    return this.#queued + this.#inFlight;
  }

  /** Whether a write failed; nothing more will be written. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Queues one encoded frame (or several, concatenated). The bytes must not change afterwards. */
  enqueue(bytes: Uint8Array): void {
    if (this.#failed) return;
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    if (!this.#scheduled && !this.#writing) {
      this.#scheduled = true;
      queueMicrotask(this.#flush);
    }
  }

  /** Resolves once everything queued so far is written (or the writer failed). */
  drained(): Promise<void> {
    if (this.bufferedAmount === 0 || this.#failed) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Stops writing and drops what is queued (the socket is gone). */
  abort(): void {
    this.#failed = true;
    this.#queue = [];
    this.#queued = 0;
    this.#inFlight = 0;
    this.#resolveDrain();
  }

  #startWrite(): void {
    this.#scheduled = false;
    if (this.#writing || this.#queue.length === 0 || this.#failed) return;
    this.#writing = true;
    this.#writeLoop().catch((error) => {
      this.#writing = false;
      this.abort();
      this.#onError(error);
    });
  }

  async #writeLoop(): Promise<void> {
    while (this.#queue.length > 0 && !this.#failed) {
      const chunk = this.#takeQueue();
      this.#inFlight = chunk.length;
      let offset = 0;
      while (offset < chunk.length) {
        offset += await this.#conn.write(offset === 0 ? chunk : chunk.subarray(offset));
        if (this.#failed) return;
        this.#inFlight = chunk.length - offset;
      }
      this.#inFlight = 0;
    }
    this.#writing = false;
    this.#resolveDrain();
  }

  /**
   * The next write: every small frame queued, joined into one buffer (one
   * syscall for a whole batch), or one large frame on its own (joining would
   * only add a copy).
   */
  #takeQueue(): Uint8Array {
    const queue = this.#queue;
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

  #resolveDrain(): void {
    if (this.#drainWaiters.length === 0) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
