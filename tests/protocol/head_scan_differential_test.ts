/**
 * scanRequestHead (charCodeAt loops, 7e89dd7) against the indexOf/startsWith
 * version it replaced, copied here verbatim as the reference: the same
 * rejections (status and message) and, for accepted heads, the same
 * positions, on exhaustive short texts, every single and double edit of
 * valid heads, and random texts made of request-line and header pieces.
 */

import assert from "node:assert/strict";
import { type HandshakeRejection, scanRequestHead } from "../../src/protocol/handshake.ts";

// --- The reference: scanRequestHead as of 7e89dd7^, verbatim but for names.
const TCHAR = 1;
const VCHAR = 2;
const TARGET_CHAR = 4;
const CHAR_CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const token = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c));
  CHAR_CLASS[c] = (token ? TCHAR : 0) |
    (c === 0x09 || (c >= 0x20 && c !== 0x7f) ? VCHAR : 0) |
    (c >= 0x21 && c <= 0x7e ? TARGET_CHAR : 0);
}
const MAX_HEADER_FIELDS = 100;
function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}
interface RefFields {
  methodEnd: number;
  targetStart: number;
  targetEnd: number;
  major: number;
  minor: number;
  count: number;
  at: number[];
}
const MALFORMED_REQUEST_LINE: HandshakeRejection = {
  status: 400,
  message: "malformed request line",
};
function referenceScan(text: string): RefFields | HandshakeRejection {
  const last = text.length - 2;
  if (!text.endsWith("\r\n\r\n")) return { status: 400, message: "incomplete request head" };
  let lineEnd = text.indexOf("\r\n");
  let at = 0;
  while (at < lineEnd && (CHAR_CLASS[text.charCodeAt(at)] & TCHAR) !== 0) at++;
  if (at === 0 || text.charCodeAt(at) !== 0x20) return MALFORMED_REQUEST_LINE;
  const methodEnd = at;
  const targetStart = ++at;
  while (at < lineEnd && (CHAR_CLASS[text.charCodeAt(at)] & TARGET_CHAR) !== 0) at++;
  const targetEnd = at;
  const major = text.charCodeAt(at + 6) - 0x30;
  const minor = text.charCodeAt(at + 8) - 0x30;
  if (
    targetEnd === targetStart || lineEnd - targetEnd !== 9 || !text.startsWith(" HTTP/", at) ||
    !(major >= 0 && major <= 9) || text.charCodeAt(at + 7) !== 0x2e || !(minor >= 0 && minor <= 9)
  ) {
    return MALFORMED_REQUEST_LINE;
  }
  const positions: number[] = [];
  let count = 0;
  for (let lineStart = lineEnd + 2; lineStart < last; lineStart = lineEnd + 2) {
    if (count === MAX_HEADER_FIELDS) {
      return { status: 431, message: `more than ${MAX_HEADER_FIELDS} header fields` };
    }
    lineEnd = text.indexOf("\r\n", lineStart);
    const colon = text.indexOf(":", lineStart);
    if (colon <= lineStart || colon > lineEnd) {
      return { status: 400, message: "malformed header line" };
    }
    for (let i = lineStart; i < colon; i++) {
      if ((CHAR_CLASS[text.charCodeAt(i)] & TCHAR) === 0) {
        return { status: 400, message: "malformed header name" };
      }
    }
    let start = colon + 1;
    let end = lineEnd;
    while (start < end && isOws(text.charCodeAt(start))) start++;
    while (end > start && isOws(text.charCodeAt(end - 1))) end--;
    for (let i = start; i < end; i++) {
      if ((CHAR_CLASS[text.charCodeAt(i)] & VCHAR) === 0) {
        return { status: 400, message: "invalid header value" };
      }
    }
    count++;
    positions.push(lineStart, colon, start, end);
  }
  return { methodEnd, targetStart, targetEnd, major, minor, count, at: positions };
}
// --- End of the reference.

/** The new scan as plain data (the shared result copied at once). */
function scan(text: string): RefFields | HandshakeRejection {
  const fields = scanRequestHead(text);
  if ("status" in fields) return { status: fields.status, message: fields.message };
  assert.equal(fields.text, text);
  return {
    methodEnd: fields.methodEnd,
    targetStart: fields.targetStart,
    targetEnd: fields.targetEnd,
    major: fields.major,
    minor: fields.minor,
    count: fields.count,
    at: Array.from(fields.at.subarray(0, 4 * fields.count)),
  };
}

function plain(r: RefFields | HandshakeRejection) {
  return "status" in r ? { status: r.status, message: r.message } : r;
}

