/**
 * The RESP codec: every reply type, every reply split at every byte boundary
 * (and fed one byte at a time), many replies in one push, binary bulk strings
 * byte-exact, hostile lengths rejected, and the command encoder.
 */

import assert from "node:assert/strict";
import {
  encodeCommand,
  RespError,
  RespParser,
  type RespParserOptions,
  type RespValue,
} from "../../src/protocol/resp.ts";
import {
  decodeEnvelope,
  encodeEnvelope,
  envelopeFrom,
} from "../../src/protocol/broker_envelope.ts";

const enc = new TextEncoder();

function bytes(...parts: (string | number[] | Uint8Array)[]): Uint8Array {
  const chunks = parts.map((part) =>
    typeof part === "string"
      ? enc.encode(part)
      : part instanceof Uint8Array
      ? part
      : new Uint8Array(part)
  );
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

interface Outcome {
  replies: RespValue[];
  errors: string[];
}

function parseChunks(chunks: Uint8Array[], options?: RespParserOptions): Outcome {
  const outcome: Outcome = { replies: [], errors: [] };
  const parser = new RespParser({
    onReply: (value) => outcome.replies.push(value),
    onProtocolError: (message) => outcome.errors.push(message),
  }, options);
  for (const chunk of chunks) parser.push(chunk);
  return outcome;
}

/** Parses `input` whole, split at every boundary, in three pieces at many pairs, and byte by byte. */
function parseEverySplit(input: Uint8Array, options?: RespParserOptions): Outcome {
  const whole = parseChunks([input], options);
  for (let cut = 0; cut <= input.length; cut++) {
    const split = parseChunks([input.slice(0, cut), input.slice(cut)], options);
    assert.deepEqual(split, whole, `split at ${cut}`);
  }
  for (let a = 0; a <= input.length; a += 3) {
    for (let b = a; b <= input.length; b += 2) {
      const split = parseChunks(
        [input.slice(0, a), input.slice(a, b), input.slice(b)],
        options,
      );
      assert.deepEqual(split, whole, `split at ${a} and ${b}`);
    }
  }
  const single = parseChunks([...input].map((byte) => new Uint8Array([byte])), options);
  assert.deepEqual(single, whole, "byte by byte");
  return whole;
}

const binary = new Uint8Array(256).map((_, k) => k); // every byte value, CR and LF included

const CASES: [string, Uint8Array, RespValue][] = [
  ["simple string", bytes("+OK\r\n"), "OK"],
  ["empty simple string", bytes("+\r\n"), ""],
  [
    "error",
    bytes("-WRONGPASS invalid username-password pair\r\n"),
    new RespError("WRONGPASS invalid username-password pair"),
  ],
  ["integer", bytes(":1000\r\n"), 1000],
  ["negative integer", bytes(":-42\r\n"), -42],
  ["bulk string", bytes("$5\r\nhello\r\n"), enc.encode("hello")],
  ["empty bulk string", bytes("$0\r\n\r\n"), new Uint8Array(0)],
  ["null bulk string", bytes("$-1\r\n"), null],
  ["binary bulk string", bytes("$256\r\n", binary, "\r\n"), binary],
  ["bulk string with CRLF inside", bytes("$4\r\n\r\n\r\n\r\n"), enc.encode("\r\n\r\n")],
  ["null array", bytes("*-1\r\n"), null],
  ["empty array", bytes("*0\r\n"), []],
  [
    "pub/sub message",
    bytes("*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$3\r\n", [0, 13, 10], "\r\n"),
    [enc.encode("message"), enc.encode("room"), new Uint8Array([0, 13, 10])],
  ],
  [
    "nested arrays",
    bytes("*3\r\n*2\r\n:1\r\n*1\r\n+a\r\n*0\r\n$-1\r\n"),
    [[1, ["a"]], [], null],
  ],
  [
    "array with an error inside",
    bytes("*2\r\n-ERR x\r\n:7\r\n"),
    [new RespError("ERR x"), 7],
  ],
  [
    "RESP3 push",
    bytes(">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n"),
    [enc.encode("message"), enc.encode("c"), enc.encode("x")],
  ],
  ["RESP3 null", bytes("_\r\n"), null],
  ["RESP3 booleans", bytes("*2\r\n#t\r\n#f\r\n"), [true, false]],
  ["RESP3 double", bytes(",3.14\r\n"), "3.14"],
  [
    "RESP3 big number",
    bytes("(3492890328409238509324850943850943825024385\r\n"),
    "3492890328409238509324850943850943825024385",
  ],
  ["RESP3 verbatim", bytes("=8\r\ntxt:abcd\r\n"), enc.encode("txt:abcd")],
  ["RESP3 blob error", bytes("!9\r\nSYNTAX xy\r\n"), new RespError("SYNTAX xy")],
  ["RESP3 map", bytes("%1\r\n+k\r\n:1\r\n"), ["k", 1]],
  ["RESP3 set", bytes("~2\r\n+a\r\n+b\r\n"), ["a", "b"]],
];

for (const [name, input, expected] of CASES) {
  Deno.test(`resp: ${name}, split at every byte`, () => {
    const outcome = parseEverySplit(input);
    assert.deepEqual(outcome.errors, []);
    assert.deepEqual(outcome.replies, [expected]);
  });
}

Deno.test("resp: every case back to back in one stream, split at every byte", () => {
  const input = bytes(...CASES.map(([, input]) => input));
  const whole = parseChunks([input]);
  assert.deepEqual(whole.errors, []);
  assert.deepEqual(whole.replies, CASES.map(([, , expected]) => expected));
  for (let cut = 0; cut <= input.length; cut++) {
    assert.deepEqual(parseChunks([input.slice(0, cut), input.slice(cut)]), whole, `cut ${cut}`);
  }
  const single = parseChunks([...input].map((byte) => new Uint8Array([byte])));
  assert.deepEqual(single, whole);
});

Deno.test("resp: RespError takes its kind from the first word", () => {
  assert.equal(new RespError("NOAUTH Authentication required.").kind, "NOAUTH");
  assert.equal(new RespError("ERR").kind, "ERR");
});

Deno.test("resp: bulk bytes are a copy, not a view of the pushed buffer", () => {
  const input = bytes("$3\r\nabc\r\n");
  const { replies } = parseChunks([input]);
  input.fill(0);
  assert.deepEqual(replies, [enc.encode("abc")]);
});

const HOSTILE: [string, Uint8Array, RespParserOptions | undefined, RegExp][] = [
  ["huge bulk length", bytes("$99999999999\r\n"), undefined, /over the .* limit/],
  ["bulk over a set bound", bytes("$11\r\nhello world\r\n"), { maxBulkLength: 10 }, /11 bytes/],
  ["huge array count", bytes("*99999999999\r\n"), undefined, /over the .* limit/],
  [
    "array over a set bound",
    bytes("*3\r\n:1\r\n:2\r\n:3\r\n"),
    { maxArrayLength: 2 },
    /3 elements/,
  ],
  ["map counted as pairs", bytes("%2\r\n"), { maxArrayLength: 3 }, /4 elements/],
  ["deep nesting", bytes("*1\r\n".repeat(40)), undefined, /nested deeper/],
  ["long line", bytes("+" + "x".repeat(100)), { maxLineLength: 64 }, /longer than 64/],
  ["bad integer", bytes(":12a\r\n"), undefined, /invalid integer/],
  ["integer too long", bytes(":12345678901234567890\r\n"), undefined, /invalid integer/],
  ["negative bulk length", bytes("$-2\r\n"), undefined, /invalid bulk length/],
  ["negative array length", bytes("*-5\r\n"), undefined, /invalid array length/],
  ["unknown type", bytes("?x\r\n"), undefined, /unknown reply type/],
  ["attribute", bytes("|1\r\n+a\r\n+b\r\n"), undefined, /unknown reply type/],
  ["bulk without CRLF", bytes("$3\r\nabcXY"), undefined, /not ended by CRLF/],
  ["line with bare LF", bytes("+OK\n"), undefined, /not ended by CRLF/],
  ["bad null", bytes("_x\r\n"), undefined, /invalid null/],
  ["bad boolean", bytes("#x\r\n"), undefined, /invalid boolean/],
  [
    "HTTP instead of Redis",
    bytes("HTTP/1.1 400 Bad Request\r\n"),
    undefined,
    /unknown reply type byte 72 \(H\)/,
  ],
];

for (const [name, input, options, pattern] of HOSTILE) {
  Deno.test(`resp: rejects ${name} at any split, once, and then ignores input`, () => {
    const outcome = parseEverySplit(input, options);
    assert.equal(outcome.errors.length, 1, `errors: ${outcome.errors}`);
    assert.match(outcome.errors[0], pattern);
    assert.deepEqual(outcome.replies, []);
  });
}

Deno.test("resp: a reply before a protocol error is delivered; nothing after it", () => {
  const outcome = parseChunks([bytes("+OK\r\n?\r\n+later\r\n")]);
  assert.deepEqual(outcome.replies, ["OK"]);
  assert.equal(outcome.errors.length, 1);
});

Deno.test("resp: a large bulk string fed in 1000-byte reads arrives whole", () => {
  const payload = new Uint8Array(1 << 20).map((_, k) => (k * 7) & 0xff);
  const input = bytes(`$${payload.length}\r\n`, payload, "\r\n");
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < input.length; at += 1000) chunks.push(input.slice(at, at + 1000));
  const { replies, errors } = parseChunks(chunks);
  assert.deepEqual(errors, []);
  assert.equal(replies.length, 1);
  assert.deepEqual(replies[0], payload);
});

