/**
 * Frame-level constants and encoders (RFC 6455 §5.2). Pure: no I/O.
 *
 * @module
 */

import { encodeUtf8Into, SHORT_UTF8, utf8Length } from "./utf8.ts";
import { unmaskWord } from "./mask.ts";

/**
 * WebSocket opcodes (RFC 6455 §5.2).
 *
 * @example
 * ```ts
 * import { Opcode } from "@tsunagu/ws";
 * console.log(Opcode.Text); // 1
 * ```
 */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

/** One of the {@linkcode Opcode} values. */
export type Opcode = typeof Opcode[keyof typeof Opcode];

/**
 * Close status codes (RFC 6455 §7.4.1 and the IANA registry).
 *
 * @example
 * ```ts
 * import { CloseCode } from "@tsunagu/ws";
 * console.log(CloseCode.MessageTooBig); // 1009
 * ```
 */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  /** Reported locally when a close frame carried no code; never sent. */
  NoStatus: 1005,
  /** Reported locally when the TCP connection ended without a close frame; never sent. */
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014,
} as const;

/** The longest close reason that fits a control frame: 125 bytes minus the 2-byte code. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** Largest payload of a control frame (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/**
 * Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4):
 * 1000-1003, 1007-1014 and the application/library ranges 3000-4999.
 *
 * @example
 * ```ts
 * import { isValidCloseCode } from "@tsunagu/ws";
 * isValidCloseCode(1000); // true
 * isValidCloseCode(1005); // false: reserved for local reporting
 * ```
 */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/** Size in bytes of an unmasked server frame header for a payload of `length` bytes. */
export function frameHeaderSize(length: number): number {
  return length < 126 ? 2 : length < 0x10000 ? 4 : 10;
}

/**
 * Writes an unmasked frame header into `target` at `offset` and returns the
 * offset just past it. `rsv` holds the RSV bits already shifted (0x40 = RSV1).
 */
export function writeFrameHeader(
  target: Uint8Array,
  offset: number,
  fin: boolean,
  opcode: number,
  length: number,
  rsv = 0,
): number {
  target[offset] = (fin ? 0x80 : 0) | rsv | opcode;
  if (length < 126) {
    target[offset + 1] = length;
    return offset + 2;
  }
  if (length < 0x10000) {
    target[offset + 1] = 126;
    target[offset + 2] = length >>> 8;
    target[offset + 3] = length & 0xff;
    return offset + 4;
  }
  target[offset + 1] = 127;
  // Payloads are JS-addressable, so the length fits in 53 bits: split it
  // into two 32-bit halves instead of going through BigInt.
  const high = Math.floor(length / 0x1_0000_0000);
  const low = length >>> 0;
  target[offset + 2] = high >>> 24;
  target[offset + 3] = (high >>> 16) & 0xff;
  target[offset + 4] = (high >>> 8) & 0xff;
  target[offset + 5] = high & 0xff;
  target[offset + 6] = low >>> 24;
  target[offset + 7] = (low >>> 16) & 0xff;
  target[offset + 8] = (low >>> 8) & 0xff;
  target[offset + 9] = low & 0xff;
  return offset + 10;
}

/**
 * Encodes one complete unmasked frame (header and payload) into a new buffer.
 *
 * @example
 * ```ts
 * import { encodeFrame, Opcode } from "@tsunagu/ws";
 * const bytes = encodeFrame(Opcode.Binary, new Uint8Array([1, 2, 3]));
 * console.log(bytes); // Uint8Array(5) [ 130, 3, 1, 2, 3 ]
 * ```
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  fin = true,
  rsv = 0,
): Uint8Array {
  const frame = new Uint8Array(frameHeaderSize(payload.length) + payload.length);
  frame.set(payload, writeFrameHeader(frame, 0, fin, opcode, payload.length, rsv));
  return frame;
}

/**
 * Encodes one complete masked frame, as a client must send it (RFC 6455
 * §5.3): a fresh random masking key from the platform's CSPRNG for every
 * frame, so a client's payload cannot be chosen to look like other
 * protocols' bytes to intermediaries.
 *
 * @example
 * ```ts
 * import { encodeMaskedFrame, Opcode } from "@tsunagu/ws";
 * const frame = encodeMaskedFrame(Opcode.Text, new TextEncoder().encode("hi"));
 * console.log(frame.length, frame[1] & 0x80); // 8 128 (2 header, 4 key, 2 payload)
 * ```
 */
export function encodeMaskedFrame(
  opcode: number,
  payload: Uint8Array,
  fin = true,
  rsv = 0,
): Uint8Array {
  const frame = new Uint8Array(frameHeaderSize(payload.length) + 4 + payload.length);
  const keyAt = writeFrameHeader(frame, 0, fin, opcode, payload.length, rsv);
  frame[1] |= 0x80;
  const key = frame.subarray(keyAt, keyAt + 4);
  crypto.getRandomValues(key);
  const body = frame.subarray(keyAt + 4);
  body.set(payload);
  unmaskWord(body, key[0] | (key[1] << 8) | (key[2] << 16) | (key[3] << 24));
  return frame;
}

