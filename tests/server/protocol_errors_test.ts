/**
 * Protocol errors over real sockets: a raw TCP client sends malformed
 * handshakes and frames, and each test asserts the exact HTTP status or close
 * code the server answers, that the server then closes TCP, that the bad
 * frame is never echoed, and that the server keeps serving a healthy client.
 */

import assert from "node:assert/strict";
import { serve, type ServeOptions, type Server } from "../../mod.ts";
import { clientFrame, type ClientFrameOptions, closePayload, concat } from "../helpers/frames.ts";
import { buildUpgradeRequest, decodeText, OP, RawClient } from "../helpers/raw_client.ts";

/** A masked client frame (unless `options.mask` is false). */
function wire(
  opcode: number,
  payload?: Uint8Array | string,
  options: Omit<ClientFrameOptions, "opcode" | "payload"> = {},
): Uint8Array {
  return clientFrame({ opcode, payload, ...options });
}

interface Closed {
  code: number;
  reason: string;
}

/** An echo server that records how its connections closed and how many opened. */
interface EchoServer {
  server: Server;
  port: number;
  opened: () => number;
  /** Resolves with the `close` handler's arguments for the n-th connection to close (0-based). */
  closed: (n: number) => Promise<Closed>;
  pongs: Uint8Array[];
  /** Every message the `message` handler got, in order. */
  messages: (string | Uint8Array)[];
}

/**
 * Runs `fn` against an echo server (heartbeat and idle timeout off, so no
 * frame arrives unasked), then checks the server still serves a healthy
 * client, then shuts it down.
 */
async function withEchoServer(
  options: ServeOptions,
  fn: (echo: EchoServer) => Promise<void>,
): Promise<void> {
  let opened = 0;
  const closes: Closed[] = [];
  const waiters: { n: number; resolve: (c: Closed) => void }[] = [];
  const pongs: Uint8Array[] = [];
  const messages: (string | Uint8Array)[] = [];
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    pingInterval: 0,
    idleTimeout: 0,
    ...options,
  }, {
    open() {
      opened++;
    },
    message(socket, data) {
      messages.push(data);
      if (data === "server-close-please") socket.close(4001, "bye");
      else socket.send(data);
    },
    pong(_socket, payload) {
      pongs.push(payload);
    },
    close(_socket, code, reason) {
      closes.push({ code, reason });
      for (const waiter of waiters.filter((w) => w.n < closes.length)) {
        waiter.resolve(closes[waiter.n]);
      }
    },
  });
  const echo: EchoServer = {
    server,
    port: server.addr.port,
    opened: () => opened,
    closed: (n) =>
      n < closes.length
        ? Promise.resolve(closes[n])
        : new Promise((resolve) => waiters.push({ n, resolve })),
    pongs,
    messages,
  };
  try {
    await fn(echo);
    await assertServesHealthyClient(echo.port);
  } finally {
    await server.shutdown({ timeout: 1000 });
  }
}

/** A well-behaved client: handshake, echo of one text message, clean close. */
async function assertServesHealthyClient(port: number): Promise<void> {
  using client = await RawClient.connect(port);
  await client.handshake();
  await client.write(wire(OP.TEXT, "still serving"));
  const frame = await client.readFrame();
  assert.equal(frame.opcode, OP.TEXT);
  assert.equal(decodeText(frame.payload), "still serving");
  await client.write(wire(OP.CLOSE, closePayload(1000)));
  await client.expectClose(1000, "");
  await client.expectEnd();
}

/**
 * Sends `bytes` after a successful handshake and asserts the server answers
 * with exactly one close frame carrying `code` (never an echo of the bad
 * frame), then closes TCP, and reports `code` to the `close` handler.
 */
async function assertFails(
  bytes: Uint8Array,
  code: number,
  options: ServeOptions = {},
): Promise<void> {
  await withEchoServer(options, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.handshake();
    await client.write(bytes);
    await client.expectClose(code);
    await client.expectEnd();
    assert.equal((await echo.closed(0)).code, code);
    assert.deepEqual(echo.messages, [], "no part of a bad message reaches the application");
  });
}

/**
 * Sends a raw request head and asserts the exact status line, that the server
 * closed TCP after the response, that no connection opened, and that the
 * response carries a body matching its Content-Length.
 */
async function assertRefused(
  request: string | Uint8Array,
  statusLine: string,
  options: ServeOptions = {},
): Promise<Headers> {
  let headers = new Headers();
  await withEchoServer(options, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.write(request);
    const response = await client.readHttpResponse();
    assert.equal(response.statusLine, statusLine);
    assert.equal(client.ended, "eof");
    assert.equal(response.headers.get("connection"), "close");
    assert.equal(response.headers.has("sec-websocket-accept"), false);
    assert.ok(response.text.length > 0, "a refusal explains itself in its body");
    assert.equal(echo.opened(), 0);
    headers = response.headers;
  });
  return headers;
}

