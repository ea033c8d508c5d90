/**
 * The permessage-deflate extension (RFC 7692): negotiation (pure) and the
 * compression of whole messages through `node:zlib`.
 *
 * Design: the server always answers with `server_no_context_takeover` and
 * `client_no_context_takeover` (RFC 7692 §7.1.1 lets a server add both to
 * any accepted offer). Every message is then compressed on its own, so
 * compression is one synchronous call per message with no zlib state kept
 * per connection: an idle connection costs nothing extra (a shared sliding
 * window costs ~300 KB per connection in servers that keep it), and the
 * read loop never waits on an asynchronous inflater. The price is a lower
 * ratio for streams of small, similar messages; messages under `threshold`
 * are not compressed at all.
 *
 * @module
 */

import zlib from "node:zlib";
import { CloseCode, encodeFrame, Opcode } from "./frame.ts";

const textEncoder = new TextEncoder();

/**
 * Options for permessage-deflate (`ServeOptions.perMessageDeflate`).
 *
 * @example
 * ```ts
 * import { type PerMessageDeflateOptions, serve } from "@tsunagu/ws";
 * const perMessageDeflate: PerMessageDeflateOptions = { threshold: 256, level: 1 };
 * const server = serve({ port: 0, hostname: "127.0.0.1", perMessageDeflate });
 * await server.shutdown();
 * ```
 */
export interface PerMessageDeflateOptions {
  /** Messages shorter than this many bytes are sent uncompressed. Default 1024. */
  threshold?: number;
  /** zlib compression level, 0 (none) to 9 (smallest). Default 6 (zlib's own default). */
  level?: number;
}

/**
 * What one connection negotiated: how it sends (receiving needs no parameters).
 *
 * @example
 * ```ts
 * import { type DeflateParams, negotiateDeflate } from "@tsunagu/ws";
 * const offer = "permessage-deflate; server_max_window_bits=10";
 * const params: DeflateParams | undefined = negotiateDeflate([offer], { level: 1 })?.params;
 * console.log(params); // { threshold: 1024, level: 1, windowBits: 10 }
 * ```
 */
export interface DeflateParams {
  /** Messages shorter than this are sent uncompressed. */
  threshold: number;
  /** zlib level for sending. */
  level: number;
  /** LZ77 window for sending, 9-15 (`server_max_window_bits`). */
  windowBits: number;
}

/**
 * The outcome of a successful negotiation.
 *
 * @example
 * ```ts
 * import { type DeflateAgreement, negotiateDeflate } from "@tsunagu/ws";
 * // Firefox's offer; an unknown extension before it is skipped.
 * const values = ["x-webkit-deflate-frame", "permessage-deflate"];
 * const agreement: DeflateAgreement | null = negotiateDeflate(values, {});
 * console.log(agreement?.response);
 * // permessage-deflate; server_no_context_takeover; client_no_context_takeover
 * ```
 */
export interface DeflateAgreement {
  /** The `Sec-WebSocket-Extensions` value for the 101 response. */
  response: string;
  /** The parameters the connection uses. */
  params: DeflateParams;
}

const EXTENSION = "permessage-deflate";
const DEFAULT_THRESHOLD = 1024;
const DEFAULT_LEVEL = 6;

/** Splits on `separator` outside double-quoted strings. */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted && c === "\\") i++; // a quoted-pair: the next character is literal
    else if (c === '"') quoted = !quoted;
    else if (c === separator && !quoted) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((part) => part.trim());
}

/** A window-bits value: 8-15, as a token or a quoted string (RFC 7692 §7.1.2). */
function windowBits(value: string | true): number | null {
  const text = value === true ? "" : value.replace(/^"(.*)"$/, "$1");
  return /^(8|9|1[0-5])$/.test(text) ? Number(text) : null;
}

/**
 * Reads one permessage-deflate offer's parameters. Null when the offer is
 * invalid (unknown or repeated parameter, bad value) or asks for something
 * this server cannot honour, so the next offer is tried.
 */
