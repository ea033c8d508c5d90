/**
 * Deterministic fuzzing of the receive path: a seeded PRNG, a generator of
 * client frame streams (valid ones, then mutated), an independent reference
 * model of what RFC 6455 says a server must make of any byte stream, and a
 * checker that runs {@linkcode FrameParser} + {@linkcode MessageAssembler}
 * against the model.
 *
 * Everything here is pure and synchronous except {@linkcode shrinkCase}; the
 * same seed always gives the same streams, so a failure is reproduced by its
 * seed alone. Used by `tests/fuzz_test.ts` (fixed seed, bounded count),
 * `tests/fuzz/live_fuzz.ts` (the same streams against a live server) and
 * `tests/fuzz/run.ts` (`deno task fuzz`, a long run).
 *
 * The model is written from RFC 6455 §5 and shares no code with `src/`; the
 * only library behaviour it adopts is the choice of close code (1002, 1007,
 * 1009) for each kind of violation and the order in which header checks are
 * made, which decides the code when one frame breaks several rules.
 *
 * @module
 */

import { FrameParser } from "../../src/protocol/frame_parser.ts";
import { MessageAssembler } from "../../src/protocol/message.ts";
import {
  clientFrame,
  type ClientFrameOptions,
  closePayload,
  concat,
  MessageRecorder,
  type RecordedEvent,
  split,
  utf8,
} from "../helpers/frames.ts";

// ---- PRNG -----------------------------------------------------------------

/** A small, fast, seeded PRNG (mulberry32): the same seed gives the same sequence everywhere. */
export class Rng {
  #state: number;

  /** Starts the sequence for `seed` (any number; only its low 32 bits count). */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** The next unsigned 32-bit integer. */
  u32(): number {
    let t = this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.u32() / 0x1_0000_0000;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** An integer in [low, high]. */
  between(low: number, high: number): number {
    return low + this.int(high - low + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const word = this.u32();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = word >>> (8 * j);
    }
    return out;
  }
}

/** The seed of case `index` of a run seeded with `seed`: every case is reproducible on its own. */
export function caseSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

// ---- generation -------------------------------------------------------------

/** One generated stream and how to feed it. */
export interface FuzzCase {
  /** The seed it was generated from (see {@linkcode generateCase}). */
  seed: number;
  /** The message size limit the receiver applies. */
  maxPayload: number;
  /** The client's bytes, after the opening handshake. */
  bytes: Uint8Array;
  /** Ascending offsets where the stream is cut into separate pushes (or writes). */
  splits: number[];
  /** What was generated and how it was mutated, for reports. */
  notes: string[];
}

/** Knobs of {@linkcode generateCase}. */
export interface GenerateOptions {
  /** Message size limits; each case picks one. */
  maxPayloads: readonly number[];
  /** Largest data payload the valid generator writes, in bytes. */
  maxMessageBytes: number;
  /** Most messages (data or control) in one valid stream. */
  maxMessages: number;
}

/** Defaults for the pure parser+assembler property test: every length encoding, every limit edge. */
export const PARSER_FUZZ: GenerateOptions = {
  maxPayloads: [0, 125, 126, 1000, 65_535, 65_536, 1 << 20, 1 << 20, 1 << 20],
  maxMessageBytes: 70_000,
  maxMessages: 8,
};

/** Options for streams sent to a live server whose `maxPayload` is `maxPayload`. */
export function liveFuzz(maxPayload: number): GenerateOptions {
  return { maxPayloads: [maxPayload], maxMessageBytes: maxPayload + 512, maxMessages: 6 };
}

// Code point ranges for random text, with weights: mostly ASCII, all UTF-8 widths.
const CODE_POINTS: readonly [number, number, number][] = [
  [0x20, 0x7e, 10],
  [0x00, 0x1f, 1],
  [0x80, 0x7ff, 3],
  [0x800, 0xd7ff, 3],
  [0xe000, 0xffff, 1],
  [0x1_0000, 0x10_ffff, 2],
];
const CODE_POINT_WEIGHT = CODE_POINTS.reduce((sum, [, , weight]) => sum + weight, 0);

function randomCodePoint(rng: Rng): number {
  let roll = rng.int(CODE_POINT_WEIGHT);
  for (const [low, high, weight] of CODE_POINTS) {
    if (roll < weight) return rng.between(low, high);
    roll -= weight;
  }
  return 0x41;
}

/** Valid UTF-8 text of about `target` bytes (up to 3 more), sometimes starting with a BOM. */
function randomText(rng: Rng, target: number): Uint8Array {
  const out = new Uint8Array(target + 6);
  let n = 0;
  if (target >= 3 && rng.chance(0.05)) {
    out.set([0xef, 0xbb, 0xbf]); // a BOM must reach the application, not be eaten
    n = 3;
  }
  while (n < target) {
    const cp = randomCodePoint(rng);
    if (cp < 0x80) {
      out[n++] = cp;
    } else if (cp < 0x800) {
      out[n++] = 0xc0 | (cp >> 6);
      out[n++] = 0x80 | (cp & 0x3f);
    } else if (cp < 0x1_0000) {
      out[n++] = 0xe0 | (cp >> 12);
      out[n++] = 0x80 | ((cp >> 6) & 0x3f);
      out[n++] = 0x80 | (cp & 0x3f);
    } else {
      out[n++] = 0xf0 | (cp >> 18);
      out[n++] = 0x80 | ((cp >> 12) & 0x3f);
      out[n++] = 0x80 | ((cp >> 6) & 0x3f);
      out[n++] = 0x80 | (cp & 0x3f);
    }
  }
  return out.subarray(0, n);
}

// Byte sequences that are never valid UTF-8 wherever they are inserted.
const BAD_UTF8: readonly number[][] = [
  [0x80],
  [0xbf],
  [0xc0, 0xaf], // overlong "/"
  [0xc1, 0xbf],
  [0xe0, 0x80, 0xaf], // overlong
  [0xed, 0xa0, 0x80], // UTF-16 surrogate
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xf5, 0x80, 0x80, 0x80],
  [0xf8],
  [0xfe],
  [0xff],
  [0xe2, 0x82], // truncated sequence
  [0xf0, 0x9f, 0x98],
];

