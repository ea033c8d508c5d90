/**
 * Persistent connections (RFC 9112 §9): one TCP connection carries request
 * after request, pipelined requests are answered in order and one at a
 * time, HTTP/1.0 persists only when asked, the idle wait and the number of
 * requests are bounded, each head still has its deadline, an upgrade may
 * follow plain requests, and shutdown closes idle connections at once and
 * lets a response in progress finish. Byte for byte over raw TCP, and with
 * Deno's fetch, which reuses connections (counted at the server).
 */

import assert from "node:assert/strict";
import { RawClient, withTimeout } from "../helpers/raw_client.ts";
import { clientFrame } from "../helpers/frames.ts";
import { OP } from "../helpers/raw_client.ts";
import { delay, startServer, waitUntil } from "../helpers/harness.ts";
import { DATE, maskDate } from "../helpers/http_date.ts";
import type { Handlers, ServeOptions } from "../../mod.ts";

/** The exact bytes of a 200 answering `text` from `new Response(text)`. */
function ok(text: string, extra = ""): string {
  const length = new TextEncoder().encode(text).length;
  return `HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n${DATE}${extra}` +
    `Content-Length: ${length}\r\n\r\n${text}`;
}

function get(path: string, extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
}

/** A server answering each request with its method and path; `seen` lists them in order. */
function pathServer(options: ServeOptions = {}, handlers: Handlers = {}) {
  const seen: string[] = [];
  const h = startServer(options, {
    async fetch(request) {
      const path = new URL(request.url).pathname;
      seen.push(`${request.method} ${path}`);
      const body = request.body === null ? "" : ` ${await request.text()}`;
      return new Response(`${request.method} ${path}${body}`);
    },
    ...handlers,
  });
  return { ...h, seen };
}

