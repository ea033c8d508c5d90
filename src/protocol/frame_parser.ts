/**
 * Incremental frame parser (RFC 6455 §5.2): bytes in, frame events out.
 *
 * Pure and streaming: it never assumes one read holds one frame, and it
 * never buffers payload bytes (only the at most 14 header bytes), so a frame
 * of any declared size costs nothing until its bytes arrive. The header rules
 * that can be checked from the header alone are checked here; message-level
 * rules (fragment order, UTF-8, size limits) belong to the message assembler.
 *
 * @module
 */

import { CloseCode, MAX_CONTROL_PAYLOAD } from "./frame.ts";
import { unmaskWord } from "./mask.ts";

/**
 * Receives what {@linkcode FrameParser} finds. Return `false` to stop parsing.
 *
 * @example
 * ```ts
 * import { type FrameHandler, FrameParser } from "@tsunagu/ws";
 * const handler: FrameHandler = {
 *   onFrameStart: (fin, _rsv, opcode, length) => (console.log(fin, opcode, length), true),
 *   onFramePayload: (chunk) => (console.log(new TextDecoder().decode(chunk)), true),
 *   onFrameEnd: () => true,
 *   onFrameError: (code, message) => console.log(code, message),
 * };
 * // A masked text frame "MDN": logs true 1 3, then MDN.
 * new FrameParser(handler).push(new Uint8Array([129, 131, 61, 84, 35, 6, 112, 16, 109]));
 * ```
 */
export interface FrameHandler {
  /** A frame header is complete. `rsv` holds the raw RSV bits (0x40 = RSV1). */
  onFrameStart(fin: boolean, rsv: number, opcode: number, length: number): boolean;
  /**
   * Unmasked payload bytes of the current frame: the whole payload or a piece
   * of it. The view points into the caller's buffer and is valid only during
   * the call.
   */
  onFramePayload(chunk: Uint8Array): boolean;
  /** The current frame's payload is complete. */
  onFrameEnd(): boolean;
  /**
   * Optional: a buffer the reader may fill with up to `remaining` bytes of
   * the current frame's payload directly, or null. See
   * {@linkcode FrameParser.payloadTarget}.
   */
  payloadBuffer?(remaining: number): Uint8Array | null;
  /** The byte stream broke a framing rule: fail the connection with `code`. */
  onFrameError(code: number, message: string): void;
}

/**
 * Options for {@linkcode FrameParser}.
 *
 * @example
 * ```ts
 * import { FrameParser, type FrameParserOptions } from "@tsunagu/ws";
 * const options: FrameParserOptions = { expectMasked: false }; // client side: unmasked frames
 * const parser = new FrameParser({
 *   onFrameStart: () => true,
 *   onFramePayload: (chunk) => (console.log(new TextDecoder().decode(chunk)), true),
 *   onFrameEnd: () => true,
 *   onFrameError: (code, message) => console.log(code, message),
 * }, options);
 * parser.push(new Uint8Array([129, 2, 104, 105])); // hi
 * ```
 */
export interface FrameParserOptions {
  /** Whether frames must be masked (server side: true) or must not be (client side: false). */
  expectMasked?: boolean;
  /** RSV bits a negotiated extension defines (e.g. 0x40 for permessage-deflate). */
  allowedRsv?: number;
}

// Parser states; plain numbers keep the hot loop's comparisons monomorphic.
const HEADER = 0;
const PAYLOAD = 1;
const FAILED = 2;

// 2^53: a 64-bit length at or above this is not addressable in JS at all.
const MAX_SAFE_LENGTH_HIGH = 0x20_0000;

/**
 * Streaming frame decoder. Feed it bytes with {@linkcode FrameParser.push};
 * it calls the handler for every header, payload piece and frame end.
 * Payload bytes are unmasked in place in the buffer given to `push`.
 *
 * @example
 * ```ts
 * import { FrameParser } from "@tsunagu/ws";
 * const parser = new FrameParser({
 *   onFrameStart: (fin, rsv, opcode, length) => (console.log(opcode, length), true),
 *   onFramePayload: (chunk) => (console.log(new TextDecoder().decode(chunk)), true),
 *   onFrameEnd: () => true,
 *   onFrameError: (code, message) => console.log(code, message),
 * });
 * parser.push(new Uint8Array([129, 131, 61, 84, 35, 6, 112, 16, 109])); // 1 3, then "MDN"
 * ```
 */
