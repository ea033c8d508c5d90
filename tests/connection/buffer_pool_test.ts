/**
 * The shared buffer pool: recycles, never hands one buffer to two users,
 * and frees its memory when its last user leaves.
 */

import assert from "node:assert/strict";
import { giveBuffer, joinPool, leavePool, takeBuffer } from "../../src/connection/buffer_pool.ts";

Deno.test("pool: a buffer given back is taken again; one given twice is still taken once", () => {
  joinPool();
  try {
    const first = takeBuffer(100_000);
    assert.equal(first.length, 128 * 1024, "rounded up to a power of two");
    giveBuffer(first.subarray(10, 20)); // any view gives back the whole buffer
    giveBuffer(first);
    const again = takeBuffer(70_000);
    assert.equal(again.buffer, first.buffer, "not recycled");
    const other = takeBuffer(70_000);
    assert.notEqual(other.buffer, first.buffer, "the same buffer was handed out twice");
  } finally {
    leavePool();
  }
});

Deno.test("pool: the last user leaving frees what the pool holds", () => {
  joinPool();
  const buffer = takeBuffer(64 * 1024);
  giveBuffer(buffer);
  leavePool();
  assert.equal(buffer.buffer.byteLength, 0, "the pooled buffer's memory was not freed");
  // With no user, nothing is kept.
  const later = takeBuffer(64 * 1024);
  giveBuffer(later);
  assert.equal(later.buffer.byteLength, 64 * 1024);
  joinPool();
  try {
    assert.notEqual(takeBuffer(64 * 1024).buffer, later.buffer, "kept without a user");
  } finally {
    leavePool();
  }
});
