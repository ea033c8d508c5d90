// With runtimeInternals on (plain TCP, Deno 2.9), every write the server
// makes to a client goes through the runtime's op (src/connection/raw_io.ts),
// not the public conn.write: each kind of write is counted by wrapping
// TcpConn.prototype.write for the server's side of the connections. With
// runtimeInternals off they all go through conn.write, which shows that the
// count sees them.

import assert from "node:assert/strict";
import type { Handlers, ServeOptions } from "../../mod.ts";
import { startServer } from "../helpers/harness.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { clientFrame } from "../helpers/frames.ts";
import { Opcode } from "../../src/protocol/frame.ts";

const TESTED = /^2\.9\./.test(Deno.version.deno);

type Writable = { write(data: Uint8Array): Promise<number> };

/** The prototype that holds TcpConn's public write (the class is not a global). */
async function tcpConnPrototype(): Promise<Writable> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const conn = await listener.accept();
  let proto = Object.getPrototypeOf(conn);
  while (proto !== null && !Object.hasOwn(proto, "write")) proto = Object.getPrototypeOf(proto);
  client.close();
  conn.close();
  listener.close();
  return proto as Writable;
}

/** Calls of the public write the server made to its accepted connections during `exchange`. */
async function publicWrites(
  options: ServeOptions,
  handlers: Handlers<undefined>,
  exchange: (port: number) => Promise<void>,
): Promise<number> {
  const harness = startServer(options, handlers);
  // The client's own connections share the prototype: they are told apart
  // by their local port, which is the server's port only on its side.
  const proto = await tcpConnPrototype();
  const original = proto.write;
  let count = 0;
  proto.write = function (this: Deno.TcpConn, data: Uint8Array) {
    if ((this.localAddr as Deno.NetAddr).port === harness.port) count++;
    return original.call(this, data);
  };
  try {
    await exchange(harness.port);
  } finally {
    proto.write = original;
    await harness.server.shutdown();
  }
  return count;
}

async function upgradeAndEcho(port: number): Promise<void> {
  const ws = await RawClient.connect(port);
  try {
    await ws.handshake();
    await ws.write(clientFrame({ opcode: Opcode.Text, payload: "hi" }));
    assert.equal(new TextDecoder().decode((await ws.readFrame()).payload), "hi");
  } finally {
    ws.close();
  }
}

async function request(port: number, head: string): Promise<string> {
  const raw = await RawClient.connect(port);
  try {
    await raw.write(head);
    return await raw.readToEnd();
  } finally {
    raw.close();
  }
}

const KINDS: [string, Handlers<undefined>, (port: number) => Promise<void>][] = [
  ["the usual 101 and echoed frames", { message: (s, d) => s.send(d) }, upgradeAndEcho],
  ["a 101 after an upgrade hook", {
    upgrade: () => ({}),
    message: (s, d) => s.send(d),
  }, upgradeAndEcho],
  ["a plain response", { fetch: () => new Response("hello") }, async (port) => {
    assert.match(
      await request(port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
      /hello$/,
    );
  }],
  ["an error the server answers itself (400)", { fetch: () => new Response("x") }, async (port) => {
    assert.match(await request(port, "GET / HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 400/);
  }],
  ["a 100 Continue and the response after it", {
    fetch: async (r) => new Response(await r.text()),
  }, async (port) => {
    // The body waits for the 100 Continue (sent with the head, it would
    // make the interim response unnecessary).
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const encoder = new TextEncoder();
      await conn.write(encoder.encode(
        "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
      ));
      const interim = new Uint8Array(64);
      const n = await conn.read(interim);
      assert.equal(
        new TextDecoder().decode(interim.subarray(0, n!)),
        "HTTP/1.1 100 Continue\r\n\r\n",
      );
      await conn.write(encoder.encode("abc"));
      const rest = await new Response(conn.readable).text();
      assert.match(rest, /^HTTP\/1\.1 200/);
      assert.match(rest, /abc$/);
    } finally {
      try {
        conn.close();
      } catch {
        // Closed with its readable stream.
      }
    }
  }],
];

Deno.test("raw io: with runtimeInternals every server write goes through the op, none through conn.write", async () => {
  for (const [kind, handlers, exchange] of KINDS) {
    const on = await publicWrites({ runtimeInternals: true }, handlers, exchange);
    const off = await publicWrites({ runtimeInternals: false }, handlers, exchange);
    assert.ok(off > 0, `${kind}: with runtimeInternals off, conn.write is used (${off})`);
    assert.equal(on, TESTED ? 0 : off, `${kind}: public writes with runtimeInternals on`);
  }
});
