/**
 * One message sent to many sockets (`publish`, `broadcast`): its frame is
 * encoded once and the same bytes are queued for every recipient; for
 * recipients that negotiated permessage-deflate it is compressed at most
 * once per set of compression parameters (normally once in all).
 *
 * @module
 */

import { encodeFrameShared, encodeTextFrameShared, Opcode } from "../protocol/frame.ts";
import { compressedFrame, type DeflateParams } from "../protocol/permessage_deflate.ts";
import { type SendData, toPayload } from "./socket.ts";

/** A payload as one uncompressed frame: text for strings, binary for bytes. */
function encodePlain(payload: string | Uint8Array): Uint8Array {
  return typeof payload === "string"
    // Shared-slab encoders: no allocation per small frame, and consecutive
    // frames are adjacent so the writer corks them without copying.
    ? encodeTextFrameShared(payload)
    : encodeFrameShared(Opcode.Binary, payload);
}

/** A message encoded on demand, once per kind of recipient. */
export class SharedMessage {
  #payload: string | Uint8Array;
  #plain: Uint8Array | null = null;
  // Compressed frames by window bits and level: clients may ask for a smaller
  // window (server_max_window_bits), so one server can need more than one.
  #compressed: Map<number, Uint8Array | null> | null = null;

  constructor(data: SendData) {
    this.#payload = toPayload(data);
  }

  /** The payload as given: a string (text) or bytes (binary). */
  get payload(): string | Uint8Array {
    return this.#payload;
  }

  /** The frame for a recipient with these compression parameters (null: none). */
  frameFor(deflate: DeflateParams | null): Uint8Array {
    const payload = this.#payload;
    if (deflate === null || payload.length * 3 < deflate.threshold) {
      return this.#plain ??= encodePlain(payload);
    }
    // A number, not a string: no allocation per subscriber.
    const key = deflate.windowBits * 16 + deflate.level;
    const compressed = this.#compressed ??= new Map();
    let frame = compressed.get(key);
    if (frame === undefined) {
      // null (under the threshold, or incompressible) is cached too.
      frame = compressedFrame(payload, deflate);
      compressed.set(key, frame);
    }
    return frame ?? (this.#plain ??= encodePlain(payload));
  }
}