// ---- malformed handshakes ----

Deno.test("handshake without Sec-WebSocket-Key gets 400", async () => {
  await assertRefused(buildUpgradeRequest({ key: null }), "HTTP/1.1 400 Bad Request");
});

Deno.test("handshake with a key that is not 16 base64 bytes gets 400", async () => {
  for (
    const key of [
      "abc",
      "dGhlIHNhbXBsZSBub25j",
      "dGhlIHNhbXBsZSBub25jZQ",
      "!!!!!!!!!!!!!!!!!!!!!A==",
    ]
  ) {
    await assertRefused(buildUpgradeRequest({ key }), "HTTP/1.1 400 Bad Request");
  }
});

Deno.test("handshake with version 8 (or none) gets 426 naming version 13", async () => {
  for (const version of ["8", null]) {
    const headers = await assertRefused(
      buildUpgradeRequest({ version }),
      "HTTP/1.1 426 Upgrade Required",
    );
    assert.equal(headers.get("sec-websocket-version"), "13");
  }
});

Deno.test("upgrade with POST gets 405 allowing GET", async () => {
  const headers = await assertRefused(
    buildUpgradeRequest({ method: "POST" }),
    "HTTP/1.1 405 Method Not Allowed",
  );
  assert.equal(headers.get("allow"), "GET");
});

Deno.test("upgrade over HTTP/1.0 gets 400", async () => {
  await assertRefused(buildUpgradeRequest({ httpVersion: "1.0" }), "HTTP/1.1 400 Bad Request");
});

Deno.test("upgrade without Host gets 400", async () => {
  await assertRefused(buildUpgradeRequest({ host: null }), "HTTP/1.1 400 Bad Request");
});

Deno.test("upgrade with Connection lacking Upgrade gets 400", async () => {
  const request = buildUpgradeRequest().replace("Connection: Upgrade", "Connection: keep-alive");
  await assertRefused(request, "HTTP/1.1 400 Bad Request");
});

Deno.test("request head larger than maxHeaderBytes gets 431", async () => {
  const big = buildUpgradeRequest({ headers: [["X-Padding", "a".repeat(3000)]] });
  assert.ok(big.length > 2048);
  // A head still unterminated at exactly maxHeaderBytes bytes.
  await assertRefused(
    (buildUpgradeRequest().slice(0, -4) + "\r\nX-Padding: " + "a".repeat(2048)).slice(0, 1024),
    "HTTP/1.1 431 Request Header Fields Too Large",
    { maxHeaderBytes: 1024, readBufferSize: 1024 },
  );
  await assertRefused(big, "HTTP/1.1 431 Request Header Fields Too Large", {
    maxHeaderBytes: 2048,
  });
});

Deno.test("garbage request line gets 400", async () => {
  await assertRefused("HELLO THERE\r\n\r\n", "HTTP/1.1 400 Bad Request");
  await assertRefused("\x16\x03\x01\x00\xa5\x01\x00\x00\r\n\r\n", "HTTP/1.1 400 Bad Request");
});

Deno.test("header line without a colon gets 400", async () => {
  await assertRefused("GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n", "HTTP/1.1 400 Bad Request");
});

// ---- handshakes that must work ----

Deno.test("handshake head split into 1-byte writes still upgrades", async () => {
  await withEchoServer({}, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.writeBytewise(buildUpgradeRequest({ path: "/split?x=1" }));
    await client.expectSwitchingProtocols();
    // The first frame, byte by byte too.
    await client.writeBytewise(wire(OP.BINARY, new Uint8Array([1, 2, 3, 250])));
    const frame = await client.readFrame();
    assert.equal(frame.opcode, OP.BINARY);
    assert.deepEqual(frame.payload, new Uint8Array([1, 2, 3, 250]));
  });
});

Deno.test("a frame sent in the same write as the head is not dropped", async () => {
  await withEchoServer({}, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.write(
      concat(
        new TextEncoder().encode(buildUpgradeRequest()),
        wire(OP.TEXT, "early"),
        wire(OP.TEXT, "bird"),
      ),
    );
    const head = await client.expectSwitchingProtocols();
    assert.equal(head.headers.has("sec-websocket-protocol"), false);
    for (const expected of ["early", "bird"]) {
      const frame = await client.readFrame();
      assert.equal(frame.opcode, OP.TEXT);
      assert.equal(frame.fin, true);
      assert.equal(decodeText(frame.payload), expected);
    }
  });
});

// ---- framing errors: 1002 ----

Deno.test("an unmasked client frame fails with 1002", async () => {
  await assertFails(wire(OP.TEXT, "naked", { mask: false }), 1002);
});

