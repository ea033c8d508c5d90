/**
 * Plain HTTP request bodies: streamed to the handler as `request.body`
 * (Content-Length or chunked), pulled from the socket only as the handler
 * reads, `Expect: 100-continue`, the default cap and a handler raising it
 * for a streamed upload, unread bodies drained or the connection closed,
 * a stalled body (408), and every request smuggling shape refused with 400
 * (or 501) and a closed connection, never a second request read out of a
 * body. Raw TCP for the wire, Deno's fetch for the common cases.
 */

import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw_client.ts";
import { delay, startServer, waitUntil } from "../helpers/harness.ts";
import type { RequestInfo } from "../../mod.ts";

const encoder = new TextEncoder();

/** A server echoing each request as `METHOD PATH BODY`; `seen` records the paths in order. */
function echoServer(options = {}) {
  const seen: string[] = [];
  const h = startServer(options, {
    async fetch(request) {
      const path = new URL(request.url).pathname;
      seen.push(path);
      const body = request.body === null ? "" : await request.text();
      return new Response(`${request.method} ${path} ${body}`);
    },
  });
  return { ...h, seen };
}

const HOST = "Host: 127.0.0.1\r\n";

Deno.test("body: Content-Length and chunked bodies reach the handler; the next request follows", async () => {
  const h = echoServer();
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(`POST /length HTTP/1.1\r\n${HOST}Content-Length: 11\r\n\r\nhello world`);
    assert.equal((await raw.readResponse()).text, "POST /length hello world");
    // Extensions, a trailer field, hex sizes in both cases.
    await raw.write(
      `PUT /chunked HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n` +
        "5;name=value\r\nhello\r\nA\r\n, chunked!\r\n0\r\nX-Checksum: 42\r\n\r\n",
    );
    assert.equal((await raw.readResponse()).text, "PUT /chunked hello, chunked!");
    // Byte by byte: the decoder keeps its place across reads.
    await raw.writeBytewise(
      `POST /slow HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
      0,
    );
    assert.equal((await raw.readResponse()).text, "POST /slow abc");
    await raw.write(`GET /after HTTP/1.1\r\n${HOST}\r\n`);
    assert.equal((await raw.readResponse()).text, "GET /after ");
    assert.deepEqual(h.seen, ["/length", "/chunked", "/slow", "/after"]);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("body: Deno's fetch sends a stream body chunked; it arrives whole", async () => {
  const h = echoServer();
  try {
    const pieces = ["one ", "two ", "three"];
    const body = ReadableStream.from(pieces.map((piece) => encoder.encode(piece)));
    const response = await fetch(`http://127.0.0.1:${h.port}/stream`, { method: "POST", body });
    assert.equal(await response.text(), "POST /stream one two three");
    const json = await fetch(`http://127.0.0.1:${h.port}/json`, {
      method: "POST",
      body: JSON.stringify({ a: 1 }),
    });
    assert.equal(await json.text(), 'POST /json {"a":1}');
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("100-continue: sent when the handler reads the body, never when it does not", async () => {
  const h = startServer({}, {
    async fetch(request) {
      const path = new URL(request.url).pathname;
      if (path === "/refuse") return new Response("no thanks", { status: 403 });
      await delay(50);
      return new Response(`got ${await request.text()}`);
    },
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(
      `POST /upload HTTP/1.1\r\n${HOST}Content-Length: 4\r\nExpect: 100-continue\r\n\r\n`,
    );
    // The client waits; the server asks for the body once the handler reads it.
    assert.equal(await raw.readExactly(25), "HTTP/1.1 100 Continue\r\n\r\n");
    await raw.write("data");
    const response = await raw.readResponse();
    assert.equal(response.status, 200);
    assert.equal(response.text, "got data");
    assert.equal(response.headers.get("connection"), null, "still persistent");

    // A handler that answers without reading: the final status, no 100, and
    // the connection closes (the client may or may not send the body).
    using refused = await RawClient.connect(h.port);
    await refused.write(
      `POST /refuse HTTP/1.1\r\n${HOST}Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n`,
    );
    const refusal = await refused.readResponse();
    assert.equal(refusal.status, 403);
    assert.equal(refusal.headers.get("connection"), "close");
    await refused.expectEnd(true);

    // Any other expectation: 417.
    using odd = await RawClient.connect(h.port);
    await odd.write(`POST /x HTTP/1.1\r\n${HOST}Content-Length: 1\r\nExpect: teapot\r\n\r\nx`);
    assert.equal((await odd.readHttpResponse()).status, 417);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("body: over maxBodyBytes gets 413 unless the handler raises the limit and streams", async () => {
  const MiB = 1024 * 1024;
  const h = startServer({ maxBodyBytes: MiB }, {
    async fetch(request, info) {
      const path = new URL(request.url).pathname;
      if (path === "/buffered") {
        return new Response(String((await request.arrayBuffer()).byteLength));
      }
      // An upload route that streams: this request may carry 64 MiB.
      info.maxBodyBytes = 64 * MiB;
      let size = 0;
      for await (const piece of request.body!) size += piece.length;
      return new Response(String(size));
    },
  });
  try {
    const url = `http://127.0.0.1:${h.port}`;
    const big = new Uint8Array(8 * MiB).fill(7);
    const streamed = await fetch(`${url}/upload`, { method: "POST", body: big });
    assert.equal(await streamed.text(), String(8 * MiB));
    // The same body where the handler buffers it under the default cap.
    const buffered = await fetch(`${url}/buffered`, { method: "POST", body: big });
    assert.equal(buffered.status, 413);
    await buffered.body?.cancel();
    // A chunked body past the cap: 413 once the cap is passed.
    const chunks = ReadableStream.from([big.subarray(0, MiB), big.subarray(MiB, 2 * MiB)]);
    const chunked = await fetch(`${url}/buffered`, { method: "POST", body: chunks });
    assert.equal(chunked.status, 413);
    await chunked.body?.cancel();
    // Under the cap: fine.
    const small = await fetch(`${url}/buffered`, { method: "POST", body: big.subarray(0, 1000) });
    assert.equal(await small.text(), "1000");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("body: read from the socket only as the handler reads (backpressure)", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => release = resolve);
  let received = 0;
  const h = startServer({}, {
    async fetch(request, info) {
      info.maxBodyBytes = Infinity;
      const reader = request.body!.getReader();
      received += (await reader.read()).value!.length;
      await gate; // the handler stops reading
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        received += value.length;
      }
      return new Response(String(received));
    },
  });
  try {
    using raw = await RawClient.connect(h.port);
    const size = 64 * 1024 * 1024;
    await raw.write(`POST /up HTTP/1.1\r\n${HOST}Content-Length: ${size}\r\n\r\n`);
    const body = new Uint8Array(1024 * 1024);
    let sent = 0;
    const writing = (async () => {
      while (sent < size) {
        await raw.write(body);
        sent += body.length;
      }
    })();
    await delay(500);
    // Kernel buffers hold a few MiB; the server holds what the handler took.
    assert.ok(sent < 32 * 1024 * 1024, `client got ${sent} bytes out while the handler waited`);
    assert.ok(received <= 512 * 1024, `server read ${received} bytes the handler did not ask for`);
    release();
    await writing;
    const response = await raw.readResponse({ timeoutMs: 20_000 });
    assert.equal(response.text, String(size));
  } finally {
    release();
    await h.server.shutdown();
  }
});

Deno.test("body: an unread body is drained for the next request, or the connection closes", async () => {
  const h = startServer({}, {
    fetch: (request) => new Response(`unread ${new URL(request.url).pathname}`),
  });
  try {
    using raw = await RawClient.connect(h.port);
    const small = "x".repeat(10_000);
    await raw.write(
      `POST /a HTTP/1.1\r\n${HOST}Content-Length: ${small.length}\r\n\r\n${small}` +
        `POST /b HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n4\r\nGET \r\n0\r\n\r\n` +
        // A GET's body (a Request cannot carry it) is drained too.
        `GET /c HTTP/1.1\r\n${HOST}Content-Length: 5\r\n\r\nhello` +
        `GET /d HTTP/1.1\r\n${HOST}\r\n`,
    );
    for (const path of ["/a", "/b", "/c", "/d"]) {
      const response = await raw.readResponse();
      assert.equal(response.text, `unread ${path}`);
      assert.equal(response.headers.get("connection"), null);
    }
    // Too much left to drain: the answer says close, and the server closes.
    using big = await RawClient.connect(h.port);
    await big.write(`POST /big HTTP/1.1\r\n${HOST}Content-Length: 10000000\r\n\r\nstart`);
    const response = await big.readResponse();
    assert.equal(response.headers.get("connection"), "close");
    await big.expectEnd(true);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("body: a body that stalls gets 408 after handshakeTimeout; one cut short is not a request", async () => {
  const h = echoServer({ handshakeTimeout: 300 });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(`POST /stall HTTP/1.1\r\n${HOST}Content-Length: 10\r\n\r\nabc`);
    const started = Date.now();
    const response = await raw.readHttpResponse();
    assert.equal(response.status, 408);
    assert.ok(Date.now() - started < 2_000);

    using cut = await RawClient.connect(h.port);
    await cut.write(`POST /cut HTTP/1.1\r\n${HOST}Content-Length: 10\r\n\r\nabc`);
    await waitUntil(() => h.seen.includes("/cut"), "the handler started");
    cut.conn.closeWrite();
    await cut.expectEnd(true);
    assert.deepEqual(h.errors, [], "a client leaving is not the application's error");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("info: remoteAddr and completed, as Deno.serve passes them", async () => {
  const events: string[] = [];
  let infoSeen: RequestInfo | undefined;
  const h = startServer({}, {
    fetch(_request, info) {
      infoSeen = info;
      info.completed.then(() => events.push("completed"));
      events.push("handler");
      return new Response(ReadableStream.from([encoder.encode("a"), encoder.encode("b")]));
    },
  });
  try {
    const response = await fetch(`http://127.0.0.1:${h.port}/`);
    assert.equal(await response.text(), "ab");
    await waitUntil(() => events.length === 2, "completed settles");
    assert.deepEqual(events, ["handler", "completed"]);
    assert.equal(infoSeen!.remoteAddr.hostname, "127.0.0.1");
    assert.equal(infoSeen!.remoteAddr.transport, "tcp");
    assert.equal(infoSeen!.server, h.server);
    // Asked for after the fact: already settled.
    await infoSeen!.completed;
  } finally {
    await h.server.shutdown();
  }
});

// ---- request smuggling: every ambiguous framing is refused and closes ----

/**
 * Each case is a request whose framing is ambiguous, followed by a request
 * for /smuggled that must never be read out of it. Expected: the status,
 * the connection closed, and /smuggled never seen by the handler.
 */
const SMUGGLING: [string, string, number][] = [
  [
    "Content-Length and Transfer-Encoding",
    "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
    400,
  ],
  [
    "Transfer-Encoding and Content-Length",
    "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    400,
  ],
  ["duplicate equal Content-Length", "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400],
  ["conflicting Content-Length", "Content-Length: 5\r\nContent-Length: 50\r\n\r\nhello", 400],
  ["Content-Length list", "Content-Length: 5, 5\r\n\r\nhello", 400],
  ["signed Content-Length", "Content-Length: +5\r\n\r\nhello", 400],
  ["hex Content-Length", "Content-Length: 0x5\r\n\r\nhello", 400],
  ["Content-Length with a space inside", "Content-Length: 1 2\r\n\r\nhello", 400],
  ["empty Content-Length", "Content-Length: \r\n\r\n", 400],
  ["space before the colon", "Content-Length : 5\r\n\r\nhello", 400],
  ["obs-fold continuing Content-Length", "Content-Length: 5\r\n 0\r\n\r\nhello", 400],
  ["obs-fold continuing Transfer-Encoding", "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400],
  ["chunked not last", "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400],
  [
    "chunked twice",
    "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    400,
  ],
  ["identity alone", "Transfer-Encoding: identity\r\n\r\n", 400],
  ["a coding we do not implement", "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501],
  ["bare LF ending a field line", "Content-Length: 5\nX: y\r\n\r\nhello", 400],
  ["chunk size not hex", "Transfer-Encoding: chunked\r\n\r\nz\r\nhello\r\n0\r\n\r\n", 400],
  ["negative chunk size", "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400],
  ["0x chunk size", "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400],
  [
    "chunk size over 16 hex digits",
    "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n",
    400,
  ],
  ["chunk longer than its size", "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400],
  ["bare LF after a chunk size", "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400],
  ["bare LF after chunk data", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 400],
  ["folded trailer", "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n", 400],
];

Deno.test("smuggling: every ambiguous framing gets 400 (or 501) and closes; nothing is read from a body", async () => {
  const h = echoServer();
  const smuggled = `GET /smuggled HTTP/1.1\r\n${HOST}\r\n`;
  try {
    for (const [what, rest, status] of SMUGGLING) {
      using raw = await RawClient.connect(h.port);
      await raw.write(`POST /body HTTP/1.1\r\n${HOST}${rest}${smuggled}`);
      const response = await raw.readResponse().catch((error) => {
        throw new Error(`${what}: ${error}`);
      });
      assert.equal(response.status, status, `${what}: ${response.text}`);
      assert.equal(response.headers.get("connection"), "close", what);
      await raw.expectEnd(true);
      assert.ok(!h.seen.includes("/smuggled"), `${what}: a request was read out of the body`);
    }
    // Heads made of bare LFs, and HTTP/1.0 with Transfer-Encoding.
    for (
      const [what, head] of [
        ["bare LF head", `GET /lf HTTP/1.1\nHost: 127.0.0.1\n\n${smuggled}`],
        ["HTTP/1.0 chunked", `POST /old HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
      ]
    ) {
      using raw = await RawClient.connect(h.port);
      await raw.write(head);
      const response = await raw.readHttpResponse();
      assert.equal(response.status, 400, what);
    }
    assert.ok(!h.seen.includes("/smuggled") && !h.seen.includes("/lf"));
    // The server is fine afterwards.
    const response = await fetch(`http://127.0.0.1:${h.port}/fine`);
    assert.equal(await response.text(), "GET /fine ");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("smuggling: an upgrade request with a body is refused; empty lines before a request are skipped", async () => {
  const h = echoServer();
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(
      `GET /ws HTTP/1.1\r\n${HOST}Upgrade: websocket\r\nConnection: Upgrade\r\n` +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
        "Content-Length: 5\r\n\r\nhello",
    );
    assert.equal((await raw.readHttpResponse()).status, 400);
    // RFC 9112 §2.2: a CRLF after a body (some clients send one) is ignored.
    using tolerant = await RawClient.connect(h.port);
    await tolerant.write(
      `POST /a HTTP/1.1\r\n${HOST}Content-Length: 2\r\n\r\nhi\r\n\r\nGET /b HTTP/1.1\r\n${HOST}\r\n`,
    );
    assert.equal((await tolerant.readResponse()).text, "POST /a hi");
    assert.equal((await tolerant.readResponse()).text, "GET /b ");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("body: shutdown lets an upload in progress finish; the body cannot be read after its response", async () => {
  let late: Promise<unknown> | undefined;
  const h = startServer({}, {
    async fetch(request) {
      const path = new URL(request.url).pathname;
      if (path === "/early") {
        // Answers at once and reads the body afterwards: too late, the
        // bytes after the response belong to the next request.
        const body = request.body!;
        late = (async () => {
          await delay(50);
          return await new Response(body).text();
        })();
        return new Response("early");
      }
      return new Response(`uploaded ${(await request.text()).length}`);
    },
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(`POST /early HTTP/1.1\r\n${HOST}Content-Length: 5\r\n\r\n`);
    assert.equal((await raw.readResponse()).text, "early");
    await raw.write("hello");
    await assert.rejects(late!, /response was sent/);

    using upload = await RawClient.connect(h.port);
    await upload.write(`POST /upload HTTP/1.1\r\n${HOST}Content-Length: 6\r\n\r\nabc`);
    await delay(50);
    const stopped = h.server.shutdown({ timeout: 3_000 });
    await delay(100);
    await upload.write("def");
    const response = await upload.readResponse();
    assert.equal(response.text, "uploaded 6");
    assert.equal(response.headers.get("connection"), "close");
    await upload.expectEnd(true);
    await stopped;
  } finally {
    await h.server.shutdown();
  }
});
