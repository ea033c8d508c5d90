/**
 * Backpressure over real sockets: bufferedAmount is exact, send never
 * blocks, and a peer that does not read is closed (1008) once its send
 * buffer passes maxBufferedAmount, without holding back anyone else, whether
 * it is sent to directly or through publish and broadcast.
 */

import assert from "node:assert/strict";
import { OP, RawClient, withTimeout } from "../helpers/raw_client.ts";
import { clientFrame, concat } from "../helpers/frames.ts";
import { delay, type Harness, startServer, TestClient, waitUntil } from "../helpers/harness.ts";
import type { ServerWebSocket } from "../../mod.ts";

const KiB = 1024;

/** Size of an unmasked server frame carrying `n` payload bytes. */
function frameSize(n: number): number {
  return n + (n < 126 ? 2 : n < 65536 ? 4 : 10);
}

/** Reads and discards everything until the server closes TCP; bounded in time. */
async function drainUntilEnd(raw: RawClient, timeoutMs = 10_000): Promise<number> {
  const buffer = new Uint8Array(256 * KiB);
  const deadline = Date.now() + timeoutMs;
  let total = 0;
  while (Date.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = raw.conn.read(buffer);
    read.catch(() => {});
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), deadline - Date.now());
    });
    let n: number | null | "timeout";
    try {
      n = await Promise.race([read, timeout]);
    } catch {
      return total; // reset: ended too
    } finally {
      clearTimeout(timer);
    }
    if (n === "timeout") break;
    if (n === null) return total;
    total += n;
  }
  raw.close();
  throw new Error(`the server did not close the connection within ${timeoutMs} ms`);
}

Deno.test("bufferedAmount counts exactly the frame bytes queued and drops to 0 once drained", async () => {
  const amounts: number[] = [];
  let afterDrain = -1;
  const sizes = [5, 200, 70_000];
  const h = startServer({}, {
    async open(socket) {
      amounts.push(socket.bufferedAmount);
      socket.send("hello"); // 5 bytes of text
      amounts.push(socket.bufferedAmount);
      socket.send(new Uint8Array(200));
      amounts.push(socket.bufferedAmount);
      socket.send(new Uint8Array(70_000));
      amounts.push(socket.bufferedAmount);
      await socket.drained();
      afterDrain = socket.bufferedAmount;
    },
  });
  const client = await TestClient.open(h.server.url);
  try {
    for (const size of sizes) {
      const message = await client.next();
      assert.equal(typeof message === "string" ? message.length : message.length, size);
    }
    await waitUntil(() => afterDrain !== -1, "drained() to resolve");
    let expected = 0;
    const expectedAmounts = [0];
    for (const size of sizes) expectedAmounts.push(expected += frameSize(size));
    assert.deepEqual(amounts, expectedAmounts);
    assert.equal(afterDrain, 0);
  } finally {
    await client.dispose();
    await h.server.shutdown();
  }
});

/**
 * Sends 128 KiB messages to `slow` (a peer that does not read) until a send
 * is refused, letting the writer run between sends, and at each step gives
 * `alsoSend` a chance to send to the healthy peers. Bounded: at most 1 000
 * sends (128 MiB) and 20 s. Returns how many sends were accepted.
 */
async function sendUntilRefused(
  send: () => boolean,
  alsoSend: () => void = () => {},
): Promise<number> {
  const deadline = Date.now() + 20_000;
  for (let i = 0; i < 1_000 && Date.now() < deadline; i++) {
    const result = send();
    assert.equal(typeof result, "boolean", "send returns at once, it never waits");
    alsoSend();
    if (!result) return i;
    await delay(1);
  }
  throw new Error("send was never refused");
}

async function openSlowPeer<T>(
  h: Harness<T>,
): Promise<{ raw: RawClient; socket: ServerWebSocket<T> }> {
  const before = h.opened.length;
  const raw = await RawClient.connect(h.port);
  await raw.handshake();
  await waitUntil(() => h.opened.length > before, "the slow peer to open");
  return { raw, socket: h.opened[before] };
}

