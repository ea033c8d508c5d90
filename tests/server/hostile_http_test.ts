/**
 * Hostile HTTP before the upgrade (issue 10): heads built to make the parser
 * slow, Host headers and request targets built to change the URL the
 * application sees, control bytes in the target, and the 431 refusal of a
 * head sent fast.
 */

import assert from "node:assert/strict";
import { parseRequestHead } from "../../mod.ts";
import { parseAuthority, requestAddress } from "../../src/protocol/handshake.ts";
import { buildUpgradeRequest, RawClient } from "../helpers/raw_client.ts";
import { delay, startServer } from "../helpers/harness.ts";
import type { Handlers } from "../../mod.ts";

const encoder = new TextEncoder();
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

/** Plain HTTP answered with the URL the application saw; upgrades recorded. */
function urlServer() {
  const urls: string[] = [];
  const handlers: Handlers = {
    fetch: (request) => new Response(request.url),
    upgrade(request) {
      urls.push(request.url);
    },
  };
  return { ...startServer({}, handlers), urls };
}

/** Sends raw `head` bytes and reads the whole response. */
async function exchange(port: number, head: string | Uint8Array) {
  using raw = await RawClient.connect(port);
  await raw.write(typeof head === "string" ? latin1(head) : head);
  // One response: a refusal closes the connection, an answer may keep it.
  return await raw.readResponse();
}

Deno.test("a request target with a NUL or control byte gets 400 from the server", async () => {
  const h = urlServer();
  try {
    for (const target of ["/a\x00b", "/\x01", "/a\x1b[31m", "/\x7f", "/caf\xe9"]) {
      const plain = await exchange(h.port, `GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`);
      assert.equal(plain.status, 400, `plain ${JSON.stringify(target)}: ${plain.text}`);
      const upgrade = await exchange(h.port, buildUpgradeRequest({ path: target }));
      assert.equal(upgrade.status, 400, `upgrade ${JSON.stringify(target)}: ${upgrade.text}`);
    }
    assert.deepEqual(h.urls, [], "no upgrade reached the application");
    assert.equal(h.server.connectionCount, 0);
  } finally {
    await h.server.shutdown();
  }
});

// ---- Host and the request URL ----

Deno.test("parseAuthority: RFC 9110 host[:port], normalized; anything else is null", () => {
  const valid: [string, string][] = [
    ["example.com", "example.com"],
    ["EXAMPLE.com:8080", "example.com:8080"],
    ["127.0.0.1", "127.0.0.1"],
    ["127.0.0.1:80", "127.0.0.1:80"],
    ["[::1]", "[::1]"],
    ["[::1]:9000", "[::1]:9000"],
    ["[2001:DB8::7]:1", "[2001:db8::7]:1"],
    ["[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]"],
    ["x:", "x"],
    ["a-b_c~d.e!$&'()*+,;=", "a-b_c~d.e!$&'()*+,;="],
    ["x:65535", "x:65535"],
  ];
  for (const [value, expected] of valid) assert.equal(parseAuthority(value), expected, value);
  const invalid = [
    "",
    ":80",
    "x/health?",
    "x/ws?",
    "x?y",
    "x#y",
    "user@x",
    "x\\y",
    "x y",
    "x%2fy",
    "x:99999",
    "x:123456",
    "x:8a",
    "x:80:80",
    "[::1",
    "[zz::1]",
    "[::1]x",
    "[::1]:x",
    "[]",
    "[v1.abc]",
    "[fe80::1%25eth0]",
    "::1",
    "caf\xe9",
  ];
  for (const value of invalid) assert.equal(parseAuthority(value), null, JSON.stringify(value));
});

Deno.test("requestAddress: origin-form, absolute-form, Host rules and refused forms", () => {
  const head = (target: string, hosts: string[], version: [number, number] = [1, 1]) => ({
    method: "GET",
    target,
    version,
    headers: hosts.map((host): [string, string] => ["host", host]),
  });
  assert.deepEqual(requestAddress(head("/a?b", ["Example.com:81"])), {
    authority: "example.com:81",
    path: "/a?b",
  });
  // Absolute-form: the target's authority wins over Host (RFC 9112 §3.2.2).
  assert.deepEqual(requestAddress(head("http://h.example/p?q=1", ["other"])), {
    authority: "h.example",
    path: "/p?q=1",
  });
  assert.deepEqual(requestAddress(head("HTTPS://h:8443", ["h"])), {
    authority: "h:8443",
    path: "/",
  });
  assert.deepEqual(requestAddress(head("http://h?x", ["h"])), { authority: "h", path: "/?x" });
  // HTTP/1.0 may omit Host; the caller supplies the authority.
  assert.deepEqual(requestAddress(head("/", [], [1, 0])), { authority: null, path: "/" });
  const refused: [string, ReturnType<typeof head>][] = [
    ["no Host on 1.1", head("/", [])],
    ["two Hosts", head("/", ["a", "a"])],
    ["two Hosts on 1.0", head("/", ["a", "b"], [1, 0])],
    ["Host with a path", head("/", ["x/health?"])],
    ["empty Host", head("/", [""])],
    ["invalid Host beside absolute-form", head("http://h/", ["x/y"])],
    ["asterisk", head("*", ["h"])],
    ["authority-form", head("example.com:443", ["example.com"])],
    ["other scheme", head("ftp://h/", ["h"])],
    ["ws scheme", head("ws://h/", ["h"])],
    ["userinfo", head("http://user@h/", ["h"])],
    ["bad authority", head("http://h:99999/", ["h"])],
    ["empty authority", head("http:///p", ["h"])],
    ["fragment", head("/a#b", ["h"])],
    ["relative path", head("a/b", ["h"])],
  ];
  for (const [what, request] of refused) {
    const result = requestAddress(request);
    assert.ok("status" in result, what);
    assert.equal(result.status, 400, what);
  }
});

