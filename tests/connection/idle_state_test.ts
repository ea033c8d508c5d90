/**
 * State an idle connection does without (bench/RESULTS.md, idle memory):
 * the writer, the closing record and the socket's listener state are made
 * on first use, and the upgrade request's headers may be kept as the head's
 * text. These check that what the application sees is the same either way.
 */

import assert from "node:assert/strict";
import { ByteReader } from "../../src/connection/byte_reader.ts";
import { Connection, type ConnectionHost } from "../../src/connection/connection.ts";
import { CONNECTION_DEFAULTS } from "../../src/connection/options.ts";
import type { SharedMessage } from "../../src/connection/shared_message.ts";
import { decodeRequestHead } from "../../src/protocol/handshake.ts";

const HEAD = "GET /chat?room=a HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n" +
  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
  "Sec-WebSocket-Version: 13\r\nX-Custom: one\r\nx-custom: two\r\n\r\n";

/** A TCP connection that accepts every write and whose reads wait until it is closed. */
class QuietConn {
  written: Uint8Array[] = [];
  closed = false;
  #pendingReads: ((n: number | null) => void)[] = [];
  readonly remoteAddr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };
  readonly localAddr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 2 };

  write(bytes: Uint8Array): Promise<number> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    this.written.push(bytes.slice());
    return Promise.resolve(bytes.length);
  }

  read(_buffer: Uint8Array): Promise<number | null> {
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => this.#pendingReads.push(resolve));
  }

  closeWrite(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    this.closed = true;
    for (const resolve of this.#pendingReads.splice(0)) resolve(null);
  }
}

interface Setup {
  handlers?: ConnectionHost<undefined>["handlers"];
  headers?: Headers | string;
  url?: string;
  /** Whether a handler error reported to the host fails the test. */
  strict?: boolean;
}

/** A Connection over `conn` with a stand-in host that records the close codes its socket reports. */
function connect<C extends QuietConn>(conn: C, setup: Setup = {}) {
  const closes: number[] = [];
  const host: ConnectionHost<undefined> = {
    options: CONNECTION_DEFAULTS,
    handlers: setup.handlers ?? {},
    owner: null,
    now: Date.now(),
    connectionClosed() {},
    socketClosed(_connection, code) {
      closes.push(code);
    },
    setSubscribed() {},
    publishFrame(_topic: string, _message: SharedMessage) {
      return 0;
    },
    reportError(error) {
      if (setup.strict) throw error;
    },
  };
  const reader = new ByteReader(conn as unknown as Deno.Conn, {
    initialSize: 256,
    settledSize: 256,
    maxSize: 256 * 1024,
    mode: "read",
  });
  const connection = new Connection<undefined>(host, {
    conn: conn as unknown as Deno.Conn,
    reader,
    url: setup.url ?? "ws://example.test/",
    protocol: "",
    headers: setup.headers ?? new Headers(),
    data: undefined,
  });
  return { conn, connection, closes };
}

function open(headers: Headers | string) {
  return connect(new QuietConn(), { headers, url: "ws://example.test/chat?room=a", strict: true });
}

Deno.test("headers kept as the head's text parse on first use, repeated fields joined", () => {
  const { connection } = open(decodeRequestHead(new TextEncoder().encode(HEAD)));
  const headers = connection.socket.headers;
  assert.equal(headers.get("host"), "example.test");
  assert.equal(headers.get("x-custom"), "one, two");
  assert.equal(headers.get("sec-websocket-version"), "13");
  // Parsed once: the same object every time.
  assert.equal(connection.socket.headers, headers);
});

Deno.test("headers given as Headers are used as they are", () => {
  const given = new Headers({ b: "2" });
  const { connection } = open(given);
  assert.equal(connection.socket.headers.get("b"), "2");
  assert.equal(connection.socket.headers, given);
});

Deno.test("a connection that never wrote: counters at zero, drained at once, then writes on demand", async () => {
  const { conn, connection } = open(new Headers());
  assert.equal(connection.bytesSent, 0);
  assert.equal(connection.bufferedAmount, 0);
  assert.equal(connection.socket.bufferedAmount, 0);
  assert.equal(connection.closeDeadline, 0);
  await connection.drained();
  assert.equal(connection.send("hello"), true);
  assert.equal(connection.bufferedAmount, 7); // 2-byte header + 5 bytes
  await connection.drained();
  assert.equal(connection.bytesSent, 7);
  assert.deepEqual([...conn.written[0]], [0x81, 5, ...new TextEncoder().encode("hello")]);
  connection.terminate();
});

Deno.test("closing sets the close deadline; after the end nothing more is written", async () => {
  const { conn, connection, closes } = open(new Headers());
  const before = Date.now();
  connection.close(1000, "bye");
  assert.ok(connection.closeDeadline >= before + CONNECTION_DEFAULTS.closeTimeout);
  assert.equal(connection.socket.readyState, 2);
  await connection.drained();
  assert.deepEqual([...conn.written[0].subarray(0, 4)], [0x88, 5, 0x03, 0xe8]);
  connection.terminate();
  assert.deepEqual(closes, [1006]); // dropped before the peer answered
  assert.equal(connection.socket.readyState, 3);
  assert.equal(connection.send("late"), false);
  assert.equal(connection.ping(), false);
});