function corruptUtf8(rng: Rng, payload: Uint8Array): Uint8Array {
  const at = rng.int(payload.length + 1);
  return concat(payload.subarray(0, at), Uint8Array.from(rng.pick(BAD_UTF8)), payload.subarray(at));
}

function payloadSize(rng: Rng, max: number): number {
  const roll = rng.float();
  if (roll < 0.4) return Math.min(rng.int(17), max);
  if (roll < 0.7) return Math.min(rng.between(17, 125), max);
  if (roll < 0.8) {
    return rng.pick([0, 1, 125, 126, 127, 65_535, 65_536, 65_537].filter((n) => n <= max));
  }
  if (roll < 0.95) return rng.between(0, Math.min(4096, max));
  return rng.between(0, max);
}

function maskKey(rng: Rng): Uint8Array {
  return rng.chance(0.05) ? new Uint8Array(4) : rng.bytes(4);
}

/** Cuts `payload` into `count` pieces at random offsets (pieces may be empty, cuts may fall inside a UTF-8 sequence). */
function cutInto(rng: Rng, payload: Uint8Array, count: number): Uint8Array[] {
  const cuts = Array.from({ length: count - 1 }, () => rng.int(payload.length + 1));
  return split(payload, cuts.sort((a, b) => a - b));
}

function controlFrame(rng: Rng): ClientFrameOptions {
  const size = rng.chance(0.5) ? rng.int(8) : rng.between(0, 125);
  return { opcode: rng.chance(0.6) ? 0x9 : 0xa, payload: rng.bytes(size), mask: maskKey(rng) };
}

const VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014];
const INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65_535];

function closeFrame(rng: Rng, notes: string[]): ClientFrameOptions {
  const roll = rng.float();
  let payload: Uint8Array;
  if (roll < 0.45) {
    const code = rng.chance(0.7) ? rng.pick(VALID_CLOSE_CODES) : rng.between(3000, 4999);
    payload = closePayload(code, rng.chance(0.5) ? randomText(rng, rng.int(118)) : "");
    notes.push(`close ${code}`);
  } else if (roll < 0.6) {
    payload = new Uint8Array(0);
    notes.push("close (empty)");
  } else if (roll < 0.7) {
    payload = rng.bytes(1);
    notes.push("close (1 byte)");
  } else if (roll < 0.85) {
    const code = rng.pick(INVALID_CLOSE_CODES);
    payload = closePayload(code, "bad code");
    notes.push(`close ${code} (invalid)`);
  } else {
    payload = closePayload(1000, corruptUtf8(rng, randomText(rng, rng.int(60))));
    notes.push("close (reason not UTF-8)");
  }
  return { opcode: 0x8, payload, mask: maskKey(rng) };
}

/** A valid stream: data messages (some fragmented, control frames between fragments) and maybe a close. */
function validFrames(rng: Rng, options: GenerateOptions, notes: string[]): ClientFrameOptions[] {
  const frames: ClientFrameOptions[] = [];
  const count = rng.between(0, options.maxMessages);
  for (let i = 0; i < count; i++) {
    if (rng.chance(0.15)) {
      frames.push(controlFrame(rng));
      continue;
    }
    const text = rng.chance(0.55);
    const size = payloadSize(rng, options.maxMessageBytes);
    let payload = text ? randomText(rng, size) : rng.bytes(size);
    if (text && rng.chance(0.06)) {
      payload = corruptUtf8(rng, payload);
      notes.push("text not UTF-8");
    }
    const pieces = rng.chance(0.3) ? cutInto(rng, payload, rng.between(2, 5)) : [payload];
    pieces.forEach((piece, j) => {
      if (j > 0 && rng.chance(0.3)) frames.push(controlFrame(rng));
      frames.push({
        opcode: j > 0 ? 0x0 : text ? 0x1 : 0x2,
        payload: piece,
        fin: j === pieces.length - 1,
        mask: maskKey(rng),
      });
    });
  }
  if (rng.chance(0.5)) {
    frames.push(closeFrame(rng, notes));
    // Whatever follows a close frame must be ignored.
    if (rng.chance(0.3)) {
      frames.push({ opcode: 0x1, payload: utf8("after close"), mask: maskKey(rng) });
    }
  }
  return frames;
}

