/**
 * The envelope a topic message travels in between nodes (the Redis broker's
 * channel payload): whether it is text or binary, which node published it,
 * and the payload bytes unchanged. Pure.
 *
 * Layout: one kind byte (`t` text, `b` binary), one byte with the node id's
 * length (1-255), the node id (ASCII), then the payload (UTF-8 for text).
 *
 * @module
 */

const TEXT = 0x74; // "t"
const BINARY = 0x62; // "b"

const encoder = new TextEncoder();
const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const latin1 = new TextDecoder("latin1");

/** A decoded envelope. */
export interface Envelope {
  /** The publishing node's id. */
  node: string;
  /** The payload: a string for text, bytes for binary. */
  data: string | Uint8Array;
}

/**
 * Wraps a payload. `node` is ASCII, 1-255 characters. A string payload is
 * sent as UTF-8 text, bytes as binary (copied).
 *
 * @example
 * ```ts
 * import { decodeEnvelope, encodeEnvelope } from "./broker_envelope.ts";
 * const bytes = encodeEnvelope("node-a", "hello");
 * console.log(decodeEnvelope(bytes)); // { node: "node-a", data: "hello" }
 * ```
 */
export function encodeEnvelope(node: string, data: string | Uint8Array): Uint8Array {
  if (!isNodeId(node)) throw new RangeError("a node id is 1 to 255 printable ASCII characters");
  const text = typeof data === "string";
  return envelopeBytes(node, text ? encoder.encode(data) : data, text);
}

/** Whether `node` can be a node id: 1 to 255 printable ASCII characters. */
export function isNodeId(node: string): boolean {
  return node.length > 0 && node.length <= 255 && /^[\x20-\x7e]+$/.test(node);
}

/**
 * {@linkcode encodeEnvelope} for a payload already in bytes (`text`: they
 * are UTF-8 text) and a node id already checked with {@linkcode isNodeId}.
 */
export function envelopeBytes(node: string, payload: Uint8Array, text: boolean): Uint8Array {
  const out = new Uint8Array(2 + node.length + payload.length);
  out[0] = text ? TEXT : BINARY;
  out[1] = node.length;
  for (let k = 0; k < node.length; k++) out[2 + k] = node.charCodeAt(k);
  out.set(payload, 2 + node.length);
  return out;
}

/**
 * Unwraps an envelope, or returns null when `bytes` is not one (wrong kind,
 * truncated, or text that is not valid UTF-8). Binary payloads are views
 * into `bytes`.
 */
export function decodeEnvelope(bytes: Uint8Array): Envelope | null {
  if (bytes.length < 3) return null;
  const kind = bytes[0];
  const idLength = bytes[1];
  if ((kind !== TEXT && kind !== BINARY) || idLength === 0 || bytes.length < 2 + idLength) {
    return null;
  }
  const node = latin1.decode(bytes.subarray(2, 2 + idLength));
  const payload = bytes.subarray(2 + idLength);
  if (kind === BINARY) return { node, data: payload };
  try {
    return { node, data: fatalDecoder.decode(payload) };
  } catch {
    return null;
  }
}

/**
 * The bytes before the payload in an envelope from `node` (checked with
 * {@linkcode isNodeId}): the header and the payload together are the
 * envelope, so the payload can be written after it without joining them.
 */
export function envelopeHead(node: string, text: boolean): Uint8Array {
  return envelopeBytes(node, new Uint8Array(0), text);
}

/** Whether an envelope (as bytes) came from `node`, without decoding the payload. */
export function envelopeFrom(bytes: Uint8Array, node: string): boolean {
  if (bytes.length < 2 + node.length || bytes[1] !== node.length) return false;
  for (let k = 0; k < node.length; k++) if (bytes[2 + k] !== node.charCodeAt(k)) return false;
  return true;
}