Deno.test("resp: encodeCommand writes arrays of bulk strings, binary-safe", () => {
  const dec = new TextDecoder();
  assert.equal(dec.decode(encodeCommand(["PING"])), "*1\r\n$4\r\nPING\r\n");
  assert.equal(
    dec.decode(encodeCommand(["SET", "k", ""])),
    "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
  );
  // UTF-8 lengths in bytes, not UTF-16 units.
  assert.equal(dec.decode(encodeCommand(["つなぐ"])), "*1\r\n$9\r\nつなぐ\r\n");
  const encoded = encodeCommand(["PUBLISH", "c", binary]);
  assert.deepEqual(encoded, bytes("*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$256\r\n", binary, "\r\n"));
  // Round trip through the parser (a command is an array of bulk strings).
  const { replies } = parseChunks([encoded]);
  assert.deepEqual(replies, [[enc.encode("PUBLISH"), enc.encode("c"), binary]]);
  const long = new Uint8Array(12345);
  assert.deepEqual(
    encodeCommand([long]).subarray(0, 12),
    bytes("*1\r\n$12345\r\n"),
  );
});

Deno.test("envelope: text stays text, binary stays binary, node id kept", () => {
  assert.deepEqual(decodeEnvelope(encodeEnvelope("n1", "héllo")), { node: "n1", data: "héllo" });
  assert.deepEqual(decodeEnvelope(encodeEnvelope("n1", "")), { node: "n1", data: "" });
  assert.deepEqual(decodeEnvelope(encodeEnvelope("abc", binary)), { node: "abc", data: binary });
  assert.deepEqual(
    decodeEnvelope(encodeEnvelope("abc", new Uint8Array(0))),
    { node: "abc", data: new Uint8Array(0) },
  );
  assert.ok(envelopeFrom(encodeEnvelope("abc", "x"), "abc"));
  assert.ok(!envelopeFrom(encodeEnvelope("abd", "x"), "abc"));
  assert.ok(!envelopeFrom(encodeEnvelope("abcd", "x"), "abc"));
});