const encoder = new TextEncoder();

// ---- shared-slab encoders for the send path ----
//
// Allocating a small Uint8Array costs 100-400 ns in Deno (a backing store per
// array), more than encoding a chat-sized frame. The send path instead carves
// frames out of a 64 KiB slab with a bump pointer: one slab allocation per
// ~1000 small frames, and a frame is only a view. Slab bytes are never
// rewritten (a full slab is abandoned, not reused; the GC frees it when its
// last frame is gone), so a queued frame stays valid. A bonus the writer
// relies on: frames encoded one after another are adjacent in memory, so a
// burst of them (pipelined echoes, several publishes) is written as one
// range without copying. The public encoders above keep returning arrays of
// their own, since a user may keep those.

const SLAB_SIZE = 64 * 1024;
/**
 * Frames up to this size (header included) are carved from the slab. Larger
 * ones get their own buffer: the copy dominates their cost anyway, and one
 * would pin a whole slab.
 */
export const SLAB_MAX_FRAME = 4 * 1024;
// The writer reads these through the accessors below.
let slab = new Uint8Array(SLAB_SIZE);
let slabUsed = 0;

/** The current slab (replaced by a fresh one when full). */
export function currentSlab(): Uint8Array {
  return slab;
}

/** Where the last frame encoded into the slab ends. */
export function slabEnd(): number {
  return slabUsed;
}

/** Reserves `size` bytes in the slab (a fresh slab when it does not fit). */
function slabReserve(size: number): void {
  if (slabUsed + size > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabUsed = 0;
  }
}

/**
 * Encodes one unmasked frame like {@linkcode encodeFrame}, but small frames
 * may share their `ArrayBuffer` with other frames (see the slab notes above).
 * For internal send paths only: the result must not be handed to users.
 */
export function encodeFrameShared(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const size = frameHeaderSize(length) + length;
  if (size > SLAB_MAX_FRAME) return encodeFrame(opcode, payload);
  slabReserve(size);
  const start = slabUsed;
  const offset = writeFrameHeader(slab, start, true, opcode, length);
  slab.set(payload, offset);
  slabUsed = start + size;
  return slab.subarray(start, start + size);
}

/**
 * Encodes a string as one text frame like {@linkcode encodeTextFrame}, but
 * may share the `ArrayBuffer` with other frames. Short strings are encoded by
 * a JS loop (src/utf8.ts): the native encoder's per-call cost exceeds the
 * whole encoding for them.
 */
export function encodeTextFrameShared(text: string): Uint8Array {
  const start = slabText(text);
  return start < 0 ? encodeTextFrame(text) : slab.subarray(start, slabUsed);
}

/**
 * Encodes a text frame at the end of the current slab: returns its start
 * offset in {@linkcode currentSlab} (it ends at {@linkcode slabEnd}), or -1
 * when the frame is too large for the slab. The writer extends its pending
 * range with these two numbers, so an echoed text frame costs no object at
 * all on the send path.
 */
export function slabText(text: string): number {
  const units = text.length;
  if (units <= SHORT_UTF8) {
    // One pass for ASCII: while every unit is below 0x80 the byte length is
    // the string length, so the header is known before encoding.
    if (units < 126) {
      if (slabUsed + 2 + units > SLAB_SIZE) slabReserve(2 + units);
      const target = slab;
      const start = slabUsed;
      let p = start + 2;
      let i = 0;
      for (; i < units; i++) {
        const c = text.charCodeAt(i);
        if (c >= 0x80) break;
        target[p++] = c;
      }
      if (i === units) {
        target[start] = 0x80 | Opcode.Text;
        target[start + 1] = units;
        slabUsed = p;
        return start;
      }
      // Not ASCII: the bytes written are abandoned, encode properly below.
    }
    const length = utf8Length(text);
    const size = frameHeaderSize(length) + length;
    slabReserve(size);
    const start = slabUsed;
    encodeUtf8Into(text, slab, writeFrameHeader(slab, start, true, Opcode.Text, length));
    slabUsed = start + size;
    return start;
  }
  // Worst case 3 bytes per UTF-16 unit; encode in place, then give back what
  // was not used.
  const max = units * 3;
  const maxHeader = frameHeaderSize(max);
  if (maxHeader + max > SLAB_MAX_FRAME) return -1;
  slabReserve(maxHeader + max);
  const start = slabUsed;
  const { written } = encoder.encodeInto(
    text,
    slab.subarray(start + maxHeader, start + maxHeader + max),
  );
  const header = frameHeaderSize(written);
  // The header goes right before the text; the gap (if any) stays unused.
  const frameStart = start + maxHeader - header;
  writeFrameHeader(slab, frameStart, true, Opcode.Text, written);
  slabUsed = start + maxHeader + written;
  return frameStart;
}

