/**
 * The request head scanned into positions (scanRequestHead, headOf) and
 * the usual upgrade checked in place (upgradeOf): the same heads and
 * rejections as the regular-expression parser it replaced, kept here as the
 * reference, and an in-place upgrade never accepted where the general path
 * (requestAddress, checkUpgrade, body framing) refuses, on edge cases and
 * random mutations of a valid upgrade.
 */

import assert from "node:assert/strict";
import {
  checkUpgrade,
  type HandshakeRejection,
  headerValues,
  isRejection,
  isUpgradeRequest,
  parseRequestText,
  requestAddress,
  type RequestHead,
  scanRequestHead,
  upgradeOf,
} from "../../src/protocol/handshake.ts";
import { requestBodyFraming } from "../../src/protocol/http1_body.ts";

// The parser before change 18, verbatim but for its name: the reference.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/(\d)\.(\d)$/;
const isOws = (code: number) => code === 0x20 || code === 0x09;
function referenceParse(text: string): RequestHead | HandshakeRejection {
  const last = text.length - 2;
  if (!text.endsWith("\r\n\r\n")) return { status: 400, message: "incomplete request head" };
  let lineEnd = text.indexOf("\r\n");
  const match = REQUEST_LINE.exec(text.slice(0, lineEnd));
  if (match === null) return { status: 400, message: "malformed request line" };
  const headers: [string, string][] = [];
  for (let lineStart = lineEnd + 2; lineStart < last; lineStart = lineEnd + 2) {
    if (headers.length === 100) return { status: 431, message: "more than 100 header fields" };
    lineEnd = text.indexOf("\r\n", lineStart);
    const colon = text.indexOf(":", lineStart);
    if (colon <= lineStart || colon > lineEnd) {
      return { status: 400, message: "malformed header line" };
    }
    const name = text.slice(lineStart, colon);
    if (!TOKEN.test(name)) return { status: 400, message: "malformed header name" };
    let start = colon + 1;
    let end = lineEnd;
    while (start < end && isOws(text.charCodeAt(start))) start++;
    while (end > start && isOws(text.charCodeAt(end - 1))) end--;
    const value = text.slice(start, end);
    if (!FIELD_VALUE.test(value)) return { status: 400, message: "invalid header value" };
    headers.push([name.toLowerCase(), value]);
  }
  return {
    method: match[1],
    target: match[2],
    version: [Number(match[3]), Number(match[4])],
    headers,
  };
}

/** What the general path makes of a head: the upgrade it accepts, or null. */
function generalUpgrade(text: string) {
  const head = parseRequestText(text);
  if (isRejection(head) || head.version[0] !== 1 || !isUpgradeRequest(head)) return null;
  const address = requestAddress(head);
  if (isRejection(address)) return null;
  const upgrade = checkUpgrade(head, true);
  if (isRejection(upgrade)) return null;
  const framing = requestBodyFraming(
    headerValues(head, "content-length"),
    headerValues(head, "transfer-encoding"),
  );
  if (framing.kind !== "none") return null;
  return {
    ...upgrade,
    ...address,
    extensionValues: headerValues(head, "sec-websocket-extensions"),
  };
}

function inPlaceUpgrade(text: string) {
  const fields = scanRequestHead(text);
  if (isRejection(fields)) return null;
  const upgrade = upgradeOf(fields);
  return upgrade === null ? null : { ...upgrade };
}

const VALID = "GET /chat?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nUpgrade: websocket\r\n" +
  "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n" +
  "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

Deno.test("scanRequestHead + headOf parse every edge case as the reference parser did", () => {
  const heads = [
    VALID,
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    "GET  / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1 \r\n\r\n",
    "GET / HTTP/11\r\n\r\n",
    "GET / HTTP/1.x\r\n\r\n",
    "GET / http/1.1\r\n\r\n",
    "GET /\x7f HTTP/1.1\r\n\r\n",
    "GET /\xe9 HTTP/1.1\r\n\r\n",
    "G(T / HTTP/1.1\r\n\r\n",
    " / HTTP/1.1\r\n\r\n",
    "GET HTTP/1.1\r\n\r\n",
    "\r\n\r\n",
    "GET / HTTP/1.1\r\n",
    "GET / HTTP/1.1\r\nA: b\r\n",
    "GET / HTTP/9.9\r\nX-A:\t v \t\r\n\r\n",
    "GET / HTTP/1.1\r\n: b\r\n\r\n",
    "GET / HTTP/1.1\r\nA b\r\n\r\n",
    "GET / HTTP/1.1\r\nA b: c\r\n\r\n",
    "GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
    "GET / HTTP/1.1\r\nA: b\x7fc\r\n\r\n",
    "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
    "GET / HTTP/1.1\r\nA: \xa0b\xa0\r\n\r\n",
    "GET / HTTP/1.1\r\nA:\r\n\r\n",
    "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
    "GET / HTTP/1.1\r\nÄ: b\r\n\r\n",
    "GET / HTTP/1.1\r\n" + "a:b\r\n".repeat(100) + "\r\n",
    "GET / HTTP/1.1\r\n" + "a:b\r\n".repeat(101) + "\r\n",
    "GET / HTTP/1.1\r\n" + "a:b\r\n".repeat(100) + "bad line\r\n\r\n",
  ];
  for (const text of heads) {
    assert.deepEqual(parseRequestText(text), referenceParse(text), JSON.stringify(text));
  }
});

