/**
 * Review of `runtimeInternals` (src/server/fetch_internals.ts): responses
 * and requests at the edges of the runtime's private slots must look the
 * same to handlers and clients with the option on and off.
 */

import assert from "node:assert/strict";
import { fetchInternalsAvailable, takeStaticResponse } from "../../src/server/fetch_internals.ts";
import { maskDate } from "../helpers/http_date.ts";
import { RawClient, withTimeout } from "../helpers/raw_client.ts";
import { startServer, waitUntil } from "../helpers/harness.ts";
import { exchange, serversOnAndOff as servers } from "../helpers/option_pair.ts";

const encoder = new TextEncoder();

/** A Response subclass whose getters say something else than its slots. */
class NotFound extends Response {
  override get status(): number {
    return 404;
  }
}

/** A Response subclass that adds a field through its `headers` getter. */
class Tagged extends Response {
  #headers: Headers | null = null;
  override get headers(): Headers {
    if (this.#headers === null) {
      this.#headers = super.headers;
      this.#headers.set("x-tag", "1");
    }
    return this.#headers;
  }
}

/** A subclass that changes nothing: the same bytes either way. */
class Plain extends Response {}

Deno.test("runtime internals review: responses at the edges of the slots are the same bytes on and off", async () => {
  const large = new Uint8Array(40_000).fill(0x62);
  const handler = async (request: Request): Promise<Response> => {
    switch (new URL(request.url).pathname) {
      case "/locked": {
        // The stream asked for and locked, nothing read: refused (500).
        const response = new Response("locked");
        response.body!.getReader();
        return response;
      }
      case "/tee": {
        const response = new Response("tee");
        void response.body!.tee();
        return response;
      }
      case "/released": {
        // Locked, then released unread: sent whole.
        const response = new Response("released");
        response.body!.getReader().releaseLock();
        return response;
      }
      case "/partly": {
        const response = new Response(new Uint8Array([1, 2, 3]));
        const reader = response.body!.getReader();
        await reader.read();
        reader.releaseLock();
        return response;
      }
      case "/cancelled": {
        const response = new Response("c");
        await response.body!.cancel();
        return response;
      }
      case "/subclass-status":
        return new NotFound("not found");
      case "/subclass-headers":
        return new Tagged("tagged");
      case "/subclass-plain":
        return new Plain("plain", { headers: { "content-type": "text/plain" } });
      case "/rewrapped": {
        // Hono's way to change a response's headers: its body, unread, in a new one.
        const old = new Response("wrapped", { headers: { "content-type": "application/json" } });
        return new Response(old.body, old);
      }
      case "/headers-read": {
        const response = new Response("read", { headers: { "content-type": "text/html" } });
        void response.headers.get("content-type");
        return response;
      }
      case "/mutated": {
        const bytes = encoder.encode("before");
        const response = new Response(bytes);
        bytes.set(encoder.encode("AFTER!"));
        return response;
      }
      case "/mutated-large": {
        const bytes = large.slice();
        const response = new Response(bytes);
        bytes.fill(0x63);
        return response;
      }
      case "/status-text":
        return new Response("st", {
          statusText: "Fine",
          headers: new Headers({ "content-type": "text/plain" }),
        });
      case "/json-init":
        return Response.json({ a: 1 }, {
          status: 200,
          headers: { "content-type": "application/json" },
        });
      case "/params":
        return new Response(new URLSearchParams({ a: "1 2" }));
      case "/arraybuffer":
        return new Response(encoder.encode("ab").buffer);
      case "/dataview":
        return new Response(new DataView(encoder.encode("dv").buffer));
      case "/surrogate":
        return new Response("a\ud800b");
      case "/redirect":
        return Response.redirect("http://example.com/", 302);
      case "/error":
        return Response.error();
      default:
        return new Response(null, { status: 404 });
    }
  };
  const hs = servers({ fetch: handler });
  try {
    const paths = [
      "/locked",
      "/tee",
      "/released",
      "/partly",
      "/cancelled",
      "/subclass-status",
      "/subclass-headers",
      "/subclass-plain",
      "/rewrapped",
      "/headers-read",
      "/mutated",
      "/mutated-large",
      "/status-text",
      "/json-init",
      "/params",
      "/arraybuffer",
      "/dataview",
      "/surrogate",
      "/redirect",
      "/error",
    ];
    for (const method of ["GET", "HEAD"]) {
      for (const path of paths) {
        const on = await exchange(hs[0].port, method, path);
        const off = await exchange(hs[1].port, method, path);
        assert.equal(on, off, `${method} ${path}`);
      }
    }
    // What they are, where it matters.
    assert.match(await exchange(hs[0].port, "GET", "/locked"), /^HTTP\/1\.1 500 /);
    assert.match(await exchange(hs[0].port, "GET", "/subclass-status"), /^HTTP\/1\.1 404 /);
    assert.match(await exchange(hs[0].port, "GET", "/subclass-headers"), /\r\nx-tag: 1\r\n/);
    assert.match(await exchange(hs[0].port, "GET", "/mutated"), /\r\n\r\nbefore$/);
  } finally {
    for (const h of hs) await h.server.shutdown();
  }
});

