/**
 * Static files over real HTTP: validators, 304, ranges (206/416), If-Range,
 * HEAD, byte for byte with raw TCP and with Deno's `fetch`. The handler runs
 * in-process behind `serve()` (what `tsunagu serve --static` does), so the
 * resource sanitizer sees every file the handler opens and checks it is
 * closed, also when a client leaves mid-body. The last test runs the CLI.
 *
 * Raw requests send `Connection: close`, so they read one response to the
 * end with or without keep-alive on the server.
 */

import assert from "node:assert/strict";
import { createStaticHandler } from "../../src/cli/static_files.ts";
import { serve, type Server } from "../../src/server/server.ts";
import { startExample } from "../helpers/example_process.ts";
import { RawClient, type ResponseHead } from "../helpers/raw_client.ts";
import { waitUntil } from "../helpers/harness.ts";

const DATA_SIZE = 200_003; // more than three 64 KiB reads, not a multiple of one
const DATA = Uint8Array.from({ length: DATA_SIZE }, (_, i) => (i * 31 + 7) & 0xff);
const HTML = "<!doctype html><title>t</title><p>hello</p>\n";
const OLD = new Date(Date.UTC(2020, 0, 2, 3, 4, 5, 600));

interface Fixture {
  root: string;
  server: Server<undefined>;
  port: number;
  base: string;
}

async function withFiles(body: (fixture: Fixture) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "tsunagu-static-http-" });
  try {
    await Deno.writeFile(`${root}/data.bin`, DATA);
    await Deno.writeTextFile(`${root}/index.html`, HTML);
    await Deno.writeFile(`${root}/empty.txt`, new Uint8Array(0));
    for (const name of ["data.bin", "index.html", "empty.txt"]) {
      await Deno.utime(`${root}/${name}`, OLD, OLD);
    }
    const files = await createStaticHandler(root);
    const server = serve({ port: 0, hostname: "127.0.0.1" }, {
      fetch: (request) => files(request),
    });
    try {
      const port = server.addr.port;
      await body({ root, server, port, base: `http://127.0.0.1:${port}` });
    } finally {
      await server.shutdown();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** A raw request for `target` with `Connection: close` and the extra header lines. */
function request(method: string, target: string, headers: Record<string, string> = {}): string {
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
  return `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${lines}\r\n`;
}

/** Sends a raw GET and reads the response to the end; Content-Length is checked against the body. */
async function rawGet(port: number, target: string, headers: Record<string, string> = {}) {
  using client = await RawClient.connect(port);
  await client.write(request("GET", target, headers));
  return await client.readHttpResponse();
}

/** Sends a raw request whose answer has no body; asserts that no byte follows the head. */
async function rawBodiless(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string> = {},
): Promise<ResponseHead> {
  using client = await RawClient.connect(port);
  await client.write(request(method, target, headers));
  const head = await client.readResponseHead();
  await client.expectEnd(true);
  return head;
}

function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(`${what}: byte ${i} is ${actual[i]}, not ${expected[i]}`);
    }
  }
}

