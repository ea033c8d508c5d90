/**
 * Message assembly through the real frame parser: fragments, interleaved
 * control frames, UTF-8 validation (failing fast, at the first bad
 * fragment), the size limit (checked from headers, before payload arrives),
 * close frames, and what is handed out after an error or a close.
 */

import assert from "node:assert/strict";
import { FrameParser } from "../../src/protocol/frame_parser.ts";
import { Opcode } from "../../src/protocol/frame.ts";
import { type AssemblyBudget, MessageAssembler } from "../../src/protocol/message.ts";
import {
  assertSameBytes,
  clientFrame,
  type ClientFrameOptions,
  closePayload,
  concat,
  feedings,
  MessageRecorder,
  pattern,
  seededRandom,
  split,
  type SummaryEvent,
  utf8,
} from "../helpers/frames.ts";

const MiB = 1024 * 1024;

/** A parser feeding an assembler feeding a recorder. */
function pipeline(maxPayload = MiB): {
  push: (bytes: Uint8Array) => void;
  recorder: MessageRecorder;
  assembler: MessageAssembler;
} {
  const recorder = new MessageRecorder();
  const assembler = new MessageAssembler(recorder, { maxPayload });
  const parser = new FrameParser(assembler);
  return { push: (bytes) => parser.push(bytes), recorder, assembler };
}

/** Feeds `pieces` to a fresh pipeline and returns the events with error messages left out. */
function run(pieces: Uint8Array[], maxPayload = MiB): SummaryEvent[] {
  const { push, recorder } = pipeline(maxPayload);
  for (const piece of pieces) push(piece);
  return recorder.summary;
}

/** Asserts that `bytes` give `expected` fed whole, split anywhere in two, and byte by byte. */
function assertEveryFeeding(bytes: Uint8Array, expected: SummaryEvent[], maxPayload = MiB): void {
  for (const [how, pieces] of feedings(bytes)) {
    assert.deepEqual(run(pieces, maxPayload), expected, `fed ${how}`);
  }
}

function frames(...options: ClientFrameOptions[]): Uint8Array {
  return concat(...options.map(clientFrame));
}

const text = (text: string): SummaryEvent => ({ type: "text", text });
const binary = (data: Uint8Array | number[]): SummaryEvent => ({
  type: "binary",
  data: Uint8Array.from(data),
});
const ping = (data: string): SummaryEvent => ({ type: "ping", data: utf8(data) });
const pong = (data: string): SummaryEvent => ({ type: "pong", data: utf8(data) });
const close = (code: number, reason = ""): SummaryEvent => ({ type: "close", code, reason });
const error = (code: number): SummaryEvent => ({ type: "error", code });

Deno.test("MessageAssembler: unfragmented text and binary messages", () => {
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Text, payload: "héllo 🌍" },
      { opcode: Opcode.Binary, payload: Uint8Array.of(0, 1, 255) },
      { opcode: Opcode.Text, payload: "second" },
    ),
    [text("héllo 🌍"), binary([0, 1, 255]), text("second")],
  );
});

Deno.test("MessageAssembler: empty text and binary messages", () => {
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Text },
      { opcode: Opcode.Binary },
      { opcode: Opcode.Text, fin: false },
      { opcode: Opcode.Continuation, fin: false },
      { opcode: Opcode.Continuation },
      { opcode: Opcode.Binary, fin: false },
      { opcode: Opcode.Continuation },
    ),
    [text(""), binary([]), text(""), binary([])],
  );
});

Deno.test("MessageAssembler: fragmented text is reassembled", () => {
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Text, payload: "Hel", fin: false },
      { opcode: Opcode.Continuation, payload: "", fin: false },
      { opcode: Opcode.Continuation, payload: "lo, ", fin: false },
      { opcode: Opcode.Continuation, payload: "world" },
    ),
    [text("Hello, world")],
  );
});

Deno.test("MessageAssembler: fragmented binary is reassembled", () => {
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Binary, payload: Uint8Array.of(1, 2), fin: false },
      { opcode: Opcode.Continuation, fin: false },
      { opcode: Opcode.Continuation, payload: Uint8Array.of(3) },
      { opcode: Opcode.Binary, payload: Uint8Array.of(4) },
    ),
    [binary([1, 2, 3]), binary([4])],
  );
});