Deno.test("a peer that does not read is closed with 1008 past maxBufferedAmount; others keep receiving", async () => {
  const chunk = new Uint8Array(128 * KiB);
  const h = startServer({ maxBufferedAmount: 512 * KiB, closeTimeout: 300, pingInterval: 0 });
  const healthy = await TestClient.open(h.server.url);
  await waitUntil(() => h.opened.length === 1, "the healthy client to open");
  const healthySocket = h.opened[0];
  const { raw, socket: slowSocket } = await openSlowPeer(h);
  let sentToHealthy = 0;
  try {
    const accepted = await sendUntilRefused(
      () => slowSocket.send(chunk),
      () => {
        if (healthySocket.send(`update ${sentToHealthy}`)) sentToHealthy++;
      },
    );
    assert.ok(accepted > 0);
    // Refused: the socket is closing, and every later send is refused too.
    assert.notEqual(slowSocket.readyState, 1);
    assert.equal(slowSocket.send("more"), false);
    // It is dropped (after closeTimeout: it reads nothing, not even our close).
    await waitUntil(() => h.closed.length === 1, "the slow peer's close handler");
    assert.equal(h.closed[0].socket, slowSocket);
    assert.equal(h.closed[0].code, 1008, "the application is told why: 1008");
    await drainUntilEnd(raw);
    // The healthy client got every update, in order, and is still open.
    for (let i = 0; i < sentToHealthy; i++) assert.equal(await healthy.next(), `update ${i}`);
    assert.equal(healthy.closeEvent, null);
    assert.equal(h.server.connectionCount, 1);
  } finally {
    raw.close();
    await healthy.dispose();
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("publish and broadcast close the slow subscriber and deliver to the others", async () => {
  const chunk = new Uint8Array(128 * KiB);
  const h = startServer({ maxBufferedAmount: 512 * KiB, closeTimeout: 300, pingInterval: 0 }, {
    open: (socket) => void socket.subscribe("feed"),
  });
  const a = await TestClient.open(h.server.url);
  const b = await TestClient.open(h.server.url);
  const { raw, socket: slowSocket } = await openSlowPeer(h);
  const counts: number[] = [];
  try {
    assert.equal(h.server.subscriberCount("feed"), 3);
    await sendUntilRefused(() => {
      const accepted = h.server.publish("feed", chunk);
      counts.push(accepted);
      return accepted === 3;
    });
    // Once the slow subscriber is over the limit it is dropped; the others got it all.
    assert.equal(counts.at(-1), 2);
    assert.notEqual(slowSocket.readyState, 1);
    assert.equal(h.server.publish("feed", "after"), 2, "the slow subscriber is skipped");
    assert.equal(h.server.broadcast("to all"), 2, "broadcast skips it too");
    for (const client of [a, b]) {
      for (let i = 0; i < counts.length; i++) {
        const message = await client.next(10_000);
        assert.ok(message instanceof Uint8Array && message.length === chunk.length);
      }
      assert.equal(await client.next(), "after");
      assert.equal(await client.next(), "to all");
    }
    await waitUntil(() => h.closed.length === 1, "the slow subscriber's close handler");
    assert.equal(h.closed[0].code, 1008);
    assert.equal(h.server.subscriberCount("feed"), 2, "a closed socket leaves its topics");
    await drainUntilEnd(raw);
  } finally {
    raw.close();
    await a.dispose();
    await b.dispose();
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("a peer that floods pings and reads nothing makes the server hold one pong, not one per ping", async () => {
  // Every ping is owed a pong, but only the latest needs one (RFC 6455
  // §5.5.3): while the peer reads nothing, the pong waiting to be written is
  // replaced, so what is queued for it stays at a pong or two however many
  // pings arrive, and the peer is not closed for it.
  const h = startServer({ maxBufferedAmount: 256 * KiB, closeTimeout: 300, pingInterval: 0 });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    const ping = clientFrame({ opcode: OP.PING, payload: new Uint8Array(125) });
    const burst = concat(...Array.from({ length: 1_000 }, () => ping)); // 131 KB of pings
    // 200 bursts (about 26 MB of pings, 100 times maxBufferedAmount), at most 20 s.
    const deadline = Date.now() + 20_000;
    for (let i = 0; i < 200 && Date.now() < deadline; i++) {
      await withTimeout(raw.write(burst), 5_000, "a burst of pings");
    }
    const socket = h.opened[0];
    await waitUntil(() => h.server.metrics().bytesReceived >= 200 * burst.length, "the pings read");
    assert.equal(h.closed.length, 0, "the flooder was closed");
    // At most one pong in flight and one waiting (127 bytes each).
    assert.ok(socket.bufferedAmount <= 2 * 127, `${socket.bufferedAmount} bytes queued`);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a slow reader that catches up is not closed: the limit is on what is waiting, not on what is sent", async () => {
  const chunk = new Uint8Array(64 * KiB);
  const total = 64; // 4 MiB in all, eight times maxBufferedAmount
  let refused = 0;
  const h = startServer({ maxBufferedAmount: 512 * KiB, pingInterval: 0 }, {
    async open(socket) {
      for (let i = 0; i < total; i++) {
        if (!socket.send(chunk)) refused++;
        // A well-behaved sender waits for the buffer to drain below the limit.
        if (socket.bufferedAmount > 256 * KiB) await socket.drained();
      }
    },
  });
  const client = await TestClient.open(h.server.url);
  try {
    for (let i = 0; i < total; i++) {
      const message = await client.next(10_000);
      assert.equal((message as Uint8Array).length, chunk.length);
    }
    assert.equal(refused, 0);
    assert.equal(client.closeEvent, null);
  } finally {
    await client.dispose();
    await h.server.shutdown();
  }
});
