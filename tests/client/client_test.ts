/**
 * The client (`connect`): against our server and against Deno's built-in
 * server (an independent implementation), masking checked on the raw wire,
 * and every way a handshake can fail rejected with a reason, never leaking
 * the connection.
 */

import assert from "node:assert/strict";
import { connect } from "../../src/client/client.ts";
import {
  createClientKey,
  encodeClientRequest,
  parseResponseHead,
  validateServerResponse,
} from "../../src/protocol/client_handshake.ts";
import { acceptKey } from "../../src/protocol/handshake.ts";
import { pattern } from "../helpers/frames.ts";
import { startServer, waitUntil } from "../helpers/harness.ts";

const decoder = new TextDecoder();

Deno.test("client handshake: the request, and every response check", () => {
  const key = createClientKey();
  assert.equal(atob(key).length, 16);
  assert.notEqual(createClientKey(), key, "a fresh key each time");
  const request = decoder.decode(
    encodeClientRequest(new URL("ws://example.com:8080/chat?room=1"), key, {
      protocols: ["v2", "v1"],
      headers: [["Authorization", "Bearer t"]],
    }),
  );
  assert.equal(
    request,
    "GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n" +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      "Sec-WebSocket-Protocol: v2, v1\r\nAuthorization: Bearer t\r\n\r\n",
  );
  for (
    const options of [
      { headers: [["Sec-WebSocket-Key", "x"]] as [string, string][] },
      { headers: [["Bad Name", "x"]] as [string, string][] },
      { headers: [["X-Ok", "a\u0000b"]] as [string, string][] },
      { protocols: ["chat\r\nX-Injected: yes"] },
      { protocols: ["v1", "v1"] },
    ]
  ) {
    assert.throws(() => encodeClientRequest(new URL("ws://a/"), key, options), TypeError);
  }

  const good = () =>
    new Headers({
      upgrade: "websocket",
      connection: "keep-alive, Upgrade",
      "sec-websocket-accept": acceptKey(key),
    });
  assert.deepEqual(validateServerResponse({ status: 101, headers: good() }, key, []), {
    protocol: "",
    extensions: "",
  });
  const withProtocol = good();
  withProtocol.set("sec-websocket-protocol", "v1");
  assert.deepEqual(validateServerResponse({ status: 101, headers: withProtocol }, key, ["v1"]), {
    protocol: "v1",
    extensions: "",
  });
  const broken: [string, (headers: Headers) => void, number][] = [
    ["a 200", () => {}, 200],
    ["no Upgrade", (h) => h.delete("upgrade"), 101],
    ["no Connection: Upgrade", (h) => h.set("connection", "close"), 101],
    ["a wrong accept key", (h) => h.set("sec-websocket-accept", acceptKey("other")), 101],
    ["a subprotocol not offered", (h) => h.set("sec-websocket-protocol", "v9"), 101],
    [
      "an extension not offered",
      (h) => h.set("sec-websocket-extensions", "permessage-deflate"),
      101,
    ],
  ];
  for (const [what, change, status] of broken) {
    const headers = good();
    change(headers);
    assert.ok("error" in validateServerResponse({ status, headers }, key, ["v1"]), what);
  }
  assert.equal(
    parseResponseHead("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket")?.status,
    101,
  );
  assert.equal(parseResponseHead("HTTP/1.1 101\r\nno colon here"), null);
});

Deno.test("client: messages of every size both ways with our server, then a clean close", async () => {
  const h = startServer({}, { message: (socket, data) => void socket.send(data) });
  try {
    const socket = await connect(h.server.url, { protocols: [] });
    const messages: (string | Uint8Array)[] = [
      "",
      "hello ✓",
      "x".repeat(70_000),
      new Uint8Array(0),
      pattern(125),
      pattern(126),
      pattern(65_536),
      pattern(1 << 20),
    ];
    const received = socket[Symbol.asyncIterator]();
    for (const message of messages) {
      socket.send(message);
      const { value } = await received.next();
      assert.deepEqual(value, message);
    }
    socket.close(4000, "done");
    const closed = await socket.closed;
    // We closed first: the close is ours (the server echoes code and reason anyway).
    assert.deepEqual([closed.code, closed.reason, closed.wasClean], [4000, "done", true]);
    await waitUntil(() => h.closed.length === 1, "the server's close handler");
    assert.deepEqual([h.closed[0].code, h.closed[0].reason], [4000, "done"]);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("client: against Deno's built-in server, with a subprotocol", async () => {
  const controller = new AbortController();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: controller.signal, onListen() {} },
    (request) => {
      const { socket, response } = Deno.upgradeWebSocket(request, { protocol: "v1" });
      socket.binaryType = "arraybuffer";
      socket.onmessage = (event) => socket.send(event.data);
      return response;
    },
  );
  try {
    const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, { protocols: ["v1"] });
    assert.equal(socket.protocol, "v1");
    const received = socket[Symbol.asyncIterator]();
    for (const message of ["text ✓", pattern(100_000, 3)]) {
      socket.send(message);
      assert.deepEqual((await received.next()).value, message);
    }
    socket.close();
    assert.equal((await socket.closed).code, 1000);
  } finally {
    controller.abort();
    await server.finished;
  }
});