Deno.test("a connection dropped before it ever wrote sends nothing afterwards", async () => {
  const { conn, connection, closes } = open(new Headers());
  connection.terminate();
  assert.deepEqual(closes, [1006]);
  assert.equal(connection.send("x"), false);
  connection.close(); // no effect once closed
  await connection.drained();
  assert.equal(conn.written.length, 0);
  assert.equal(connection.bytesSent, 0);
});

Deno.test("socket listener state: handler properties, listeners and closed", async () => {
  const { connection } = open(new Headers());
  const socket = connection.socket;
  assert.equal(socket.onmessage, null);
  assert.equal(socket.onclose, null);
  socket.onclose = null; // setting null on a fresh socket is harmless
  const events: string[] = [];
  const onclose = () => events.push("onclose");
  socket.onclose = onclose;
  assert.equal(socket.onclose, onclose);
  const listener = () => events.push("listener");
  socket.addEventListener("close", listener);
  socket.removeEventListener("close", listener);
  const closed = socket.closed;
  assert.equal(socket.closed, closed);
  connection.terminate();
  const info = await closed;
  assert.equal(info.code, 1006);
  assert.deepEqual(events, ["onclose"]);
  // Once closed, `closed` of a socket that never asked resolves at once.
  const other = open(new Headers()).connection;
  other.terminate();
  assert.equal((await other.socket.closed).code, 1006);
});

/** A TCP connection whose reads hand out queued byte chunks, one per read, then wait. */
class FeedConn extends QuietConn {
  #chunks: Uint8Array[] = [];
  #waiting: ((n: number | null) => void) | null = null;
  #buffer: Uint8Array | null = null;

  feed(bytes: Uint8Array): void {
    this.#chunks.push(bytes);
    if (this.#waiting !== null) {
      const resolve = this.#waiting;
      this.#waiting = null;
      resolve(this.#take(this.#buffer!));
    }
  }

  override read(buffer: Uint8Array): Promise<number | null> {
    if (this.closed) return Promise.resolve(null);
    if (this.#chunks.length > 0) return Promise.resolve(this.#take(buffer));
    this.#buffer = buffer;
    return new Promise((resolve) => this.#waiting = resolve);
  }

  override close(): void {
    super.close();
    this.#waiting?.(null);
    this.#waiting = null;
  }

  #take(buffer: Uint8Array): number {
    const chunk = this.#chunks.shift()!;
    buffer.set(chunk);
    return chunk.length;
  }
}

/** A masked client frame (mask 0x01020304). */
function masked(first: number, payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(6 + payload.length);
  frame[0] = first;
  frame[1] = 0x80 | payload.length;
  frame.set([1, 2, 3, 4], 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i] ^ (i % 4 + 1);
  return frame;
}

function openFed(handlers: ConnectionHost<undefined>["handlers"]) {
  const opened = connect(new FeedConn(), { handlers });
  return { ...opened, loop: opened.connection.run() };
}

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("the first frame reaches the message assembler made for it; later ones go straight there", async () => {
  const got: unknown[] = [];
  const { conn, connection, loop } = openFed({
    message(_socket, data) {
      got.push(data);
    },
  });
  // Two messages in one read, then a fragmented one over two reads.
  const one = masked(0x81, text("one"));
  const two = masked(0x82, new Uint8Array([1, 2]));
  const both = new Uint8Array(one.length + two.length);
  both.set(one);
  both.set(two, one.length);
  conn.feed(both);
  conn.feed(masked(0x01, text("thr")));
  conn.feed(masked(0x80, text("ee")));
  conn.feed(masked(0x89, text("p"))); // ping: answered with a pong
  await waitFor(() => conn.written.length > 0);
  assert.deepEqual(got, ["one", new Uint8Array([1, 2]), "three"]);
  assert.deepEqual([...conn.written[0]], [0x8a, 1, 0x70]);
  connection.terminate();
  await loop;
});

Deno.test("a bad first header fails the connection with 1002 (the stand-in hands on the error)", async () => {
  const got: unknown[] = [];
  const { conn, closes, loop } = openFed({
    message(_socket, data) {
      got.push(data);
    },
  });
  // Unmasked: a client must mask every frame.
  conn.feed(new Uint8Array([0x81, 1, 0x61]));
  await waitFor(() => closes.length > 0 || conn.written.length > 0);
  const close = conn.written[0];
  assert.deepEqual([close[0], close[2], close[3]], [0x88, 0x03, 0xea]); // close, 1002
  conn.close();
  await loop;
  assert.deepEqual(closes, [1002]);
  assert.deepEqual(got, []);
});

Deno.test("frames after the connection failed before its first frame are not delivered", async () => {
  const got: unknown[] = [];
  const { conn, closes, loop } = openFed({
    open() {
      throw new Error("open failed"); // 1011 before any frame arrived
    },
    message(_socket, data) {
      got.push(data);
    },
  });
  conn.feed(masked(0x81, text("late")));
  await waitFor(() => conn.written.length > 0);
  assert.equal(conn.written[0][0], 0x88);
  conn.close();
  await loop;
  assert.deepEqual(got, []);
  assert.deepEqual(closes, [1011]);
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(condition(), "timed out");
}