// A random edit of a valid upgrade head: a character replaced, inserted or
// removed, a field repeated or dropped, a name's case changed.
function mutate(text: string, random: () => number): string {
  const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)];
  const at = Math.floor(random() * text.length);
  const chars = [" ", "\t", ",", ":", "\r", "\n", "\x00", "\xa0", "#", "/", "a", "A", "1", "3"];
  const lines = text.split("\r\n");
  const line = 1 + Math.floor(random() * (lines.length - 3));
  switch (Math.floor(random() * 6)) {
    case 0:
      return text.slice(0, at) + pick(chars) + text.slice(at + 1);
    case 1:
      return text.slice(0, at) + pick(chars) + text.slice(at);
    case 2:
      return text.slice(0, at) + text.slice(at + 1);
    case 3:
      lines.splice(line, 0, lines[line]);
      return lines.join("\r\n");
    case 4:
      lines.splice(line, 1);
      return lines.join("\r\n");
    default:
      lines[line] = lines[line].toUpperCase();
      return lines.join("\r\n");
  }
}

Deno.test("scanRequestHead + headOf parse random edits of heads as the reference parser did", () => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const bases = [
    VALID,
    "GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "POST /x HTTP/1.0\r\nA: b\r\nContent-Length: 3\r\n\r\n",
  ];
  const outcomes = new Set<string>();
  for (let i = 0; i < 30_000; i++) {
    let text = bases[i % bases.length];
    const edits = 1 + Math.floor(random() * 3);
    for (let e = 0; e < edits; e++) text = mutate(text, random);
    const parsed = parseRequestText(text);
    assert.deepEqual(parsed, referenceParse(text), JSON.stringify(text));
    outcomes.add(isRejection(parsed) ? parsed.message : "head");
  }
  // Every kind of outcome was reached, not only the valid heads.
  for (
    const outcome of [
      "head",
      "incomplete request head",
      "malformed request line",
      "malformed header line",
      "malformed header name",
      "invalid header value",
    ]
  ) assert.ok(outcomes.has(outcome), outcome);
});

Deno.test("upgradeOf accepts exactly what the general path accepts, with the same values", () => {
  let seed = 12;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const bases = [
    VALID,
    "GET / HTTP/1.1\r\nhost: a\r\nupgrade: WebSocket\r\nconnection: upgrade\r\n" +
    "sec-websocket-version: 13\r\nsec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n",
  ];
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) {
    let text = bases[i % bases.length];
    const edits = 1 + Math.floor(random() * 3);
    for (let e = 0; e < edits; e++) text = mutate(text, random);
    const fast = inPlaceUpgrade(text);
    const general = generalUpgrade(text);
    // Null from upgradeOf is always allowed (the general path decides);
    // today it is null exactly when the general path refuses.
    assert.deepEqual(fast, general, JSON.stringify(text));
    if (fast !== null) accepted++;
  }
  assert.ok(accepted > 1000, `only ${accepted} mutated heads were still valid`);
  assert.deepEqual(inPlaceUpgrade(VALID), generalUpgrade(VALID));
});

Deno.test("upgradeOf leaves duplicate, conflicting or body-carrying upgrades to the general path", () => {
  const base = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  const cases: [string, number | null][] = [
    [base + "\r\n", null],
    [base + "Host: a\r\n\r\n", 400],
    [base + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 400],
    [base + "Sec-WebSocket-Version: 13\r\n\r\n", 426],
    [base + "Content-Length: 0\r\n\r\n", null],
    [base + "Transfer-Encoding: chunked\r\n\r\n", 400],
    [base.replace("Version: 13", "Version: 8") + "\r\n", 426],
    [base.replace("GET", "POST") + "\r\n", 405],
    [base.replace("HTTP/1.1", "HTTP/1.0") + "\r\n", 400],
    [base.replace("Host: a", "Host: a/b") + "\r\n", 400],
    [base.replace("Connection: Upgrade", "Connection: keep-alive") + "\r\n", 400],
  ];
  for (const [text, status] of cases) {
    const fields = scanRequestHead(text);
    assert.ok(!isRejection(fields));
    const upgrade = upgradeOf(fields);
    if (status === null && !text.includes("Content-Length")) {
      assert.notEqual(upgrade, null, JSON.stringify(text));
      continue;
    }
    assert.equal(upgrade, null, JSON.stringify(text));
    if (status === null) continue;
    const head = parseRequestText(text) as RequestHead;
    const address = requestAddress(head);
    const refusal = isRejection(address) ? address : checkUpgrade(head, true);
    if (isRejection(refusal)) assert.equal(refusal.status, status, JSON.stringify(text));
    else {
      const framing = requestBodyFraming(
        headerValues(head, "content-length"),
        headerValues(head, "transfer-encoding"),
      );
      // What the session answers: a body of any kind is refused with 400.
      const answer = framing.kind === "none" ? 0 : framing.kind === "error" ? framing.status : 400;
      assert.equal(answer, status);
    }
  }
});
