/**
 * `binaryMessages: "view"`: binary messages lent to the `message` handler
 * (valid during the call, memory reused), against real clients over
 * 127.0.0.1. What a user relies on: every byte right while the handler runs
 * (whole-read, multi-read and fragmented messages), sends from the handler
 * intact, listeners and iterators given copies of their own, and no
 * message disturbed by another connection's buffers going back to the pool,
 * even when a connection ends with a read still filling one.
 */

import assert from "node:assert/strict";
import { serve, type ServerWebSocket } from "../../mod.ts";
import { startServer, TestClient, waitUntil } from "../helpers/harness.ts";
import { assertSameBytes, clientFrame, concat, pattern } from "../helpers/frames.ts";
import { OP, RawClient } from "../helpers/raw_client.ts";

const WAIT_MS = 10_000;

Deno.test("view: echo of every size is identical, whole-read, multi-read and fragmented", async () => {
  const harness = startServer({ pingInterval: 0, binaryMessages: "view" }, {
    message(socket, data) {
      socket.send(data);
    },
  });
  const client = await TestClient.open(harness.server.url);
  const raw = await RawClient.connect(harness.port);
  try {
    for (const size of [0, 1, 125, 126, 16 * 1024, 65_536, (1 << 20) + 3, 4 << 20]) {
      const bytes = pattern(size, size & 0xff);
      client.ws.send(bytes);
      const echoed = await client.next(WAIT_MS);
      assert.ok(echoed instanceof Uint8Array, `${size} bytes came back as text`);
      assertSameBytes(echoed, bytes, `binary of ${size} bytes`);
    }
    // Fragments of a 300 KiB message, as three frames in separate writes.
    await raw.handshake();
    const whole = pattern(300 * 1024, 9);
    const cuts = [0, 100_000, 250_000, whole.length];
    for (let i = 0; i < 3; i++) {
      await raw.write(clientFrame({
        opcode: i === 0 ? OP.BINARY : OP.CONTINUATION,
        fin: i === 2,
        payload: whole.subarray(cuts[i], cuts[i + 1]),
      }));
    }
    const frame = await raw.readFrame(WAIT_MS);
    assert.equal(frame.opcode, OP.BINARY);
    assertSameBytes(frame.payload, whole, "fragmented message");
  } finally {
    raw.close();
    await client.dispose();
    await harness.server.shutdown();
  }
});

Deno.test("view: many messages in one read, each echoed, arrive intact and in order", async () => {
  const harness = startServer({ pingInterval: 0, binaryMessages: "view" }, {
    message(socket, data) {
      socket.send(data);
    },
  });
  const raw = await RawClient.connect(harness.port);
  try {
    await raw.handshake();
    // Long and short messages back to back, sent in one write: the long
    // ones may go out from the read buffer itself while the parser still
    // works through the rest of that read.
    const sizes = [5000, 100, 20_000, 4096, 70_000, 4095, 16_384, 16_384, 16_384, 1];
    for (let round = 0; round < 20; round++) {
      const payloads = sizes.map((size, i) => pattern(size, round * 16 + i));
      await raw.write(
        concat(...payloads.map((payload) => clientFrame({ opcode: OP.BINARY, payload }))),
      );
      for (const [i, payload] of payloads.entries()) {
        const frame = await raw.readFrame(WAIT_MS);
        assert.equal(frame.opcode, OP.BINARY);
        assertSameBytes(
          frame.payload,
          payload,
          `round ${round}, message ${i} (${payload.length} bytes)`,
        );
      }
    }
  } finally {
    raw.close();
    await harness.server.shutdown();
  }
});

Deno.test("view: a lent message sent back twice and to another socket arrives intact each time", async () => {
  const sockets: ServerWebSocket<unknown>[] = [];
  const harness = startServer({ pingInterval: 0, binaryMessages: "view" }, {
    open(socket) {
      sockets.push(socket);
    },
    message(socket, data) {
      // The first send may go out from the lent memory itself; the others
      // must not be disturbed by that.
      socket.send(data);
      socket.send(data);
      for (const other of sockets) if (other !== socket) other.send(data);
    },
  });
  const sender = await TestClient.open(harness.server.url);
  const watcher = await TestClient.open(harness.server.url);
  try {
    await waitUntil(() => sockets.length === 2, "both open", WAIT_MS);
    for (const [i, size] of [70_000, 1 << 20, (3 << 20) + 5, 1 << 20].entries()) {
      const bytes = pattern(size, 20 + i);
      sender.ws.send(bytes);
      for (
        const [client, what] of [[sender, "echo 1"], [sender, "echo 2"], [
          watcher,
          "relay",
        ]] as const
      ) {
        const got = await client.next(WAIT_MS);
        assert.ok(got instanceof Uint8Array);
        assertSameBytes(got, bytes, `${what} of message ${i} (${size} bytes)`);
      }
    }
  } finally {
    await sender.dispose();
    await watcher.dispose();
    await harness.server.shutdown();
  }
});