Deno.test("static http: 200 with a strong ETag, Last-Modified and Accept-Ranges; HEAD the same without a body", async () => {
  await withFiles(async ({ root, port }) => {
    const stat = await Deno.stat(`${root}/data.bin`);
    const etag = `"${DATA_SIZE.toString(16)}-${stat.mtime!.getTime().toString(16)}"`;
    const full = await rawGet(port, "/data.bin");
    assert.equal(full.statusLine, "HTTP/1.1 200 OK");
    assert.equal(full.headers.get("etag"), etag);
    assert.ok(!etag.startsWith("W/"), "strong");
    assert.equal(full.headers.get("last-modified"), "Thu, 02 Jan 2020 03:04:05 GMT");
    assert.equal(full.headers.get("accept-ranges"), "bytes");
    assert.equal(full.headers.get("content-length"), String(DATA_SIZE));
    assert.equal(full.headers.get("content-type"), "application/octet-stream");
    assert.equal(full.headers.get("content-range"), null);
    assertBytes(full.body, DATA, "GET /data.bin");

    const head = await rawBodiless(port, "HEAD", "/data.bin");
    assert.equal(head.status, 200);
    for (
      const name of ["etag", "last-modified", "accept-ranges", "content-length", "content-type"]
    ) {
      assert.equal(head.headers.get(name), full.headers.get(name), `HEAD ${name}`);
    }

    // The index of a directory has validators too; an empty file is 0 bytes.
    const index = await rawGet(port, "/");
    assert.equal(index.text, HTML);
    assert.match(index.headers.get("etag")!, /^"[0-9a-f]+-[0-9a-f]+"$/);
    const empty = await rawGet(port, "/empty.txt");
    assert.equal(empty.status, 200);
    assert.equal(empty.headers.get("content-length"), "0");
    assert.equal(empty.headers.get("etag"), `"0-${OLD.getTime().toString(16)}"`);
    assert.equal(empty.body.length, 0);
  });
});

Deno.test("static http: If-None-Match and If-Modified-Since give 304 with the validators and no body, GET and HEAD", async () => {
  await withFiles(async ({ port }) => {
    const full = await rawGet(port, "/data.bin");
    const etag = full.headers.get("etag")!;
    const lastModified = full.headers.get("last-modified")!;
    const conditions: Record<string, string>[] = [
      { "If-None-Match": etag },
      { "If-None-Match": `"other", W/${etag}` },
      { "If-None-Match": "*" },
      { "If-Modified-Since": lastModified },
      { "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT" },
      // 304 wins over a range.
      { "If-None-Match": etag, Range: "bytes=0-9" },
    ];
    for (const headers of conditions) {
      for (const method of ["GET", "HEAD"]) {
        const what = `${method} ${JSON.stringify(headers)}`;
        const head = await rawBodiless(port, method, "/data.bin", headers);
        assert.equal(head.statusLine, "HTTP/1.1 304 Not Modified", what);
        assert.equal(head.headers.get("etag"), etag, what);
        assert.equal(head.headers.get("last-modified"), lastModified, what);
        assert.equal(head.headers.get("content-length"), null, what);
        assert.equal(head.headers.get("transfer-encoding"), null, what);
        assert.equal(head.headers.get("content-range"), null, what);
      }
    }
    // If-None-Match takes precedence: a stale tag with a fresh date is a 200.
    const stale = await rawGet(port, "/data.bin", {
      "If-None-Match": '"stale"',
      "If-Modified-Since": lastModified,
    });
    assert.equal(stale.status, 200);
    assertBytes(stale.body, DATA, "stale tag");
    // Modified since an earlier second: the whole file.
    const older = await rawGet(port, "/data.bin", {
      "If-Modified-Since": "Thu, 02 Jan 2020 03:04:04 GMT",
    });
    assert.equal(older.status, 200);
    assertBytes(older.body, DATA, "older date");
    // An invalid date is ignored.
    assert.equal((await rawGet(port, "/data.bin", { "If-Modified-Since": "soon" })).status, 200);

    // Deno's fetch sees the same.
    const response = await fetch(`http://127.0.0.1:${port}/data.bin`, {
      headers: { "if-none-match": etag },
    });
    assert.equal(response.status, 304);
    assert.equal(response.headers.get("etag"), etag);
    assert.equal((await response.arrayBuffer()).byteLength, 0);
  });
});

Deno.test("static http: a changed file gets a new ETag; the old one no longer gives 304", async () => {
  await withFiles(async ({ root, port }) => {
    const before = await rawGet(port, "/index.html");
    const etag = before.headers.get("etag")!;
    await Deno.writeTextFile(`${root}/index.html`, HTML.replace("hello", "HELLO"));
    await Deno.utime(`${root}/index.html`, OLD, new Date(OLD.getTime() + 1));
    const after = await rawGet(port, "/index.html", { "If-None-Match": etag });
    assert.equal(after.status, 200);
    assert.notEqual(after.headers.get("etag"), etag);
    assert.equal(after.text, HTML.replace("hello", "HELLO"));
  });
});

