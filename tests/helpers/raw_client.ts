/**
 * A raw TCP WebSocket client for integration tests, written on `Deno.connect`
 * and independent of the library: it sends whatever bytes a test gives it
 * (well-formed or not), performs the opening handshake itself, reads the HTTP
 * response of a refused handshake, decodes server frames incrementally and
 * waits for the server to close TCP. Every read has a bounded deadline; when
 * one passes, the connection is closed and the read throws, so a hung server
 * fails the test instead of hanging it.
 *
 * Client frames are built with `clientFrame` from `./frames.ts`.
 *
 * Test tooling, not part of the published library.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { concat } from "./frames.ts";

/** How long a read waits by default before it fails the test. */
export const DEFAULT_TIMEOUT_MS = 5_000;

/** RFC 6455 §1.3: the GUID every `Sec-WebSocket-Accept` is derived with. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const encoder = new TextEncoder();
// ignoreBOM: a message that starts with U+FEFF must read back with it.
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const latin1 = new TextDecoder("latin1");

/** Frame opcodes (RFC 6455 §5.2), spelled out here so tests do not depend on the library. */
export const OP = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

/** One decoded server frame. */
export interface Frame {
  /** The FIN bit. */
  fin: boolean;
  /** The RSV bits as they sit in the first byte (0x40 = RSV1). */
  rsv: number;
  /** The opcode. */
  opcode: number;
  /** The payload (server frames are never masked). */
  payload: Uint8Array;
}

/** The head of an HTTP response: status line, status code, headers, and what followed the head. */
export interface ResponseHead {
  /** The status line without CRLF, e.g. `HTTP/1.1 101 Switching Protocols`. */
  statusLine: string;
  /** The status code. */
  status: number;
  /** The response headers. */
  headers: Headers;
  /** Bytes received after CRLF CRLF in the same reads (for a 101: the first frames). */
  leftover: Uint8Array;
}

/** A complete HTTP response read until the server closed the connection. */
export interface HttpResponse extends ResponseHead {
  /** Every byte after the head, until EOF. */
  body: Uint8Array;
  /** {@linkcode HttpResponse.body} decoded as UTF-8. */
  text: string;
}

/** What {@linkcode buildUpgradeRequest} puts in the request; every field has a valid default. */
export interface UpgradeRequestOptions {
  /** Request method. Default `GET`. */
  method?: string;
  /** Request target. Default `/`. */
  path?: string;
  /** HTTP version after `HTTP/`. Default `1.1`. */
  httpVersion?: string;
  /** `Host` value; `null` leaves the header out. Default `127.0.0.1`. */
  host?: string | null;
  /** `Sec-WebSocket-Key`; `null` leaves it out. Default: a fixed valid key. */
  key?: string | null;
  /** `Sec-WebSocket-Version`; `null` leaves it out. Default `13`. */
  version?: string | null;
  /** Offered subprotocols, sent as one `Sec-WebSocket-Protocol` header. */
  protocols?: string[];
  /** Further header lines, in order. */
  headers?: [string, string][];
}

/** The key used when a test does not choose one (the RFC 6455 §1.3 example). */
export const DEFAULT_KEY = "dGhlIHNhbXBsZSBub25jZQ==";

/** The `Sec-WebSocket-Accept` a server must answer for `key` (RFC 6455 §4.2.2). */
export function expectedAccept(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

/** Builds the text of an upgrade request head, ending with CRLF CRLF. */
export function buildUpgradeRequest(options: UpgradeRequestOptions = {}): string {
  const lines = [
    `${options.method ?? "GET"} ${options.path ?? "/"} HTTP/${options.httpVersion ?? "1.1"}`,
  ];
  const host = options.host === undefined ? "127.0.0.1" : options.host;
  if (host !== null) lines.push(`Host: ${host}`);
  lines.push("Upgrade: websocket", "Connection: Upgrade");
  const key = options.key === undefined ? DEFAULT_KEY : options.key;
  if (key !== null) lines.push(`Sec-WebSocket-Key: ${key}`);
  const version = options.version === undefined ? "13" : options.version;
  if (version !== null) lines.push(`Sec-WebSocket-Version: ${version}`);
  if (options.protocols !== undefined) {
    lines.push(`Sec-WebSocket-Protocol: ${options.protocols.join(", ")}`);
  }
  for (const [name, value] of options.headers ?? []) lines.push(`${name}: ${value}`);
  return lines.join("\r\n") + "\r\n\r\n";
}

/** Finds CRLF CRLF in `bytes`; returns the index just past it, or -1. */
function headEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 4 <= bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i + 4;
    }
  }
  return -1;
}

