/**
 * Plain HTTP responses from the `fetch` handler: a streamed body (server-sent
 * events, a file) goes out as it is produced, with the framing HTTP/1.1
 * allows (Content-Length when known, chunked otherwise, close-delimited for
 * HTTP/1.0); a body that fails, breaks its declared length, or loses its
 * client ends the connection and cancels the producer; shutdown ends
 * endless streams. Checked byte for byte with a raw TCP client.
 */

import assert from "node:assert/strict";
import { encodeResponseHead } from "../../src/protocol/handshake.ts";
import { encodeChunk } from "../../src/server/response_writer.ts";
import { RawClient, withTimeout } from "../helpers/raw_client.ts";
import { delay, startServer, waitUntil } from "../helpers/harness.ts";

const encoder = new TextEncoder();
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** A response body the test feeds piece by piece; records a cancel. */
class Feed {
  cancelled = false;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly stream: ReadableStream<Uint8Array> = new ReadableStream({
    start: (controller) => void (this.#controller = controller),
    cancel: () => void (this.cancelled = true),
  });

  push(text: string): void {
    this.#controller.enqueue(encoder.encode(text));
  }

  end(): void {
    this.#controller.close();
  }

  fail(): void {
    this.#controller.error(new Error("the producer failed"));
  }
}

/** A server whose fetch handler answers every request with a fresh Feed (kept in `feeds`). */
function feedServer(init: (feed: Feed, request: Request) => ResponseInit = () => ({})) {
  const feeds: Feed[] = [];
  const h = startServer({ handshakeTimeout: 200 }, {
    fetch(request) {
      const feed = new Feed();
      feeds.push(feed);
      return new Response(feed.stream, init(feed, request));
    },
  });
  return { ...h, feeds };
}

/**
 * Sends a request that asks to close the connection after its response, so
 * a test can read the response to the end of the stream (keep-alive has its
 * own tests, in keep_alive_test.ts).
 */
async function request(port: number, head: string): Promise<RawClient> {
  const raw = await RawClient.connect(port);
  await raw.write(`${head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  return raw;
}

Deno.test("encodeChunk: hex size, CRLF, the bytes, CRLF; nothing for no bytes", () => {
  assert.equal(decode(encodeChunk(encoder.encode("hello"))), "5\r\nhello\r\n");
  const big = decode(encodeChunk(new Uint8Array(300)));
  assert.ok(big.startsWith("12c\r\n") && big.endsWith("\r\n") && big.length === 300 + 7);
  assert.equal(encodeChunk(new Uint8Array(0)).length, 0, "an empty chunk would end the body");
});

Deno.test("encodeResponseHead: the framing is the server's, never the application's", () => {
  const headers: [string, string][] = [
    ["Content-Length", "999"],
    ["Transfer-Encoding", "gzip"],
    ["X-Kind", "test"],
  ];
  const head = (framing: number | "chunked" | null) =>
    decode(encodeResponseHead(200, headers, framing));
  assert.match(head(12), /\r\nContent-Length: 12\r\n/);
  assert.doesNotMatch(head(12), /999|gzip|Transfer-Encoding/);
  assert.match(head("chunked"), /\r\nTransfer-Encoding: chunked\r\n/);
  assert.doesNotMatch(head("chunked"), /Content-Length/);
  assert.doesNotMatch(head(null), /Content-Length|Transfer-Encoding/);
  assert.ok(head(null).endsWith("X-Kind: test\r\nConnection: close\r\n\r\n"));
});

Deno.test("a range answer's status line says 206 Partial Content; 412 and 416 are named too", async () => {
  const { server, port } = startServer({}, {
    fetch(request) {
      const status = Number(new URL(request.url).searchParams.get("status"));
      return new Response(status === 206 ? "ab" : null, { status });
    },
  });
  try {
    for (
      const [status, line] of [
        [206, "HTTP/1.1 206 Partial Content"],
        [412, "HTTP/1.1 412 Precondition Failed"],
        [416, "HTTP/1.1 416 Range Not Satisfiable"],
        [299, "HTTP/1.1 299 "],
      ] as const
    ) {
      const raw = await RawClient.connect(port);
      try {
        await raw.write(
          `GET /?status=${status} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
        );
        const head = await raw.readResponseHead();
        assert.equal(head.statusLine, line);
      } finally {
        raw.close();
      }
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("server-sent events: each event reaches the client when it is produced", async () => {
  const h = feedServer(() => ({ headers: { "content-type": "text/event-stream" } }));
  try {
    using raw = await request(h.port, "GET /events HTTP/1.1");
    const head = await raw.readResponseHead();
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "text/event-stream");
    assert.equal(head.headers.get("transfer-encoding"), "chunked");
    assert.equal(head.headers.get("content-length"), null);
    const feed = h.feeds[0];
    feed.push("data: one\n\n");
    assert.equal(await raw.readUntil("\n\n\r\n"), "b\r\ndata: one\n\n\r\n");
    // Well past handshakeTimeout (200 ms): the request deadline is over once
    // the request has arrived; a long-lived stream is not cut off.
    await delay(600);
    feed.push("data: two\n\n");
    assert.equal(await raw.readUntil("\n\n\r\n"), "b\r\ndata: two\n\n\r\n");
    feed.end();
    assert.equal(await raw.readToEnd(), "0\r\n\r\n");
    assert.equal(raw.ended, "eof");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a client that leaves mid-stream cancels the body, and the server goes on", async () => {
  const h = feedServer();
  try {
    const raw = await request(h.port, "GET / HTTP/1.1");
    await raw.readResponseHead();
    const feed = h.feeds[0];
    feed.push("first");
    await raw.readUntil("first\r\n");
    raw.close();
    // Writes to the closed connection fail within a few pieces.
    for (let i = 0; i < 100 && !feed.cancelled; i++) {
      feed.push("more");
      await delay(10);
    }
    assert.ok(feed.cancelled, "the producer was told nobody listens");
    using again = await request(h.port, "GET / HTTP/1.1");
    assert.equal((await again.readResponseHead()).status, 200);
    h.feeds[1].push("still serving");
    h.feeds[1].end();
    assert.equal(await again.readToEnd(), "d\r\nstill serving\r\n0\r\n\r\n");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("request.signal aborts when the client leaves before the response, not after it", async () => {
  const signals: AbortSignal[] = [];
  let release = () => {};
  const slowWork = new Promise<void>((resolve) => release = resolve);
  const { server, port } = startServer({}, {
    async fetch(request) {
      if (new URL(request.url).pathname === "/slow") {
        signals.push(request.signal);
        await slowWork; // the client leaves meanwhile
        return new Response("too late");
      }
      const signal = request.signal;
      signals.push(signal);
      return new Response("quick");
    },
  });
  try {
    // Answered and kept alive: its signal never aborts.
    const fast = await RawClient.connect(port);
    await fast.write("GET /fast HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert.equal((await fast.readResponseHead()).status, 200);
    // The client leaves while the handler works: its signal aborts.
    const leaving = await RawClient.connect(port);
    await leaving.write("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    await waitUntil(() => signals.length === 2, "the slow request reached the handler");
    const aborted = new Promise((resolve) => signals[1].addEventListener("abort", resolve));
    leaving.close();
    await withTimeout(aborted, 5_000, "the slow request's signal to abort");
    assert.equal(signals[1].aborted, true);
    assert.equal((signals[1].reason as DOMException).name, "AbortError");
    fast.close();
    await delay(50);
    assert.equal(signals[0].aborted, false, "a completed request's signal aborted");
  } finally {
    release();
    await server.shutdown();
  }
});

Deno.test("shutdown ends an endless stream after its timeout and cancels its producer", async () => {
  const h = feedServer();
  using raw = await request(h.port, "GET / HTTP/1.1");
  await raw.readResponseHead();
  h.feeds[0].push("tick");
  await raw.readUntil("tick\r\n");
  // A response being sent gets the shutdown timeout to finish; this one never does.
  const started = Date.now();
  await h.server.shutdown({ timeout: 300 });
  await h.server.finished;
  assert.ok(Date.now() - started < 2_000, "ended at the timeout");
  assert.ok(h.feeds[0].cancelled);
  await raw.readToEnd();
  assert.notEqual(raw.ended, null, "the connection is closed");
});

Deno.test("a declared Content-Length is kept and enforced for a streamed body", async () => {
  const h = feedServer((_, request) => ({
    headers: { "content-length": new URL(request.url).searchParams.get("length")! },
  }));
  try {
    // Exactly as declared: sent with that length, pieces as they come.
    using exact = await request(h.port, "GET /?length=6 HTTP/1.1");
    let head = await exact.readResponseHead();
    assert.equal(head.headers.get("content-length"), "6");
    assert.equal(head.headers.get("transfer-encoding"), null);
    h.feeds[0].push("abc");
    assert.equal(await exact.readUntil("abc"), "abc");
    h.feeds[0].push("def");
    h.feeds[0].end();
    assert.equal(await exact.readToEnd(), "def");
    assert.equal(exact.ended, "eof");

    // Longer than declared: the declared bytes, then the connection closes.
    using long = await request(h.port, "GET /?length=5 HTTP/1.1");
    head = await long.readResponseHead();
    assert.equal(head.headers.get("content-length"), "5");
    h.feeds[1].push("0123456789");
    assert.equal(await long.readToEnd(), "01234");
    await waitUntil(() => h.feeds[1].cancelled, "the rest of the body is cancelled");

    // Shorter: the client sees the connection end before the length.
    using short = await request(h.port, "GET /?length=10 HTTP/1.1");
    await short.readResponseHead();
    h.feeds[2].push("abc");
    await short.readUntil("abc");
    h.feeds[2].end();
    assert.equal(await short.readToEnd(), "");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("an HTTP/1.0 client gets a streamed body that ends with the connection", async () => {
  const h = feedServer();
  try {
    using raw = await request(h.port, "GET / HTTP/1.0");
    const head = await raw.readResponseHead();
    assert.equal(head.headers.get("transfer-encoding"), null, "1.0 clients do not know chunked");
    assert.equal(head.headers.get("content-length"), null);
    h.feeds[0].push("old ");
    await raw.readUntil("old ");
    h.feeds[0].push("school");
    h.feeds[0].end();
    assert.equal(await raw.readToEnd(), "school");
    assert.equal(raw.ended, "eof");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a body that fails mid-stream ends the connection without the last chunk", async () => {
  const h = feedServer();
  try {
    using raw = await request(h.port, "GET / HTTP/1.1");
    await raw.readResponseHead();
    h.feeds[0].push("partial");
    await raw.readUntil("partial\r\n");
    h.feeds[0].fail();
    assert.equal(await raw.readToEnd(), "", "no 0-size chunk: the client can tell it is cut short");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("HEAD and 204: no body; the length only when it is known", async () => {
  const h = startServer({}, {
    fetch(request) {
      const path = new URL(request.url).pathname;
      if (path === "/empty") return new Response(null, { status: 204 });
      if (path === "/known") return new Response("twelve bytes");
      return new Response(new Feed().stream);
    },
  });
  try {
    using known = await request(h.port, "HEAD /known HTTP/1.1");
    let head = await known.readResponseHead();
    assert.equal(head.headers.get("content-length"), "12", "the length GET would send");
    assert.equal(await known.readToEnd(), "");

    using endless = await request(h.port, "HEAD /endless HTTP/1.1");
    head = await endless.readResponseHead();
    assert.equal(head.headers.get("content-length"), null);
    assert.equal(head.headers.get("transfer-encoding"), null);
    assert.equal(await endless.readToEnd(), "");

    using empty = await request(h.port, "GET /empty HTTP/1.1");
    head = await empty.readResponseHead();
    assert.equal(head.status, 204);
    assert.equal(head.headers.get("content-length"), null, "204 carries no Content-Length");
    assert.equal(await empty.readToEnd(), "");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a client that stops reading a response is dropped after idleTimeout", async () => {
  let cancelled = false;
  const h = startServer({ idleTimeout: 300 }, {
    fetch: () =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull: (controller) => controller.enqueue(new Uint8Array(64 * 1024)),
          cancel: () => void (cancelled = true),
        }),
      ),
  });
  try {
    // Never reads: the server's writes stop making progress once the socket
    // buffers are full, and the stalled response must not be kept forever.
    using _raw = await request(h.port, "GET /download HTTP/1.1");
    await waitUntil(() => cancelled, "the stalled response is cut off", 5_000);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a client that leaves an idle stream is noticed at once, without a write", async () => {
  const h = feedServer();
  try {
    const raw = await request(h.port, "GET /events HTTP/1.1");
    await raw.readResponseHead();
    raw.close();
    await waitUntil(() => h.feeds[0].cancelled, "the producer is cancelled");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a streamed refusal from the upgrade hook is not cut at handshakeTimeout", async () => {
  const feed = new Feed();
  const h = startServer({ handshakeTimeout: 200 }, {
    upgrade: () => new Response(feed.stream, { status: 403 }),
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert.equal((await raw.readResponseHead()).status, 403);
    await delay(500);
    feed.push("late but wanted");
    feed.end();
    assert.equal(await raw.readToEnd(), "f\r\nlate but wanted\r\n0\r\n\r\n");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("bad bodies: chunks that are not bytes cut the response; a used body is a 500", async () => {
  const h = startServer({}, {
    async fetch(request) {
      const path = new URL(request.url).pathname;
      if (path === "/text-chunks") {
        // What a type-unchecked handler might produce: strings, not bytes.
        const strings = new ReadableStream<string>({ start: (c) => c.enqueue("not bytes") });
        return new Response(strings as unknown as ReadableStream<Uint8Array>);
      }
      const used = new Response("read already");
      await used.text();
      return used;
    },
  });
  try {
    using text = await request(h.port, "GET /text-chunks HTTP/1.1");
    assert.equal(await text.readToEnd(), "", "nothing sent rather than wrong bytes");
    using used = await request(h.port, "GET /used HTTP/1.1");
    assert.equal((await used.readResponseHead()).status, 500);
    await waitUntil(() => h.errors.length === 1, "the error handler");
    // The cut response counts under the status it started with; the used
    // body once, as the 500 it became (not also as the handler's 200).
    assert.deepEqual(h.server.metrics().httpResponses, { 200: 1, 500: 1 });
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("HEAD with a null body keeps the Content-Length the handler declared", async () => {
  const h = startServer({}, {
    fetch: () => new Response(null, { headers: { "content-length": "1234" } }),
  });
  try {
    using raw = await request(h.port, "HEAD /file HTTP/1.1");
    assert.equal((await raw.readResponseHead()).headers.get("content-length"), "1234");
    assert.equal(await raw.readToEnd(), "");
  } finally {
    await h.server.shutdown();
  }
});
