/**
 * The plain-HTTP hot path (one writer per connection, response heads read
 * from the application's headers in one pass, small responses encoded into
 * pooled buffers, the handler's Request a subclass with its own `signal`)
 * must be invisible to applications: what a handler sees of its request,
 * and the bytes each kind of response body becomes, checked over one
 * keep-alive connection, byte for byte, with a raw TCP client.
 */

import assert from "node:assert/strict";
import { DATE, maskDate } from "../helpers/http_date.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startServer } from "../helpers/harness.ts";

const encoder = new TextEncoder();

Deno.test("fast path: the handler's request is a real Request, request after request", async () => {
  const seen: string[] = [];
  const h = startServer({}, {
    async fetch(request) {
      assert.ok(request instanceof Request);
      assert.equal(Object.prototype.toString.call(request), "[object Request]");
      assert.match(Deno.inspect(request), /^Request \{/);
      assert.equal(request.signal.aborted, false);
      assert.ok(request.signal instanceof AbortSignal);
      assert.equal(request.signal, request.signal, "one signal per request");
      const copy = request.clone();
      assert.equal(copy.url, request.url);
      assert.equal(copy.headers.get("x-n"), request.headers.get("x-n"));
      const body = request.body === null ? "-" : await request.text();
      const n = request.headers.get("x-n");
      seen.push(`${request.method} ${request.url} ${n} ${body} ${request.bodyUsed}`);
      return new Response("ok");
    },
  });
  try {
    using raw = await RawClient.connect(h.port);
    for (let n = 0; n < 3; n++) {
      await raw.write(`GET /get?n=${n} HTTP/1.1\r\nHost: example.com:8080\r\nX-N: ${n}\r\n\r\n`);
      assert.equal((await raw.readResponse()).text, "ok");
      await raw.write(
        `POST /post HTTP/1.1\r\nHost: example.com\r\nX-N: p${n}\r\nContent-Length: 5\r\n\r\nbody${n}`,
      );
      assert.equal((await raw.readResponse()).text, "ok");
    }
    assert.deepEqual(seen, [
      "GET http://example.com:8080/get?n=0 0 - false",
      "POST http://example.com/post p0 body0 true",
      "GET http://example.com:8080/get?n=1 1 - false",
      "POST http://example.com/post p1 body1 true",
      "GET http://example.com:8080/get?n=2 2 - false",
      "POST http://example.com/post p2 body2 true",
    ]);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("fast path: string, bytes, stream and null bodies, for GET and HEAD, byte for byte", async () => {
  let release = () => {};
  const h = startServer({}, {
    fetch(request) {
      switch (new URL(request.url).pathname) {
        case "/string":
          return new Response("héllo");
        case "/bytes":
          return new Response(encoder.encode("bytes"), { headers: { "x-kind": "bytes" } });
        case "/ready-stream":
          // Every piece ready at once: sent whole, with its length.
          return new Response(ReadableStream.from([encoder.encode("a"), encoder.encode("bc")]));
        case "/late-stream": {
          // The second piece comes later: chunked.
          const late = new Promise<void>((resolve) => release = resolve);
          return new Response(
            new ReadableStream<Uint8Array>({
              async start(controller) {
                controller.enqueue(encoder.encode("first"));
                await late;
                controller.enqueue(encoder.encode("second"));
                controller.close();
              },
            }),
          );
        }
        default:
          return new Response(null, { status: 200, headers: { "x-kind": "null" } });
      }
    },
  });
  const text = "content-type: text/plain;charset=UTF-8\r\n";
  const expected: Record<string, string> = {
    "/string": `HTTP/1.1 200 OK\r\n${text}${DATE}Content-Length: 6\r\n\r\nhéllo`,
    "/bytes": `HTTP/1.1 200 OK\r\nx-kind: bytes\r\n${DATE}Content-Length: 5\r\n\r\nbytes`,
    "/ready-stream": `HTTP/1.1 200 OK\r\n${DATE}Content-Length: 3\r\n\r\nabc`,
    "/late-stream":
      `HTTP/1.1 200 OK\r\n${DATE}Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n`,
    "/null": `HTTP/1.1 200 OK\r\nx-kind: null\r\n${DATE}Content-Length: 0\r\n\r\n`,
  };
  const head: Record<string, string> = {
    "/string": `HTTP/1.1 200 OK\r\n${text}${DATE}Content-Length: 6\r\n\r\n`,
    "/bytes": `HTTP/1.1 200 OK\r\nx-kind: bytes\r\n${DATE}Content-Length: 5\r\n\r\n`,
    "/ready-stream": `HTTP/1.1 200 OK\r\n${DATE}Content-Length: 3\r\n\r\n`,
    // A HEAD's body still being produced: no length to announce.
    "/late-stream": `HTTP/1.1 200 OK\r\n${DATE}\r\n`,
    // A null body: nothing declared, nothing announced.
    "/null": `HTTP/1.1 200 OK\r\nx-kind: null\r\n${DATE}\r\n`,
  };
  try {
    using raw = await RawClient.connect(h.port);
    for (const method of ["GET", "HEAD", "GET"]) {
      for (const path of Object.keys(expected)) {
        await raw.write(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        if (path === "/late-stream" && method === "GET") {
          assert.equal(
            maskDate(await raw.readUntil("5\r\nfirst\r\n")),
            `HTTP/1.1 200 OK\r\n${DATE}Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n`,
          );
          release();
          assert.equal(await raw.readUntil("0\r\n\r\n"), "6\r\nsecond\r\n0\r\n\r\n");
          continue;
        }
        const want = method === "GET" ? expected[path] : head[path];
        // As it is on the wire: UTF-8 bytes, read one char per byte.
        const wire = String.fromCharCode(...encoder.encode(want));
        assert.equal(maskDate(await raw.readExactly(wire.length)), wire, `${method} ${path}`);
        if (path === "/late-stream") release();
      }
    }
    assert.equal(h.server.metrics().connectionsAccepted, 1);
  } finally {
    release();
    await h.server.shutdown();
  }
});

Deno.test("fast path: headers the handler set, appended, deleted or declared are sent as before", async () => {
  const h = startServer({}, {
    fetch(request) {
      const path = new URL(request.url).pathname;
      const response = new Response("abc");
      response.headers.delete("content-type");
      response.headers.set("X-Upper", "Value");
      response.headers.append("set-cookie", "a=1");
      response.headers.append("set-cookie", "b=2");
      response.headers.append("x-list", "1");
      response.headers.append("x-list", "2");
      // The framing fields are the server's: a wrong length is not sent.
      response.headers.set("content-length", "99");
      response.headers.set("transfer-encoding", "gzip");
      response.headers.set("keep-alive", "timeout=1");
      if (path === "/close") response.headers.set("connection", "Keep-Alive, Close");
      return response;
    },
  });
  const fields = `set-cookie: a=1\r\nset-cookie: b=2\r\nx-list: 1, 2\r\nx-upper: Value\r\n${DATE}`;
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write("GET /keep HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const kept = `HTTP/1.1 200 OK\r\n${fields}Content-Length: 3\r\n\r\nabc`;
    assert.equal(maskDate(await raw.readExactly(kept.length)), kept);
    await raw.write("GET /close HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert.equal(
      maskDate(await raw.readToEnd()),
      `HTTP/1.1 200 OK\r\n${fields}Content-Length: 3\r\nConnection: close\r\n\r\nabc`,
    );
    assert.equal(raw.ended, "eof");
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("fast path: many connections at once get their own bytes (pooled response buffers)", async () => {
  // Responses of every size around the pooled one (2 KiB with the head),
  // on connections answered concurrently: a buffer handed out again while
  // its write was still in flight would show up as another response's bytes.
  const h = startServer({}, {
    fetch(request) {
      const url = new URL(request.url);
      const size = Number(url.searchParams.get("size"));
      const mark = url.searchParams.get("mark")!;
      return new Response(mark.repeat(size));
    },
  });
  try {
    const clients = await Promise.all(
      Array.from({ length: 12 }, () => RawClient.connect(h.port)),
    );
    await Promise.all(clients.map(async (raw, c) => {
      const mark = String.fromCharCode(0x61 + c);
      for (let i = 0; i < 25; i++) {
        const size = 1900 + c * 7 + i * 5;
        await raw.write(`GET /?size=${size}&mark=${mark} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        const response = await raw.readResponse();
        assert.equal(response.status, 200);
        assert.equal(response.text, mark.repeat(size), `connection ${c}, response ${i}`);
      }
      raw.close();
    }));
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("Date: handler responses and the server's own errors carry the current time; an application's own Date is kept", async () => {
  const h = startServer({}, {
    fetch(request) {
      if (new URL(request.url).pathname === "/own") {
        return new Response("x", { headers: { date: "Tue, 01 Dec 2026 00:00:00 GMT" } });
      }
      return new Response("y");
    },
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const plain = `HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n${DATE}` +
      "Content-Length: 1\r\n\r\ny";
    // maskDate throws unless the date is well-formed and within a minute of now.
    assert.equal(maskDate(await raw.readExactly(plain.length)), plain);
    await raw.write("GET /own HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const own = "HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n" +
      "date: Tue, 01 Dec 2026 00:00:00 GMT\r\nContent-Length: 1\r\n\r\nx";
    assert.equal(await raw.readExactly(own.length), own, "one Date, the application's");
    // The server's own answer to a malformed request (400) has one too.
    await raw.write(
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    );
    const error = await raw.readToEnd();
    assert.match(error, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.equal(error.match(/\r\nDate: /g)?.length, 1, error);
    assert.ok(maskDate(error).includes("\r\nDate: Www, DD Mmm YYYY hh:mm:ss GMT\r\n"), error);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("fast path: a large body in one piece goes out after its head, byte for byte, request after request", async () => {
  // 16 KiB and up, complete at once (a static file's first read): written
  // from where it lies after the head instead of copied in with it. Bytes
  // below 0x80: the raw client reads one char per byte (windows-1252).
  const sizes = [16 * 1024 - 1, 16 * 1024, 64 * 1024, 300_000];
  const bodies = sizes.map((size) =>
    Uint8Array.from({ length: size }, (_, i) => (i * 7 + size) & 0x7f)
  );
  const h = startServer({}, {
    fetch(request) {
      const index = Number(new URL(request.url).searchParams.get("i"));
      return new Response(bodies[index], { headers: { "x-size": String(sizes[index]) } });
    },
  });
  try {
    using raw = await RawClient.connect(h.port);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < sizes.length; i++) {
        await raw.write(`GET /?i=${i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        const head = maskDate(await raw.readUntil("\r\n\r\n"));
        assert.equal(
          head,
          `HTTP/1.1 200 OK\r\nx-size: ${sizes[i]}\r\n${DATE}Content-Length: ${sizes[i]}\r\n\r\n`,
        );
        const body = await raw.readExactly(sizes[i]);
        assert.equal(body.length, sizes[i]);
        const expected = bodies[i];
        for (let k = 0; k < expected.length; k++) {
          if (body.charCodeAt(k) !== expected[k]) {
            assert.fail(`size ${sizes[i]}: byte ${k} differs`);
          }
        }
      }
    }
    assert.equal(h.server.metrics().connectionsAccepted, 1);
  } finally {
    await h.server.shutdown();
  }
});
