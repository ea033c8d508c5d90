/**
 * The URL of a request, as `new URL(...).href` would give it, without the
 * runtime's URL parser for the usual request.
 *
 * A request's URL is built from validated parts (see `requestAddress` in
 * handshake.ts): the scheme, an authority, and a path starting with `/`.
 * The URL parser normalizes such a URL (the host's IPv4 form, a default
 * port dropped, dot segments resolved, some characters percent-encoded),
 * and at ~0.5 µs it was a tenth of our own work per keep-alive request
 * (profiled). The normalized origin depends only on the scheme and
 * authority, which nearly every request of a server repeats: it is kept
 * for the last pair. A path made only of characters the parser leaves as
 * they are, with no dot segment, is its own normalized form: it is
 * appended as is. Anything else (a `%2e`, a `..`, a space or `"` in the
 * query, a `\`) goes through the parser.
 *
 * @module
 */

// Path characters the URL parser keeps as they are in an http(s) URL
// (WHATWG URL: not in the path percent-encode set, and not "\", which
// special URLs read as "/"), minus "%": checked apart.
const PATH_KEPT = 1;
// Query characters kept as they are (not in the special-query
// percent-encode set: no space, ", #, <, >, ').
const QUERY_KEPT = 2;
const KEPT = new Uint8Array(128);
for (let c = 0x21; c < 0x7f; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9!$&'()*+,\-./:;=@_~]/.test(ch)) KEPT[c] |= PATH_KEPT;
  if (!"\"#<>'".includes(ch)) KEPT[c] |= QUERY_KEPT;
}

let lastScheme = "";
let lastAuthority = "";
let lastOrigin = "";

/**
 * `scheme://authority` as the URL parser serializes it; throws (a
 * TypeError, as `new URL` does) when the parser refuses it.
 */
function origin(scheme: string, authority: string): string {
  if (scheme === lastScheme && authority === lastAuthority) return lastOrigin;
  // "http://host:80/" gives "http://host/": the href without its "/".
  const href = new URL(`${scheme}://${authority}/`).href;
  lastScheme = scheme;
  lastAuthority = authority;
  lastOrigin = href.slice(0, -1);
  return lastOrigin;
}

/**
 * Whether the URL parser leaves `path` (starting with "/") as it is: only
 * kept characters, no percent-encoded dot, no "." or ".." segment.
 */
function isKeptPath(path: string): boolean {
  let i = 0;
  const length = path.length;
  for (; i < length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x3f /* ? */) break;
    if (c >= 0x80) return false;
    if (c === 0x25 /* % */) {
      // "%2e" is a dot: "/%2e%2e/" is a ".." segment to the parser.
      if (path.charCodeAt(i + 1) === 0x32 && (path.charCodeAt(i + 2) | 0x20) === 0x65) {
        return false;
      }
      continue;
    }
    if ((KEPT[c] & PATH_KEPT) === 0) return false;
    if (c === 0x2e /* . */ && path.charCodeAt(i - 1) === 0x2f /* / */) {
      // A segment "." or "..".
      let end = i + 1;
      if (path.charCodeAt(end) === 0x2e) end++;
      const next = end < length ? path.charCodeAt(end) : 0x2f;
      if (next === 0x2f || next === 0x3f) return false;
    }
  }
  for (i++; i < length; i++) {
    const c = path.charCodeAt(i);
    if (c >= 0x80 || (KEPT[c] & QUERY_KEPT) === 0) return false;
  }
  return true;
}

/**
 * The normalized URL (`new URL(url).href`) of a request to `path` (which
 * starts with "/") at `authority` over `scheme` (`"http"` or `"https"`);
 * throws a TypeError when the URL parser refuses it.
 *
 * @example
 * ```ts
 * import { requestHref } from "./request_url.ts";
 * console.log(requestHref("http", "example.com:80", "/a/./b?x=1")); // http://example.com/a/b?x=1
 * ```
 */
export function requestHref(scheme: string, authority: string, path: string): string {
  const base = origin(scheme, authority);
  // The last href is kept too: a client polling one URL, a health check, a
  // page's repeated API call get the same string back, already flat. A new
  // `base + path` is a rope that the handler's own `new URL(request.url)`
  // must first copy into one piece; comparing the path costs less than
  // building, scanning and copying it (bench/RESULTS.md "Stop 24").
  if (path === lastPath && base === lastBase) return lastHref;
  const href = isKeptPath(path) ? base + path : new URL(base + path).href;
  lastBase = base;
  lastPath = path;
  lastHref = href;
  return href;
}

let lastBase = "";
let lastPath = "";
let lastHref = "";