export class FrameParser {
  #handler: FrameHandler;
  #expectMasked: boolean;
  #allowedRsv: number;
  #state = HEADER;
  // Header bytes that arrived split across pushes are gathered here. Made on
  // first need: every small array is a backing store (~350 bytes in Deno),
  // which idle connections should not pay for.
  #header: Uint8Array | null = null;
  #headerLength = 0;
  // The masking key packed little-endian in one number (see unmaskWord).
  #mask = 0;
  #masked = false;
  #remaining = 0;
  #maskPhase = 0;
  // End of the input of the push in progress.
  #end = 0;

  /** Creates a parser that reports to `handler`. */
  constructor(handler: FrameHandler, options: FrameParserOptions = {}) {
    this.#handler = handler;
    this.#expectMasked = options.expectMasked ?? true;
    this.#allowedRsv = options.allowedRsv ?? 0;
  }

  /**
   * Reports to `handler` from the next event on. An owner may give the
   * parser a stand-in until the first frame and then the real handler (a
   * connection makes its message assembler on the first frame: idle memory).
   */
  setHandler(handler: FrameHandler): void {
    this.#handler = handler;
  }

  /** Whether the parser stopped on a framing error; it ignores input from then on. */
  get failed(): boolean {
    return this.#state === FAILED;
  }

  /** Stops parsing: later input is ignored (used once a close frame was received). */
  stop(): void {
    this.#state = FAILED;
  }

