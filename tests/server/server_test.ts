/**
 * The server against real clients over 127.0.0.1: Deno's built-in
 * `WebSocket` (an independent implementation) for messages, closing,
 * subprotocols and the socket API, the raw TCP client where exact bytes or
 * HTTP statuses matter, and `fetch` for plain HTTP.
 */

import assert from "node:assert/strict";
import type { CloseInfo, Handlers, ServeOptions, Server, ServerWebSocket } from "../../mod.ts";
import { type Harness, startServer, TestClient, waitUntil } from "../helpers/harness.ts";
import { clientFrame, closePayload, utf8 } from "../helpers/frames.ts";
import { buildUpgradeRequest, OP, RawClient, withTimeout } from "../helpers/raw_client.ts";

const WAIT_MS = 5_000;

/** A promise with its resolver, for values a handler produces. */
function deferred<V>(): { promise: Promise<V>; resolve: (value: V) => void } {
  let resolve!: (value: V) => void;
  const promise = new Promise<V>((r) => resolve = r);
  return { promise, resolve };
}

/** Waits for `promise` with the suite's deadline. */
function within<V>(promise: Promise<V>, what: string): Promise<V> {
  return withTimeout(promise, WAIT_MS, what);
}

/** Asserts two byte arrays are identical, naming the first difference. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(`${what}: byte ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/** `size` bytes of a pattern that differs from byte to byte. */
function patternBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) & 0xff;
  return bytes;
}

/** An ASCII string of `size` bytes (printable characters, varying). */
function patternText(size: number): string {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = 32 + (i * 7) % 95;
  return new TextDecoder().decode(bytes);
}

/**
 * Runs `fn` with a server on 127.0.0.1 started with `options` and `handlers`
 * (see {@linkcode startServer}); the server is shut down afterwards, whatever
 * happens.
 */
async function withServer<T>(
  options: ServeOptions,
  handlers: Handlers<T>,
  fn: (harness: Harness<T>) => Promise<void>,
): Promise<void> {
  const harness = startServer<T>(options, handlers);
  try {
    await fn(harness);
  } finally {
    await harness.server.shutdown();
  }
}

/**
 * Runs `fn` with a server (heartbeat off) using `handlers` and one Deno
 * `WebSocket` client connected to it; both are closed afterwards, whatever
 * happens.
 */
async function withClient<T>(
  handlers: Handlers<T>,
  fn: (client: TestClient, server: Server<T>) => Promise<void>,
): Promise<void> {
  await withServer({ pingInterval: 0 }, handlers, async ({ server }) => {
    const client = await TestClient.open(server.url);
    try {
      await fn(client, server);
    } finally {
      await client.dispose();
    }
  });
}

const SIZES = [0, 125, 126, 65535, 65536, 4 * 1024 * 1024];

Deno.test("echo: text stays text and binary stays binary, bytes identical, at every length size", async () => {
  const seen: string[] = [];
  await withClient({
    message(socket, data) {
      seen.push(typeof data === "string" ? `text ${data.length}` : `binary ${data.length}`);
      assert.ok(typeof data === "string" || data instanceof Uint8Array);
      socket.send(data);
    },
  }, async (client) => {
    for (const size of SIZES) {
      const text = patternText(size);
      client.ws.send(text);
      const echoedText = await client.next(WAIT_MS);
      assert.equal(typeof echoedText, "string", `text of ${size} bytes came back as binary`);
      assert.equal((echoedText as string).length, size);
      assert.ok(echoedText === text, `text of ${size} bytes differs`);

      const bytes = patternBytes(size);
      client.ws.send(bytes);
      const echoedBytes = await client.next(WAIT_MS);
      assert.ok(echoedBytes instanceof Uint8Array, `binary of ${size} bytes came back as text`);
      assertSameBytes(echoedBytes, bytes, `binary of ${size} bytes`);
    }
    // Multi-byte characters survive as text too.
    const unicode = "つなぐ ✓ 🧵 ".repeat(5000);
    client.ws.send(unicode);
    assert.equal(await client.next(WAIT_MS), unicode);
    assert.deepEqual(seen, [
      ...SIZES.flatMap((size) => [`text ${size}`, `binary ${size}`]),
      `text ${unicode.length}`,
    ]);
  });
});

