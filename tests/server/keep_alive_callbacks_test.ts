/**
 * The plain-HTTP path by callbacks (HttpSession#nextRequest,
 * #nextComplete): a request without a body (a connection's first, or a
 * later one on a persistent connection) whose handler answers at once with
 * a response the runtime holds whole is read, answered and written without
 * the async path, and everything else is handed to it. Each case is
 * checked byte for byte against the same server with `runtimeInternals`
 * off (which takes the async path for every request), pipelined and one
 * request at a time; plus the repeated-response bytes, a handler that
 * throws, and shutdown during such a response.
 */

import assert from "node:assert/strict";
import { RawClient, withTimeout } from "../helpers/raw_client.ts";
import { delay, startServer } from "../helpers/harness.ts";
import { maskDate } from "../helpers/http_date.ts";
import { serversOnAndOff } from "../helpers/option_pair.ts";
import type { Handlers } from "../../mod.ts";

const BIG = "x".repeat(40_000);

// Per server (the on and off servers each count their own, in step).
const counts = new Map<unknown, number>();

/** A handler that answers at once for most paths, as the callback path wants. */
const handlers: Handlers<undefined> = {
  fetch(request, info) {
    const path = new URL(request.url).pathname;
    switch (path) {
      case "/long":
        // Repeated, but too long (2,000 bytes of body) for its bytes to be kept.
        return new Response("é".repeat(1000));
      case "/count": {
        // A body that changes with every response: never kept.
        const count = (counts.get(info.server) ?? 0) + 1;
        counts.set(info.server, count);
        return new Response(`count ${count}`);
      }
      case "/text":
        return new Response("hello");
      case "/json":
        return Response.json({ a: 1 });
      case "/bytes":
        return new Response(new Uint8Array([1, 2, 3]));
      case "/404":
        return new Response("no", { status: 404 });
      case "/headers":
        return new Response("h", { headers: { "x-a": "1" } });
      case "/async":
        return Promise.resolve(new Response("later"));
      case "/big":
        return new Response(BIG);
      case "/empty":
        return new Response(null);
      case "/throw":
        throw new Error("handler failed on purpose");
      default:
        return new Response(`${request.method} ${path}`);
    }
  },
};

