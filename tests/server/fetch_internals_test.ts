/**
 * `runtimeInternals` (src/server/fetch_internals.ts): requests without a
 * body built, and simple responses read, through the runtime's private
 * slots, as Deno.serve does. Invisible to applications: a handler sees the
 * same request, and a client gets the same bytes, with the option on (the
 * default) and off; it is in use on the runtime versions it was checked
 * against, so a Deno upgrade that changes those slots fails here, not in
 * production (the server would quietly take the public path).
 */

import assert from "node:assert/strict";
import {
  fastRequest,
  FastRequestState,
  fetchInternalsAvailable,
  takeStaticResponse,
} from "../../src/server/fetch_internals.ts";
import { DATE, maskDate } from "../helpers/http_date.ts";
import { exchange, serversOnAndOff } from "../helpers/option_pair.ts";
import { RawClient, withTimeout } from "../helpers/raw_client.ts";
import { startServer, waitUntil } from "../helpers/harness.ts";

const encoder = new TextEncoder();

Deno.test("runtime internals: in use on the Deno versions they were checked against", () => {
  // Deno 2.9 is the version this was read and measured on; on any other the
  // self-check is skipped and the public path is used.
  assert.equal(fetchInternalsAvailable(), /^2\.9\./.test(Deno.version.deno), Deno.version.deno);
});

Deno.test({
  name: "runtime internals: a request built through the slots is a Request like any other",
  ignore: !fetchInternalsAvailable(),
  async fn() {
    const url = "http://example.com:8080/a?b=1";
    const fields: [string, string][] = [["host", "example.com:8080"], ["x-a", "1"], ["x-a", "2"]];
    const state = new FastRequestState("GET", url, fields);
    const request = fastRequest(state)!;
    const plain = new Request(url);
    for (const [name, value] of fields) plain.headers.append(name, value);
    assert.ok(request instanceof Request);
    assert.equal(Deno.inspect(request), Deno.inspect(plain));
    for (const copy of [request.clone(), new Request(request)]) {
      assert.equal(copy.url, url);
      assert.deepEqual([...copy.headers], [...plain.headers]);
    }
    const changed = new Request(request, { method: "POST", body: "x" });
    assert.equal(changed.method, "POST");
    assert.equal(await changed.text(), "x");
    assert.equal(await request.text(), "");
    assert.equal(request.bodyUsed, false, "no body, nothing used (as for a plain GET)");
    // The handler's changes stay in its request: the parsed head is left alone.
    request.headers.delete("x-a");
    assert.equal(request.headers.get("x-a"), null);
    assert.deepEqual(fields[1], ["x-a", "1"]);
    // The signal aborts when the client leaves, made before or after.
    const early = request.signal;
    state.clientLeft();
    assert.equal(early.aborted, true);
    assert.equal((early.reason as DOMException).name, "AbortError");
    const late = fastRequest(new FastRequestState("HEAD", url, fields))!;
    assert.equal(late.method, "HEAD");
    assert.equal(late.signal.aborted, false);
  },
});

Deno.test({
  name:
    "runtime internals: only whole, unread, status-200 responses with at most a content type are read from the slots",
  ignore: !fetchInternalsAvailable(),
  async fn() {
    const take = (response: Response) => {
      const taken = takeStaticResponse(response);
      return taken === null || taken === "used"
        ? taken
        : { body: taken.body, contentType: taken.contentType };
    };
    assert.deepEqual(take(new Response("hé")), {
      body: "hé",
      contentType: "text/plain;charset=UTF-8",
    });
    assert.deepEqual(take(Response.json({ a: 1 })), {
      body: '{"a":1}',
      contentType: "application/json",
    });
    const bytes = take(new Response(new Uint8Array([1, 2, 3])));
    assert.deepEqual(bytes, { body: new Uint8Array([1, 2, 3]), contentType: null });
    // Taken once: the body counts as used, as sending it would make it.
    const once = new Response("x");
    assert.notEqual(take(once), null);
    assert.equal(take(once), "used");
    assert.equal(once.bodyUsed, true);
    // Read by the handler first: used, whichever way it was read.
    const read = new Response("x");
    await read.text();
    assert.equal(take(read), null, "the public path reports it (bodyUsed)");
    // Everything else goes the public way.
    assert.equal(take(new Response("x", { status: 201 })), null);
    assert.equal(take(new Response("x", { headers: { "x-a": "1" } })), null);
    const touched = new Response("x");
    touched.headers.set("x-b", "1");
    assert.equal(take(touched), null);
    assert.equal(take(new Response(ReadableStream.from([encoder.encode("x")]))), null);
    assert.equal(take(new Response(null)), null);
  },
});