const HUGE_LENGTHS: readonly bigint[] = [
  2n ** 64n - 1n,
  2n ** 63n,
  2n ** 63n - 1n,
  2n ** 53n,
  2n ** 53n - 1n,
  2n ** 32n,
  2n ** 32n + 1n,
  0x1_0000n,
];

function randomFrame(rng: Rng): ClientFrameOptions {
  return {
    opcode: rng.int(16),
    payload: rng.bytes(rng.chance(0.8) ? rng.int(20) : rng.int(300)),
    fin: rng.chance(0.8),
    rsv: rng.chance(0.8) ? 0 : rng.int(8) << 4,
    mask: rng.chance(0.9) ? maskKey(rng) : false,
  };
}

type FrameMutation = (rng: Rng, frames: ClientFrameOptions[], maxPayload: number) => string;

function anyFrame(rng: Rng, frames: ClientFrameOptions[]): ClientFrameOptions {
  if (frames.length === 0) frames.push(randomFrame(rng));
  return rng.pick(frames);
}

// Mutations of the frame list (before encoding): each returns a short description.
const FRAME_MUTATIONS: readonly FrameMutation[] = [
  (rng, frames) => {
    const i = frames.length === 0 ? 0 : rng.int(frames.length);
    frames.splice(i, 0, { ...anyFrame(rng, frames) });
    return `duplicate frame ${i}`;
  },
  (rng, frames) => {
    anyFrame(rng, frames);
    const i = rng.int(frames.length);
    const j = rng.int(frames.length);
    [frames[i], frames[j]] = [frames[j], frames[i]];
    return `swap frames ${i} and ${j}`;
  },
  (rng, frames) => {
    anyFrame(rng, frames);
    const i = rng.int(frames.length);
    frames.splice(i, 1);
    return `drop frame ${i}`;
  },
  (rng, frames) => {
    const frame = anyFrame(rng, frames);
    frame.rsv = rng.pick([0x10, 0x20, 0x40, 0x70]);
    return `set RSV 0x${frame.rsv.toString(16)}`;
  },
  (rng, frames) => {
    const frame = anyFrame(rng, frames);
    frame.opcode = rng.int(16);
    return `opcode ${frame.opcode}`;
  },
  (rng, frames) => {
    const frame = anyFrame(rng, frames);
    frame.fin = !(frame.fin ?? true);
    return `FIN ${frame.fin}`;
  },
  (rng, frames) => {
    anyFrame(rng, frames).mask = false;
    return "unmasked frame";
  },
  (rng, frames, maxPayload) => {
    const frame = anyFrame(rng, frames);
    frame.lengthField = 64;
    frame.declaredLength = rng.pick([...HUGE_LENGTHS, BigInt(maxPayload) + 1n, BigInt(rng.u32())]);
    return `64-bit length ${frame.declaredLength}`;
  },
  (rng, frames, maxPayload) => {
    const frame = anyFrame(rng, frames);
    const length = BigInt(rng.pick([maxPayload, maxPayload + 1, Math.max(0, maxPayload - 1)]));
    frame.declaredLength = length;
    frame.lengthField = length > 0xffffn ? 64 : rng.pick([16, 64, "auto"] as const);
    return `length ${length} (the limit ${maxPayload})`;
  },
  (rng, frames) => {
    const frame = anyFrame(rng, frames);
    const length = frame.payload?.length ?? 0;
    frame.lengthField = length > 0xffff ? 64 : rng.pick([16, 64] as const);
    return `non-minimal ${frame.lengthField}-bit length`;
  },
  (rng, frames) => {
    const frame = anyFrame(rng, frames);
    const length = frame.payload?.length ?? 0;
    frame.declaredLength = Math.max(0, length + rng.between(-3, 3));
    if (frame.declaredLength > 0xffff) frame.lengthField = 64;
    else if (frame.lengthField === 16 || frame.declaredLength < 126) frame.lengthField = "auto";
    return `lying length ${frame.declaredLength} for ${length} bytes`;
  },
  (rng, frames) => {
    const i = rng.int(frames.length + 1);
    frames.splice(i, 0, {
      opcode: rng.pick([0x8, 0x9, 0xa]),
      payload: rng.bytes(rng.between(126, 300)),
      mask: maskKey(rng),
    });
    return `control frame over 125 bytes at ${i}`;
  },
  (rng, frames) => {
    const i = rng.int(frames.length + 1);
    frames.splice(i, 0, { ...controlFrame(rng), fin: false });
    return `fragmented control frame at ${i}`;
  },
  (rng, frames) => {
    const i = rng.int(frames.length + 1);
    frames.splice(i, 0, randomFrame(rng));
    return `random frame at ${i}`;
  },
];

