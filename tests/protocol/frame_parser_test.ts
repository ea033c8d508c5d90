/**
 * The streaming frame parser: header decoding, payload unmasking, any split
 * of the byte stream, and every framing error with its close code, reported
 * from the header alone.
 */

import assert from "node:assert/strict";
import {
  type FrameHandler,
  FrameParser,
  type FrameParserOptions,
} from "../../src/protocol/frame_parser.ts";
import { Opcode } from "../../src/protocol/frame.ts";
import {
  assertSameBytes,
  clientFrame,
  type ClientFrameOptions,
  closePayload,
  concat,
  feedings,
  pattern,
  seededRandom,
  split,
  utf8,
} from "../helpers/frames.ts";

/** One parser event; payload pieces of a frame are joined into its `end` event. */
type FrameEvent =
  | { type: "start"; fin: boolean; rsv: number; opcode: number; length: number }
  | { type: "end"; payload: Uint8Array }
  | { type: "error"; code: number };

/** Records parser events; can stop the parser by returning false at a chosen event. */
class FrameRecorder implements FrameHandler {
  readonly events: FrameEvent[] = [];
  /** Every payload piece as delivered (copied, since the view is only valid during the call). */
  readonly pieces: Uint8Array[] = [];
  #payload: Uint8Array[] = [];
  stopAt: "start" | "payload" | "end" | undefined;

  constructor(stopAt?: "start" | "payload" | "end") {
    this.stopAt = stopAt;
  }

  onFrameStart(fin: boolean, rsv: number, opcode: number, length: number): boolean {
    this.events.push({ type: "start", fin, rsv, opcode, length });
    this.#payload = [];
    return this.stopAt !== "start";
  }

  onFramePayload(chunk: Uint8Array): boolean {
    this.pieces.push(chunk.slice());
    this.#payload.push(chunk.slice());
    return this.stopAt !== "payload";
  }