Deno.test("envelope: malformed input is null, a bad node id throws", () => {
  assert.equal(decodeEnvelope(new Uint8Array([])), null);
  assert.equal(decodeEnvelope(enc.encode("hello")), null);
  assert.equal(decodeEnvelope(new Uint8Array([0x74, 5, 65])), null); // truncated id
  assert.equal(decodeEnvelope(new Uint8Array([0x74, 1, 65, 0xff])), null); // invalid UTF-8
  assert.throws(() => encodeEnvelope("", "x"), RangeError);
  assert.throws(() => encodeEnvelope("é", "x"), RangeError);
});

Deno.test("resp: an argument given as parts is their concatenation; commands are never overwritten", () => {
  const dec = new TextDecoder();
  assert.equal(
    dec.decode(encodeCommand(["PUBLISH", "c", [new Uint8Array([0x74]), "héllo", "!"]])),
    "*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$8\r\nthéllo!\r\n",
  );
  // Long strings take the TextEncoder path; lengths stay UTF-8 bytes.
  const long = "ü".repeat(1000);
  assert.deepEqual(
    encodeCommand([long]),
    bytes(`*1\r\n$2000\r\n`, enc.encode(long), "\r\n"),
  );
  // Small commands share a slab: earlier ones must survive later ones.
  const kept = Array.from({ length: 3000 }, (_, k) => encodeCommand(["SET", `k${k}`, `v${k}`]));
  kept.forEach((command, k) => {
    assert.equal(
      dec.decode(command),
      `*3\r\n$3\r\nSET\r\n$${`k${k}`.length}\r\nk${k}\r\n$${`v${k}`.length}\r\nv${k}\r\n`,
    );
  });
});
