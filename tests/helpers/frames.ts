/**
 * Test tooling for the wire protocol: a builder for client (masked) frames
 * that can also produce the malformed frames a hostile client would send, and
 * a {@linkcode MessageHandler} that records what the assembler reports.
 *
 * The builder is written from RFC 6455 §5.2 directly and shares no code with
 * `src/`, so a test that compares the library against it compares two
 * independent implementations.
 *
 * @module
 */

import type { MessageHandler } from "../../src/protocol/message.ts";

/** The masking key used when a test does not choose one: the RFC 6455 §5.7 example key. */
export const DEFAULT_MASK_KEY: Uint8Array = Uint8Array.of(0x37, 0xfa, 0x21, 0x3d);

/** What {@linkcode clientFrame} builds. */
export interface ClientFrameOptions {
  /** The 4-bit opcode; any value 0-15, including reserved ones. */
  opcode: number;
  /** The payload, unmasked; a string is UTF-8 encoded. Default: empty. */
  payload?: Uint8Array | string;
  /** The FIN bit. Default: true. */
  fin?: boolean;
  /** Raw RSV bits as they sit in the first byte (0x40 = RSV1, 0x20 = RSV2, 0x10 = RSV3). Default: 0. */
  rsv?: number;
  /** The masking key, or `false` to send the frame unmasked (illegal from a client). Default: {@linkcode DEFAULT_MASK_KEY}. */
  mask?: Uint8Array | false;
  /**
   * The length encoding: `"auto"` (the minimal one), or force the 16-bit or
   * 64-bit extended field even when a shorter one would do. Default: `"auto"`.
   */
  lengthField?: "auto" | 16 | 64;
  /**
   * The length written into the header, when it should differ from the
   * payload's real length (a lying or out-of-range header). A `bigint`
   * reaches the values a JS number cannot hold exactly, such as 2^63.
   * The payload bytes are appended as given either way.
   */
  declaredLength?: number | bigint;
}

const encoder = new TextEncoder();

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}

/** Concatenates byte arrays into a new one. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Builds one frame as a client would send it: masked with a key, minimal
 * length encoding. Options produce the malformed variants (unmasked, reserved
 * bits or opcodes, non-minimal or lying length fields). Returns a new array
 * every call; the input payload is not modified.
 *
 * @example
 * ```ts
 * clientFrame({ opcode: 0x1, payload: "MDN", mask: Uint8Array.of(61, 84, 35, 6) });
 * // Uint8Array [129, 131, 61, 84, 35, 6, 112, 16, 109]
 * ```
 */
export function clientFrame(options: ClientFrameOptions): Uint8Array<ArrayBuffer> {
  const payload = typeof options.payload === "string"
    ? utf8(options.payload)
    : options.payload ?? new Uint8Array(0);
  const fin = options.fin ?? true;
  const mask = options.mask ?? DEFAULT_MASK_KEY;
  const declared = BigInt(options.declaredLength ?? payload.length);
  const field = options.lengthField ?? "auto";
  const width = field === "auto" ? (declared < 126n ? 7 : declared < 0x10000n ? 16 : 64) : field;
  if (width === 16 && declared > 0xffffn) {
    throw new RangeError(`length ${declared} does not fit a 16-bit length field`);
  }
  if (mask !== false && mask.length !== 4) throw new RangeError("a masking key is 4 bytes");

  const extended = width === 7 ? 0 : width === 16 ? 2 : 8;
  const maskBytes = mask === false ? 0 : 4;
  const headerSize = 2 + extended + maskBytes;
  const frame = new Uint8Array(headerSize + payload.length);
  const view = new DataView(frame.buffer);
  frame[0] = (fin ? 0x80 : 0) | ((options.rsv ?? 0) & 0x70) | (options.opcode & 0x0f);
  const maskBit = mask === false ? 0 : 0x80;
  if (width === 7) {
    frame[1] = maskBit | Number(declared);
  } else if (width === 16) {
    frame[1] = maskBit | 126;
    view.setUint16(2, Number(declared));
  } else {
    frame[1] = maskBit | 127;
    view.setBigUint64(2, declared);
  }
  if (mask !== false) frame.set(mask, 2 + extended);
  for (let i = 0; i < payload.length; i++) {
    frame[headerSize + i] = mask === false ? payload[i] : payload[i] ^ mask[i & 3];
  }
  return frame;
}

/**
 * A close frame payload: the 2-byte big-endian `code` followed by `reason`
 * (a string is UTF-8 encoded; bytes are taken as they are, so invalid UTF-8
 * can be sent). Any code 0-65535 is accepted, valid on the wire or not.
 */