/** What a handler can see of a request, as text. */
async function describe(request: Request): Promise<string> {
  const copy = request.clone();
  return JSON.stringify({
    url: request.url,
    method: request.method,
    headers: [...request.headers],
    get: request.headers.get("x-dup"),
    inspect: Deno.inspect(request),
    clone: [copy.url, [...copy.headers]],
    rebuilt: [...new Request(request, { headers: { "x-b": "1" } }).headers],
    text: await request.text(),
    bodyUsed: request.bodyUsed,
    fields: [request.redirect, request.cache, request.mode, request.credentials, request.referrer],
    signal: request.signal.aborted,
  });
}

Deno.test("runtime internals: a handler sees the same request with the option on and off", async () => {
  const seen: string[][] = [[], []];
  const record = (index: number) => async (request: Request) => {
    seen[index].push(await describe(request));
    return new Response("ok");
  };
  const hs = [
    startServer({ runtimeInternals: true }, { fetch: record(0) }),
    startServer({ runtimeInternals: false }, { fetch: record(1) }),
  ];
  try {
    const requests: [string, string, string][] = [
      ["GET", "/a?b=1", "example.com:8080"],
      // Names a URL parser rewrites: upper-case host, default port, dot
      // segments, characters it escapes.
      ["GET", "/x/./y/../z?q=%7e&r={|}", "EXAMPLE.com:80"],
      ["HEAD", "/head", "127.0.0.1"],
      ["GET", "/", "[::1]:9"],
    ];
    for (const [method, target, host] of requests) {
      for (const h of hs) {
        using raw = await RawClient.connect(h.port);
        await raw.write(
          `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\nX-Dup: 1\r\nx-dup: 2\r\nConnection: close\r\n\r\n`,
        );
        assert.equal((await raw.readResponseHead()).status, 200);
      }
    }
    assert.equal(seen[0].length, requests.length);
    assert.deepEqual(seen[0], seen[1]);
  } finally {
    for (const h of hs) await h.server.shutdown();
  }
});

Deno.test("runtime internals: every kind of response is the same bytes with the option on and off", async () => {
  const large = "é".repeat(12_000); // 24,000 bytes: written after its head
  const handler = async (request: Request): Promise<Response> => {
    switch (new URL(request.url).pathname) {
      case "/text":
        return new Response("héllo");
      case "/empty":
        return new Response("");
      case "/json":
        return Response.json({ a: [1, "é"] });
      case "/plain":
        return new Response("p", { headers: { "content-type": "text/plain" } });
      case "/bytes":
        return new Response(encoder.encode("bytes"));
      case "/large-text":
        return new Response(large);
      case "/large-bytes":
        return new Response(new Uint8Array(70_000).fill(0x61));
      case "/status":
        return new Response("created", { status: 201 });
      case "/headers":
        return new Response("h", { headers: { "content-type": "text/plain", "x-a": "1" } });
      case "/touched": {
        const response = new Response("t");
        response.headers.set("x-b", "2");
        return response;
      }
      case "/body-asked": {
        // Asked for, not read: still whole.
        const response = new Response("asked");
        void response.body;
        return response;
      }
      case "/used": {
        const response = new Response("u");
        await response.text();
        return response;
      }
      case "/stream":
        return new Response(ReadableStream.from([encoder.encode("s1"), encoder.encode("s2")]));
      default:
        return new Response(null, { status: 404 });
    }
  };
  const hs = serversOnAndOff({ fetch: handler });
  try {
    const paths = [
      "/text",
      "/empty",
      "/json",
      "/plain",
      "/bytes",
      "/large-text",
      "/large-bytes",
      "/status",
      "/headers",
      "/touched",
      "/body-asked",
      "/used",
      "/stream",
      "/missing",
    ];
    for (const method of ["GET", "HEAD"]) {
      for (const path of paths) {
        const [on, off] = [
          await exchange(hs[0].port, method, path),
          await exchange(hs[1].port, method, path),
        ];
        assert.equal(on, off, `${method} ${path}`);
      }
    }
    // And what they are: spot checks of the option's own path.
    assert.equal(
      await exchange(hs[0].port, "GET", "/text"),
      `HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n${DATE}Content-Length: 6\r\n` +
        `Connection: close\r\n\r\n${String.fromCharCode(...encoder.encode("héllo"))}`,
    );
    assert.match(await exchange(hs[0].port, "GET", "/used"), /^HTTP\/1\.1 500 /);
    const head = await exchange(hs[0].port, "HEAD", "/large-text");
    assert.ok(head.includes("Content-Length: 24000\r\n"), head);
    assert.ok(head.endsWith("\r\n\r\n"), head);
  } finally {
    for (const h of hs) await h.server.shutdown();
  }
});

