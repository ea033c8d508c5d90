// A throwing `fetch` or `upgrade` handler: the client gets 500, the error
// reaches `error(err, undefined)` (there is no socket yet), and the server
// keeps serving. The README promises exactly this.

import assert from "node:assert/strict";
import { serve } from "../../mod.ts";

Deno.test("a throwing fetch answers 500 and reaches error() without a socket", async () => {
  const seen: { error: unknown; socket: unknown }[] = [];
  const server = serve({ port: 0, hostname: "127.0.0.1" }, {
    fetch(request) {
      if (new URL(request.url).pathname === "/boom") throw new Error("fetch failed");
      return new Response("fine");
    },
    error(error, socket) {
      seen.push({ error, socket });
    },
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const failed = await fetch(`${base}/boom`);
    await failed.body?.cancel();
    assert.equal(failed.status, 500);
    assert.equal(seen.length, 1);
    assert.equal((seen[0].error as Error).message, "fetch failed");
    assert.equal(seen[0].socket, undefined);
    const fine = await fetch(`${base}/ok`);
    assert.equal(await fine.text(), "fine");
  } finally {
    await server.shutdown();
  }
});

Deno.test("a rejecting upgrade answers 500 and reaches error() without a socket", async () => {
  const seen: { error: unknown; socket: unknown }[] = [];
  const server = serve({ port: 0, hostname: "127.0.0.1" }, {
    upgrade() {
      return Promise.reject(new Error("auth service down"));
    },
    error(error, socket) {
      seen.push({ error, socket });
    },
  });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(new TextEncoder().encode(
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ));
    const buffer = new Uint8Array(512);
    const n = await conn.read(buffer);
    conn.close();
    assert.match(new TextDecoder().decode(buffer.subarray(0, n ?? 0)), /^HTTP\/1\.1 500 /);
    assert.equal(seen.length, 1);
    assert.equal((seen[0].error as Error).message, "auth service down");
    assert.equal(seen[0].socket, undefined);
  } finally {
    await server.shutdown();
  }
});