type ByteMutation = (rng: Rng, bytes: Uint8Array) => [Uint8Array, string];

// Mutations of the encoded stream.
const BYTE_MUTATIONS: readonly ByteMutation[] = [
  (rng, bytes) => {
    const out = bytes.slice();
    const flips = rng.between(1, 8);
    for (let i = 0; i < flips && out.length > 0; i++) out[rng.int(out.length)] ^= 1 << rng.int(8);
    return [out, `flip ${flips} bits`];
  },
  (rng, bytes) => {
    const out = bytes.slice();
    if (out.length > 0) out[rng.int(out.length)] = rng.int(256);
    return [out, "overwrite a byte"];
  },
  (rng, bytes) => {
    const at = rng.int(bytes.length + 1);
    return [bytes.slice(0, at), `truncate at ${at}`];
  },
  (rng, bytes) => {
    const at = rng.int(bytes.length + 1);
    return [
      concat(bytes.subarray(0, at), rng.bytes(rng.between(1, 16)), bytes.subarray(at)),
      `insert bytes at ${at}`,
    ];
  },
  (rng, bytes) => {
    const at = rng.int(bytes.length + 1);
    const end = Math.min(bytes.length, at + rng.between(1, 32));
    return [concat(bytes.subarray(0, at), bytes.subarray(end)), `delete ${at}..${end}`];
  },
  (rng, bytes) => {
    const at = rng.int(bytes.length + 1);
    const end = Math.min(bytes.length, at + rng.between(1, 64));
    return [concat(bytes.subarray(0, end), bytes.subarray(at)), `repeat ${at}..${end}`];
  },
  (rng, bytes) => [concat(bytes, rng.bytes(rng.between(1, 64))), "append garbage"],
];

/** Mutations combine freely; a 16-bit length field that cannot hold the declared length becomes 64-bit. */
function fitLengthField(frame: ClientFrameOptions): ClientFrameOptions {
  const declared = BigInt(frame.declaredLength ?? frame.payload?.length ?? 0);
  return frame.lengthField === 16 && declared > 0xffffn ? { ...frame, lengthField: 64 } : frame;
}

/** Split points: none, a few, or (for short streams) every byte boundary. */
function splitPoints(rng: Rng, length: number): number[] {
  if (length < 2) return [];
  if (length <= 3000 && rng.chance(0.05)) {
    return Array.from({ length: length - 1 }, (_, i) => i + 1);
  }
  const cuts = new Set<number>();
  const count = rng.int(8);
  for (let i = 0; i < count; i++) cuts.add(rng.between(1, length - 1));
  return [...cuts].sort((a, b) => a - b);
}

/**
 * Generates the case for `seed`: a valid stream, then (two times in three) one
 * to three mutations of its frames or bytes; rarely, plain random bytes.
 */
export function generateCase(seed: number, options: GenerateOptions): FuzzCase {
  const rng = new Rng(seed);
  const maxPayload = rng.pick(options.maxPayloads);
  const notes: string[] = [];
  let bytes: Uint8Array;
  if (rng.chance(0.03)) {
    bytes = rng.bytes(rng.int(400));
    notes.push("random bytes");
  } else {
    const frames = validFrames(rng, options, notes);
    notes.unshift(`${frames.length} frames`);
    const mutations = rng.chance(0.35) ? 0 : rng.between(1, 3);
    const byteMutations: ByteMutation[] = [];
    for (let i = 0; i < mutations; i++) {
      if (rng.chance(0.6)) notes.push(rng.pick(FRAME_MUTATIONS)(rng, frames, maxPayload));
      else byteMutations.push(rng.pick(BYTE_MUTATIONS));
    }
    bytes = concat(...frames.map((frame) => clientFrame(fitLengthField(frame))));
    for (const mutate of byteMutations) {
      const [mutated, note] = mutate(rng, bytes);
      bytes = mutated;
      notes.push(note);
    }
  }
  return { seed, maxPayload, bytes, splits: splitPoints(rng, bytes.length), notes };
}

/** A valid stream and the same stream with every data message compressed (RFC 7692). */
export interface CompressedTwin {
  /** The messages as generated, uncompressed. */
  plain: Uint8Array;
  /**
   * The same frames, but each data message's payload deflated as a whole and
   * cut again into as many frames as before (RSV1 on the first): control
   * frames stay where they were.
   */
  compressed: Uint8Array;
  /** Random cut points in `compressed`, for split feeding. */
  splits: number[];
}

