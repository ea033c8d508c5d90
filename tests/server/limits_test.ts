/**
 * Limits against hostile or careless peers, over real sockets: the request
 * head cap (431), the handshake deadline (slowloris), maxPayload decided from
 * the frame header alone (1009) without allocating what a header claims, and
 * maxConnections (503).
 */

import assert from "node:assert/strict";
import { buildUpgradeRequest, OP, RawClient } from "../helpers/raw_client.ts";
import { clientFrame, concat } from "../helpers/frames.ts";
import {
  delay,
  memoryInUse,
  openRawPeers,
  startServer,
  TestClient,
  waitUntil,
} from "../helpers/harness.ts";
import type { ServeOptions } from "../../mod.ts";

const MiB = 1024 * 1024;

/** Sends one text message from `client` and asserts the server echoes it. */
async function assertEchoes(client: TestClient, text: string): Promise<void> {
  client.ws.send(text);
  assert.equal(await client.next(), text);
}

const echo = {
  message(socket: { send(data: string | Uint8Array): boolean }, data: string | Uint8Array) {
    socket.send(data);
  },
};

Deno.test("a request head over maxHeaderBytes gets 431 and the connection is closed", async () => {
  const h = startServer({ maxHeaderBytes: 1024 });
  try {
    using raw = await RawClient.connect(h.port);
    const request = buildUpgradeRequest({ headers: [["X-Padding", "a".repeat(2000)]] });
    await raw.write(request);
    const response = await raw.readHttpResponse();
    assert.equal(response.status, 431);
    assert.ok(raw.ended !== null, "the server closed the connection");
    assert.equal(h.server.connectionCount, 0);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a head that never ends is refused with 431 once it passes maxHeaderBytes", async () => {
  const h = startServer({ maxHeaderBytes: 1024 });
  try {
    using raw = await RawClient.connect(h.port);
    // Header lines and no terminating blank line: the server must not wait for more.
    await raw.write("GET / HTTP/1.1\r\n" + "X-A: b\r\n".repeat(130));
    const response = await raw.readHttpResponse();
    assert.equal(response.status, 431);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("slowloris: a head trickling in one byte per 50 ms is dropped at handshakeTimeout while others are served", async () => {
  const h = startServer({ handshakeTimeout: 300 }, echo);
  try {
    using slow = await RawClient.connect(h.port);
    // About 230 bytes: at 50 ms a byte it would take over 11 s to complete.
    const head = new TextEncoder().encode(
      buildUpgradeRequest({ headers: [["X-Slow", "s".repeat(80)]] }),
    );
    let sent = 0;
    const trickle = (async () => {
      for (; sent < head.length && slow.ended === null; sent++) {
        try {
          await slow.write(head.subarray(sent, sent + 1));
        } catch {
          return; // The server closed the connection: writing fails.
        }
        await delay(50);
      }
    })();
    // Meanwhile a healthy client connects and is served.
    const healthy = await TestClient.open(`${h.server.url}/`);
    try {
      await assertEchoes(healthy, "served while the slowloris trickles");
      const ending = await slow.expectEnd(true, 5_000);
      assert.ok(ending === "eof" || ending === "reset");
      assert.ok(sent < head.length, `dropped before the head completed (sent ${sent} bytes)`);
      await assertEchoes(healthy, "still served after the slowloris was dropped");
      assert.equal(h.server.connectionCount, 1, "only the healthy client is a connection");
    } finally {
      await healthy.dispose();
      await trickle;
    }
  } finally {
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

/**
 * Opens a raw connection to a server with `options`, writes `frames`, and
 * asserts the server answers with a 1009 close, ends TCP, tells the close
 * handler 1009 and never delivers any part of the message.
 */
async function assertRefusedWith1009(options: ServeOptions, ...frames: Uint8Array[]) {
  const received: unknown[] = [];
  const h = startServer(options, { message: (_socket, data) => void received.push(data) });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    for (const frame of frames) await raw.write(frame);
    await raw.expectClose(1009);
    await raw.expectEnd(true);
    await waitUntil(() => h.closed.length === 1, "the close handler");
    assert.equal(h.closed[0].code, 1009);
    assert.equal(received.length, 0, "no part of the message reached the application");
  } finally {
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
}

Deno.test("a 64-bit length of 2^53 or more is refused with 1009 from the header alone", async () => {
  // Even with no configured limit: such a length cannot be counted exactly in JS.
  // Header only: the server must decide before any payload byte arrives.
  await assertRefusedWith1009(
    { maxPayload: Infinity },
    clientFrame({ opcode: OP.BINARY, declaredLength: 2n ** 53n }),
  );
});

Deno.test("a frame header announcing more than maxPayload is refused with 1009 before its payload", async () => {
  await assertRefusedWith1009(
    { maxPayload: 1000 },
    clientFrame({ opcode: OP.TEXT, declaredLength: 1001 }),
  );
});

Deno.test("fragments that add up to more than maxPayload are refused with 1009", async () => {
  await assertRefusedWith1009(
    { maxPayload: 1000 },
    clientFrame({ opcode: OP.BINARY, payload: new Uint8Array(600), fin: false }),
    clientFrame({ opcode: OP.CONTINUATION, declaredLength: 600 }),
  );
});

Deno.test("a message exactly at maxPayload is accepted", async () => {
  const h = startServer({ maxPayload: 1000 }, echo);
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    const payload = new Uint8Array(1000).fill(7);
    await raw.write(concat(
      clientFrame({ opcode: OP.BINARY, payload: payload.subarray(0, 400), fin: false }),
      clientFrame({ opcode: OP.CONTINUATION, payload: payload.subarray(400) }),
    ));
    const frame = await raw.readFrame();
    assert.equal(frame.opcode, OP.BINARY);
    assert.deepEqual(frame.payload, payload);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("memory grows with the bytes received, not with what frame headers claim", async () => {
  // 50 peers each announce a 15 MiB message (under the 16 MiB default limit)
  // and send only 100 bytes of it. Preallocating what the headers claim would
  // cost 750 MiB; the server must hold about what it actually received.
  const peers = 50;
  const claimed = 15 * MiB;
  const h = startServer();
  const clients: RawClient[] = [];
  try {
    await openRawPeers(h.port, peers, clients);
    await waitUntil(() => h.opened.length === peers, "every peer to be open");
    const before = memoryInUse();
    for (const [i, raw] of clients.entries()) {
      const opcode = i % 2 === 0 ? OP.BINARY : OP.TEXT;
      await raw.write(clientFrame({ opcode, payload: "x".repeat(100), declaredLength: claimed }));
    }
    // Loopback delivers within a millisecond; give the server ample time to process.
    await delay(300);
    const grown = memoryInUse() - before;
    assert.ok(
      grown < 64 * MiB,
      `memory grew by ${(grown / MiB).toFixed(1)} MiB for ${peers} peers claiming ${
        claimed / MiB
      } MiB each`,
    );
    assert.equal(h.server.connectionCount, peers, "the partial messages are still pending");
  } finally {
    for (const raw of clients) raw.close();
    await waitUntil(() => h.closed.length === clients.length, "the server to see every drop");
    await h.server.shutdown();
  }
  assert.ok(h.closed.every((c) => c.code === 1006));
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("a text message sent as many 1-byte fragments costs about its length in memory", async () => {
  // Each peer sends a text message as 300 000 one-byte fragments (2.1 MB of
  // frames). Keeping one string object per fragment would cost some 20 bytes
  // per byte received: about 40 MiB for these 6 peers.
  const peers = 6;
  const fragments = 300_000;
  const h = startServer({}, echo);
  const piece = clientFrame({ opcode: OP.CONTINUATION, payload: "a", fin: false });
  const body = new Uint8Array(piece.length * fragments);
  for (let i = 0; i < fragments; i++) body.set(piece, i * piece.length);
  const ping = clientFrame({ opcode: OP.PING, payload: "sync" });
  const clients: RawClient[] = [];
  try {
    await openRawPeers(h.port, peers, clients);
    const before = memoryInUse();
    for (const raw of clients) {
      await raw.write(clientFrame({ opcode: OP.TEXT, payload: "a", fin: false }));
      await raw.write(body);
      // The pong comes once the server has processed every fragment before the ping.
      await raw.write(ping);
      const pong = await raw.readFrame();
      assert.equal(pong.opcode, OP.PONG);
    }
    const grown = memoryInUse() - before;
    assert.ok(grown < 12 * MiB, `memory grew by ${(grown / MiB).toFixed(1)} MiB`);
    // And the message is intact.
    const raw = clients[0];
    await raw.write(clientFrame({ opcode: OP.CONTINUATION, payload: "a" }));
    const echoed = await raw.readFrame();
    assert.equal(echoed.opcode, OP.TEXT);
    assert.equal(new TextDecoder().decode(echoed.payload), "a".repeat(fragments + 2));
  } finally {
    for (const raw of clients) raw.close();
    await h.server.shutdown();
  }
});

Deno.test("plain HTTP: memory follows the body bytes received, not Content-Length", async () => {
  // 60 requests announce a body just under maxBodyBytes (1 MiB) and send 10
  // bytes of it. Allocating what Content-Length claims would cost 60 MiB.
  const peers = 60;
  const h = startServer({}, { fetch: () => new Response("ok") });
  const clients: RawClient[] = [];
  try {
    const before = memoryInUse();
    for (let i = 0; i < peers; i++) {
      const raw = await RawClient.connect(h.port);
      clients.push(raw);
      await raw.write(
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n0123456789",
      );
    }
    await delay(300); // ample time for the server to read every head and start every body
    const grown = memoryInUse() - before;
    assert.ok(grown < 16 * MiB, `memory grew by ${(grown / MiB).toFixed(1)} MiB`);
    // A body that does arrive in full is still served.
    using full = await RawClient.connect(h.port);
    await full.write("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello");
    assert.equal((await full.readResponse()).text, "ok");
  } finally {
    for (const raw of clients) raw.close();
    await h.server.shutdown();
  }
});

Deno.test("maxConnections: a further upgrade gets 503, the others are unaffected, a freed slot is reused", async () => {
  const h = startServer({ maxConnections: 2 }, echo);
  const a = await TestClient.open(h.server.url);
  const b = await TestClient.open(h.server.url);
  try {
    {
      using raw = await RawClient.connect(h.port);
      await raw.write(buildUpgradeRequest());
      const response = await raw.readHttpResponse();
      assert.equal(response.status, 503);
    }
    await assertEchoes(a, "a still works");
    await assertEchoes(b, "b still works");
    assert.equal(h.server.connectionCount, 2);

    await a.dispose();
    await waitUntil(() => h.server.connectionCount === 1, "the freed slot");
    const c = await TestClient.open(h.server.url);
    try {
      await assertEchoes(c, "c took the freed slot");
    } finally {
      await c.dispose();
    }
  } finally {
    await a.dispose();
    await b.dispose();
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("maxConnections holds when many upgrades arrive at once", async () => {
  const h = startServer({ maxConnections: 3 });
  const clients: RawClient[] = [];
  try {
    for (let i = 0; i < 12; i++) clients.push(await RawClient.connect(h.port));
    // Every head is sent before any answer is read, so the handshakes overlap.
    const request = buildUpgradeRequest();
    await Promise.all(clients.map((raw) => raw.write(request)));
    const statuses = await Promise.all(clients.map(async (raw) => {
      const head = await raw.readResponseHead();
      return head.status;
    }));
    assert.equal(statuses.filter((s) => s === 101).length, 3, `statuses: ${statuses.join(" ")}`);
    assert.equal(statuses.filter((s) => s === 503).length, 9, `statuses: ${statuses.join(" ")}`);
    assert.equal(h.server.connectionCount, 3);
  } finally {
    for (const raw of clients) raw.close();
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("a client still sending when it is failed reads the 1009 close: the server drains before closing TCP", async () => {
  // Closing a socket with unread bytes makes the kernel reset the connection,
  // which destroys the close frame before the client reads it: the client
  // would see an abnormal closure instead of 1009. The server half-closes
  // and drains instead. Repeated, because a reset is a race it usually wins.
  const h = startServer({ maxPayload: 1024, pingInterval: 0 }, echo);
  try {
    for (let i = 0; i < 10; i++) {
      const client = await TestClient.open(h.server.url);
      try {
        client.ws.send(new Uint8Array(1025));
        client.ws.send(new Uint8Array(64 * 1024)); // still sending when failed
        const event = await client.waitClosed();
        assert.equal(event.code, 1009, `attempt ${i}: close code`);
      } finally {
        await client.dispose();
      }
    }
  } finally {
    await h.server.shutdown();
  }
});
