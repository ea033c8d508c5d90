/**
 * permessage-deflate (RFC 7692): negotiation, the receive rules for RSV1
 * and compressed messages (decompression bombs, bad data, bad UTF-8), and
 * compressed round trips over real sockets, against a raw client and
 * against npm `ws` as an independent implementation.
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
// A test-only peer, an independent implementation; kept out of deno.json so
// the published configuration lists no third-party dependency. Pinned to an
// exact version here because deno.json has `"lock": false`: a deno.lock
// listing it made `deno task start` fetch it first (tests/offline_test.ts).
// deno-lint-ignore no-import-prefix
import WebSocket, { WebSocketServer } from "npm:ws@8.18.3";
import { FrameParser } from "../../src/protocol/frame_parser.ts";
import { Opcode } from "../../src/protocol/frame.ts";
import { MessageAssembler } from "../../src/protocol/message.ts";
import {
  compressedFrame,
  inflateMessage,
  negotiateDeflate,
} from "../../src/protocol/permessage_deflate.ts";
import { connect } from "../../src/client/client.ts";
import {
  assertSameBytes,
  clientFrame,
  concat,
  MessageRecorder,
  pattern,
  type SummaryEvent,
  utf8,
} from "../helpers/frames.ts";
import { OP, RawClient } from "../helpers/raw_client.ts";
import { compressedTwin, eventKey } from "../fuzz/frame_fuzz.ts";
import { startServer, waitUntil } from "../helpers/harness.ts";

const BOTH_NO_TAKEOVER =
  "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/** Compresses as a client would (RFC 7692 §7.2.1), written with zlib directly. */
function compress(data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? utf8(data) : data;
  const out = zlib.deflateRawSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return new Uint8Array(out.subarray(0, out.length - 4));
}

function decompress(data: Uint8Array): Uint8Array {
  const input = concat(data, Uint8Array.of(0, 0, 0xff, 0xff));
  return new Uint8Array(zlib.inflateRawSync(input, { finishFlush: zlib.constants.Z_SYNC_FLUSH }));
}

Deno.test("negotiateDeflate: browsers' offers are accepted without context takeover", () => {
  for (
    const offer of [
      "permessage-deflate; client_max_window_bits", // Chromium
      "permessage-deflate", // Firefox
      "PerMessage-Deflate ; client_max_window_bits=15 ; server_no_context_takeover",
    ]
  ) {
    const agreement = negotiateDeflate([offer], {});
    assert.equal(agreement?.response, BOTH_NO_TAKEOVER, offer);
    assert.deepEqual(agreement?.params, { threshold: 1024, level: 6, windowBits: 15 }, offer);
  }
  const small = negotiateDeflate(['permessage-deflate; server_max_window_bits="10"'], {
    threshold: 0,
    level: 9,
  });
  assert.equal(small?.response, `${BOTH_NO_TAKEOVER}; server_max_window_bits=10`);
  assert.deepEqual(small?.params, { threshold: 0, level: 9, windowBits: 10 });
});

Deno.test("negotiateDeflate: invalid offers are skipped for the next one, or declined", () => {
  const invalid = [
    "permessage-deflate; server_max_window_bits=8", // zlib cannot honour a 256-byte window
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; unknown_parameter",
    "x-webkit-deflate-frame",
  ];
  for (const offer of invalid) assert.equal(negotiateDeflate([offer], {}), null, offer);
  // Several offers, in one header or several: the first acceptable one wins.
  const agreement = negotiateDeflate(
    [`${invalid[0]}, ${invalid[6]}`, "permessage-deflate; server_max_window_bits=12"],
    {},
  );
  assert.equal(agreement?.params.windowBits, 12);
  assert.equal(negotiateDeflate([], {}), null);
});