/** A raw TCP server that answers one handshake with `respond(key)` and hands over the socket. */
function rawServer(
  respond: (key: string) => string | Uint8Array | null,
  then: (conn: Deno.Conn) => Promise<void> = () => Promise.resolve(),
) {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      const buffer = new Uint8Array(4096);
      const n = await conn.read(buffer) ?? 0;
      const key = /sec-websocket-key: (\S+)/i.exec(decoder.decode(buffer.subarray(0, n)))?.[1]!;
      const answer = respond(key);
      if (answer !== null) {
        await conn.write(typeof answer === "string" ? new TextEncoder().encode(answer) : answer);
      }
      await then(conn);
    } finally {
      try {
        conn.close();
      } catch {
        // The client closed it first.
      }
    }
  })();
  return { port: (listener.addr as Deno.NetAddr).port, served, close: () => listener.close() };
}

const accepted = (key: string) =>
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`;

Deno.test("client: every frame is masked, with a fresh key", async () => {
  const frames: Uint8Array[] = [];
  const raw = rawServer(accepted, async (conn) => {
    const buffer = new Uint8Array(4096);
    let got = new Uint8Array(0);
    while (frames.length < 2) {
      const n = await conn.read(buffer);
      if (n === null) break;
      const joined = new Uint8Array(got.length + n);
      joined.set(got);
      joined.set(buffer.subarray(0, n), got.length);
      got = joined;
      // Two 12-byte frames: 2 header bytes, 4 key bytes, 6 payload bytes.
      while (got.length >= 12 && frames.length < 2) {
        frames.push(got.slice(0, 12));
        got = got.slice(12);
      }
    }
  });
  try {
    const socket = await connect(`ws://127.0.0.1:${raw.port}/`);
    socket.send("masked");
    socket.send("masked");
    await raw.served;
    for (const frame of frames) {
      assert.equal(frame[1] & 0x80, 0x80, "mask bit set");
      const key = frame.subarray(2, 6);
      const payload = frame.subarray(6).map((byte, i) => byte ^ key[i & 3]);
      assert.equal(decoder.decode(payload), "masked");
    }
    assert.notDeepEqual(frames[0].subarray(2, 6), frames[1].subarray(2, 6), "a new key per frame");
    socket.terminate();
  } finally {
    raw.close();
  }
});

Deno.test("client: a failed handshake rejects with the reason and closes the connection", async () => {
  const cases: [string, (key: string) => string | null, RegExp][] = [
    ["404", () => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", /answered 404/],
    [
      "wrong accept",
      () =>
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${acceptKey("wrong")}\r\n\r\n`,
      /Sec-WebSocket-Accept does not match/,
    ],
    ["garbage", () => "SSH-2.0-OpenSSH\r\n\r\n", /not valid HTTP/],
    ["silence", () => null, /no response within 300 ms/],
  ];
  for (const [what, respond, reason] of cases) {
    const raw = rawServer(respond, async (conn) => {
      // Hold the connection until the client gives up (or closes it).
      await conn.read(new Uint8Array(1)).catch(() => null);
    });
    try {
      await assert.rejects(
        connect(`ws://127.0.0.1:${raw.port}/`, { handshakeTimeout: 300 }),
        reason,
        what,
      );
      await raw.served; // the client closed its side: the server's read ended
    } finally {
      raw.close();
    }
  }
  await assert.rejects(connect("http://127.0.0.1:1/"), TypeError);
  // Caller mistakes are TypeErrors before any connection: port 1 has no listener.
  await assert.rejects(connect("ws://127.0.0.1:1/", { headers: { host: "x" } }), TypeError);
  await assert.rejects(connect("ws://127.0.0.1:1/", { protocols: ["a\r\nX: y"] }), TypeError);
});

