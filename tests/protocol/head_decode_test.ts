/**
 * decodeRequestHead: one char per byte, whatever the bytes, so that byte
 * positions are string positions. It decodes as UTF-8 and keeps that text
 * only when every byte was ASCII (told from the text itself); anything
 * else is decoded as latin-1 (windows-1252). Checked against the plain
 * rule (look at every byte first) on every byte value, the sequences that
 * could fool a check on the UTF-8 text (a BOM, U+FFFD itself, invalid and
 * multi-byte sequences that keep or change the length) and random bytes.
 */

import assert from "node:assert/strict";
import { decodeRequestHead } from "../../src/protocol/handshake.ts";

const utf8 = new TextDecoder();
const latin1 = new TextDecoder("latin1");

/** The rule as first written: every byte below 0x80, or latin-1. */
function reference(bytes: Uint8Array): string {
  return bytes.every((byte) => byte < 0x80) ? utf8.decode(bytes) : latin1.decode(bytes);
}

function check(bytes: Uint8Array): void {
  const text = decodeRequestHead(bytes);
  assert.equal(text, reference(bytes), `bytes ${[...bytes]}`);
  assert.equal(text.length, bytes.length, `one char per byte: ${[...bytes]}`);
}

const head = (middle: number[]) =>
  new Uint8Array([
    ...new TextEncoder().encode("GET / HTTP/1.1\r\nX: "),
    ...middle,
    ...new TextEncoder().encode("\r\n\r\n"),
  ]);

Deno.test("decodeRequestHead: every byte value, alone and in a head", () => {
  for (let byte = 0; byte < 256; byte++) {
    check(new Uint8Array([byte]));
    check(head([byte]));
    check(head([0x41, byte, 0x42]));
  }
});

Deno.test("decodeRequestHead: sequences a check on the UTF-8 text could miss", () => {
  const cases = [
    [0xef, 0xbb, 0xbf], // a BOM: dropped by the UTF-8 decoder
    [0xef, 0xbb, 0xbf, 0x47, 0x45, 0x54],
    [0xef, 0xbf, 0xbd], // U+FFFD itself, well encoded
    [0xc3, 0xa9], // é: two bytes, one char
    [0xf0, 0x9f, 0x98, 0x80], // four bytes, two UTF-16 units
    [0xe9], // an invalid byte: one U+FFFD, same length
    [0x80, 0x80, 0x80],
    [0xe2, 0x82], // a cut sequence
    [0xed, 0xa0, 0x80], // a surrogate
    [0xc0, 0xaf], // overlong
    [0xa0], // NBSP in latin-1
    [0x85], // NEL in latin-1, an ellipsis in windows-1252
  ];
  for (const middle of cases) {
    check(new Uint8Array(middle));
    check(head(middle));
  }
});

Deno.test("decodeRequestHead: random bytes, mostly ASCII", () => {
  let seed = 99;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let n = 0; n < 5_000; n++) {
    const bytes = new Uint8Array(1 + Math.floor(random() * 64));
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = random() < 0.9 ? 0x20 + Math.floor(random() * 0x5f) : Math.floor(random() * 256);
    }
    check(bytes);
  }
});
