/**
 * The CLI's per-request log lines (src/cli/request_log.ts): in-process
 * behind `serve()` with a collecting Logger (text and JSON; bytes for whole
 * files, ranges, 304, HEAD, streamed and cut-short bodies; -q), then the
 * real `tsunagu serve --static` as a subprocess.
 */

import assert from "node:assert/strict";
import { Logger } from "../../src/cli/logger.ts";
import { type FetchHandler, logRequests } from "../../src/cli/request_log.ts";
import { createStaticHandler } from "../../src/cli/static_files.ts";
import { serve } from "../../src/server/server.ts";
import { startExample } from "../helpers/example_process.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { waitUntil } from "../helpers/harness.ts";

const FILE = Uint8Array.from({ length: 150_000 }, (_, i) => i & 0xff);

interface Logged {
  time: string;
  level: string;
  event: string;
  message: string;
  peer: string;
  method: string;
  path: string;
  status: number;
  bytes: number;
  ms: number;
  complete: boolean;
}

/** Serves `handler` wrapped by logRequests; `lines` collects the logger's output. */
async function withLogged(
  format: "text" | "json",
  handler: FetchHandler,
  body: (port: number, lines: string[]) => Promise<void>,
  quiet = false,
): Promise<void> {
  const lines: string[] = [];
  const logger = new Logger({
    format,
    quiet,
    out: (line) => lines.push(line),
    err: (line) => lines.push(line),
  });
  const fetch = logRequests(handler, logger)!;
  const server = serve({ port: 0, hostname: "127.0.0.1" }, { fetch });
  try {
    await body(server.addr.port, lines);
  } finally {
    await server.shutdown();
  }
}

