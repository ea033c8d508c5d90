// Every handler gets the server: socket handlers as their last argument,
// upgrade and fetch as `info.server`. Written without any type annotation on
// `server`, in the shape that failed type checking (TS7022) when handlers
// could reach the server only through a closure over serve()'s result.

import assert from "node:assert/strict";
import { serve } from "../../mod.ts";
import { TestClient, waitUntil } from "../helpers/harness.ts";

Deno.test("handlers get the server: publish, metrics and fetch without a closure", async () => {
  const seen: string[] = [];
  const server = serve({ port: 0, hostname: "127.0.0.1" }, {
    upgrade: (request, info) => {
      seen.push(`upgrade ${info.server.connectionCount}`);
      return { data: { name: new URL(request.url).searchParams.get("name") ?? "guest" } };
    },
    open: (socket, server) => {
      socket.subscribe("room");
      seen.push(`open ${server.subscriberCount("room")}`);
    },
    message: (socket, data, server) => server.publish("room", `${socket.data.name}: ${data}`),
    close: (_socket, code, _reason, server) => seen.push(`close ${code} ${server.connectionCount}`),
    fetch: (_request, { server }) => new Response(`${server.metrics().connections} open`),
  });
  try {
    const ann = await TestClient.open(`${server.url}/?name=ann`);
    ann.ws.send("hi");
    assert.equal(await ann.next(), "ann: hi");
    const page = await fetch(`http://127.0.0.1:${server.addr.port}/`);
    assert.equal(await page.text(), "1 open");
    await ann.dispose();
    await waitUntil(() => seen.some((line) => line.startsWith("close")), "the close handler");
    assert.deepEqual(seen, ["upgrade 0", "open 1", "close 1005 0"]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("the error handler gets the server too", async () => {
  let errorServer: unknown = null;
  const server = serve({ port: 0, hostname: "127.0.0.1" }, {
    message() {
      throw new Error("boom");
    },
    error(_error, _socket, server) {
      errorServer = server;
    },
  });
  try {
    const client = await TestClient.open(server.url);
    client.ws.send("x");
    await client.waitClosed();
    assert.equal(errorServer, server);
  } finally {
    await server.shutdown();
  }
});