Deno.test("MessageAssembler: large fragmented and multi-read binary messages", () => {
  const payload = pattern(50_000, 1);
  const fragmented = frames(
    ...[0, 10_000, 20_000, 30_000, 40_000].map((from, i): ClientFrameOptions => ({
      opcode: i === 0 ? Opcode.Binary : Opcode.Continuation,
      payload: payload.subarray(from, from + 10_000),
      fin: i === 4,
    })),
  );
  const single = clientFrame({ opcode: Opcode.Binary, payload: pattern(70_000, 2) });
  const cuts = (bytes: Uint8Array) =>
    Array.from({ length: Math.floor((bytes.length - 1) / 999) }, (_, i) => (i + 1) * 999);
  for (
    const [what, pieces, expected] of [
      ["fragmented, whole", [fragmented.slice()], payload],
      ["fragmented, in pieces", split(fragmented, cuts(fragmented)), payload],
      ["single frame, in pieces", split(single, cuts(single)), pattern(70_000, 2)],
    ] as const
  ) {
    const events = run([...pieces]);
    assert.deepEqual(events.map((event) => event.type), ["binary"], what);
    assert.ok(events[0].type === "binary");
    assertSameBytes(events[0].data, expected, what);
  }
});

Deno.test("MessageAssembler: large text read in many pieces", () => {
  const message = "ab€🌍".repeat(5000);
  const frame = clientFrame({ opcode: Opcode.Text, payload: message });
  const cuts = Array.from(
    { length: Math.floor((frame.length - 1) / 777) },
    (_, i) => (i + 1) * 777,
  );
  const events = run(split(frame, cuts));
  assert.deepEqual(events.map((event) => event.type), ["text"]);
  assert.ok(events[0].type === "text" && events[0].text === message, "the text arrives intact");
});

Deno.test("MessageAssembler: control frames between fragments", () => {
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Text, payload: "fr", fin: false },
      { opcode: Opcode.Ping, payload: "are you there" },
      { opcode: Opcode.Continuation, payload: "ag", fin: false },
      { opcode: Opcode.Pong, payload: "" },
      { opcode: Opcode.Ping, payload: "again" },
      { opcode: Opcode.Continuation, payload: "ment" },
      { opcode: Opcode.Binary, payload: Uint8Array.of(9), fin: false },
      { opcode: Opcode.Pong, payload: "p" },
      { opcode: Opcode.Continuation, payload: Uint8Array.of(8) },
    ),
    [
      ping("are you there"),
      pong(""),
      ping("again"),
      text("fragment"),
      pong("p"),
      binary([9, 8]),
    ],
  );
});

Deno.test("MessageAssembler: control payloads of every size up to 125", () => {
  for (const length of [0, 1, 124, 125]) {
    const data = "c".repeat(length);
    const bytes = frames({ opcode: Opcode.Ping, payload: data }, {
      opcode: Opcode.Pong,
      payload: data,
    });
    for (const [how, pieces] of [...feedings(bytes)].filter((_, i) => i % 7 === 0)) {
      assert.deepEqual(run(pieces), [ping(data), pong(data)], `${length} bytes fed ${how}`);
    }
  }
});

Deno.test("MessageAssembler: a continuation frame without a message is 1002", () => {
  assertEveryFeeding(frames({ opcode: Opcode.Continuation, payload: "x" }), [error(1002)]);
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Text, payload: "done" },
      { opcode: Opcode.Continuation, payload: "more" },
      { opcode: Opcode.Text, payload: "ignored" },
    ),
    [text("done"), error(1002)],
  );
  // Reported from the header: the payload is never needed.
  const { push, recorder } = pipeline();
  push(clientFrame({ opcode: Opcode.Continuation, declaredLength: 1000 }));
  assert.deepEqual(recorder.summary, [error(1002)]);
});

Deno.test("MessageAssembler: a new data frame inside a fragmented message is 1002", () => {
  for (
    const [first, second] of [[Opcode.Text, Opcode.Text], [Opcode.Text, Opcode.Binary], [
      Opcode.Binary,
      Opcode.Text,
    ]]
  ) {
    assertEveryFeeding(
      frames(
        { opcode: first, payload: "a", fin: false },
        { opcode: second, payload: "b" },
        { opcode: Opcode.Continuation, payload: "c" },
      ),
      [error(1002)],
    );
  }
});

