/**
 * HTTP/1.1 request body framing (RFC 9112 §6), sans-I/O: how long a
 * request's body is, from its fields, and an incremental decoder for
 * `Transfer-Encoding: chunked` bodies (§7.1). Both are where request
 * smuggling happens, so both are strict: anything ambiguous is an error
 * (400, or 501 for a transfer coding we do not implement) and the
 * connection must close, never a guess that could read a second request
 * out of a body.
 *
 * @module
 */

/** How a request's body is delimited, or why it cannot be. */
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "error"; status: 400 | 501; message: string };

// The framing of (almost) every GET: one shared, frozen object rather than a
// new one per request.
const NO_BODY: BodyFraming = Object.freeze({ kind: "none" });

/**
 * Decides the body framing of a request from its `Content-Length` and
 * `Transfer-Encoding` field values, each as the list of the field's lines
 * (a field given twice has two entries; Headers would join them with ", "
 * and hide that).
 *
 * Rules (RFC 9112 §6.1-6.3, read strictly): both fields → 400; a
 * transfer coding list that does not end in `chunked`, or names it twice,
 * → 400, one with any other coding → 501; `Content-Length` must be one run of digits, given
 * once (a list, even of equal values, is 400); neither field → no body.
 */
export function requestBodyFraming(
  contentLength: readonly string[],
  transferEncoding: readonly string[],
): BodyFraming {
  if (transferEncoding.length > 0) {
    if (contentLength.length > 0) {
      return { kind: "error", status: 400, message: "both Content-Length and Transfer-Encoding" };
    }
    const codings = transferEncoding.join(",").split(",").map((coding) =>
      coding.trim().toLowerCase()
    ).filter((coding) => coding !== "");
    if (codings.length === 0 || codings[codings.length - 1] !== "chunked") {
      return { kind: "error", status: 400, message: "Transfer-Encoding must end in chunked" };
    }
    // chunked is applied at most once (RFC 9112 §6.1): twice is malformed,
    // not a coding we lack.
    if (codings.indexOf("chunked") !== codings.length - 1) {
      return { kind: "error", status: 400, message: "chunked given more than once" };
    }
    if (codings.length > 1) {
      return {
        kind: "error",
        status: 501,
        message: `transfer coding not implemented: ${codings.slice(0, -1).join(", ")}`,
      };
    }
    return { kind: "chunked" };
  }
  if (contentLength.length === 0) return NO_BODY;
  if (contentLength.length > 1) {
    return { kind: "error", status: 400, message: "Content-Length given more than once" };
  }
  const text = contentLength[0].trim();
  // 1*DIGIT only: no sign, no list, no hex; 15 digits keep it a safe integer.
  if (!/^[0-9]{1,15}$/.test(text)) {
    return { kind: "error", status: 400, message: "invalid Content-Length" };
  }
  const length = Number(text);
  return length === 0 ? NO_BODY : { kind: "length", length };
}

const CR = 0x0d;
const LF = 0x0a;

// Decoder states: where in the chunked grammar the next byte falls.
const SIZE = 0; // chunk-size hex digits
const EXT = 1; // after the size: BWS, ";" chunk extensions, up to CR
const SIZE_LF = 2; // the LF after the size line's CR
const DATA = 3; // chunk-data
const DATA_CR = 4; // the CR after chunk-data
const DATA_LF = 5; // the LF after chunk-data
const TRAILER_START = 6; // start of a trailer line, or the CR of the final empty line
const TRAILER = 7; // inside a trailer field line, up to CR
const TRAILER_LF = 8; // the LF after a trailer line's CR
const FINAL_LF = 9; // the LF of the final empty line
const DONE = 10;
const FAILED = 11;

/**
 * Options for {@linkcode ChunkedDecoder}.
 */
export interface ChunkedDecoderOptions {
  /** Longest chunk-size line (size and extensions), in bytes. Default 4 KiB. */
  maxLineBytes?: number;
  /** Most bytes of trailer fields (ignored, never exposed). Default 8 KiB. */
  maxTrailerBytes?: number;
}

/**
 * Incremental decoder of a `Transfer-Encoding: chunked` body. Feed it what
 * was read, in pieces of any size; it hands out the payload as views into
 * the input (no copy), stops at the body's end and says how much of the
 * input it used, so the bytes after the body are the next request's.
 *
 * Chunk extensions and trailer fields are read and dropped, within bounds.
 * A bare LF, a size that is not hex (or over 2^53), a missing CRLF after a
 * chunk's data or an over-long line is an error: {@linkcode ChunkedDecoder.error}
 * says which, and the connection must close.
 */
