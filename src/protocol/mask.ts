/**
 * XOR masking of payload bytes (RFC 6455 §5.3). Hot path: every byte a client
 * sends passes through {@linkcode unmask}.
 *
 * @module
 */

// From this many bytes, unmaskWord XORs 64 bits at a time (see there).
const WIDE_MIN = 1024;

/**
 * Applies (or removes: XOR is its own inverse) the 4-byte masking key to
 * `data` in place. `phase` is the position within the key of `data[0]`, so a
 * payload that arrives in several reads can be unmasked piece by piece.
 *
 * @example
 * ```ts
 * import { unmask } from "@tsunagu/ws";
 * const data = new Uint8Array([0x7f, 0x9f, 0x4d, 0x51, 0x58]);
 * unmask(data, new Uint8Array([0x37, 0xfa, 0x21, 0x3d]));
 * console.log(new TextDecoder().decode(data)); // "Hello"
 * ```
 */
export function unmask(data: Uint8Array, key: Uint8Array, phase = 0): void {
  unmaskWord(data, key[0] | (key[1] << 8) | (key[2] << 16) | (key[3] << 24), phase);
}

/**
 * {@linkcode unmask} with the key packed into one 32-bit number, byte 0 in the
 * low bits (`key[0] | key[1] << 8 | key[2] << 16 | key[3] << 24`). The frame
 * parser keeps its key this way: a number costs nothing per connection,
 * where a 4-byte Uint8Array costs a backing store (~350 bytes in Deno).
 *
 * Fast because:
 * - small payloads (chat-sized) are XORed 4 bytes per iteration with the key
 *   bytes in locals: creating a word view would cost more than it saves;
 * - larger ones are XORed as 32-bit words through an Int32Array view over
 *   the same memory (one XOR per 4 bytes), with only the unaligned edges
 *   done byte by byte;
 * - long ones (from WIDE_MIN bytes) as 64-bit words through a
 *   BigUint64Array view: V8 compiles `view[i] ^= key` on BigUint64Array to
 *   a plain 64-bit XOR without making BigInts, twice the bytes per
 *   iteration (0.05 against 0.10 ns per byte from 16 KiB up; below about
 *   1 KiB the BigInt key costs more than it saves).
 *
 * WebAssembly SIMD was measured and not adopted: its XOR is 4x faster, but
 * only inside wasm memory, and copying the result back out into a JS buffer
 * took 6 to 95 µs per 256 KiB depending on where the buffers happen to sit
 * (bench/RESULTS.md, "Unmask and WebAssembly SIMD").
 */
export function unmaskWord(data: Uint8Array, key: number, phase = 0): void {
  const length = data.length;
  // The key rotated so that its low byte applies to data[0].
  const shift = (phase & 3) << 3;
  let word = shift === 0 ? key : (key >>> shift) | (key << (32 - shift));
  let i = 0;
  if (length >= WIDE_MIN) {
    // Byte by byte up to an 8-byte aligned address, for the 64-bit view.
    const misalign = (8 - (data.byteOffset & 7)) & 7;
    for (; i < misalign; i++) {
      data[i] ^= word & 0xff;
      word = (word >>> 8) | (word << 24);
    }
    const words = (length - i) >>> 3;
    const view = new BigUint64Array(data.buffer, data.byteOffset + i, words);
    // Little-endian: the key repeated twice, byte 0 lowest.
    const half = BigInt(word >>> 0);
    const key64 = (half << 32n) | half;
    for (let w = 0; w < words; w++) view[w] ^= key64;
    i += words << 3;
  } else if (length >= 64) {
    // Byte by byte up to a 4-byte aligned address, so a word view can be made.
    const misalign = (4 - (data.byteOffset & 3)) & 3;
    for (; i < misalign; i++) {
      data[i] ^= word & 0xff;
      word = (word >>> 8) | (word << 24);
    }
    // The word view reads bytes in little-endian order (all platforms Deno
    // runs on), which is how the key is packed.
    const words = (length - i) >>> 2;
    const view = new Int32Array(data.buffer, data.byteOffset + i, words);
    // A plain loop: unrolling it by 4 measured slower (bench/RESULTS.md).
    for (let w = 0; w < words; w++) view[w] ^= word;
    i += words << 2;
  } else {
    const k0 = word & 0xff, k1 = (word >>> 8) & 0xff;
    const k2 = (word >>> 16) & 0xff, k3 = word >>> 24;
    for (; i + 4 <= length; i += 4) {
      data[i] ^= k0;
      data[i + 1] ^= k1;
      data[i + 2] ^= k2;
      data[i + 3] ^= k3;
    }
  }
  // The last 0-3 bytes; `word` is aligned with data[i] here (i - start is a
  // multiple of 4 past the rotation above).
  for (; i < length; i++) {
    data[i] ^= word & 0xff;
    word = (word >>> 8) | (word << 24);
  }
}