Deno.test("MessageAssembler: text that is not UTF-8 is 1007", () => {
  const invalid = [
    [0xff],
    [0x80],
    [0x61, 0xc0, 0xaf], // overlong "/"
    [0xc1, 0xbf], // overlong 2-byte
    [0xe0, 0x80, 0xaf], // overlong 3-byte
    [0xe0, 0x9f, 0xbf],
    [0xf0, 0x80, 0x80, 0x80], // overlong 4-byte
    [0xf0, 0x8f, 0xbf, 0xbf],
    [0xed, 0xbf, 0xbf], // low surrogate
    [0xc2, 0x41], // lead byte without its continuation
    [0xe2, 0x28, 0xa1],
    [0xf0, 0x9f, 0x8c, 0x41],
    [0xed, 0xa0, 0x80], // UTF-16 surrogate
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    [0xf8, 0x88, 0x80, 0x80, 0x80],
    [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80],
  ];
  for (const bytes of invalid) {
    const bad = clientFrame({ opcode: Opcode.Text, payload: Uint8Array.from(bytes) });
    const after = clientFrame({ opcode: Opcode.Text, payload: "after" });
    for (const [how, pieces] of feedings(concat(bad, after))) {
      assert.deepEqual(run(pieces), [error(1007)], `${bytes} fed ${how}`);
    }
  }
});

Deno.test("MessageAssembler: invalid UTF-8 fails at its fragment, before the message ends", () => {
  // κόσμε followed by a UTF-16 surrogate (Autobahn case 6.4.2).
  const first = Uint8Array.of(
    0xce,
    0xba,
    0xe1,
    0xbd,
    0xb9,
    0xcf,
    0x83,
    0xce,
    0xbc,
    0xce,
    0xb5,
    0xed,
    0xa0,
    0x80,
  );
  const { push, recorder } = pipeline();
  push(clientFrame({ opcode: Opcode.Text, payload: first, fin: false }));
  assert.deepEqual(recorder.summary, [error(1007)], "failed on the first fragment");
  push(clientFrame({ opcode: Opcode.Continuation, payload: "edited" }));
  assert.deepEqual(recorder.summary, [error(1007)], "nothing after the failure");
});

Deno.test("MessageAssembler: invalid UTF-8 fails on the bytes read so far, mid-frame", () => {
  const payload = concat(utf8("valid start "), Uint8Array.of(0xff), utf8("x".repeat(1000)));
  const frame = clientFrame({ opcode: Opcode.Text, payload });
  const { push, recorder } = pipeline();
  push(frame.slice(0, 4 + 4 + 20)); // header (16-bit length, mask) and the first 20 payload bytes
  assert.deepEqual(recorder.summary, [error(1007)]);
});

Deno.test("MessageAssembler: a UTF-8 sequence split across fragments is valid", () => {
  for (const character of ["é", "€", "🌍"]) {
    const bytes = utf8(`a${character}b`);
    for (let cut = 1; cut < bytes.length; cut++) {
      assertEveryFeeding(
        frames(
          { opcode: Opcode.Text, payload: bytes.subarray(0, cut), fin: false },
          { opcode: Opcode.Continuation, payload: bytes.subarray(cut) },
        ),
        [text(`a${character}b`)],
      );
    }
  }
  // One byte per fragment.
  const bytes = utf8("€🌍");
  assertEveryFeeding(
    frames(...[...bytes].map((byte, i): ClientFrameOptions => ({
      opcode: i === 0 ? Opcode.Text : Opcode.Continuation,
      payload: Uint8Array.of(byte),
      fin: i === bytes.length - 1,
    }))),
    [text("€🌍")],
  );
});

