/**
 * Hostile HTTP before the upgrade (issue 10): heads built to make the parser
 * slow, Host headers and request targets built to change the URL the
 * application sees, control bytes in the target, and the 431 refusal of a
 * head sent fast.
 */

import assert from "node:assert/strict";
import { parseRequestHead } from "../../mod.ts";

const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

// ---- linear head parsing ----

const HEAD_SIZE = 16_000;

/** A head of exactly `size` bytes: `prefix`, then `fill` repeated, cut to fit, then `suffix`. */
function headOfSize(prefix: string, fill: string, suffix: string, size = HEAD_SIZE): Uint8Array {
  const room = size - prefix.length - suffix.length;
  const body = fill.repeat(Math.ceil(room / fill.length)).slice(0, room);
  const bytes = latin1(prefix + body + suffix);
  assert.equal(bytes.length, size);
  return bytes;
}

/** A browser-like head padded to HEAD_SIZE with a long Cookie header. */
function normalHead(): Uint8Array {
  const prefix = "GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\n" +
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n" +
    "Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n" +
    "Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n" +
    "Sec-WebSocket-Extensions: permessage-deflate\r\n" +
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: keep-alive, Upgrade\r\n" +
    "Upgrade: websocket\r\nCookie: ";
  return headOfSize(prefix, "session_7f3a=Qk9PTV9CQVNFNjRfVE9LRU4; ", "\r\n\r\n");
}

/** Heads of the same size built to hit the parser's slow paths. */
function hostileHeads(): Record<string, Uint8Array> {
  const start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  return {
    // The head the issue measured: one value of "a", spaces and "b".
    "a, spaces, b": headOfSize(start + "a", " ", "b\r\n\r\n"),
    "a, tabs, b": headOfSize(start + "a", "\t", "b\r\n\r\n"),
    "a, mixed blanks, b": headOfSize(start + "a", " \t", "b\r\n\r\n"),
    "a, blanks, control byte": headOfSize(start + "a", " ", "\x01\r\n\r\n"),
    "only blanks": headOfSize(start, " ", "\r\n\r\n"),
    "many blank-padded headers": headOfSize(
      "GET / HTTP/1.1\r\nHost: a\r\n",
      `X: a${" ".repeat(120)}b\r\n`,
      "\r\n\r\n",
    ),
    "many tiny headers": headOfSize("GET / HTTP/1.1\r\n", "a:b\r\n", "\r\n\r\n"),
    "many colons": headOfSize(start, ":", "\r\n\r\n"),
    "long name, no colon": headOfSize("GET / HTTP/1.1\r\nX", "a", "\r\n\r\n"),
    "long target": headOfSize("GET /", "a", " HTTP/1.1\r\nHost: a\r\n\r\n"),
    "long target, bad version": headOfSize("GET /", "a", " HTTP/1.1x\r\n\r\n"),
    "long target of spaces": headOfSize("GET /", " ", "HTTP/1.1\r\n\r\n"),
    "long method": headOfSize("G", "E", " / HTTP/1.1\r\n\r\n"),
  };
}

/**
 * The best time per parse over a few batches. A batch stops after 20 ms,
 * so a slow (quadratic) parse costs one parse per batch, and the whole
 * measurement stays bounded either way.
 */
function timePerParse(bytes: Uint8Array): number {
  let best = Infinity;
  for (let batch = 0; batch < 5; batch++) {
    let runs = 0;
    const start = performance.now();
    let elapsed = 0;
    do {
      parseRequestHead(bytes);
      runs++;
      elapsed = performance.now() - start;
    } while (elapsed < 20 && runs < 2000);
    best = Math.min(best, elapsed / runs);
  }
  return best;
}

Deno.test("head parsing is linear: no head of the same size costs 10x a normal one", () => {
  const normal = normalHead();
  assert.ok(!("status" in parseRequestHead(normal)), "the normal head parses");
  const heads = hostileHeads();
  // Warm up every path first, so the JIT treats them alike.
  for (const bytes of [normal, ...Object.values(heads)]) parseRequestHead(bytes);
  const baseline = timePerParse(normal);
  const ratios: Record<string, number> = {};
  for (const [name, bytes] of Object.entries(heads)) {
    ratios[name] = Math.round(timePerParse(bytes) / baseline * 10) / 10;
  }
  for (const [name, ratio] of Object.entries(ratios)) {
    assert.ok(ratio < 10, `${name}: ${ratio}x a normal head (all: ${JSON.stringify(ratios)})`);
  }
});

Deno.test("head parsing still trims only SP and HTAB around values", () => {
  const head = parseRequestHead(latin1("GET / HTTP/1.1\r\nX: \t a \t b\t \r\nY:  \t \r\n\r\n"));
  assert.ok(!("status" in head));
  assert.deepEqual(head.headers, [["x", "a \t b"], ["y", ""]]);
});

// ---- control bytes in the request target ----

Deno.test("parseRequestHead: NUL, other control bytes, DEL and non-ASCII in the target are 400", () => {
  for (const target of ["/a\x00b", "/\x01", "/a\x1b[31m", "/\x7f", "/caf\xe9", "/\x85"]) {
    const result = parseRequestHead(latin1(`GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`));
    assert.ok("status" in result, JSON.stringify(target));
    assert.equal(result.status, 400, JSON.stringify(target));
  }
  // Every visible ASCII character is still accepted by the parser.
  const visible = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i))
    .join("");
  const head = parseRequestHead(latin1(`GET /${visible} HTTP/1.1\r\nHost: a\r\n\r\n`));
  assert.ok(!("status" in head));
  assert.equal(head.target, `/${visible}`);
});

Deno.test("more than 100 header fields get 431; 100 are accepted", () => {
  const head = (count: number) => latin1(`GET / HTTP/1.1\r\n${"X-F: v\r\n".repeat(count)}\r\n`);
  const ok = parseRequestHead(head(100));
  assert.ok(!("status" in ok));
  assert.equal(ok.headers.length, 100);
  const refused = parseRequestHead(head(101));
  assert.ok("status" in refused);
  assert.equal(refused.status, 431);
});