function readOffer(params: string[]): { serverMaxWindowBits: number | null } | null {
  const seen = new Set<string>();
  let serverMaxWindowBits: number | null = null;
  for (const param of params) {
    const equals = param.indexOf("=");
    const name = (equals < 0 ? param : param.slice(0, equals)).trim().toLowerCase();
    const value: string | true = equals < 0 ? true : param.slice(equals + 1).trim();
    if (seen.has(name)) return null;
    seen.add(name);
    if (name === "server_no_context_takeover" || name === "client_no_context_takeover") {
      if (value !== true) return null;
    } else if (name === "server_max_window_bits") {
      const bits = value === true ? null : windowBits(value);
      // zlib's raw deflate cannot use a 256-byte window: decline, as RFC
      // 7692 §7.1.2.1 allows, rather than send what the client cannot inflate.
      if (bits === null || bits === 8) return null;
      serverMaxWindowBits = bits;
    } else if (name === "client_max_window_bits") {
      // Any window the client uses is at most 15 bits, which the inflater
      // accepts; the value only has to be valid.
      if (value !== true && windowBits(value) === null) return null;
    } else {
      return null;
    }
  }
  return { serverMaxWindowBits };
}

/**
 * Picks the first acceptable permessage-deflate offer among the request's
 * `Sec-WebSocket-Extensions` values (RFC 6455 §9.1 syntax). Null when there
 * is none: the connection then runs without compression.
 *
 * @example
 * ```ts
 * import { negotiateDeflate } from "@tsunagu/ws";
 * // What Chromium offers:
 * const agreement = negotiateDeflate(["permessage-deflate; client_max_window_bits"], {});
 * console.log(agreement?.response);
 * // permessage-deflate; server_no_context_takeover; client_no_context_takeover
 * ```
 */
export function negotiateDeflate(
  headerValues: readonly string[],
  options: PerMessageDeflateOptions,
): DeflateAgreement | null {
  for (const offer of splitOutsideQuotes(headerValues.join(","), ",")) {
    const [name, ...params] = splitOutsideQuotes(offer, ";");
    if (name.toLowerCase() !== EXTENSION) continue;
    const accepted = readOffer(params.filter((param) => param !== ""));
    if (accepted === null) continue;
    let response = `${EXTENSION}; server_no_context_takeover; client_no_context_takeover`;
    if (accepted.serverMaxWindowBits !== null) {
      response += `; server_max_window_bits=${accepted.serverMaxWindowBits}`;
    }
    return {
      response,
      params: {
        threshold: options.threshold ?? DEFAULT_THRESHOLD,
        level: options.level ?? DEFAULT_LEVEL,
        windowBits: accepted.serverMaxWindowBits ?? 15,
      },
    };
  }
  return null;
}

/** Checks `perMessageDeflate` options; throws a RangeError naming the bad one. */
export function validateDeflateOptions(options: PerMessageDeflateOptions): void {
  const { threshold, level } = options;
  if (threshold !== undefined && !(Number.isInteger(threshold) && threshold >= 0)) {
    throw new RangeError("perMessageDeflate.threshold must be an integer >= 0");
  }
  if (level !== undefined && !(Number.isInteger(level) && level >= 0 && level <= 9)) {
    throw new RangeError("perMessageDeflate.level must be an integer from 0 to 9");
  }
}

// The end of a sync-flushed deflate stream, which senders strip from each
// message and receivers append again (RFC 7692 §7.2.1, §7.2.2).
const TAIL = Uint8Array.of(0x00, 0x00, 0xff, 0xff);

/**
 * Compresses one message's payload (RFC 7692 §7.2.1): a raw deflate stream,
 * sync-flushed, without its final `00 00 ff ff`.
 */
