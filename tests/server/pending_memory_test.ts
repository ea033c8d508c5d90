/**
 * Memory for unfinished messages is bounded server-wide (issue 10): every
 * peer may hold a partly received message of up to maxPayload, and 48 peers
 * each holding 15 MiB added 773 MiB. maxPendingMessageBytes caps the total;
 * the connection whose message would pass it is closed with 1013 (try again
 * later), and the others carry on.
 */

import assert from "node:assert/strict";
import { type AssemblyBudget, FrameParser, MessageAssembler } from "../../mod.ts";
import { resolveOptions } from "../../src/server/options.ts";
import { clientFrame, MessageRecorder, pattern } from "../helpers/frames.ts";
import { OP, RawClient } from "../helpers/raw_client.ts";
import { startServer } from "../helpers/harness.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const TRY_AGAIN_LATER = 1013;

/** A budget that also reports how much is taken. */
function countingBudget(bytes: number): AssemblyBudget & { readonly used: number } {
  let used = 0;
  return {
    take(n) {
      if (used + n > bytes) return false;
      used += n;
      return true;
    },
    give(n) {
      used -= n;
    },
    get used() {
      return used;
    },
  };
}

function assembler(memory: AssemblyBudget, maxPayload = MiB) {
  const recorder = new MessageRecorder();
  const parser = new FrameParser(new MessageAssembler(recorder, { maxPayload, memory }));
  return { recorder, push: (frame: Uint8Array) => parser.push(frame) };
}

Deno.test("MessageAssembler: messages in progress share the memory budget; past it, 1013", () => {
  const memory = countingBudget(600 * KiB);
  const a = assembler(memory);
  const b = assembler(memory);
  // A fragmented binary message holds its buffer (grown to 4x what came, at most maxPayload).
  a.push(clientFrame({ opcode: OP.BINARY, fin: false, payload: pattern(100 * KiB) }));
  assert.equal(memory.used, 400 * KiB);
  // A fragmented text message holds the bytes received.
  b.push(clientFrame({ opcode: OP.TEXT, fin: false, payload: "x".repeat(150 * KiB) }));
  assert.equal(memory.used, 550 * KiB);
  b.push(clientFrame({ opcode: OP.CONTINUATION, fin: false, payload: "y".repeat(60 * KiB) }));
  assert.deepEqual(b.recorder.summary, [{ type: "error", code: TRY_AGAIN_LATER }]);
  assert.equal(memory.used, 400 * KiB, "the failed message gave back what it held");
  // The first message completes, and gives its memory back on delivery.
  a.push(clientFrame({ opcode: OP.CONTINUATION, payload: pattern(10) }));
  assert.equal(a.recorder.events.length, 1);
  assert.equal((a.recorder.events[0] as { data: Uint8Array }).data.length, 100 * KiB + 10);
  assert.equal(memory.used, 0);
  // Messages that arrive whole never take from it.
  const c = assembler(countingBudget(0));
  c.push(clientFrame({ opcode: OP.BINARY, payload: pattern(200 * KiB) }));
  c.push(clientFrame({ opcode: OP.TEXT, payload: "whole" }));
  assert.deepEqual(c.recorder.events.map((event) => event.type), ["binary", "text"]);
});

Deno.test("MessageAssembler: a trusted length claim the memory budget refuses falls back to growing", () => {
  const memory = countingBudget(100 * KiB);
  let claims = 0;
  const recorder = new MessageRecorder();
  const parser = new FrameParser(
    new MessageAssembler(recorder, {
      maxPayload: MiB,
      memory,
      budget: { take: () => (claims++, true), give: () => {} },
    }),
  );
  // The header claims 512 KiB; the first piece is 1 KiB: a 512 KiB buffer
  // does not fit the memory budget, a 16 KiB one does.
  const frame = clientFrame({ opcode: OP.BINARY, payload: pattern(512 * KiB) });
  parser.push(frame.subarray(0, 14 + KiB));
  assert.equal(claims, 1);
  assert.equal(memory.used, 16 * KiB);
  assert.deepEqual(recorder.events, []);
});

Deno.test("maxPendingMessageBytes defaults to 64 MiB, or 4 x maxPayload when more", () => {
  assert.equal(resolveOptions({}).maxPendingMessageBytes, 64 * MiB);
  assert.equal(resolveOptions({ maxPayload: 32 * MiB }).maxPendingMessageBytes, 128 * MiB);
  assert.equal(resolveOptions({ maxPendingMessageBytes: MiB }).maxPendingMessageBytes, MiB);
  assert.throws(() => resolveOptions({ maxPendingMessageBytes: -1 }), RangeError);
});

/** Sends a ping and waits for its pong: everything sent before it has been processed. */
async function sync(raw: RawClient): Promise<void> {
  await raw.write(clientFrame({ opcode: OP.PING, payload: "sync" }));
  const frame = await raw.readFrame();
  assert.equal(frame.opcode, OP.PONG);
}

Deno.test("the connection whose unfinished message would pass maxPendingMessageBytes gets 1013", async () => {
  const h = startServer(
    { maxPayload: MiB, maxPendingMessageBytes: 2 * MiB },
    { message: (socket, data) => void socket.send(data) },
  );
  const peers: RawClient[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const raw = await RawClient.connect(h.port);
      peers.push(raw);
      await raw.handshake();
    }
    const [a, b, c] = peers;
    // a and b each hold 600 KiB of a message: 1 MiB buffers, the whole budget.
    for (const raw of [a, b]) {
      await raw.write(clientFrame({ opcode: OP.BINARY, fin: false, payload: pattern(600 * KiB) }));
      await sync(raw);
    }
    // c's message would need more: c is closed with 1013; a and b are not.
    await c.write(clientFrame({ opcode: OP.BINARY, fin: false, payload: pattern(64 * KiB) }));
    await c.expectClose(TRY_AGAIN_LATER);
    await sync(a);
    await sync(b);
    // a finishes its message and gets it back; its memory is free again.
    await a.write(clientFrame({ opcode: OP.CONTINUATION, payload: pattern(1) }));
    const echo = await a.readFrame();
    assert.equal(echo.payload.length, 600 * KiB + 1);
    using d = await RawClient.connect(h.port);
    await d.handshake();
    await d.write(clientFrame({ opcode: OP.BINARY, fin: false, payload: pattern(600 * KiB) }));
    await d.write(clientFrame({ opcode: OP.CONTINUATION, payload: pattern(1) }));
    assert.equal((await d.readFrame()).payload.length, 600 * KiB + 1);
    assert.equal(h.server.metrics().closes[TRY_AGAIN_LATER], 1);
  } finally {
    for (const raw of peers) raw.close();
    await h.server.shutdown();
  }
});
