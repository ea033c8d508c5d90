/**
 * Review of 3e5cbec: a connection's first request, unless it is the usual
 * upgrade, goes from #headIn to #nextComplete with the head as scanned.
 * Every kind of first request (refused, unusual upgrades, no fetch
 * handler, no slot free) gets the same bytes as with runtimeInternals off
 * (which hands it to run()); the head deadline ends when the handler runs.
 */

import assert from "node:assert/strict";
import { buildUpgradeRequest, RawClient } from "../helpers/raw_client.ts";
import { delay, startServer } from "../helpers/harness.ts";
import { maskDate } from "../helpers/http_date.ts";
import type { Handlers } from "../../mod.ts";

const fetchHandlers: Handlers<undefined> = {
  fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/slow") return delay(400).then(() => new Response("slow"));
    return new Response(`${request.method} ${path}`);
  },
};

const upgrade = buildUpgradeRequest({ path: "/ws" });
const FIRSTS = [
  "GET /text HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "\r\n\r\nGET /lead HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "GET /text HTTP/1.0\r\n\r\n",
  "GET /text HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "GET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "GET /x HTTP/1.1\r\n\r\n",
  "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
  "GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n",
  "GET http://127.0.0.1/abs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "GET /x#f HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nA\r\n\r\n",
  "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
  "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: nothing\r\n\r\n",
  "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
  "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi",
  upgrade,
  upgrade.replace("GET /ws", "GET http://127.0.0.1/ws"),
  upgrade.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
  upgrade.replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n"),
  upgrade.replace("GET", "POST"),
  upgrade.replace("HTTP/1.1", "HTTP/1.0"),
];

async function answer(port: number, text: string): Promise<string> {
  using raw = await RawClient.connect(port);
  await raw.write(text);
  // One response (a persistent connection stays open), then a second
  // request on the same connection when it persists.
  const one = async () => {
    const r = await raw.readResponse({ timeoutMs: 3_000 });
    return `${r.statusLine}\n${
      [...r.headers].map(([k, v]) => k === "date" ? k : `${k}: ${v}`)
    }\n${r.text}`;
  };
  let out = await one().catch((e) => `(${e.message})`);
  if (/connection: keep-alive|HTTP\/1\.1 200/i.test(out) && !/connection: close/i.test(out)) {
    await raw.write("GET /second HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    out += "\n---\n" + await one().catch((e) => `(${e.message})`);
  }
  return out;
}

for (
  const [label, options, handlers] of [
    ["fetch", {}, fetchHandlers],
    ["no fetch", {}, {}],
    ["no slot", { maxConnections: 0 }, fetchHandlers],
  ] as const
) {
  Deno.test(`first request review (${label}): the same bytes with runtimeInternals on and off`, async () => {
    const hs = [true, false].map((runtimeInternals) =>
      startServer({ ...options, runtimeInternals }, handlers as Handlers<undefined>)
    );
    try {
      for (const first of FIRSTS) {
        // Upgrades stay open: the WebSocket is closed by the client's leaving.
        const [on, off] = await Promise.all(hs.map((h) => answerOrHead(h.port, first)));
        assert.equal(on, off, JSON.stringify(first));
      }
    } finally {
      for (const h of hs) await h.server.shutdown({ timeout: 200 });
    }
  });
}

async function answerOrHead(port: number, text: string): Promise<string> {
  if (!text.includes("Upgrade: websocket") && !text.includes("upgrade: websocket")) {
    return await answer(port, text);
  }
  using raw = await RawClient.connect(port);
  await raw.write(text);
  try {
    const head = await raw.readResponseHead(2_000);
    return `${head.status}`;
  } catch (e) {
    return `(${(e as Error).message})`;
  }
}

Deno.test("first request review: a handler slower than handshakeTimeout still answers the first request", async () => {
  for (const runtimeInternals of [true, false]) {
    const h = startServer({ runtimeInternals, handshakeTimeout: 150 }, fetchHandlers);
    try {
      const text = await answer(
        h.port,
        "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
      );
      assert.ok(text.endsWith("slow"), text);
    } finally {
      await h.server.shutdown({ timeout: 200 });
    }
  }
});

Deno.test("first request review: shutdown while the first request's handler runs finishes its response", async () => {
  for (const runtimeInternals of [true, false]) {
    const h = startServer({ runtimeInternals }, fetchHandlers);
    try {
      using raw = await RawClient.connect(h.port);
      await raw.write("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      await delay(100);
      const stopping = h.server.shutdown({ timeout: 2_000 });
      const text = maskDate(await raw.readToEnd(3_000));
      assert.ok(text.includes("Connection: close") || text.includes("connection: close"), text);
      assert.ok(text.endsWith("slow"), text);
      await stopping;
    } finally {
      await h.server.shutdown({ timeout: 200 });
    }
  }
});
