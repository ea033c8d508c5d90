/**
 * The static handler's in-memory cache of small files: every answer is the
 * file as it is on disk now, whether the bytes come from memory or not. A
 * file is changed in each way that keeps some of its stamps (same size, the
 * same mtime set back, replaced by a rename) and must be read again; range,
 * 304 and HEAD answers from memory match the file; the budget evicts without
 * mixing files up; bodies handed out are copies.
 *
 * Most tests call the handler in-process: what it returns is what `serve()`
 * sends (the wire format of its answers is covered in static_files_test.ts).
 * One goes through `serve()`, since a kept file's bytes are handed to the
 * server as they are, not copied.
 */

import assert from "node:assert/strict";
import { createStaticHandler, type StaticHandler } from "../../src/cli/static_files.ts";
import { serve } from "../../src/server/server.ts";

const OLD = new Date(Date.UTC(2021, 5, 6, 7, 8, 9, 100));

/** `size` bytes that differ for each `seed`. */
function pattern(size: number, seed: number): Uint8Array<ArrayBuffer> {
  return Uint8Array.from({ length: size }, (_, i) => (i * 13 + seed * 101 + (i >> 8)) & 0xff);
}

async function withRoot(body: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "tsunagu-static-cache-" });
  try {
    await body(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** Writes `bytes` to `path` and sets its times to OLD. */
async function writeOld(path: string, bytes: Uint8Array): Promise<void> {
  await Deno.writeFile(path, bytes);
  await Deno.utime(path, OLD, OLD);
}

/**
 * Waits until files changed before the call have been still long enough to
 * be cached: their ctime (which no one can set back) is two seconds old.
 */
async function settle(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 2_100));
}

async function get(
  files: StaticHandler,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Uint8Array }> {
  const response = await files(new Request(`http://127.0.0.1${path}`, { headers }));
  return {
    status: response.status,
    headers: response.headers,
    body: new Uint8Array(await response.arrayBuffer()),
  };
}

Deno.test("static cache: a file edited in place with the same size and mtime is read again", async () => {
  await withRoot(async (root) => {
    const files = await createStaticHandler(root);
    const first = pattern(40_000, 1);
    await writeOld(`${root}/a.bin`, first);
    await settle();
    assert.deepEqual((await get(files, "/a.bin")).body, first);
    assert.deepEqual((await get(files, "/a.bin")).body, first, "the second answer");

    // Same length, mtime set back to the same instant: only ctime tells.
    const second = pattern(40_000, 2);
    await writeOld(`${root}/a.bin`, second);
    const after = await get(files, "/a.bin");
    assert.equal(after.status, 200);
    assert.deepEqual(after.body, second);
  });
});

Deno.test("static cache: a file replaced by a rename with the same size and times is read again", async () => {
  await withRoot(async (root) => {
    const files = await createStaticHandler(root);
    const first = pattern(30_000, 3);
    await writeOld(`${root}/page.html`, first);
    await settle();
    assert.deepEqual((await get(files, "/page.html")).body, first);

    const second = pattern(30_000, 4);
    await writeOld(`${root}/next.tmp`, second);
    await Deno.rename(`${root}/next.tmp`, `${root}/page.html`);
    assert.deepEqual((await get(files, "/page.html")).body, second);
  });
});

Deno.test("static cache: a file written just now is answered as it is at each request", async () => {
  await withRoot(async (root) => {
    const files = await createStaticHandler(root);
    for (let seed = 0; seed < 20; seed++) {
      const bytes = pattern(1_000, seed);
      await Deno.writeFile(`${root}/live.json`, bytes);
      assert.deepEqual((await get(files, "/live.json")).body, bytes, `version ${seed}`);
    }
  });
});

