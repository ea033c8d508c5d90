/**
 * An existing app behind tsunagu: a real Hono app (npm:hono, a test-only
 * dependency the library never imports) passed as `fetch: app.fetch`, with
 * routes, middleware, JSON bodies, a streamed response, an error handler and
 * `c.env` holding what Deno.serve would pass, and a WebSocket endpoint on the
 * same port. Its requests share keep-alive connections; an upgrade can follow
 * the app's requests on one connection.
 */

import assert from "node:assert/strict";
// Imported inline and pinned, not listed in deno.json: the library has no
// dependencies, and a listed one would be fetched by every `deno task`
// (see tests/offline_test.ts and the npm:ws note in permessage_deflate_test.ts).
// deno-lint-ignore no-import-prefix
import { Hono } from "npm:hono@4.13.19";
// deno-lint-ignore no-import-prefix
import { streamText } from "npm:hono@4.13.19/streaming";
import { serve } from "../../mod.ts";
import { clientFrame } from "../helpers/frames.ts";
import { OP, RawClient } from "../helpers/raw_client.ts";
import { TestClient } from "../helpers/harness.ts";

/** What Deno.serve passes as the second argument, which Hono calls `c.env`. */
type Env = { Bindings: { remoteAddr: Deno.NetAddr; completed: Promise<void> } };

function app(log: string[]) {
  const app = new Hono<Env>();
  // Middleware around every route: before and after the handler.
  app.use("*", async (c, next) => {
    const started = performance.now();
    await next();
    c.header("x-app", "hono");
    c.header("x-time", (performance.now() - started).toFixed(1));
    log.push(`${c.req.method} ${c.req.path} ${c.res.status}`);
  });
  app.use("/admin/*", async (c, next) => {
    if (c.req.header("authorization") !== "Bearer secret") return c.text("no", 401);
    await next();
  });
  app.get("/", (c) => c.html("<h1>home</h1>"));
  app.get("/hello/:name", (c) => c.json({ hello: c.req.param("name"), q: c.req.query("q") }));
  app.post("/items", async (c) => {
    const item = await c.req.json<{ name: string; tags: string[] }>();
    return c.json({ created: item.name, tags: item.tags.length }, 201);
  });
  app.get("/admin/stats", (c) => c.json({ ok: true }));
  app.get("/whoami", (c) => c.text(c.env.remoteAddr.hostname));
  app.get("/stream", (c) =>
    streamText(c, async (stream) => {
      for (let i = 1; i <= 3; i++) {
        await stream.writeln(`line ${i}`);
        await stream.sleep(20);
      }
    }));
  app.get("/boom", () => {
    throw new Error("route failed");
  });
  app.onError((error, c) => c.json({ error: error.message }, 500));
  return app;
}

function start(log: string[]) {
  const hono = app(log);
  return serve({ port: 0, hostname: "127.0.0.1" }, {
    fetch: hono.fetch,
    upgrade(request) {
      if (new URL(request.url).pathname !== "/ws") return new Response("not here", { status: 404 });
    },
    message(socket, data) {
      socket.send(typeof data === "string" ? `echo: ${data}` : data);
    },
  });
}

Deno.test("hono: routes, middleware, JSON bodies, streaming and errors behind fetch, over one connection", async () => {
  const log: string[] = [];
  const server = start(log);
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    const home = await fetch(`${base}/`);
    assert.equal(home.headers.get("content-type"), "text/html; charset=UTF-8");
    assert.equal(home.headers.get("x-app"), "hono");
    assert.equal(await home.text(), "<h1>home</h1>");

    const hello = await fetch(`${base}/hello/ann?q=1`);
    assert.deepEqual(await hello.json(), { hello: "ann", q: "1" });

    const created = await fetch(`${base}/items`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "lamp", tags: ["a", "b"] }),
    });
    assert.equal(created.status, 201);
    assert.deepEqual(await created.json(), { created: "lamp", tags: 2 });

    const denied = await fetch(`${base}/admin/stats`);
    assert.equal(denied.status, 401);
    await denied.body?.cancel();
    const allowed = await fetch(`${base}/admin/stats`, {
      headers: { authorization: "Bearer secret" },
    });
    assert.deepEqual(await allowed.json(), { ok: true });

    const whoami = await fetch(`${base}/whoami`);
    assert.equal(await whoami.text(), "127.0.0.1", "c.env is what Deno.serve passes");

    const stream = await fetch(`${base}/stream`);
    assert.equal(stream.headers.get("transfer-encoding"), "chunked");
    assert.equal(await stream.text(), "line 1\nline 2\nline 3\n");

    const boom = await fetch(`${base}/boom`);
    assert.equal(boom.status, 500);
    assert.deepEqual(await boom.json(), { error: "route failed" });

    const missing = await fetch(`${base}/nowhere`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();

    assert.deepEqual(log, [
      "GET / 200",
      "GET /hello/ann 200",
      "POST /items 201",
      "GET /admin/stats 401",
      "GET /admin/stats 200",
      "GET /whoami 200",
      "GET /stream 200",
      "GET /boom 500",
      "GET /nowhere 404",
    ]);
    assert.equal(server.metrics().connectionsAccepted, 1, "every request on one connection");
  } finally {
    await server.shutdown();
  }
});

Deno.test("hono: a WebSocket endpoint on the same port, also after the app's requests on one connection", async () => {
  const log: string[] = [];
  const server = start(log);
  try {
    const client = await TestClient.open(`${server.url}/ws`);
    client.ws.send("hi");
    assert.equal(await client.next(), "echo: hi");
    await client.dispose();

    // The app's 404 for an upgrade elsewhere comes from the upgrade hook.
    using refused = await RawClient.connect(server.addr.port);
    await refused.handshake({ path: "/elsewhere" }).then(
      () => assert.fail("upgraded"),
      () => {},
    );

    // The page, its data, then the socket: one TCP connection.
    using raw = await RawClient.connect(server.addr.port);
    await raw.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert.equal((await raw.readResponse()).text, "<h1>home</h1>");
    await raw.write(
      "POST /items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
        'Transfer-Encoding: chunked\r\n\r\n9\r\n{"name":"\r\nD\r\nx","tags":[]}\r\n0\r\n\r\n',
    );
    const created = await raw.readResponse();
    assert.equal(created.status, 201);
    assert.equal(created.text, '{"created":"x","tags":0}');
    await raw.handshake({ path: "/ws" });
    await raw.write(clientFrame({ opcode: OP.TEXT, payload: "same connection" }));
    assert.equal(
      new TextDecoder().decode((await raw.readFrame()).payload),
      "echo: same connection",
    );
  } finally {
    await server.shutdown();
  }
});