Deno.test("1000 messages arrive in order, both ways", async () => {
  const received: string[] = [];
  await withClient({
    message(socket, data) {
      received.push(data as string);
      socket.send(data);
    },
  }, async (client) => {
    const sent = Array.from({ length: 1000 }, (_, i) => `message ${i}`);
    for (const message of sent) client.ws.send(message);
    const echoed: (string | Uint8Array)[] = [];
    for (let i = 0; i < sent.length; i++) echoed.push(await client.next(WAIT_MS));
    assert.deepEqual(received, sent);
    assert.deepEqual(echoed, sent);
  });
});

Deno.test("close by the client: the handler sees its code and reason; the client closes cleanly", async () => {
  const closed = deferred<{ code: number; reason: string; info: CloseInfo }>();
  await withClient({
    async close(socket, code, reason) {
      closed.resolve({ code, reason, info: await socket.closed });
    },
  }, async (client) => {
    client.ws.close(4000, "client says bye");
    const event = await client.waitClosed(WAIT_MS);
    assert.equal(event.wasClean, true);
    assert.equal(event.code, 4000); // the server echoes the code
    const seen = await within(closed.promise, "the close handler");
    assert.equal(seen.code, 4000);
    assert.equal(seen.reason, "client says bye");
    assert.deepEqual(seen.info, { code: 4000, reason: "client says bye", wasClean: true });
  });
});

Deno.test("close by the server: the client gets 4001 'bye', cleanly", async () => {
  const closed = deferred<CloseInfo>();
  await withClient({
    message(socket) {
      socket.close(4001, "bye");
      assert.equal(socket.readyState, 2); // CLOSING
      assert.equal(socket.send("too late"), false);
      socket.closed.then(closed.resolve);
    },
  }, async (client) => {
    client.ws.send("close me");
    const event = await client.waitClosed(WAIT_MS);
    assert.equal(event.code, 4001);
    assert.equal(event.reason, "bye");
    assert.equal(event.wasClean, true);
    assert.equal(client.messages.length, 0, "nothing may follow the close frame");
    const info = await within(closed.promise, "socket.closed");
    assert.equal(info.wasClean, true);
    assert.equal(info.code, 4001); // the client echoed our code
  });
});

Deno.test("server.shutdown() closes every client with 1001", async () => {
  await withServer({ pingInterval: 0 }, {}, async (harness) => {
    const clients: TestClient[] = [];
    try {
      for (let i = 0; i < 2; i++) clients.push(await TestClient.open(harness.server.url));
      assert.equal(harness.server.connectionCount, 2);
      await within(harness.server.shutdown(), "shutdown");
      for (const client of clients) {
        const event = await client.waitClosed(WAIT_MS);
        assert.equal(event.code, 1001);
        assert.equal(event.reason, "server shutting down");
        assert.equal(event.wasClean, true);
      }
      assert.deepEqual(harness.closed.map((c) => c.code), [1001, 1001]);
      assert.equal(harness.server.connectionCount, 0);
      // The listener is closed: a new connection is refused.
      await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: harness.port }));
    } finally {
      for (const client of clients) await client.dispose();
    }
  });
});

Deno.test("a client that drops TCP without a close frame is reported as 1006", async () => {
  const closed = deferred<{ code: number; reason: string; info: CloseInfo }>();
  await withServer({ pingInterval: 0 }, {
    async close(socket, code, reason) {
      closed.resolve({ code, reason, info: await socket.closed });
    },
  }, async ({ server, port }) => {
    const client = await RawClient.connect(port);
    try {
      await client.handshake();
    } finally {
      client.close(); // no close frame: just the TCP connection
    }
    const seen = await within(closed.promise, "the close handler");
    assert.equal(seen.code, 1006);
    assert.equal(seen.reason, "");
    assert.deepEqual(seen.info, { code: 1006, reason: "", wasClean: false });
    assert.equal(server.connectionCount, 0);
  });
});

