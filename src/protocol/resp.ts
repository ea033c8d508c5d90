/**
 * RESP (the Redis serialization protocol) codec: commands to bytes, reply
 * bytes to values. Pure and incremental like the frame parser: a reply may be
 * split across pushes at any byte and one push may hold many replies.
 *
 * RESP2 is the protocol spoken (the client never sends `HELLO 3`): Pub/Sub in
 * RESP2 needs a connection of its own for subscriptions, which a broker wants
 * anyway (a slow subscriber must not delay PUBLISH), and RESP2 replies are a
 * handful of types. The RESP3 types a server could still send (push `>`,
 * null `_`, boolean `#`, double `,`, big number `(`, verbatim `=`, blob error
 * `!`, map `%`, set `~`) are tolerated at little cost: pushes, sets and maps
 * (flattened key, value, key, value) become arrays. Attributes (`|`) are
 * rejected.
 *
 * Bulk strings are kept as bytes, exactly as sent (binary-safe); simple
 * strings, doubles and big numbers become JS strings; integers become
 * numbers; errors become {@linkcode RespError}.
 *
 * @module
 */

import { encodeUtf8Into, utf8Length } from "./utf8.ts";

/**
 * An error reply (`-ERR …`). The first word is the error kind (`ERR`,
 * `WRONGPASS`, `NOAUTH`, …).
 *
 * @example
 * ```ts
 * import { RespError } from "./resp.ts";
 * const error = new RespError("WRONGPASS invalid username-password pair");
 * console.log(error.kind); // WRONGPASS
 * ```
 */
export class RespError extends Error {
  /** The error's first word, e.g. `WRONGPASS`. */
  readonly kind: string;

  constructor(message: string) {
    super(message);
    this.name = "RespError";
    const space = message.indexOf(" ");
    this.kind = space < 0 ? message : message.slice(0, space);
  }
}

/** A reply value. Bulk strings are bytes; `null` is a null bulk string, array or RESP3 null. */
export type RespValue =
  | string
  | number
  | boolean
  | Uint8Array
  | null
  | RespError
  | RespValue[];

/** Receives what {@linkcode RespParser} finds. */
export interface RespHandler {
  /** A complete top-level reply. Bulk string bytes are owned by the receiver. */
  onReply(value: RespValue): void;
  /** The bytes broke the protocol or a bound: the connection must be dropped. */
  onProtocolError(message: string): void;
}

/** Bounds on what {@linkcode RespParser} accepts; replies beyond them are protocol errors. */
export interface RespParserOptions {
  /** Largest bulk string in bytes. Default 64 MiB. */
  maxBulkLength?: number;
  /** Most elements of one array (maps: twice the pairs). Default 1 048 576. */
  maxArrayLength?: number;
  /** Longest line (simple string, error, number) in bytes. Default 64 KiB. */
  maxLineLength?: number;
  /** Deepest nesting of arrays. Default 32. */
  maxDepth?: number;
}

const CR = 13;
const LF = 10;

// Parser states.
const TYPE = 0; // expecting a type byte
const LINE = 1; // reading a line up to CRLF
const BULK = 2; // reading bulk bytes
const BULK_CR = 3; // expecting the CR after bulk bytes
const BULK_LF = 4; // expecting the LF after bulk bytes
const FAILED = 5;

// + - : $ * and RESP3's _ # , ( = ! > ~ %
const KNOWN_TYPES = new Set([..."+-:$*_#,(=!>~%"].map((c) => c.charCodeAt(0)));

const decoder = new TextDecoder();
const encoder = new TextEncoder();

interface Aggregate {
  items: RespValue[];
  remaining: number;
}

/**
 * Streaming RESP reply decoder. Feed it bytes with {@linkcode RespParser.push};
 * it calls `onReply` for each complete top-level reply.
 *
 * @example
 * ```ts
 * import { RespParser } from "./resp.ts";
 * const replies: unknown[] = [];
 * const parser = new RespParser({
 *   onReply: (value) => replies.push(value),
 *   onProtocolError: (message) => console.log(message),
 * });
 * parser.push(new TextEncoder().encode("+OK\r\n:4"));
 * parser.push(new TextEncoder().encode("2\r\n"));
 * console.log(replies); // [ "OK", 42 ]
 * ```
 */
export class RespParser {
  #handler: RespHandler;
  #maxBulk: number;
  #maxArray: number;
  #maxLine: number;
  #maxDepth: number;
  #state = TYPE;
  #type = 0;
  // A line split across pushes is gathered here.
  #line: number[] = [];
  #bulk: Uint8Array | null = null;
  #bulkFilled = 0;
  // The type byte of the bulk being read: `!` (blob error) or another.
  #bulkType = 0;
  #stack: Aggregate[] = [];

