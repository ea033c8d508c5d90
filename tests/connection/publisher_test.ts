/**
 * A fast publisher against its room (issue 10, item 7): the server slows the
 * publisher (it stops reading it while the readers' queues drain) instead
 * of closing readers that read all the time but more slowly than it sends;
 * a reader that stops reading altogether is still closed with 1008 at
 * maxBufferedAmount.
 */

import assert from "node:assert/strict";
import { serve } from "../../mod.ts";
import { clientFrame } from "../helpers/frames.ts";
import { waitUntil } from "../helpers/harness.ts";
import { flood, readFrames } from "../helpers/load.ts";
import { OP, RawClient } from "../helpers/raw_client.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

Deno.test("a publisher faster than its room is slowed down; readers are not closed, a stalled one is", async () => {
  const closes = new Map<number, number>();
  let published = 0;
  const server = serve({
    port: 0,
    hostname: "127.0.0.1",
    // Smaller than the default so the stalled reader reaches it in time.
    maxBufferedAmount: 4 * MiB,
    closeTimeout: 500,
    pingInterval: 0,
  }, {
    open(socket) {
      socket.subscribe("room");
    },
    message(_socket, data) {
      published++;
      server.publish("room", data);
    },
    close(socket, code) {
      closes.set(socket.remoteAddr.port, code);
    },
  });
  const port = server.addr.port;
  const readers: RawClient[] = [];
  const stop = new AbortController();
  let stalled: RawClient | undefined;
  try {
    for (let i = 0; i < 20; i++) {
      const raw = await RawClient.connect(port);
      readers.push(raw);
      await raw.handshake({ path: "/room" });
    }
    stalled = await RawClient.connect(port);
    await stalled.handshake({ path: "/room" });
    const portOf = (raw: RawClient) => (raw.conn.localAddr as Deno.NetAddr).port;
    // Readers that read all the time, 32 KiB a read with 1 ms of handling
    // after each (~10-30 MB/s each, like a slow device): far slower than the
    // publisher, which sends 64 KiB messages flat out (and reads its own).
    const reads = readers.map((raw) => readFrames(raw.conn, stop.signal, 32 * KiB, 1));
    const message = clientFrame({ opcode: OP.BINARY, payload: new Uint8Array(64 * KiB) });
    const flooded = await flood(port, message, 3_000, { path: "/room", drain: true });
    assert.ok(published > 100, `only ${published} messages published`);
    for (const raw of readers) {
      const code = closes.get(portOf(raw));
      assert.equal(code, undefined, `a reader was closed with ${code}`);
    }
    assert.ok(!flooded.cutOff, "the publisher was cut off");
    // The stalled reader's queue still grew to the limit: 1008 (the close
    // handler hears it once closeTimeout has cut the connection).
    const stalledPort = portOf(stalled);
    await waitUntil(() => closes.has(stalledPort), "the stalled reader to be closed", 5_000);
    assert.equal(closes.get(stalledPort), 1008);
    stop.abort();
    const results = await Promise.all(reads);
    for (const result of results) {
      assert.equal(result.closeCode, null, "a reader got a close frame");
      assert.ok(result.frames > 0, "a reader got nothing");
    }
  } finally {
    stop.abort();
    for (const raw of readers) raw.close();
    stalled?.close();
    await server.shutdown();
  }
});