function deflateMessage(payload: Uint8Array, params: DeflateParams): Uint8Array {
  const out = zlib.deflateRawSync(payload, {
    level: params.level,
    windowBits: params.windowBits,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  return new Uint8Array(out.buffer, out.byteOffset, out.length - TAIL.length);
}

/**
 * The frame to send for `payload` on a connection with `params`: compressed
 * (RSV1 set), or null when it should go out as it is: under the threshold
 * (counted in bytes, text as UTF-8), or not smaller once compressed (random
 * or already compressed data; sending it bigger would only cost the peer).
 * `encode` builds the frame (a client masks it).
 */
export function compressedFrame(
  payload: string | Uint8Array,
  params: DeflateParams,
  encode: (opcode: number, payload: Uint8Array, fin: boolean, rsv: number) => Uint8Array =
    encodeFrame,
): Uint8Array | null {
  const text = typeof payload === "string";
  // A string has at least as many UTF-8 bytes as UTF-16 units, at most 3x.
  if (payload.length * (text ? 3 : 1) < params.threshold) return null;
  const bytes = text ? textEncoder.encode(payload) : payload;
  if (bytes.length < params.threshold) return null;
  const compressed = deflateMessage(bytes, params);
  if (compressed.length >= bytes.length) return null;
  return encode(text ? Opcode.Text : Opcode.Binary, compressed, true, 0x40);
}

/**
 * What a client offers: compression without context takeover either way,
 * so both ends compress and inflate each message on its own.
 */
export const CLIENT_DEFLATE_OFFER =
  "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/**
 * Checks a server's answer to {@linkcode CLIENT_DEFLATE_OFFER} (RFC 7692
 * §7.1): permessage-deflate with server_no_context_takeover (the client
 * keeps no window, so it cannot follow a server that does), known
 * parameters only. Returns the client's sending parameters, or why the
 * connection must fail.
 */
export function acceptDeflateResponse(
  value: string,
  options: PerMessageDeflateOptions,
): DeflateParams | { error: string } {
  const offers = splitOutsideQuotes(value, ",");
  if (offers.length !== 1) return { error: "the server accepted more than one extension" };
  const [name, ...params] = splitOutsideQuotes(offers[0], ";");
  if (name.toLowerCase() !== EXTENSION) {
    return { error: `the server accepted ${name}, not offered` };
  }
  let serverNoTakeover = false;
  let windowBitsLimit = 15;
  const seen = new Set<string>();
  for (const param of params.filter((param) => param !== "")) {
    const equals = param.indexOf("=");
    const key = (equals < 0 ? param : param.slice(0, equals)).trim().toLowerCase();
    const raw: string | true = equals < 0 ? true : param.slice(equals + 1).trim();
    if (seen.has(key)) return { error: `the server repeated ${key}` };
    seen.add(key);
    if (key === "server_no_context_takeover" && raw === true) serverNoTakeover = true;
    else if (key === "client_no_context_takeover" && raw === true) continue;
    else if (key === "server_max_window_bits" && raw !== true && windowBits(raw) !== null) continue;
    else if (key === "client_max_window_bits" && raw !== true && windowBits(raw) !== null) {
      windowBitsLimit = windowBits(raw)!;
      // zlib's raw deflate cannot keep to a 256-byte window.
      if (windowBitsLimit === 8) return { error: "the server asked for an 8-bit client window" };
    } else return { error: `the server answered an invalid parameter ${param}` };
  }
  if (!serverNoTakeover) {
    return { error: "the server did not agree to server_no_context_takeover" };
  }
  return {
    threshold: options.threshold ?? DEFAULT_THRESHOLD,
    level: options.level ?? DEFAULT_LEVEL,
    windowBits: windowBitsLimit,
  };
}

/** Why a compressed message could not be inflated: the close code and a message. */
export interface InflateFailure {
  code: number;
  message: string;
}

/**
 * Decompresses one message's payload (RFC 7692 §7.2.2). Output beyond
 * `maxLength` bytes is never produced: a small message that inflates past
 * the limit (a decompression bomb) fails with 1009; data that is not a valid
 * deflate stream fails with 1007. The result is a fresh array, the
 * caller's to keep.
 */
export function inflateMessage(
  compressed: Uint8Array,
  maxLength: number,
): Uint8Array | InflateFailure {
  const input = new Uint8Array(compressed.length + TAIL.length);
  input.set(compressed);
  input.set(TAIL, compressed.length);
  try {
    const out = zlib.inflateRawSync(input, {
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      // zlib takes a finite limit only (maxPayload may be Infinity).
      ...(Number.isFinite(maxLength) ? { maxOutputLength: Math.max(maxLength, 1) } : {}),
    });
    if (out.length > maxLength) {
      return {
        code: CloseCode.MessageTooBig,
        message: `message exceeds the ${maxLength}-byte limit`,
      };
    }
    // A plain Uint8Array over exactly the message (not a Buffer, not a view
    // into a larger pool).
    return out.byteOffset === 0 && out.buffer.byteLength === out.length
      ? new Uint8Array(out.buffer, 0, out.length)
      : new Uint8Array(out);
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      return {
        code: CloseCode.MessageTooBig,
        message: `message exceeds the ${maxLength}-byte limit`,
      };
    }
    return { code: CloseCode.InvalidPayload, message: "invalid compressed data" };
  }
}
