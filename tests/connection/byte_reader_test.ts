/**
 * The read buffer's sizing: what an idle connection keeps, and how the
 * buffer follows the traffic (grows when reads fill it, shrinks back when
 * they stop). A scripted connection stands in for the socket.
 */

import assert from "node:assert/strict";
import { ByteReader, type ByteReaderOptions } from "../../src/connection/byte_reader.ts";

/** A connection whose reads return the scripted chunks, then end of stream. */
function scriptedConn(chunks: Uint8Array[]): Deno.Conn {
  const read = (into: Uint8Array): Promise<number | null> => {
    const chunk = chunks.shift();
    if (chunk === undefined) return Promise.resolve(null);
    const n = Math.min(chunk.length, into.length);
    into.set(chunk.subarray(0, n));
    if (n < chunk.length) chunks.unshift(chunk.subarray(n));
    return Promise.resolve(n);
  };
  return { read } as unknown as Deno.Conn;
}

const options: ByteReaderOptions = {
  initialSize: 1024,
  settledSize: 256,
  maxSize: 64 * 1024,
  mode: "read",
};

Deno.test("ByteReader: an upgraded connection keeps a small buffer, and bytes already read", async () => {
  const reader = new ByteReader(scriptedConn([new Uint8Array(300).fill(7)]), options);
  assert.equal(reader.buffer.length, 1024);
  assert.equal(await reader.fill(), 300);
  reader.consume(290); // the request head; 10 bytes of frames follow it
  reader.settle();
  assert.equal(reader.buffer.length, 256);
  assert.equal(reader.filled, 10);
  assert.deepEqual([...reader.buffer.subarray(0, 10)], new Array(10).fill(7));
});

Deno.test("ByteReader: settling keeps a buffer whose unread bytes would not fit", async () => {
  const reader = new ByteReader(scriptedConn([new Uint8Array(600)]), options);
  await reader.fill();
  reader.consume(100);
  reader.settle();
  assert.equal(reader.buffer.length, 1024);
  assert.equal(reader.filled, 500);
});

Deno.test("ByteReader: the settled buffer grows under load and shrinks back when quiet", async () => {
  const burst = Array.from({ length: 8 }, () => new Uint8Array(8 * 1024));
  const quiet = Array.from({ length: 100 }, () => new Uint8Array(10));
  const reader = new ByteReader(scriptedConn([...burst, ...quiet]), options);
  reader.settle();
  let largest = 0;
  for (let i = 0; i < burst.length; i++) {
    await reader.fill();
    reader.filled = 0;
    largest = Math.max(largest, reader.buffer.length);
  }
  assert.ok(largest >= 8 * 1024, `grew to ${largest} bytes only`);
  while (await reader.fill() > 0) reader.filled = 0;
  assert.equal(reader.buffer.length, 256, "shrinks back to the settled size, not the initial one");
});

Deno.test("ByteReader: capSize bounds how much one read may bring", async () => {
  const burst = Array.from({ length: 12 }, () => new Uint8Array(64 * 1024));
  const reader = new ByteReader(scriptedConn(burst), options);
  reader.settle();
  reader.capSize(4096);
  let largest = 0;
  while (await reader.fill() > 0) {
    largest = Math.max(largest, reader.filled);
    reader.filled = 0;
  }
  assert.equal(largest, 4096, "reads fill the capped buffer and no more");
});

Deno.test("ByteReader: a shared initial buffer is read into once, then replaced by one of its own", async () => {
  const shared: ByteReaderOptions = { ...options, sharedInitial: true };
  const a = new ByteReader(
    scriptedConn([new Uint8Array(100).fill(1), new Uint8Array(50).fill(2)]),
    shared,
  );
  const b = new ByteReader(scriptedConn([new Uint8Array(10).fill(3)]), shared);
  // Two readers, one slab: neither sees the other's bytes.
  assert.equal(a.buffer.buffer, b.buffer.buffer);
  assert.equal(a.buffer.length, 1024);
  assert.equal(await a.fill(), 100);
  assert.equal(await b.fill(), 10);
  assert.deepEqual([...a.buffer.subarray(0, 100)], new Array(100).fill(1));
  // The second read: a buffer of its own, the unread bytes moved along.
  assert.equal(await a.fill(), 50);
  assert.notEqual(a.buffer.buffer, b.buffer.buffer);
  assert.equal(a.buffer.byteOffset, 0);
  assert.equal(a.buffer.length, 1024);
  assert.deepEqual([...a.buffer.subarray(0, 150)], [
    ...new Array(100).fill(1),
    ...new Array(50).fill(2),
  ]);
  // Settling (an upgrade) never keeps the shared one, whose bytes survive.
  b.consume(4);
  b.settle();
  assert.equal(b.buffer.length, 256);
  assert.equal(b.buffer.byteOffset, 0);
  assert.equal(b.buffer.buffer.byteLength, 256);
  assert.deepEqual([...b.buffer.subarray(0, 6)], new Array(6).fill(3));
});
