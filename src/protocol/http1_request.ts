/**
 * What an HTTP/1.x request head says about the exchange around it, beyond
 * where it is addressed (handshake.ts) and how long its body is
 * (http1_body.ts): whether the client keeps the connection for another
 * request (RFC 9112 §9.3), what it expects before sending its body (RFC
 * 9110 §10.1.1), and whether its HTTP version is one we speak. Pure: no I/O.
 *
 * @module
 */

import {
  headerList,
  type HeadFields,
  listHas,
  nameIs,
  parseAuthority,
  type RequestHead,
} from "./handshake.ts";

/** Whether the request's version is HTTP/1.1 or a later 1.x (which must be read as 1.1). */
export function isHttp11(head: RequestHead): boolean {
  return head.version[0] === 1 && head.version[1] >= 1;
}

/**
 * Whether the client lets the connection persist after this request (RFC
 * 9112 §9.3): HTTP/1.1 unless its `Connection` field lists `close`;
 * HTTP/1.0 only when it lists `keep-alive` (and not `close`). The server
 * may still close for reasons of its own.
 */
export function requestKeepsAlive(head: RequestHead): boolean {
  let close = false;
  let keepAlive = false;
  for (const token of headerList(head, "connection")) {
    const lower = token.toLowerCase();
    if (lower === "close") close = true;
    else if (lower === "keep-alive") keepAlive = true;
  }
  if (close) return false;
  return isHttp11(head) || keepAlive;
}

/**
 * For a request with no body, no expectation and no `Upgrade` field (the
 * usual GET): whether the client lets the connection persist, as
 * {@linkcode requestKeepsAlive} says; null for any other request (one with
 * `Content-Length`, `Transfer-Encoding`, `Expect` or `Upgrade`), which
 * needs the full questions. One pass over the fields, not one per question.
 */
export function plainRequestKeepsAlive(head: RequestHead): boolean | null {
  const headers = head.headers;
  let connection = false;
  for (let i = 0; i < headers.length; i++) {
    switch (headers[i][0]) {
      case "content-length":
      case "transfer-encoding":
      case "expect":
      case "upgrade":
        return null;
      case "connection":
        connection = true;
    }
  }
  return connection ? requestKeepsAlive(head) : isHttp11(head);
}

/**
 * The request's `Expect` field (RFC 9110 §10.1.1): `"none"`; `"continue"`
 * for `100-continue` on HTTP/1.1 (the client may wait for a `100 Continue`
 * before sending its body; an HTTP/1.0 client's is ignored, as the RFC
 * requires); `"unsupported"` for any other expectation, answered with 417.
 */
export function requestExpectation(head: RequestHead): "none" | "continue" | "unsupported" {
  const items = headerList(head, "expect");
  if (items.length === 0) return "none";
  for (const item of items) {
    if (item.toLowerCase() !== "100-continue") return "unsupported";
  }
  return isHttp11(head) ? "continue" : "none";
}

/**
 * How many bytes of empty lines (CRLF pairs) start `bytes[0..filled)`: a
 * server ignores empty lines before a request line (RFC 9112 §2.2), which
 * some clients send after a body. A lone CR at the end is left for the next
 * read to complete.
 */
export function leadingEmptyLines(bytes: Uint8Array, filled: number): number {
  let at = 0;
  while (at + 1 < filled && bytes[at] === 0x0d && bytes[at + 1] === 0x0a) at += 2;
  return at;
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
  /** Whether the client lets the connection persist ({@linkcode requestKeepsAlive}). */
  keepsAlive = true;
}

const USUAL = new UsualRequest();

/**
 * The usual plain request checked in place on a scanned head: HTTP/1.x, GET
 * or HEAD, an origin-form target with no fragment, exactly one valid Host,
 * and no `Content-Length`, `Transfer-Encoding`, `Expect` or `Upgrade` field
 * (no body, no expectation, no upgrade). Null for anything else, valid or
 * not: the caller then takes the general path ({@linkcode headOf},
 * {@linkcode plainRequestKeepsAlive}, {@linkcode requestAddress}), which
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
 * import { decodeRequestHead, isRejection, scanRequestHead } from "./handshake.ts";
 * import { usualRequestOf } from "./http1_request.ts";
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
    const start = at[o];
    // By the name's length first: most names are none of these, and none
    // of their characters is read.
    switch (at[o + 1] - start) {
      case 4:
        if (nameIs(text, start, "host")) {
          if (host >= 0) return null;
          host = o;
        }
        break;
      case 6:
        if (nameIs(text, start, "expect")) return null;
        break;
      case 7:
        if (nameIs(text, start, "upgrade")) return null;
        break;
      case 10:
        // Every Connection field's list counts, as requestKeepsAlive reads
        // them (a browser sends "keep-alive" with every request).
        if (nameIs(text, start, "connection")) {
          close ||= listHas(text, at[o + 2], at[o + 3], "close");
          keepAlive ||= listHas(text, at[o + 2], at[o + 3], "keep-alive");
        }
        break;
      case 14:
        if (nameIs(text, start, "content-length")) return null;
        break;
      case 17:
        if (nameIs(text, start, "transfer-encoding")) return null;
        break;
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
