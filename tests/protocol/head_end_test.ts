/**
 * findStrictHeadEnd: one pass for the head's end and a bare LF, checked
 * against a byte-by-byte reference for every way a head can be split
 * across reads (each call sees only the bytes new since the last).
 */
import { deepStrictEqual } from "node:assert/strict";
import { findStrictHeadEnd } from "../../src/protocol/handshake.ts";

/** The reference: the first CRLF CRLF's end, unless a bare LF comes first. */
function reference(bytes: Uint8Array, to: number): number {
  for (let at = 0; at < to; at++) {
    if (bytes[at] !== 0x0a) continue;
    if (at === 0 || bytes[at - 1] !== 0x0d) return -2 - at;
    if (at >= 3 && bytes[at - 2] === 0x0a && bytes[at - 3] === 0x0d) return at + 1;
  }
  return -1;
}

const heads = [
  "GET / HTTP/1.1\r\nHost: a\r\n\r\nbody",
  "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
  "GET / HTTP/1.1\nHost: a\n\n",
  "GET / HTTP/1.1\r\nHost: a\r\n\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n\nGET",
  "\n",
  "\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\n",
  "GET / HTTP/1.1\r\r\n\r\n",
];

Deno.test("findStrictHeadEnd: the head's end or its first bare LF, however the bytes arrive", () => {
  const encoder = new TextEncoder();
  for (const head of heads) {
    const bytes = encoder.encode(head);
    // Two reads split at every point, and one byte per read.
    for (let split = 0; split <= bytes.length; split++) {
      let result = findStrictHeadEnd(bytes, 0, split);
      if (result === -1) result = findStrictHeadEnd(bytes, split, bytes.length);
      deepStrictEqual(
        result,
        reference(bytes, bytes.length),
        `${JSON.stringify(head)} at ${split}`,
      );
    }
    let result = -1;
    for (let to = 1; to <= bytes.length && result === -1; to++) {
      result = findStrictHeadEnd(bytes, to - 1, to);
    }
    deepStrictEqual(result, reference(bytes, bytes.length), JSON.stringify(head));
  }
});
