/**
 * The in-place check of the usual plain request (`usualRequestOf`, which
 * every keep-alive GET and HEAD takes) against the general path (`headOf`
 * → `plainRequestKeepsAlive` → `requestAddress`) it stands in for. The
 * fast path may decline anything (the general path then answers), but when
 * it accepts, the general path must accept the request as a plain one with
 * the same method, target, Host, version and keep-alive answer. Hand-made
 * heads for the cases single edits rarely reach, then every single-character
 * edit of a few real heads and random heads made of pieces.
 */

import assert from "node:assert/strict";
import {
  headOf,
  isRejection,
  requestAddress,
  scanRequestHead,
  usualRequestOf,
} from "../../src/protocol/handshake.ts";
import { plainRequestKeepsAlive } from "../../src/protocol/http1_request.ts";

interface Seen {
  method: string;
  target: string;
  authority: string | null;
  minor: number;
  keepsAlive: boolean;
}

/** What the general path makes of a head: a plain request's parts, or why not. */
function general(text: string): Seen | string {
  const fields = scanRequestHead(text);
  if (isRejection(fields)) return `refused ${fields.status}`;
  const head = headOf(fields);
  if (head.version[0] !== 1 || head.target === "*") return "not 1.x origin";
  const keepsAlive = plainRequestKeepsAlive(head);
  if (keepsAlive === null) return "body, expectation or upgrade";
  const address = requestAddress(head);
  if (isRejection(address)) return `refused ${address.status}`;
  return {
    method: head.method,
    target: address.path,
    authority: address.authority,
    minor: head.version[1],
    keepsAlive,
  };
}

/** What the fast path makes of it: the same parts, or null when it declines. */
function fast(text: string): Seen | null {
  const fields = scanRequestHead(text);
  if (isRejection(fields)) return null;
  const usual = usualRequestOf(fields);
  if (usual === null) return null;
  const { method, target, authority, minor, keepsAlive } = usual;
  return { method, target, authority, minor, keepsAlive };
}

const lines = (requestLine: string, ...fields: string[]) =>
  requestLine + "\r\n" + fields.map((field) => field + "\r\n").join("") + "\r\n";

const WRK = lines("GET /small HTTP/1.1", "Host: 127.0.0.1:8080");
const CHROMIUM = lines(
  "GET /assets/app.js?v=3 HTTP/1.1",
  "Host: localhost:8080",
  "Connection: keep-alive",
  'sec-ch-ua: "Chromium";v="131"',
  "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
  "Accept: */*",
  "Referer: http://localhost:8080/",
  "Accept-Encoding: gzip, deflate, br, zstd",
  "Accept-Language: en-US,en;q=0.9",
);
const HTTP10 = lines("GET / HTTP/1.0", "Host: example.com", "Connection: Keep-Alive");

