/**
 * Review of the keep-alive path by callbacks (HttpSession#nextRequest):
 * what it must keep of the async path it replaced, over real sockets, with
 * the option on and off.
 */

import assert from "node:assert/strict";
import { RawClient, withTimeout } from "../helpers/raw_client.ts";
import { delay, startServer } from "../helpers/harness.ts";

function get(path: string, extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
}

for (const runtimeInternals of [true, false]) {
  Deno.test(`keep-alive review (runtimeInternals ${runtimeInternals}): shutdown from the handler of a pipelined request waits for its response`, async () => {
    const huge = "y".repeat(16 * 1024 * 1024);
    let stopped: Promise<void> | null = null;
    const h = startServer({ runtimeInternals }, {
      fetch(request, info) {
        if (new URL(request.url).pathname !== "/huge") return new Response("first");
        // The server stops while this response is still to be written: it
        // must be written whole (as shutdown promises), then the connection closes.
        stopped = info.server.shutdown({ timeout: 10_000 });
        return new Response(huge);
      },
    });
    try {
      using raw = await RawClient.connect(h.port);
      // Both at once: the second head is in the buffer when the first is answered.
      await raw.write(get("/first") + get("/huge"));
      assert.equal((await raw.readResponse()).text, "first");
      // The client does not read for a while: the 16 MiB stay in the write.
      await delay(300);
      const response = await raw.readResponse({ timeoutMs: 10_000 });
      assert.equal(response.text.length, huge.length);
      assert.equal(response.headers.get("connection"), "close");
      assert.equal(await raw.expectEnd(), "eof");
      await withTimeout(stopped!, 5_000, "shutdown");
    } finally {
      await h.server.shutdown();
    }
  });
}

for (const runtimeInternals of [true, false]) {
  Deno.test(`keep-alive review (runtimeInternals ${runtimeInternals}): shutdown as a response completes closes the idle connection at once`, async () => {
    let stopped: Promise<void> | null = null;
    const h = startServer({ runtimeInternals, keepAliveTimeout: 60_000 }, {
      fetch(request, info) {
        const path = new URL(request.url).pathname;
        // Run as the response is complete: the session is still answering,
        // about to wait for the next request.
        if (path === "/stop") info.completed.then(() => stopped = info.server.shutdown());
        return new Response(path);
      },
    });
    try {
      using raw = await RawClient.connect(h.port);
      for (const path of ["/1", "/2", "/stop"]) {
        await raw.write(get(path));
        assert.equal((await raw.readResponse()).text, path);
      }
      const started = Date.now();
      assert.equal(await raw.expectEnd(), "eof");
      await withTimeout(stopped!, 5_000, "shutdown");
      const took = Date.now() - started;
      assert.ok(took < 1_000, `an idle connection is closed at once, not after ${took} ms`);
    } finally {
      await h.server.shutdown();
    }
  });
}

for (const runtimeInternals of [true, false]) {
  Deno.test(`keep-alive review (runtimeInternals ${runtimeInternals}): request.signal aborts when a client leaves after pipelining a bare LF`, async () => {
    let aborted: Promise<void> | null = null;
    const h = startServer({ runtimeInternals }, {
      fetch(request) {
        if (new URL(request.url).pathname !== "/wait") return new Response("x");
        aborted = new Promise((resolve) =>
          request.signal.addEventListener("abort", () => resolve())
        );
        return new Promise<Response>(() => {}); // never answers
      },
    });
    try {
      const raw = await RawClient.connect(h.port);
      await raw.write(get("/first"));
      await raw.readResponse();
      // What follows the request is no valid head (a bare LF), but the
      // client leaving must still be noticed while the handler runs.
      await raw.write(get("/wait") + "GET /next HTTP/1.1\n");
      await delay(100);
      raw.close();
      await withTimeout(aborted!, 3_000, "the request's signal");
    } finally {
      await h.server.shutdown({ timeout: 200 });
    }
  });
}
