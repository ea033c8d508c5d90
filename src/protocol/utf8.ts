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

// String.fromCharCode.apply on a plain array of small integers is the
// cheapest way V8 offers to build a short *flat* string. The ASCII path keeps
// one array per length, created packed (never holey) so apply() copies it out
// on its fast path: 91 ns instead of 150 ns for 32 bytes with one reused
// array whose length changes. Concatenating 8-character pieces is faster to
// build but yields a rope whose flattening on first use costs more than it
// saved (bench/RESULTS.md, change 6). The non-ASCII path uses `units`.
const asciiArrays: number[][] = [];
for (let n = 0; n <= SHORT_UTF8; n++) asciiArrays.push(new Array<number>(n).fill(0));
const units: number[] = [];
const fromCharCode = String.fromCharCode;

/**
 * Decodes `bytes[start, end)` as strict UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF; a BOM is kept). Returns `null` when the
 * bytes are not valid UTF-8. Meant for inputs of at most {@linkcode SHORT_UTF8}
 * bytes (longer ones work, more slowly: the native decoder is the better
 * choice for them).
 */
export function decodeUtf8Short(bytes: Uint8Array, start: number, end: number): string | null {
  const ascii = asciiArrays[end - start];
  if (ascii === undefined) return decodeUtf8General(bytes, start, end); // longer than SHORT_UTF8
  const length = ascii.length;
  for (let i = 0; i < length; i++) {
    const c = bytes[start + i];
    if (c >= 0x80) return decodeUtf8General(bytes, start, end);
    ascii[i] = c;
  }
  return fromCharCode.apply(null, ascii);
}

/**
 * The full decoder behind {@linkcode decodeUtf8Short}, for input that is not
 * all ASCII.
 */
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
