// Request body framing and the chunked decoder, byte for byte: every body is
// fed whole, at every split point, and one byte at a time, and must decode to
// the same payload and stop at the same place (the next request's first byte).

import assert from "node:assert/strict";
import { ChunkedDecoder, requestBodyFraming } from "../../src/protocol/http1_body.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Outcome {
  body: string;
  used: number;
  done: boolean;
  error: string | null;
}

/** Feeds `wire` in the pieces given by `cuts`; stops feeding once the decoder stops taking bytes. */
function decode(wire: Uint8Array, cuts: number[]): Outcome {
  const chunked = new ChunkedDecoder({ maxLineBytes: 64, maxTrailerBytes: 64 });
  const parts: Uint8Array[] = [];
  let used = 0;
  let from = 0;
  for (const to of [...cuts, wire.length]) {
    const piece = wire.subarray(from, to);
    const n = chunked.push(piece, (data) => parts.push(data.slice()));
    used += n;
    if (n < piece.length) break;
    from = to;
  }
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const joined = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return { body: decoder.decode(joined), used, done: chunked.done, error: chunked.error };
}

/** The outcome whole, at every single split, and byte by byte: all must agree. */
function decodeEverySplit(text: string): Outcome {
  const wire = encoder.encode(text);
  const whole = decode(wire, []);
  for (let cut = 1; cut < wire.length; cut++) {
    assert.deepEqual(decode(wire, [cut]), whole, `split at ${cut} of ${JSON.stringify(text)}`);
  }
  const bytewise = Array.from({ length: wire.length - 1 }, (_, i) => i + 1);
  assert.deepEqual(decode(wire, bytewise), whole, `byte by byte: ${JSON.stringify(text)}`);
  return whole;
}

Deno.test("chunked: payload, extensions and trailers decode the same at every split", () => {
  const next = "GET /next HTTP/1.1\r\n";
  const cases: [string, string][] = [
    ["0\r\n\r\n", ""],
    ["5\r\nhello\r\n0\r\n\r\n", "hello"],
    ["5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n", "hello, world"],
    ["A\r\n0123456789\r\n0\r\n\r\n", "0123456789"],
    ["a;name=value\r\n0123456789\r\n0;last\r\n\r\n", "0123456789"],
    ["3 ;ext\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n", "abc"],
    ["0003\r\nabc\r\n0000\r\n\r\n", "abc"],
  ];
  for (const [wire, body] of cases) {
    const outcome = decodeEverySplit(wire + next);
    assert.equal(outcome.error, null, wire);
    assert.equal(outcome.done, true, wire);
    assert.equal(outcome.body, body, wire);
    // It stops exactly at the body's end: the next request is left untouched.
    assert.equal(outcome.used, encoder.encode(wire).length, wire);
  }
});

Deno.test("chunked: smuggling shapes and malformed bodies are errors at every split", () => {
  const bad: [string, RegExp][] = [
    ["5\nhello\r\n0\r\n\r\n", /CRLF/], // bare LF after the size
    ["5\r\nhello\n0\r\n\r\n", /CRLF/], // bare LF after data
    ["5\r\nhelloX\r\n0\r\n\r\n", /CRLF/], // more data than the size said
    ["x\r\n", /not hex/],
    ["-5\r\n", /not hex/],
    ["\r\n", /not hex/], // empty size
    ["5x\r\nhello\r\n", /after chunk size/],
    ["20000000000000\r\n", /too large/], // over 2^53
    ["1;" + "e".repeat(100) + "\r\n", /too long/],
    ["0\r\nX: 1\n\r\n", /CRLF|trailer/],
    ["0\r\n folded\r\n\r\n", /folded/],
    ["0\r\nX: " + "v".repeat(100) + "\r\n\r\n", /too large/],
    ["0\r\n\n", /LF/],
  ];
  for (const [wire, why] of bad) {
    const outcome = decodeEverySplit(wire);
    assert.equal(outcome.done, false, wire);
    assert.match(outcome.error ?? "", why, wire);
  }
});

Deno.test("chunked: an unfinished body is neither done nor failed", () => {
  const outcome = decodeEverySplit("5\r\nhel");
  assert.deepEqual(outcome, { body: "hel", used: 6, done: false, error: null });
});

Deno.test("body framing: lengths, chunked, and every ambiguous combination", () => {
  assert.deepEqual(requestBodyFraming([], []), { kind: "none" });
  assert.deepEqual(requestBodyFraming(["0"], []), { kind: "none" });
  assert.deepEqual(requestBodyFraming(["42"], []), { kind: "length", length: 42 });
  assert.deepEqual(requestBodyFraming([" 7 "], []), { kind: "length", length: 7 });
  assert.deepEqual(requestBodyFraming([], ["chunked"]), { kind: "chunked" });
  assert.deepEqual(requestBodyFraming([], ["Chunked"]), { kind: "chunked" });
  const status = (cl: string[], te: string[]) => {
    const framing = requestBodyFraming(cl, te);
    return framing.kind === "error" ? framing.status : framing.kind;
  };
  assert.equal(status(["5"], ["chunked"]), 400); // both: the classic smuggling pair
  assert.equal(status(["5", "5"], []), 400); // given twice, even equal
  assert.equal(status(["5, 5"], []), 400);
  assert.equal(status(["+5"], []), 400);
  assert.equal(status(["0x10"], []), 400);
  assert.equal(status(["1 2"], []), 400);
  assert.equal(status([""], []), 400);
  assert.equal(status(["9".repeat(16)], []), 400);
  assert.equal(status([], ["chunked, identity"]), 400); // chunked not last
  assert.equal(status([], ["gzip"]), 400);
  assert.equal(status([], ["gzip, chunked"]), 501); // a coding we do not implement
  assert.equal(status([], ["gzip", "chunked"]), 501);
  assert.equal(status([], ["chunked", "chunked"]), 400); // chunked twice: malformed
  assert.equal(status([], ["chunked, chunked"]), 400);
  assert.equal(status([], ["gzip, chunked, chunked"]), 400);
  assert.equal(status([], [" "]), 400);
});