Deno.test("static http: Range a-b, a- and -n give 206 with Content-Range and exactly those bytes", async () => {
  await withFiles(async ({ port, base }) => {
    const last = DATA_SIZE - 1;
    const cases: [string, number, number][] = [
      ["bytes=0-0", 0, 0],
      ["bytes=0-99", 0, 99],
      ["bytes=65530-131080", 65530, 131080], // across read boundaries
      ["bytes=100000-", 100000, last],
      ["bytes=0-", 0, last],
      ["bytes=-1", last, last],
      ["bytes=-70000", DATA_SIZE - 70000, last],
      ["bytes=-999999", 0, last],
      [`bytes=199990-${DATA_SIZE + 1000}`, 199990, last],
      [`bytes=${last}-${last}`, last, last],
    ];
    for (const [range, start, end] of cases) {
      const expected = DATA.subarray(start, end + 1);
      const raw = await rawGet(port, "/data.bin", { Range: range });
      assert.equal(raw.status, 206, range);
      assert.equal(raw.headers.get("content-range"), `bytes ${start}-${end}/${DATA_SIZE}`, range);
      assert.equal(raw.headers.get("content-length"), String(end - start + 1), range);
      assert.equal(raw.headers.get("content-type"), "application/octet-stream", range);
      assert.ok(raw.headers.get("etag"), range);
      assertBytes(raw.body, expected, `raw ${range}`);

      const response = await fetch(`${base}/data.bin`, { headers: { range } });
      assert.equal(response.status, 206, range);
      assert.equal(response.headers.get("content-range"), `bytes ${start}-${end}/${DATA_SIZE}`);
      assertBytes(new Uint8Array(await response.arrayBuffer()), expected, `fetch ${range}`);
    }
    // A range of a small text file.
    const text = await rawGet(port, "/index.html", { Range: "bytes=26-30" });
    assert.equal(text.status, 206);
    assert.equal(text.text, HTML.slice(26, 31));
  });
});

Deno.test("static http: an unsatisfiable range is 416 with bytes */size; several ranges and junk give the whole file", async () => {
  await withFiles(async ({ port }) => {
    for (
      const [target, range, size] of [
        ["/data.bin", `bytes=${DATA_SIZE}-`, DATA_SIZE],
        ["/data.bin", `bytes=${DATA_SIZE + 5}-${DATA_SIZE + 10}`, DATA_SIZE],
        ["/data.bin", "bytes=-0", DATA_SIZE],
        ["/empty.txt", "bytes=0-", 0],
        ["/empty.txt", "bytes=-5", 0],
      ] as const
    ) {
      const response = await rawGet(port, target, { Range: range });
      assert.equal(response.status, 416, range);
      assert.equal(response.headers.get("content-range"), `bytes */${size}`, range);
      assert.equal(response.text, "range not satisfiable\n");
    }
    for (
      const range of [
        "bytes=0-1,5-9",
        "bytes=0-1, 100-200, 300-",
        "bytes=9-5",
        "bytes=abc",
        "lines=0-1",
        "bytes 0-1",
      ]
    ) {
      const response = await rawGet(port, "/data.bin", { Range: range });
      assert.equal(response.statusLine, "HTTP/1.1 200 OK", range);
      assert.equal(response.headers.get("accept-ranges"), "bytes");
      assert.equal(response.headers.get("content-range"), null);
      assertBytes(response.body, DATA, range);
    }
    // HEAD ignores Range (RFC 9110 §14.2): the whole file's length, no body.
    for (const range of ["bytes=0-9", `bytes=${DATA_SIZE}-`]) {
      const head = await rawBodiless(port, "HEAD", "/data.bin", { Range: range });
      assert.equal(head.status, 200, range);
      assert.equal(head.headers.get("content-length"), String(DATA_SIZE));
    }
  });
});