async function withFiles(body: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "tsunagu-request-log-" });
  try {
    await Deno.writeFile(`${root}/file.bin`, FILE);
    await Deno.writeTextFile(`${root}/index.html`, "<p>hi</p>\n");
    await body(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** One request with `Connection: close`, read to the end; resolves with the body length. */
async function exchange(port: number, head: string): Promise<number> {
  using client = await RawClient.connect(port);
  await client.write(head);
  const response = await client.readResponseHead();
  let length = response.leftover.length;
  for (;;) {
    const chunk = new Uint8Array(65536);
    let n: number | null;
    try {
      n = await client.conn.read(chunk);
    } catch {
      break;
    }
    if (n === null) break;
    length += n;
  }
  return length;
}

function req(method: string, target: string, extra = ""): string {
  return `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${extra}\r\n`;
}

Deno.test("request log: JSON lines with method, path, status, bytes sent and ms", async () => {
  await withFiles(async (root) => {
    const files = await createStaticHandler(root);
    await withLogged("json", files, async (port, lines) => {
      const received: number[] = [];
      received.push(await exchange(port, req("GET", "/file.bin?cache=1")));
      received.push(await exchange(port, req("GET", "/file.bin", "Range: bytes=100-199\r\n")));
      received.push(await exchange(port, req("HEAD", "/file.bin")));
      received.push(await exchange(port, req("GET", "/missing")));
      received.push(await exchange(port, req("GET", "/")));
      await waitUntil(() => lines.length === 5, "five request lines");
      const etag = (await fetch(`http://127.0.0.1:${port}/file.bin`, { method: "HEAD" })).headers
        .get("etag")!;
      received.push(await exchange(port, req("GET", "/file.bin", `If-None-Match: ${etag}\r\n`)));
      await waitUntil(() => lines.length === 7, "seven request lines");

      const logged = lines.map((line) => JSON.parse(line) as Logged);
      const summary = logged.map(({ method, path, status, bytes, complete }) => ({
        method,
        path,
        status,
        bytes,
        complete,
      }));
      assert.deepEqual(summary, [
        { method: "GET", path: "/file.bin", status: 200, bytes: FILE.length, complete: true },
        { method: "GET", path: "/file.bin", status: 206, bytes: 100, complete: true },
        { method: "HEAD", path: "/file.bin", status: 200, bytes: 0, complete: true },
        { method: "GET", path: "/missing", status: 404, bytes: 10, complete: true },
        { method: "GET", path: "/", status: 200, bytes: 10, complete: true },
        { method: "HEAD", path: "/file.bin", status: 200, bytes: 0, complete: true },
        { method: "GET", path: "/file.bin", status: 304, bytes: 0, complete: true },
      ]);
      // What the log says was sent is what the client got.
      assert.deepEqual(
        [0, 1, 2, 3, 4, 6].map((i) => logged[i].bytes),
        [received[0], received[1], received[2], received[3], received[4], received[5]],
      );
      for (const line of logged) {
        assert.deepEqual(
          Object.keys(line),
          [
            "time",
            "level",
            "event",
            "message",
            "peer",
            "method",
            "path",
            "status",
            "bytes",
            "ms",
            "complete",
          ],
        );
        assert.equal(line.event, "request");
        assert.equal(line.level, "info");
        assert.match(line.peer, /^127\.0\.0\.1:\d+$/);
        assert.ok(typeof line.ms === "number" && line.ms >= 0 && line.ms < 5_000, `${line.ms}`);
        assert.ok(!Number.isNaN(Date.parse(line.time)));
        assert.match(line.message, /^request 127\.0\.0\.1:\d+ (GET|HEAD) \//);
      }
    });
  });
});

Deno.test("request log: one line per request on a keep-alive connection", async () => {
  await withFiles(async (root) => {
    const files = await createStaticHandler(root);
    await withLogged("json", files, async (port, lines) => {
      using client = await RawClient.connect(port);
      const ask = (method: string, target: string) =>
        `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
      await client.write(ask("GET", "/file.bin") + ask("HEAD", "/") + ask("GET", "/nope"));
      for (const method of ["GET", "HEAD", "GET"]) await client.readResponse({ method });
      await waitUntil(() => lines.length === 3, "three lines");
      const logged = lines.map((line) => JSON.parse(line) as Logged);
      assert.deepEqual(
        logged.map(({ method, path, status, bytes }) => [method, path, status, bytes]),
        [["GET", "/file.bin", 200, FILE.length], ["HEAD", "/", 200, 0], ["GET", "/nope", 404, 10]],
      );
      assert.equal(new Set(logged.map((line) => line.peer)).size, 1, "one connection");
    });
  });
});

Deno.test("request log: text lines", async () => {
  await withFiles(async (root) => {
    const files = await createStaticHandler(root);
    await withLogged("text", files, async (port, lines) => {
      await exchange(port, req("GET", "/file.bin", "Range: bytes=-5\r\n"));
      await exchange(port, req("POST", "/file.bin", "Content-Length: 0\r\n"));
      await waitUntil(() => lines.length === 2, "two lines");
      assert.match(
        lines[0],
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z request 127\.0\.0\.1:\d+ GET \/file\.bin 206 5B \d+(\.\d+)?ms$/,
      );
      assert.match(lines[1], / request 127\.0\.0\.1:\d+ POST \/file\.bin 405 19B [\d.]+ms$/);
    });
  });
});

Deno.test("request log: a streamed body counts every piece; ms runs to its end", async () => {
  const pieces = [3000, 5, 70_000, 1];
  const handler: FetchHandler = () => {
    let i = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          if (i === pieces.length) controller.close();
          else controller.enqueue(new Uint8Array(pieces[i++]));
        },
      }),
    );
  };
  await withLogged("json", handler, async (port, lines) => {
    const got = await exchange(port, req("GET", "/stream"));
    await waitUntil(() => lines.length === 1, "the line");
    const line = JSON.parse(lines[0]) as Logged;
    assert.equal(line.bytes, 73_006);
    assert.ok(got > line.bytes, "the client got the chunked framing too");
    assert.equal(line.complete, true);
    assert.ok(line.ms >= 80, `five waits of 20 ms: ${line.ms}`);
  });
});

Deno.test("request log: a client leaving mid-body logs the bytes so far, incomplete", async () => {
  let produced = 0;
  const handler: FetchHandler = () =>
    new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 1));
          produced += 65536;
          controller.enqueue(new Uint8Array(65536));
        },
      }),
    );
  await withLogged("json", handler, async (port, lines) => {
    const client = await RawClient.connect(port);
    await client.write(req("GET", "/endless"));
    await client.readResponseHead();
    client.close();
    await waitUntil(() => lines.length === 1, "the line");
    const line = JSON.parse(lines[0]) as Logged;
    assert.equal(line.complete, false);
    assert.ok(line.bytes < produced, `${line.bytes} < ${produced}`);
    assert.match(line.message, / \(incomplete\)$/);
  });
});

Deno.test("request log: a body that fails is incomplete; a quiet logger is not wrapped at all", async () => {
  const handler: FetchHandler = () =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(10));
        },
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          controller.error(new Error("broken"));
        },
      }),
    );
  await withLogged("json", handler, async (port, lines) => {
    await exchange(port, req("GET", "/broken"));
    await waitUntil(() => lines.length === 1, "the line");
    const line = JSON.parse(lines[0]) as Logged;
    assert.deepEqual([line.status, line.complete], [200, false]);
  });

  const quiet = new Logger({ format: "text", quiet: true, out: () => {}, err: () => {} });
  assert.equal(logRequests(handler, quiet), handler);
  assert.equal(logRequests(undefined, quiet), undefined);
  const loud = new Logger({ format: "text", quiet: false, out: () => {}, err: () => {} });
  assert.equal(logRequests(undefined, loud), undefined);
});

Deno.test("request log: ms from an injected clock, to when the server settles completed", async () => {
  const lines: string[] = [];
  const logger = new Logger({ format: "json", quiet: false, out: (l) => lines.push(l), err() {} });
  let now = 1000;
  const fetch = logRequests(
    () => {
      now += 12.3456;
      return new Response(null, { status: 204 });
    },
    logger,
    () => now,
  )!;
  const remoteAddr = { transport: "tcp" as const, hostname: "::1", port: 4 };
  // Without `completed` (not called by the server): logged at once.
  await fetch(new Request("http://localhost/x%20y?q=secret"), { remoteAddr } as never);
  const line = JSON.parse(lines[0]) as Logged;
  assert.deepEqual(
    [line.ms, line.path, line.peer, line.status, line.bytes],
    [12.35, "/x%20y", "[::1]:4", 204, 0],
    "the query is left out of the path",
  );
  // With it: logged once it settles, the time running until then.
  const sent = Promise.withResolvers<void>();
  await fetch(
    new Request("http://localhost/later"),
    { remoteAddr, completed: sent.promise } as never,
  );
  await Promise.resolve();
  assert.equal(lines.length, 1, "not before the response is sent");
  now += 100;
  sent.resolve();
  await sent.promise;
  await Promise.resolve();
  assert.equal(lines.length, 2);
  assert.equal((JSON.parse(lines[1]) as Logged).ms, 112.35);
});

Deno.test("request log: tsunagu serve logs requests in text and JSON, and not with -q", async () => {
  await withFiles(async (root) => {
    for (
      const [flags, pattern] of [
        [[], /^\S+ request 127\.0\.0\.1:\d+ GET \/file\.bin 206 10B [\d.]+ms$/],
        [["--log-format", "json"], /^\{"time":.*"event":"request".*"bytes":10,/],
        [["-q"], null],
        [["--log-format", "json", "--quiet"], null],
      ] as const
    ) {
      const process = await startExample(
        "src/cli/main.ts",
        ["--allow-net=127.0.0.1", "--allow-read"],
        ["serve", "--port", "0", "--hostname", "127.0.0.1", "--static", root, ...flags],
      );
      try {
        const port = Number(process.url.port);
        await exchange(port, req("GET", "/file.bin", "Range: bytes=0-9\r\n"));
        const requestLines = () =>
          stdout(process.output()).filter((line) => line.includes("request"));
        if (pattern !== null) {
          await waitUntil(() => requestLines().length === 1, "the request line");
          assert.match(requestLines()[0], pattern);
          if (flags.length > 0) {
            const line = JSON.parse(requestLines()[0]) as Logged;
            assert.deepEqual(
              [line.method, line.path, line.status, line.bytes],
              ["GET", "/file.bin", 206, 10],
            );
          }
        }
        const status = await process.stop("SIGTERM");
        assert.equal(status.code, 0, process.output());
        if (pattern === null) assert.deepEqual(requestLines(), [], `${flags}`);
      } finally {
        await process.close();
      }
    }
  });
});

/** The stdout part of an ExampleProcess's output. */
function stdout(output: string): string[] {
  const start = output.indexOf("--- stdout ---\n") + "--- stdout ---\n".length;
  const end = output.lastIndexOf("--- stderr ---\n");
  return output.slice(start, end).split("\n").filter((line) => line !== "");
}