// ---- subprotocols ----

/** Opens a Deno `WebSocket` offering `protocols`; resolves once open, with a close waiter. */
async function openWithProtocols(
  url: string,
  protocols: string[],
): Promise<{ ws: WebSocket; closed: Promise<CloseEvent> }> {
  const ws = new WebSocket(url, protocols);
  const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
  const opened = new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("the client failed to connect"));
  });
  try {
    await within(opened, "the client to open");
  } catch (error) {
    await within(closed, "the failed client to close");
    throw error;
  }
  return { ws, closed };
}

Deno.test("subprotocol: the server's preferred one among those offered", async () => {
  const chosen = deferred<string>();
  await withServer({ pingInterval: 0, protocols: ["chat.v2", "chat.v1"] }, {
    open(socket) {
      chosen.resolve(socket.protocol);
    },
  }, async ({ server, port }) => {
    const { ws, closed } = await openWithProtocols(server.url, ["chat.v1", "chat.v2"]);
    assert.equal(ws.protocol, "chat.v2");
    assert.equal(await within(chosen.promise, "open"), "chat.v2");
    ws.close();
    await within(closed, "close");

    // Nothing in common, or nothing offered: no Sec-WebSocket-Protocol at all.
    for (const protocols of [["other"], undefined]) {
      using raw = await RawClient.connect(port);
      const head = await raw.handshake({ protocols });
      assert.equal(head.headers.has("sec-websocket-protocol"), false);
    }
  });
});

Deno.test("subprotocol: the upgrade hook picks among those offered", async () => {
  const offered = deferred<string[]>();
  await withServer({ pingInterval: 0, protocols: ["a"] }, {
    upgrade(_request, info) {
      offered.resolve(info.protocols);
      return { protocol: info.protocols[info.protocols.length - 1] };
    },
  }, async ({ server }) => {
    const { ws, closed } = await openWithProtocols(server.url, ["a", "b", "c"]);
    assert.equal(ws.protocol, "c");
    assert.deepEqual(await offered.promise, ["a", "b", "c"]);
    ws.close();
    await within(closed, "close");
  });
});

Deno.test("subprotocol: an upgrade hook choosing one not offered gets 500, never 101", async () => {
  await withServer({ pingInterval: 0 }, {
    upgrade: () => ({ protocol: "not-offered" }),
  }, async (harness) => {
    using raw = await RawClient.connect(harness.port);
    await raw.write(buildUpgradeRequest({ protocols: ["a", "b"] }));
    const response = await raw.readHttpResponse();
    assert.equal(response.statusLine, "HTTP/1.1 500 Internal Server Error");
    assert.equal(raw.ended, "eof");
    assert.equal(response.headers.has("sec-websocket-protocol"), false);
    assert.equal(harness.opened.length, 0);
    assert.equal(harness.errors.length, 1);
    assert.match(String(harness.errors[0]), /not-offered/);
  });
});

// ---- the upgrade hook ----

Deno.test("upgrade hook returning a Response refuses with it", async () => {
  await withServer({ pingInterval: 0 }, {
    upgrade: () => new Response("no entry", { status: 403, headers: { "x-refused-by": "test" } }),
  }, async (harness) => {
    using raw = await RawClient.connect(harness.port);
    await raw.write(buildUpgradeRequest());
    const response = await raw.readHttpResponse();
    assert.equal(response.statusLine, "HTTP/1.1 403 Forbidden");
    assert.equal(response.headers.get("x-refused-by"), "test");
    assert.equal(response.text, "no entry");
    assert.equal(raw.ended, "eof");

    // Deno's client sees a failed connection, not an open one.
    const ws = new WebSocket(harness.server.url);
    const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
    let opened = false;
    ws.onopen = () => opened = true;
    const errored = new Promise<void>((resolve) => ws.onerror = () => resolve());
    await within(errored, "the client's error event");
    await within(closed, "the client's close event");
    assert.equal(opened, false);
    assert.equal(harness.opened.length, 0);
  });
});

