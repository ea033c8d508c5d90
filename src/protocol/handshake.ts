/**
 * The opening handshake (RFC 6455 §4.2): parsing the HTTP/1.1 request head,
 * validating an upgrade request and encoding the responses. Pure: no I/O.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** The GUID every accept key is derived with (RFC 6455 §1.3). */
const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/**
 * A parsed HTTP/1.1 request head. Header names are lower-cased; values are trimmed.
 *
 * @example
 * ```ts
 * import { type RequestHead, validateUpgrade } from "@tsunagu/ws";
 * const head: RequestHead = {
 *   method: "GET",
 *   target: "/chat",
 *   version: [1, 1],
 *   headers: [
 *     ["host", "example.com"],
 *     ["upgrade", "websocket"],
 *     ["connection", "Upgrade"],
 *     ["sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="],
 *     ["sec-websocket-version", "13"],
 *     ["sec-websocket-protocol", "chat"],
 *   ],
 * };
 * const result = validateUpgrade(head);
 * console.log("status" in result ? result.status : result.protocols); // [ "chat" ]
 * ```
 */
export interface RequestHead {
  /** The request method, e.g. `GET`. */
  method: string;
  /** The request target as sent, e.g. `/chat?room=1`. */
  target: string;
  /** The HTTP version as `[major, minor]`. */
  version: [number, number];
  /** Header fields in arrival order as `[lower-cased name, value]`. */
  headers: [string, string][];
}

/**
 * Why a request was refused: the HTTP status to answer and a short message.
 *
 * @example
 * ```ts
 * import { encodeRejection, type HandshakeRejection } from "@tsunagu/ws";
 * const rejection: HandshakeRejection = {
 *   status: 426,
 *   message: "this server speaks version 13",
 *   headers: [["sec-websocket-version", "13"]],
 * };
 * const text = new TextDecoder().decode(encodeRejection(rejection));
 * console.log(text.split("\r\n")[0]); // HTTP/1.1 426 Upgrade Required
 * ```
 */
export interface HandshakeRejection {
  /** HTTP status code. */
  status: number;
  /** A one-line explanation, sent as the response body. */
  message: string;
  /** Extra response headers, e.g. `Sec-WebSocket-Version` for 426. */
  headers?: [string, string][];
}

/**
 * A valid WebSocket upgrade request.
 *
 * @example
 * ```ts
 * import { acceptKey, type HandshakeRejection, type UpgradeRequest } from "@tsunagu/ws";
 * function answer(result: UpgradeRequest | HandshakeRejection): string {
 *   return "status" in result ? `refused: ${result.status}` : acceptKey(result.key);
 * }
 * const upgrade: UpgradeRequest = {
 *   key: "dGhlIHNhbXBsZSBub25jZQ==",
 *   protocols: [],
 *   extensions: [],
 * };
 * console.log(answer(upgrade)); // s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
 * ```
 */
export interface UpgradeRequest {
  /** The `Sec-WebSocket-Key` value. */
  key: string;
  /** Subprotocols the client offered, in its order of preference. */
  protocols: string[];
  /** Extension offers as sent (`Sec-WebSocket-Extensions`), one entry per offer. */
  extensions: string[];
}

const CRLFCRLF_LENGTH = 4;

/**
 * Finds the end of the request head: the index just after the first
 * CRLF CRLF in `bytes[from..to)`, or -1. `from` lets a caller resume the
 * search after a partial read without rescanning (pass the previous end - 3).
 *
 * @example
 * ```ts
 * import { findHeadEnd } from "@tsunagu/ws";
 * const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\nbody");
 * console.log(findHeadEnd(bytes, 0, bytes.length)); // 27
 * console.log(findHeadEnd(bytes, 0, 20)); // -1
 * ```
 */
export function findHeadEnd(bytes: Uint8Array, from: number, to: number): number {
  for (let i = Math.max(from, 0); i + CRLFCRLF_LENGTH <= to; i++) {
    if (bytes[i + 3] !== 0x0a) {
      // The last byte of the terminator is LF; skip ahead while it cannot be.
      continue;
    }
    if (bytes[i] === 0x0d && bytes[i + 1] === 0x0a && bytes[i + 2] === 0x0d) {
      return i + CRLFCRLF_LENGTH;
    }
  }
  return -1;
}

/**
 * Where a request head in `bytes` ends, looking at the bytes from `from`
 * (new since the last call; 0 the first time) to `to`: the index just
 * after its CRLF CRLF, -1 when it has not ended yet, or `-2 - i` for a
 * bare LF (one not preceded by CR) at `i` before that end. Request heads
 * must end their lines with CRLF (RFC 9112 §2.2): a bare LF is refused,
 * not tolerated, because servers and proxies that disagree on where a line
 * ends disagree on where a request ends (request smuggling), and a head
 * made of bare LFs would otherwise wait for a CRLF CRLF that never comes.
 * Up to three bytes before `from` are looked at.
 *
 * One pass for both, not one for each; a plain loop over the bytes, which
 * measured faster than the runtime's indexOf from LF to LF (27 against 176
 * ns for a 45-byte head, 410 against 557 for a browser's 390 bytes: no
 * subarray, no call per line).
 */
export function findStrictHeadEnd(bytes: Uint8Array, from: number, to: number): number {
  for (let at = Math.max(from, 0); at < to; at++) {
    if (bytes[at] !== 0x0a) continue;
    if (at === 0 || bytes[at - 1] !== 0x0d) return -2 - at;
    if (at >= 3 && bytes[at - 2] === 0x0a && bytes[at - 3] === 0x0d) return at + 1;
  }
  return -1;
}

// Head parsing is linear in the head's length whatever a peer sends: one
// pass over each line, every character looked at a bounded number of times
// (a character table, no backtracking patterns: trimming values with
// /^[ \t]+|[ \t]+$/g once cost ~280 ms for "a", 16,000 spaces and "b").

// Character classes of a latin-1 head (one char per byte), as bits.
/** RFC 9110 token characters: header names and methods must consist of these. */
const TCHAR = 1;
/** Field values: visible ASCII, obs-text, spaces and tabs; no control characters. */
const VCHAR = 2;
/**
 * The request target is visible ASCII only (RFC 9112 §3.2, RFC 3986): no
 * NUL or other control byte, no DEL, no byte above 0x7F.
 */
