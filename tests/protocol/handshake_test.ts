/**
 * The opening handshake as pure functions (RFC 6455 §4.2): request head
 * parsing, upgrade validation with the status each refusal gets, the accept
 * key, the responses, and finding the end of a head in a growing buffer.
 */

import assert from "node:assert/strict";
import {
  acceptKey,
  checkUpgrade,
  encodeRejection,
  encodeSwitchingProtocols,
  findHeadEnd,
  type HandshakeRejection,
  isRejection,
  isUpgradeRequest,
  parseRequestHead,
  requestAddress,
  type RequestHead,
  type UpgradeRequest,
  validateUpgrade,
} from "../../src/protocol/handshake.ts";
import { concat, utf8 } from "../helpers/frames.ts";

const RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

type Header = [string, string];

/** The headers of a valid upgrade request, as a browser would send them. */
function validHeaders(): Header[] {
  return [
    ["Host", "example.com"],
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", RFC_KEY],
    ["Sec-WebSocket-Version", "13"],
  ];
}

/** `validHeaders()` with header `name` given `values` instead (none: removed, several: repeated). */
function withHeader(name: string, ...values: string[]): Header[] {
  const headers = validHeaders().filter(([key]) => key.toLowerCase() !== name.toLowerCase());
  return [...headers, ...values.map((value): Header => [name, value])];
}

/** The bytes of a request head. */
function headBytes(requestLine: string, headers: Header[]): Uint8Array {
  return utf8(`${requestLine}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`);
}

/** Parses a head that must be well-formed. */
function parse(bytes: Uint8Array): RequestHead {
  const head = parseRequestHead(bytes);
  if (isRejection(head)) assert.fail(`unexpected rejection: ${head.status} ${head.message}`);
  return head;
}

/** Parses and validates a request from its request line and headers. */
function upgrade(
  headers: Header[],
  requestLine = "GET /chat HTTP/1.1",
): UpgradeRequest | HandshakeRejection {
  return validateUpgrade(parse(headBytes(requestLine, headers)));
}

function assertRejected(
  result: UpgradeRequest | HandshakeRejection | RequestHead,
  status: number,
  what: string,
): HandshakeRejection {
  assert.ok(isRejection(result), `${what}: expected ${status}, got ${JSON.stringify(result)}`);
  assert.equal(result.status, status, `${what}: ${result.message}`);
  return result;
}

function assertAccepted(result: UpgradeRequest | HandshakeRejection, what: string): UpgradeRequest {
  if (isRejection(result)) assert.fail(`${what}: rejected ${result.status} ${result.message}`);
  return result;
}

/** A response split into status line, lower-cased headers (in order) and body. */
interface Response {
  statusLine: string;
  headers: Header[];
  body: string;
}

function parseResponse(bytes: Uint8Array): Response {
  const text = new TextDecoder().decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  assert.ok(end >= 0, "response head is terminated by CRLF CRLF");
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const headers = lines.map((line): Header => {
    const colon = line.indexOf(":");
    assert.ok(colon > 0, `header line ${JSON.stringify(line)}`);
    return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
  });
  return { statusLine, headers, body: text.slice(end + 4) };
}

function values(response: Response, name: string): string[] {
  return response.headers.filter(([key]) => key === name).map(([, value]) => value);
}

