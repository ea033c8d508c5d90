/**
 * The `Date` field of the responses this server originates.
 *
 * RFC 9110 §6.6.1: an origin server with a clock must send `Date` in every
 * 2xx, 3xx and 4xx response (caches and clients use it to age what they
 * keep), as `Deno.serve` does. The text changes once a second, so it is
 * made once a second: a response pays one `Date.now()` and a comparison,
 * not a `Date` object and its formatting.
 *
 * @module
 */

let cachedSecond = -1;
let cachedText = "";

/**
 * The current time as an IMF-fixdate (`Wed, 02 Dec 2026 16:50:00 GMT`,
 * RFC 9110 §5.6.7), at one-second resolution.
 */
export function httpDate(now: number = Date.now()): string {
  const second = Math.floor(now / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    // toUTCString is specified (ECMA-262 §21.4.4.43) as exactly this
    // format for the years a clock can show.
    cachedText = new Date(second * 1000).toUTCString();
  }
  return cachedText;
}