Deno.test("a frame with RSV1, RSV2 or RSV3 set fails with 1002", async () => {
  for (const rsv of [0x40, 0x20, 0x10]) {
    await assertFails(wire(OP.TEXT, "rsv", { rsv }), 1002);
  }
});

Deno.test("an unknown opcode fails with 1002", async () => {
  for (const opcode of [0x3, 0x7, 0xb, 0xf]) {
    await assertFails(wire(opcode, "what"), 1002);
  }
});

Deno.test("a fragmented ping fails with 1002", async () => {
  await assertFails(wire(OP.PING, "frag", { fin: false }), 1002);
});

Deno.test("a ping with a 126-byte payload fails with 1002 and gets no pong", async () => {
  await assertFails(wire(OP.PING, new Uint8Array(126).fill(7)), 1002);
});

Deno.test("a continuation frame without a message fails with 1002", async () => {
  await assertFails(wire(OP.CONTINUATION, "orphan"), 1002);
});

Deno.test("a new text frame inside a fragmented message fails with 1002", async () => {
  await assertFails(
    concat(
      wire(OP.TEXT, "first ", { fin: false }),
      wire(OP.TEXT, "intruder"),
    ),
    1002,
  );
});

Deno.test("a new binary frame inside a fragmented text message fails with 1002", async () => {
  await assertFails(
    concat(
      wire(OP.TEXT, "first ", { fin: false }),
      wire(OP.BINARY, new Uint8Array([1]), { fin: false }),
    ),
    1002,
  );
});

// ---- invalid UTF-8: 1007 ----

Deno.test("invalid UTF-8 in a text message fails with 1007", async () => {
  await assertFails(wire(OP.TEXT, new Uint8Array([0x68, 0x69, 0xff, 0xfe])), 1007);
  // An overlong encoding and a UTF-16 surrogate are invalid UTF-8 as well.
  await assertFails(wire(OP.TEXT, new Uint8Array([0xc0, 0xaf])), 1007);
  await assertFails(wire(OP.TEXT, new Uint8Array([0xed, 0xa0, 0x80])), 1007);
});

Deno.test("a text message ending inside a UTF-8 sequence fails with 1007", async () => {
  await assertFails(wire(OP.TEXT, new Uint8Array([0x61, 0xe2, 0x82])), 1007);
  await assertFails(
    concat(
      wire(OP.TEXT, "a", { fin: false }),
      wire(OP.CONTINUATION, new Uint8Array([0xe2, 0x82])),
    ),
    1007,
  );
});

Deno.test("invalid UTF-8 fails fast: 1007 arrives before the final fragment", async () => {
  // The final fragment is never sent; the server must not wait for it.
  await assertFails(wire(OP.TEXT, new Uint8Array([0x6f, 0x6b, 0xff]), { fin: false }), 1007);
});

Deno.test("a valid UTF-8 sequence split across fragments assembles", async () => {
  await withEchoServer({}, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.handshake();
    const euro = new TextEncoder().encode("€uro"); // e2 82 ac ...
    await client.write(wire(OP.TEXT, euro.subarray(0, 1), { fin: false }));
    await client.write(wire(OP.CONTINUATION, euro.subarray(1, 2), { fin: false }));
    await client.write(wire(OP.CONTINUATION, euro.subarray(2)));
    const frame = await client.readFrame();
    assert.equal(frame.opcode, OP.TEXT);
    assert.equal(decodeText(frame.payload), "€uro");
  });
});

// ---- size limit: 1009 ----

Deno.test("a frame header announcing more than maxPayload fails with 1009 at once", async () => {
  // Only the header is sent: the server must refuse on the declared length.
  await assertFails(
    wire(OP.BINARY, new Uint8Array(0), { declaredLength: 1025 }),
    1009,
    { maxPayload: 1024 },
  );
  await assertFails(
    wire(OP.TEXT, new Uint8Array(0), { declaredLength: 2 ** 40 }),
    1009,
    { maxPayload: 1024 },
  );
});

Deno.test("fragments adding up to more than maxPayload fail with 1009", async () => {
  await assertFails(
    concat(
      wire(OP.BINARY, new Uint8Array(1000), { fin: false }),
      wire(OP.CONTINUATION, new Uint8Array(0), { declaredLength: 25 }),
    ),
    1009,
    { maxPayload: 1024 },
  );
});

Deno.test("a message of exactly maxPayload bytes is accepted", async () => {
  await withEchoServer({ maxPayload: 1024 }, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.handshake();
    const payload = new Uint8Array(1024).map((_, i) => i * 7);
    await client.write(wire(OP.BINARY, payload.subarray(0, 1000), { fin: false }));
    await client.write(wire(OP.CONTINUATION, payload.subarray(1000)));
    const frame = await client.readFrame();
    assert.equal(frame.opcode, OP.BINARY);
    assert.deepEqual(frame.payload, payload);
  });
});