/** Reference accept key through WebCrypto, independent of the library's node:crypto path. */
async function referenceAccept(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    utf8(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

Deno.test("acceptKey: the RFC 6455 example key", () => {
  assert.equal(acceptKey(RFC_KEY), RFC_ACCEPT);
});

Deno.test("acceptKey: matches SHA-1 via WebCrypto for random keys", async () => {
  for (let i = 0; i < 20; i++) {
    const key = base64(crypto.getRandomValues(new Uint8Array(16)));
    assert.equal(acceptKey(key), await referenceAccept(key), key);
  }
});

Deno.test("acceptKey: the JavaScript SHA-1 matches WebCrypto at every input length", async () => {
  // One and two blocks, both sides of each padding boundary, and the
  // non-ASCII and overlong keys that fall back to node:crypto.
  for (let length = 0; length <= 140; length++) {
    let key = "";
    for (let i = 0; i < length; i++) key += String.fromCharCode(0x20 + ((i * 37 + length) % 95));
    assert.equal(acceptKey(key), await referenceAccept(key), `length ${length}`);
  }
  assert.equal(acceptKey("clé"), await referenceAccept("clé"));
});

Deno.test("encodeSwitchingProtocols: the plain 101 is byte for byte the general one", () => {
  const plain = new TextDecoder().decode(encodeSwitchingProtocols(RFC_KEY));
  assert.equal(
    plain,
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${RFC_ACCEPT}\r\n\r\n`,
  );
  const general = new TextDecoder().decode(
    encodeSwitchingProtocols(RFC_KEY, { headers: [["X-A", "1"]] }),
  );
  assert.equal(general, plain.slice(0, -2) + "X-A: 1\r\n\r\n");
});

Deno.test("parseRequestHead: request line and headers", () => {
  const head = parse(utf8(
    "GET /chat?room=1 HTTP/1.1\r\n" +
      "Host: example.com:8080\r\n" +
      "X-Spaces:   padded value \t\r\n" +
      "X-Empty:\r\n" +
      "x-dup: one\r\n" +
      "X-DUP: two\r\n" +
      "\r\n",
  ));
  assert.deepEqual(head, {
    method: "GET",
    target: "/chat?room=1",
    version: [1, 1],
    headers: [
      ["host", "example.com:8080"],
      ["x-spaces", "padded value"],
      ["x-empty", ""],
      ["x-dup", "one"],
      ["x-dup", "two"],
    ],
  });
});

Deno.test("parseRequestHead: non-ASCII value bytes are kept byte for byte (latin1)", () => {
  const head = parse(concat(
    utf8("GET / HTTP/1.1\r\nX-Name: "),
    Uint8Array.of(0xa0, 0xe9, 0xff, 0xa0),
    utf8(" \t\r\n\r\n"),
  ));
  // 0xA0 is a value byte like any other, not whitespace to trim.
  assert.deepEqual(head.headers, [["x-name", "\u00a0\u00e9\u00ff\u00a0"]]);
});

Deno.test("parseRequestHead: other methods and versions are parsed, not judged", () => {
  const head = parse(utf8("POST * HTTP/1.0\r\n\r\n"));
  assert.deepEqual(head, { method: "POST", target: "*", version: [1, 0], headers: [] });
});

Deno.test("parseRequestHead: malformed request lines are 400", () => {
  const lines = [
    "",
    "GET /",
    "GET / HTTP/1.1 extra",
    "GET  / HTTP/1.1",
    " GET / HTTP/1.1",
    "GET / HTTP/1.1 ",
    "GET / HTTP/11",
    "GET / HTTP/1",
    "GET / http/1.1",
    "GET / HTTPS/1.1",
    "G(T / HTTP/1.1",
    "GET\t/ HTTP/1.1",
    "GET / HTTP/1.1\r",
  ];
  for (const line of lines) {
    assertRejected(parseRequestHead(headBytes(line, validHeaders())), 400, JSON.stringify(line));
  }
});

Deno.test("parseRequestHead: malformed header lines are 400", () => {
  const lines = [
    "NoColon",
    ": no name",
    "Bad Name: value",
    "Host : example.com",
    " Folded: value",
    "\tcontinued",
    "X-Ctl: a\x00b",
    "X-Ctl: a\x1bb",
    "X-Ctl: \x0bvalue", // only SP and HTAB may surround a value
    "X-Ctl: value\x0c",
    "X-CR: a\rb",
    "X-LF: a\nInjected: yes",
    "X-Del\x7f: v",
    "X(Paren): v",
  ];
  for (const line of lines) {
    const bytes = utf8(`GET / HTTP/1.1\r\nHost: a\r\n${line}\r\n\r\n`);
    assertRejected(parseRequestHead(bytes), 400, JSON.stringify(line));
  }
});

Deno.test("validateUpgrade: a valid request yields its key, protocols and extensions", () => {
  assert.deepEqual(upgrade(validHeaders()), { key: RFC_KEY, protocols: [], extensions: [] });
  const result = upgrade([
    ...validHeaders(),
    ["Sec-WebSocket-Protocol", "chat, superchat"],
    ["Sec-WebSocket-Protocol", " v2.json ,,"],
    ["Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-webkit-foo"],
  ]);
  assert.deepEqual(result, {
    key: RFC_KEY,
    protocols: ["chat", "superchat", "v2.json"],
    extensions: ["permessage-deflate; client_max_window_bits", "x-webkit-foo"],
  });
});

Deno.test("validateUpgrade: a method other than GET is 405 with Allow: GET", () => {
  for (const method of ["POST", "PUT", "HEAD", "get", "CONNECT"]) {
    const rejection = assertRejected(
      upgrade(validHeaders(), `${method} /chat HTTP/1.1`),
      405,
      method,
    );
    const response = parseResponse(encodeRejection(rejection));
    assert.equal(response.statusLine, "HTTP/1.1 405 Method Not Allowed");
    assert.deepEqual(values(response, "allow"), ["GET"]);
  }
});

Deno.test("validateUpgrade: HTTP older than 1.1 is 400", () => {
  for (const version of ["1.0", "0.9"]) {
    assertRejected(upgrade(validHeaders(), `GET /chat HTTP/${version}`), 400, version);
  }
});

Deno.test("validateUpgrade: a missing or repeated Host is 400", () => {
  assertRejected(upgrade(withHeader("Host")), 400, "no Host");
  assertRejected(upgrade(withHeader("Host", "a.example", "b.example")), 400, "two Hosts");
  assertRejected(upgrade(withHeader("Host", "a.example", "a.example")), 400, "same Host twice");
});

Deno.test("validateUpgrade: Connection must list the Upgrade token", () => {
  for (const values of [[], ["keep-alive"], ["Upgrades"], ["close, keep-alive"], ["websocket"]]) {
    assertRejected(upgrade(withHeader("Connection", ...values)), 400, JSON.stringify(values));
  }
  for (
    const values of [
      ["upgrade"],
      ["UPGRADE"],
      ["keep-alive, Upgrade"],
      ["keep-alive,upgrade"],
      ["Upgrade , keep-alive"],
      ["keep-alive", "Upgrade"],
    ]
  ) {
    assertAccepted(upgrade(withHeader("Connection", ...values)), JSON.stringify(values));
  }
});

Deno.test("isUpgradeRequest: Upgrade must list websocket, case-insensitively", () => {
  const check = (...values: string[]) =>
    isUpgradeRequest(parse(headBytes("GET / HTTP/1.1", withHeader("Upgrade", ...values))));
  assert.equal(check("websocket"), true);
  assert.equal(check("WebSocket"), true);
  assert.equal(check("h2c, websocket"), true);
  assert.equal(check("h2c", "WEBSOCKET"), true);
  assert.equal(check(), false);
  assert.equal(check("h2c"), false);
  assert.equal(check("websockets"), false);
  assert.equal(check("web socket"), false);
});

Deno.test("validateUpgrade: a key that is not 16 bytes in base64 is 400", () => {
  const keys = [
    "",
    "dGhlIHNhbXBsZSBub25jZQ", // padding missing
    "dGhlIHNhbXBsZSBub25jZQ=", // half the padding
    "dGhlIHNhbXBsZSBub25jZQ===",
    "dGhlIHNhbXBsZSBub25jZ!==", // not base64
    "dGhlIHNhbXBsZS Bub25jZQ==",
    "dGhlIHNhbXBsZSBub25jZQ==dGhl",
    base64(new Uint8Array(15)),
    base64(new Uint8Array(17)),
    base64(new Uint8Array(32)),
  ];
  for (const key of keys) {
    assertRejected(upgrade(withHeader("Sec-WebSocket-Key", key)), 400, JSON.stringify(key));
  }
  assertRejected(upgrade(withHeader("Sec-WebSocket-Key")), 400, "no key");
  assertRejected(
    upgrade(withHeader("Sec-WebSocket-Key", RFC_KEY, base64(new Uint8Array(16)))),
    400,
    "two keys",
  );
});

Deno.test("validateUpgrade: any 16-byte key is accepted", () => {
  const samples = [new Uint8Array(16), new Uint8Array(16).fill(0xff)];
  for (let i = 0; i < 20; i++) samples.push(crypto.getRandomValues(new Uint8Array(16)));
  for (const bytes of samples) {
    const key = base64(bytes);
    assert.equal(assertAccepted(upgrade(withHeader("Sec-WebSocket-Key", key)), key).key, key);
  }
});

Deno.test("validateUpgrade: a version other than 13 is 426 with Sec-WebSocket-Version: 13", () => {
  for (const versions of [["8"], [], ["13, 8"], ["12"], ["14"], ["13", "8"], ["thirteen"]]) {
    const what = JSON.stringify(versions);
    const rejection = assertRejected(
      upgrade(withHeader("Sec-WebSocket-Version", ...versions)),
      426,
      what,
    );
    const response = parseResponse(encodeRejection(rejection));
    assert.equal(response.statusLine, "HTTP/1.1 426 Upgrade Required", what);
    assert.deepEqual(values(response, "sec-websocket-version"), ["13"], what);
  }
  assertAccepted(upgrade(withHeader("Sec-WebSocket-Version", " 13 ")), "padded 13");
});

Deno.test("encodeSwitchingProtocols: the RFC 6455 example response", () => {
  const response = parseResponse(encodeSwitchingProtocols(RFC_KEY));
  assert.equal(response.statusLine, "HTTP/1.1 101 Switching Protocols");
  assert.equal(response.body, "");
  assert.deepEqual(
    new Map(response.headers),
    new Map([
      ["upgrade", "websocket"],
      ["connection", "Upgrade"],
      ["sec-websocket-accept", RFC_ACCEPT],
    ]),
  );
  assert.equal(response.headers.length, 3, "no other headers");
});

Deno.test("encodeSwitchingProtocols: subprotocol, extensions and extra headers", () => {
  const response = parseResponse(encodeSwitchingProtocols(RFC_KEY, {
    protocol: "chat",
    extensions: "permessage-deflate; server_no_context_takeover",
    headers: [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"], ["X-Server", "tsunagu"]],
  }));
  assert.equal(response.statusLine, "HTTP/1.1 101 Switching Protocols");
  assert.deepEqual(values(response, "sec-websocket-accept"), [RFC_ACCEPT]);
  assert.deepEqual(values(response, "sec-websocket-protocol"), ["chat"]);
  assert.deepEqual(values(response, "sec-websocket-extensions"), [
    "permessage-deflate; server_no_context_takeover",
  ]);
  assert.deepEqual(values(response, "set-cookie"), ["a=1", "b=2"]);
  assert.deepEqual(values(response, "x-server"), ["tsunagu"]);
  const none = parseResponse(encodeSwitchingProtocols(RFC_KEY, { protocol: "", extensions: "" }));
  assert.deepEqual(values(none, "sec-websocket-protocol"), []);
  assert.deepEqual(values(none, "sec-websocket-extensions"), []);
});

Deno.test("encodeSwitchingProtocols: a line break in any header throws instead of injecting", () => {
  const evil = ["a\r\nX-Injected: yes", "a\nX-Injected: yes", "a\rX-Injected: yes"];
  for (const value of evil) {
    assert.throws(
      () => encodeSwitchingProtocols(RFC_KEY, { headers: [["X-Ok", value]] }),
      TypeError,
    );
    assert.throws(() => encodeSwitchingProtocols(RFC_KEY, { headers: [[value, "v"]] }), TypeError);
    assert.throws(() => encodeSwitchingProtocols(RFC_KEY, { protocol: value }), TypeError);
    assert.throws(() => encodeSwitchingProtocols(RFC_KEY, { extensions: value }), TypeError);
  }
});

Deno.test("encodeRejection: status line, plain-text body and its exact length", () => {
  for (
    const [status, line] of [
      [400, "HTTP/1.1 400 Bad Request"],
      [403, "HTTP/1.1 403 Forbidden"],
      [431, "HTTP/1.1 431 Request Header Fields Too Large"],
      [503, "HTTP/1.1 503 Service Unavailable"],
    ] as const
  ) {
    const message = "bad key: キー";
    const response = parseResponse(encodeRejection({ status, message }));
    assert.equal(response.statusLine, line);
    assert.equal(response.body, message + "\n");
    assert.deepEqual(values(response, "content-length"), [String(utf8(message + "\n").length)]);
    assert.deepEqual(values(response, "content-type"), ["text/plain; charset=utf-8"]);
    assert.deepEqual(values(response, "connection"), ["close"]);
  }
});

Deno.test("encodeRejection: framing headers from the rejection cannot override its own", () => {
  const response = parseResponse(encodeRejection({
    status: 400,
    message: "no",
    headers: [["Content-Length", "999"], ["Connection", "keep-alive"], [
      "Transfer-Encoding",
      "chunked",
    ], ["X-Reason", "test"]],
  }));
  assert.deepEqual(values(response, "content-length"), ["3"]);
  assert.deepEqual(values(response, "connection"), ["close"]);
  assert.deepEqual(values(response, "transfer-encoding"), []);
  assert.deepEqual(values(response, "x-reason"), ["test"]);
});

Deno.test("encodeRejection: a line break in a header throws instead of injecting", () => {
  assert.throws(
    () =>
      encodeRejection({ status: 400, message: "x", headers: [["X-A", "v\r\nSet-Cookie: s=1"]] }),
    TypeError,
  );
  assert.throws(
    () => encodeRejection({ status: 400, message: "x", headers: [["X-A\nB", "v"]] }),
    TypeError,
  );
});

const HEAD = utf8("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
const HEAD_WITH_BODY = concat(HEAD, utf8("frame\r\n\r\nbytes"));

Deno.test("findHeadEnd: the index just after the first CRLF CRLF", () => {
  assert.equal(findHeadEnd(HEAD_WITH_BODY, 0, HEAD_WITH_BODY.length), HEAD.length);
  assert.equal(findHeadEnd(HEAD, 0, HEAD.length), HEAD.length);
  assert.equal(findHeadEnd(utf8("\r\n\r\n"), 0, 4), 4);
  assert.equal(findHeadEnd(utf8("a\r\r\n\r\n"), 0, 6), 6);
  assert.equal(findHeadEnd(utf8("a\r\n\r\r\n\r\nb"), 0, 9), 8);
});

Deno.test("findHeadEnd: no terminator, or only LF-only or partial ones", () => {
  for (
    const text of ["", "GET / HTTP/1.1\r\n", "a\n\n", "a\r\n\n", "a\n\r\n", "a\r\n\r", "a\r\r\n\n"]
  ) {
    const bytes = utf8(text);
    assert.equal(findHeadEnd(bytes, 0, bytes.length), -1, JSON.stringify(text));
  }
});

Deno.test("findHeadEnd: honours from and to", () => {
  const start = HEAD.length - 4;
  assert.equal(findHeadEnd(HEAD_WITH_BODY, start, HEAD_WITH_BODY.length), HEAD.length);
  // Starting past the terminator's first byte finds the next one, in the body.
  assert.equal(findHeadEnd(HEAD_WITH_BODY, start + 1, HEAD_WITH_BODY.length), HEAD.length + 9);
  assert.equal(findHeadEnd(HEAD_WITH_BODY, 0, HEAD.length - 1), -1);
  assert.equal(findHeadEnd(HEAD_WITH_BODY, -5, HEAD.length), HEAD.length);
});

Deno.test("findHeadEnd: found at every split of a head across two reads", () => {
  for (let cut = 0; cut <= HEAD_WITH_BODY.length; cut++) {
    const first = findHeadEnd(HEAD_WITH_BODY, 0, cut);
    assert.equal(first, cut >= HEAD.length ? HEAD.length : -1, `first read of ${cut} bytes`);
    if (first >= 0) continue;
    // Resume the way a reader does: back up 3 bytes in case the terminator straddles the cut.
    const resumed = findHeadEnd(HEAD_WITH_BODY, Math.max(cut - 3, 0), HEAD_WITH_BODY.length);
    assert.equal(resumed, HEAD.length, `resumed after ${cut} bytes`);
  }
});

Deno.test("findHeadEnd: found exactly when its last byte arrives, one byte per read", () => {
  let scanned = 0;
  for (let filled = 1; filled <= HEAD_WITH_BODY.length; filled++) {
    const end = findHeadEnd(HEAD_WITH_BODY, Math.max(scanned - 3, 0), filled);
    if (filled < HEAD.length) {
      assert.equal(end, -1, `${filled} bytes`);
      scanned = filled;
    } else {
      assert.equal(end, HEAD.length, `${filled} bytes`);
      break;
    }
  }
});

Deno.test("checkUpgrade after requestAddress answers as validateUpgrade does", () => {
  const base = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  const heads = [
    `GET / HTTP/1.1\r\nHost: a\r\n${base}\r\n`,
    `GET / HTTP/1.0\r\nHost: a\r\n${base}\r\n`,
    `GET / HTTP/1.0\r\n${base}\r\n`,
    `POST / HTTP/1.1\r\nHost: a\r\n${base}\r\n`,
    `GET / HTTP/1.1\r\nHost: a\r\n${base}Sec-WebSocket-Protocol: a, b,,c\r\n\r\n`,
    `GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n${base}\r\n`,
    `GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: x\r\n\r\n`,
    `GET / HTTP/1.1\r\nHost: a\r\n${base}Sec-WebSocket-Version: 8\r\n\r\n`,
    `GET / HTTP/1.1\r\nHost: a\r\n${base.replace("dGhl", "dGh")}\r\n`,
  ];
  for (const text of heads) {
    const head = parse(utf8(text));
    if (isRejection(requestAddress(head))) continue;
    assert.deepEqual(checkUpgrade(head, true), validateUpgrade(head), text);
  }
  const accepted = checkUpgrade(parse(utf8(heads[0])), true);
  // What reaches the application is its own to change.
  if (!isRejection(accepted)) accepted.protocols.push("x");
});