  /** Creates a parser that reports to `handler`. */
  constructor(handler: RespHandler, options: RespParserOptions = {}) {
    this.#handler = handler;
    this.#maxBulk = options.maxBulkLength ?? 64 * 1024 * 1024;
    this.#maxArray = options.maxArrayLength ?? 1024 * 1024;
    this.#maxLine = options.maxLineLength ?? 64 * 1024;
    this.#maxDepth = options.maxDepth ?? 32;
  }

  /** Whether the parser stopped on a protocol error; it ignores input from then on. */
  get failed(): boolean {
    return this.#state === FAILED;
  }

  /** Parses `chunk` (read-only; bulk strings are copied out of it). */
  push(chunk: Uint8Array): void {
    let i = 0;
    const end = chunk.length;
    while (i < end && this.#state !== FAILED) {
      switch (this.#state) {
        case TYPE: {
          const type = this.#type = chunk[i++];
          if (!KNOWN_TYPES.has(type)) {
            // Fail at once: a peer that is not Redis (an HTTP server, say)
            // need not send a whole line first.
            const shown = type >= 0x20 && type < 0x7f ? ` (${String.fromCharCode(type)})` : "";
            this.#fail(`unknown reply type byte ${type}${shown}`);
            return;
          }
          this.#line.length = 0;
          this.#state = LINE;
          break;
        }
        case LINE: {
          // Fast path: the whole line is in this chunk.
          let j = i;
          while (j < end && chunk[j] !== LF) j++;
          const line = this.#line;
          if (line.length + (j - i) > this.#maxLine + 1) {
            this.#fail(`line longer than ${this.#maxLine} bytes`);
            return;
          }
          if (j === end) {
            for (let k = i; k < end; k++) line.push(chunk[k]);
            i = end;
            break;
          }
          let text: string;
          if (line.length === 0) {
            if (j === i || chunk[j - 1] !== CR) {
              this.#fail("line not ended by CRLF");
              return;
            }
            text = decoder.decode(chunk.subarray(i, j - 1));
          } else {
            for (let k = i; k < j; k++) line.push(chunk[k]);
            if (line[line.length - 1] !== CR) {
              this.#fail("line not ended by CRLF");
              return;
            }
            line.pop();
            text = decoder.decode(new Uint8Array(line));
            line.length = 0;
          }
          i = j + 1;
          this.#state = TYPE;
          this.#onLine(text);
          break;
        }
        case BULK: {
          const bulk = this.#bulk!;
          const take = Math.min(bulk.length - this.#bulkFilled, end - i);
          bulk.set(chunk.subarray(i, i + take), this.#bulkFilled);
          this.#bulkFilled += take;
          i += take;
          if (this.#bulkFilled === bulk.length) this.#state = BULK_CR;
          break;
        }
        case BULK_CR: {
          if (chunk[i++] !== CR) {
            this.#fail("bulk string not ended by CRLF");
            return;
          }
          this.#state = BULK_LF;
          break;
        }
        case BULK_LF: {
          if (chunk[i++] !== LF) {
            this.#fail("bulk string not ended by CRLF");
            return;
          }
          const bulk = this.#bulk!;
          this.#bulk = null;
          this.#state = TYPE;
          this.#value(this.#bulkType === 0x21 /* ! */ ? new RespError(decoder.decode(bulk)) : bulk);
          break;
        }
      }
    }
  }

  #onLine(text: string): void {
    const type = this.#type;
    switch (type) {
      case 0x2b: // + simple string
      case 0x2c: // , double (kept as text)
      case 0x28: // ( big number (kept as text)
        this.#value(text);
        return;
      case 0x2d: // - error
        this.#value(new RespError(text));
        return;
      case 0x3a: { // : integer
        const value = parseInteger(text);
        if (value === null) this.#fail(`invalid integer ${JSON.stringify(text.slice(0, 40))}`);
        else this.#value(value);
        return;
      }
      case 0x5f: // _ null
        if (text !== "") this.#fail("invalid null");
        else this.#value(null);
        return;
      case 0x23: // # boolean
        if (text === "t" || text === "f") this.#value(text === "t");
        else this.#fail("invalid boolean");
        return;
      case 0x24: // $ bulk string
      case 0x3d: // = verbatim string
      case 0x21: { // ! blob error
        const length = parseInteger(text);
        if (length === null || length < -1) {
          this.#fail(`invalid bulk length ${JSON.stringify(text.slice(0, 40))}`);
        } else if (length === -1) {
          this.#value(null);
        } else if (length > this.#maxBulk) {
          this.#fail(`bulk string of ${length} bytes is over the ${this.#maxBulk} limit`);
        } else {
          this.#bulk = new Uint8Array(length);
          this.#bulkFilled = 0;
          this.#bulkType = type;
          this.#state = length === 0 ? BULK_CR : BULK;
        }
        return;
      }
      case 0x2a: // * array
      case 0x3e: // > push
      case 0x7e: // ~ set
      case 0x25: { // % map
        const count = parseInteger(text);
        if (count === null || count < -1) {
          this.#fail(`invalid array length ${JSON.stringify(text.slice(0, 40))}`);
          return;
        }
        if (count === -1) {
          this.#value(null);
          return;
        }
        const elements = type === 0x25 ? count * 2 : count;
        if (elements > this.#maxArray) {
          this.#fail(`array of ${elements} elements is over the ${this.#maxArray} limit`);
          return;
        }
        if (elements === 0) {
          this.#value([]);
          return;
        }
        if (this.#stack.length >= this.#maxDepth) {
          this.#fail(`arrays nested deeper than ${this.#maxDepth}`);
          return;
        }
        this.#stack.push({ items: [], remaining: elements });
        return;
      }
    }
  }

  /** A complete value: into the enclosing array, or out as a reply. */
  #value(value: RespValue): void {
    const stack = this.#stack;
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      top.items.push(value);
      if (--top.remaining > 0) return;
      stack.pop();
      value = top.items;
    }
    this.#handler.onReply(value);
  }