Deno.test("runtime internals review: a body stream the handler keeps is the server's once returned, on and off", async () => {
  const kept: ReadableStream<Uint8Array>[] = [];
  const hs = servers({
    fetch() {
      const response = new Response("kept");
      kept.push(response.body!);
      return response;
    },
  });
  try {
    for (const h of hs) {
      const answer = await exchange(h.port, "GET", "/");
      assert.match(answer, /\r\n\r\nkept$/);
    }
    assert.equal(kept.length, 2);
    // Sent from the stream: it is locked (and read) with the option on as off.
    assert.equal(kept[0].locked, kept[1].locked);
    assert.equal(kept[0].locked, true);
  } finally {
    for (const h of hs) await h.server.shutdown();
  }
});

Deno.test("runtime internals review: a response returned twice is refused the second time, on and off", async () => {
  for (const runtimeInternals of [true, false]) {
    const shared = new Response("once");
    const h = startServer({ runtimeInternals }, { fetch: () => shared });
    try {
      using raw = await RawClient.connect(h.port);
      await raw.write(
        "GET /1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      );
      const text = maskDate(await raw.readToEnd());
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n/, `runtimeInternals ${runtimeInternals}`);
      assert.match(text, /once(HTTP\/1\.1 500 )/, `runtimeInternals ${runtimeInternals}`);
    } finally {
      await h.server.shutdown();
    }
  }
});

Deno.test("runtime internals review: pipelined, HTTP/1.0 and Expect requests get the same bytes on and off", async () => {
  const hs = servers({
    fetch: (request) =>
      new Response(`${request.method} ${request.url} ${request.headers.get("expect")}`),
  });
  const heads = [
    // Three pipelined requests in one write, the last closing.
    "GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nHEAD /b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" +
    "GET /c HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    // HTTP/1.0 without Host (the URL names the address it came in on), then kept alive.
    "GET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /e HTTP/1.0\r\n\r\n",
    // An expectation with no body to continue.
    "GET /f HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
  ];
  try {
    for (const head of heads) {
      const answers: string[] = [];
      for (const h of hs) {
        using raw = await RawClient.connect(h.port);
        await raw.write(head);
        answers.push(maskDate(await raw.readToEnd()).replaceAll(`:${h.port}`, ":PORT"));
      }
      assert.equal(answers[0], answers[1], head);
    }
  } finally {
    for (const h of hs) await h.server.shutdown();
  }
});

Deno.test("runtime internals review: the upgrade hook sees the same request on and off", async () => {
  const seen: string[][] = [[], []];
  const hs = [true, false].map((runtimeInternals, index) =>
    startServer({ runtimeInternals }, {
      async upgrade(request) {
        seen[index].push(JSON.stringify({
          url: request.url,
          method: request.method,
          headers: [...request.headers],
          inspect: Deno.inspect(request),
          text: await request.text(),
          aborted: request.signal.aborted,
        }));
        return new Response("no", { status: 403 });
      },
    })
  );
  try {
    for (const h of hs) {
      using raw = await RawClient.connect(h.port);
      await raw.write(
        "GET /ws?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      );
      assert.equal((await raw.readResponseHead()).status, 403);
    }
    assert.equal(seen[0].length, 1);
    assert.deepEqual(seen[0], seen[1]);
  } finally {
    for (const h of hs) await h.server.shutdown();
  }
});

Deno.test({
  name:
    "runtime internals review: with the option on, signals made from the request follow the client (as under Deno.serve)",
  ignore: !fetchInternalsAvailable(),
  async fn() {
    const signals: AbortSignal[] = [];
    let release = () => {};
    const work = new Promise<void>((resolve) => release = resolve);
    const h = startServer({ runtimeInternals: true }, {
      async fetch(request) {
        signals.push(
          request.clone().signal,
          new Request(request).signal,
          AbortSignal.any([request.signal]),
        );
        await work;
        return new Response("late");
      },
    });
    try {
      const leaving = await RawClient.connect(h.port);
      await leaving.write("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      await waitUntil(() => signals.length === 3, "the request reached the handler");
      leaving.close();
      await withTimeout(
        Promise.all(
          signals.map((signal) =>
            new Promise((resolve) => signal.addEventListener("abort", resolve))
          ),
        ),
        5_000,
        "every derived signal to abort",
      );
    } finally {
      release();
      await h.server.shutdown();
    }
  },
});

Deno.test({
  name:
    "runtime internals review: the slots are read only for a plain Response whose stream nobody has",
  ignore: !fetchInternalsAvailable(),
  fn() {
    assert.equal(takeStaticResponse(new NotFound("x")), null);
    assert.equal(takeStaticResponse(new Plain("x")), null);
    const asked = new Response("x");
    void asked.body;
    assert.equal(takeStaticResponse(asked), null);
    const bytes = new Response(new Uint8Array([1]));
    void bytes.body;
    assert.equal(takeStaticResponse(bytes), null);
    // Untouched, both kinds of static body are read from the slots.
    assert.notEqual(takeStaticResponse(new Response("x")), null);
    assert.notEqual(takeStaticResponse(new Response(new Uint8Array([1]))), null);
  },
});