function get(path: string, extra = "", version = "1.1"): string {
  return `GET ${path} HTTP/${version}\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
}

/** Requests of every kind, each on the same connection after the first. */
const SEQUENCE: { request: string; method?: string }[] = [
  { request: get("/text") },
  { request: get("/text") },
  { request: get("/text") },
  { request: "HEAD /text HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method: "HEAD" },
  { request: get("/text", "Connection: keep-alive\r\n", "1.0") },
  { request: get("/text") },
  { request: get("/json") },
  { request: get("/bytes") },
  { request: get("/404") },
  { request: get("/headers") },
  { request: get("/async") },
  { request: get("/big") },
  { request: get("/empty") },
  { request: "POST /post HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello" },
  { request: get("/text", "Expect: 100-continue\r\n") },
  { request: "OPTIONS /opt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" },
  { request: get("/a%2e%2e/b?q=1") },
  { request: get("/long") },
  { request: get("/long") },
  { request: get("/long") },
  { request: get("/count") },
  { request: get("/count") },
  { request: get("/count") },
  { request: get("/text") },
  { request: get("/text", "Connection: close\r\n") },
];

Deno.test("keep-alive by callbacks: every kind of request, pipelined, is the same bytes with the option on and off", async () => {
  const servers = serversOnAndOff(handlers);
  try {
    const transcripts: string[] = [];
    for (const h of servers) {
      using raw = await RawClient.connect(h.port);
      await raw.write(SEQUENCE.map((step) => step.request).join(""));
      transcripts.push(maskDate(await raw.readToEnd()));
      assert.equal(raw.ended, "eof");
    }
    assert.equal(transcripts[0], transcripts[1]);
    // Every request was answered, in order, the last one saying close.
    assert.equal(transcripts[0].split("HTTP/1.1 ").length - 1, SEQUENCE.length);
    assert.ok(transcripts[0].endsWith("Connection: close\r\n\r\nhello"));
    for (const h of servers) assert.equal(h.server.metrics().connectionsAccepted, 1);
  } finally {
    for (const h of servers) await h.server.shutdown();
  }
});

Deno.test("keep-alive by callbacks: one request at a time, the same answers with the option on and off", async () => {
  const servers = serversOnAndOff(handlers);
  try {
    const answers: string[][] = [[], []];
    for (const [i, h] of servers.entries()) {
      using raw = await RawClient.connect(h.port);
      for (const step of SEQUENCE.slice(0, -1)) {
        await raw.write(step.request);
        const response = await raw.readResponse({ method: step.method });
        answers[i].push(
          maskDate(
            `${response.statusLine}\r\n${[...response.headers].join("\r\n")}\r\n${response.text}`,
          ),
        );
      }
      assert.equal(raw.pending.length, 0);
    }
    assert.deepEqual(answers[0], answers[1]);
    assert.equal(answers[0][1], answers[0][0], "a repeated response is the same response");
    assert.match(answers[0][3], /content-length,5/);
    assert.match(answers[0][4], /connection,keep-alive/);
    // The long body, each time whole; the changing one, each time its own.
    const long = SEQUENCE.findIndex((step) => step.request.startsWith("GET /long "));
    for (let i = long; i < long + 3; i++) assert.ok(answers[0][i].endsWith("é".repeat(1000)));
    assert.deepEqual(
      answers[0].slice(long + 3, long + 6).map((answer) => answer.slice(-7)),
      ["count 1", "count 2", "count 3"],
    );
  } finally {
    for (const h of servers) await h.server.shutdown();
  }
});

Deno.test("keep-alive by callbacks: the last request allowed, and a handler that throws, close the connection", async () => {
  const servers = [true, false].map((runtimeInternals) =>
    startServer({ runtimeInternals, maxRequestsPerConnection: 3 }, handlers)
  );
  try {
    const transcripts: string[] = [];
    for (const h of servers) {
      using limited = await RawClient.connect(h.port);
      await limited.write(get("/text") + get("/text") + get("/text") + get("/text"));
      const text = maskDate(await limited.readToEnd());
      // Three answers; the third says close, and the fourth request is not read.
      assert.equal(text.split("HTTP/1.1 200").length - 1, 3);
      assert.ok(text.endsWith("Connection: close\r\n\r\nhello"));
      using failing = await RawClient.connect(h.port);
      await failing.write(get("/text") + get("/text") + get("/throw") + get("/text"));
      const failed = maskDate(await failing.readToEnd());
      assert.equal(failed.split("HTTP/1.1 200").length - 1, 2);
      assert.match(failed, /HTTP\/1\.1 500 Internal Server Error\r\n/);
      transcripts.push(text + failed);
    }
    assert.equal(transcripts[0], transcripts[1]);
    assert.deepEqual(servers[0].server.metrics().httpResponses, { 200: 5, 500: 1 });
  } finally {
    for (const h of servers) await h.server.shutdown();
  }
});

Deno.test("keep-alive by callbacks: a response being written when shutdown starts is finished, then the connection closes", async () => {
  const huge = "y".repeat(16 * 1024 * 1024);
  const h = startServer({}, {
    fetch: (request) =>
      new URL(request.url).pathname === "/huge" ? new Response(huge) : new Response("first"),
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(get("/first"));
    assert.equal((await raw.readResponse()).text, "first");
    // The second is answered by the callbacks; the client does not read yet,
    // so its 16 MiB stay in the write.
    await raw.write(get("/huge"));
    await delay(100);
    const stopped = h.server.shutdown({ timeout: 10_000 });
    await delay(50);
    const response = await raw.readResponse({ timeoutMs: 10_000 });
    assert.equal(response.text.length, huge.length);
    assert.equal(await raw.expectEnd(), "eof");
    await withTimeout(stopped, 5_000, "shutdown");
  } finally {
    await h.server.shutdown();
  }
});