Deno.test("client: frames in the same read as the 101 are delivered, not lost", async () => {
  const early = Uint8Array.of(0x81, 5, ...new TextEncoder().encode("early"));
  const raw = rawServer((key) => {
    const head = new TextEncoder().encode(accepted(key));
    const both = new Uint8Array(head.length + early.length);
    both.set(head);
    both.set(early, head.length);
    return both;
  }, async (conn) => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    await conn.write(Uint8Array.of(0x81, 5, ...new TextEncoder().encode("later")));
    await conn.read(new Uint8Array(64)).catch(() => null);
  });
  try {
    const socket = await connect(`ws://127.0.0.1:${raw.port}/`);
    const received: unknown[] = [];
    for await (const message of socket) {
      received.push(message);
      if (received.length === 2) break;
    }
    assert.deepEqual(received, ["early", "later"]);
    socket.terminate();
    await raw.served;
  } finally {
    raw.close();
  }
});

Deno.test("client: after the closing handshake the server closes TCP first", async () => {
  let finAfterClose: "none" | "fin" = "none";
  const raw = rawServer(accepted, async (conn) => {
    // Server-initiated close: 1001 with no reason.
    await conn.write(Uint8Array.of(0x88, 2, 0x03, 0xe9));
    const buffer = new Uint8Array(64);
    const n = await conn.read(buffer);
    assert.ok(n !== null && (buffer[0] & 0x0f) === 0x8, "the client's close frame");
    // The client must not send its FIN now: it waits for ours.
    const next = conn.read(buffer);
    const quiet = new Promise((resolve) => setTimeout(resolve, 200, "quiet"));
    if (await Promise.race([next, quiet]) === null) finAfterClose = "fin";
    conn.close();
    await next.catch(() => null);
  });
  try {
    const socket = await connect(`ws://127.0.0.1:${raw.port}/`);
    const closed = await socket.closed;
    assert.deepEqual([closed.code, closed.wasClean], [1001, true]);
    await raw.served;
    assert.equal(finAfterClose, "none", "the client closed TCP before the server");
  } finally {
    raw.close();
  }
});

Deno.test("client: permessage-deflate with our server, compressed on the wire both ways", async () => {
  const h = startServer({ perMessageDeflate: { threshold: 16 } }, {
    message: (socket, data) => void socket.send(data),
  });
  try {
    const socket = await connect(h.server.url, { perMessageDeflate: { threshold: 16 } });
    assert.match(socket.extensions, /^permessage-deflate; server_no_context_takeover/);
    const received = socket[Symbol.asyncIterator]();
    const big = "compressible text ".repeat(10_000);
    for (const message of [big, "tiny", new Uint8Array(200_000).fill(9)]) {
      socket.send(message);
      assert.deepEqual((await received.next()).value, message);
    }
    // ~380 KB of payload crossed the wire in a few KB each way.
    const metrics = h.server.metrics();
    assert.ok(metrics.bytesReceived < 20_000, `server read ${metrics.bytesReceived} bytes`);
    assert.ok(metrics.bytesSent < 20_000, `server wrote ${metrics.bytesSent} bytes`);
    socket.close();
    assert.equal((await socket.closed).code, 1000);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("client: permessage-deflate offered to a server without it runs uncompressed", async () => {
  const h = startServer({}, { message: (socket, data) => void socket.send(data) });
  try {
    const socket = await connect(h.server.url, { perMessageDeflate: true });
    assert.equal(socket.extensions, "");
    const received = socket[Symbol.asyncIterator]();
    socket.send("plain ".repeat(1000));
    assert.equal((await received.next()).value, "plain ".repeat(1000));
    socket.close();
    await socket.closed;
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("client: a deflate answer the client cannot follow fails the handshake", async () => {
  for (
    const [answer, reason] of [
      ["permessage-deflate", /server_no_context_takeover/],
      ["permessage-deflate; server_no_context_takeover; client_max_window_bits=8", /8-bit/],
      ["x-other", /not offered/],
    ] as const
  ) {
    const raw = rawServer((key) =>
      accepted(key).replace("\r\n\r\n", `\r\nSec-WebSocket-Extensions: ${answer}\r\n\r\n`)
    );
    try {
      await assert.rejects(
        connect(`ws://127.0.0.1:${raw.port}/`, { perMessageDeflate: true }),
        reason,
      );
      await raw.served;
    } finally {
      raw.close();
    }
  }
});