Deno.test("static cache: ranges, 304, 416 and HEAD from memory match the file", async () => {
  await withRoot(async (root) => {
    const files = await createStaticHandler(root);
    const bytes = pattern(100_000, 5);
    await writeOld(`${root}/m.bin`, bytes);
    await settle();
    const cold = await get(files, "/m.bin", { Range: "bytes=10-19" });
    assert.equal(cold.status, 206);
    assert.deepEqual(cold.body, bytes.subarray(10, 20));

    const full = await get(files, "/m.bin");
    assert.equal(full.status, 200);
    assert.deepEqual(full.body, bytes);
    assert.equal(full.headers.get("content-length"), "100000");
    const etag = full.headers.get("etag")!;
    assert.equal(etag, `"${(100_000).toString(16)}-${OLD.getTime().toString(16)}"`);
    assert.equal(full.headers.get("last-modified"), OLD.toUTCString());

    const tail = await get(files, "/m.bin", { Range: "bytes=-7" });
    assert.equal(tail.status, 206);
    assert.equal(tail.headers.get("content-range"), "bytes 99993-99999/100000");
    assert.deepEqual(tail.body, bytes.subarray(99_993));

    const notModified = await get(files, "/m.bin", { "If-None-Match": etag });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.body.length, 0);

    const unsatisfiable = await get(files, "/m.bin", { Range: "bytes=100000-" });
    assert.equal(unsatisfiable.status, 416);
    assert.equal(unsatisfiable.headers.get("content-range"), "bytes */100000");

    const head = await files(new Request("http://127.0.0.1/m.bin", { method: "HEAD" }));
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("etag"), etag);
    assert.equal(head.body, null);
  });
});

Deno.test("static cache: a body changed by its receiver does not change the next answer", async () => {
  await withRoot(async (root) => {
    const files = await createStaticHandler(root);
    const bytes = pattern(20_000, 6);
    await writeOld(`${root}/c.bin`, bytes);
    await settle();
    for (let round = 0; round < 3; round++) {
      const body = (await get(files, "/c.bin")).body;
      assert.deepEqual(body, bytes, `round ${round}`);
      body.fill(0);
    }
  });
});

Deno.test("static cache: a small budget evicts without mixing files up; 0 turns it off", async () => {
  await withRoot(async (root) => {
    const names = ["a", "b", "c", "d"];
    const contents = names.map((_, i) => pattern(60_000 + i, 10 + i));
    for (const [i, name] of names.entries()) await writeOld(`${root}/${name}.bin`, contents[i]);
    await settle();
    for (const cacheBytes of [130_000, 0]) {
      const files = await createStaticHandler(root, { cacheBytes });
      for (let round = 0; round < 3; round++) {
        for (const [i, name] of names.entries()) {
          const answer = await get(files, `/${name}.bin`);
          assert.deepEqual(answer.body, contents[i], `${name} with ${cacheBytes}, round ${round}`);
        }
      }
    }
  });
});

Deno.test("static cache: a negative or fractional budget is refused", async () => {
  await withRoot(async (root) => {
    for (const cacheBytes of [-1, 1.5, Number.NaN]) {
      await assert.rejects(() => createStaticHandler(root, { cacheBytes }), RangeError);
    }
  });
});

Deno.test("static cache: answers from memory through serve() are the file, request after request", async () => {
  await withRoot(async (root) => {
    const bytes = pattern(65_536, 7);
    await writeOld(`${root}/f.bin`, bytes);
    await settle();
    const files = await createStaticHandler(root);
    const server = serve({ port: 0, hostname: "127.0.0.1" }, {
      fetch: (request) => files(request),
    });
    try {
      const url = `http://127.0.0.1:${server.addr.port}/f.bin`;
      for (let round = 0; round < 5; round++) {
        const whole = await fetch(url);
        assert.equal(whole.status, 200);
        assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), bytes, `round ${round}`);
        const part = await fetch(url, {
          headers: { Range: `bytes=${round * 1000}-${round * 1000 + 99}` },
        });
        assert.equal(part.status, 206);
        assert.deepEqual(
          new Uint8Array(await part.arrayBuffer()),
          bytes.subarray(round * 1000, round * 1000 + 100),
          `range in round ${round}`,
        );
      }
    } finally {
      await server.shutdown();
    }
  });
});
