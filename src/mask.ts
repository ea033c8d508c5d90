/**
 * XOR masking of payload bytes (RFC 6455 §5.3). Hot path: every byte a client
 * sends passes through {@linkcode unmask}.
 *
 * @module
 */

/**
 * Applies (or removes: XOR is its own inverse) the 4-byte masking key to
 * `data` in place. `phase` is the position within the key of `data[0]`, so a
 * payload that arrives in several reads can be unmasked piece by piece.
 *
 * Fast because the aligned middle of the buffer is processed as 32-bit words
 * (one XOR per 4 bytes) and only the unaligned edges go byte by byte.
 */
export function unmask(data: Uint8Array, key: Uint8Array, phase = 0): void {
  const length = data.length;
  let i = 0;
  if (length >= 32) {
    // Walk byte by byte up to a 4-byte aligned address so that a Uint32Array
    // view over the same memory can be made.
    const misalign = (4 - (data.byteOffset & 3)) & 3;
    for (; i < misalign; i++) data[i] ^= key[(phase + i) & 3];
    const p = phase + i;
    // The word view reads bytes in little-endian order (all platforms Deno
    // runs on), so the key rotated by `p` is packed the same way.
    const word = key[p & 3] | (key[(p + 1) & 3] << 8) | (key[(p + 2) & 3] << 16) |
      (key[(p + 3) & 3] << 24);
    const words = (length - i) >>> 2;
    const view = new Uint32Array(data.buffer, data.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w] ^= word;
    i += words << 2;
  }
  for (; i < length; i++) data[i] ^= key[(phase + i) & 3];
}