  #fail(message: string): void {
    this.#state = FAILED;
    this.#stack.length = 0;
    this.#bulk = null;
    this.#handler.onProtocolError(message);
  }
}

/** A decimal integer as RESP writes it (optional `-`, digits), or null. */
function parseInteger(text: string): number | null {
  if (!/^-?\d{1,19}$/.test(text)) return null;
  return Number(text);
}

/**
 * A command argument: strings go as UTF-8, bytes as they are, and an array
 * of those as one argument made of their concatenation (an envelope header
 * and a payload, say, without joining them first).
 */
export type RespArg = string | Uint8Array | readonly (string | Uint8Array)[];

function partLength(part: string | Uint8Array): number {
  return typeof part === "string" ? utf8Length(part) : part.length;
}

function writePart(part: string | Uint8Array, out: Uint8Array, at: number, length: number): number {
  if (typeof part !== "string") {
    out.set(part, at);
  } else if (length < 256) {
    encodeUtf8Into(part, out, at);
  } else {
    encoder.encodeInto(part, out.subarray(at, at + length));
  }
  return at + length;
}

/**
 * Encodes a command as RESP: an array of bulk strings, in one allocation.
 *
 * @example
 * ```ts
 * import { encodeCommand } from "./resp.ts";
 * const bytes = encodeCommand(["PUBLISH", "room", new Uint8Array([0, 255])]);
 * console.log(bytes.length); // 37
 * ```
 */
export function encodeCommand(args: readonly RespArg[]): Uint8Array {
  // Byte lengths first (strings measured, not encoded), then one buffer.
  const lengths: number[] = [];
  const argLengths: number[] = new Array(args.length);
  let size = 3 + digits(args.length); // *N CRLF
  for (let k = 0; k < args.length; k++) {
    const arg = args[k];
    let argLength = 0;
    if (typeof arg === "string" || arg instanceof Uint8Array) {
      const length = partLength(arg);
      lengths.push(length);
      argLength = length;
    } else {
      for (const part of arg) {
        const length = partLength(part);
        lengths.push(length);
        argLength += length;
      }
    }
    argLengths[k] = argLength;
    size += argLength + digits(argLength) + 5; // $ len CRLF bytes CRLF
  }
  const out = allocate(size);
  let at = writeAscii(out, 0, `*${args.length}\r\n`);
  let next = 0;
  for (let k = 0; k < args.length; k++) {
    at = writeAscii(out, at, `$${argLengths[k]}\r\n`);
    const arg = args[k];
    if (typeof arg === "string" || arg instanceof Uint8Array) {
      at = writePart(arg, out, at, lengths[next++]);
    } else {
      for (const part of arg) at = writePart(part, out, at, lengths[next++]);
    }
    out[at++] = CR;
    out[at++] = LF;
  }
  return out;
}

// Small commands are carved out of a shared slab, moving forward only (a
// command handed out is never overwritten): a view is much cheaper than a
// backing store of its own per PUBLISH.
const SLAB_SIZE = 64 * 1024;
const SLAB_MAX_PIECE = 4 * 1024;
let slab = new Uint8Array(SLAB_SIZE);
let slabAt = 0;

function allocate(size: number): Uint8Array {
  if (size > SLAB_MAX_PIECE) return new Uint8Array(size);
  if (slabAt + size > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabAt = 0;
  }
  const piece = slab.subarray(slabAt, slabAt + size);
  slabAt += size;
  return piece;
}

function digits(n: number): number {
  let count = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    count++;
  }
  return count;
}

function writeAscii(out: Uint8Array, at: number, text: string): number {
  // Only ever "*N\r\n" and "$N\r\n": short, ASCII.
  for (let k = 0; k < text.length; k++) out[at++] = text.charCodeAt(k);
  return at;
}
