/**
 * Memory after an attack (issue 10, item 8): what connections held is given
 * back when they end, and a response to a client that stopped reading holds
 * a bounded read-ahead of its body.
 */

import assert from "node:assert/strict";
import { ResponseWriter } from "../../src/server/response_writer.ts";
import { clientFrame } from "../helpers/frames.ts";
import { delay, waitUntil } from "../helpers/harness.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startServerProcess } from "../helpers/server_process.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A connection whose peer accepts `capacity` bytes (the kernel's buffers)
 * and then reads nothing: later writes wait until close() rejects them.
 */
class StalledConn {
  accepted = 0;
  #capacity: number;
  #stalled: (() => void)[] = [];

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  write(bytes: Uint8Array): Promise<number> {
    const room = this.#capacity - this.accepted;
    if (room > 0) {
      const n = Math.min(room, bytes.length);
      this.accepted += n;
      return Promise.resolve(n);
    }
    return new Promise((_, reject) => this.#stalled.push(() => reject(new Error("closed"))));
  }

  get waiting(): boolean {
    return this.#stalled.length > 0;
  }

  close(): void {
    for (const reject of this.#stalled.splice(0)) reject();
  }
}

Deno.test("a response to a client that stopped reading reads its body only a bounded way ahead", async () => {
  // A static file as the handler returns it: a declared length and a body
  // read on demand (a pull stream with no queue of its own), 64 KiB a piece.
  const size = 8 * MiB;
  const pieceSize = 64 * KiB;
  let pulled = 0;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled += pieceSize;
      controller.enqueue(new Uint8Array(pieceSize));
      if (pulled >= size) controller.close();
    },
    cancel() {
      cancelled = true;
    },
  }, { highWaterMark: 0 });
  const response = new Response(body, { headers: { "content-length": String(size) } });
  const conn = new StalledConn(256 * KiB);
  const writer = new ResponseWriter(conn as unknown as Deno.Conn);
  const done = writer.write(response, { method: "GET", version: [1, 1] });
  try {
    await waitUntil(() => conn.waiting, "the writes to stall", 5_000);
    await delay(50); // anything still to be read ahead has been by now
    const ahead = pulled - conn.accepted;
    // The piece being written, the one read after it, and 64 KiB of read-ahead.
    assert.ok(ahead <= 192 * KiB, `${ahead / KiB} KiB read ahead of what the client took`);
  } finally {
    writer.abort();
    conn.close();
  }
  assert.equal(await done, "cut");
  assert.ok(cancelled, "the body was cancelled");
});

Deno.test("memory held by unfinished large messages is given back when their connections end", async () => {
  // Peers that each send most of a 15 MiB message and stall: the server
  // holds their buffers. Once they are gone it must give the memory back
  // (V8 frees buffers only when it collects garbage, which an idle server
  // never does), not keep its peak.
  // 64 MiB messages: the server-wide budget for unfinished messages (4 x
  // maxPayload) then lets all the peers below hold theirs.
  const server = await startServerProcess(["--mode", "echo", "--max-payload", "64mb"]);
  const peers: RawClient[] = [];
  try {
    const base = await server.rss();
    const frame = clientFrame({ opcode: 0x2, payload: new Uint8Array(15 * MiB) });
    const part = frame.subarray(0, frame.length - MiB);
    for (let i = 0; i < 12; i++) {
      const raw = await RawClient.connect(server.port);
      peers.push(raw);
      await raw.handshake();
      await raw.write(part);
    }
    // Everything sent has been read: the server holds ~12 x 14 MiB.
    await delay(500);
    const peak = await server.rss();
    assert.ok(peak - base > 100 * MiB, `the peers cost only ${(peak - base) / MiB} MiB`);
    for (const raw of peers) raw.close();
    // Generous: within 48 MiB of where it started, well under the ~170 MiB peak growth.
    let now = peak;
    const deadline = Date.now() + 5_000;
    while ((now = await server.rss()) > base + 48 * MiB && Date.now() < deadline) await delay(100);
    assert.ok(
      now <= base + 48 * MiB,
      `RSS ${(now / MiB).toFixed(0)} MiB after the peers left (${(base / MiB).toFixed(0)} MiB ` +
        `before, ${(peak / MiB).toFixed(0)} MiB at the peak)`,
    );
  } finally {
    for (const raw of peers) raw.close();
    await server.close();
  }
});