/**
 * Encodes a string as one unmasked text frame. The string is encoded straight
 * into the frame buffer, so no intermediate copy of the UTF-8 bytes is made.
 *
 * @example
 * ```ts
 * import { encodeTextFrame } from "@tsunagu/ws";
 * console.log(encodeTextFrame("hi")); // Uint8Array(4) [ 129, 2, 104, 105 ]
 * ```
 */
export function encodeTextFrame(text: string): Uint8Array {
  // Short strings (the common chat-sized message) are encoded into a
  // worst-case buffer once; long ones are measured first so that a 1 MiB
  // ASCII string does not briefly hold 3 MiB.
  if (text.length <= 1024) {
    const max = text.length * 3;
    const scratch = new Uint8Array(frameHeaderSize(max) + max);
    const headerSize = frameHeaderSize(max);
    const { written } = encoder.encodeInto(text, scratch.subarray(headerSize));
    const realHeader = frameHeaderSize(written);
    const start = headerSize - realHeader;
    writeFrameHeader(scratch, start, true, Opcode.Text, written);
    return scratch.subarray(start, headerSize + written);
  }
  return encodeFrame(Opcode.Text, encoder.encode(text));
}

/**
 * The decoded payload of a close frame.
 *
 * @example
 * ```ts
 * import { type ClosePayload, encodeClosePayload } from "@tsunagu/ws";
 * const payload: ClosePayload = { code: 1000, reason: "bye" };
 * console.log(encodeClosePayload(payload.code, payload.reason).length); // 5
 * ```
 */
export interface ClosePayload {
  /** The status code; 1005 when the frame carried none. */
  code: number;
  /** The UTF-8 reason, possibly empty. */
  reason: string;
}

/**
 * Encodes a close frame payload: empty for code 1005 (no status), otherwise
 * the 2-byte code followed by the UTF-8 reason.
 *
 * @throws {RangeError} when the code may not be sent or the reason exceeds 123 bytes.
 *
 * @example
 * ```ts
 * import { encodeClosePayload } from "@tsunagu/ws";
 * console.log(encodeClosePayload(1000, "bye")); // Uint8Array(5) [ 3, 232, 98, 121, 101 ]
 * console.log(encodeClosePayload(1005).length); // 0
 * ```
 */
export function encodeClosePayload(code: number, reason = ""): Uint8Array {
  if (code === CloseCode.NoStatus) {
    if (reason !== "") throw new RangeError("a close reason needs a close code");
    return new Uint8Array(0);
  }
  if (!isValidCloseCode(code)) throw new RangeError(`invalid close code ${code}`);
  const reasonBytes = encoder.encode(reason);
  if (reasonBytes.length > MAX_CLOSE_REASON_BYTES) {
    throw new RangeError(`close reason is ${reasonBytes.length} bytes; the limit is 123`);
  }
  const payload = new Uint8Array(2 + reasonBytes.length);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(reasonBytes, 2);
  return payload;
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Outcome of decoding a close payload: the payload, or the close code to fail with.
 *
 * @example
 * ```ts
 * import { type ClosePayloadResult, decodeClosePayload } from "@tsunagu/ws";
 * const result: ClosePayloadResult = decodeClosePayload(new Uint8Array([3]));
 * if ("error" in result) console.log(result.error, result.message); // 1002 close payload of 1 byte
 * else console.log(result.code, result.reason);
 * ```
 */
export type ClosePayloadResult = ClosePayload | { error: number; message: string };

/**
 * Decodes and validates a received close frame payload (RFC 6455 §5.5.1):
 * 1 byte or an invalid code is a protocol error (1002), a reason that is not
 * UTF-8 is invalid data (1007).
 *
 * @example
 * ```ts
 * import { decodeClosePayload, encodeClosePayload } from "@tsunagu/ws";
 * const ok = decodeClosePayload(encodeClosePayload(1000, "bye"));
 * console.log(ok); // { code: 1000, reason: "bye" }
 * const bad = decodeClosePayload(new Uint8Array([3, 231]));
 * console.log(bad); // { error: 1002, message: "invalid close code 999" }
 * ```
 */
export function decodeClosePayload(payload: Uint8Array): ClosePayloadResult {
  if (payload.length === 0) return { code: CloseCode.NoStatus, reason: "" };
  if (payload.length === 1) {
    return { error: CloseCode.ProtocolError, message: "close payload of 1 byte" };
  }
  const code = (payload[0] << 8) | payload[1];
  if (!isValidCloseCode(code)) {
    return { error: CloseCode.ProtocolError, message: `invalid close code ${code}` };
  }
  try {
    return { code, reason: strictDecoder.decode(payload.subarray(2)) };
  } catch {
    return { error: CloseCode.InvalidPayload, message: "close reason is not valid UTF-8" };
  }
}