/**
 * Generates a {@linkcode CompressedTwin} from `seed`, or null when the seed's
 * stream has text that is not UTF-8 (an uncompressed receiver rejects that
 * at the bad fragment, a compressed one only at the message's end, so the
 * two would rightly report different events before the error).
 */
export function compressedTwin(
  seed: number,
  compress: (bytes: Uint8Array) => Uint8Array,
): CompressedTwin | null {
  const rng = new Rng(seed);
  const notes: string[] = [];
  const options = { maxPayloads: [1 << 20], maxMessageBytes: 70_000, maxMessages: 6 };
  const frames = validFrames(rng, options, notes);
  if (notes.includes("text not UTF-8")) return null;
  const twin = frames.map((frame) => ({ ...frame }));
  let message: number[] = [];
  const finish = () => {
    const payloads = message.map((i) => toBytes(frames[i].payload));
    const deflated = compress(concat(...payloads));
    const cuts = Array.from({ length: message.length - 1 }, () => rng.int(deflated.length + 1));
    split(deflated, cuts.sort((a, b) => a - b)).forEach((piece, j) => {
      twin[message[j]].payload = piece;
    });
    twin[message[0]].rsv = 0x40;
    message = [];
  };
  frames.forEach((frame, i) => {
    if (frame.opcode >= 0x8) return;
    message.push(i);
    if (frame.fin ?? true) finish();
  });
  const compressed = concat(...twin.map((frame) => clientFrame(fitLengthField(frame))));
  return {
    plain: concat(...frames.map((frame) => clientFrame(fitLengthField(frame)))),
    compressed,
    splits: splitPoints(rng, compressed.length),
  };
}

function toBytes(payload: Uint8Array | string | undefined): Uint8Array {
  return typeof payload === "string" ? utf8(payload) : payload ?? new Uint8Array(0);
}

// ---- reference model --------------------------------------------------------

/** WHATWG/RFC 3629 UTF-8 validation, one byte at a time, so a prefix can be judged. */
export class Utf8Validator {
  #needed = 0;
  #seen = 0;
  #lower = 0x80;
  #upper = 0xbf;

