/**
 * UTF-8 for short strings in plain JavaScript. `TextEncoder.encodeInto` and
 * `TextDecoder.decode` are runtime ops with a fixed cost of roughly 0.4-1 µs
 * per call (measured in bench/utf8_bench.ts and bench/frame_bench.ts), which
 * is more than the whole rest of handling a chat-sized message. Below
 * {@linkcode SHORT_UTF8} bytes a JIT-compiled loop is several times cheaper;
 * above it the native codecs win and are used instead.
 *
 * @module
 */

/** Strings/payloads up to this many bytes (or UTF-16 units) take the JS path. */
export const SHORT_UTF8 = 64;

// Reused by the non-ASCII decode: String.fromCharCode.apply on a plain array
// of small integers is the cheapest way V8 offers to build such a string.
const units: number[] = [];
const fromCharCode = String.fromCharCode;

/**
 * Decodes `bytes[start, end)` as strict UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF; a BOM is kept). Returns `null` when the
 * bytes are not valid UTF-8. Meant for short inputs (see {@linkcode SHORT_UTF8}).
 *
 * ASCII, the common case, goes 8 bytes at a time: one OR to test them and
 * one 8-argument fromCharCode, about half the cost of building an array of
 * code units and applying fromCharCode to it (bench/utf8_bench.ts).
 */
export function decodeUtf8Short(bytes: Uint8Array, start: number, end: number): string | null {
  let out = "";
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const c0 = bytes[i], c1 = bytes[i + 1], c2 = bytes[i + 2], c3 = bytes[i + 3];
    const c4 = bytes[i + 4], c5 = bytes[i + 5], c6 = bytes[i + 6], c7 = bytes[i + 7];
    if ((c0 | c1 | c2 | c3 | c4 | c5 | c6 | c7) >= 0x80) break;
    out += fromCharCode(c0, c1, c2, c3, c4, c5, c6, c7);
  }
  for (; i < end; i++) {
    const c = bytes[i];
    if (c >= 0x80) break;
    out += fromCharCode(c);
  }
  if (i === end) return out;
  const rest = decodeUtf8General(bytes, i, end);
  return rest === null ? null : out + rest;
}

/** The full decoder behind {@linkcode decodeUtf8Short}, from the first non-ASCII byte on. */
function decodeUtf8General(bytes: Uint8Array, start: number, end: number): string | null {
  let n = 0;
  let i = start;
  while (i < end) {
    const b0 = bytes[i];
    if (b0 < 0x80) {
      units[n++] = b0;
      i++;
      continue;
    }
    if (b0 < 0xc2 || b0 > 0xf4) return null; // continuation byte, overlong 2-byte lead, or > U+10FFFF
    if (b0 < 0xe0) {
      if (i + 1 >= end) return null;
      const b1 = bytes[i + 1];
      if ((b1 & 0xc0) !== 0x80) return null;
      units[n++] = ((b0 & 0x1f) << 6) | (b1 & 0x3f);
      i += 2;
      continue;
    }
    if (b0 < 0xf0) {
      if (i + 2 >= end) return null;
      const b1 = bytes[i + 1];
      const b2 = bytes[i + 2];
      if ((b1 & 0xc0) !== 0x80 || (b2 & 0xc0) !== 0x80) return null;
      if (b0 === 0xe0 && b1 < 0xa0) return null; // overlong
      if (b0 === 0xed && b1 >= 0xa0) return null; // UTF-16 surrogate
      units[n++] = ((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f);
      i += 3;
      continue;
    }
    if (i + 3 >= end) return null;
    const b1 = bytes[i + 1];
    const b2 = bytes[i + 2];
    const b3 = bytes[i + 3];
    if ((b1 & 0xc0) !== 0x80 || (b2 & 0xc0) !== 0x80 || (b3 & 0xc0) !== 0x80) return null;
    if (b0 === 0xf0 && b1 < 0x90) return null; // overlong
    if (b0 === 0xf4 && b1 >= 0x90) return null; // above U+10FFFF
    const cp = (((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f)) -
      0x10000;
    units[n++] = 0xd800 | (cp >>> 10);
    units[n++] = 0xdc00 | (cp & 0x3ff);
    i += 4;
  }
  units.length = n;
  return fromCharCode.apply(null, units);
}

/**
 * Bytes of the UTF-8 encoding of `text` as `TextEncoder` produces it (a lone
 * surrogate becomes U+FFFD, 3 bytes).
 */
export function utf8Length(text: string): number {
  const length = text.length;
  let bytes = length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        // A pair: 2 units, 4 bytes.
        bytes += 2;
        i++;
      } else {
        bytes += 2;
      }
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

/**
 * Writes the UTF-8 encoding of `text` at `target[offset]` (room must have been
 * checked with {@linkcode utf8Length}); returns the offset after it. Lone
 * surrogates become U+FFFD, as with `TextEncoder`.
 */
export function encodeUtf8Into(text: string, target: Uint8Array, offset: number): number {
  const length = text.length;
  let p = offset;
  for (let i = 0; i < length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      target[p++] = c;
      continue;
    }
    if (c < 0x800) {
      target[p++] = 0xc0 | (c >>> 6);
      target[p++] = 0x80 | (c & 0x3f);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < length ? text.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        target[p++] = 0xf0 | (cp >>> 18);
        target[p++] = 0x80 | ((cp >>> 12) & 0x3f);
        target[p++] = 0x80 | ((cp >>> 6) & 0x3f);
        target[p++] = 0x80 | (cp & 0x3f);
        i++;
        continue;
      }
      c = 0xfffd;
    }
    target[p++] = 0xe0 | (c >>> 12);
    target[p++] = 0x80 | ((c >>> 6) & 0x3f);
    target[p++] = 0x80 | (c & 0x3f);
  }
  return p;
}
