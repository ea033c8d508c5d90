/**
 * Joining byte arrays.
 *
 * @module
 */

/**
 * `pieces` joined into one array of `total` bytes (their summed length). A
 * single piece is returned as it is, without a copy.
 */
export function concatBytes(pieces: readonly Uint8Array[], total: number): Uint8Array<ArrayBuffer> {
  if (pieces.length === 1) return pieces[0] as Uint8Array<ArrayBuffer>;
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const piece of pieces) {
    bytes.set(piece, offset);
    offset += piece.length;
  }
  return bytes;
}