Deno.test("upgrade hook sees the request (path, Origin, headers, address); its data is on socket.data", async () => {
  const hookSaw = deferred<Record<string, unknown>>();
  const socketSaw = deferred<Record<string, unknown>>();
  await withServer<{ user: string }>({ pingInterval: 0 }, {
    upgrade(request, info) {
      const url = new URL(request.url);
      hookSaw.resolve({
        method: request.method,
        path: url.pathname,
        user: url.searchParams.get("user"),
        origin: request.headers.get("origin"),
        token: request.headers.get("x-token"),
        remote: `${info.remoteAddr.hostname}:${info.remoteAddr.port}`,
      });
      return {
        data: { user: url.searchParams.get("user") ?? "?" },
        headers: { "Set-Cookie": "session=abc" },
      };
    },
    open(socket) {
      socketSaw.resolve({
        data: socket.data,
        url: socket.url,
        origin: socket.headers.get("origin"),
        remote: socket.remoteAddr.hostname,
      });
      socket.send(`hello ${socket.data.user}`);
    },
  }, async ({ port }) => {
    using raw = await RawClient.connect(port);
    const head = await raw.handshake({
      path: "/room/7?user=ana",
      headers: [["Origin", "https://app.example"], ["X-Token", "t-123"]],
    });
    assert.equal(head.headers.get("set-cookie"), "session=abc");
    const local = raw.conn.localAddr as Deno.NetAddr;
    assert.deepEqual(await within(hookSaw.promise, "the upgrade hook"), {
      method: "GET",
      path: "/room/7",
      user: "ana",
      origin: "https://app.example",
      token: "t-123",
      remote: `127.0.0.1:${local.port}`,
    });
    assert.deepEqual(await within(socketSaw.promise, "open"), {
      data: { user: "ana" },
      url: "ws://127.0.0.1/room/7?user=ana",
      origin: "https://app.example",
      remote: "127.0.0.1",
    });
    const greeting = await raw.readFrame();
    assert.equal(greeting.opcode, OP.TEXT);
    assert.equal(new TextDecoder().decode(greeting.payload), "hello ana");
  });
});

// ---- plain HTTP ----

Deno.test("the fetch handler answers plain HTTP requests", async () => {
  await withServer({ pingInterval: 0 }, {
    async fetch(request, info) {
      const url = new URL(request.url);
      const body = request.method === "POST" ? await request.text() : "";
      return new Response(`${request.method} ${url.pathname}${url.search} ${body}`.trim(), {
        status: url.pathname === "/missing" ? 404 : 200,
        headers: { "x-remote": info.remoteAddr.hostname },
      });
    },
  }, async ({ port }) => {
    const base = `http://127.0.0.1:${port}`;
    let response = await fetch(`${base}/hello?x=1`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-remote"), "127.0.0.1");
    assert.equal(await response.text(), "GET /hello?x=1");

    response = await fetch(`${base}/echo`, { method: "POST", body: "payload" });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "POST /echo payload");

    response = await fetch(`${base}/missing`);
    assert.equal(response.status, 404);
    assert.equal(await response.text(), "GET /missing");
  });
});

Deno.test("without a fetch handler: GET gets 426, POST gets 405", async () => {
  await withServer({ pingInterval: 0 }, {}, async ({ port }) => {
    let response = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(response.status, 426);
    assert.equal(response.headers.get("upgrade"), "websocket");
    assert.equal(response.headers.get("sec-websocket-version"), "13");
    await response.body?.cancel();

    response = await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body: "x" });
    assert.equal(response.status, 405);
    assert.equal(response.headers.get("allow"), "GET");
    await response.body?.cancel();
  });
});

// ---- the socket API ----