Deno.test("MessageAssembler: a message ending inside a UTF-8 sequence is 1007", () => {
  for (const tail of [[0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x8c]]) {
    const what = `tail ${tail}`;
    assertEveryFeeding(
      frames({ opcode: Opcode.Text, payload: Uint8Array.of(0x61, ...tail) }),
      [error(1007)],
    );
    const fragmented = frames(
      { opcode: Opcode.Text, payload: Uint8Array.of(0x61), fin: false },
      { opcode: Opcode.Continuation, payload: Uint8Array.from(tail) },
      { opcode: Opcode.Text, payload: "after" },
    );
    assert.deepEqual(run([fragmented]), [error(1007)], what);
    // The fragment itself is a valid prefix: nothing is wrong until the message ends.
    const { push, recorder } = pipeline();
    push(clientFrame({ opcode: Opcode.Text, payload: Uint8Array.from(tail), fin: false }));
    assert.deepEqual(recorder.summary, [], what);
    push(clientFrame({ opcode: Opcode.Continuation, payload: new Uint8Array(0) }));
    assert.deepEqual(recorder.summary, [error(1007)], what);
  }
});

Deno.test("MessageAssembler: code points at every UTF-8 length boundary", () => {
  const boundaries = [
    0x0,
    0x7f,
    0x80,
    0x7ff,
    0x800,
    0xd7ff,
    0xe000,
    0xfeff,
    0xfffd,
    0xffff,
    0x10000,
    0x10ffff,
  ];
  const all = String.fromCodePoint(...boundaries);
  for (
    const message of [
      all,
      all.repeat(10),
      ...boundaries.map((cp) => String.fromCodePoint(cp)),
    ]
  ) {
    const what = [...message].map((c) => c.codePointAt(0)!.toString(16)).join(" ").slice(0, 60);
    const bytes = clientFrame({ opcode: Opcode.Text, payload: message });
    assert.deepEqual(run([bytes]), [text(message)], what);
  }
});

/** Reference verdict: a fatal TextDecoder's string, or null where it throws. */
function referenceDecode(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}

Deno.test("MessageAssembler: agrees with a fatal TextDecoder on random near-UTF-8 bytes", () => {
  // Bytes that sit on the edges of UTF-8's rules, mixed with valid sequences.
  const edges = [
    0x00,
    0x41,
    0x7f,
    0x80,
    0x8f,
    0x90,
    0x9f,
    0xa0,
    0xbf,
    0xc0,
    0xc1,
    0xc2,
    0xdf,
    0xe0,
    0xe1,
    0xec,
    0xed,
    0xee,
    0xef,
    0xf0,
    0xf1,
    0xf3,
    0xf4,
    0xf5,
    0xf8,
    0xfe,
    0xff,
  ];
  const valid = ["a", "é", "\u07ff", "€", "\ud7ff", "\ue000", "\uffff", "🌍", "\u{10ffff}"].map(
    utf8,
  );
  const random = seededRandom(20240607);
  let invalidSeen = 0;
  for (let round = 0; round < 3000; round++) {
    const parts: number[] = [];
    // Mostly short (the assembler's JS decoder path), sometimes past it.
    const target = random(4) === 0 ? 60 + random(40) : random(20);
    while (parts.length < target) {
      if (random(3) === 0) parts.push(edges[random(edges.length)]);
      else parts.push(...valid[random(valid.length)]);
    }
    const payload = Uint8Array.from(parts);
    const expected = referenceDecode(payload);
    if (expected === null) invalidSeen++;
    const verdict = expected === null ? [error(1007)] : [text(expected)];
    const what = `bytes ${[...payload].map((b) => b.toString(16)).join(" ")}`;
    assert.deepEqual(run([clientFrame({ opcode: Opcode.Text, payload })]), verdict, what);
    const cut = random(payload.length + 1);
    const fragmented = frames(
      { opcode: Opcode.Text, payload: payload.subarray(0, cut), fin: false },
      { opcode: Opcode.Continuation, payload: payload.subarray(cut) },
    );
    assert.deepEqual(run([fragmented]), verdict, `${what}, fragmented at ${cut}`);
  }
  // The generator must exercise both outcomes, or the test proves little.
  assert.ok(invalidSeen > 300 && invalidSeen < 2700, `${invalidSeen} invalid of 3000`);
});