export function closePayload(code: number, reason: string | Uint8Array = ""): Uint8Array {
  const reasonBytes = typeof reason === "string" ? utf8(reason) : reason;
  const payload = new Uint8Array(2 + reasonBytes.length);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(reasonBytes, 2);
  return payload;
}

/**
 * `length` bytes that differ from their neighbours and repeat only every
 * 256 bytes, so a misplaced, missing or wrongly unmasked byte shows.
 * Different seeds give different bytes.
 */
export function pattern(length: number, seed = 0): Uint8Array<ArrayBuffer> {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed * 7 + 1) & 0xff);
}

/**
 * A deterministic pseudo-random generator (a linear congruential one):
 * returns a function giving integers in `[0, n)`. A fixed seed keeps a
 * failing randomized test reproducible.
 */
export function seededRandom(seed: number): (n: number) => number {
  let state = seed % 2 ** 31;
  return (n) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return Math.floor((state / 2 ** 31) * n);
  };
}

/**
 * Asserts that two byte arrays are equal, reporting the first difference.
 * Use it for large arrays: a failing deep-equality assertion on objects that
 * hold tens of kilobytes builds a diff of every element, which can take
 * minutes and gigabytes.
 */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  const length = Math.min(actual.length, expected.length);
  let index = 0;
  while (index < length && actual[index] === expected[index]) index++;
  if (index === length && actual.length === expected.length) return;
  throw new Error(
    `${what}: ${actual.length} bytes, expected ${expected.length}; first difference at ` +
      `index ${index} (${actual[index]} instead of ${expected[index]})`,
  );
}

/**
 * Cuts `bytes` at the given ascending offsets into fresh copies. Copies
 * matter: the frame parser unmasks in place, so every run needs its own bytes.
 */
export function split(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    pieces.push(bytes.slice(start, cut));
    start = cut;
  }
  return pieces;
}

/**
 * Every way the tests feed a byte stream: whole, in two pieces at every
 * boundary, and one byte at a time. Each entry names the way (for assertion
 * messages) and holds fresh copies of the pieces.
 */
export function* feedings(bytes: Uint8Array): Generator<[string, Uint8Array[]]> {
  yield ["whole", split(bytes, [])];
  for (let cut = 1; cut < bytes.length; cut++) yield [`split at ${cut}`, split(bytes, [cut])];
  yield ["byte by byte", split(bytes, Array.from({ length: bytes.length - 1 }, (_, i) => i + 1))];
}

/** One event reported to a {@linkcode MessageRecorder}. */
export type RecordedEvent =
  | { type: "text"; text: string }
  | { type: "binary"; data: Uint8Array }
  | { type: "ping"; data: Uint8Array }
  | { type: "pong"; data: Uint8Array }
  | { type: "close"; code: number; reason: string }
  | { type: "error"; code: number; message: string };

/** A {@linkcode RecordedEvent} as {@linkcode MessageRecorder.summary} lists it: errors without their message. */
export type SummaryEvent =
  | Exclude<RecordedEvent, { type: "error" }>
  | { type: "error"; code: number };

/**
 * A {@linkcode MessageHandler} that records every event in order. Binary
 * messages are kept as handed over (they are the receiver's to keep); ping
 * and pong payloads, valid only during the call, are copied.
 */
export class MessageRecorder implements MessageHandler {
  /** The events so far, oldest first. */
  readonly events: RecordedEvent[] = [];

  /** Records a text message. */
  onText(text: string): void {
    this.events.push({ type: "text", text });
  }

  /** Records a binary message (the very array received, not a copy). */
  onBinary(data: Uint8Array): void {
    this.events.push({ type: "binary", data });
  }

  /** Records a copy of a ping payload. */
  onPing(payload: Uint8Array): void {
    this.events.push({ type: "ping", data: payload.slice() });
  }

  /** Records a copy of a pong payload. */
  onPong(payload: Uint8Array): void {
    this.events.push({ type: "pong", data: payload.slice() });
  }

  /** Records the peer's close frame. */
  onClose(code: number, reason: string): void {
    this.events.push({ type: "close", code, reason });
  }

  /** Records a protocol error. */
  onProtocolError(code: number, message: string): void {
    this.events.push({ type: "error", code, message });
  }

  /** The events with error messages left out, for exact comparisons that ignore wording. */
  get summary(): SummaryEvent[] {
    return this.events.map((event) =>
      event.type === "error" ? { type: "error", code: event.code } : event
    );
  }
}