Deno.test("static http: If-Range with the current ETag or date keeps the range; a stale one gives the whole file", async () => {
  await withFiles(async ({ port, base }) => {
    const full = await rawGet(port, "/data.bin");
    const etag = full.headers.get("etag")!;
    const lastModified = full.headers.get("last-modified")!;
    for (const ifRange of [etag, lastModified]) {
      const response = await rawGet(port, "/data.bin", {
        Range: "bytes=10-19",
        "If-Range": ifRange,
      });
      assert.equal(response.status, 206, ifRange);
      assertBytes(response.body, DATA.subarray(10, 20), ifRange);
    }
    for (
      const ifRange of ['"stale"', `W/${etag}`, "Thu, 02 Jan 2020 03:04:04 GMT", "not a validator"]
    ) {
      const response = await rawGet(port, "/data.bin", {
        Range: "bytes=10-19",
        "If-Range": ifRange,
      });
      assert.equal(response.status, 200, ifRange);
      assert.equal(response.headers.get("content-length"), String(DATA_SIZE));
      assertBytes(response.body, DATA, ifRange);
      // Stale, an unsatisfiable range is not 416 either: the client wants the new file.
      const beyond = await rawGet(port, "/data.bin", {
        Range: `bytes=${DATA_SIZE}-`,
        "If-Range": ifRange,
      });
      assert.equal(beyond.status, 200, ifRange);
    }
    const response = await fetch(`${base}/data.bin`, {
      headers: { range: "bytes=-5", "if-range": '"stale"' },
    });
    assert.equal(response.status, 200);
    assertBytes(new Uint8Array(await response.arrayBuffer()), DATA, "fetch stale If-Range");
  });
});