Deno.test("MessageAssembler: a byte-order mark is kept as part of the text", () => {
  assertEveryFeeding(
    frames({ opcode: Opcode.Text, payload: Uint8Array.of(0xef, 0xbb, 0xbf, 0x61) }),
    [text("\ufeffa")],
  );
  assert.deepEqual(
    run([frames(
      { opcode: Opcode.Text, payload: Uint8Array.of(0xef, 0xbb), fin: false },
      { opcode: Opcode.Continuation, payload: Uint8Array.of(0xbf, 0x62) },
    )]),
    [text("\ufeffb")],
  );
});

Deno.test("MessageAssembler: a message over maxPayload is 1009 from its header", () => {
  for (const opcode of [Opcode.Text, Opcode.Binary]) {
    // At the limit: fine.
    assert.deepEqual(run([clientFrame({ opcode, payload: "0123456789" })], 10).length, 1);
    // One over: refused before a single payload byte is there.
    const { push, recorder } = pipeline(10);
    const frame = clientFrame({ opcode, payload: "0123456789X" });
    push(frame.slice(0, 6));
    assert.deepEqual(recorder.summary, [error(1009)], `opcode ${opcode}`);
    push(frame.slice(6));
    push(clientFrame({ opcode, payload: "ok" }));
    assert.deepEqual(recorder.summary, [error(1009)], `opcode ${opcode}: silent afterwards`);
  }
  // A huge declared length costs nothing: the header alone is refused.
  const { push, recorder } = pipeline(MiB);
  push(clientFrame({ opcode: Opcode.Binary, declaredLength: 2 ** 40 }));
  assert.deepEqual(recorder.summary, [error(1009)]);
});

Deno.test("MessageAssembler: maxPayload counts all fragments of a message", () => {
  // 6 + 4 = 10 bytes: at the limit.
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Binary, payload: pattern(10).subarray(0, 6), fin: false },
      { opcode: Opcode.Ping, payload: "control frames do not count" },
      { opcode: Opcode.Continuation, payload: pattern(10).subarray(6) },
      { opcode: Opcode.Text, payload: "0123456789" }, // the next message starts from zero
    ),
    [ping("control frames do not count"), binary(pattern(10)), text("0123456789")],
    10,
  );
  // 6 + 5 = 11: refused at the second fragment's header.
  const { push, recorder } = pipeline(10);
  push(clientFrame({ opcode: Opcode.Text, payload: "012345", fin: false }));
  assert.deepEqual(recorder.summary, []);
  const second = clientFrame({ opcode: Opcode.Continuation, payload: "6789X" });
  push(second.slice(0, 6));
  assert.deepEqual(recorder.summary, [error(1009)]);
});

Deno.test("MessageAssembler: close frames", () => {
  assertEveryFeeding(frames({ opcode: Opcode.Close }), [close(1005)]);
  assertEveryFeeding(
    frames({ opcode: Opcode.Close, payload: closePayload(1000, "bye 👋") }),
    [close(1000, "bye 👋")],
  );
  assertEveryFeeding(frames({ opcode: Opcode.Close, payload: closePayload(4999) }), [close(4999)]);
  assertEveryFeeding(frames({ opcode: Opcode.Close, payload: Uint8Array.of(0x03) }), [error(1002)]);
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000]) {
    assert.deepEqual(
      run([clientFrame({ opcode: Opcode.Close, payload: closePayload(code) })]),
      [error(1002)],
      `code ${code}`,
    );
  }
  assertEveryFeeding(
    frames({ opcode: Opcode.Close, payload: closePayload(1000, Uint8Array.of(0x61, 0xff)) }),
    [error(1007)],
  );
});

Deno.test("MessageAssembler: nothing is processed after a close frame", () => {
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Text, payload: "before" },
      { opcode: Opcode.Close, payload: closePayload(1001) },
      { opcode: Opcode.Text, payload: "after" },
      { opcode: Opcode.Ping },
      { opcode: Opcode.Close, payload: closePayload(1000) },
      { opcode: 0x3 }, // would be a protocol error
    ),
    [text("before"), close(1001)],
  );
  // Also in the middle of a fragmented message.
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Text, payload: "half", fin: false },
      { opcode: Opcode.Close },
      { opcode: Opcode.Continuation, payload: "other half" },
    ),
    [close(1005)],
  );
});

