// Reads and writes through the runtime's ops (src/connection/raw_io.ts):
// the same bytes, the same end and the same failures as conn.read and
// conn.write, and never used where it was not checked (TLS, another
// runtime version).

import assert from "node:assert/strict";
import { ByteReader, type ByteReaderOptions } from "../../src/connection/byte_reader.ts";
import { rawId, writeTo } from "../../src/connection/raw_io.ts";
import { concat } from "../helpers/frames.ts";

const TESTED = /^2\.9\./.test(Deno.version.deno);

async function pair(): Promise<
  { listener: Deno.TcpListener; client: Deno.TcpConn; conn: Deno.TcpConn }
> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const conn = await listener.accept();
  return { listener, client, conn };
}

function options(runtimeInternals: boolean): ByteReaderOptions {
  return { initialSize: 64, settledSize: 64, maxSize: 4096, mode: "read", runtimeInternals };
}

/** Everything the reader gets until the end of the stream, read by readRaw + commit. */
async function readAll(reader: ByteReader): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (;;) {
    const n = reader.commit(await reader.readRaw());
    if (n === 0) break;
    chunks.push(reader.buffer.slice(0, reader.filled));
    reader.consume(reader.filled);
  }
  return concat(...chunks);
}

Deno.test("raw read: a plain TCP connection is read through the op on a tested runtime", async () => {
  const { listener, client, conn } = await pair();
  try {
    const rid = rawId(conn);
    if (TESTED) assert.ok(Number.isInteger(rid) && rid! >= 0, `rid ${rid}`);
    else assert.equal(rid, null, "an untested runtime keeps conn.read");
  } finally {
    client.close();
    conn.close();
    listener.close();
  }
});

Deno.test("raw read: the same bytes and the same end of stream as conn.read, byte for byte", async () => {
  // 20 KiB in writes of odd sizes, read through a buffer that grows from
  // 64 bytes: reads of every length, at every offset of the buffer.
  const sent = new Uint8Array(20_000).map((_, i) => (i * 31 + 7) & 0xff);
  for (const internals of [true, false]) {
    const { listener, client, conn } = await pair();
    try {
      const reader = new ByteReader(conn, options(internals));
      const writing = (async () => {
        for (let at = 0, step = 1; at < sent.length; at += step, step = (step * 7) % 997 + 1) {
          await client.write(sent.subarray(at, Math.min(sent.length, at + step)));
        }
        client.closeWrite();
      })();
      const got = await readAll(reader);
      await writing;
      assert.deepEqual(got, sent, `runtimeInternals ${internals}`);
      // After the end, a read resolves at once with the end again.
      assert.equal(reader.commit(await reader.readRaw()), 0);
    } finally {
      client.close();
      conn.close();
      listener.close();
    }
  }
});

Deno.test("raw read: a read pending when the connection is closed rejects, as conn.read does", async () => {
  for (const internals of [true, false]) {
    const { listener, client, conn } = await pair();
    try {
      const reader = new ByteReader(conn, options(internals));
      const pending = reader.readRaw();
      conn.close();
      await assert.rejects(pending, `runtimeInternals ${internals}`);
    } finally {
      client.close();
      listener.close();
    }
  }
});

Deno.test("raw read: readInto fills the caller's buffer through the op", async () => {
  const { listener, client, conn } = await pair();
  try {
    const reader = new ByteReader(conn, options(true));
    await client.write(new Uint8Array([9, 8, 7, 6]));
    const target = new Uint8Array(16);
    let got = 0;
    while (got < 4) got += (await reader.readInto(target.subarray(got)))!;
    assert.deepEqual([...target.subarray(0, 4)], [9, 8, 7, 6]);
    client.close();
    assert.equal(await reader.readInto(target) || 0, 0, "the end: 0 (or null)");
  } finally {
    conn.close();
    listener.close();
  }
});

Deno.test("raw read: a TLS connection keeps conn.read", async () => {
  const root = new URL("../../", import.meta.url);
  const cert = await Deno.readTextFile(new URL("tests/fixtures/tls_cert.pem", root));
  const key = await Deno.readTextFile(new URL("tests/fixtures/tls_key.pem", root));
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
  const connecting = Deno.connectTls({
    hostname: "localhost",
    port: listener.addr.port,
    caCerts: [cert],
  });
  const conn = await listener.accept();
  const client = await connecting;
  try {
    assert.equal(rawId(conn), null);
  } finally {
    client.close();
    conn.close();
    listener.close();
  }
});

Deno.test("raw read: an empty buffer is answered at once with 0, as conn.read does", async () => {
  for (const internals of [true, false]) {
    const { listener, client, conn } = await pair();
    try {
      const reader = new ByteReader(conn, options(internals));
      // Nothing is sent: a read that waited for data would never settle.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<string>((resolve) => timer = setTimeout(resolve, 500, "pending"));
      const got = await Promise.race([reader.readInto(new Uint8Array(0)), late]);
      clearTimeout(timer);
      if (got === "pending") await client.write(new Uint8Array([1])); // lets the op end
      assert.equal(got, 0, `runtimeInternals ${internals}`);
    } finally {
      client.close();
      conn.close();
      listener.close();
    }
  }
});

Deno.test("raw write: the bytes written arrive whole and in order, and a write after close rejects", async () => {
  const { listener, client, conn } = await pair();
  try {
    // Through the op on a tested runtime (conn.write elsewhere: the same rules).
    const rid = rawId(conn);
    // 1 MiB in pieces of odd sizes; a write may take only part of a piece.
    const sent = new Uint8Array(1 << 20).map((_, i) => (i * 13 + 5) & 0xff);
    const reading = (async () => {
      const got = new Uint8Array(sent.length);
      let at = 0;
      while (at < got.length) {
        const n = await client.read(got.subarray(at));
        if (n === null) break;
        at += n;
      }
      return got.subarray(0, at);
    })();
    for (let at = 0, step = 1; at < sent.length; step = (step * 5) % 65_521 + 1) {
      const end = Math.min(sent.length, at + step);
      at += await writeTo(conn, rid, sent.subarray(at, end));
    }
    assert.deepEqual(await reading, sent);
    conn.close();
    await assert.rejects(writeTo(conn, rid, new Uint8Array([1])));
  } finally {
    client.close();
    try {
      conn.close();
    } catch {
      // Closed above.
    }
    listener.close();
  }
});
