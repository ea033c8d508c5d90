/**
 * What an HTTP/1.x request head says about the exchange around it, beyond
 * where it is addressed (handshake.ts) and how long its body is
 * (http1_body.ts): whether the client keeps the connection for another
 * request (RFC 9112 §9.3), what it expects before sending its body (RFC
 * 9110 §10.1.1), and whether its HTTP version is one we speak. Pure: no I/O.
 *
 * @module
 */

import { headerList, type RequestHead } from "./handshake.ts";

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