Deno.test("MessageAssembler: nothing is processed after stop()", () => {
  const { push, recorder, assembler } = pipeline();
  push(clientFrame({ opcode: Opcode.Text, payload: "one" }));
  assembler.stop();
  push(clientFrame({ opcode: Opcode.Text, payload: "two" }));
  push(clientFrame({ opcode: Opcode.Close }));
  assert.deepEqual(recorder.summary, [text("one")]);
});

Deno.test("MessageAssembler: binary data handed out is a copy of the read buffer", () => {
  const shapes: [string, Uint8Array, number[]][] = [
    ["whole", clientFrame({ opcode: Opcode.Binary, payload: Uint8Array.of(1, 2, 3) }), [1, 2, 3]],
    [
      "fragmented",
      frames(
        { opcode: Opcode.Binary, payload: Uint8Array.of(1, 2), fin: false },
        { opcode: Opcode.Continuation, payload: Uint8Array.of(3) },
      ),
      [1, 2, 3],
    ],
  ];
  for (const [what, buffer, expected] of shapes) {
    const { push, recorder } = pipeline();
    push(buffer);
    buffer.fill(0xaa);
    assert.deepEqual(recorder.events, [binary(expected)], what);
  }
  // Two messages from one buffer do not share memory with it or with each other.
  const { push, recorder } = pipeline();
  const buffer = frames(
    { opcode: Opcode.Binary, payload: Uint8Array.of(1) },
    { opcode: Opcode.Binary, payload: Uint8Array.of(2) },
  );
  push(buffer);
  buffer.fill(0);
  const [a, b] = recorder.events;
  assert.ok(a.type === "binary" && b.type === "binary");
  a.data[0] = 7;
  assert.deepEqual([a.data[0], b.data[0]], [7, 2]);
});

Deno.test("MessageAssembler: fails with the parser's code on a framing error", () => {
  assertEveryFeeding(
    frames(
      { opcode: Opcode.Text, payload: "ok" },
      { opcode: Opcode.Text, payload: "unmasked", mask: false },
    ),
    [text("ok"), error(1002)],
  );
  assertEveryFeeding(
    frames({ opcode: Opcode.Binary, declaredLength: 2n ** 60n }),
    [error(1009)],
  );
});

/** A budget that records what is borrowed. */
class TestBudget implements AssemblyBudget {
  left: number;
  takes = 0;
  constructor(readonly size: number) {
    this.left = size;
  }
  take(bytes: number): boolean {
    if (bytes > this.left) return false;
    this.left -= bytes;
    this.takes++;
    return true;
  }
  give(bytes: number): void {
    this.left += bytes;
    assert.ok(this.left <= this.size, "more given back than was taken");
  }
}

/** A parser feeding an assembler that borrows from `budget`. */
function budgetPipeline(budget: AssemblyBudget | undefined, maxPayload = 16 * MiB) {
  const recorder = new MessageRecorder();
  const assembler = new MessageAssembler(recorder, { maxPayload, budget });
  const parser = new FrameParser(assembler);
  return { push: (bytes: Uint8Array) => parser.push(bytes), recorder, assembler };
}