Deno.test("view: the handler borrows, listeners and iterators keep copies of their own", async () => {
  const lent: Uint8Array[] = [];
  const copies: Uint8Array[] = [];
  const iterated: Uint8Array[] = [];
  const checked: boolean[] = [];
  const first = pattern(1 << 20, 1);
  const second = pattern(1 << 20, 2);
  const harness = startServer({ pingInterval: 0, binaryMessages: "view" }, {
    open(socket) {
      socket.addEventListener(
        "message",
        (event) => copies.push((event as MessageEvent).data as Uint8Array),
      );
      (async () => {
        for await (const message of socket) iterated.push(message as Uint8Array);
      })();
    },
    message(socket, data) {
      const bytes = data as Uint8Array;
      // Right while the handler runs.
      const expected = lent.length === 0 ? first : second;
      checked.push(bytes.length === expected.length && bytes.every((b, i) => b === expected[i]));
      lent.push(bytes);
      socket.send("handled");
    },
  });
  const client = await TestClient.open(harness.server.url);
  try {
    client.ws.send(first);
    assert.equal(await client.next(WAIT_MS), "handled");
    client.ws.send(second);
    assert.equal(await client.next(WAIT_MS), "handled");
    await waitUntil(() => iterated.length === 2, "both messages iterated", WAIT_MS);
    assert.deepEqual(checked, [true, true]);
    assertSameBytes(copies[0], first, "listener's first message after the second arrived");
    assertSameBytes(copies[1], second, "listener's second message");
    assertSameBytes(iterated[0], first, "iterator's first message after the second arrived");
    assertSameBytes(iterated[1], second, "iterator's second message");
    // The memory was lent, not given: the second message reused the first's.
    assert.equal(lent[0].buffer, lent[1].buffer, "the second message did not reuse the memory");
    assertSameBytes(lent[0], second, "the kept view now holds the second message");
  } finally {
    await client.dispose();
    await harness.server.shutdown();
  }
});

Deno.test("view: a connection failed while a read fills its buffer leaves other messages intact", async () => {
  const size = 4 << 20;
  const sockets = new Map<string, ServerWebSocket<unknown>>();
  const harness = startServer({
    pingInterval: 0,
    binaryMessages: "view",
    // The victim reads nothing, so a few sends fail it with 1008.
    maxBufferedAmount: 64 * 1024,
  }, {
    open(socket) {
      sockets.set(new URL(socket.url).pathname, socket);
    },
    message(socket, data) {
      socket.send(data);
    },
  });
  const victim = await RawClient.connect(harness.port);
  const others: RawClient[] = [];
  try {
    await victim.handshake({ path: "/victim" });
    await waitUntil(() => sockets.has("/victim"), "victim open", WAIT_MS);
    // Half of a 4 MiB message: the server's read of the rest is pending in
    // a buffer from the pool when the connection fails.
    const frame = clientFrame({ opcode: OP.BINARY, payload: pattern(size, 3) });
    const header = frame.length - size;
    await victim.write(frame.subarray(0, header + size / 2));
    await waitUntil(() => harness.server.metrics().bytesReceived >= size / 2, "half read", WAIT_MS);
    // Sends to a peer that reads nothing: past maxBufferedAmount the
    // connection fails (1008) and its message in progress is abandoned,
    // while the server goes on reading (and discarding) until its EOF.
    const victimSocket = sockets.get("/victim")!;
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < 64 && victimSocket.readyState === WebSocket.OPEN; i++) {
      victimSocket.send(big);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    assert.notEqual(victimSocket.readyState, WebSocket.OPEN, "the victim was not failed");
    // Another connection's message of the same size is assembled in a
    // buffer from the pool, most of it received, when the victim's next
    // bytes arrive: they must not land in that buffer.
    const other = await RawClient.connect(harness.port);
    others.push(other);
    await other.handshake({ path: "/other" });
    const payload = pattern(size, 10);
    const otherFrame = clientFrame({ opcode: OP.BINARY, payload });
    const before = harness.server.metrics().bytesReceived;
    await other.write(otherFrame.subarray(0, otherFrame.length - 1000));
    await waitUntil(
      () => harness.server.metrics().bytesReceived >= before + otherFrame.length - 1000,
      "the other message mostly read",
      WAIT_MS,
    );
    await victim.write(frame.subarray(header + size / 2, header + size / 2 + 64 * 1024));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await other.write(otherFrame.subarray(otherFrame.length - 1000));
    const echoed = await other.readFrame(WAIT_MS);
    assert.equal(echoed.opcode, OP.BINARY);
    assertSameBytes(echoed.payload, payload, "the other connection's message");
  } finally {
    victim.close();
    for (const other of others) other.close();
    await harness.server.shutdown();
  }
});

Deno.test("binaryMessages other than copy or view is refused, naming the option", () => {
  assert.throws(
    () =>
      serve({ port: 0, binaryMessages: "borrow" as "view" }, {
        message() {},
      }),
    (error: Error) => error instanceof RangeError && /binaryMessages/.test(error.message),
  );
});