/** A parser + assembler that accepts compressed messages. */
function deflatePipeline(maxPayload = 1 << 20) {
  const recorder = new MessageRecorder();
  const assembler = new MessageAssembler(recorder, { maxPayload, inflate: inflateMessage });
  const parser = new FrameParser(assembler, { allowedRsv: 0x40 });
  return { recorder, push: (bytes: Uint8Array) => parser.push(bytes.slice()) };
}

Deno.test("compressed messages: text and binary, whole and fragmented, delivered inflated", () => {
  const text = "permessage-deflate ".repeat(200) + "✓";
  const binary = pattern(100_000, 3);
  const compressedBinary = compress(binary);
  const { recorder, push } = deflatePipeline();
  push(clientFrame({ opcode: Opcode.Text, payload: compress(text), rsv: 0x40 }));
  push(clientFrame({ opcode: Opcode.Binary, payload: compressedBinary, rsv: 0x40, fin: false }));
  push(clientFrame({ opcode: Opcode.Ping, payload: "between" }));
  push(clientFrame({ opcode: Opcode.Continuation, payload: new Uint8Array(0) }));
  // An uncompressed message on the same connection, and an empty compressed one.
  push(clientFrame({ opcode: Opcode.Text, payload: "plain" }));
  push(clientFrame({ opcode: Opcode.Text, payload: Uint8Array.of(0), rsv: 0x40 }));
  const events = recorder.summary;
  assert.deepEqual(events.map((event) => event.type), ["text", "ping", "binary", "text", "text"]);
  assert.deepEqual(events[0], { type: "text", text });
  assert.ok(events[2].type === "binary");
  assertSameBytes(events[2].data, binary);
  assert.deepEqual(events.slice(3), [{ type: "text", text: "plain" }, { type: "text", text: "" }]);

  // Fragmented: RSV1 on the first frame only, the compressed bytes cut anywhere.
  const split = deflatePipeline();
  const cut = 777;
  split.push(clientFrame({
    opcode: Opcode.Binary,
    payload: compressedBinary.subarray(0, cut),
    rsv: 0x40,
    fin: false,
  }));
  split.push(clientFrame({ opcode: Opcode.Continuation, payload: compressedBinary.subarray(cut) }));
  assert.ok(split.recorder.events[0].type === "binary");
  assertSameBytes(split.recorder.events[0].data, binary);
});

Deno.test("compressed messages: RSV1 and data errors fail with the right code", () => {
  const cases: [string, Uint8Array[], SummaryEvent[]][] = [
    ["RSV1 on a continuation", [
      clientFrame({ opcode: Opcode.Text, payload: compress("ab"), rsv: 0x40, fin: false }),
      clientFrame({ opcode: Opcode.Continuation, payload: "c", rsv: 0x40 }),
    ], [{ type: "error", code: 1002 }]],
    ["RSV1 on a control frame", [clientFrame({ opcode: Opcode.Ping, rsv: 0x40 })], [{
      type: "error",
      code: 1002,
    }]],
    ["not deflate data", [
      clientFrame({ opcode: Opcode.Binary, payload: Uint8Array.of(1, 2, 3, 4, 5), rsv: 0x40 }),
    ], [{ type: "error", code: 1007 }]],
    ["inflates to invalid UTF-8", [
      clientFrame({ opcode: Opcode.Text, payload: compress(Uint8Array.of(0xc3, 0x28)), rsv: 0x40 }),
    ], [{ type: "error", code: 1007 }]],
  ];
  for (const [what, frames, expected] of cases) {
    const { recorder, push } = deflatePipeline();
    for (const frame of frames) push(frame);
    assert.deepEqual(recorder.summary, expected, what);
  }
  // Without the extension negotiated, RSV1 is a protocol error even if the
  // parser lets it through.
  const recorder = new MessageRecorder();
  const parser = new FrameParser(new MessageAssembler(recorder, { maxPayload: 1000 }), {
    allowedRsv: 0x40,
  });
  parser.push(clientFrame({ opcode: Opcode.Text, payload: compress("hi"), rsv: 0x40 }));
  assert.deepEqual(recorder.summary, [{ type: "error", code: 1002 }]);
});

