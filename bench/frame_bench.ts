/**
 * Frame header parsing (FrameParser on a read full of small masked frames)
 * and frame encoding (what every send pays).
 *
 *   deno bench -A bench/frame_bench.ts
 */

import {
  encodeFrame,
  encodeFrameShared,
  encodeTextFrame,
  encodeTextFrameShared,
  Opcode,
  slabText,
} from "../src/protocol/frame.ts";
import { type FrameHandler, FrameParser } from "../src/protocol/frame_parser.ts";

const FRAMES = 100;

/** `count` masked client frames of `size` bytes, back to back, as one read delivers them. */
function maskedFrames(count: number, size: number, opcode: number): Uint8Array {
  const header = 2 + (size < 126 ? 0 : size < 0x10000 ? 2 : 8) + 4;
  const out = new Uint8Array(count * (header + size));
  let p = 0;
  for (let f = 0; f < count; f++) {
    out[p++] = 0x80 | opcode;
    if (size < 126) {
      out[p++] = 0x80 | size;
    } else {
      out[p++] = 0x80 | 126;
      out[p++] = size >>> 8;
      out[p++] = size & 0xff;
    }
    out.set([1, 2, 3, 4], p);
    p += 4;
    for (let i = 0; i < size; i++) out[p++] = 0x61 ^ ((i & 3) + 1);
  }
  return out;
}

let events = 0;
const countingHandler: FrameHandler = {
  onFrameStart: () => (events++, true),
  onFramePayload: () => true,
  onFrameEnd: () => true,
  onFrameError: (code, message) => {
    throw new Error(`${code} ${message}`);
  },
};

const small = maskedFrames(FRAMES, 32, Opcode.Text);
const parser = new FrameParser(countingHandler, { expectMasked: true });
Deno.bench({
  name: `parse ${FRAMES} x 32 B masked frames in one push`,
  group: "parse",
  baseline: true,
  fn() {
    // Unmasking in place twice restores the bytes, so the input can be reused.
    parser.push(small);
  },
});

const medium = maskedFrames(1, 16 * 1024, Opcode.Binary);
const parserMedium = new FrameParser(countingHandler, { expectMasked: true });
Deno.bench({
  name: "parse 1 x 16 KiB masked frame",
  group: "parse",
  fn() {
    parserMedium.push(medium);
  },
});

// Header split across pushes: the gather path.
const split = maskedFrames(1, 32, Opcode.Text);
const parserSplit = new FrameParser(countingHandler, { expectMasked: true });
Deno.bench({
  name: "parse 1 x 32 B frame split after 3 bytes",
  group: "parse",
  fn() {
    parserSplit.push(split.subarray(0, 3));
    parserSplit.push(split.subarray(3));
  },
});

const payload32 = new Uint8Array(32).fill(0x61);
const text32 = "a".repeat(32);
const text16k = "a".repeat(16 * 1024);
const payload16k = new Uint8Array(16 * 1024).fill(0x61);
Deno.bench({
  name: "encodeFrame binary 32 B",
  group: "encode",
  baseline: true,
  fn() {
    encodeFrame(Opcode.Binary, payload32);
  },
});
Deno.bench({
  name: "encodeTextFrame 32 chars",
  group: "encode",
  fn() {
    encodeTextFrame(text32);
  },
});
Deno.bench({
  name: "encodeFrame binary 16 KiB",
  group: "encode",
  fn() {
    encodeFrame(Opcode.Binary, payload16k);
  },
});
Deno.bench({
  name: "encodeTextFrame 16 Ki chars",
  group: "encode",
  fn() {
    encodeTextFrame(text16k);
  },
});

// The send path's encoders: frames carved from a shared slab.
Deno.bench({
  name: "encodeFrameShared binary 32 B (send path)",
  group: "encode",
  fn() {
    encodeFrameShared(Opcode.Binary, payload32);
  },
});
Deno.bench({
  name: "encodeTextFrameShared 32 chars (send path)",
  group: "encode",
  fn() {
    encodeTextFrameShared(text32);
  },
});
const text32mixed = "héllo wörld ✓ 日本 0123456789ab";
Deno.bench({
  name: "encodeTextFrame 32 chars mixed UTF-8",
  group: "encode",
  fn() {
    encodeTextFrame(text32mixed);
  },
});
Deno.bench({
  name: "encodeTextFrameShared 32 chars mixed UTF-8 (send path)",
  group: "encode",
  fn() {
    encodeTextFrameShared(text32mixed);
  },
});
const text500 = "a".repeat(500);
Deno.bench({
  name: "encodeTextFrameShared 500 chars (send path, native encodeInto)",
  group: "encode",
  fn() {
    encodeTextFrameShared(text500);
  },
});

// What the echo of a short text costs on the send path once the string is
// flat (decoded by the receive path's JS decoder).
Deno.bench({
  name: "slabText 32 chars (send path: no array allocated)",
  group: "encode",
  fn() {
    slabText(text32);
  },
});
