/**
 * Review of 332eeb1: a response the runtime holds whole (a static
 * Response) is written on the callback path with no watch read. The
 * README promises that request.signal aborts when the client leaves
 * before the response is complete; with the option off (the async path,
 * which watches the peer) it does. Both first and later requests.
 */

import assert from "node:assert/strict";
import { delay, startServer, waitUntil } from "../helpers/harness.ts";
import { RawClient, withTimeout } from "../helpers/raw_client.ts";

const BIG = new Uint8Array(64 * 1024 * 1024);

for (const runtimeInternals of [true, false]) {
  for (const later of [false, true]) {
    Deno.test(`static response review (runtimeInternals ${runtimeInternals}, ${later ? "later" : "first"} request): request.signal aborts when the client leaves during a large static response`, async () => {
      const signals: AbortSignal[] = [];
      const h = startServer({ runtimeInternals, idleTimeout: 60_000 }, {
        fetch(request) {
          if (new URL(request.url).pathname !== "/big") return new Response("x");
          signals.push(request.signal);
          return new Response(BIG);
        },
      });
      try {
        const raw = await RawClient.connect(h.port);
        if (later) {
          await raw.write("GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
          await raw.readResponse();
        }
        await raw.write("GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        await waitUntil(() => signals.length === 1, "the request reached the handler");
        // The write is blocked on the client, which reads nothing and leaves.
        await delay(200);
        const aborted = new Promise((resolve) => signals[0].addEventListener("abort", resolve));
        raw.close();
        await withTimeout(aborted, 3_000, "the signal to abort");
        assert.ok(signals[0].aborted);
      } finally {
        await h.server.shutdown({ timeout: 200 });
      }
    });
  }
}