const outcomes = new Map<string, number>();
function check(text: string): void {
  const actual = scan(text);
  const expected = plain(referenceScan(text));
  assert.deepEqual(actual, expected, JSON.stringify(text));
  const key = "status" in actual ? actual.message : "head";
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

// Characters that matter: CR, LF, SP, HTAB, colon, NUL, DEL, token and
// target characters, latin-1 above 0x7F, and what windows-1252 decodes
// 0x80-0x9F to (above 0xFF), plus a surrogate.
const ALPHABET = [
  "\r",
  "\n",
  " ",
  "\t",
  ":",
  "\0",
  "\x7f",
  "a",
  "G",
  "/",
  "H",
  "T",
  "P",
  "1",
  ".",
  "\xa0",
  "\xff",
  "\u20ac",
  "\u0100",
  "\ud800",
  "\x85",
  "(",
  "\x0b",
];

Deno.test("scanRequestHead: every text of up to 6 characters (of 8), as the reference", () => {
  const small = ["\r", "\n", " ", ":", "a", "\0", "\u20ac", "1"];
  const walk = (prefix: string, depth: number) => {
    check(prefix);
    if (depth === 0) return;
    for (const c of small) walk(prefix + c, depth - 1);
  };
  walk("", 6);
});

const VALIDS = [
  "GET / HTTP/1.1\r\n\r\n",
  "GET / HTTP/1.1\r\nA: b\r\n\r\n",
  "GET /x HTTP/1.0\r\nA:\r\nB: \t \r\n\r\n",
  "G / HTTP/9.9\r\nHost: a\r\nX-Y:  1 2 \r\n\r\n",
  "POST /x HTTP/1.1\r\nA: b\r\nContent-Length: 3\r\n\r\n",
  "GET / HTTP/1.1\r\n:\r\n\r\n",
  "GET / HTTP/1.1\r\nA:b\r\n\r\n\r\n",
];

Deno.test("scanRequestHead: every single and double edit of short heads, as the reference", () => {
  for (const base of VALIDS) {
    check(base);
    const edits1: string[] = [];
    for (let i = 0; i <= base.length; i++) {
      // delete
      if (i < base.length) edits1.push(base.slice(0, i) + base.slice(i + 1));
      for (const c of ALPHABET) {
        edits1.push(base.slice(0, i) + c + base.slice(i)); // insert
        if (i < base.length) edits1.push(base.slice(0, i) + c + base.slice(i + 1)); // replace
      }
    }
    for (const t of edits1) check(t);
    // Double edits: replace at two positions, a smaller alphabet.
    const few = ["\r", "\n", " ", ":", "\0", "\u20ac", "a"];
    for (let i = 0; i < base.length; i++) {
      for (let j = i + 1; j < base.length; j++) {
        for (const c of few) {
          for (const d of few) {
            check(base.slice(0, i) + c + base.slice(i + 1, j) + d + base.slice(j + 1));
          }
        }
      }
    }
  }
});

Deno.test("scanRequestHead: random texts of head pieces, as the reference", () => {
  let seed = 20261203;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const PIECES = [
    "GET",
    " ",
    "/",
    "/x?y",
    " HTTP/1.1",
    "HTTP/",
    "1",
    ".",
    "\r\n",
    "\r",
    "\n",
    "\r\n\r\n",
    "Host",
    ":",
    ": ",
    "a",
    "\t",
    "\0",
    "\u20ac",
    "\xe9",
    "X-A",
    " b ",
    "\x7f",
    "::",
    "\r\n ",
    "GET / HTTP/1.1\r\n",
    "A: b\r\n",
    "\r\n\r\n\r\n",
  ];
  for (let n = 0; n < 300_000; n++) {
    let text = "";
    const parts = 1 + Math.floor(random() * 12);
    if (random() < 0.6) text = "GET / HTTP/1.1\r\n";
    for (let p = 0; p < parts; p++) text += PIECES[Math.floor(random() * PIECES.length)];
    if (random() < 0.7) text += "\r\n\r\n";
    check(text);
  }
  // Many fields: at, over and around the limit.
  for (const count of [99, 100, 101]) {
    const lines = "A: b\r\n".repeat(count);
    check(`GET / HTTP/1.1\r\n${lines}\r\n`);
    check(`GET / HTTP/1.1\r\n${lines}B\r\n\r\n`);
    check(`GET / HTTP/1.1\r\n${lines}:\r\n\r\n`);
  }
  for (
    const outcome of [
      "head",
      "incomplete request head",
      "malformed request line",
      "malformed header line",
      "malformed header name",
      "invalid header value",
      "more than 100 header fields",
    ]
  ) assert.ok(outcomes.has(outcome), outcome);
});
