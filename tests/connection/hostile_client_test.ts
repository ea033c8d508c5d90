/**
 * One hostile connection against everyone else (issue 10, items 2 and 3):
 * a peer that keeps its socket readable with tiny frames must not starve a
 * healthy client, a peer that floods pings and never reads must not grow
 * the server's memory, and a compressing peer's read must not inflate more
 * than about twice maxPayload before the others get their turn.
 *
 * The load tests run `tsunagu serve` as a subprocess, so the server has an
 * event loop and an RSS of its own, and measure from outside: the healthy
 * client's worst round trip and the server's VmRSS, with generous bounds.
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import { serve } from "../../mod.ts";
import { clientFrame, concat } from "../helpers/frames.ts";
import { delay, waitUntil } from "../helpers/harness.ts";
import { flood, type FloodOptions, probeEcho, repeatFrame } from "../helpers/load.ts";
import { OP, RawClient } from "../helpers/raw_client.ts";
import { startServerProcess } from "../helpers/server_process.ts";

const MiB = 1024 * 1024;
const FLOOD_MS = 2_000;

/**
 * Floods a fresh `tsunagu serve --mode echo` with `frame` for FLOOD_MS while
 * a healthy client sends one message every 100 ms and waits for its echo.
 * Returns what the healthy client saw and the server's RSS growth.
 */
async function floodAgainstHealthy(frame: Uint8Array, options: FloodOptions = {}) {
  const server = await startServerProcess(["--mode", "echo"]);
  try {
    const base = await server.rss();
    let peak = base;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await server.rss());
        await delay(100);
      }
    })();
    const url = `ws://127.0.0.1:${server.port}/`;
    const [flooded, probe] = await Promise.all([
      flood(server.port, repeatFrame(frame), FLOOD_MS, options),
      // Starts while the flood starts, ends a little after it.
      probeEcho(url, FLOOD_MS + 300),
    ]);
    sampling = false;
    await sampler;
    return { flooded, probe, growth: peak - base };
  } finally {
    await server.close();
  }
}

function assertServed(probe: Awaited<ReturnType<typeof probeEcho>>, bound = 500): void {
  const detail = `round trips ${probe.roundTrips.join(", ")} ms`;
  // A 100 ms cadence for ~2.3 s: about 20 echoes when nothing stalls.
  assert.ok(probe.sent >= 15, `only ${probe.sent} echoes sent: ${detail}`);
  assert.ok(probe.echoed >= probe.sent * 0.8, `${probe.echoed}/${probe.sent} echoed: ${detail}`);
  assert.ok(probe.worstMs < bound, `worst round trip ${probe.worstMs} ms: ${detail}`);
}

Deno.test("fair reading: 1-byte messages sent flat out do not stall a healthy client", async () => {
  // The flooder reads its echoes, so only the read loop's fairness is tested.
  const { flooded, probe } = await floodAgainstHealthy(
    clientFrame({ opcode: OP.TEXT, payload: "a" }),
    { drain: true },
  );
  assert.ok(flooded.written > 4 * MiB, `the flood sent only ${flooded.written} bytes`);
  assertServed(probe);
});

Deno.test("fair reading: empty pings sent flat out do not stall a healthy client", async () => {
  const { flooded, probe } = await floodAgainstHealthy(clientFrame({ opcode: OP.PING }), {
    drain: true,
  });
  assert.ok(flooded.written > 4 * MiB, `the flood sent only ${flooded.written} bytes`);
  assertServed(probe);
});

Deno.test("fair reading: empty continuation fragments sent flat out do not stall a healthy client", async () => {
  // One message started, then empty fragments of it without end.
  const { flooded, probe } = await floodAgainstHealthy(
    clientFrame({ opcode: OP.CONTINUATION, fin: false }),
    { drain: true, prefix: clientFrame({ opcode: OP.TEXT, fin: false, payload: "x" }) },
  );
  assert.ok(flooded.written > 4 * MiB, `the flood sent only ${flooded.written} bytes`);
  assertServed(probe);
});

Deno.test("a peer that floods empty pings and never reads: the server's memory stays bounded and others are served", async () => {
  // Every ping is owed a pong; the peer reads none. Queued pongs used to be
  // one allocation each (~100 bytes of memory for 2 wire bytes): ~100 MiB
  // a second of growth here.
  const { flooded, probe, growth } = await floodAgainstHealthy(clientFrame({ opcode: OP.PING }));
  assert.ok(flooded.written > 4 * MiB, `the flood sent only ${flooded.written} bytes`);
  assert.ok(growth < 48 * MiB, `the server grew by ${(growth / MiB).toFixed(0)} MiB`);
  assertServed(probe, 1_000);
});

/** One message of `size` zero bytes, compressed (RFC 7692) and framed as a client sends it. */
function compressedZeros(size: number): Uint8Array {
  const deflated = zlib.deflateRawSync(new Uint8Array(size), {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  // Without the 00 00 ff ff a sync flush ends with (RFC 7692 §7.2.1).
  const payload = new Uint8Array(deflated.buffer, deflated.byteOffset, deflated.length - 4);
  return clientFrame({ opcode: OP.BINARY, rsv: 0x40, payload });
}

Deno.test("a compressing connection inflates about 2 x maxPayload at most before others get their turn", async () => {
  // Messages of maxPayload zero bytes compress ~1000:1 into about 1 KiB.
  // However many of them one read brings are inflated before the read loop
  // can yield: reads of at most maxPayload / 1024 bytes keep that to the
  // message under way plus about one more, and having inflated maxPayload
  // the loop waits for the next turn of the event loop. Each synchronous
  // run of message handlers is one read's worth (counted until the next
  // microtask); a 0 ms timer chain here counts what one turn delivers.
  const maxPayload = 1 * MiB;
  let received = 0;
  let batch = 0;
  let largestBatch = 0;
  let turn = 0;
  let largestTurn = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ticking = true;
  const tick = () => {
    largestTurn = Math.max(largestTurn, turn);
    turn = 0;
    if (ticking) timer = setTimeout(tick, 0);
  };
  const server = serve({
    port: 0,
    hostname: "127.0.0.1",
    maxPayload,
    perMessageDeflate: true,
    pingInterval: 0,
  }, {
    message(_socket, data) {
      assert.equal((data as Uint8Array).length, maxPayload);
      received++;
      turn++;
      if (batch++ === 0) {
        queueMicrotask(() => {
          largestBatch = Math.max(largestBatch, batch);
          batch = 0;
        });
      }
    },
  });
  const count = 64;
  try {
    using raw = await RawClient.connect(server.addr.port);
    const head = await raw.handshake({
      headers: [["Sec-WebSocket-Extensions", "permessage-deflate"]],
    });
    assert.match(head.headers.get("sec-websocket-extensions") ?? "", /permessage-deflate/);
    const message = compressedZeros(maxPayload);
    assert.ok(message.length < 2048, `a message compressed to ${message.length} bytes`);
    tick();
    // All at once: the server finds them waiting in its socket.
    await raw.write(concat(...Array.from({ length: count }, () => message)));
    await waitUntil(() => received === count, `${count} messages`, 10_000);
    tick();
    assert.ok(largestBatch <= 2, `one read completed ${largestBatch} messages of maxPayload`);
    assert.ok(largestTurn <= 4, `one turn of the event loop delivered ${largestTurn} of them`);
    raw.close();
  } finally {
    ticking = false;
    clearTimeout(timer);
    await server.shutdown();
  }
});