Deno.test("a Host header cannot change the path: invalid Host values get 400", async () => {
  const h = urlServer();
  try {
    for (const host of ["x/health?", "x/ws?", "x?", "x#", "u@x", "x:99999", "x\\y", "[::1"]) {
      const plain = await exchange(h.port, `GET /other HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      assert.equal(plain.status, 400, `plain, Host ${host}: ${plain.text}`);
      const upgrade = await exchange(h.port, buildUpgradeRequest({ path: "/other", host }));
      assert.equal(upgrade.status, 400, `upgrade, Host ${host}: ${upgrade.text}`);
    }
    assert.deepEqual(h.urls, []);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("the request URL is built from the validated Host and the target", async () => {
  const h = urlServer();
  try {
    const cases: [string, string][] = [
      ["GET /a?b=1 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n", "http://example.com:8080/a?b=1"],
      ["GET / HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n", "http://[::1]:9000/"],
      ["GET //x/y HTTP/1.1\r\nHost: h\r\n\r\n", "http://h//x/y"],
      // Absolute-form: the target's authority, not Host; the connection's scheme.
      ["GET https://t.example/p?q HTTP/1.1\r\nHost: h\r\n\r\n", "http://t.example/p?q"],
      // HTTP/1.0 without Host: the address the request arrived on.
      ["GET /old HTTP/1.0\r\n\r\n", `http://127.0.0.1:${h.port}/old`],
    ];
    for (const [head, url] of cases) {
      const response = await exchange(h.port, head);
      assert.equal(response.status, 200, JSON.stringify(head));
      assert.equal(response.text, url);
    }
    // An upgrade in absolute-form: the hook and the socket see the same URL.
    let socketUrl = "";
    const u = startServer({}, { open: (socket) => void (socketUrl = socket.url) });
    try {
      using raw = await RawClient.connect(u.port);
      const request = buildUpgradeRequest({ path: "http://t.example:81/chat?x=1" });
      await raw.handshake({ path: "http://t.example:81/chat?x=1" }).catch((error) => {
        throw new Error(`${request}: ${error}`);
      });
      await raw.write(new Uint8Array([0x88, 0x80, 0, 0, 0, 0])); // close, masked, empty
      await raw.readToEnd();
      assert.equal(socketUrl, "ws://t.example:81/chat?x=1");
    } finally {
      await u.server.shutdown();
    }
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a missing Host on HTTP/1.1 is 400 for plain HTTP too", async () => {
  const h = urlServer();
  try {
    const response = await exchange(h.port, "GET /health HTTP/1.1\r\n\r\n");
    assert.equal(response.status, 400);
    const repeated = await exchange(h.port, "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n");
    assert.equal(repeated.status, 400);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("asterisk, authority-form and other schemes: OPTIONS * gets 204, the rest 400", async () => {
  const h = urlServer();
  try {
    const options = await exchange(h.port, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal(options.status, 204);
    assert.equal(options.headers.get("content-length"), null);
    assert.equal(options.body.length, 0);
    for (
      const head of [
        "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
      ]
    ) {
      const response = await exchange(h.port, head);
      assert.equal(response.status, 400, `${JSON.stringify(head)}: ${response.text}`);
    }
  } finally {
    await h.server.shutdown();
  }
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

// ---- 431 for a head sent fast ----

Deno.test("a large head sent fast gets 431 and a clean end, not a reset", async () => {
  const h = startServer();
  try {
    using raw = await RawClient.connect(h.port);
    // 512 KiB of header sent as fast as the socket takes it, read concurrently.
    const head = encoder.encode(`GET / HTTP/1.1\r\nHost: a\r\nX: ${"a".repeat(512 * 1024)}`);
    const writing = raw.write(head);
    const response = await raw.readHttpResponse();
    assert.equal(response.status, 431);
    assert.equal(raw.ended, "eof");
    await writing;
    // The server is still discarding what the client sends (bounded), so a
    // client that finishes its request and then reads is not reset: had the
    // server closed with unread bytes, this write would fail.
    await delay(100);
    await raw.write(encoder.encode("\r\n\r\n"));
    await raw.conn.closeWrite();
  } finally {
    await h.server.shutdown();
  }
});