  /** Feeds bytes; false as soon as they cannot begin valid UTF-8. */
  push(bytes: Uint8Array): boolean {
    for (const byte of bytes) {
      if (this.#needed === 0) {
        if (byte <= 0x7f) continue;
        if (byte >= 0xc2 && byte <= 0xdf) this.#needed = 1;
        else if (byte >= 0xe0 && byte <= 0xef) {
          if (byte === 0xe0) this.#lower = 0xa0;
          if (byte === 0xed) this.#upper = 0x9f;
          this.#needed = 2;
        } else if (byte >= 0xf0 && byte <= 0xf4) {
          if (byte === 0xf0) this.#lower = 0x90;
          if (byte === 0xf4) this.#upper = 0x8f;
          this.#needed = 3;
        } else return false;
        continue;
      }
      if (byte < this.#lower || byte > this.#upper) return false;
      this.#lower = 0x80;
      this.#upper = 0xbf;
      if (++this.#seen === this.#needed) this.#needed = this.#seen = 0;
    }
    return true;
  }

  /** Whether the bytes so far end on a character boundary. */
  finish(): boolean {
    return this.#needed === 0;
  }
}

/** Decodes strict UTF-8, keeping a leading BOM; throws on invalid bytes. */
export function decodeUtf8(bytes: Uint8Array): string {
  const validator = new Utf8Validator();
  if (!validator.push(bytes) || !validator.finish()) throw new TypeError("invalid UTF-8");
  return validatedDecoder.decode(bytes);
}

function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/** How {@linkcode modelDecode} reads a stream. */
export interface ModelOptions {
  /** Largest message, after reassembly; larger ones are an error (1009). */
  maxPayload: number;
  /** True for client-to-server streams (every frame masked), false for server-to-client. */
  expectMasked: boolean;
}

/** What the model makes of a stream. */
export interface ModelResult {
  /** The events a receiver must report, in order; an error or close is last. */
  events: RecordedEvent[];
  /** Bytes of the stream taken up by complete frames before the model stopped. */
  consumed: number;
}

// Keeps a leading BOM: it is part of the message (the library decodes with ignoreBOM too).
const validatedDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * The reference model: decodes a whole byte stream at once, as RFC 6455 §5
 * reads, and returns the events a conforming receiver reports. A stream that
 * ends inside a frame yields the events of the complete frames before it
 * (and an error, when the partial frame already breaks a rule).
 */
export function modelDecode(bytes: Uint8Array, options: ModelOptions): ModelResult {
  const events: RecordedEvent[] = [];
  let pos = 0;
  let message:
    | { opcode: number; length: number; parts: Uint8Array[]; text: Utf8Validator | null }
    | null = null;
  const fail = (code: number): ModelResult => {
    events.push({ type: "error", code, message: "" });
    return { events, consumed: pos };
  };
  while (bytes.length - pos >= 2) {
    const b0 = bytes[pos];
    const b1 = bytes[pos + 1];
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    const len7 = b1 & 0x7f;
    const control = opcode >= 0x8;
    // §5.2: RSV bits without an extension, reserved opcodes; §5.5: control frames
    // are final and at most 125 bytes; §5.1: clients mask, servers do not.
    if ((b0 & 0x70) !== 0) return fail(1002);
    if (control ? opcode > 0xa || !fin || len7 > 125 : opcode > 0x2) return fail(1002);
    if (masked !== options.expectMasked) return fail(1002);
    const extended = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
    const headerSize = 2 + extended + (masked ? 4 : 0);
    if (bytes.length - pos < headerSize) break;
    let length = BigInt(len7);
    if (extended > 0) {
      length = 0n;
      for (let i = 0; i < extended; i++) length = (length << 8n) | BigInt(bytes[pos + 2 + i]);
    }
    if (length >= 2n ** 63n) return fail(1002); // §5.2: the most significant bit must be 0
    if (length >= 2n ** 53n) return fail(1009); // no receiver can hold it
    const declared = Number(length);
    const start = pos + headerSize;
    const payload = bytes.slice(start, start + Math.min(declared, bytes.length - start));
    if (masked) {
      for (let i = 0; i < payload.length; i++) payload[i] ^= bytes[pos + 2 + extended + (i & 3)];
    }
    if (!control) {
      // §5.4: a continuation needs a message in progress; a new message needs none.
      if (opcode === 0x0) {
        if (message === null) return fail(1002);
      } else if (message !== null) {
        return fail(1002);
      } else {
        message = {
          opcode,
          length: 0,
          parts: [],
          text: opcode === 0x1 ? new Utf8Validator() : null,
        };
      }
      // The limit is judged on declared lengths, before any payload is kept.
      if (message.length + declared > options.maxPayload) return fail(1009);
      message.length += declared;
      // §8.1: text must be UTF-8; a receiver fails as soon as it cannot be.
      if (message.text !== null && !message.text.push(payload)) return fail(1007);
      message.parts.push(payload);
    }
    if (payload.length < declared) break;
    pos = start + declared;
    if (opcode === 0x9 || opcode === 0xa) {
      events.push({ type: opcode === 0x9 ? "ping" : "pong", data: payload });
    } else if (opcode === 0x8) {
      // §5.5.1 and §7.4: no body, or a valid code and a UTF-8 reason.
      if (payload.length === 0) {
        events.push({ type: "close", code: 1005, reason: "" });
        return { events, consumed: pos };
      }
      if (payload.length === 1) return fail(1002);
      const code = (payload[0] << 8) | payload[1];
      if (!isValidCloseCode(code)) return fail(1002);
      const reason = payload.subarray(2);
      const validator = new Utf8Validator();
      if (!validator.push(reason) || !validator.finish()) return fail(1007);
      events.push({ type: "close", code, reason: validatedDecoder.decode(reason) });
      return { events, consumed: pos };
    } else if (fin && message !== null) {
      if (message.text !== null && !message.text.finish()) return fail(1007);
      const data = concat(...message.parts);
      events.push(
        message.text !== null
          ? { type: "text", text: validatedDecoder.decode(data) }
          : { type: "binary", data },
      );
      message = null;
    }
  }
  return { events, consumed: pos };
}

// ---- running the library ----------------------------------------------------

function fnv1a(bytes: Uint8Array): string {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193);
  return (hash >>> 0).toString(16).padStart(8, "0");
}

/** Hex of `bytes`, e.g. `81 85 37 fa`. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(" ");
}

function bytesKey(bytes: Uint8Array): string {
  return bytes.length <= 16
    ? `[${hex(bytes)}]`
    : `${bytes.length} bytes [${hex(bytes.subarray(0, 8))} …] fnv ${fnv1a(bytes)}`;
}

/** A short, comparable description of an event (texts compared by their UTF-8 bytes). */
export function eventKey(event: RecordedEvent): string {
  switch (event.type) {
    case "text":
      return `text ${bytesKey(utf8(event.text))}`;
    case "binary":
    case "ping":
    case "pong":
      return `${event.type} ${bytesKey(event.data)}`;
    case "close":
      return `close ${event.code} ${JSON.stringify(event.reason)}`;
    case "error":
      return `error ${event.code}`;
  }
}

/** The close codes a receiver may fail a connection with for what a peer sent. */
export const ERROR_CODES: readonly number[] = [1002, 1007, 1009];

/**
 * Runs `bytes` through a fresh {@linkcode FrameParser} + {@linkcode MessageAssembler},
 * pushed in pieces cut at `cuts`. Each piece is copied into one reused buffer
 * (as the connection's read buffer is reused), so a binary message that still
 * points into it afterwards shows up as corrupted. Returns the events and
 * what the run threw, if anything.
 *
 * With `inPlace`, it reads as the connection does for long payloads:
 * whenever the parser offers a payload target (`payloadTarget(1)`), the next
 * bytes of the piece are written straight into it and pushed from there; the
 * assembler borrows from a budget, which must be whole again once the
 * assembler is stopped (`budgetLeak` is what is missing).
 */
export function runLibrary(
  bytes: Uint8Array,
  cuts: readonly number[],
  maxPayload: number,
  inPlace = false,
): { events: RecordedEvent[]; thrown: unknown; budgetLeak: number } {
  const recorder = new MessageRecorder();
  const budgetSize = 4 * maxPayload;
  let budgetLeft = budgetSize;
  const budget = inPlace
    ? {
      take: (n: number) => n <= budgetLeft && (budgetLeft -= n, true),
      give: (n: number) => void (budgetLeft += n),
    }
    : undefined;
  const assembler = new MessageAssembler(recorder, { maxPayload, budget });
  const parser = new FrameParser(assembler);
  const scratch = new Uint8Array(bytes.length);
  let start = 0;
  try {
    for (const cut of [...cuts, bytes.length]) {
      while (start < cut) {
        const target = inPlace ? parser.payloadTarget(1) : null;
        if (target !== null) {
          const n = Math.min(target.length, cut - start);
          target.set(bytes.subarray(start, start + n));
          parser.push(target, n);
          start += n;
          continue;
        }
        const piece = scratch.subarray(0, cut - start);
        piece.set(bytes.subarray(start, cut));
        parser.push(piece);
        start = cut;
      }
    }
    scratch.fill(0xee);
    assembler.stop();
  } catch (error) {
    return { events: recorder.events, thrown: error, budgetLeak: 0 };
  }
  return { events: recorder.events, thrown: undefined, budgetLeak: budgetSize - budgetLeft };
}

/** Rule breaks in one event sequence: a bad error code, or anything after an error or a close. */
export function sequenceViolations(events: readonly RecordedEvent[]): string[] {
  const violations: string[] = [];
  events.forEach((event, i) => {
    if (event.type === "error" && !ERROR_CODES.includes(event.code)) {
      violations.push(`error code ${event.code} is not one of ${ERROR_CODES.join("/")}`);
    }
    if (i > 0 && (events[i - 1].type === "error" || events[i - 1].type === "close")) {
      violations.push(`${event.type} reported after ${events[i - 1].type} (event ${i})`);
    }
  });
  return violations;
}

function firstDifference(got: readonly string[], want: readonly string[]): string | null {
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    if (got[i] !== want[i]) {
      return `event ${i}: got ${got[i] ?? "nothing"}, expected ${want[i] ?? "nothing"}`;
    }
  }
  return null;
}