const TARGET_CHAR = 4;
const CHAR_CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const token = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c));
  CHAR_CLASS[c] = (token ? TCHAR : 0) |
    (c === 0x09 || (c >= 0x20 && c !== 0x7f) ? VCHAR : 0) |
    (c >= 0x21 && c <= 0x7e ? TARGET_CHAR : 0);
}

// Header fields allowed in one head (Apache's LimitRequestFields default).
// Browsers send 10-20. Each field costs the parser, and later the Headers
// object of a Request, far more than a byte of a long value does: 16 KiB of
// tiny fields ("a:b", ~3,000 of them) cost 13x a normal 16 KiB head to parse
// and 6x to turn into a Request; beyond 100 they get 431.
const MAX_HEADER_FIELDS = 100;

/** Optional whitespace (RFC 9110 §5.6.3): SP and HTAB only. */
function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

const latin1 = new TextDecoder("latin1");
const ascii = new TextDecoder();

/**
 * Parses a request head (the bytes up to and including CRLF CRLF), in time
 * linear in its length whatever it holds. Returns a
 * {@linkcode HandshakeRejection} with status 400 when it is not well-formed
 * HTTP/1.x (a request target must be visible ASCII: no control bytes), and
 * 431 when it has more than 100 header fields.
 *
 * @example
 * ```ts
 * import { parseRequestHead } from "@tsunagu/ws";
 * const head = parseRequestHead(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
 * console.log(head); // { method: "GET", target: "/", version: [1, 1], headers: [["host", "a"]] }
 * ```
 */
export function parseRequestHead(bytes: Uint8Array): RequestHead | HandshakeRejection {
  return parseRequestText(decodeRequestHead(bytes));
}

/**
 * A request head's bytes as a string of one char per byte (latin-1): no
 * input can make decoding fail, and byte positions equal string positions.
 */
export function decodeRequestHead(bytes: Uint8Array): string {
  // An all-ASCII head (nearly every one) decodes to the same string as
  // UTF-8, whose decoder the runtime makes ~3x faster than its latin-1
  // one (windows-1252, which maps 0x80-0x9F to other code points: a head
  // with any byte above 0x7F keeps it, one char per byte all the same).
  // Whether it is all ASCII is read from the UTF-8 result, not from a loop
  // over the bytes first (~0.5 ns a byte: 200 ns for a browser's 420-byte
  // head, more than the decoding): a UTF-8 decoder never makes more than
  // one UTF-16 unit per byte (a multi-byte sequence makes fewer, a leading
  // BOM is dropped, an invalid byte becomes one U+FFFD), so the same length
  // and no U+FFFD mean every byte was ASCII (decoding a 420-byte head:
  // 430 -> 220 ns, measured; 46 bytes: 240 -> 200 ns).
  const text = ascii.decode(bytes);
  return text.length === bytes.length && text.indexOf("\ufffd") < 0 ? text : latin1.decode(bytes);
}

/**
 * {@linkcode parseRequestHead} for a head already decoded by
 * {@linkcode decodeRequestHead}. The same text always parses to the same
 * result, so a caller may keep the text alone and parse it again later.
 */
export function parseRequestText(text: string): RequestHead | HandshakeRejection {
  const fields = scanRequestHead(text);
  return isRejection(fields) ? fields : headOf(fields);
}

/**
 * Where the parts of a request head lie in its text, as
 * {@linkcode scanRequestHead} found them: positions, not strings, so that
 * a head can be validated and an upgrade checked without a string or an
 * array per field ({@linkcode upgradeOf}), and turned into a
 * {@linkcode RequestHead} only when one is needed ({@linkcode headOf}).
 * There is one, reused by every scan: it is valid until the next scan, so
 * it must be used at once (synchronously) and not kept.
 */
export class HeadFields {
  /** The head's text (see {@linkcode decodeRequestHead}). */
  text = "";
  /** The method is `text[0, methodEnd)`. */
  methodEnd = 0;
  /** The request target is `text[targetStart, targetEnd)`. */
  targetStart = 0;
  targetEnd = 0;
  /** The HTTP version's digits. */
  major = 0;
  minor = 0;
  /** How many header fields there are. */
  count = 0;
  /**
   * Per field `i`, at `4 * i`: where its name starts, its colon (where the
   * name ends), and where its value (trimmed of SP and HTAB) starts and ends.
   */
  readonly at = new Int32Array(4 * MAX_HEADER_FIELDS);
}

const FIELDS = new HeadFields();

const MALFORMED_REQUEST_LINE: HandshakeRejection = {
  status: 400,
  message: "malformed request line",
};

/**
 * Validates a request head's text (see {@linkcode decodeRequestHead}) and
 * finds where its parts lie: the checks and rejections of
 * {@linkcode parseRequestText}, with no string made. The result is shared
 * and valid until the next call (see {@linkcode HeadFields}).
 */
