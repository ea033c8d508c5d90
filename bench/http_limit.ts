/**
 * A yardstick for plain HTTP keep-alive: the fastest server plain
 * TypeScript can be on Deno's public API for `GET /small` (the small
 * response of bench/http_bench.ts). It does what any HTTP/1.1 server must
 * do at the least — find each request head's end, answer it with a status
 * line, a `Date`, the length and the body, keep the connection for the next
 * request — and nothing else: no parsing of the request line or headers, no
 * `Request` or `Response` objects, no limits, no validation. It is not a
 * server, only a measure of what Deno's `conn.read`/`conn.write` allow, as
 * wsbench's `deno_limit` is for WebSocket echo: the distance from it to
 * tsunagu is ours, the distance from it to `Deno.serve` is the runtime's
 * (hyper answers in Rust, with no JavaScript promise per read and write).
 *
 *   deno run -A bench/http_limit.ts PORT
 *
 * Per connection: read into one buffer, answer every complete head in it
 * with one write (several when pipelined), then read again; callbacks, no
 * async frames; nothing allocated per request but the runtime's promises.
 * Listens on 127.0.0.1. SIGTERM and SIGINT end it.
 *
 * @module
 */

const BUFFER_BYTES = 16 * 1024;
const BODY = "hello, world\n";
const encoder = new TextEncoder();

// The response with its Date, made again when the second changes (as
// Deno.serve and tsunagu do: a Date at most a second old).
let second = 0;
let response = new Uint8Array(0);
function currentResponse(): Uint8Array {
  const now = Math.floor(Date.now() / 1000);
  if (now !== second) {
    second = now;
    response = encoder.encode(
      "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" +
        `date: ${new Date(now * 1000).toUTCString()}\r\n` +
        `content-length: ${BODY.length}\r\n\r\n${BODY}`,
    );
  }
  return response;
}

/** Where the first "\r\n\r\n" at or after `from` ends, or -1. */
function headEnd(buf: Uint8Array, from: number, to: number): number {
  for (let i = from + 3; i < to; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) return i + 1;
  }
  return -1;
}

class Peer {
  conn: Deno.TcpConn;
  buf = new Uint8Array(BUFFER_BYTES);
  filled = 0;
  out: Uint8Array = new Uint8Array(0);
  outAt = 0;
  onRead = (n: number | null) => this.#read(n);
  onWritten = (n: number) => this.#written(n);
  onFailed = () => this.end();

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  end(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  read(): void {
    if (this.filled === this.buf.length) return this.end();
    this.conn.read(this.buf.subarray(this.filled)).then(this.onRead, this.onFailed);
  }

  #read(n: number | null): void {
    if (n === null || n === 0) return this.end();
    const buf = this.buf;
    const before = this.filled;
    const filled = this.filled = before + n;
    let at = 0;
    let answers = 0;
    let end: number;
    while ((end = headEnd(buf, Math.max(at, before - 3), filled)) !== -1) {
      answers++;
      at = end;
    }
    if (at > 0) {
      buf.copyWithin(0, at, filled);
      this.filled = filled - at;
    }
    if (answers === 0) return this.read();
    const one = currentResponse();
    let out = one;
    if (answers > 1) {
      out = new Uint8Array(one.length * answers);
      for (let i = 0; i < answers; i++) out.set(one, i * one.length);
    }
    this.out = out;
    this.outAt = 0;
    this.conn.write(out).then(this.onWritten, this.onFailed);
  }

  #written(n: number): void {
    this.outAt += n;
    if (this.outAt < this.out.length) {
      this.conn.write(this.out.subarray(this.outAt)).then(this.onWritten, this.onFailed);
      return;
    }
    this.read();
  }
}

const port = Number(Deno.args[0]);
if (!Number.isInteger(port)) {
  console.error("usage: http_limit.ts PORT");
  Deno.exit(2);
}
const listener = Deno.listen({ hostname: "127.0.0.1", port });
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(signal, () => listener.close());
}
try {
  for await (const conn of listener) {
    conn.setNoDelay(true);
    new Peer(conn).read();
  }
} catch {
  // The listener was closed: the process ends.
}