Deno.test("MessageAssembler: a declared length is borrowed from the budget and always given back", () => {
  const payload = pattern(MiB, 3);
  const frame = clientFrame({ opcode: Opcode.Binary, payload });
  const head = frame.length - payload.length;
  const cut = head + 64 * 1024;

  // Delivered: the whole declared length is taken at the first partial read
  // and given back when the message is handed out.
  {
    const budget = new TestBudget(4 * MiB);
    const { push, recorder } = budgetPipeline(budget);
    push(frame.slice(0, cut));
    assert.equal(budget.left, 3 * MiB);
    push(frame.slice(cut));
    assert.equal(budget.left, 4 * MiB);
    assert.equal(recorder.events.length, 1);
    const event = recorder.events[0];
    assert.ok(event.type === "binary");
    assert.equal(event.data.length, MiB);
    assertSameBytes(event.data, payload, "delivered");
  }
  // The last fragment of a fragmented message borrows the message's total.
  {
    const budget = new TestBudget(4 * MiB);
    const { push, recorder } = budgetPipeline(budget);
    const bytes = frames(
      { opcode: Opcode.Binary, payload: payload.subarray(0, 1000), fin: false },
      { opcode: Opcode.Continuation, payload: payload.subarray(1000) },
    );
    const pieces = split(bytes, [5000, 70_000]);
    push(pieces[0]);
    push(pieces[1]);
    assert.equal(budget.left, 3 * MiB);
    push(pieces[2]);
    assert.equal(budget.left, 4 * MiB);
    assert.ok(recorder.events[0].type === "binary");
    assertSameBytes(recorder.events[0].data, payload, "fragmented");
  }
  // A protocol error mid-message (the parser's error path) gives it back.
  {
    const budget = new TestBudget(4 * MiB);
    const { push, recorder, assembler } = budgetPipeline(budget);
    push(frame.slice(0, cut));
    assert.equal(budget.left, 3 * MiB);
    assembler.onFrameError(1002, "framing error");
    assert.equal(budget.left, 4 * MiB);
    assert.deepEqual(recorder.summary, [{ type: "error", code: 1002 }]);
  }
  // stop() (the connection ends) gives it back, and twice is harmless.
  {
    const budget = new TestBudget(4 * MiB);
    const { push, assembler } = budgetPipeline(budget);
    push(frame.slice(0, cut));
    assert.equal(budget.left, 3 * MiB);
    assembler.stop();
    assembler.stop();
    assert.equal(budget.left, 4 * MiB);
  }
  // A message that arrives in one read, one whose chunks already reach the
  // declared length under the growth policy, and one over maxPayload borrow nothing.
  {
    const budget = new TestBudget(4 * MiB);
    const small = clientFrame({ opcode: Opcode.Binary, payload: pattern(20_000, 4) });
    const { push, recorder } = budgetPipeline(budget, 2 * MiB);
    push(frame.slice());
    push(small.slice(0, 10_000));
    push(small.slice(10_000));
    push(clientFrame({ opcode: Opcode.Binary, payload: "x", declaredLength: 3 * MiB }));
    assert.equal(budget.takes, 0);
    assert.equal(budget.left, 4 * MiB);
    assert.deepEqual(recorder.events.map((event) => event.type), ["binary", "binary", "error"]);
  }
  // When the budget cannot cover a claim, the buffer grows as without one.
  {
    const budget = new TestBudget(MiB - 1);
    const { push, recorder } = budgetPipeline(budget);
    for (const piece of split(frame, [cut, cut + 100_000, cut + 500_000])) push(piece);
    assert.equal(budget.takes, 0);
    assert.ok(recorder.events[0].type === "binary");
    assertSameBytes(recorder.events[0].data, payload, "budget too small");
  }
});

Deno.test("MessageAssembler: claims beyond the budget cost only the bytes received", () => {
  // 20 assemblers each receive 100 bytes of a message declared at 15 MiB.
  // Without a budget none may allocate the claim; with a 16 MiB budget one
  // may, and the others fall back to the growth policy (16 KiB each).
  const claim = clientFrame({
    opcode: Opcode.Binary,
    payload: "x".repeat(100),
    declaredLength: 15 * MiB,
  });
  for (
    const [what, budget, bound] of [
      ["no budget", undefined, 4 * MiB],
      ["16 MiB budget", new TestBudget(16 * MiB), 20 * MiB],
    ] as const
  ) {
    const pipelines = Array.from({ length: 20 }, () => budgetPipeline(budget));
    const before = Deno.memoryUsage().external;
    for (const { push } of pipelines) push(claim);
    const grown = Deno.memoryUsage().external - before;
    assert.ok(grown < bound, `${what}: external memory grew by ${(grown / MiB).toFixed(1)} MiB`);
    for (const { assembler } of pipelines) assembler.stop();
    if (budget !== undefined) {
      assert.equal(budget.takes, 1, what);
      assert.equal(budget.left, budget.size, what);
    }
  }
});

/**
 * Reads `stream` as the connection does: straight into the message's buffer
 * whenever the parser offers a payload target of at least `min` bytes, into
 * a read buffer otherwise. Read sizes are random (seeded), as a socket's are.
 * Returns how many bytes went in place.
 */
