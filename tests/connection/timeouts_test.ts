/**
 * Dead and idle peers, over real sockets: heartbeat pings and the pong
 * deadline, the idle timeout, and the closing-handshake deadline. Timeouts
 * are configured short and the tests assert outcomes (close codes, the TCP
 * connection ending), waiting with generous deadlines.
 */

import assert from "node:assert/strict";
import { OP, RawClient } from "../helpers/raw_client.ts";
import { clientFrame, closePayload } from "../helpers/frames.ts";
import { startServer, TestClient, waitUntil } from "../helpers/harness.ts";

Deno.test("heartbeat: a peer that never answers pings is dropped after pongTimeout (1006)", async () => {
  const h = startServer({ pingInterval: 100, pongTimeout: 150, idleTimeout: 0 });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    const ping = await raw.readFrame();
    assert.equal(ping.opcode, OP.PING, "the server pings");
    // No pong: the server must give up on us and close TCP.
    await raw.expectEnd(true);
    await waitUntil(() => h.closed.length === 1, "the close handler");
    assert.equal(h.closed[0].code, 1006);
    assert.equal(h.server.connectionCount, 0);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("heartbeat: a peer that answers pings stays connected across several intervals", async () => {
  let pongs = 0;
  const h = startServer(
    { pingInterval: 100, pongTimeout: 300, idleTimeout: 0 },
    {
      pong: () => void pongs++,
      message: (socket, data) => void socket.send(data),
    },
  );
  // Deno's WebSocket client answers pings by itself.
  const client = await TestClient.open(h.server.url);
  try {
    await waitUntil(() => pongs >= 4, "four heartbeat pongs");
    assert.equal(client.closeEvent, null, "still connected");
    assert.equal(h.closed.length, 0);
    client.ws.send("alive");
    assert.equal(await client.next(), "alive");
  } finally {
    await client.dispose();
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("heartbeat: a raw peer that answers each ping with a pong is kept", async () => {
  const h = startServer({ pingInterval: 100, pongTimeout: 300, idleTimeout: 0 });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    for (let i = 0; i < 4; i++) {
      const ping = await raw.readFrame();
      assert.equal(ping.opcode, OP.PING);
      await raw.write(clientFrame({ opcode: OP.PONG, payload: ping.payload }));
    }
    assert.equal(h.server.connectionCount, 1, "not dropped");
    assert.equal(h.closed.length, 0);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("heartbeat: a ping queued behind a backlog to a reading peer is not held against it", async () => {
  // The server sends 16 MiB at once. The peer reads it slowly (~6 MB/s) for
  // a while, then fast. The heartbeat ping waits behind the backlog for far
  // longer than pongTimeout; the peer is busy reading, not dead, and must be
  // kept. (Counting the pong deadline from when the ping was queued dropped it.)
  const size = 16 * 1024 * 1024;
  const pongTimeout = 500;
  const h = startServer(
    { pingInterval: 100, pongTimeout, idleTimeout: 0, maxBufferedAmount: 2 * size },
    { open: (socket) => void socket.send(new Uint8Array(size)) },
  );
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    const started = Date.now();
    const slowly = 9 * 1024 * 1024;
    await raw.skipSlowly(slowly, 64 * 1024, 10);
    const took = Date.now() - started;
    assert.ok(took > 2 * pongTimeout, `the slow read took ${took} ms: too fast to test anything`);
    await raw.skipSlowly(10 + size - slowly, 1024 * 1024, 0);
    const ping = await raw.readFrame();
    assert.equal(ping.opcode, OP.PING, "the heartbeat ping follows the backlog");
    await raw.write(clientFrame({ opcode: OP.PONG, payload: ping.payload }));
    const next = await raw.readFrame();
    assert.equal(next.opcode, OP.PING, "pinged again: the connection is alive");
    assert.equal(h.closed.length, 0, "not dropped");
    assert.equal(h.server.connectionCount, 1);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("heartbeat: a peer that stops reading with data queued is dropped after pongTimeout", async () => {
  const h = startServer(
    { pingInterval: 100, pongTimeout: 300, idleTimeout: 0 },
    { open: (socket) => void socket.send(new Uint8Array(16 * 1024 * 1024)) },
  );
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    // Reads nothing: the writer makes no progress, the ping never leaves.
    await waitUntil(() => h.closed.length === 1, "the close handler", 5_000);
    assert.equal(h.closed[0].code, 1006);
    assert.equal(h.server.connectionCount, 0);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test('idle timeout: a silent peer is closed with 1001 "idle timeout"', async () => {
  const h = startServer({ idleTimeout: 200, pingInterval: 0 });
  const client = await TestClient.open(h.server.url);
  try {
    const event = await client.waitClosed();
    assert.equal(event.code, 1001);
    assert.equal(event.reason, "idle timeout");
    await waitUntil(() => h.closed.length === 1, "the close handler");
    // The client echoed our close: a clean closing handshake.
    assert.equal(h.closed[0].code, 1001);
  } finally {
    await client.dispose();
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("idle timeout: a peer that keeps sending is not closed", async () => {
  const h = startServer({ idleTimeout: 300, pingInterval: 0 }, {
    message: (socket, data) => void socket.send(data),
  });
  const client = await TestClient.open(h.server.url);
  try {
    // Ten messages 60 ms apart span two idle timeouts; each resets the clock.
    for (let i = 0; i < 10; i++) {
      client.ws.send(`tick ${i}`);
      assert.equal(await client.next(), `tick ${i}`);
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    assert.equal(client.closeEvent, null);
    assert.equal(h.closed.length, 0);
  } finally {
    await client.dispose();
    await h.server.shutdown();
  }
});

/**
 * A server whose `open` closes with `code` and `reason`; a raw peer reads
 * that close frame, answers it (echoing the code) or not, and waits for the
 * server to end TCP. Returns what the close handler was told.
 */
async function closeFromServer(
  code: number,
  reason: string,
  answer: boolean,
): Promise<{ code: number; reason: string }> {
  const h = startServer({ closeTimeout: 200, pingInterval: 0, idleTimeout: 0 }, {
    open: (socket) => socket.close(code, reason),
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    await raw.expectClose(code, reason);
    if (answer) {
      await raw.write(clientFrame({ opcode: OP.CLOSE, payload: closePayload(code, reason) }));
    }
    // Either way the server must close TCP by itself.
    await raw.expectEnd(true);
    await waitUntil(() => h.closed.length === 1, "the close handler");
    assert.equal(h.server.connectionCount, 0);
    return h.closed[0];
  } finally {
    await h.server.shutdown();
  }
}

Deno.test("close timeout: a peer that never answers our close is cut off after closeTimeout (1006)", async () => {
  const told = await closeFromServer(1000, "bye", false);
  assert.equal(told.code, 1006);
});

Deno.test("close timeout: a peer that answers our close gets a clean close with its code", async () => {
  const told = await closeFromServer(4000, "done", true);
  assert.equal(told.code, 4000);
  assert.equal(told.reason, "done");
});