Deno.test("compressed messages: a decompression bomb is 1009, and never inflated past the limit", () => {
  const bomb = compress(new Uint8Array(64 << 20)); // 64 MiB of zeros in ~64 KiB
  assert.ok(bomb.length < 100_000);
  const { recorder, push } = deflatePipeline(1 << 20);
  const before = Deno.memoryUsage().rss;
  push(clientFrame({ opcode: Opcode.Binary, payload: bomb, rsv: 0x40 }));
  assert.deepEqual(recorder.summary, [{ type: "error", code: 1009 }]);
  const grown = Deno.memoryUsage().rss - before;
  assert.ok(grown < 32 << 20, `memory grew by ${grown >> 20} MiB`);
  // Exactly at the limit is fine.
  const atLimit = deflatePipeline(1 << 20);
  atLimit.push(
    clientFrame({ opcode: Opcode.Binary, payload: compress(new Uint8Array(1 << 20)), rsv: 0x40 }),
  );
  assert.deepEqual(atLimit.recorder.events.map((event) => event.type), ["binary"]);
});

const OFFER = "permessage-deflate; client_max_window_bits";

Deno.test("live: a negotiated connection sends compressed frames at and above the threshold", async () => {
  const h = startServer({ perMessageDeflate: { threshold: 16 } }, {
    message: (socket, data) => void socket.send(data),
  });
  try {
    using raw = await RawClient.connect(h.port);
    const head = await raw.handshake({ headers: [["Sec-WebSocket-Extensions", OFFER]] });
    assert.equal(head.headers.get("sec-websocket-extensions"), BOTH_NO_TAKEOVER);
    await waitUntil(() => h.opened.length === 1, "open");
    assert.equal(h.opened[0].extensions, BOTH_NO_TAKEOVER);

    const long = "compress me, compress me, compress me";
    await raw.write(clientFrame({ opcode: OP.TEXT, payload: compress(long), rsv: 0x40 }));
    let frame = await raw.readFrame();
    assert.equal(frame.rsv, 0x40, "compressed: at least threshold bytes");
    assert.equal(new TextDecoder().decode(decompress(frame.payload)), long);

    await raw.write(clientFrame({ opcode: OP.BINARY, payload: Uint8Array.of(1, 2, 3) }));
    frame = await raw.readFrame();
    assert.equal(frame.rsv, 0, "under the threshold: sent as it is");
    assert.deepEqual([...frame.payload], [1, 2, 3]);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("live: without perMessageDeflate the offer is ignored and RSV1 is 1002", async () => {
  const h = startServer({}, { message: (socket, data) => void socket.send(data) });
  try {
    using raw = await RawClient.connect(h.port);
    const head = await raw.handshake({ headers: [["Sec-WebSocket-Extensions", OFFER]] });
    assert.equal(head.headers.get("sec-websocket-extensions"), null);
    await raw.write(clientFrame({ opcode: OP.TEXT, payload: compress("hi"), rsv: 0x40 }));
    await raw.expectClose(1002);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("live: npm ws with permessage-deflate round-trips text and binary of every size", async () => {
  const h = startServer({ perMessageDeflate: true }, {
    message: (socket, data) => void socket.send(data),
  });
  const ws = new WebSocket(`ws://127.0.0.1:${h.port}/`, { perMessageDeflate: { threshold: 0 } });
  try {
    const received: (string | Uint8Array)[] = [];
    let waiting: (() => void) | null = null;
    ws.on("message", (data: Uint8Array, isBinary: boolean) => {
      received.push(isBinary ? new Uint8Array(data) : new TextDecoder().decode(data));
      waiting?.();
    });
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    assert.match(ws.extensions, /^permessage-deflate/, "ws negotiated compression");
    const messages: (string | Uint8Array)[] = [
      "",
      "short",
      "a longer text message ".repeat(100) + "🙂",
      new Uint8Array(0),
      pattern(1500, 1),
      pattern(300_000, 2),
      new Uint8Array(2 << 20).fill(7),
    ];
    for (const message of messages) {
      const done = new Promise<void>((resolve) => (waiting = resolve));
      ws.send(message, { binary: typeof message !== "string" });
      await done;
      const got = received.shift()!;
      if (typeof message === "string") assert.equal(got, message);
      else assertSameBytes(got as Uint8Array, message);
    }
  } finally {
    ws.close();
    await new Promise((resolve) => ws.once("close", resolve));
    await h.server.shutdown();
  }
});

Deno.test("live: publish and broadcast compress once for the subscribers that negotiated it", async () => {
  const h = startServer({ perMessageDeflate: { threshold: 16 } }, {
    open: (socket) => void socket.subscribe("news"),
  });
  try {
    using compressing = await RawClient.connect(h.port);
    await compressing.handshake({ headers: [["Sec-WebSocket-Extensions", OFFER]] });
    using plain = await RawClient.connect(h.port);
    await plain.handshake();
    await waitUntil(() => h.server.subscriberCount("news") === 2, "two subscribers");

    const long = "news for everyone, news for everyone";
    assert.equal(h.server.publish("news", long), 2);
    assert.equal(h.server.broadcast(utf8(long)), 2);
    assert.equal(h.server.publish("news", "short"), 2);
    for (const [opcode, payload] of [[OP.TEXT, long], [OP.BINARY, long]] as const) {
      const zipped = await compressing.readFrame();
      assert.deepEqual([zipped.opcode, zipped.rsv], [opcode, 0x40]);
      assert.equal(new TextDecoder().decode(decompress(zipped.payload)), payload);
      const unzipped = await plain.readFrame();
      assert.deepEqual([unzipped.opcode, unzipped.rsv], [opcode, 0]);
      assert.equal(new TextDecoder().decode(unzipped.payload), payload);
    }
    for (const client of [compressing, plain]) {
      const frame = await client.readFrame();
      assert.deepEqual([frame.rsv, new TextDecoder().decode(frame.payload)], [0, "short"]);
    }
  } finally {
    await h.server.shutdown();
  }
});

/** Feeds `bytes` to a fresh pipeline: whole, cut at `cuts`, or read in place like the connection. */
function decodeEvents(
  bytes: Uint8Array,
  cuts: readonly number[],
  inflate: boolean,
  inPlace: boolean,
): string[] {
  const recorder = new MessageRecorder();
  const assembler = new MessageAssembler(recorder, {
    maxPayload: 1 << 20,
    inflate: inflate ? inflateMessage : undefined,
  });
  const parser = new FrameParser(assembler, { allowedRsv: inflate ? 0x40 : 0 });
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    while (start < cut) {
      const target = inPlace ? parser.payloadTarget(1) : null;
      const end = target === null ? cut : Math.min(cut, start + target.length);
      const piece = bytes.slice(start, end);
      if (target === null) parser.push(piece);
      else {
        target.set(piece);
        parser.push(target, piece.length);
      }
      start = end;
    }
  }
  return recorder.events.map(eventKey);
}

Deno.test("fuzz: compressed streams give the same messages as their uncompressed twins", () => {
  let checked = 0;
  for (let seed = 1; checked < 300; seed++) {
    const twin = compressedTwin(0xdef1a7e + seed, compress);
    if (twin === null) continue;
    checked++;
    const want = decodeEvents(twin.plain, [], false, false);
    for (
      const [how, cuts, inPlace] of [
        ["whole", [], false],
        ["split", twin.splits, false],
        ["split, read in place", twin.splits, true],
      ] as const
    ) {
      const got = decodeEvents(twin.compressed, cuts, true, inPlace);
      assert.deepEqual(got, want, `seed ${0xdef1a7e + seed}, ${how}`);
    }
  }
});

Deno.test("review fixes: unlimited maxPayload, quoted-pairs, sizes in bytes, incompressible data", () => {
  // maxPayload: Infinity must not turn every compressed message into 1009.
  const inflated = inflateMessage(compress("no limit"), Infinity);
  assert.ok(inflated instanceof Uint8Array);
  assert.equal(new TextDecoder().decode(inflated), "no limit");
  // A quoted-pair inside another extension's value does not hide the offer after it.
  assert.ok(negotiateDeflate(['x-foo; bar="a\\\\", permessage-deflate'], {}) !== null);
  const params = { threshold: 1024, level: 6, windowBits: 15 };
  // The threshold counts UTF-8 bytes: 600 "é" are 1,200 bytes.
  assert.ok(compressedFrame("é".repeat(600), params) !== null);
  assert.equal(compressedFrame("e".repeat(600), params), null);
  // Incompressible data goes out as it is rather than bigger.
  const random = crypto.getRandomValues(new Uint8Array(4096));
  assert.equal(compressedFrame(random, params), null);
  assert.ok(compressedFrame(new Uint8Array(4096), params) !== null);
});

Deno.test("compressed messages: incompressible data at the limit, deflated with a small memLevel, is accepted", () => {
  const maxPayload = 100_000;
  // Incompressible bytes (getRandomValues fills at most 64 KiB per call).
  const random = new Uint8Array(maxPayload);
  for (let at = 0; at < maxPayload; at += 65536) {
    crypto.getRandomValues(random.subarray(at, at + 65536));
  }
  const out = zlib.deflateRawSync(random, {
    memLevel: 1,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  const compressed = new Uint8Array(out.subarray(0, out.length - 4));
  assert.ok(compressed.length > maxPayload * 1.02, `only ${compressed.length} bytes`);
  const { recorder, push } = deflatePipeline(maxPayload);
  push(clientFrame({ opcode: Opcode.Binary, payload: compressed, rsv: 0x40 }));
  assert.deepEqual(recorder.events.map((event) => event.type), ["binary"]);
});

Deno.test("live: extra headers from the upgrade hook may not repeat the handshake's own", async () => {
  const h = startServer({ perMessageDeflate: true }, {
    upgrade: () => ({ headers: { "Sec-WebSocket-Extensions": "x-app" } }),
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
        `Sec-WebSocket-Extensions: ${OFFER}\r\n\r\n`,
    );
    assert.equal((await raw.readResponseHead()).status, 500);
    await waitUntil(() => h.errors.length === 1, "the error handler");
    assert.match(
      String(h.errors[0]),
      /sec-websocket-extensions is set by the server/i,
      String(h.errors),
    );
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("live: our client with permessage-deflate against npm ws's server", async () => {
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    perMessageDeflate: { threshold: 0 },
  });
  await new Promise((resolve) => wss.once("listening", resolve));
  wss.on("connection", (ws: WebSocket) => {
    ws.on("message", (data: Uint8Array, isBinary: boolean) => ws.send(data, { binary: isBinary }));
  });
  try {
    const { port } = wss.address() as { port: number };
    const socket = await connect(`ws://127.0.0.1:${port}/`, {
      perMessageDeflate: { threshold: 0 },
    });
    assert.match(socket.extensions, /^permessage-deflate/, "ws agreed to compress");
    const received = socket[Symbol.asyncIterator]();
    for (const message of ["hello", "x".repeat(100_000), pattern(70_000, 5)]) {
      socket.send(message);
      const got = (await received.next()).value;
      if (typeof message === "string") assert.equal(got, message);
      else assertSameBytes(got as Uint8Array, message);
    }
    socket.close();
    assert.equal((await socket.closed).code, 1000);
  } finally {
    await new Promise((resolve) => wss.close(resolve));
  }
});