// ---- close frames ----

Deno.test("a close frame with a 1-byte payload fails with 1002", async () => {
  await assertFails(wire(OP.CLOSE, new Uint8Array([0x03])), 1002);
});

Deno.test("a close frame with a code that may not be sent fails with 1002", async () => {
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]) {
    await assertFails(wire(OP.CLOSE, closePayload(code)), 1002);
  }
});

Deno.test("a close reason that is not UTF-8 fails with 1007", async () => {
  await assertFails(wire(OP.CLOSE, closePayload(1000, new Uint8Array([0xff]))), 1007);
});

Deno.test("a valid close is echoed with its code and reason (empty as empty), then the server closes TCP", async () => {
  const cases = [
    {
      sent: closePayload(1000, "done here"),
      echoed: [...closePayload(1000, "done here")],
      reported: [1000, "done here"],
    },
    { sent: new Uint8Array(0), echoed: [], reported: [1005, ""] },
  ];
  for (const { sent, echoed, reported } of cases) {
    await withEchoServer({}, async (echo) => {
      using client = await RawClient.connect(echo.port);
      await client.handshake();
      await client.write(wire(OP.CLOSE, sent));
      const frame = await client.readFrame();
      assert.equal(frame.opcode, OP.CLOSE);
      assert.deepEqual(frame.payload, new Uint8Array(echoed));
      await client.expectEnd();
      const closed = await echo.closed(0);
      assert.deepEqual([closed.code, closed.reason], reported);
    });
  }
});

// ---- control frames between fragments ----

Deno.test("a ping between fragments gets a pong with its payload; the message assembles", async () => {
  await withEchoServer({}, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.handshake();
    await client.write(wire(OP.TEXT, "Hel", { fin: false }));
    await client.write(wire(OP.PING, new Uint8Array([0, 1, 2, 0xff])));
    await client.write(wire(OP.CONTINUATION, "lo"));
    const pong = await client.readFrame();
    assert.equal(pong.opcode, OP.PONG);
    assert.deepEqual(pong.payload, new Uint8Array([0, 1, 2, 0xff]));
    const message = await client.readFrame();
    assert.equal(message.opcode, OP.TEXT);
    assert.equal(message.fin, true);
    assert.equal(decodeText(message.payload), "Hello");
  });
});

Deno.test("a ping with a 125-byte payload gets a pong with the same 125 bytes", async () => {
  await withEchoServer({}, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.handshake();
    const payload = new Uint8Array(125).map((_, i) => 255 - i);
    await client.write(wire(OP.PING, payload));
    const pong = await client.readFrame();
    assert.equal(pong.opcode, OP.PONG);
    assert.deepEqual(pong.payload, payload);
  });
});

Deno.test("an unsolicited pong is ignored", async () => {
  await withEchoServer({}, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.handshake();
    await client.write(wire(OP.PONG, "unasked"));
    await client.write(wire(OP.TEXT, "after"));
    // The first frame back is the echo: nothing was sent for the pong.
    const frame = await client.readFrame();
    assert.equal(frame.opcode, OP.TEXT);
    assert.equal(decodeText(frame.payload), "after");
    assert.deepEqual(echo.pongs.map(decodeText), ["unasked"]);
  });
});

// ---- after the server's close ----

Deno.test("after the server sends close it sends nothing else", async () => {
  await withEchoServer({}, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.handshake();
    await client.write(wire(OP.TEXT, "server-close-please"));
    await client.expectClose(4001, "bye");
    // Still allowed to arrive before our close; neither may be answered.
    await client.write(wire(OP.PING, "late ping"));
    await client.write(wire(OP.TEXT, "late message"));
    await client.write(wire(OP.CLOSE, closePayload(4001)));
    await client.expectEnd();
    // We closed first: the close is ours, with our reason, not the peer's bare echo.
    assert.deepEqual(await echo.closed(0), { code: 4001, reason: "bye" });
    // The late message is dropped, as the standard WebSocket does once closing.
    assert.deepEqual(echo.messages, ["server-close-please"]);
  });
});

Deno.test("nothing after a client's close frame is processed", async () => {
  await withEchoServer({}, async (echo) => {
    using client = await RawClient.connect(echo.port);
    await client.handshake();
    await client.write(
      concat(
        wire(OP.CLOSE, closePayload(1000)),
        wire(OP.TEXT, "after close"),
        wire(OP.PING, "after close"),
      ),
    );
    await client.expectClose(1000, "");
    await client.expectEnd();
    assert.deepEqual(await echo.closed(0), { code: 1000, reason: "" });
    assert.deepEqual(echo.messages, []);
  });
});