/** The outcome of {@linkcode checkCase}. */
export interface CaseResult {
  /** The model's events (the library agreed unless there are violations). */
  events: RecordedEvent[];
  /** What went wrong; empty when the library behaved. */
  violations: string[];
}

/**
 * Checks one case: the library, fed the stream whole, fed it at the case's
 * split points, and fed it at those points with long payloads read straight
 * into their message buffers, must not throw, must report at most one error (with
 * an allowed code) and nothing after an error or a close, and must report
 * exactly the model's events both times.
 */
export function checkCase(fuzzCase: FuzzCase): CaseResult {
  const model = modelDecode(fuzzCase.bytes, {
    maxPayload: fuzzCase.maxPayload,
    expectMasked: true,
  });
  const want = model.events.map(eventKey);
  const violations: string[] = [];
  const split = `split at ${fuzzCase.splits.length} points`;
  const runs: [string, readonly number[], boolean][] = [
    ["whole", [], false],
    [split, fuzzCase.splits, false],
    [`${split}, payloads read in place`, fuzzCase.splits, true],
  ];
  for (const [name, cuts, inPlace] of runs) {
    const run = runLibrary(fuzzCase.bytes, cuts, fuzzCase.maxPayload, inPlace);
    if (run.thrown !== undefined) violations.push(`${name}: threw ${String(run.thrown)}`);
    if (run.budgetLeak !== 0) {
      violations.push(`${name}: ${run.budgetLeak} budget bytes not given back`);
    }
    for (const violation of sequenceViolations(run.events)) {
      violations.push(`${name}: ${violation}`);
    }
    const difference = firstDifference(run.events.map(eventKey), want);
    if (difference !== null) violations.push(`${name}: differs from the model at ${difference}`);
  }
  return { events: model.events, violations };
}

// ---- reports ----------------------------------------------------------------

/** A case as text: enough to reproduce it by hand. */
export function formatCase(fuzzCase: FuzzCase): string {
  return [
    `case seed ${fuzzCase.seed}, maxPayload ${fuzzCase.maxPayload}`,
    `notes: ${fuzzCase.notes.join("; ") || "-"}`,
    `bytes (${fuzzCase.bytes.length}): ${
      fuzzCase.bytes.length <= 512
        ? hex(fuzzCase.bytes)
        : `${hex(fuzzCase.bytes.subarray(0, 512))} … (${fuzzCase.bytes.length - 512} more)`
    }`,
    `split points: [${fuzzCase.splits.join(", ")}]`,
  ].join("\n");
}