function readLikeConnection(
  parser: FrameParser,
  stream: Uint8Array,
  seed: number,
  min: number,
): number {
  const random = seededRandom(seed);
  let offset = 0;
  let inPlace = 0;
  while (offset < stream.length) {
    const size = 1 + random(40_000);
    const target = parser.payloadTarget(min);
    const n = Math.min(size, stream.length - offset, target?.length ?? Infinity);
    if (target !== null) {
      target.set(stream.subarray(offset, offset + n));
      parser.push(target, n);
      inPlace += n;
    } else {
      parser.push(stream.slice(offset, offset + n));
    }
    offset += n;
  }
  return inPlace;
}

Deno.test("MessageAssembler: payload read straight into the message buffer (zero-copy receive)", () => {
  const big = pattern(300_000, 5);
  const fragments = pattern(90_000, 6);
  const stream = frames(
    { opcode: Opcode.Binary, payload: big, mask: Uint8Array.of(1, 2, 3, 250) },
    { opcode: Opcode.Text, payload: "a".repeat(50_000) },
    { opcode: Opcode.Binary, payload: fragments.subarray(0, 40_000), fin: false },
    { opcode: Opcode.Ping, payload: "between" },
    { opcode: Opcode.Continuation, payload: fragments.subarray(40_000) },
    { opcode: Opcode.Binary, payload: pattern(100, 7) },
    { opcode: Opcode.Close, payload: closePayload(1000, "bye") },
  );
  const expected = run([stream.slice()]);
  assert.deepEqual(expected.map((event) => event.type), [
    "binary",
    "text",
    "ping",
    "binary",
    "binary",
    "close",
  ]);
  for (const budget of [undefined, new TestBudget(16 * MiB)]) {
    for (let seed = 1; seed <= 20; seed++) {
      const recorder = new MessageRecorder();
      const assembler = new MessageAssembler(recorder, { maxPayload: MiB, budget });
      const inPlace = readLikeConnection(new FrameParser(assembler), stream.slice(), seed, 1024);
      const what = `seed ${seed}, ${budget === undefined ? "no budget" : "budget"}`;
      // Every masking phase and read size must give the same messages.
      assert.equal(recorder.summary.length, expected.length, what);
      recorder.summary.forEach((event, i) => {
        const want = expected[i];
        if (event.type === "binary" && want.type === "binary") {
          assertSameBytes(event.data, want.data, what);
        } else {
          assert.deepEqual(event, want, what);
        }
      });
      assert.ok(inPlace > 200_000, `${what}: only ${inPlace} bytes went in place`);
      if (budget !== undefined) assert.equal(budget.left, budget.size, what);
    }
  }
});

Deno.test("FrameParser.payloadTarget: only for binary payload still to come, within the growth bound", () => {
  const recorder = new MessageRecorder();
  const assembler = new MessageAssembler(recorder, { maxPayload: 16 * MiB });
  const parser = new FrameParser(assembler);
  // Between frames, inside text, inside a control frame: no target.
  assert.equal(parser.payloadTarget(1), null);
  parser.push(clientFrame({ opcode: Opcode.Text, payload: "x".repeat(5000) }).subarray(0, 100));
  assert.equal(parser.payloadTarget(1), null, "text is decoded as it arrives");
  const stream = new FrameParser(new MessageAssembler(new MessageRecorder(), { maxPayload: MiB }));
  stream.push(clientFrame({ opcode: Opcode.Ping, payload: "x".repeat(100) }).subarray(0, 10));
  assert.equal(stream.payloadTarget(1), null, "control frame");

  // A header claiming 15 MiB after 100 bytes: without a budget the target is
  // bounded by the growth policy, not by the claim.
  const assembler2 = new MessageAssembler(recorder, { maxPayload: 16 * MiB });
  const parser2 = new FrameParser(assembler2);
  parser2.push(
    clientFrame({ opcode: Opcode.Binary, payload: "y".repeat(100), declaredLength: 15 * MiB }),
  );
  const target = parser2.payloadTarget(1);
  assert.ok(target !== null);
  assert.ok(target.length <= 16 * 1024, `target of ${target.length} bytes for 100 received`);
  // Fewer than `min` bytes still to come: an ordinary read is used.
  assert.equal(parser2.payloadTarget(15 * MiB), null);
  // Once the assembler is stopped (the connection is closing) there is none.
  assembler2.stop();
  assert.equal(parser2.payloadTarget(1), null);
});
