/**
 * The client side of the opening handshake (RFC 6455 §4.1), pure: the
 * upgrade request for a URL, and the checks a client must make on the
 * server's response before it may send a frame.
 *
 * @module
 */

import { acceptKey } from "./handshake.ts";

const encoder = new TextEncoder();

// RFC 9110 §5.6.2: header names and subprotocols are tokens.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

// Headers the client writes itself; callers may not add second copies.
const HANDSHAKE_HEADERS = new Set([
  "host",
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
]);

/** Whether `value` has a control character other than tab (not allowed in a header value). */
function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if ((code < 0x20 && code !== 0x09) || code === 0x7f) return true;
  }
  return false;
}

/**
 * A new `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1).
 *
 * @example
 * ```ts
 * import { createClientKey } from "@tsunagu/ws";
 * console.log(atob(createClientKey()).length); // 16
 * ```
 */
export function createClientKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes));
}

/**
 * Encodes the upgrade request for `url` (`ws:` or `wss:`).
 *
 * @example
 * ```ts
 * import { encodeClientRequest } from "@tsunagu/ws";
 * const bytes = encodeClientRequest(new URL("ws://example.com/chat?room=1"), "dGhlIHNhbXBsZSBub25jZQ==");
 * console.log(new TextDecoder().decode(bytes).split("\r\n")[0]); // GET /chat?room=1 HTTP/1.1
 * ```
 */
export function encodeClientRequest(
  url: URL,
  key: string,
  options: {
    protocols?: readonly string[];
    headers?: Iterable<[string, string]>;
    /** A `Sec-WebSocket-Extensions` offer. */
    extensions?: string;
  } = {},
): Uint8Array {
  const target = (url.pathname || "/") + url.search;
  let head = `GET ${target} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
  const protocols = options.protocols ?? [];
  for (const protocol of protocols) {
    if (!TOKEN.test(protocol)) {
      throw new TypeError(`invalid subprotocol ${JSON.stringify(protocol)}`);
    }
  }
  if (new Set(protocols).size !== protocols.length) throw new TypeError("repeated subprotocol");
  if (protocols.length > 0) head += `Sec-WebSocket-Protocol: ${protocols.join(", ")}\r\n`;
  if (options.extensions) head += `Sec-WebSocket-Extensions: ${options.extensions}\r\n`;
  for (const [name, value] of options.headers ?? []) {
    if (HANDSHAKE_HEADERS.has(name.toLowerCase())) {
      throw new TypeError(`${name} is set by the client; it cannot be an extra header`);
    }
    // A name must be a token and a value free of control characters, or
    // the header could smuggle in lines of its own.
    if (!TOKEN.test(name) || hasControlCharacter(value)) {
      throw new TypeError(`invalid header ${JSON.stringify(name)}`);
    }
    head += `${name}: ${value}\r\n`;
  }
  return encoder.encode(head + "\r\n");
}

/**
 * A server's response head: status and headers.
 *
 * @example
 * ```ts
 * import { parseResponseHead, type ResponseHead } from "@tsunagu/ws";
 * const head: ResponseHead | null = parseResponseHead("HTTP/1.1 404 Not Found\r\nX-A: 1");
 * console.log(head?.status, head?.headers.get("x-a")); // 404 1
 * ```
 */
export interface ResponseHead {
  /** The status code. */
  status: number;
  /** The header fields. */
  headers: Headers;
}

/**
 * Parses an HTTP/1.1 response head (without the final empty line); null when malformed.
 *
 * @example
 * ```ts
 * import { parseResponseHead } from "@tsunagu/ws";
 * console.log(parseResponseHead("HTTP/1.1 101 Switching Protocols")?.status); // 101
 * console.log(parseResponseHead("nonsense")); // null
 * ```
 */
export function parseResponseHead(text: string): ResponseHead | null {
  const lines = text.split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0]);
  if (match === null) return null;
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) return null;
    try {
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    } catch {
      return null;
    }
  }
  return { status: Number(match[1]), headers };
}

/**
 * Checks a response to an upgrade request sent with `key` and offering
 * `protocols` (RFC 6455 §4.1, the client's checks): 101, `Upgrade:
 * websocket`, `Connection: Upgrade`, the right `Sec-WebSocket-Accept`, a
 * subprotocol only from the offer, and an extension only if one was
 * offered (its parameters are the extension's to check). Returns the
 * chosen subprotocol and extensions, or why the connection must fail.
 *
 * @example
 * ```ts
 * import { acceptKey, validateServerResponse } from "@tsunagu/ws";
 * const key = "dGhlIHNhbXBsZSBub25jZQ==";
 * const headers = new Headers({
 *   upgrade: "websocket",
 *   connection: "Upgrade",
 *   "sec-websocket-accept": acceptKey(key),
 * });
 * console.log(validateServerResponse({ status: 101, headers }, key, []));
 * // { protocol: "", extensions: "" }
 * ```
 */
export function validateServerResponse(
  head: ResponseHead,
  key: string,
  protocols: readonly string[],
  extensionsOffered = false,
): { protocol: string; extensions: string } | { error: string } {
  const { status, headers } = head;
  if (status !== 101) return { error: `the server answered ${status} instead of 101` };
  if (headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return { error: "the response has no Upgrade: websocket header" };
  }
  const connection = (headers.get("connection") ?? "").toLowerCase().split(",");
  if (!connection.some((token) => token.trim() === "upgrade")) {
    return { error: "the response has no Connection: Upgrade header" };
  }
  if (headers.get("sec-websocket-accept") !== acceptKey(key)) {
    return { error: "the response's Sec-WebSocket-Accept does not match the key sent" };
  }
  const protocol = headers.get("sec-websocket-protocol") ?? "";
  if (protocol !== "" && !protocols.includes(protocol)) {
    return { error: `the server chose subprotocol "${protocol}", which was not offered` };
  }
  const extensions = headers.get("sec-websocket-extensions") ?? "";
  if (extensions !== "" && !extensionsOffered) {
    return { error: "the server accepted an extension that was not offered" };
  }
  return { protocol, extensions };
}