/** Where one complete frame sits in a stream. */
interface FrameSpan {
  start: number;
  /** Offset of the payload. */
  payload: number;
  end: number;
}

/** The complete frames at the start of a stream, by their headers (up to the first one cut short). */
function frameSpans(bytes: Uint8Array): FrameSpan[] {
  const spans: FrameSpan[] = [];
  let pos = 0;
  while (bytes.length - pos >= 2) {
    const len7 = bytes[pos + 1] & 0x7f;
    const extended = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
    const payload = pos + 2 + extended + ((bytes[pos + 1] & 0x80) !== 0 ? 4 : 0);
    if (payload > bytes.length) break;
    let length = len7;
    if (extended > 0) {
      length = 0;
      for (let i = 0; i < extended; i++) length = length * 256 + bytes[pos + 2 + i];
    }
    if (payload + length > bytes.length) break;
    spans.push({ start: pos, payload, end: payload + length });
    pos = payload + length;
  }
  return spans;
}

/** The frame at `span` with only the first `length` payload bytes, its header rewritten to match. */
function resizedFrame(bytes: Uint8Array, span: FrameSpan, length: number): Uint8Array {
  const masked = (bytes[span.start + 1] & 0x80) !== 0;
  const width = length < 126 ? 0 : length < 0x1_0000 ? 2 : 8;
  const header = new Uint8Array(2 + width + (masked ? 4 : 0));
  header[0] = bytes[span.start];
  header[1] = (masked ? 0x80 : 0) | (width === 0 ? length : width === 2 ? 126 : 127);
  for (let i = 0; i < width; i++) {
    header[2 + i] = Math.floor(length / 256 ** (width - 1 - i)) & 0xff;
  }
  if (masked) header.set(bytes.subarray(span.payload - 4, span.payload), 2 + width);
  return concat(header, bytes.subarray(span.payload, span.payload + length));
}

/**
 * Shrinks a failing case, keeping each change that still fails: drops split
 * points, whole frames, halves of frame payloads (headers rewritten), then
 * ever smaller byte ranges. Bounded by `budget` attempts.
 */
export async function shrinkCase(
  fuzzCase: FuzzCase,
  fails: (candidate: FuzzCase) => boolean | Promise<boolean>,
  budget = 2_000,
): Promise<FuzzCase> {
  let best = fuzzCase;
  let attempts = 0;
  const attempt = async (candidate: FuzzCase): Promise<boolean> => {
    if (attempts++ >= budget) return false;
    if (!await fails(candidate)) return false;
    best = candidate;
    return true;
  };
  // A new byte stream keeps the split points that still fall inside it.
  const withBytes = (bytes: Uint8Array): FuzzCase => ({
    ...best,
    bytes,
    splits: best.splits.filter((cut) => cut < bytes.length),
    notes: [...fuzzCase.notes, "shrunk"],
  });
  if (!await attempt({ ...best, splits: [] })) {
    for (let i = best.splits.length - 1; i >= 0; i--) {
      await attempt({ ...best, splits: best.splits.filter((_, j) => j !== i) });
    }
  }
  for (let i = frameSpans(best.bytes).length - 1; i >= 0; i--) {
    const span = frameSpans(best.bytes)[i];
    if (span === undefined) continue;
    await attempt(
      withBytes(concat(best.bytes.subarray(0, span.start), best.bytes.subarray(span.end))),
    );
  }
  for (let i = 0, shrunk = true; shrunk && attempts < budget; i++) {
    shrunk = false;
    for (const span of frameSpans(best.bytes).reverse()) {
      const length = span.end - span.payload;
      if (length === 0) continue;
      const frame = resizedFrame(best.bytes, span, length >> 1);
      const bytes = concat(
        best.bytes.subarray(0, span.start),
        frame,
        best.bytes.subarray(span.end),
      );
      if (await attempt(withBytes(bytes))) shrunk = true;
    }
  }
  for (let size = best.bytes.length >> 1; size >= 1 && attempts < budget; size >>= 1) {
    for (let at = 0; at < best.bytes.length && attempts < budget;) {
      const end = Math.min(at + size, best.bytes.length);
      const removed = end - at;
      const candidate: FuzzCase = {
        ...best,
        bytes: concat(best.bytes.subarray(0, at), best.bytes.subarray(end)),
        splits: [
          ...new Set(
            best.splits.filter((cut) => cut <= at || cut >= end)
              .map((cut) => cut >= end ? cut - removed : cut)
              .filter((cut) => cut > 0 && cut < best.bytes.length - removed),
          ),
        ],
        notes: [...fuzzCase.notes, "shrunk"],
      };
      if (!await attempt(candidate)) at += size;
    }
  }
  return best;
}