Deno.test("for await (const message of socket) yields every message and ends on close", async () => {
  const iterated = deferred<(string | Uint8Array)[]>();
  await withClient({
    async open(socket) {
      const got: (string | Uint8Array)[] = [];
      for await (const message of socket) {
        got.push(message);
        socket.send(typeof message === "string" ? `iter:${message}` : message);
      }
      iterated.resolve(got);
    },
  }, async (client) => {
    client.ws.send("a");
    client.ws.send(new Uint8Array([1, 2]));
    client.ws.send("b");
    assert.equal(await client.next(WAIT_MS), "iter:a");
    assert.deepEqual(await client.next(WAIT_MS), new Uint8Array([1, 2]));
    assert.equal(await client.next(WAIT_MS), "iter:b");
    client.ws.close(1000);
    assert.deepEqual(await within(iterated.promise, "the loop to end"), [
      "a",
      new Uint8Array([1, 2]),
      "b",
    ]);
  });
});

Deno.test("event style: onmessage, addEventListener and the close event", async () => {
  const closeEvent = deferred<CloseEvent>();
  await withClient({
    open(socket) {
      socket.binaryType = "arraybuffer";
      socket.onmessage = (event) => {
        const data = (event as MessageEvent).data;
        socket.send(typeof data === "string" ? `on:${data}` : `on:bytes ${data.byteLength}`);
      };
      socket.addEventListener("message", (event) => {
        const data = (event as MessageEvent).data;
        socket.send(
          typeof data === "string" ? `listener:${data}` : `listener:${data.constructor.name}`,
        );
      });
      socket.addEventListener("close", (event) => closeEvent.resolve(event as CloseEvent));
    },
  }, async (client) => {
    client.ws.send("x");
    assert.equal(await client.next(WAIT_MS), "on:x");
    assert.equal(await client.next(WAIT_MS), "listener:x");
    client.ws.send(new Uint8Array(3));
    assert.equal(await client.next(WAIT_MS), "on:bytes 3");
    assert.equal(await client.next(WAIT_MS), "listener:ArrayBuffer");
    client.ws.close(4005, "done");
    const event = await within(closeEvent.promise, "the close event");
    assert.ok(event instanceof CloseEvent);
    assert.equal(event.code, 4005);
    assert.equal(event.reason, "done");
    assert.equal(event.wasClean, true);
  });
});

Deno.test("publish/subscribe and broadcast reach exactly the right sockets", async () => {
  const sockets = new Map<string, ServerWebSocket<string>>();
  await withServer<string>({ pingInterval: 0 }, {
    upgrade: (request) => ({ data: new URL(request.url).searchParams.get("name") ?? "" }),
    open(socket) {
      sockets.set(socket.data, socket);
      if (socket.data !== "c") socket.subscribe("news");
    },
    message(socket, data) {
      // A socket's publish reaches the topic's other subscribers.
      socket.send(`published to ${socket.publish("news", `relay:${data}`)}`);
    },
  }, async (harness) => {
    const server = harness.server;
    const clients: TestClient[] = [];
    try {
      for (const name of ["a", "b", "c"]) {
        clients.push(await TestClient.open(`${server.url}/?name=${name}`));
      }
      const [a, b, c] = clients;
      assert.equal(server.subscriberCount("news"), 2);
      assert.deepEqual(sockets.get("a")!.topics, ["news"]);
      assert.equal(sockets.get("c")!.isSubscribed("news"), false);

      assert.equal(server.publish("news", "headline"), 2);
      assert.equal(server.publish("sports", "nobody listens"), 0);
      assert.equal(server.broadcast("to all"), 3);
      assert.equal(await a.next(WAIT_MS), "headline");
      assert.equal(await a.next(WAIT_MS), "to all");
      assert.equal(await b.next(WAIT_MS), "headline");
      assert.equal(await b.next(WAIT_MS), "to all");
      assert.equal(await c.next(WAIT_MS), "to all"); // no headline before it

      a.ws.send("from a");
      assert.equal(await a.next(WAIT_MS), "published to 1"); // b only, not a itself
      assert.equal(await b.next(WAIT_MS), "relay:from a");

      assert.equal(sockets.get("b")!.unsubscribe("news"), true);
      assert.equal(server.subscriberCount("news"), 1);
      assert.equal(server.publish("news", new Uint8Array([9])), 1);
      assert.equal(server.broadcast("end"), 3);
      assert.deepEqual(await a.next(WAIT_MS), new Uint8Array([9]));
      assert.equal(await a.next(WAIT_MS), "end");
      assert.equal(await b.next(WAIT_MS), "end");
      assert.equal(await c.next(WAIT_MS), "end");
      for (const client of clients) assert.equal(client.messages.length, 0);

      // A closed socket leaves its topics.
      await a.dispose();
      await waitUntil(() => harness.closed.length === 1, "the close handler", WAIT_MS);
      assert.equal(server.subscriberCount("news"), 0);
    } finally {
      for (const client of clients) await client.dispose();
    }
  });
});

