/**
 * The first request of a connection, read and (for the usual upgrade)
 * answered by the session's callbacks rather than its async loop
 * (HttpSession.start, bench/RESULTS.md change 18): heads split at every
 * awkward place, frames behind the head, duplicate and conflicting upgrade
 * fields refused with the statuses the general path gives, the request's
 * headers and URL as the application sees them, a plain first request
 * handed on to the keep-alive loop, and a session that ends while its 101
 * is being written.
 */

import assert from "node:assert/strict";
import { serve, type Server, type ServerWebSocket } from "../../mod.ts";
import { clientFrame, concat } from "../helpers/frames.ts";
import { buildUpgradeRequest, decodeText, OP, RawClient } from "../helpers/raw_client.ts";

const encoder = new TextEncoder();

/** An echo server; `opened` gets each socket's URL and headers. */
function echoServer(
  opened: { url: string; headers: Headers }[] = [],
  options: { fetch?: boolean } = {},
): Server {
  return serve({ hostname: "127.0.0.1", port: 0, pingInterval: 0, idleTimeout: 0 }, {
    open(socket: ServerWebSocket) {
      opened.push({ url: socket.url, headers: socket.headers });
    },
    message(socket, data) {
      socket.send(data);
    },
    fetch: options.fetch
      ? (request) => new Response(`plain ${new URL(request.url).pathname}`)
      : undefined,
  });
}

Deno.test("a head split before, inside and after its CRLF CRLF upgrades, frames behind it kept", async () => {
  const server = echoServer();
  try {
    const head = encoder.encode(buildUpgradeRequest({ path: "/split" }));
    const frame = clientFrame({ opcode: OP.TEXT, payload: "behind" });
    // Cut points: in the request line, in a field, between CR and LF of the
    // last field's end, between the two CRLFs, and right at the end.
    for (const cuts of [[5], [40, 90], [head.length - 3], [head.length - 2], [head.length - 1]]) {
      using client = await RawClient.connect(server.addr.port);
      let from = 0;
      for (const cut of cuts) {
        await client.write(head.subarray(from, cut));
        await new Promise((resolve) => setTimeout(resolve, 5));
        from = cut;
      }
      // The rest of the head and a frame in one write.
      await client.write(concat(head.subarray(from), frame));
      await client.expectSwitchingProtocols();
      const echoed = await client.readFrame();
      assert.equal(decodeText(echoed.payload), "behind", `cuts ${cuts}`);
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("duplicate and conflicting upgrade fields are refused with the general path's statuses", async () => {
  const server = echoServer();
  try {
    const cases: [string, number][] = [
      [buildUpgradeRequest({ headers: [["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="]] }), 400],
      [buildUpgradeRequest({ headers: [["Sec-WebSocket-Version", "13"]] }), 426],
      [buildUpgradeRequest({ headers: [["Host", "127.0.0.1"]] }), 400],
      [buildUpgradeRequest({ headers: [["Transfer-Encoding", "chunked"]] }), 400],
      [buildUpgradeRequest({ headers: [["Content-Length", "5"]] }), 400],
      [buildUpgradeRequest({ headers: [["Content-Length", "1"], ["Content-Length", "2"]] }), 400],
      [buildUpgradeRequest({ version: "8" }), 426],
      [buildUpgradeRequest({ key: "short" }), 400],
      [buildUpgradeRequest({ method: "POST" }), 405],
      [buildUpgradeRequest({ httpVersion: "1.0" }), 400],
      [buildUpgradeRequest({ httpVersion: "2.0" }), 505],
      [buildUpgradeRequest({ host: "a/b" }), 400],
      [buildUpgradeRequest({ path: "/a#b" }), 400],
      [buildUpgradeRequest().replace("Connection: Upgrade", "Connection: keep-alive"), 400],
      [
        buildUpgradeRequest().replace("Upgrade: websocket", "Upgrade: websocket\r\nBad Name: x"),
        400,
      ],
    ];
    for (const [request, status] of cases) {
      using client = await RawClient.connect(server.addr.port);
      await client.write(request);
      const response = await client.readHttpResponse();
      assert.equal(response.status, status, JSON.stringify(request));
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("the socket's URL and headers are those of the head checked in place", async () => {
  const opened: { url: string; headers: Headers }[] = [];
  const server = echoServer(opened);
  try {
    using client = await RawClient.connect(server.addr.port);
    await client.write(
      "GET /room/1?x=%20y HTTP/1.1\r\nHOST: Example.COM:8080\r\nupgrade: WebSocket\r\n" +
        "connection: keep-alive,  Upgrade \r\nSEC-websocket-KEY: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version:13\r\nX-Custom:  a  b\t\r\n\r\n",
    );
    await client.expectSwitchingProtocols();
    await client.write(clientFrame({ opcode: OP.TEXT, payload: "hi" }));
    await client.readFrame();
    assert.equal(opened.length, 1);
    assert.equal(opened[0].url, "ws://example.com:8080/room/1?x=%20y");
    assert.equal(opened[0].headers.get("x-custom"), "a  b");
    assert.equal(opened[0].headers.get("connection"), "keep-alive,  Upgrade");
    assert.deepEqual(
      [...opened[0].headers.keys()],
      [
        "connection",
        "host",
        "sec-websocket-key",
        "sec-websocket-version",
        "upgrade",
        "x-custom",
      ],
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("a plain first request goes on to the keep-alive loop, and an upgrade may follow", async () => {
  const opened: { url: string; headers: Headers }[] = [];
  const server = echoServer(opened, { fetch: true });
  try {
    using client = await RawClient.connect(server.addr.port);
    // Split, so the plain request is found by the callbacks after two reads.
    await client.write("GET /first HTTP/1.1\r\nHo");
    await new Promise((resolve) => setTimeout(resolve, 5));
    await client.write("st: a\r\n\r\n");
    const first = await client.readResponse();
    assert.equal(first.status, 200);
    assert.equal(first.text, "plain /first");
    await client.write(buildUpgradeRequest({ path: "/later" }));
    await client.expectSwitchingProtocols();
    await client.write(clientFrame({ opcode: OP.TEXT, payload: "after" }));
    assert.equal(decodeText((await client.readFrame()).payload), "after");
    assert.equal(opened[0].url, "ws://127.0.0.1/later");
  } finally {
    await server.shutdown();
  }
});

Deno.test("a client that leaves before its head is complete, or right after it, opens nothing", async () => {
  const opened: { url: string; headers: Headers }[] = [];
  const server = echoServer(opened);
  try {
    const head = buildUpgradeRequest();
    {
      const client = await RawClient.connect(server.addr.port);
      await client.write(head.slice(0, 30));
      client.conn.close();
    }
    {
      const client = await RawClient.connect(server.addr.port);
      await client.write(head);
      client.conn.close();
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Whatever the race made of the second, the server serves on.
    using healthy = await RawClient.connect(server.addr.port);
    await healthy.handshake();
    await healthy.write(clientFrame({ opcode: OP.TEXT, payload: "ok" }));
    assert.equal(decodeText((await healthy.readFrame()).payload), "ok");
    assert.ok(opened.length <= 2);
  } finally {
    await server.shutdown();
  }
});