const CASES: string[] = [
  WRK,
  CHROMIUM,
  HTTP10,
  lines("HEAD /a HTTP/1.1", "Host: example.com"),
  lines("GET / HTTP/1.0", "Host: example.com"),
  lines("GET / HTTP/1.0"),
  lines("GET / HTTP/1.1"),
  lines("GET / HTTP/1.9", "Host: example.com"),
  lines("GET / HTTP/2.0", "Host: example.com"),
  lines("GET / HTTP/0.9", "Host: example.com"),
  lines("get / HTTP/1.1", "Host: example.com"),
  lines("GETS / HTTP/1.1", "Host: example.com"),
  lines("HEADS / HTTP/1.1", "Host: example.com"),
  lines("POST / HTTP/1.1", "Host: example.com"),
  lines("DELETE /x HTTP/1.1", "Host: example.com"),
  lines("OPTIONS * HTTP/1.1", "Host: example.com"),
  lines("GET * HTTP/1.1", "Host: example.com"),
  lines("GET http://example.com/a HTTP/1.1", "Host: example.com"),
  lines("GET example.com:80 HTTP/1.1", "Host: example.com"),
  lines("GET /a#b HTTP/1.1", "Host: example.com"),
  lines("GET /a?#b HTTP/1.1", "Host: example.com"),
  lines("GET //x HTTP/1.1", "Host: example.com"),
  lines("GET /\x80 HTTP/1.1", "Host: example.com"),
  lines("GET /a/../b HTTP/1.1", "Host: example.com"),
  lines("GET /? HTTP/1.1", "Host: example.com"),
  lines("GET / HTTP/1.1", "Host: example.com", "Host: example.com"),
  lines("GET / HTTP/1.1", "Host: example.com", "host: other"),
  lines("GET / HTTP/1.1", "Host: "),
  lines("GET / HTTP/1.1", "Host: exa mple.com"),
  lines("GET / HTTP/1.1", "Host: exa\xa0mple.com"),
  lines("GET / HTTP/1.1", "Host: \xa0example.com"),
  lines("GET / HTTP/1.1", "Host: EXAMPLE.com:80"),
  lines("GET / HTTP/1.1", "Host: example.com:"),
  lines("GET / HTTP/1.1", "Host: example.com:65536"),
  lines("GET / HTTP/1.1", "Host: [::1]:99"),
  lines("GET / HTTP/1.1", "Host: [::1"),
  lines("GET / HTTP/1.1", "Host: x/health?"),
  lines("GET / HTTP/1.1", "Host: user@example.com"),
  lines("GET / HTTP/1.1", "Host: %65xample.com"),
  lines("GET / HTTP/1.1", "Hostx: example.com"),
  lines("GET / HTTP/1.1", "Hos: example.com"),
  lines("GET / HTTP/1.1", "HOST: example.com"),
  lines("GET / HTTP/1.1", "Host:example.com"),
  lines("GET / HTTP/1.1", "Host:\texample.com\t"),
  lines("GET / HTTP/1.1", "Host: example.com", "Content-Length: 0"),
  lines("GET / HTTP/1.1", "Host: example.com", "content-length: 5"),
  lines("GET / HTTP/1.1", "Host: example.com", "Transfer-Encoding: chunked"),
  lines("GET / HTTP/1.1", "Host: example.com", "TRANSFER-ENCODING:"),
  lines("GET / HTTP/1.1", "Host: example.com", "Expect: 100-continue"),
  lines("GET / HTTP/1.1", "Host: example.com", "Upgrade: websocket"),
  lines("GET / HTTP/1.1", "Host: example.com", "Upgrade:"),
  lines("GET / HTTP/1.1", "Host: example.com", "Content-Lengthx: 5"),
  lines("GET / HTTP/1.1", "Host: example.com", "Expects: x"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection: close"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection: CLOSE"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection: keep-alive, close"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection: keep-alive", "Connection: close"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection: \xa0close\xa0"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection: close\xff"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection: clo se"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection: closed"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection: , ,close,"),
  lines("GET / HTTP/1.1", "Host: example.com", "Connection:"),
  lines("GET / HTTP/1.0", "Host: example.com", "Connection: keep-alive, close"),
  lines("GET / HTTP/1.0", "Host: example.com", "Connection: \tKEEP-ALIVE\t"),
  lines("GET / HTTP/1.0", "Host: example.com", "Connection: keepalive"),
  lines("GET / HTTP/1.0", "Host: example.com", "Connection: x", "Connection: keep-alive"),
  lines("GET / HTTP/1.0", "Host: example.com", "Connectionx: keep-alive"),
  lines("GET / HTTP/1.1", "Host: example.com", "X-\xe9: 1"),
  lines("GET / HTTP/1.1", "Host: example.com", "X: \xe9\xa0"),
];

/** Asserts that the fast path, where it accepts, agrees with the general path. */
function agree(texts: Iterable<string>): number {
  const disagreements: string[] = [];
  let taken = 0;
  for (const text of texts) {
    const quick = fast(text);
    if (quick === null) continue;
    taken++;
    const slow = general(text);
    try {
      assert.deepEqual(quick, slow);
    } catch {
      disagreements.push(
        `${JSON.stringify(text)}\n fast=${JSON.stringify(quick)}\n general=${JSON.stringify(slow)}`,
      );
    }
  }
  assert.deepEqual(disagreements, []);
  return taken;
}

Deno.test("usualRequestOf: never accepts what the general path refuses, and agrees when it accepts", () => {
  const taken = agree(CASES);
  assert.ok(taken >= 20, `the fast path took only ${taken} of ${CASES.length}`);
});

Deno.test("usualRequestOf: takes what keep-alive clients send, with the general path's answers", () => {
  assert.deepEqual(fast(WRK), {
    method: "GET",
    target: "/small",
    authority: "127.0.0.1:8080",
    minor: 1,
    keepsAlive: true,
  });
  assert.deepEqual(fast(CHROMIUM), {
    method: "GET",
    target: "/assets/app.js?v=3",
    authority: "localhost:8080",
    minor: 1,
    keepsAlive: true,
  });
  assert.equal(fast(HTTP10)?.keepsAlive, true, "HTTP/1.0 with keep-alive persists");
  assert.equal(fast(lines("GET / HTTP/1.0", "Host: a"))?.keepsAlive, false, "HTTP/1.0 closes");
  assert.equal(
    fast(lines("GET / HTTP/1.1", "Host: a", "Connection: keep-alive, Close"))?.keepsAlive,
    false,
    "close wins",
  );
  assert.equal(fast(lines("HEAD / HTTP/1.1", "Host: a"))?.method, "HEAD");
  assert.equal(fast(lines("GET / HTTP/1.1", "HOST: EXAMPLE.COM:80"))?.authority, "example.com:80");
  // What it leaves to the general path, which answers those (a body to
  // read, an upgrade, a refusal, another method or target form).
  for (
    const text of [
      lines("POST / HTTP/1.1", "Host: a", "Content-Length: 1"),
      lines("GET / HTTP/1.1", "Host: a", "Content-Length: 0"),
      lines("GET / HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: upgrade"),
      lines("GET / HTTP/1.1", "Host: a", "Host: a"),
      lines("GET / HTTP/1.1"),
      lines("GET http://a/ HTTP/1.1", "Host: a"),
      lines("DELETE / HTTP/1.1", "Host: a"),
    ]
  ) {
    assert.equal(fast(text), null, text);
  }
});

Deno.test("usualRequestOf: every single-character edit of real heads, as the general path", () => {
  // Characters that matter to some rule: separators, case, whitespace
  // (NBSP and a latin-1 letter among them), digits, the target's marks.
  const alphabet = " \t\r\n:,/?#*.-@[]%0159AaCcEeHhKkLlPpSsTtxZ\xa0\xe9\x7f\x00";
  const texts: string[] = [];
  for (const base of [WRK, HTTP10, lines("HEAD /a?b HTTP/1.1", "Host: a:1", "Connection: close")]) {
    for (let i = 0; i < base.length; i++) {
      texts.push(base.slice(0, i) + base.slice(i + 1));
      for (const c of alphabet) {
        texts.push(base.slice(0, i) + c + base.slice(i + 1));
        texts.push(base.slice(0, i) + c + base.slice(i));
      }
    }
  }
  const taken = agree(texts);
  assert.ok(taken > 1000, `only ${taken} edits were taken by the fast path`);
});

Deno.test("usualRequestOf: random heads made of pieces, as the general path", () => {
  let seed = 20261203;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const LINES = ["GET / HTTP/1.1", "HEAD /x?y HTTP/1.0", "GET /a#b HTTP/1.1", "GET * HTTP/1.1"];
  const FIELDS = [
    "Host: a",
    "Host: b:8080",
    "host: [::1]",
    "Host: bad/host",
    "Connection: close",
    "Connection: keep-alive",
    "Connection: Keep-Alive, Upgrade",
    "connection:",
    "Content-Length: 0",
    "Transfer-Encoding: chunked",
    "Expect: 100-continue",
    "Upgrade: websocket",
    "X-Other: 1",
    "Hostess: a",
  ];
  const texts: string[] = [];
  for (let n = 0; n < 20_000; n++) {
    const fields: string[] = [];
    const count = Math.floor(random() * 5);
    for (let i = 0; i < count; i++) fields.push(FIELDS[Math.floor(random() * FIELDS.length)]);
    texts.push(lines(LINES[Math.floor(random() * LINES.length)], ...fields));
  }
  const taken = agree(texts);
  assert.ok(taken > 1000, `only ${taken} random heads were taken by the fast path`);
});
