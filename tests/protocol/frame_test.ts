/**
 * Frame encoding (server to client), close payloads and masking, checked
 * byte for byte against references written straight from RFC 6455 §5.
 */

import assert from "node:assert/strict";
import {
  CloseCode,
  decodeClosePayload,
  encodeClosePayload,
  encodeFrame,
  encodeFrameShared,
  encodeTextFrame,
  encodeTextFrameShared,
  frameHeaderSize,
  isValidCloseCode,
  Opcode,
  writeFrameHeader,
} from "../../src/protocol/frame.ts";
import { unmask } from "../../src/protocol/mask.ts";
import { assertSameBytes, closePayload, concat, pattern, utf8 } from "../helpers/frames.ts";

/** An unmasked frame built the slow, obvious way. */
function referenceFrame(
  opcode: number,
  payload: Uint8Array,
  fin = true,
  rsv = 0,
): Uint8Array {
  const first = (fin ? 0x80 : 0) | rsv | opcode;
  let header: number[];
  if (payload.length <= 125) {
    header = [first, payload.length];
  } else if (payload.length <= 0xffff) {
    header = [first, 126, payload.length >> 8, payload.length & 0xff];
  } else {
    const length = new Uint8Array(8);
    new DataView(length.buffer).setBigUint64(0, BigInt(payload.length));
    header = [first, 127, ...length];
  }
  return concat(Uint8Array.from(header), payload);
}

Deno.test("encodeFrame: 7-, 16- and 64-bit lengths at every boundary", () => {
  const cases: [number, number[]][] = [
    [0, [0x82, 0]],
    [1, [0x82, 1]],
    [125, [0x82, 125]],
    [126, [0x82, 126, 0, 126]],
    [127, [0x82, 126, 0, 127]],
    [256, [0x82, 126, 1, 0]],
    [65535, [0x82, 126, 0xff, 0xff]],
    [65536, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]],
    [70000, [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]],
  ];
  for (const [length, header] of cases) {
    const payload = pattern(length);
    const frame = encodeFrame(Opcode.Binary, payload);
    assert.deepEqual([...frame.subarray(0, header.length)], header, `header for ${length}`);
    assert.equal(frame.length, header.length + length, `size for ${length}`);
    assertSameBytes(frame.subarray(header.length), payload, `payload for ${length}`);
    assert.equal(frameHeaderSize(length), header.length, `frameHeaderSize(${length})`);
  }
});

Deno.test("encodeFrame: FIN, RSV and opcode bits in the first byte", () => {
  const payload = utf8("hi");
  assert.deepEqual(encodeFrame(Opcode.Text, payload), Uint8Array.of(0x81, 2, 0x68, 0x69));
  assert.deepEqual(encodeFrame(Opcode.Text, payload, false), Uint8Array.of(0x01, 2, 0x68, 0x69));
  assert.deepEqual(encodeFrame(Opcode.Continuation, payload, true)[0], 0x80);
  assert.deepEqual(encodeFrame(Opcode.Binary, payload, true, 0x40)[0], 0xc2);
  assert.deepEqual(encodeFrame(Opcode.Ping, new Uint8Array(0)), Uint8Array.of(0x89, 0));
  assert.deepEqual(encodeFrame(Opcode.Pong, payload), Uint8Array.of(0x8a, 2, 0x68, 0x69));
  assert.deepEqual(
    encodeFrame(Opcode.Close, closePayload(1000)),
    Uint8Array.of(0x88, 2, 0x03, 0xe8),
  );
});

Deno.test("encodeFrame: does not modify the payload", () => {
  const payload = pattern(300);
  encodeFrame(Opcode.Binary, payload);
  assert.deepEqual(payload, pattern(300));
});

