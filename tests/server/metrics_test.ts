/**
 * Server metrics: the counters a user reads from `server.metrics()` match
 * what went over the wire (exact byte counts from a raw client), close codes
 * and HTTP statuses are counted once each, and the Prometheus text carries
 * them all.
 */

import assert from "node:assert/strict";
import { formatPrometheus, type ServerMetrics } from "../../src/server/metrics.ts";
import { clientFrame, closePayload } from "../helpers/frames.ts";
import { OP, RawClient } from "../helpers/raw_client.ts";
import { startServer, waitUntil } from "../helpers/harness.ts";

Deno.test("metrics: messages and bytes each way, exactly as on the wire", async () => {
  const h = startServer({}, {
    open: (socket) => void socket.subscribe("all"),
    message: (socket, data) => void socket.send(data),
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.handshake();
    using other = await RawClient.connect(h.port);
    await other.handshake();
    await waitUntil(() => h.server.connectionCount === 2, "two connections");

    const text = clientFrame({ opcode: OP.TEXT, payload: "hello" }); // 2 + 4 + 5 bytes
    const binary = clientFrame({ opcode: OP.BINARY, payload: new Uint8Array(300) }); // 4 + 4 + 300
    await raw.write(text);
    await raw.write(binary);
    await raw.readFrame();
    await raw.readFrame();
    assert.equal(h.server.publish("all", "to both"), 2);
    await raw.readFrame();
    await other.readFrame();

    let metrics = h.server.metrics();
    assert.equal(metrics.connections, 2);
    assert.equal(metrics.connectionsOpened, 2);
    assert.equal(metrics.messagesReceived, 2);
    assert.equal(metrics.messagesSent, 4, "two echoes and a publish to two subscribers");
    assert.equal(metrics.bytesReceived, text.length + binary.length);
    // Server frames are unmasked: 2 + 5, 4 + 300, and 2 + 7 to each subscriber.
    assert.equal(metrics.bytesSent, 7 + 304 + 2 * 9);

    // A clean close and a drop: counted once each, by code, and the closed
    // connections' traffic stays in the totals.
    await raw.write(clientFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }));
    await raw.expectClose(1000);
    other.close();
    await waitUntil(() => h.server.metrics().connections === 0, "both closed");
    await waitUntil(() => h.closed.length === 2, "close handlers");
    metrics = h.server.metrics();
    assert.deepEqual(metrics.closes, { 1000: 1, 1006: 1 });
    assert.equal(metrics.messagesReceived, 2);
    assert.ok(metrics.bytesReceived > text.length + binary.length, "the close frame counts too");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("metrics: plain HTTP responses by status, refusals included", async () => {
  const h = startServer({}, {
    fetch: (request) =>
      new URL(request.url).pathname === "/ok"
        ? new Response("fine")
        : new Response("no", { status: 404 }),
  });
  try {
    for (const target of ["/ok", "/ok", "/missing"]) {
      const response = await fetch(`http://127.0.0.1:${h.port}${target}`);
      await response.body?.cancel();
    }
    using bad = await RawClient.connect(h.port);
    await bad.handshake({ headers: [["Sec-WebSocket-Version", "8"]] }).catch(() => {});
    await waitUntil(() => (h.server.metrics().httpResponses[426] ?? 0) === 1, "the 426");
    assert.deepEqual(h.server.metrics().httpResponses, { 200: 2, 404: 1, 426: 1 });
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("formatPrometheus: every counter, labelled ones per code and status", () => {
  const metrics: ServerMetrics = {
    connections: 3,
    connectionsOpened: 10,
    connectionsAccepted: 25,
    messagesReceived: 100,
    messagesSent: 200,
    bytesReceived: 4096,
    bytesSent: 8192,
    closes: { 1000: 6, 1006: 1 },
    httpResponses: { 200: 5, 426: 2 },
    acceptErrors: { connection: 4, resources: 1, other: 0 },
  };
  const text = formatPrometheus(metrics);
  assert.ok(text.endsWith("\n"));
  const samples = text.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
  assert.deepEqual(samples, [
    "tsunagu_connections 3",
    "tsunagu_connections_opened_total 10",
    "tsunagu_tcp_connections_accepted_total 25",
    "tsunagu_messages_received_total 100",
    "tsunagu_messages_sent_total 200",
    "tsunagu_received_bytes_total 4096",
    "tsunagu_sent_bytes_total 8192",
    'tsunagu_closes_total{code="1000"} 6',
    'tsunagu_closes_total{code="1006"} 1',
    'tsunagu_http_responses_total{status="200"} 5',
    'tsunagu_http_responses_total{status="426"} 2',
    'tsunagu_accept_errors_total{kind="connection"} 4',
    'tsunagu_accept_errors_total{kind="resources"} 1',
    'tsunagu_accept_errors_total{kind="other"} 0',
  ]);
  // Every sample has its HELP and TYPE lines.
  for (const name of new Set(samples.map((line) => line.split(/[{ ]/)[0]))) {
    assert.match(text, new RegExp(`# HELP ${name} .+\\n# TYPE ${name} (counter|gauge)\\n`));
  }
});
