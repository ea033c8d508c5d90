/**
 * `binaryMessages: "copy"` (the default): every binary message is the
 * handler's to keep. Messages that span reads are assembled in pooled
 * buffers that later messages reuse, and the handler gets a copy; a message
 * whole in one read is copied out of the reused read buffer. What a user
 * relies on: a message kept by the handler stays unchanged whatever arrives
 * after it, on this connection or another, on every path (whole in one
 * read, spanning reads, read straight into its buffer, fragmented,
 * compressed), and it is an array of its own (its whole ArrayBuffer).
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import { startServer, waitUntil } from "../helpers/harness.ts";
import { assertSameBytes, clientFrame, pattern } from "../helpers/frames.ts";
import { OP, RawClient } from "../helpers/raw_client.ts";

const WAIT_MS = 10_000;
const OFFER = "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

/** Compresses as a client would (RFC 7692 §7.2.1). */
function compress(bytes: Uint8Array): Uint8Array {
  const out = zlib.deflateRawSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return new Uint8Array(out.subarray(0, out.length - 4));
}

/** Writes `frame` in pieces of at most `piece` bytes, a pause between them (separate reads). */
async function writeInPieces(raw: RawClient, frame: Uint8Array, piece: number): Promise<void> {
  for (let at = 0; at < frame.length; at += piece) {
    await raw.write(frame.subarray(at, at + piece));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("copy: kept messages stay unchanged after later messages, on every receive path", async () => {
  const kept: Uint8Array[] = [];
  const harness = startServer({ pingInterval: 0, perMessageDeflate: true }, {
    message(socket, data) {
      if (typeof data === "string") return;
      kept.push(data);
      socket.send(data);
    },
  });
  const expected: Uint8Array[] = [];
  const plain = await RawClient.connect(harness.port);
  const zipped = await RawClient.connect(harness.port);
  try {
    await plain.handshake();
    await zipped.handshake({ headers: [["Sec-WebSocket-Extensions", OFFER]] });
    let seed = 1;
    const send = async (
      raw: RawClient,
      size: number,
      how: "whole" | "pieces" | "fragments" | "compressed",
    ) => {
      const bytes = pattern(size, seed++);
      expected.push(bytes);
      if (how === "whole") {
        await raw.write(clientFrame({ opcode: OP.BINARY, payload: bytes }));
      } else if (how === "pieces") {
        await writeInPieces(raw, clientFrame({ opcode: OP.BINARY, payload: bytes }), 4096);
      } else if (how === "fragments") {
        const cuts = [0, size >> 2, size >> 1, size];
        for (let i = 0; i < 3; i++) {
          await raw.write(clientFrame({
            opcode: i === 0 ? OP.BINARY : OP.CONTINUATION,
            fin: i === 2,
            payload: bytes.subarray(cuts[i], cuts[i + 1]),
          }));
        }
      } else {
        await raw.write(clientFrame({ opcode: OP.BINARY, payload: compress(bytes), rsv: 0x40 }));
      }
      const echo = await raw.readFrame(WAIT_MS);
      assert.equal(echo.opcode, OP.BINARY);
      const payload = echo.rsv === 0x40
        ? new Uint8Array(zlib.inflateRawSync(
          new Uint8Array([...echo.payload, 0, 0, 0xff, 0xff]),
          { finishFlush: zlib.constants.Z_SYNC_FLUSH },
        ))
        : echo.payload;
      assertSameBytes(payload, bytes, `echo of ${size} bytes (${how})`);
    };
    // Twice over, so that the second round's messages land in the read
    // buffer and the pooled assembly buffers the first round's used.
    for (let round = 0; round < 2; round++) {
      // Whole in one read: small, then 16 KiB once the read buffer has grown.
      for (let i = 0; i < 4; i++) await send(plain, 100, "whole");
      for (let i = 0; i < 4; i++) await send(plain, 16 * 1024, "whole");
      // Spanning reads: copied into the assembly buffer...
      await send(plain, 40_000, "pieces");
      // ...and read straight into it (a long payload still to come).
      await send(plain, (1 << 20) + 3, "whole");
      await send(plain, (1 << 20) + 3, "pieces");
      await send(plain, 300 * 1024, "fragments");
      await send(zipped, 200 * 1024, "compressed");
      await send(zipped, 100, "compressed");
    }
    await waitUntil(() => kept.length === expected.length, "every message kept");
    for (let i = 0; i < kept.length; i++) {
      const message = kept[i];
      assertSameBytes(message, expected[i], `kept message ${i} (${expected[i].length} bytes)`);
      assert.equal(message.byteOffset, 0, `kept message ${i} starts its own buffer`);
      assert.equal(
        message.buffer.byteLength,
        message.length,
        `kept message ${i}: no larger buffer`,
      );
    }
  } finally {
    plain.close();
    zipped.close();
    await harness.server.shutdown();
  }
});

Deno.test("copy: a kept message stays unchanged while another connection reuses the pooled buffers", async () => {
  const kept = new Map<string, Uint8Array>();
  const harness = startServer<string>({ pingInterval: 0 }, {
    open(socket) {
      socket.data = socket.url.endsWith("/keep") ? "keep" : "echo";
    },
    message(socket, data) {
      if (typeof data === "string") return;
      if (socket.data === "keep") kept.set(`${kept.size}`, data);
      else socket.send(data);
    },
  });
  const keeper = await RawClient.connect(harness.port);
  const other = await RawClient.connect(harness.port);
  try {
    await keeper.handshake({ path: "/keep" });
    await other.handshake();
    const first = pattern((1 << 20) + 5, 3);
    await writeInPieces(keeper, clientFrame({ opcode: OP.BINARY, payload: first }), 64 * 1024);
    await waitUntil(() => kept.size === 1, "first message kept");
    // The other connection's messages of the same size class take the
    // pooled buffer the first was assembled in, and overwrite it.
    for (let i = 0; i < 3; i++) {
      const bytes = pattern((1 << 20) + 5, 100 + i);
      await other.write(clientFrame({ opcode: OP.BINARY, payload: bytes }));
      assertSameBytes((await other.readFrame(WAIT_MS)).payload, bytes, `echo ${i}`);
    }
    assertSameBytes(kept.get("0")!, first, "the kept message");
  } finally {
    keeper.close();
    other.close();
    await harness.server.shutdown();
  }
});