Deno.test("writeFrameHeader: 64-bit lengths beyond 2^32 without the payload", () => {
  const cases: [number, number[]][] = [
    [2 ** 32 - 1, [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]],
    [2 ** 32, [0, 0, 0, 1, 0, 0, 0, 0]],
    [2 ** 32 + 5, [0, 0, 0, 1, 0, 0, 0, 5]],
    [0x12_3456_789a, [0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x9a]],
    [2 ** 53 - 1, [0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
  ];
  for (const [length, field] of cases) {
    const buffer = new Uint8Array(14).fill(0xee);
    const end = writeFrameHeader(buffer, 2, true, Opcode.Binary, length);
    assert.equal(end, 12, `end offset for ${length}`);
    assert.deepEqual([...buffer], [0xee, 0xee, 0x82, 127, ...field, 0xee, 0xee], `${length}`);
    assert.equal(frameHeaderSize(length), 10);
  }
});

Deno.test("writeFrameHeader: writes at the offset and returns the end", () => {
  const buffer = new Uint8Array(8).fill(0xee);
  assert.equal(writeFrameHeader(buffer, 3, false, Opcode.Text, 300, 0x40), 7);
  assert.deepEqual([...buffer], [0xee, 0xee, 0xee, 0x41, 126, 1, 44, 0xee]);
  buffer.fill(0xee);
  assert.equal(writeFrameHeader(buffer, 1, true, Opcode.Pong, 5), 3);
  assert.deepEqual([...buffer.subarray(0, 4)], [0xee, 0x8a, 5, 0xee]);
});

Deno.test("encodeTextFrame: the UTF-8 bytes in one text frame", () => {
  const texts = [
    "",
    "a",
    "hello",
    "héllo, 世界 🌍",
    "\ud800 lone surrogates \udfff become U+FFFD",
    "\u0000 nul",
    "a".repeat(125),
    "a".repeat(126),
    "é".repeat(62) + "a", // 125 bytes from 63 chars
    "é".repeat(63), // 126 bytes: the 16-bit length from a string with fewer than 126 chars
    "世".repeat(41) + "ab", // 125 bytes
    "世".repeat(42), // 126 bytes
    "🌍".repeat(256), // 1024 UTF-16 units, 1024 bytes
    "a".repeat(1024),
    "a".repeat(1025),
    "世".repeat(341), // 1023 bytes
    "世".repeat(342), // 1026 bytes
    "世".repeat(1024), // worst case of the short path: 3 bytes per unit
    "a".repeat(65535),
    "a".repeat(65536),
    "世".repeat(21845), // 65535 bytes
    "世".repeat(21846), // 65538 bytes
    "€🌍x".repeat(50_000),
  ];
  for (const text of texts) {
    const frame = encodeTextFrame(text);
    const expected = referenceFrame(Opcode.Text, utf8(text));
    assert.equal(frame.length, expected.length, `length for ${text.length} chars`);
    assertSameBytes(frame, expected, `frame for ${JSON.stringify(text.slice(0, 20))}`);
  }
});

Deno.test("send-path encoders: the same bytes as the public encoders", () => {
  const texts = [
    "",
    "a",
    "héllo 🌍",
    "é".repeat(63),
    "世".repeat(21),
    "x".repeat(64),
    "x".repeat(65),
  ];
  for (const text of [...texts, "世".repeat(500), "a".repeat(1400), "a".repeat(5000)]) {
    const what = `${text.length} chars`;
    assertSameBytes(encodeTextFrameShared(text), referenceFrame(Opcode.Text, utf8(text)), what);
  }
  for (const length of [0, 1, 125, 126, 4000, 4100, 65536]) {
    const payload = pattern(length, 3);
    assertSameBytes(
      encodeFrameShared(Opcode.Binary, payload),
      referenceFrame(Opcode.Binary, payload),
      `${length} bytes`,
    );
  }
});

Deno.test("send-path encoders: a frame stays intact while many more are encoded", () => {
  // Far more than one 64 KiB slab's worth, so slabs fill up and are replaced.
  const kept: [Uint8Array, Uint8Array][] = [];
  for (let i = 0; i < 3000; i++) {
    const text = `message ${i} ` + "€".repeat(i % 40);
    const frame = i % 2 === 0
      ? encodeTextFrameShared(text)
      : encodeFrameShared(Opcode.Binary, pattern(i % 200, i));
    kept.push([frame, frame.slice()]);
  }
  for (const [i, [frame, copy]] of kept.entries()) assertSameBytes(frame, copy, `frame ${i}`);
});

Deno.test("encodeTextFrame: frames are independent of each other", () => {
  const first = encodeTextFrame("first");
  const copy = first.slice();
  encodeTextFrame("second, longer");
  assert.deepEqual(first, copy);
});

const VALID_CODES = [
  1000,
  1001,
  1002,
  1003,
  1007,
  1008,
  1009,
  1010,
  1011,
  1012,
  1013,
  1014,
  3000,
  3999,
  4000,
  4999,
];
const INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];

Deno.test("isValidCloseCode: the codes allowed on the wire", () => {
  for (const code of VALID_CODES) assert.equal(isValidCloseCode(code), true, `${code}`);
  for (const code of INVALID_CODES) assert.equal(isValidCloseCode(code), false, `${code}`);
});

Deno.test("encodeClosePayload: big-endian code then UTF-8 reason", () => {
  assert.deepEqual(encodeClosePayload(1000), Uint8Array.of(0x03, 0xe8));
  assert.deepEqual(encodeClosePayload(4999, "bye"), Uint8Array.of(0x13, 0x87, 0x62, 0x79, 0x65));
  assert.deepEqual(encodeClosePayload(1001, "さよなら"), closePayload(1001, "さよなら"));
  for (const code of VALID_CODES) {
    assert.deepEqual(encodeClosePayload(code, "why"), closePayload(code, "why"), `${code}`);
  }
});

Deno.test("encodeClosePayload: 1005 means an empty payload", () => {
  assert.deepEqual(encodeClosePayload(CloseCode.NoStatus), new Uint8Array(0));
  assert.throws(() => encodeClosePayload(CloseCode.NoStatus, "reason"), RangeError);
});

Deno.test("encodeClosePayload: codes that may not be sent throw", () => {
  for (const code of INVALID_CODES.filter((code) => code !== CloseCode.NoStatus)) {
    assert.throws(() => encodeClosePayload(code), RangeError, `${code}`);
  }
});

Deno.test("encodeClosePayload: the reason is limited to 123 bytes, not characters", () => {
  assert.equal(encodeClosePayload(1000, "a".repeat(123)).length, 125);
  assert.equal(encodeClosePayload(1000, "世".repeat(41)).length, 125);
  assert.throws(() => encodeClosePayload(1000, "a".repeat(124)), RangeError);
  assert.throws(() => encodeClosePayload(1000, "世".repeat(42)), RangeError);
  assert.throws(() => encodeClosePayload(1000, "a".repeat(122) + "é"), RangeError);
});

Deno.test("decodeClosePayload: empty is 1005 with no reason", () => {
  assert.deepEqual(decodeClosePayload(new Uint8Array(0)), { code: 1005, reason: "" });
});

Deno.test("decodeClosePayload: code and reason", () => {
  for (const code of VALID_CODES) {
    assert.deepEqual(decodeClosePayload(closePayload(code)), { code, reason: "" }, `${code}`);
  }
  assert.deepEqual(decodeClosePayload(closePayload(4321, "done: 完了")), {
    code: 4321,
    reason: "done: 完了",
  });
  // A byte-order mark is part of the reason, not stripped.
  assert.deepEqual(decodeClosePayload(closePayload(1000, Uint8Array.of(0xef, 0xbb, 0xbf, 0x61))), {
    code: 1000,
    reason: "\ufeffa",
  });
  const long = "r".repeat(123);
  assert.deepEqual(decodeClosePayload(closePayload(1000, long)), { code: 1000, reason: long });
});

Deno.test("decodeClosePayload: a 1-byte payload is a protocol error", () => {
  // 0x0c and 0x10 would read as the valid codes 3072 and 4096 if the missing byte were taken as 0.
  for (const byte of [0, 0x03, 0x0c, 0x10, 0xff]) {
    const result = decodeClosePayload(Uint8Array.of(byte));
    assert.ok("error" in result);
    assert.equal(result.error, CloseCode.ProtocolError);
  }
});

Deno.test("decodeClosePayload: a code that may not be sent is a protocol error", () => {
  for (const code of INVALID_CODES) {
    const result = decodeClosePayload(closePayload(code, "x"));
    assert.ok("error" in result, `${code}`);
    assert.equal(result.error, CloseCode.ProtocolError, `${code}`);
  }
});

Deno.test("decodeClosePayload: a reason that is not UTF-8 is 1007", () => {
  const reasons = [
    [0xff],
    [0x61, 0x80],
    [0xc0, 0xaf], // overlong "/"
    [0xe4, 0xb8], // truncated 3-byte sequence
    [0xed, 0xa0, 0x80], // UTF-16 surrogate
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  ];
  for (const reason of reasons) {
    const result = decodeClosePayload(closePayload(1000, Uint8Array.from(reason)));
    assert.ok("error" in result, `${reason}`);
    assert.equal(result.error, CloseCode.InvalidPayload, `${reason}`);
  }
});

/** Masking the slow way: byte i is XORed with key[(phase + i) % 4]. */
function referenceUnmask(data: Uint8Array, key: Uint8Array, phase: number): Uint8Array {
  return data.map((byte, i) => byte ^ key[(phase + i) % 4]);
}

const KEY = Uint8Array.of(0x37, 0xfa, 0x21, 0x3d);

Deno.test("unmask: lengths 0-80 at every phase and byte offset, edges untouched", () => {
  for (let length = 0; length <= 80; length++) {
    for (let phase = 0; phase < 4; phase++) {
      for (let offset = 0; offset < 8; offset++) {
        const buffer = pattern(length + 16, length + phase);
        const before = buffer.slice();
        const data = buffer.subarray(offset, offset + length);
        unmask(data, KEY, phase);
        const what = `length ${length}, phase ${phase}, offset ${offset}`;
        assert.deepEqual(
          data,
          referenceUnmask(before.subarray(offset, offset + length), KEY, phase),
          what,
        );
        assert.deepEqual(buffer.subarray(0, offset), before.subarray(0, offset), `${what}: head`);
        assert.deepEqual(
          buffer.subarray(offset + length),
          before.subarray(offset + length),
          `${what}: tail`,
        );
      }
    }
  }
});

Deno.test("unmask: long buffers with unaligned offsets", () => {
  for (const length of [1000, 4099, 65536 + 3]) {
    for (const offset of [0, 1, 2, 3, 5]) {
      const buffer = pattern(length + 8, offset);
      const expected = referenceUnmask(buffer.subarray(offset, offset + length), KEY, 1);
      const data = buffer.subarray(offset, offset + length);
      unmask(data, KEY, 1);
      assertSameBytes(data, expected, `length ${length}, offset ${offset}`);
    }
  }
});

Deno.test("unmask: a phase of 4 or more wraps around the key", () => {
  for (const phase of [4, 5, 6, 7, 13]) {
    for (const length of [3, 40]) {
      const data = pattern(length);
      const expected = referenceUnmask(data, KEY, phase % 4);
      unmask(data, KEY, phase);
      assert.deepEqual(data, expected, `phase ${phase}, length ${length}`);
    }
  }
});

Deno.test("unmask: piece by piece with the running phase equals all at once", () => {
  const original = pattern(97, 3);
  const whole = referenceUnmask(original, KEY, 0);
  for (let first = 0; first <= original.length; first++) {
    for (const second of [first, Math.min(first + 33, original.length)]) {
      const data = original.slice();
      unmask(data.subarray(0, first), KEY, 0);
      unmask(data.subarray(first, second), KEY, first & 3);
      unmask(data.subarray(second), KEY, second & 3);
      assert.deepEqual(data, whole, `cuts at ${first} and ${second}`);
    }
  }
});

Deno.test("unmask: applying the key twice restores the data", () => {
  const key = Uint8Array.of(0xde, 0xad, 0xbe, 0xef);
  const original = pattern(257, 9);
  const data = original.slice();
  unmask(data.subarray(1), key, 2);
  assert.notDeepEqual(data, original);
  unmask(data.subarray(1), key, 2);
  assert.deepEqual(data, original);
});