  /**
   * Zero-copy receive for long payloads: when a frame's payload is being
   * read and at least `min` bytes of it are still to come, asks the handler
   * where they should end up ({@linkcode FrameHandler.payloadBuffer}) and
   * returns that buffer (at most the rest of the payload), else null. The
   * caller reads socket bytes straight into it and passes them on with
   * `push(target, bytesRead)`; they are unmasked in place and reported with
   * `onFramePayload` as usual. A long message thus skips the copy from a
   * read buffer into its own buffer.
   *
   * @example
   * ```ts
   * import { FrameParser, MessageAssembler } from "@tsunagu/ws";
   * const assembler = new MessageAssembler({
   *   onText: () => {},
   *   onBinary: (data) => console.log("binary", data.length),
   *   onPing: () => {},
   *   onPong: () => {},
   *   onClose: () => {},
   *   onProtocolError: (code, message) => console.log(code, message),
   * }, { maxPayload: 1 << 20 });
   * const parser = new FrameParser(assembler, { expectMasked: false });
   * // Header of an unmasked 100,000-byte binary frame: 0x82, 127, 64-bit length.
   * parser.push(new Uint8Array([0x82, 127, 0, 0, 0, 0, 0, 1, 0x86, 0xa0]));
   * let target;
   * while ((target = parser.payloadTarget(1)) !== null) {
   *   target.fill(7); // stands in for conn.read(target)
   *   parser.push(target, target.length);
   * }
   * // logs: binary 100000
   * ```
   */
  payloadTarget(min: number): Uint8Array | null {
    if (this.#state !== PAYLOAD || this.#remaining < min) return null;
    const handler = this.#handler;
    if (handler.payloadBuffer === undefined) return null;
    const target = handler.payloadBuffer(this.#remaining);
    if (target === null || target.length < min) return null;
    return target.length > this.#remaining ? target.subarray(0, this.#remaining) : target;
  }

  /**
   * Feeds `data[0, end)` (default: all of it); calls the handler synchronously
   * for everything it completes. `end` lets a reader pass its whole read
   * buffer without allocating a view of the filled part on every read.
   */
  push(data: Uint8Array, end: number = data.length): void {
    let offset = 0;
    this.#end = end;
    while (offset < end) {
      if (this.#state === HEADER) {
        offset = this.#readHeader(data, offset);
        if (offset < 0) return;
      } else if (this.#state === PAYLOAD) {
        const take = Math.min(this.#remaining, end - offset);
        const chunk = data.subarray(offset, offset + take);
        if (this.#masked) unmaskWord(chunk, this.#mask, this.#maskPhase);
        this.#maskPhase = (this.#maskPhase + take) & 3;
        this.#remaining -= take;
        offset += take;
        if (!this.#handler.onFramePayload(chunk)) return this.stop();
        if (this.#remaining === 0 && !this.#endFrame()) return;
      } else {
        return;
      }
    }
  }

  /**
   * Reads header bytes starting at `offset`; returns the offset after what it
   * consumed, or -1 when parsing must stop.
   */
  #readHeader(data: Uint8Array, offset: number): number {
    let header: Uint8Array;
    let base: number;
    let available: number;
    // Fast path: nothing gathered yet, so read the header straight from the input.
    if (this.#headerLength === 0) {
      header = data;
      base = offset;
      available = this.#end - offset;
    } else {
      header = this.#header!;
      base = 0;
      const want = Math.min(14 - this.#headerLength, this.#end - offset);
      header.set(data.subarray(offset, offset + want), this.#headerLength);
      available = this.#headerLength + want;
    }
    if (available < 2) return this.#gather(data, offset);
    const b0 = header[base];
    const b1 = header[base + 1];
    // Check what the first two bytes already decide before waiting for more.
    const problem = this.#checkFirstBytes(b0, b1);
    if (problem !== undefined) {
      this.#fail(problem.code, problem.message);
      return -1;
    }
    const len7 = b1 & 0x7f;
    const masked = (b1 & 0x80) !== 0;
    const size = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (available < size) return this.#gather(data, offset);

    let length = len7;
    let p = base + 2;
    if (len7 === 126) {
      length = (header[p] << 8) | header[p + 1];
      p += 2;
    } else if (len7 === 127) {
      const high = ((header[p] << 24) | (header[p + 1] << 16) | (header[p + 2] << 8) |
        header[p + 3]) >>> 0;
      const low = ((header[p + 4] << 24) | (header[p + 5] << 16) | (header[p + 6] << 8) |
        header[p + 7]) >>> 0;
      p += 8;
      if (high >= 0x8000_0000) {
        this.#fail(CloseCode.ProtocolError, "64-bit payload length with the top bit set");
        return -1;
      }
      if (high >= MAX_SAFE_LENGTH_HIGH) {
        this.#fail(CloseCode.MessageTooBig, "payload length exceeds 2^53");
        return -1;
      }
      length = high * 0x1_0000_0000 + low;
    }
    this.#masked = masked;
    if (masked) {
      this.#mask = header[p] | (header[p + 1] << 8) | (header[p + 2] << 16) |
        (header[p + 3] << 24);
    }
    const consumed = size - this.#headerLength;
    this.#headerLength = 0;
    this.#remaining = length;
    this.#maskPhase = 0;
    this.#state = PAYLOAD;
    if (!this.#handler.onFrameStart((b0 & 0x80) !== 0, b0 & 0x70, b0 & 0x0f, length)) {
      this.stop();
      return -1;
    }
    if (length === 0 && !this.#endFrame()) return -1;
    return offset + consumed;
  }

  /** Keeps a partial header for the next push; consumes all remaining input. */
  #gather(data: Uint8Array, offset: number): number {
    const end = this.#end;
    if (this.#headerLength === 0) {
      (this.#header ??= new Uint8Array(14)).set(data.subarray(offset, end), 0);
      this.#headerLength = end - offset;
    } else {
      this.#headerLength += end - offset;
    }
    return end;
  }

  #checkFirstBytes(b0: number, b1: number): { code: number; message: string } | undefined {
    const opcode = b0 & 0x0f;
    if ((b0 & 0x70 & ~this.#allowedRsv) !== 0) {
      return { code: CloseCode.ProtocolError, message: "RSV bits set without an extension" };
    }
    if (opcode >= 0x8) {
      if (opcode > 0xa) {
        return { code: CloseCode.ProtocolError, message: `unknown opcode ${opcode}` };
      }
      if ((b0 & 0x80) === 0) {
        return { code: CloseCode.ProtocolError, message: "fragmented control frame" };
      }
      if ((b1 & 0x7f) > MAX_CONTROL_PAYLOAD) {
        return { code: CloseCode.ProtocolError, message: "control frame payload over 125 bytes" };
      }
    } else if (opcode > 0x2) {
      return { code: CloseCode.ProtocolError, message: `unknown opcode ${opcode}` };
    }
    if (((b1 & 0x80) !== 0) !== this.#expectMasked) {
      return {
        code: CloseCode.ProtocolError,
        message: this.#expectMasked ? "unmasked client frame" : "masked server frame",
      };
    }
    return undefined;
  }

  #endFrame(): boolean {
    this.#state = HEADER;
    if (!this.#handler.onFrameEnd()) {
      this.stop();
      return false;
    }
    return true;
  }

  #fail(code: number, message: string): void {
    this.#state = FAILED;
    this.#handler.onFrameError(code, message);
  }
}