/** Races `promise` against a timer that rejects after `ms`; the timer is always cleared. */
export async function withTimeout<V>(
  promise: Promise<V>,
  ms: number,
  what: string,
): Promise<V> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** How the server ended the connection, as seen by {@linkcode RawClient.expectEnd}. */
export type Ending = "eof" | "reset";

/**
 * A raw WebSocket client over one TCP connection. Incoming bytes are kept in
 * one buffer, so bytes that arrive with the 101 response are not lost: they
 * are returned as `leftover` and then read as frames.
 */
export class RawClient {
  /** The TCP connection. */
  readonly conn: Deno.TcpConn;
  #buffer: Uint8Array = new Uint8Array(0);
  #chunk = new Uint8Array(64 * 1024);
  #ended: Ending | null = null;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /** Connects to `port` on 127.0.0.1. */
  static async connect(port: number, hostname = "127.0.0.1"): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname, port }));
  }

  /** How the server ended the connection (`null` while it is open). */
  get ended(): Ending | null {
    return this.#ended;
  }

  /** Bytes received and not yet consumed by a read method. */
  get pending(): Uint8Array {
    return this.#buffer;
  }

  /** Writes all of `data` (a string is sent as UTF-8). */
  async write(data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /**
   * Writes `data` one byte per `write` call, pausing `pauseMs` after each so
   * that the server sees the bytes arrive separately rather than coalesced.
   */
  async writeBytewise(data: Uint8Array | string, pauseMs = 1): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    for (let i = 0; i < bytes.length; i++) {
      await this.write(bytes.subarray(i, i + 1));
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }

  /**
   * Reads once more into the buffer. Returns false at the end of the stream
   * (EOF or a reset). Throws, after closing the connection, when the deadline
   * passes first.
   */
  async #fill(deadline: number, what: string): Promise<boolean> {
    if (this.#ended !== null) return false;
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      this.close();
      throw new Error(`timed out waiting for ${what}`);
    }
    const read = this.conn.read(this.#chunk);
    // After a timeout the connection is closed and this read rejects: expected.
    read.catch(() => {});
    let n: number | null;
    try {
      n = await withTimeout(read, remaining, what);
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) {
        this.#ended = "reset";
        return false;
      }
      this.close();
      throw error;
    }
    if (n === null) {
      this.#ended = "eof";
      return false;
    }
    this.#buffer = concat(this.#buffer, this.#chunk.subarray(0, n));
    return true;
  }

  /** Ensures at least `count` unconsumed bytes; false if the stream ended first. */
  async #need(count: number, deadline: number, what: string): Promise<boolean> {
    while (this.#buffer.length < count) {
      if (!await this.#fill(deadline, what)) return false;
    }
    return true;
  }

  #take(count: number): Uint8Array {
    const bytes = this.#buffer.slice(0, count);
    this.#buffer = this.#buffer.subarray(count);
    return bytes;
  }

  /** Reads an HTTP response head; `leftover` holds what arrived after it (still unconsumed). */
  async readResponseHead(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ResponseHead> {
    const deadline = Date.now() + timeoutMs;
    let end: number;
    while ((end = headEnd(this.#buffer)) < 0) {
      if (!await this.#fill(deadline, "an HTTP response head")) {
        throw new Error(
          `connection ended (${this.#ended}) before a complete response head; got ${
            JSON.stringify(latin1.decode(this.#buffer))
          }`,
        );
      }
    }
    const lines = latin1.decode(this.#take(end)).split("\r\n").slice(0, -2);
    const statusLine = lines[0];
    const match = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine);
    assert.ok(match, `malformed status line ${JSON.stringify(statusLine)}`);
    const headers = new Headers();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      assert.ok(colon > 0, `malformed header line ${JSON.stringify(line)}`);
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    }
    return { statusLine, status: Number(match[1]), headers, leftover: this.#buffer.slice() };
  }

  /**
   * Reads a whole HTTP response until the server closes the connection
   * (a refused handshake), and checks that `Content-Length` matches the body.
   */
  async readHttpResponse(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<HttpResponse> {
    const deadline = Date.now() + timeoutMs;
    const head = await this.readResponseHead(timeoutMs);
    while (await this.#fill(deadline, "the end of an HTTP response")) {
      // Read until the server closes.
    }
    const body = this.#take(this.#buffer.length);
    const length = head.headers.get("content-length");
    if (length !== null) assert.equal(body.length, Number(length), "body length vs Content-Length");
    return { ...head, leftover: new Uint8Array(0), body, text: new TextDecoder().decode(body) };
  }

  /**
   * Reads exactly one HTTP response, delimited as RFC 9112 §6.3 says (no
   * body for HEAD, 1xx, 204 and 304; else `Content-Length`, `chunked`, or
   * until the server closes), and leaves what follows it unconsumed: for a
   * persistent connection, where the next response comes on the same bytes.
   */
  async readResponse(
    options: { method?: string; timeoutMs?: number } = {},
  ): Promise<HttpResponse> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const head = await this.readResponseHead(timeoutMs);
    const what = "an HTTP response body";
    let body: Uint8Array;
    const length = head.headers.get("content-length");
    const noBody = options.method === "HEAD" || head.status < 200 || head.status === 204 ||
      head.status === 304;
    if (noBody) {
      body = new Uint8Array(0);
    } else if (head.headers.get("transfer-encoding")?.toLowerCase() === "chunked") {
      const parts: Uint8Array[] = [];
      while (true) {
        const line = await this.readUntil("\r\n", Math.max(deadline - Date.now(), 1));
        const size = parseInt(line, 16);
        assert.ok(Number.isInteger(size), `bad chunk size line ${JSON.stringify(line)}`);
        if (size === 0) {
          await this.readUntil("\r\n", Math.max(deadline - Date.now(), 1));
          break;
        }
        if (!await this.#need(size + 2, deadline, what)) throw new Error("ended inside a chunk");
        parts.push(this.#take(size));
        const crlf = latin1.decode(this.#take(2));
        assert.equal(crlf, "\r\n", "chunk data must end in CRLF");
      }
      body = concat(...parts);
    } else if (length !== null) {
      if (!await this.#need(Number(length), deadline, what)) {
        throw new Error(`connection ended (${this.#ended}) inside a ${length}-byte body`);
      }
      body = this.#take(Number(length));
    } else {
      while (await this.#fill(deadline, "the end of a close-delimited body")) {
        // Read until the server closes.
      }
      body = this.#take(this.#buffer.length);
    }
    const text = new TextDecoder().decode(body);
    return { ...head, leftover: this.#buffer.slice(), body, text };
  }

  /** Reads exactly `count` bytes (as latin-1 text); throws if the stream ends first. */
  async readExactly(count: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    if (!await this.#need(count, deadline, `${count} bytes`)) {
      throw new Error(
        `connection ended (${this.#ended}) after ${this.#buffer.length} of ${count} bytes: ${
          JSON.stringify(latin1.decode(this.#buffer))
        }`,
      );
    }
    return latin1.decode(this.#take(count));
  }

  /**
   * Sends an upgrade request and reads the response, asserting a correct
   * `101 Switching Protocols` (status, `Upgrade`, `Connection` and the
   * `Sec-WebSocket-Accept` for the key sent).
   */
  async handshake(
    options: UpgradeRequestOptions = {},
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<ResponseHead> {
    await this.write(buildUpgradeRequest(options));
    return this.expectSwitchingProtocols(options.key ?? DEFAULT_KEY, timeoutMs);
  }

  /** Reads a response head and asserts it is a valid 101 for `key`. */
  async expectSwitchingProtocols(
    key: string = DEFAULT_KEY,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<ResponseHead> {
    const head = await this.readResponseHead(timeoutMs);
    assert.equal(head.statusLine, "HTTP/1.1 101 Switching Protocols");
    assert.equal(head.headers.get("upgrade")?.toLowerCase(), "websocket");
    assert.equal(head.headers.get("connection")?.toLowerCase(), "upgrade");
    assert.equal(head.headers.get("sec-websocket-accept"), expectedAccept(key));
    return head;
  }

  /**
   * Reads one server frame, asserting it is unmasked (RFC 6455 §5.1) and that
   * a control frame is final and at most 125 bytes.
   */
  async readFrame(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    const ended = () => new Error(`connection ended (${this.#ended}) before a complete frame`);
    if (!await this.#need(2, deadline, "a frame header")) throw ended();
    const b0 = this.#buffer[0];
    const b1 = this.#buffer[1];
    assert.equal(b1 & 0x80, 0, "server frames must not be masked");
    const len7 = b1 & 0x7f;
    const headerSize = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
    if (!await this.#need(headerSize, deadline, "a frame header")) throw ended();
    const view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset, headerSize);
    const length = len7 === 126
      ? view.getUint16(2)
      : len7 === 127
      ? Number(view.getBigUint64(2))
      : len7;
    if (len7 === 126) assert.ok(length >= 126, "16-bit length must be minimal");
    if (len7 === 127) assert.ok(length >= 0x10000, "64-bit length must be minimal");
    if (!await this.#need(headerSize + length, deadline, "a frame payload")) throw ended();
    this.#take(headerSize);
    const frame = {
      fin: (b0 & 0x80) !== 0,
      rsv: b0 & 0x70,
      opcode: b0 & 0x0f,
      payload: this.#take(length),
    };
    if (frame.opcode >= 0x8) {
      assert.ok(frame.fin, "control frames must not be fragmented");
      assert.ok(frame.payload.length <= 125, "control frame payload over 125 bytes");
    }
    return frame;
  }

  /**
   * Reads until `marker` (latin-1 text) has arrived; returns everything up to
   * and including it, as latin-1 text, and leaves the rest unconsumed.
   * Throws if the stream ends or the deadline passes first.
   */
  async readUntil(marker: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let at: number;
    while ((at = latin1.decode(this.#buffer).indexOf(marker)) < 0) {
      if (!await this.#fill(deadline, JSON.stringify(marker))) {
        throw new Error(
          `connection ended (${this.#ended}) before ${JSON.stringify(marker)}; got ${
            JSON.stringify(latin1.decode(this.#buffer))
          }`,
        );
      }
    }
    return latin1.decode(this.#take(at + marker.length));
  }

  /** Reads until the server closes the connection; returns what arrived, as latin-1 text. */
  async readToEnd(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (await this.#fill(deadline, "the end of the stream")) {
      // Keep reading.
    }
    return latin1.decode(this.#take(this.#buffer.length));
  }

  /**
   * Consumes `count` bytes of the stream as a slow reader would: at most
   * `chunk` bytes per read, pausing `pauseMs` after each. Throws if the
   * stream ends first.
   */
  async skipSlowly(
    count: number,
    chunk: number,
    pauseMs: number,
    timeoutMs = 30_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const buffered = Math.min(count, this.#buffer.length);
    this.#take(buffered);
    let left = count - buffered;
    const into = new Uint8Array(chunk);
    while (left > 0) {
      const read = this.conn.read(into.subarray(0, Math.min(chunk, left)));
      read.catch(() => {});
      const n = await withTimeout(read, deadline - Date.now(), "a slow read");
      if (n === null) throw new Error(`connection ended with ${left} bytes still to read`);
      left -= n;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }

  /**
   * Reads one frame and asserts it is a close frame with `code` (and, when
   * given, `reason`); returns the code and the reason, which must be UTF-8.
   */
  async expectClose(
    code: number,
    reason?: string,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<{ code: number; reason: string }> {
    const frame = await this.readFrame(timeoutMs);
    assert.equal(frame.opcode, OP.CLOSE, `expected a close frame, got opcode ${frame.opcode}`);
    assert.equal(frame.rsv, 0);
    assert.ok(frame.payload.length >= 2, "close frame without a code");
    const got = (frame.payload[0] << 8) | frame.payload[1];
    const text = strictDecoder.decode(frame.payload.subarray(2));
    assert.equal(got, code, `close code (reason ${JSON.stringify(text)})`);
    if (reason !== undefined) assert.equal(text, reason);
    return { code: got, reason: text };
  }

  /**
   * Waits until the server closes the connection, asserting that no further
   * byte arrives first. Returns how it ended: `"eof"` (FIN) or `"reset"`.
   * Pass `allowReset = false` to require a clean FIN.
   */
  async expectEnd(allowReset = false, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Ending> {
    const deadline = Date.now() + timeoutMs;
    while (await this.#fill(deadline, "the server to close the connection")) {
      // Keep reading: anything that arrives is reported below.
    }
    assert.equal(
      this.#buffer.length,
      0,
      `unexpected bytes before the end: [${this.#buffer.subarray(0, 32).join(", ")}]`,
    );
    const ending = this.#ended!;
    if (!allowReset) assert.equal(ending, "eof", "expected a clean FIN, got a reset");
    return ending;
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Lets `using client = await RawClient.connect(…)` close the connection. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Decodes a frame payload as strict UTF-8 (throws on invalid bytes). */
export function decodeText(bytes: Uint8Array): string {
  return strictDecoder.decode(bytes);
}