Deno.test("static http: 200, 304, HEAD, 206, 416 and several ranges pipelined on one keep-alive connection, byte for byte", async () => {
  await withFiles(async ({ port }) => {
    const etag = (await rawGet(port, "/data.bin")).headers.get("etag")!;
    using client = await RawClient.connect(port);
    const ask = (method: string, headers: Record<string, string> = {}) =>
      `${method} /data.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") + "\r\n";
    const requests: [string, Record<string, string>, number, Uint8Array][] = [
      ["GET", {}, 200, DATA],
      ["GET", { "If-None-Match": etag }, 304, new Uint8Array(0)],
      ["HEAD", {}, 200, new Uint8Array(0)],
      ["GET", { Range: "bytes=70000-70009" }, 206, DATA.subarray(70000, 70010)],
      [
        "GET",
        { Range: `bytes=${DATA_SIZE}-` },
        416,
        new TextEncoder().encode("range not satisfiable\n"),
      ],
      ["HEAD", { "If-None-Match": etag }, 304, new Uint8Array(0)],
      ["GET", { Range: "bytes=0-1,3-4" }, 200, DATA],
      ["GET", { Range: "bytes=-3", "If-Range": etag }, 206, DATA.subarray(DATA_SIZE - 3)],
    ];
    // All written at once: the server answers them in order on this connection.
    await client.write(requests.map(([method, headers]) => ask(method, headers)).join(""));
    for (const [method, headers, status, body] of requests) {
      const what = `${method} ${JSON.stringify(headers)}`;
      const response = await client.readResponse({ method });
      assert.equal(response.status, status, what);
      assert.notEqual(response.headers.get("connection")?.toLowerCase(), "close", what);
      assertBytes(response.body, body, what);
    }
    assert.equal(client.pending.length, 0, "nothing more than the eight responses");
  });
});

Deno.test("static http: If-Match and If-Unmodified-Since failing give 412", async () => {
  await withFiles(async ({ port }) => {
    const etag = (await rawGet(port, "/data.bin")).headers.get("etag")!;
    assert.equal((await rawGet(port, "/data.bin", { "If-Match": etag })).status, 200);
    const failed = await rawGet(port, "/data.bin", { "If-Match": '"other"' });
    assert.equal(failed.status, 412);
    assert.equal(
      (await rawGet(port, "/data.bin", {
        "If-Unmodified-Since": "Thu, 02 Jan 2020 03:04:04 GMT",
      })).status,
      412,
    );
  });
});

Deno.test("static http: a range near the end of a 5 GiB sparse file is read at its offset, not through the file", async () => {
  await withFiles(async ({ root, port }) => {
    const size = 5 * 1024 ** 3;
    const tail = new TextEncoder().encode("the end of five gibibytes");
    {
      using file = await Deno.open(`${root}/sparse.bin`, { write: true, create: true });
      await file.truncate(size);
      await file.seek(size - tail.length, Deno.SeekMode.Start);
      await file.write(tail);
    }
    const started = performance.now();
    const suffix = await rawGet(port, "/sparse.bin", { Range: `bytes=-${tail.length}` });
    assert.equal(suffix.status, 206);
    assert.equal(
      suffix.headers.get("content-range"),
      `bytes ${size - tail.length}-${size - 1}/${size}`,
    );
    assertBytes(suffix.body, tail, "tail of the sparse file");
    const middle = await rawGet(port, "/sparse.bin", {
      Range: `bytes=${size - tail.length - 4}-${size - tail.length + 2}`,
    });
    assertBytes(middle.body, new Uint8Array([0, 0, 0, 0, ...tail.subarray(0, 3)]), "across");
    // Reading 5 GiB would take seconds and that much memory; an offset read is instant.
    assert.ok(performance.now() - started < 2_000, "answered without reading the file through");
    const head = await rawBodiless(port, "HEAD", "/sparse.bin");
    assert.equal(head.headers.get("content-length"), String(size));
  });
});

Deno.test({
  name: "static http: a client leaving mid-body closes the file",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // Open descriptors are counted in /proc/self/fd: the file's must go once
    // the server notices the client left, well before any shutdown.
    const openFds = () => [...Deno.readDirSync("/proc/self/fd")].length;
    await withFiles(async ({ root, port }) => {
      await Deno.writeFile(`${root}/big.bin`, new Uint8Array(8 * 1024 * 1024).fill(7));
      for (const headers of [{}, { Range: "bytes=1000-" }] as Record<string, string>[]) {
        const before = openFds();
        const client = await RawClient.connect(port);
        await client.write(request("GET", "/big.bin", headers));
        const head = await client.readResponseHead();
        assert.ok(head.status === 200 || head.status === 206);
        client.close();
        await waitUntil(() => openFds() <= before, "the file and the connection to be closed");
      }
    });
  },
});

Deno.test("static http: tsunagu serve --static answers conditional and range requests", async () => {
  const root = await Deno.makeTempDir({ prefix: "tsunagu-static-cli-" });
  try {
    await Deno.writeFile(`${root}/data.bin`, DATA);
    const process = await startExample(
      "src/cli/main.ts",
      ["--allow-net=127.0.0.1", "--allow-read"],
      ["serve", "--port", "0", "--hostname", "127.0.0.1", "--static", root, "-q"],
    );
    try {
      const port = Number(process.url.port);
      const full = await rawGet(port, "/data.bin");
      assert.equal(full.headers.get("accept-ranges"), "bytes");
      const etag = full.headers.get("etag")!;
      const notModified = await rawBodiless(port, "GET", "/data.bin", { "If-None-Match": etag });
      assert.equal(notModified.status, 304);
      const part = await rawGet(port, "/data.bin", { Range: "bytes=-10", "If-Range": etag });
      assert.equal(part.status, 206);
      assertBytes(part.body, DATA.subarray(DATA_SIZE - 10), "CLI range");
      const status = await process.stop("SIGTERM");
      assert.equal(status.code, 0, process.output());
    } finally {
      await process.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