Deno.test("keep-alive: HTTP/1.1 serves request after request on one connection, byte for byte", async () => {
  const h = pathServer();
  try {
    using raw = await RawClient.connect(h.port);
    for (const path of ["/a", "/b", "/c"]) {
      await raw.write(get(path));
      assert.equal(maskDate(await raw.readExactly(ok(`GET ${path}`).length)), ok(`GET ${path}`));
    }
    // Connection: close from the client: the answer says so and the server closes.
    await raw.write(get("/last", "Connection: close\r\n"));
    assert.equal(
      maskDate(await raw.readToEnd()),
      ok("GET /last", "").replace(
        "Content-Length: 9\r\n",
        "Content-Length: 9\r\nConnection: close\r\n",
      ),
    );
    assert.equal(raw.ended, "eof");
    assert.equal(h.server.metrics().connectionsAccepted, 1);
    assert.deepEqual(h.server.metrics().httpResponses, { 200: 4 });
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("pipelining: requests sent back to back are answered in order, one at a time", async () => {
  let running = 0;
  let most = 0;
  const order: string[] = [];
  const h = startServer({}, {
    async fetch(request) {
      running++;
      most = Math.max(most, running);
      const path = new URL(request.url).pathname;
      // The first takes longest: answers must still come in request order.
      await delay(path === "/1" ? 120 : path === "/2" ? 60 : 0);
      const text = request.body === null ? path : `${path} ${await request.text()}`;
      order.push(path);
      running--;
      return new Response(text);
    },
  });
  try {
    using raw = await RawClient.connect(h.port);
    // Three requests and a body in one write: the bytes after each request
    // (after its body) are the next one's head.
    await raw.write(
      get("/1") +
        "POST /2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello" +
        "POST /3 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
        "3\r\nabc\r\n0\r\n\r\n" +
        get("/4"),
    );
    const expected = ok("/1") + ok("/2 hello") + ok("/3 abc") + ok("/4");
    assert.equal(maskDate(await raw.readExactly(expected.length)), expected);
    assert.deepEqual(order, ["/1", "/2", "/3", "/4"]);
    assert.equal(most, 1, "never two requests of one connection at once");
    assert.equal(raw.pending.length, 0);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("keep-alive: HTTP/1.0 persists only with Connection: keep-alive, and says so", async () => {
  const h = pathServer({}, {
    fetch(request) {
      const path = new URL(request.url).pathname;
      if (path === "/stream") {
        // Unknown length: an HTTP/1.0 client cannot get chunked, so it closes.
        return new Response(
          ReadableStream.from([new TextEncoder().encode("x")]).pipeThrough(
            new TransformStream({
              async transform(chunk, controller) {
                await delay(20);
                controller.enqueue(chunk);
              },
            }),
          ),
        );
      }
      return new Response(path);
    },
  });
  try {
    {
      using raw = await RawClient.connect(h.port);
      await raw.write("GET /plain HTTP/1.0\r\n\r\n");
      const response = await raw.readHttpResponse();
      assert.equal(response.headers.get("connection"), "close");
      assert.equal(response.text, "/plain");
    }
    using raw = await RawClient.connect(h.port);
    await raw.write("GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let response = await raw.readResponse();
    assert.equal(response.headers.get("connection"), "keep-alive");
    assert.equal(response.text, "/one");
    await raw.write("GET /two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    response = await raw.readResponse();
    assert.equal(response.text, "/two");
    await raw.write("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    response = await raw.readResponse(); // read until the server closes
    assert.equal(response.headers.get("connection"), "close");
    assert.equal(response.headers.get("content-length"), null);
    assert.equal(response.text, "x");
    assert.equal(raw.ended, "eof");
    assert.equal(h.server.metrics().connectionsAccepted, 2);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("keep-alive: the idle wait is keepAliveTimeout; a response that takes longer is not cut", async () => {
  const h = pathServer({ keepAliveTimeout: 300 }, {
    async fetch(request) {
      await delay(new URL(request.url).pathname === "/slow" ? 600 : 0);
      return new Response("done");
    },
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(get("/slow"));
    assert.equal((await raw.readResponse()).text, "done", "handler time is not idle time");
    const idleSince = Date.now();
    await raw.expectEnd();
    const idle = Date.now() - idleSince;
    assert.ok(idle >= 250 && idle < 1_500, `closed after ${idle} ms idle`);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("keep-alive: each later head still has handshakeTimeout from its first byte (slowloris)", async () => {
  const h = pathServer({ keepAliveTimeout: 5_000, handshakeTimeout: 300 });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(get("/first"));
    await raw.readResponse();
    await delay(400); // idle, within keepAliveTimeout: still open
    await raw.write("GET /second HT");
    const started = Date.now();
    const ending = await raw.expectEnd(true);
    const took = Date.now() - started;
    assert.ok(took < 1_500, `a head trickling in is dropped at handshakeTimeout (${took} ms)`);
    assert.notEqual(ending, null);
    assert.deepEqual(h.seen, ["GET /first"]);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("keep-alive: maxRequestsPerConnection; keepAliveTimeout 0 turns keep-alive off", async () => {
  const limited = pathServer({ maxRequestsPerConnection: 3 });
  try {
    using raw = await RawClient.connect(limited.port);
    await raw.write(get("/1") + get("/2") + get("/3") + get("/4"));
    for (const path of ["/1", "/2"]) {
      const response = await raw.readResponse();
      assert.equal(response.text, `GET ${path}`);
      assert.equal(response.headers.get("connection"), null);
    }
    const last = await raw.readResponse();
    assert.equal(last.text, "GET /3");
    assert.equal(last.headers.get("connection"), "close");
    await raw.expectEnd(true);
    assert.deepEqual(limited.seen, ["GET /1", "GET /2", "GET /3"], "the 4th is never read");
  } finally {
    await limited.server.shutdown();
  }
  const off = pathServer({ keepAliveTimeout: 0 });
  try {
    using raw = await RawClient.connect(off.port);
    await raw.write(get("/only"));
    const response = await raw.readResponse();
    assert.equal(response.headers.get("connection"), "close");
    await raw.expectEnd();
  } finally {
    await off.server.shutdown();
  }
});

Deno.test("keep-alive: an application's Connection: close, and a handler that throws, close", async () => {
  const h = startServer({}, {
    fetch(request) {
      if (new URL(request.url).pathname === "/throw") throw new Error("handler failed");
      return new Response("bye", { headers: { connection: "close" } });
    },
  });
  try {
    {
      using raw = await RawClient.connect(h.port);
      await raw.write(get("/bye"));
      const response = await raw.readResponse();
      assert.equal(response.headers.get("connection"), "close");
      assert.equal(response.text, "bye");
      await raw.expectEnd();
    }
    using raw = await RawClient.connect(h.port);
    await raw.write(get("/throw"));
    const response = await raw.readResponse();
    assert.equal(response.status, 500);
    assert.equal(response.headers.get("connection"), "close");
    await raw.expectEnd();
    assert.equal(h.errors.length, 1);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("keep-alive: Deno's fetch reuses one connection for many requests", async () => {
  const h = pathServer();
  try {
    const base = `http://127.0.0.1:${h.port}`;
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`${base}/get/${i}`);
      assert.equal(await response.text(), `GET /get/${i}`);
    }
    for (let i = 0; i < 5; i++) {
      const response = await fetch(`${base}/post/${i}`, { method: "POST", body: `body ${i}` });
      assert.equal(await response.text(), `POST /post/${i} body ${i}`);
    }
    assert.equal(h.server.metrics().connectionsAccepted, 1, "one TCP connection for 15 requests");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("upgrade after plain requests on the same connection, also pipelined", async () => {
  const h = pathServer({}, {
    message(socket, data) {
      socket.send(data);
    },
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(get("/page"));
    assert.equal((await raw.readResponse()).text, "GET /page");
    await raw.write(get("/style.css"));
    assert.equal((await raw.readResponse()).text, "GET /style.css");
    await raw.handshake({ path: "/ws" });
    await raw.write(clientFrame({ opcode: OP.TEXT, payload: "over the same connection" }));
    const frame = await raw.readFrame();
    assert.equal(new TextDecoder().decode(frame.payload), "over the same connection");
    assert.equal(h.opened.length, 1);
    assert.equal(h.server.metrics().connectionsAccepted, 1);

    // A request and an upgrade in one write: the answer, then the 101.
    using piped = await RawClient.connect(h.port);
    await piped.write(
      get("/first") +
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert.equal((await piped.readResponse()).text, "GET /first");
    await piped.expectSwitchingProtocols();
    await piped.write(clientFrame({ opcode: OP.TEXT, payload: "piped" }));
    assert.equal(new TextDecoder().decode((await piped.readFrame()).payload), "piped");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("shutdown: idle keep-alive connections close at once; a response in progress finishes", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => release = resolve);
  const h = startServer({ keepAliveTimeout: 60_000 }, {
    async fetch(request) {
      if (new URL(request.url).pathname === "/busy") await gate;
      return new Response("finished");
    },
  });
  try {
    using idle = await RawClient.connect(h.port);
    await idle.write(get("/quick"));
    await idle.readResponse();
    using busy = await RawClient.connect(h.port);
    await busy.write(get("/busy"));
    await waitUntil(() => h.server.metrics().connectionsAccepted === 2, "both accepted");
    await delay(50); // the busy request is in its handler
    const started = Date.now();
    const stopped = h.server.shutdown({ timeout: 5_000 });
    // The idle one is closed at once (well before the 60 s keep-alive wait).
    assert.equal(await idle.expectEnd(), "eof");
    assert.ok(Date.now() - started < 1_000);
    // The busy one finishes its response, told that the connection closes.
    await delay(100);
    release();
    const response = await busy.readResponse();
    assert.equal(response.text, "finished");
    assert.equal(response.headers.get("connection"), "close");
    await busy.expectEnd();
    await withTimeout(stopped, 3_000, "shutdown");
    assert.ok(Date.now() - started < 3_000);
  } finally {
    release();
    await h.server.shutdown();
  }
});

Deno.test("shutdown: a response that does not finish within the timeout is dropped", async () => {
  const h = startServer({}, {
    fetch: () => new Promise<Response>(() => {}), // never answers
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(get("/forever"));
    await delay(50);
    const started = Date.now();
    await withTimeout(h.server.shutdown({ timeout: 300 }), 3_000, "shutdown");
    assert.ok(Date.now() - started >= 250, "the response had its timeout");
    await raw.expectEnd(true);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("keep-alive over TLS: https requests share one connection", async () => {
  const root = new URL("../../", import.meta.url);
  const cert = await Deno.readTextFile(new URL("tests/fixtures/tls_cert.pem", root));
  const key = await Deno.readTextFile(new URL("tests/fixtures/tls_key.pem", root));
  const h = pathServer({ cert, key });
  const client = Deno.createHttpClient({ caCerts: [cert] });
  try {
    for (let i = 0; i < 5; i++) {
      const response = await fetch(`https://localhost:${h.port}/tls/${i}`, {
        client,
        method: i % 2 === 0 ? "GET" : "POST",
        body: i % 2 === 0 ? undefined : `n=${i}`,
      });
      assert.equal(await response.text(), i % 2 === 0 ? `GET /tls/${i}` : `POST /tls/${i} n=${i}`);
    }
    assert.equal(h.server.metrics().connectionsAccepted, 1);
  } finally {
    client.close();
    await h.server.shutdown();
  }
});

Deno.test("pipelining: requests with bodies split at random points are answered in order", async () => {
  // A seeded generator (mulberry32): a failure names the seed to replay.
  const seed = 0x5eed;
  let state = seed;
  const random = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const h = pathServer();
  try {
    using raw = await RawClient.connect(h.port);
    const requests: string[] = [];
    const expected: string[] = [];
    for (let i = 0; i < 40; i++) {
      const body = "b".repeat(Math.floor(random() * 3000)) + i;
      const kind = Math.floor(random() * 3);
      if (kind === 0) {
        requests.push(get(`/g${i}`));
        expected.push(`GET /g${i}`);
      } else if (kind === 1) {
        requests.push(
          `POST /l${i} HTTP/1.1\r\n${"Host: 127.0.0.1\r\n"}Content-Length: ${body.length}\r\n\r\n${body}`,
        );
        expected.push(`POST /l${i} ${body}`);
      } else {
        const cut = Math.floor(random() * body.length);
        const chunks = [body.slice(0, cut), body.slice(cut)].filter((part) => part !== "");
        const encoded = chunks.map((part) => `${part.length.toString(16)}\r\n${part}\r\n`).join("");
        requests.push(
          `POST /c${i} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n${encoded}0\r\n\r\n`,
        );
        expected.push(`POST /c${i} ${body}`);
      }
    }
    const wire = new TextEncoder().encode(requests.join(""));
    const reading = (async () => {
      const texts: string[] = [];
      for (let i = 0; i < expected.length; i++) texts.push((await raw.readResponse()).text);
      return texts;
    })();
    for (let at = 0; at < wire.length;) {
      const size = 1 + Math.floor(random() * 700);
      await raw.write(wire.subarray(at, at + size));
      at += size;
      if (random() < 0.2) await delay(1);
    }
    assert.deepEqual(await reading, expected, `seed ${seed}`);
    assert.equal(h.server.metrics().connectionsAccepted, 1);
  } finally {
    await h.server.shutdown();
  }
});