Deno.test("runtime internals: request.signal aborts when the client leaves, with the option on and off", async () => {
  for (const runtimeInternals of [true, false]) {
    const signals: AbortSignal[] = [];
    let release = () => {};
    const work = new Promise<void>((resolve) => release = resolve);
    const h = startServer({ runtimeInternals }, {
      async fetch(request) {
        signals.push(request.signal);
        await work;
        return new Response("late");
      },
    });
    try {
      const leaving = await RawClient.connect(h.port);
      await leaving.write("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      await waitUntil(() => signals.length === 1, "the request reached the handler");
      const aborted = new Promise((resolve) => signals[0].addEventListener("abort", resolve));
      leaving.close();
      await withTimeout(
        aborted,
        5_000,
        `the signal to abort (runtimeInternals ${runtimeInternals})`,
      );
      assert.equal((signals[0].reason as DOMException).name, "AbortError");
    } finally {
      release();
      await h.server.shutdown();
    }
  }
});

Deno.test("runtime internals: the option must be a boolean", () => {
  assert.throws(
    // @ts-expect-error: a string where a boolean belongs
    () => startServer({ runtimeInternals: "yes" }),
    /runtimeInternals must be a boolean/,
  );
});

Deno.test("runtime internals: pipelined keep-alive requests each show the handler their own head, as with the option off", async () => {
  // The usual GET and HEAD are answered from the scanned head, and their
  // headers made from the head's text only when the handler reads them
  // (here after an await, when the connection's buffer may hold the next
  // request): what the handler sees must not depend on that.
  const handler = async (request: Request) => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    const { method, url } = request;
    return new Response(JSON.stringify({ method, url, headers: [...request.headers] }));
  };
  const hs = serversOnAndOff({ fetch: handler });
  try {
    const requests =
      "GET /a?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\nx-a:  2 \r\nUser-Agent: t\r\n\r\n" +
      "HEAD /b HTTP/1.1\r\nHOST: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n" +
      "GET /c HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: Keep-Alive\r\nX-Late: yes\r\n\r\n" +
      "GET /d HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    const answers: string[] = [];
    for (const h of hs) {
      using raw = await RawClient.connect(h.port);
      await raw.write(requests);
      answers.push(maskDate(await raw.readToEnd()));
    }
    assert.equal(answers[0], answers[1]);
    // Each body is a JSON object ending in "]]}", followed by the next response.
    const bodies = answers[0].match(/\{"method".*?\]\]\}/g) ?? [];
    assert.deepEqual(bodies.map((body) => JSON.parse(body)), [
      {
        method: "GET",
        url: `http://127.0.0.1/a?x=1`,
        headers: [["host", "127.0.0.1"], ["user-agent", "t"], ["x-a", "1, 2"]],
      },
      {
        method: "GET",
        url: "http://127.0.0.1/c",
        headers: [["connection", "Keep-Alive"], ["host", "127.0.0.1"], ["x-late", "yes"]],
      },
      {
        method: "GET",
        url: "http://127.0.0.1/d",
        headers: [["connection", "close"], ["host", "127.0.0.1"]],
      },
    ]);
    // The HEAD got its head alone, the HTTP/1.0 request its keep-alive, and
    // the last one the close it asked for.
    assert.equal((answers[0].match(/HTTP\/1\.1 200 OK\r\n/g) ?? []).length, 4, answers[0]);
    assert.equal((answers[0].match(/^Connection: keep-alive\r$/gm) ?? []).length, 1, answers[0]);
    assert.ok(answers[0].includes("Connection: close\r\n"), answers[0]);
  } finally {
    for (const h of hs) await h.server.shutdown();
  }
});

Deno.test("runtime internals: heads of one length on one connection are each read afresh", async () => {
  // A connection whose requests keep one head length reuses the view its
  // heads are decoded from: the bytes under it are the new request's.
  const h = startServer({}, { fetch: (request) => new Response(new URL(request.url).pathname) });
  try {
    using raw = await RawClient.connect(h.port);
    const paths = ["/p1", "/p2", "/p3", "/q4"];
    for (const path of paths) {
      await raw.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      const response = await raw.readResponse();
      assert.equal(response.status, 200);
      assert.equal(response.text, path);
    }
    // Two in a connection's first read (the second decoded from the
    // server's shared first buffer), then one of the same length in the
    // next read (the connection's own buffer by then).
    using fresh = await RawClient.connect(h.port);
    await fresh.write(
      `GET /aa HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /p2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
    );
    assert.equal((await fresh.readResponse()).text, "/aa");
    assert.equal((await fresh.readResponse()).text, "/p2");
    await fresh.write(`GET /p3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    assert.equal((await fresh.readResponse()).text, "/p3");
    // And pipelined: all four in one write.
    await raw.write(
      paths.map((path) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`).join(""),
    );
    for (const path of paths) assert.equal((await raw.readResponse()).text, path);
  } finally {
    await h.server.shutdown();
  }
});
