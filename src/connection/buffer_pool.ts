/**
 * Recycled buffers for large frames and messages, shared by every connection
 * of the process.
 *
 * A large buffer made fresh for each message (an echo of a 16 KiB or 1 MiB
 * message) is zero-filled, page-faulted in, and garbage once used. On Linux
 * the allocator hands freed large blocks back to the kernel, so the next one
 * faults again: on the 2-core benchmark VM, writing into 1 MiB of fresh
 * memory cost ~0.9 ms, more than reading and writing that MiB on the socket
 * (bench/RESULTS.md, "Large messages"). Buffers taken from here are given
 * back once their bytes are written (the writer's frames) or once the
 * application has handled the message lent to it (`binaryMessages: "view"`),
 * and the next large send or receive reuses them, already in memory.
 *
 * Buffers come in power-of-two sizes; the pool keeps a few per size and a
 * bounded total. Users (writers and lending connections) register, and when
 * the last one ends the pool is emptied and its memory freed at once
 * (detached): kept for good, it would leave up to POOL_MAX_BYTES in use
 * after, say, a burst of large echoes.
 *
 * @module
 */

const POOL_MIN_CLASS = 10; // 1 KiB: smaller buffers are cheap to make
const POOL_MAX_CLASS = 22; // 4 MiB: larger ones are rare enough to allocate
const POOL_PER_CLASS = 8;
const POOL_MAX_BYTES = 32 * 1024 * 1024;
const pool: Uint8Array[][] = [];
let pooledBytes = 0;
let users = 0;

/** Frees the memory of `buffer`'s ArrayBuffer at once (nothing may use it afterwards). */
export function freeBuffer(buffer: Uint8Array): void {
  const backing = buffer.buffer;
  if (!(backing instanceof ArrayBuffer)) return;
  try {
    backing.transfer(0);
  } catch {
    // Detached already.
  }
}

/** Registers a user of the pool: the pool lives while it has users. */
export function joinPool(): void {
  users++;
}

/** Unregisters a user; the last one to leave empties the pool and frees its memory. */
export function leavePool(): void {
  if (--users > 0) return;
  users = 0;
  for (const free of pool) {
    if (free === undefined) continue;
    for (const buffer of free) freeBuffer(buffer);
    free.length = 0;
  }
  pooledBytes = 0;
}

/**
 * A buffer of at least `size` bytes spanning its whole ArrayBuffer: a pooled
 * one of the next power of two when there is one, else a new one of that
 * size (or of exactly `size` beyond the largest pooled size).
 */
export function takeBuffer(size: number): Uint8Array {
  const sizeClass = 32 - Math.clz32(size - 1);
  if (sizeClass > POOL_MAX_CLASS) return new Uint8Array(size);
  const free = pool[sizeClass];
  if (free !== undefined && free.length > 0) {
    const buffer = free.pop()!;
    pooledBytes -= buffer.length;
    return buffer;
  }
  return new Uint8Array(1 << Math.max(sizeClass, POOL_MIN_CLASS));
}

/**
 * Gives back a buffer from {@linkcode takeBuffer} (or any view into one: the
 * whole ArrayBuffer goes back). Nothing may use it afterwards. Buffers the
 * pool has no room for are left to the garbage collector.
 */
export function giveBuffer(buffer: Uint8Array): void {
  if (users === 0) return;
  const length = buffer.buffer.byteLength;
  const sizeClass = 31 - Math.clz32(length);
  if (sizeClass > POOL_MAX_CLASS || sizeClass < POOL_MIN_CLASS || 1 << sizeClass !== length) {
    return;
  }
  if (pooledBytes + length > POOL_MAX_BYTES) return;
  const free = pool[sizeClass] ??= [];
  if (free.length >= POOL_PER_CLASS) return;
  // Given back twice, a buffer would later be handed to two users at once:
  // a scan of at most POOL_PER_CLASS entries makes that impossible.
  for (let i = 0; i < free.length; i++) if (free[i].buffer === buffer.buffer) return;
  free.push(buffer.length === length ? buffer : new Uint8Array(buffer.buffer as ArrayBuffer));
  pooledBytes += length;
}