export function scanRequestHead(text: string): HeadFields | HandshakeRejection {
  // Character by character with charCodeAt, not indexOf/startsWith: each
  // string search is a call with its own setup, several per line, and a
  // head is mostly short lines (241 -> 100 ns for a 45-byte GET, measured).
  const length = text.length;
  // The head ends with CRLF CRLF: the empty line that closes it starts here.
  const last = length - 2;
  if (
    length < 4 || text.charCodeAt(last - 2) !== 0x0d || text.charCodeAt(last - 1) !== 0x0a ||
    text.charCodeAt(last) !== 0x0d || text.charCodeAt(last + 1) !== 0x0a
  ) {
    return { status: 400, message: "incomplete request head" };
  }
  // The request line: token SP target SP "HTTP/" DIGIT "." DIGIT CRLF. A
  // token and a target hold no space (nor CR), so each part ends at the
  // first character that cannot belong to it.
  let at = 0;
  while ((CHAR_CLASS[text.charCodeAt(at)] & TCHAR) !== 0) at++;
  if (at === 0 || text.charCodeAt(at) !== 0x20) return MALFORMED_REQUEST_LINE;
  const methodEnd = at;
  const targetStart = ++at;
  while ((CHAR_CLASS[text.charCodeAt(at)] & TARGET_CHAR) !== 0) at++;
  const targetEnd = at;
  const major = text.charCodeAt(at + 6) - 0x30;
  const minor = text.charCodeAt(at + 8) - 0x30;
  if (
    targetEnd === targetStart || text.charCodeAt(at) !== 0x20 ||
    text.charCodeAt(at + 1) !== 0x48 /* H */ || text.charCodeAt(at + 2) !== 0x54 /* T */ ||
    text.charCodeAt(at + 3) !== 0x54 /* T */ || text.charCodeAt(at + 4) !== 0x50 /* P */ ||
    text.charCodeAt(at + 5) !== 0x2f /* / */ || !(major >= 0 && major <= 9) ||
    text.charCodeAt(at + 7) !== 0x2e || !(minor >= 0 && minor <= 9) ||
    text.charCodeAt(at + 9) !== 0x0d || text.charCodeAt(at + 10) !== 0x0a
  ) {
    return MALFORMED_REQUEST_LINE;
  }
  const fields = FIELDS;
  const positions = fields.at;
  let count = 0;
  // Line by line: a head of more header lines than allowed is refused at
  // the first line too many, before the rest is read.
  for (let lineStart = at + 11; lineStart < last;) {
    if (count === MAX_HEADER_FIELDS) {
      return { status: 431, message: `more than ${MAX_HEADER_FIELDS} header fields` };
    }
    // The name: token characters up to the colon.
    let i = lineStart;
    while ((CHAR_CLASS[text.charCodeAt(i)] & TCHAR) !== 0) i++;
    if (i === lineStart || text.charCodeAt(i) !== 0x3a /* : */) {
      return badHeaderLine(text, lineStart);
    }
    const colon = i;
    // Only SP and HTAB are optional whitespace: String#trim would also drop
    // control characters (and latin1 0xA0) before the value check sees them.
    let start = colon + 1;
    while (isOws(text.charCodeAt(start))) start++;
    // The value: field characters (SP and HTAB among them) up to CRLF.
    i = start;
    while ((CHAR_CLASS[text.charCodeAt(i)] & VCHAR) !== 0) i++;
    if (text.charCodeAt(i) !== 0x0d || text.charCodeAt(i + 1) !== 0x0a) {
      return { status: 400, message: "invalid header value" };
    }
    const lineEnd = i;
    let end = lineEnd;
    while (end > start && isOws(text.charCodeAt(end - 1))) end--;
    const o = 4 * count++;
    positions[o] = lineStart;
    positions[o + 1] = colon;
    positions[o + 2] = start;
    positions[o + 3] = end;
    lineStart = lineEnd + 2;
  }
  fields.text = text;
  fields.methodEnd = methodEnd;
  fields.targetStart = targetStart;
  fields.targetEnd = targetEnd;
  fields.major = major;
  fields.minor = minor;
  fields.count = count;
  return fields;
}

/**
 * Why the header line at `lineStart` is refused, its name not being a
 * token followed by a colon: no colon on the line at all, or one that
 * starts it, is a malformed line; a colon after characters that are not
 * a token's, a malformed name.
 */
function badHeaderLine(text: string, lineStart: number): HandshakeRejection {
  const lineEnd = text.indexOf("\r\n", lineStart);
  const colon = text.indexOf(":", lineStart);
  if (colon <= lineStart || colon > lineEnd) {
    return { status: 400, message: "malformed header line" };
  }
  return { status: 400, message: "malformed header name" };
}

/** The {@linkcode RequestHead} of a scanned head: strings and arrays, made now. */
export function headOf(fields: HeadFields): RequestHead {
  const { text, at, count } = fields;
  // Made at its size: an empty array grown by push allocates room for 17
  // fields at the first (most requests have fewer).
  const headers = new Array<[string, string]>(count);
  for (let i = 0, o = 0; i < count; i++, o += 4) {
    headers[i] = [text.slice(at[o], at[o + 1]).toLowerCase(), text.slice(at[o + 2], at[o + 3])];
  }
  return {
    method: text.slice(0, fields.methodEnd),
    target: text.slice(fields.targetStart, fields.targetEnd),
    version: [fields.major, fields.minor],
    headers,
  };
}