  onFrameEnd(): boolean {
    this.events.push({ type: "end", payload: concat(...this.#payload) });
    return this.stopAt !== "end";
  }

  onFrameError(code: number): void {
    this.events.push({ type: "error", code });
  }
}

function parserWith(
  options?: FrameParserOptions,
): { parser: FrameParser; recorder: FrameRecorder } {
  const recorder = new FrameRecorder();
  return { parser: new FrameParser(recorder, options), recorder };
}

/** Feeds `pieces` to a fresh parser and returns what it reported. */
function parse(pieces: Uint8Array[], options?: FrameParserOptions): FrameEvent[] {
  const { parser, recorder } = parserWith(options);
  for (const piece of pieces) parser.push(piece);
  return recorder.events;
}

function start(opcode: number, length: number, fin = true, rsv = 0): FrameEvent {
  return { type: "start", fin, rsv, opcode, length };
}

function end(payload: Uint8Array | string): FrameEvent {
  return { type: "end", payload: typeof payload === "string" ? utf8(payload) : payload };
}

/** The masked text frame "MDN" from MDN's "Writing WebSocket servers" (fresh: parsing unmasks in place). */
function mdnFrame(): Uint8Array {
  return Uint8Array.of(129, 131, 61, 84, 35, 6, 112, 16, 109);
}

Deno.test("FrameParser: the MDN example frame is the text 'MDN'", () => {
  assert.deepEqual(parse([mdnFrame()]), [start(Opcode.Text, 3), end("MDN")]);
  // And the helper builds exactly those bytes.
  assert.deepEqual(
    clientFrame({ opcode: Opcode.Text, payload: "MDN", mask: Uint8Array.of(61, 84, 35, 6) }),
    mdnFrame(),
  );
});

Deno.test("FrameParser: payload is unmasked in place in the pushed buffer", () => {
  const bytes = mdnFrame();
  parse([bytes]);
  assert.deepEqual([...bytes.subarray(6)], [...utf8("MDN")]);
});

Deno.test("FrameParser: push(data, end) reads only data[0, end)", () => {
  const bytes = concat(
    clientFrame({ opcode: Opcode.Text, payload: "one" }),
    clientFrame({ opcode: Opcode.Text, payload: "two" }),
  );
  // A reader's buffer: the filled part, then stale bytes that must be ignored.
  const buffer = concat(bytes, clientFrame({ opcode: 0x3 }), new Uint8Array(20).fill(0xff));
  for (let cut = 0; cut <= bytes.length; cut++) {
    const { parser, recorder } = parserWith();
    const first = buffer.slice();
    parser.push(first, cut);
    const second = buffer.slice(cut);
    parser.push(second, bytes.length - cut);
    assert.deepEqual(recorder.events, [
      start(Opcode.Text, 3),
      end("one"),
      start(Opcode.Text, 3),
      end("two"),
    ], `cut at ${cut}`);
    // Stale bytes past `end` are neither read nor unmasked.
    assert.deepEqual(first.subarray(cut), buffer.subarray(cut), `cut at ${cut}: tail untouched`);
  }
});

Deno.test("FrameParser: every length encoding, minimal and not", () => {
  const cases: [number, ClientFrameOptions["lengthField"]][] = [
    [0, "auto"],
    [1, "auto"],
    [125, "auto"],
    [126, "auto"],
    [127, "auto"],
    [65535, "auto"],
    [65536, "auto"],
    [100_000, "auto"],
    // Longer encodings than needed are decoded by value.
    [0, 16],
    [5, 16],
    [5, 64],
    [300, 64],
  ];
  for (const [length, lengthField] of cases) {
    const payload = pattern(length);
    const frame = clientFrame({ opcode: Opcode.Binary, payload, lengthField });
    // Whole, and cut at every point inside the (at most 14-byte) header.
    for (let cut = 0; cut <= Math.min(15, frame.length - 1); cut++) {
      const what = `${length} bytes, ${lengthField} length field, cut at ${cut}`;
      const events = parse(split(frame, cut === 0 ? [] : [cut]));
      assert.deepEqual(events.map((event) => event.type), ["start", "end"], what);
      assert.deepEqual(events[0], start(Opcode.Binary, length), what);
      assert.ok(events[1].type === "end");
      assertSameBytes(events[1].payload, payload, what);
    }
  }
});

Deno.test("FrameParser: mask keys and unmasked frames for a client-side parser", () => {
  for (const mask of [Uint8Array.of(0, 0, 0, 0), Uint8Array.of(0xff, 0xff, 0xff, 0xff)]) {
    const frame = clientFrame({ opcode: Opcode.Binary, payload: pattern(50), mask });
    assert.deepEqual(parse([frame]), [start(Opcode.Binary, 50), end(pattern(50))]);
  }
  const unmasked = clientFrame({ opcode: Opcode.Binary, payload: pattern(50), mask: false });
  assert.deepEqual(parse([unmasked], { expectMasked: false }), [
    start(Opcode.Binary, 50),
    end(pattern(50)),
  ]);
});

/** Several frames of every kind back to back, and the events they must produce. */
function stream(): { bytes: Uint8Array; events: FrameEvent[] } {
  const big = pattern(300);
  const frames: [ClientFrameOptions, FrameEvent[]][] = [
    [{ opcode: Opcode.Text, payload: "MDN" }, [start(1, 3), end("MDN")]],
    [{ opcode: Opcode.Binary }, [start(2, 0), end(new Uint8Array(0))]],
    [{ opcode: Opcode.Text, payload: "frag", fin: false }, [start(1, 4, false), end("frag")]],
    [{ opcode: Opcode.Ping, payload: "p" }, [start(9, 1), end("p")]],
    [{ opcode: Opcode.Continuation, payload: "ment" }, [start(0, 4), end("ment")]],
    [
      { opcode: Opcode.Binary, payload: big, mask: Uint8Array.of(1, 2, 3, 4) },
      [start(2, 300), end(big)],
    ],
    [{ opcode: Opcode.Pong, payload: pattern(125) }, [start(10, 125), end(pattern(125))]],
    [{ opcode: Opcode.Text, payload: "x", lengthField: 64 }, [start(1, 1), end("x")]],
    [{ opcode: Opcode.Close, payload: closePayload(1000, "bye") }, [
      start(8, 5),
      end(closePayload(1000, "bye")),
    ]],
  ];
  return {
    bytes: concat(...frames.map(([options]) => clientFrame(options))),
    events: frames.flatMap(([, events]) => events),
  };
}

Deno.test("FrameParser: a stream of frames gives the same events however it is split", () => {
  const { bytes, events } = stream();
  let ways = 0;
  for (const [how, pieces] of feedings(bytes)) {
    assert.deepEqual(parse(pieces), events, `fed ${how}`);
    ways++;
  }
  assert.equal(ways, bytes.length + 1);
});

Deno.test("FrameParser: a stream split at many random places", () => {
  const { bytes, events } = stream();
  const random = seededRandom(12345);
  for (let round = 0; round < 300; round++) {
    const cuts = new Set<number>();
    const count = 1 + random(20);
    for (let i = 0; i < count; i++) cuts.add(1 + random(bytes.length - 1));
    const sorted = [...cuts].sort((a, b) => a - b);
    const pieces = [0, ...sorted].map((from, i) => bytes.slice(from, sorted[i] ?? bytes.length));
    assert.deepEqual(parse(pieces), events, `cuts ${sorted}`);
  }
});

Deno.test("FrameParser: payload is handed out as it arrives, never held back", () => {
  const payload = pattern(1000);
  const frame = clientFrame({ opcode: Opcode.Binary, payload, declaredLength: 1_000_000 });
  const { parser, recorder } = parserWith();
  const header = 2 + 8 + 4; // 64-bit length and mask key
  parser.push(frame.slice(0, header + 10));
  assert.deepEqual(recorder.events, [start(Opcode.Binary, 1_000_000)]);
  assert.deepEqual(recorder.pieces, [payload.subarray(0, 10)]);
  parser.push(frame.slice(header + 10, header + 11));
  assert.deepEqual(recorder.pieces.at(-1), payload.subarray(10, 11));
  parser.push(frame.slice(header + 11));
  assert.deepEqual(concat(...recorder.pieces), payload);
  assert.equal(recorder.events.length, 1, "the frame is not over");
});

/** Asserts that the header bytes alone (no payload) produce exactly one error with `code`. */
function assertHeaderError(
  options: ClientFrameOptions,
  code: number,
  what: string,
  parserOptions?: FrameParserOptions,
): void {
  const frame = clientFrame({ payload: pattern(4), ...options });
  const payloadLength = typeof options.payload === "string"
    ? utf8(options.payload).length
    : (options.payload ?? pattern(4)).length;
  const header = frame.slice(0, frame.length - payloadLength);
  for (const [how, pieces] of feedings(header)) {
    const { parser, recorder } = parserWith(parserOptions);
    for (const piece of pieces) parser.push(piece);
    assert.deepEqual(recorder.events, [{ type: "error", code }], `${what}, header fed ${how}`);
    assert.equal(parser.failed, true, what);
    // Nothing more is reported: not the rest of this frame, nor a valid frame after it.
    parser.push(frame.slice(header.length));
    parser.push(clientFrame({ opcode: Opcode.Text, payload: "after" }));
    assert.deepEqual(recorder.events, [{ type: "error", code }], `${what}: silent afterwards`);
  }
}

Deno.test("FrameParser: an unmasked client frame is 1002", () => {
  assertHeaderError({ opcode: Opcode.Text, mask: false }, 1002, "unmasked text");
  assertHeaderError({ opcode: Opcode.Ping, mask: false }, 1002, "unmasked ping");
  assertHeaderError(
    { opcode: Opcode.Binary, mask: false, payload: pattern(300) },
    1002,
    "unmasked 16-bit",
  );
});

Deno.test("FrameParser: a masked frame to a client-side parser is 1002", () => {
  assertHeaderError({ opcode: Opcode.Text }, 1002, "masked", { expectMasked: false });
});

Deno.test("FrameParser: RSV bits without an extension are 1002", () => {
  for (const rsv of [0x40, 0x20, 0x10, 0x70]) {
    assertHeaderError({ opcode: Opcode.Text, rsv }, 1002, `rsv ${rsv.toString(16)}`);
  }
});

Deno.test("FrameParser: RSV1 is passed through when an extension allows it", () => {
  const frame = clientFrame({ opcode: Opcode.Binary, rsv: 0x40, payload: pattern(3) });
  assert.deepEqual(parse([frame], { allowedRsv: 0x40 }), [
    start(Opcode.Binary, 3, true, 0x40),
    end(pattern(3)),
  ]);
  for (const rsv of [0x20, 0x10, 0x60]) {
    assertHeaderError(
      { opcode: Opcode.Text, rsv },
      1002,
      `rsv ${rsv.toString(16)} with RSV1 allowed`,
      {
        allowedRsv: 0x40,
      },
    );
  }
});

Deno.test("FrameParser: reserved opcodes are 1002", () => {
  for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    assertHeaderError({ opcode }, 1002, `opcode ${opcode}`);
    assertHeaderError({ opcode, fin: false }, 1002, `opcode ${opcode}, not final`);
  }
});

Deno.test("FrameParser: a fragmented control frame is 1002", () => {
  for (const opcode of [Opcode.Close, Opcode.Ping, Opcode.Pong]) {
    assertHeaderError({ opcode, fin: false }, 1002, `opcode ${opcode}`);
  }
});

Deno.test("FrameParser: a control frame over 125 bytes is 1002", () => {
  for (const opcode of [Opcode.Close, Opcode.Ping, Opcode.Pong]) {
    assertHeaderError({ opcode, payload: pattern(126) }, 1002, `opcode ${opcode}, 126 bytes`);
    assertHeaderError(
      { opcode, payload: pattern(10), lengthField: 16 },
      1002,
      `opcode ${opcode}, 16-bit`,
    );
    assertHeaderError(
      { opcode, payload: pattern(10), lengthField: 64 },
      1002,
      `opcode ${opcode}, 64-bit`,
    );
    const frame = clientFrame({ opcode, payload: pattern(125) });
    assert.deepEqual(
      parse([frame]),
      [start(opcode, 125), end(pattern(125))],
      `opcode ${opcode}, 125`,
    );
  }
});

Deno.test("FrameParser: a 64-bit length with the top bit set is 1002", () => {
  for (const declaredLength of [2n ** 63n, 2n ** 64n - 1n, 2n ** 63n + 5n]) {
    assertHeaderError({ opcode: Opcode.Binary, declaredLength }, 1002, `${declaredLength}`);
  }
});

Deno.test("FrameParser: a 64-bit length of 2^53 or more is 1009", () => {
  for (const declaredLength of [2n ** 53n, 2n ** 53n + 1n, 2n ** 62n, 2n ** 63n - 1n]) {
    assertHeaderError({ opcode: Opcode.Binary, declaredLength }, 1009, `${declaredLength}`);
  }
});

Deno.test("FrameParser: huge but addressable lengths are announced, not refused", () => {
  for (const length of [2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1]) {
    const frame = clientFrame({ opcode: Opcode.Binary, declaredLength: length });
    assert.deepEqual(parse([frame]), [start(Opcode.Binary, length)], `${length}`);
  }
});

Deno.test("FrameParser: an error after valid frames comes after their events", () => {
  const bytes = concat(
    clientFrame({ opcode: Opcode.Text, payload: "ok" }),
    clientFrame({ opcode: Opcode.Ping }),
    clientFrame({ opcode: 0x3, payload: "bad" }),
    clientFrame({ opcode: Opcode.Text, payload: "never" }),
  );
  for (const [how, pieces] of feedings(bytes)) {
    assert.deepEqual(parse(pieces), [
      start(Opcode.Text, 2),
      end("ok"),
      start(Opcode.Ping, 0),
      end(new Uint8Array(0)),
      { type: "error", code: 1002 },
    ], `fed ${how}`);
  }
});

Deno.test("FrameParser: a handler returning false stops the parser", () => {
  const bytes = concat(
    clientFrame({ opcode: Opcode.Text, payload: "one" }),
    clientFrame({ opcode: Opcode.Text, payload: "two" }),
  );
  const expected = {
    start: [start(Opcode.Text, 3)],
    payload: [start(Opcode.Text, 3)],
    end: [start(Opcode.Text, 3), end("one")],
  };
  for (const stopAt of ["start", "payload", "end"] as const) {
    const recorder = new FrameRecorder(stopAt);
    const parser = new FrameParser(recorder);
    parser.push(bytes.slice());
    parser.push(clientFrame({ opcode: Opcode.Text, payload: "three" }));
    assert.deepEqual(recorder.events, expected[stopAt], `stopped at ${stopAt}`);
    assert.equal(parser.failed, true);
  }
});

Deno.test("FrameParser: stop() ignores later input, including a half-read header", () => {
  const frame = clientFrame({ opcode: Opcode.Text, payload: "late" });
  const { parser, recorder } = parserWith();
  parser.push(frame.slice(0, 3));
  parser.stop();
  parser.push(frame.slice(3));
  parser.push(clientFrame({ opcode: Opcode.Text, payload: "later" }));
  assert.deepEqual(recorder.events, []);
  assert.equal(parser.failed, true);
});