export class ChunkedDecoder {
  #state = SIZE;
  #size = 0;
  #digits = 0;
  #lineBytes = 0;
  #trailerBytes = 0;
  #error: string | null = null;
  readonly #maxLine: number;
  readonly #maxTrailer: number;

  constructor(options: ChunkedDecoderOptions = {}) {
    this.#maxLine = options.maxLineBytes ?? 4096;
    this.#maxTrailer = options.maxTrailerBytes ?? 8192;
  }

  /** Whether the whole body (last chunk and trailers) has been read. */
  get done(): boolean {
    return this.#state === DONE;
  }

  /** Why the body is malformed, or null. */
  get error(): string | null {
    return this.#error;
  }

  /**
   * Decodes `input`, calling `onData` with each piece of payload (a view
   * into `input`, valid during the call). Returns how many bytes of `input`
   * belong to the body; fewer than `input.length` only once the body is done
   * or has failed.
   */
  push(input: Uint8Array, onData: (data: Uint8Array) => void): number {
    let i = 0;
    const end = input.length;
    while (i < end) {
      const state = this.#state;
      if (state === DATA) {
        // The payload is handed out as one view per read: no per-byte work.
        const take = Math.min(this.#size, end - i);
        onData(input.subarray(i, i + take));
        this.#size -= take;
        i += take;
        if (this.#size === 0) this.#state = DATA_CR;
        continue;
      }
      if (state === DONE || state === FAILED) return i;
      const byte = input[i++];
      switch (state) {
        case SIZE: {
          const digit = hexValue(byte);
          if (digit >= 0) {
            this.#digits++;
            this.#size = this.#size * 16 + digit;
            if (this.#size > Number.MAX_SAFE_INTEGER) return this.#fail(i, "chunk size too large");
            if (this.#countLine()) return this.#fail(i, "chunk size line too long");
            break;
          }
          if (this.#digits === 0) return this.#fail(i, "chunk size is not hex");
          if (byte === CR) this.#state = SIZE_LF;
          else if (byte === LF) return this.#fail(i, "chunk size line must end in CRLF");
          else if (byte === 0x3b /* ; */ || byte === 0x20 || byte === 0x09) this.#state = EXT;
          else return this.#fail(i, "invalid byte after chunk size");
          if (this.#countLine()) return this.#fail(i, "chunk size line too long");
          break;
        }
        case EXT:
          if (byte === CR) this.#state = SIZE_LF;
          else if (byte === LF) return this.#fail(i, "chunk size line must end in CRLF");
          else if (byte === 0 || byte === 0x7f) {
            return this.#fail(i, "invalid byte in chunk extension");
          }
          if (this.#countLine()) return this.#fail(i, "chunk size line too long");
          break;
        case SIZE_LF:
          if (byte !== LF) return this.#fail(i, "chunk size line must end in CRLF");
          this.#lineBytes = 0;
          this.#digits = 0;
          if (this.#size === 0) {
            this.#state = TRAILER_START;
          } else {
            this.#state = DATA;
          }
          break;
        case DATA_CR:
          if (byte !== CR) return this.#fail(i, "chunk data must end in CRLF");
          this.#state = DATA_LF;
          break;
        case DATA_LF:
          if (byte !== LF) return this.#fail(i, "chunk data must end in CRLF");
          this.#state = SIZE;
          break;
        case TRAILER_START:
          if (byte === CR) {
            this.#state = FINAL_LF;
            break;
          }
          if (byte === LF) return this.#fail(i, "bare LF in trailer");
          // obs-fold (a line starting with SP or HTAB) is refused, as in heads.
          if (byte === 0x20 || byte === 0x09) return this.#fail(i, "folded trailer line");
          this.#state = TRAILER;
          if (this.#countTrailer()) return this.#fail(i, "trailer fields too large");
          break;
        case TRAILER:
          if (byte === CR) this.#state = TRAILER_LF;
          else if (byte === LF || byte === 0) return this.#fail(i, "invalid byte in trailer");
          if (this.#countTrailer()) return this.#fail(i, "trailer fields too large");
          break;
        case TRAILER_LF:
          if (byte !== LF) return this.#fail(i, "trailer line must end in CRLF");
          this.#state = TRAILER_START;
          break;
        case FINAL_LF:
          if (byte !== LF) return this.#fail(i, "chunked body must end in CRLF");
          this.#state = DONE;
          return i;
      }
    }
    return i;
  }

  #countLine(): boolean {
    return ++this.#lineBytes > this.#maxLine;
  }

  #countTrailer(): boolean {
    return ++this.#trailerBytes > this.#maxTrailer;
  }

  #fail(at: number, message: string): number {
    this.#state = FAILED;
    this.#error = message;
    return at;
  }
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}