Deno.test("bufferedAmount counts a queued frame and is 0 after drained()", async () => {
  const SIZE = 4 * 1024 * 1024;
  const amounts = deferred<number[]>();
  await withClient({
    async message(socket) {
      const before = socket.bufferedAmount;
      socket.send(new Uint8Array(SIZE));
      const queued = socket.bufferedAmount;
      await socket.drained();
      amounts.resolve([before, queued, socket.bufferedAmount]);
    },
  }, async (client) => {
    client.ws.send("go");
    // 4 MiB payload + a 10-byte header (64-bit length).
    assert.deepEqual(await within(amounts.promise, "drained()"), [0, SIZE + 10, 0]);
    const message = await client.next(WAIT_MS);
    assert.ok(message instanceof Uint8Array);
    assert.equal(message.length, SIZE);
  });
});

Deno.test("ping(): Deno's client answers with a pong and the pong handler fires", async () => {
  const pong = deferred<Uint8Array>();
  await withClient({
    message(socket) {
      assert.equal(socket.ping("hb-1"), true);
    },
    pong(_socket, payload) {
      pong.resolve(payload);
    },
  }, async (client) => {
    client.ws.send("ping me");
    assert.deepEqual(await within(pong.promise, "the pong"), utf8("hb-1"));
  });
});

Deno.test("raw client: a server ping is unmasked and a pong with its payload is reported", async () => {
  const pong = deferred<Uint8Array>();
  await withServer({ pingInterval: 0 }, {
    open(socket) {
      socket.ping(new Uint8Array([1, 2, 3]));
    },
    pong(_socket, payload) {
      pong.resolve(payload);
    },
  }, async ({ port }) => {
    using raw = await RawClient.connect(port);
    await raw.handshake();
    const ping = await raw.readFrame();
    assert.equal(ping.opcode, OP.PING);
    assert.deepEqual(ping.payload, new Uint8Array([1, 2, 3]));
    await raw.write(clientFrame({ opcode: OP.PONG, payload: ping.payload }));
    assert.deepEqual(await within(pong.promise, "the pong handler"), new Uint8Array([1, 2, 3]));
    await raw.write(clientFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }));
    await raw.expectClose(1000, "");
    await raw.expectEnd();
  });
});

Deno.test("clients: the open sockets in the order they opened, one live set", async () => {
  let opened = 0;
  await withServer<number>({}, {
    open(socket) {
      socket.data = ++opened;
    },
  }, async ({ server }) => {
    const url = server.url;
    const a = await TestClient.open(url);
    const b = await TestClient.open(url);
    const c = await TestClient.open(url);
    await waitUntil(() => server.connectionCount === 3, "server.connectionCount === 3");
    b.ws.close();
    await waitUntil(() => server.connectionCount === 2, "server.connectionCount === 2");
    const clients = server.clients;
    assert.deepEqual([...clients].map((socket) => socket.data), [1, 3]);
    const d = await TestClient.open(url);
    await waitUntil(() => clients.size === 3, "clients.size === 3");
    assert.equal(server.clients, clients);
    assert.deepEqual([...clients].map((socket) => socket.data), [1, 3, 4]);
    a.ws.close();
    await waitUntil(() => clients.size === 2, "clients.size === 2");
    assert.deepEqual([...clients].map((socket) => socket.data), [3, 4]);
    c.ws.close();
    d.ws.close();
    await Promise.all([a.closed, b.closed, c.closed, d.closed]);
  });
});
