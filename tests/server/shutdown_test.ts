/**
 * Graceful shutdown over real sockets: stop accepting, flush what was
 * already sent, close every client with 1001, force after a bounded wait,
 * drop handshakes in progress, resolve `finished`; and the `signal` option.
 */

import assert from "node:assert/strict";
import { buildUpgradeRequest, OP, RawClient, withTimeout } from "../helpers/raw_client.ts";
import { clientFrame, closePayload } from "../helpers/frames.ts";
import { delay, startServer, TestClient, waitUntil } from "../helpers/harness.ts";

const MiB = 1024 * 1024;

/** Asserts that nothing listens on `port` any more. */
async function assertRefused(port: number): Promise<void> {
  await assert.rejects(
    async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
    },
    Deno.errors.ConnectionRefused,
  );
}

Deno.test("shutdown closes every client with 1001, stops accepting, and resolves finished", async () => {
  const h = startServer({ pingInterval: 0 });
  const clients = [
    await TestClient.open(h.server.url),
    await TestClient.open(h.server.url),
    await TestClient.open(h.server.url),
  ];
  try {
    await waitUntil(() => h.server.connectionCount === 3, "three connections");
    let finished = false;
    h.server.finished.then(() => finished = true);
    await withTimeout(h.server.shutdown(), 5_000, "shutdown");
    assert.ok(finished || await withTimeout(h.server.finished.then(() => true), 1_000, "finished"));
    for (const client of clients) {
      const event = await client.waitClosed();
      assert.equal(event.code, 1001);
      assert.equal(event.reason, "server shutting down");
    }
    assert.equal(h.server.connectionCount, 0);
    assert.equal(h.closed.length, 3);
    assert.ok(h.closed.every((c) => c.code === 1001), "clean closes, echoed by the clients");
    await assertRefused(h.port);
  } finally {
    for (const client of clients) await client.dispose();
    await h.server.shutdown();
  }
});

Deno.test("shutdown flushes a large message sent just before it, then closes with 1001", async () => {
  const big = new Uint8Array(8 * MiB);
  for (let i = 0; i < big.length; i += 4096) big[i] = (i >>> 12) & 0xff;
  const h = startServer({ pingInterval: 0 });
  const client = await TestClient.open(h.server.url);
  try {
    await waitUntil(() => h.opened.length === 1, "open");
    assert.equal(h.opened[0].send(big), true);
    assert.equal(h.opened[0].send("last words"), true);
    const stopped = h.server.shutdown();
    const received = await client.next(10_000);
    assert.ok(received instanceof Uint8Array);
    assert.equal(received.length, big.length);
    assert.deepEqual(received, big);
    assert.equal(await client.next(), "last words");
    const event = await client.waitClosed();
    assert.equal(event.code, 1001);
    await withTimeout(stopped, 10_000, "shutdown");
  } finally {
    await client.dispose();
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("shutdown drops a client that never answers the close after the timeout", async () => {
  const h = startServer({ pingInterval: 0, closeTimeout: 60_000 });
  const polite = await TestClient.open(h.server.url);
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    await waitUntil(() => h.server.connectionCount === 2, "two connections");
    const stopped = h.server.shutdown({ timeout: 300 });
    await raw.expectClose(1001, "server shutting down");
    // No answer from us: shutdown must not wait for closeTimeout (60 s) or forever.
    await raw.expectEnd(true, 5_000);
    await withTimeout(stopped, 5_000, "shutdown");
    await withTimeout(h.server.finished, 1_000, "finished");
    assert.equal((await polite.waitClosed()).code, 1001);
    assert.equal(h.server.connectionCount, 0);
    const codes = h.closed.map((c) => c.code).sort();
    assert.deepEqual(
      codes,
      [1001, 1006],
      "the polite one closed cleanly, the mute one was dropped",
    );
  } finally {
    await polite.dispose();
    await h.server.shutdown();
  }
});

Deno.test("shutdown drops handshakes in progress, including one waiting in the upgrade hook", async () => {
  let hookEntered = false;
  const h = startServer({ pingInterval: 0 }, {
    async upgrade(request) {
      if (!request.url.includes("/slow")) return;
      hookEntered = true;
      await delay(300);
    },
  });
  try {
    using partial = await RawClient.connect(h.port);
    await partial.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"); // no end of head
    using hooked = await RawClient.connect(h.port);
    await hooked.write(buildUpgradeRequest({ path: "/slow" }));
    await waitUntil(() => hookEntered, "the upgrade hook");
    await withTimeout(h.server.shutdown(), 5_000, "shutdown");
    await partial.expectEnd(true);
    await hooked.expectEnd(true); // no 101, no bytes at all
    assert.equal(h.opened.length, 0, "the hooked handshake never became a connection");
    assert.equal(h.server.connectionCount, 0);
    await assertRefused(h.port);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a raw client that answers the shutdown close gets a clean close after everything sent", async () => {
  const h = startServer({ pingInterval: 0 });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    await waitUntil(() => h.opened.length === 1, "open");
    h.opened[0].send("before shutdown");
    const stopped = h.server.shutdown();
    const frame = await raw.readFrame();
    assert.equal(frame.opcode, OP.TEXT);
    assert.equal(new TextDecoder().decode(frame.payload), "before shutdown");
    await raw.expectClose(1001);
    await raw.write(clientFrame({ opcode: OP.CLOSE, payload: closePayload(1001) }));
    await raw.expectEnd();
    await withTimeout(stopped, 5_000, "shutdown");
    assert.deepEqual(h.closed.map((c) => c.code), [1001]);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("aborting the signal option shuts the server down", async () => {
  const controller = new AbortController();
  const h = startServer({ pingInterval: 0, signal: controller.signal });
  const client = await TestClient.open(h.server.url);
  try {
    controller.abort();
    const event = await client.waitClosed();
    assert.equal(event.code, 1001);
    await withTimeout(h.server.finished, 5_000, "finished");
    assert.equal(h.server.connectionCount, 0);
    await assertRefused(h.port);
  } finally {
    await client.dispose();
    await h.server.shutdown();
  }
});

Deno.test("an already aborted signal shuts the server down at once", async () => {
  const h = startServer({ signal: AbortSignal.abort() });
  await withTimeout(h.server.finished, 5_000, "finished");
  await assertRefused(h.port);
});

Deno.test("shutdown is idempotent and a second call resolves with the first", async () => {
  const h = startServer({ pingInterval: 0 });
  const client = await TestClient.open(h.server.url);
  try {
    const first = h.server.shutdown();
    const second = h.server.shutdown({ code: 4000 });
    assert.equal(first, second);
    await withTimeout(first, 5_000, "shutdown");
    assert.equal((await client.waitClosed()).code, 1001);
  } finally {
    await client.dispose();
  }
});
