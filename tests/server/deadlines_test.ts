/**
 * Deadlines are measured from real time (issue 10): the server's coarse
 * clock is refreshed only by its housekeeping timer, so a deadline counted
 * from it could fire up to one housekeeping interval early. Each test starts
 * its deadlines at several phases of that interval and checks that none
 * fires before its time (a lower bound, not a timing target: a slow machine
 * only makes deadlines later).
 */

import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw_client.ts";
import { delay, startServer, waitUntil } from "../helpers/harness.ts";

// With these timeouts the shortest is TIMEOUT, so housekeeping runs every
// TIMEOUT / 4 = 100 ms; PHASES deadlines start spread over one interval.
const TIMEOUT = 400;
const PHASES = 4;
const INTERVAL = TIMEOUT / 4;
// Date.now() has whole milliseconds: a deadline may fire up to 1 ms before
// a performance.now() measurement says it is due.
const CLOCK_SLACK = 2;

Deno.test("the close deadline never fires early, whatever the housekeeping phase", async () => {
  const started = new Map<unknown, number>();
  const elapsed: number[] = [];
  const h = startServer({ closeTimeout: TIMEOUT }, {
    close(socket) {
      elapsed.push(performance.now() - started.get(socket)!);
    },
  });
  const clients: RawClient[] = [];
  try {
    for (let i = 0; i < PHASES; i++) {
      const raw = await RawClient.connect(h.port);
      clients.push(raw);
      await raw.handshake();
    }
    await waitUntil(() => h.opened.length === PHASES, "every socket to open");
    // Each client never reads: a message larger than the socket buffers
    // hold keeps the close frame queued behind it, so each connection ends
    // exactly at its close deadline, when the close handler is called.
    const big = new Uint8Array(16 * 1024 * 1024);
    for (const socket of h.opened) {
      await delay(INTERVAL / PHASES);
      socket.send(big);
      started.set(socket, performance.now());
      socket.close(1000, "bye");
    }
    await waitUntil(() => elapsed.length === PHASES, "every close deadline", 5_000);
    for (const ms of elapsed) {
      assert.ok(
        ms >= TIMEOUT - CLOCK_SLACK,
        `a close deadline of ${TIMEOUT} ms fired after ${ms.toFixed(1)} ms (all: ${
          elapsed.map((e) => e.toFixed(0)).join(", ")
        })`,
      );
    }
  } finally {
    for (const raw of clients) raw.close();
    await h.server.shutdown();
  }
});

Deno.test("the handshake deadline never fires early, whatever the housekeeping phase", async () => {
  const h = startServer({ handshakeTimeout: TIMEOUT });
  try {
    const waits = Array.from({ length: PHASES }, async (_, i) => {
      await delay(i * INTERVAL / PHASES);
      // Taken before connecting, so the server's deadline starts later, never earlier.
      const start = performance.now();
      using raw = await RawClient.connect(h.port);
      await raw.expectEnd(true, 5_000);
      return performance.now() - start;
    });
    const elapsed = await Promise.all(waits);
    for (const ms of elapsed) {
      assert.ok(
        ms >= TIMEOUT - CLOCK_SLACK,
        `a handshake deadline of ${TIMEOUT} ms fired after ${ms.toFixed(1)} ms (all: ${
          elapsed.map((e) => e.toFixed(0)).join(", ")
        })`,
      );
    }
  } finally {
    await h.server.shutdown();
  }
});
