// The JS UTF-8 fast paths (src/protocol/utf8.ts) must agree with TextEncoder and a
// fatal TextDecoder on every input: checked exhaustively on the interesting
// byte patterns and on random inputs.

import { decodeUtf8Short, encodeUtf8Into, utf8Length } from "../../src/protocol/utf8.ts";

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

function reference(bytes: Uint8Array): string | null {
  try {
    return fatal.decode(bytes);
  } catch {
    return null;
  }
}

function assertSame(bytes: Uint8Array): void {
  const expected = reference(bytes);
  const actual = decodeUtf8Short(bytes, 0, bytes.length);
  if (actual !== expected) {
    throw new Error(`decode mismatch on [${[...bytes]}]: ${actual} vs ${expected}`);
  }
}

// Deterministic PRNG so failures reproduce.
function prng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 8;
  };
}

Deno.test("decodeUtf8Short matches a fatal TextDecoder on every 1-2 byte input", () => {
  for (let a = 0; a < 256; a++) {
    assertSame(new Uint8Array([a]));
    for (let b = 0; b < 256; b++) assertSame(new Uint8Array([a, b]));
  }
});

Deno.test("decodeUtf8Short matches on 3-4 byte sequences around every boundary", () => {
  const leads = [0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5];
  const conts = [0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff];
  for (const a of leads) {
    for (const b of conts) {
      for (const c of conts) {
        assertSame(new Uint8Array([a, b, c]));
        for (const d of conts) assertSame(new Uint8Array([a, b, c, d]));
      }
    }
  }
});

Deno.test("decodeUtf8Short matches on random inputs, valid and invalid", () => {
  const next = prng(7);
  for (let round = 0; round < 20000; round++) {
    const length = next() % 70;
    const bytes = new Uint8Array(length);
    if (round % 2 === 0) {
      // Valid UTF-8 from random code points, then maybe one corrupted byte.
      let text = "";
      while (encoder.encode(text).length < length) {
        const kind = next() % 4;
        const cp = kind === 0
          ? next() % 0x80
          : kind === 1
          ? 0x80 + next() % 0x780
          : kind === 2
          ? 0x800 + next() % 0xf800
          : 0x10000 + next() % 0x100000;
        if (cp >= 0xd800 && cp <= 0xdfff) continue;
        text += String.fromCodePoint(cp);
      }
      const encoded = encoder.encode(text);
      if (round % 4 === 0 && encoded.length > 0) encoded[next() % encoded.length] = next() & 0xff;
      assertSame(encoded);
    } else {
      for (let i = 0; i < length; i++) bytes[i] = next() & 0xff;
      assertSame(bytes);
    }
  }
});

Deno.test("decodeUtf8Short respects start and end", () => {
  const bytes = encoder.encode("xxhé✓yy");
  if (decodeUtf8Short(bytes, 2, bytes.length - 2) !== "hé✓") throw new Error("range");
  if (decodeUtf8Short(bytes, 3, 4) !== null) throw new Error("cut sequence must be invalid");
});

Deno.test("encodeUtf8Into and utf8Length match TextEncoder, lone surrogates included", () => {
  const next = prng(11);
  const pieces = ["a", "é", "✓", "日", "😀", "\ud800", "\udc00", "\uffff", "\u0000", "\u07ff"];
  for (let round = 0; round < 20000; round++) {
    let text = "";
    const count = next() % 40;
    for (let i = 0; i < count; i++) text += pieces[next() % pieces.length];
    const expected = encoder.encode(text);
    if (utf8Length(text) !== expected.length) throw new Error(`length of ${JSON.stringify(text)}`);
    const target = new Uint8Array(expected.length + 4);
    const end = encodeUtf8Into(text, target, 2);
    if (end !== expected.length + 2) throw new Error(`end of ${JSON.stringify(text)}`);
    for (let i = 0; i < expected.length; i++) {
      if (target[2 + i] !== expected[i]) throw new Error(`bytes of ${JSON.stringify(text)}`);
    }
  }
});