// A reg-name (RFC 3986 §3.2.2): unreserved characters and sub-delims.
// Percent-encoded octets are refused, although RFC 3986 allows them: URL
// parsers decode them, and "%2F" would become a "/" inside the host.
const REG_NAME = /^[A-Za-z0-9\-._~!$&'()*+,;=]+$/;
// Inside the brackets of an IP literal: IPv6 (possibly ending in IPv4).
// IPvFuture and zone identifiers are refused; the URL parser checks the rest.
const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;
const DIGITS = /^\d*$/;

/**
 * Validates a Host value or the authority of an absolute-form target (RFC
 * 9110 §7.2: `uri-host [ ":" port ]`) and returns it normalized: a lower-case
 * reg-name or IPv4 address, or a bracketed IPv6 literal, then `:port` when a
 * port is given. Null when it is not one, for example when it holds a `/`, a
 * `?`, a `@` (userinfo), a `%`, or a port above 65535: such a value must not
 * take part in building the request URL, where it could change the path.
 */
export function parseAuthority(value: string): string | null {
  // A client sends the same Host with every request (and most servers see
  // one or two names): the last answer is kept, as the parse is pure.
  if (value === lastAuthorityInput) return lastAuthority;
  const authority = parseAuthorityOnce(value);
  lastAuthorityInput = value;
  lastAuthority = authority;
  return authority;
}

let lastAuthorityInput: string | undefined;
let lastAuthority: string | null = null;

function parseAuthorityOnce(value: string): string | null {
  let host: string;
  let port: string;
  if (value.charCodeAt(0) === 0x5b /* [ */) {
    const close = value.indexOf("]");
    if (close < 0) return null;
    host = value.slice(0, close + 1).toLowerCase();
    const rest = value.slice(close + 1);
    if (rest !== "" && rest.charCodeAt(0) !== 0x3a /* : */) return null;
    port = rest.slice(1);
    if (!IPV6_CHARS.test(host.slice(1, -1)) || !isIpv6Literal(host)) return null;
  } else {
    // A reg-name holds no ":", so the first one starts the port.
    const colon = value.indexOf(":");
    // Lower-cased whole (the port's digits are unchanged): for the usual,
    // already lower-case Host this is the value itself, returned as is
    // below instead of being cut up and joined again.
    const lower = value.toLowerCase();
    // A character whose lower case is longer is not ASCII: never valid.
    if (lower.length !== value.length) return null;
    host = colon < 0 ? lower : lower.slice(0, colon);
    port = colon < 0 ? "" : lower.slice(colon + 1);
    if (!REG_NAME.test(host)) return null;
    if (!DIGITS.test(port) || port.length > 5 || Number(port) > 65535) return null;
    return port === "" ? host : lower;
  }
  if (!DIGITS.test(port) || port.length > 5 || Number(port) > 65535) return null;
  // An empty port ("host:") means the scheme's default (RFC 3986 §6.2.3).
  return port === "" ? host : `${host}:${port}`;
}

/** Whether `[…]` holds an IPv6 address; rare, so the URL parser judges it. */
function isIpv6Literal(bracketed: string): boolean {
  try {
    new URL(`http://${bracketed}/`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where a request is addressed, from which its URL is built: the scheme
 * (chosen by the connection, never by the client), then `authority`, then
 * `path`.
 */
export interface RequestAddress {
  /**
   * The validated authority ({@linkcode parseAuthority}): an absolute-form
   * target's, else the Host header's. Null for an HTTP/1.0 request without
   * Host; the caller then supplies one (the address the request came in on).
   */
  authority: string | null;
  /** The path and query, starting with `/`. */
  path: string;
}

const ABSOLUTE_FORM = /^https?:\/\//i;

/**
 * Resolves where a parsed request is addressed (RFC 9112 §3.2), or the 400
 * to answer. HTTP/1.1 needs exactly one Host header and HTTP/1.0 at most one,
 * and a Host header, when present, must be valid (RFC 9110 §7.2), even when
 * an absolute-form target's authority is used instead (RFC 9112 §3.2.2).
 * Targets: origin-form (`/path?query`) as is; absolute-form
 * (`http://host/path`, `https://…`) by its authority and path; anything else
 * (asterisk-form `*`, authority-form, other schemes, a fragment) is refused.
 * The URL is built from these parts, never from the raw header, so a Host
 * such as `x/health?` cannot change the path.
 */
export function requestAddress(head: RequestHead): RequestAddress | HandshakeRejection {
  const hosts = headerValues(head, "host");
  const [major, minor] = head.version;
  const http11 = major > 1 || (major === 1 && minor >= 1);
  if (hosts.length > 1 || (http11 && hosts.length === 0)) {
    return { status: 400, message: "missing or repeated Host header" };
  }
  let authority = hosts.length === 0 ? null : parseAuthority(hosts[0]);
  if (hosts.length === 1 && authority === null) {
    return { status: 400, message: "invalid Host header" };
  }
  const target = head.target;
  // A fragment is never part of a request target (RFC 9112 §3.2).
  if (target.includes("#")) return { status: 400, message: "invalid request target" };
  if (target.charCodeAt(0) === 0x2f /* / */) return { authority, path: target };
  const scheme = ABSOLUTE_FORM.exec(target);
  if (scheme === null) {
    return { status: 400, message: "unsupported request target form" };
  }
  const start = scheme[0].length;
  let end = start;
  while (end < target.length && target[end] !== "/" && target[end] !== "?") end++;
  authority = parseAuthority(target.slice(start, end));
  if (authority === null) return { status: 400, message: "invalid request target authority" };
  const rest = target.slice(end);
  return { authority, path: rest.charCodeAt(0) === 0x2f ? rest : `/${rest}` };
}

/** Whether a parse or validation result is a rejection. */
export function isRejection(value: object): value is HandshakeRejection {
  return "status" in value;
}

// What headerValues and headerList return when the head has no such field
// (most lookups: Content-Length, Transfer-Encoding, Expect, ... on a GET):
// shared, and frozen so that no caller can change it for the others.
const NONE: string[] = Object.freeze([]) as unknown as string[];

/** All values of header `name` (lower case), in order. */
export function headerValues(head: RequestHead, name: string): string[] {
  // Called several times per request: no array unless the field is there.
  const headers = head.headers;
  let values: string[] | null = null;
  for (let i = 0; i < headers.length; i++) {
    const field = headers[i];
    if (field[0] !== name) continue;
    // An array of one made whole (the usual case: Host), not an empty one
    // grown by push, which allocates room for 17.
    if (values === null) values = [field[1]];
    else values.push(field[1]);
  }
  return values ?? NONE;
}

/** The comma-separated list elements of header `name`, trimmed, empty ones dropped. */
export function headerList(head: RequestHead, name: string): string[] {
  const headers = head.headers;
  let items: string[] | null = null;
  for (let i = 0; i < headers.length; i++) {
    const field = headers[i];
    if (field[0] === name) items = addListItems(field[1], items);
  }
  return items ?? NONE;
}

/** Adds the elements of a list value to `items` (made when there are any). */
function addListItems(value: string, items: string[] | null): string[] | null {
  if (!value.includes(",")) {
    // One element (the usual value): no split.
    const trimmed = value.trim();
    if (trimmed !== "") (items ??= []).push(trimmed);
    return items;
  }
  for (const item of value.split(",")) {
    const trimmed = item.trim();
    if (trimmed !== "") (items ??= []).push(trimmed);
  }
  return items;
}

/** Whether header `name` lists `token` (lower case), compared case-insensitively. */
function hasToken(head: RequestHead, name: string, token: string): boolean {
  // headerList(...).some(...) without the arrays: each value as upgradeOf
  // reads it in place.
  const headers = head.headers;
  for (let i = 0; i < headers.length; i++) {
    const field = headers[i];
    if (field[0] === name && listHas(field[1], 0, field[1].length, token)) return true;
  }
  return false;
}

/** Whether the request asks for a WebSocket upgrade (its `Upgrade` header lists `websocket`). */
export function isUpgradeRequest(head: RequestHead): boolean {
  return hasToken(head, "upgrade", "websocket");
}

// 16 bytes in base64 are 22 significant characters and "==" padding.
const KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/**
 * An upgrade request that {@linkcode upgradeOf} found valid, with where it
 * is addressed: everything the 101 and the connection need.
 */
export interface ScannedUpgrade extends UpgradeRequest, RequestAddress {
  /** The validated Host ({@linkcode parseAuthority}). */
  authority: string;
  /** The `Sec-WebSocket-Extensions` values as sent, for negotiation. */
  extensionValues: string[];
}

// The fields upgradeOf and usualRequestOf look at (see fieldId).
const OTHER = 0;
const HOST = 1;
const UPGRADE = 2;
const CONNECTION = 3;
const WS_KEY = 4;
const WS_VERSION = 5;
const WS_PROTOCOL = 6;
const WS_EXTENSIONS = 7;
const BODY_FRAMING = 8;
const EXPECT = 9;

// Their names, lower case.
const IN_PLACE_FIELDS: readonly (readonly [string, number])[] = [
  ["host", HOST],
  ["upgrade", UPGRADE],
  ["connection", CONNECTION],
  ["sec-websocket-key", WS_KEY],
  ["sec-websocket-version", WS_VERSION],
  ["sec-websocket-protocol", WS_PROTOCOL],
  ["sec-websocket-extensions", WS_EXTENSIONS],
  ["content-length", BODY_FRAMING],
  ["transfer-encoding", BODY_FRAMING],
  ["expect", EXPECT],
];

/** Which of the fields the in-place checks look at `text[start, end)` names, case-insensitively. */
function fieldId(text: string, start: number, end: number): number {
  const length = end - start;
  // By length first: most names match none, and none of their characters is read.
  for (let i = 0; i < IN_PLACE_FIELDS.length; i++) {
    const [name, id] = IN_PLACE_FIELDS[i];
    if (name.length === length && nameIs(text, start, name)) return id;
  }
  return OTHER;
}

/** Whether `text` at `start` spells `lower` (lower case ASCII), in any case. */
function nameIs(text: string, start: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = text.charCodeAt(start + i);
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** What String#trim drops from a validated field value: HTAB, SP and NBSP (latin-1 0xA0). */
function isTrimmed(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0xa0;
}

/**
 * Whether the list value `text[start, end)` has an element equal to `token`
 * (lower case) once trimmed, in any case, with no strings made: how both
 * the general path ({@linkcode hasToken}) and {@linkcode upgradeOf} read
 * `Upgrade` and `Connection`.
 */
function listHas(text: string, start: number, end: number, token: string): boolean {
  let from = start;
  while (from <= end) {
    let to = text.indexOf(",", from);
    if (to < 0 || to > end) to = end;
    let a = from;
    let b = to;
    while (a < b && isTrimmed(text.charCodeAt(a))) a++;
    while (b > a && isTrimmed(text.charCodeAt(b - 1))) b--;
    if (b - a === token.length && nameIs(text, a, token)) return true;
    from = to + 1;
  }
  return false;
}

/**
 * The common upgrade request checked in place on a scanned head: HTTP/1.1
 * or later 1.x, GET, an origin-form target, exactly one valid Host, an
 * `Upgrade` listing `websocket`, a `Connection` listing `upgrade`, exactly
 * one `Sec-WebSocket-Version: 13`, exactly one valid key and no body
 * framing field. Null for anything else, valid or not: the caller then
 * takes the general path ({@linkcode headOf}, {@linkcode requestAddress},
 * {@linkcode checkUpgrade}), which gives the answer (a plain request, or
 * the rejection). This never accepts what that path refuses; it only
 * skips, for the usual handshake, the parsed head's array and two strings
 * per field, and the checks' arrays and strings (idle memory: what a
 * burst of handshakes allocates, bench/RESULTS.md change 18).
 */
export function upgradeOf(fields: HeadFields): ScannedUpgrade | null {
  const { text, at, count, targetStart, targetEnd } = fields;
  if (
    fields.major !== 1 || fields.minor < 1 || fields.methodEnd !== 3 || !text.startsWith("GET") ||
    text.charCodeAt(targetStart) !== 0x2f /* / */
  ) {
    return null;
  }
  const hash = text.indexOf("#", targetStart);
  if (hash >= 0 && hash < targetEnd) return null;
  let host = -1;
  let key = -1;
  let version = -1;
  let upgrade = false;
  let connection = false;
  let protocols: string[] | null = null;
  let extensions: string[] | null = null;
  let extensionValues: string[] | null = null;
  for (let o = 0; o < 4 * count; o += 4) {
    const start = at[o + 2];
    const end = at[o + 3];
    switch (fieldId(text, at[o], at[o + 1])) {
      case HOST:
        if (host >= 0) return null;
        host = o;
        break;
      case UPGRADE:
        upgrade ||= listHas(text, start, end, "websocket");
        break;
      case CONNECTION:
        connection ||= listHas(text, start, end, "upgrade");
        break;
      case WS_KEY:
        if (key >= 0) return null;
        key = o;
        break;
      case WS_VERSION:
        if (version >= 0) return null;
        version = o;
        break;
      case WS_PROTOCOL:
        protocols = addListItems(text.slice(start, end), protocols);
        break;
      case WS_EXTENSIONS: {
        const value = text.slice(start, end);
        (extensionValues ??= []).push(value);
        extensions = addListItems(value, extensions);
        break;
      }
      case BODY_FRAMING:
        return null;
    }
  }
  if (!upgrade || !connection || host < 0 || key < 0 || version < 0) return null;
  if (at[version + 3] - at[version + 2] !== 2 || !text.startsWith("13", at[version + 2])) {
    return null;
  }
  const keyValue = text.slice(at[key + 2], at[key + 3]);
  if (!KEY.test(keyValue)) return null;
  const authority = parseAuthority(text.slice(at[host + 2], at[host + 3]));
  if (authority === null) return null;
  return {
    key: keyValue,
    // Fresh arrays when there are elements; the shared empty one otherwise
    // (this path runs without an upgrade hook: nothing can change it).
    protocols: protocols ?? NONE,
    extensions: extensions ?? NONE,
    extensionValues: extensionValues ?? NONE,
    authority,
    path: text.slice(targetStart, targetEnd),
  };
}

/**
 * The usual plain request, as {@linkcode usualRequestOf} found it on a
 * scanned head. There is one, reused by every call: valid until the next,
 * so it must be read at once and not kept.
 */
export class UsualRequest {
  /** `"GET"` or `"HEAD"`. */
  method = "GET";
  /** The origin-form request target (path and query), starting with `/`. */
  target = "/";
  /** The Host, validated and normalized ({@linkcode parseAuthority}). */
  authority = "";
  /** The HTTP/1 minor version (0 for HTTP/1.0; 1 and above read as 1.1). */
  minor = 1;
  /** Whether the client lets the connection persist (`requestKeepsAlive`, http1_request.ts). */
  keepsAlive = true;
}

const USUAL = new UsualRequest();

/**
 * The usual plain request checked in place on a scanned head: HTTP/1.x, GET
 * or HEAD, an origin-form target with no fragment, exactly one valid Host,
 * and no `Content-Length`, `Transfer-Encoding`, `Expect` or `Upgrade` field
 * (no body, no expectation, no upgrade). Null for anything else, valid or
 * not: the caller then takes the general path ({@linkcode headOf},
 * `plainRequestKeepsAlive`, {@linkcode requestAddress}), which
 * gives the answer. This never accepts what that path refuses, and agrees
 * with it on what it accepts (tests/protocol/usual_request_test.ts); it
 * only skips, for the request nearly every keep-alive client sends, that
 * path's strings and arrays: a name and a value string per field, an array
 * per field and per lookup, the head and the address objects (~430 of the
 * ~2,950 bytes allocated per small keep-alive request, bench/RESULTS.md
 * "Stop 24"). The result is shared (see {@linkcode UsualRequest}).
 *
 * @example
 * ```ts
 * import {
 *   decodeRequestHead,
 *   isRejection,
 *   scanRequestHead,
 *   usualRequestOf,
 * } from "./handshake.ts";
 * const text = decodeRequestHead(new TextEncoder().encode("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n"));
 * const fields = scanRequestHead(text);
 * if (!isRejection(fields)) console.log(usualRequestOf(fields)?.target); // "/a?b"
 * ```
 */
export function usualRequestOf(fields: HeadFields): UsualRequest | null {
  const { text, at, count, methodEnd, targetStart, targetEnd } = fields;
  // Origin-form: not "*", and not absolute-form (its authority would be
  // the one to use).
  if (fields.major !== 1 || text.charCodeAt(targetStart) !== 0x2f /* / */) return null;
  // Methods are case-sensitive (RFC 9110 §9.1); the strings are constants,
  // not slices.
  let method: string;
  if (methodEnd === 3 && text.startsWith("GET")) method = "GET";
  else if (methodEnd === 4 && text.startsWith("HEAD")) method = "HEAD";
  else return null;
  const hash = text.indexOf("#", targetStart);
  if (hash >= 0 && hash < targetEnd) return null;
  let host = -1;
  let close = false;
  let keepAlive = false;
  for (let o = 0; o < 4 * count; o += 4) {
    switch (fieldId(text, at[o], at[o + 1])) {
      case HOST:
        if (host >= 0) return null;
        host = o;
        break;
      case CONNECTION:
        // Every Connection field's list counts, as requestKeepsAlive reads
        // them (a browser sends "keep-alive" with every request).
        close ||= listHas(text, at[o + 2], at[o + 3], "close");
        keepAlive ||= listHas(text, at[o + 2], at[o + 3], "keep-alive");
        break;
      case UPGRADE:
      case BODY_FRAMING:
      case EXPECT:
        return null;
    }
  }
  if (host < 0) return null;
  const authority = parseAuthority(text.slice(at[host + 2], at[host + 3]));
  if (authority === null) return null;
  const usual = USUAL;
  usual.method = method;
  usual.target = text.slice(targetStart, targetEnd);
  usual.authority = authority;
  usual.minor = fields.minor;
  usual.keepsAlive = !close && (fields.minor >= 1 || keepAlive);
  return usual;
}

/**
 * Validates an upgrade request against RFC 6455 §4.2.1. Returns what the
 * response needs, or the rejection to answer with:
 * 405 for a method other than GET, 400 for HTTP older than 1.1, a missing,
 * repeated or invalid Host (RFC 9110 §7.2), a `Connection` header without `Upgrade`, or a key that is not 16
 * base64-encoded bytes, and 426 (with `Sec-WebSocket-Version: 13`) for any
 * version other than 13.
 *
 * @example
 * ```ts
 * import { parseRequestHead, validateUpgrade } from "@tsunagu/ws";
 * const head = parseRequestHead(new TextEncoder().encode(
 *   "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n" +
 *     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
 *     "Sec-WebSocket-Version: 13\r\n\r\n",
 * ));
 * if (!("status" in head)) console.log(validateUpgrade(head)); // { key: "dGhl…", protocols: [], extensions: [] }
 * ```
 */
export function validateUpgrade(head: RequestHead): UpgradeRequest | HandshakeRejection {
  return checkUpgrade(head, false);
}

/**
 * {@linkcode validateUpgrade}; `hostChecked`: {@linkcode requestAddress}
 * has accepted the head already, so its Host is known to be one valid
 * value whenever the version passes (HTTP/1.1 needs exactly one there),
 * and the same checks are not run twice per handshake.
 */
export function checkUpgrade(
  head: RequestHead,
  hostChecked: boolean,
): UpgradeRequest | HandshakeRejection {
  if (head.method !== "GET") {
    return {
      status: 405,
      message: "a WebSocket upgrade must use GET",
      headers: [["allow", "GET"]],
    };
  }
  const [major, minor] = head.version;
  if (major < 1 || (major === 1 && minor < 1)) {
    return { status: 400, message: "a WebSocket upgrade needs HTTP/1.1 or later" };
  }
  if (!hostChecked) {
    const hosts = headerValues(head, "host");
    if (hosts.length !== 1) {
      return { status: 400, message: "missing or repeated Host header" };
    }
    if (parseAuthority(hosts[0]) === null) return { status: 400, message: "invalid Host header" };
  }
  if (!hasToken(head, "connection", "upgrade")) {
    return { status: 400, message: "the Connection header must contain Upgrade" };
  }
  const versions = headerValues(head, "sec-websocket-version");
  if (versions.length !== 1 || versions[0] !== "13") {
    return {
      status: 426,
      message: "unsupported WebSocket version; this server speaks version 13",
      headers: [["sec-websocket-version", "13"], ["upgrade", "websocket"]],
    };
  }
  const keys = headerValues(head, "sec-websocket-key");
  if (keys.length !== 1 || !KEY.test(keys[0])) {
    return { status: 400, message: "Sec-WebSocket-Key must be 16 bytes in base64" };
  }
  // Fresh arrays: they reach the application (the upgrade hook's protocols).
  const protocols = headerList(head, "sec-websocket-protocol");
  const extensions = headerList(head, "sec-websocket-extensions");
  return {
    key: keys[0],
    protocols: protocols === NONE ? [] : protocols,
    extensions: extensions === NONE ? [] : extensions,
  };
}

/**
 * Computes `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2):
 * base64(SHA-1(key + GUID)). A key of ASCII characters (every valid one)
 * is hashed by the small SHA-1 below, anything else by `node:crypto`.
 *
 * @example
 * ```ts
 * import { acceptKey } from "@tsunagu/ws";
 * console.log(acceptKey("dGhlIHNhbXBsZSBub25jZQ==")); // "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
 * ```
 */
export function acceptKey(key: string): string {
  if (!writeAcceptKey(key, ACCEPT_SCRATCH, 0)) {
    return createHash("sha1").update(key + WEBSOCKET_GUID).digest("base64");
  }
  return latin1.decode(ACCEPT_SCRATCH);
}

const ACCEPT_LENGTH = 28; // 20 bytes in base64
const ACCEPT_SCRATCH = new Uint8Array(ACCEPT_LENGTH);

// SHA-1 (FIPS 180-4) of key + GUID, in plain JavaScript: `node:crypto`'s
// createHash/update/digest is three calls into the runtime and a hash
// object for 60 bytes, ~2 µs per handshake, where two compression rounds
// on reused typed arrays take a fraction of that and no allocation (the
// connect benchmark: bench/RESULTS.md). Input up to 55 + 64 bytes (two
// blocks), ASCII only.
const SHA1_BLOCKS = new Uint8Array(128);
const SHA1_WORDS = new Int32Array(80);
const SHA1_STATE = new Int32Array(5);
const GUID_CODES = Array.from(WEBSOCKET_GUID, (c) => c.charCodeAt(0));
const BASE64 = Array.from(
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
  (c) => c.charCodeAt(0),
);

/**
 * Writes the 28 bytes of `Sec-WebSocket-Accept` for `key` into
 * `out[offset..offset + 28)`. False (nothing written) when the key is not
 * ASCII or too long for the two-block hash; the caller then falls back to
 * `node:crypto`.
 */
function writeAcceptKey(key: string, out: Uint8Array, offset: number): boolean {
  const length = key.length + GUID_CODES.length;
  if (length > 119) return false;
  const m = SHA1_BLOCKS;
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (code > 0x7f) return false;
    m[i] = code;
  }
  for (let i = 0; i < GUID_CODES.length; i++) m[key.length + i] = GUID_CODES[i];
  // Padding: 0x80, zeros, then the length in bits, big-endian, in the last
  // 8 bytes (under 2^10 bits here, so only the last two are non-zero).
  const total = length + 9 <= 64 ? 64 : 128;
  m[length] = 0x80;
  m.fill(0, length + 1, total - 2);
  const bits = length * 8;
  m[total - 2] = bits >>> 8;
  m[total - 1] = bits & 0xff;
  const h = SHA1_STATE;
  h[0] = 0x67452301;
  h[1] = 0xefcdab89;
  h[2] = 0x98badcfe;
  h[3] = 0x10325476;
  h[4] = 0xc3d2e1f0;
  for (let block = 0; block < total; block += 64) sha1Block(m, block);
  // base64 of the 20-byte digest: six 3-byte groups, then 2 bytes and "=".
  let at = offset;
  let group = 0;
  for (let i = 0; i < 20; i++) {
    const byte = (h[i >>> 2] >>> (24 - 8 * (i & 3))) & 0xff;
    group = (group << 8) | byte;
    if (i % 3 === 2) {
      out[at++] = BASE64[group >>> 18];
      out[at++] = BASE64[(group >>> 12) & 63];
      out[at++] = BASE64[(group >>> 6) & 63];
      out[at++] = BASE64[group & 63];
      group = 0;
    }
  }
  group <<= 8; // 2 bytes left: 16 bits padded to 18
  out[at++] = BASE64[group >>> 18];
  out[at++] = BASE64[(group >>> 12) & 63];
  out[at++] = BASE64[(group >>> 6) & 63];
  out[at] = 0x3d; // "="
  return true;
}

/** One SHA-1 compression of `m[start..start + 64)` into SHA1_STATE. */
function sha1Block(m: Uint8Array, start: number): void {
  const w = SHA1_WORDS;
  for (let t = 0; t < 16; t++) {
    const o = start + 4 * t;
    w[t] = (m[o] << 24) | (m[o + 1] << 16) | (m[o + 2] << 8) | m[o + 3];
  }
  for (let t = 16; t < 80; t++) {
    const x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16];
    w[t] = (x << 1) | (x >>> 31);
  }
  const h = SHA1_STATE;
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (let t = 0; t < 80; t++) {
    let f: number;
    if (t < 20) f = ((b & c) | (~b & d)) + 0x5a827999;
    else if (t < 40) f = (b ^ c ^ d) + 0x6ed9eba1;
    else if (t < 60) f = ((b & c) | (b & d) | (c & d)) + 0x8f1bbcdc;
    else f = (b ^ c ^ d) + 0xca62c1d6;
    const next = (((a << 5) | (a >>> 27)) + f + e + w[t]) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = next;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

const encoder = new TextEncoder();

/**
 * Options for the 101 response.
 *
 * @example
 * ```ts
 * import { encodeSwitchingProtocols, type SwitchingProtocolsOptions } from "@tsunagu/ws";
 * const options: SwitchingProtocolsOptions = {
 *   protocol: "chat",
 *   headers: [["Set-Cookie", "session=1"]],
 * };
 * const bytes = encodeSwitchingProtocols("dGhlIHNhbXBsZSBub25jZQ==", options);
 * const head = new TextDecoder().decode(bytes);
 * console.log(head.includes("Sec-WebSocket-Protocol: chat\r\n")); // true
 * ```
 */
export interface SwitchingProtocolsOptions {
  /** The chosen subprotocol, if any. */
  protocol?: string;
  /** The accepted extensions' response parameters, if any. */
  extensions?: string;
  /** Extra headers (e.g. `Set-Cookie`). */
  headers?: Iterable<[string, string]>;
}

const PLAIN_101_START = encoder.encode(
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    "Sec-WebSocket-Accept: ",
);
const CRLFCRLF = encoder.encode("\r\n\r\n");
const PLAIN_101_LENGTH = PLAIN_101_START.length + ACCEPT_LENGTH + CRLFCRLF.length;

const HANDSHAKE_HEADERS = new Set([
  "upgrade",
  "connection",
  "sec-websocket-accept",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
]);

/**
 * Encodes the `101 Switching Protocols` response for a client key. Extra
 * headers may not repeat the handshake's own (TypeError).
 *
 * @example
 * ```ts
 * import { encodeSwitchingProtocols } from "@tsunagu/ws";
 * const bytes = encodeSwitchingProtocols("dGhlIHNhbXBsZSBub25jZQ==", { protocol: "chat" });
 * console.log(new TextDecoder().decode(bytes).split("\r\n")[0]); // HTTP/1.1 101 Switching Protocols
 * ```
 */
export function encodeSwitchingProtocols(
  key: string,
  options: SwitchingProtocolsOptions = {},
): Uint8Array {
  if (!options.protocol && !options.extensions && !options.headers) {
    // The usual 101: a constant head around the accept key, written as
    // bytes; no string to build and encode per handshake.
    const bytes = new Uint8Array(PLAIN_101_LENGTH);
    bytes.set(PLAIN_101_START);
    if (writeAcceptKey(key, bytes, PLAIN_101_START.length)) {
      bytes.set(CRLFCRLF, PLAIN_101_START.length + ACCEPT_LENGTH);
      return bytes;
    }
  }
  let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n`;
  if (options.protocol) head += formatHeader("Sec-WebSocket-Protocol", options.protocol);
  if (options.extensions) head += formatHeader("Sec-WebSocket-Extensions", options.extensions);
  if (options.headers) {
    for (const [name, value] of options.headers) {
      // A second copy of a handshake header makes clients fail the handshake.
      if (HANDSHAKE_HEADERS.has(name.toLowerCase())) {
        throw new TypeError(`${name} is set by the server; it cannot be an extra header`);
      }
      head += formatHeader(name, value);
    }
  }
  return encoder.encode(head + "\r\n");
}

/**
 * Reason phrases (RFC 9110 §15) for the statuses this server produces itself
 * and those applications commonly return (the static file handler's 206,
 * 412 and 416 among them). Others go out with an empty phrase, which HTTP/1.1
 * allows.
 */
const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  422: "Unprocessable Content",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** The reason phrase for `status` (empty when unknown: the phrase is optional in HTTP/1.1). */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "";
}

// Hoisted: a regex literal in the function body is a new RegExp object on
// every call, two per header of every response.
const LINE_BREAK = /[\r\n]/;

function formatHeader(name: string, value: string): string {
  // A CR or LF in a header would let a value inject headers of its own.
  if (LINE_BREAK.test(name) || LINE_BREAK.test(value)) {
    throw new TypeError(`header ${JSON.stringify(name)} contains a line break`);
  }
  return `${name}: ${value}\r\n`;
}

/**
 * What a response head says about the connection: `"close"` (the server
 * closes it after this response), `"keep-alive"` (kept, said out loud, as
 * an HTTP/1.0 client needs), or null (kept, HTTP/1.1's default, no field).
 */
export type ConnectionField = "close" | "keep-alive" | null;

/**
 * Encodes a complete HTTP/1.1 response head. The body is delimited by
 * `framing`: a byte count (`Content-Length`), `"chunked"`
 * (`Transfer-Encoding: chunked`), or null for no length header (no body,
 * or one that ends when the connection closes). `connection` is the
 * `Connection` field to send (default `close`). The application's own
 * framing and connection headers are replaced, never passed through.
 */
export function encodeResponseHead(
  status: number,
  headers: Iterable<[string, string]>,
  framing: number | "chunked" | null,
  connection: ConnectionField = "close",
): Uint8Array {
  return encoder.encode(responseHeadText(status, headers, framing, connection));
}

function responseHeadText(
  status: number,
  headers: Iterable<[string, string]>,
  framing: number | "chunked" | null,
  connection: ConnectionField,
): string {
  let head = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`;
  const add = (value: string, name: string): void => {
    const lower = name.toLowerCase();
    if (
      lower === "content-length" || lower === "connection" || lower === "transfer-encoding" ||
      lower === "keep-alive"
    ) {
      return;
    }
    head += formatHeader(name, value);
  };
  // Headers#forEach costs a fifth of Headers' iterator (no sorted copy
  // wrapped in iterator objects): measurable on every plain response.
  if (headers instanceof Headers) headers.forEach(add);
  else for (const [name, value] of headers) add(value, name);
  if (framing === "chunked") head += "Transfer-Encoding: chunked\r\n";
  else if (framing !== null) head += `Content-Length: ${framing}\r\n`;
  if (connection !== null) head += `Connection: ${connection}\r\n`;
  return head + "\r\n";
}

/**
 * Encodes the plain-text error response for a rejected handshake.
 *
 * @example
 * ```ts
 * import { encodeRejection } from "@tsunagu/ws";
 * const bytes = encodeRejection({ status: 400, message: "bad key" });
 * console.log(new TextDecoder().decode(bytes).split("\r\n")[0]); // HTTP/1.1 400 Bad Request
 * ```
 */
export function encodeRejection(rejection: HandshakeRejection): Uint8Array {
  const body = encoder.encode(rejection.message + "\n");
  const head = encodeResponseHead(rejection.status, [
    ["Content-Type", "text/plain; charset=utf-8"],
    ...(rejection.headers ?? []),
  ], body.length);
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(head);
  bytes.set(body, head.length);
  return bytes;
}
