/**
 * Faults, over real sockets: application handlers that throw or reject, and
 * peers that vanish mid-frame, mid-handshake or mid-close. Each fault costs
 * one socket at most, the application is told once, the server keeps
 * serving, and nothing is left behind. An unhandled rejection anywhere would
 * fail these tests (Deno's test runner treats one as a failure).
 */

import assert from "node:assert/strict";
import { buildUpgradeRequest, OP, RawClient } from "../helpers/raw_client.ts";
import { clientFrame, closePayload } from "../helpers/frames.ts";
import {
  delay,
  type Harness,
  openRawPeers,
  startServer,
  TestClient,
  waitUntil,
} from "../helpers/harness.ts";
import type { Handlers } from "../../mod.ts";

const echo: Handlers = {
  message(socket, data) {
    socket.send(data);
  },
};

/** Asserts that a fresh client is served: the server survived. */
async function assertServing(url: string): Promise<void> {
  const client = await TestClient.open(url);
  try {
    client.ws.send("still there?");
    assert.equal(await client.next(), "still there?");
  } finally {
    await client.dispose();
  }
}

/** Waits for the close handler, then asserts it was called exactly once, with `code`, and nothing is left. */
async function assertToldOnce(h: Harness<undefined>, code: number): Promise<void> {
  await waitUntil(() => h.closed.length >= 1, "the close handler");
  await delay(50); // a second, wrong, call would come now
  assert.equal(h.closed.length, 1);
  assert.equal(h.closed[0].code, code);
  assert.equal(h.server.connectionCount, 0);
}

for (
  const [name, handlers] of [
    ["open throws", {
      open() {
        throw new Error("open failed");
      },
    }],
    ["open rejects", {
      async open() {
        await delay(1);
        throw new Error("open failed");
      },
    }],
    ["message throws", {
      open(socket) {
        socket.send("ready");
      },
      message() {
        throw new Error("message failed");
      },
    }],
    ["message rejects", {
      open(socket) {
        socket.send("ready");
      },
      async message() {
        await delay(1);
        throw new Error("message failed");
      },
    }],
  ] as [string, Handlers][]
) {
  Deno.test(`${name}: that socket is closed with 1011, the error is reported, the server keeps serving`, async () => {
    // The failing handlers apply to paths under /fail; anything else is echoed.
    const h = startServer({}, {
      open: (socket, server) =>
        socket.url.includes("/fail") ? handlers.open?.(socket, server) : undefined,
      message: (socket, data, server) =>
        socket.url.includes("/fail")
          ? handlers.message?.(socket, data, server)
          : echo.message!(socket, data, server),
    });
    const bystander = await TestClient.open(`${h.server.url}/ok`);
    const victim = await TestClient.open(`${h.server.url}/fail`);
    try {
      if (handlers.message !== undefined) {
        assert.equal(await victim.next(), "ready");
        victim.ws.send("trigger");
      }
      const event = await victim.waitClosed();
      assert.equal(event.code, 1011);
      await waitUntil(() => h.errors.length === 1, "the error handler");
      assert.ok(h.errors[0] instanceof Error && /failed/.test(h.errors[0].message));
      await waitUntil(() => h.closed.length === 1, "the close handler");
      assert.equal(h.closed[0].code, 1011);
      // The other socket and new ones are unaffected.
      bystander.ws.send("unaffected");
      assert.equal(await bystander.next(), "unaffected");
      await assertServing(`${h.server.url}/ok`);
      assert.equal(h.errors.length, 1);
    } finally {
      await victim.dispose();
      await bystander.dispose();
      await h.server.shutdown();
    }
    assert.equal(h.server.connectionCount, 0);
  });
}

Deno.test("a close handler that throws is reported and harms nothing", async () => {
  const h = startServer({}, {
    ...echo,
    close() {
      throw new Error("close failed");
    },
  });
  try {
    const client = await TestClient.open(h.server.url);
    await client.dispose();
    await waitUntil(() => h.errors.length === 1, "the error handler");
    assert.equal((h.errors[0] as Error).message, "close failed");
    await assertServing(h.server.url);
  } finally {
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("an upgrade hook that throws gets the client a 500; the error is reported", async () => {
  const h = startServer({}, {
    upgrade(request) {
      if (request.url.includes("/fail")) throw new Error("upgrade failed");
    },
    ...echo,
  });
  try {
    using raw = await RawClient.connect(h.port);
    await raw.write(buildUpgradeRequest({ path: "/fail" }));
    const response = await raw.readHttpResponse();
    assert.equal(response.status, 500);
    assert.equal((h.errors[0] as Error).message, "upgrade failed");
    await assertServing(`${h.server.url}/ok`);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a peer that drops mid-frame is cleaned up; the application is told once (1006)", async () => {
  const h = startServer({}, echo);
  try {
    const raw = await RawClient.connect(h.port);
    await raw.handshake();
    await waitUntil(() => h.opened.length === 1, "open");
    const frame = clientFrame({ opcode: OP.TEXT, payload: "x".repeat(1000) });
    await raw.write(frame.subarray(0, 500)); // half a frame
    raw.close();
    await assertToldOnce(h, 1006);
    await assertServing(h.server.url);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("peers that drop mid-handshake leave nothing behind and report no error", async () => {
  const h = startServer({}, echo);
  try {
    const request = buildUpgradeRequest();
    // Drop after part of the head, after the whole head (before reading the 101).
    for (const cut of [10, request.length - 2, request.length]) {
      const raw = await RawClient.connect(h.port);
      await raw.write(request.slice(0, cut));
      raw.close();
    }
    await assertServing(h.server.url);
    await waitUntil(() => h.server.connectionCount === 0, "every connection to be gone");
    assert.equal(h.errors.length, 0, "a vanished peer is not an application error");
    assert.equal(h.opened.length - h.closed.length, 0, "every open is matched by one close");
  } finally {
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});

Deno.test("a peer that drops during the closing handshake is told once (1006)", async () => {
  const h = startServer({ closeTimeout: 5_000 }, {
    open: (socket) => socket.close(1000, "bye"),
  });
  try {
    const raw = await RawClient.connect(h.port);
    await raw.handshake();
    await raw.expectClose(1000, "bye");
    raw.close(); // gone instead of answering
    await assertToldOnce(h, 1006);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("a peer that sends close and leaves without waiting is told once, with its code", async () => {
  const h = startServer({}, echo);
  try {
    const raw = await RawClient.connect(h.port);
    await raw.handshake();
    await waitUntil(() => h.opened.length === 1, "open");
    await raw.write(clientFrame({ opcode: OP.CLOSE, payload: closePayload(4001, "leaving") }));
    raw.close();
    await assertToldOnce(h, 4001);
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("many peers dropping at once: one close each, none left", async () => {
  const h = startServer({}, echo);
  const clients: RawClient[] = [];
  try {
    await openRawPeers(h.port, 20, clients);
    await waitUntil(() => h.opened.length === 20, "every open");
    for (const [i, raw] of clients.entries()) {
      // Half drop mid-frame, half between frames.
      if (i % 2 === 0) await raw.write(clientFrame({ opcode: OP.BINARY, declaredLength: 100 }));
      raw.close();
    }
    await waitUntil(() => h.closed.length >= 20, "every close handler");
    await delay(50);
    assert.equal(h.closed.length, 20);
    assert.equal(new Set(h.closed.map((c) => c.socket)).size, 20, "once per socket");
    assert.ok(h.closed.every((c) => c.code === 1006));
    assert.equal(h.server.connectionCount, 0);
  } finally {
    for (const raw of clients) raw.close();
    await h.server.shutdown();
  }
});

Deno.test("an event listener that throws closes that socket with 1011 instead of crashing the process", async () => {
  const errors: unknown[] = [];
  const h = startServer({ pingInterval: 0 }, {
    open(socket) {
      socket.addEventListener("message", () => {
        throw new Error("listener bug");
      });
    },
    error: (error) => void errors.push(error),
  });
  try {
    const victim = await TestClient.open(h.server.url);
    const healthy = await TestClient.open(h.server.url);
    try {
      victim.ws.send("boom");
      assert.equal((await victim.waitClosed()).code, 1011);
      assert.equal((errors[0] as Error).message, "listener bug");
      // The process and the server are still alive: the listener on the
      // healthy socket throws too, so check it is failed the same way.
      healthy.ws.send("again");
      assert.equal((await healthy.waitClosed()).code, 1011);
      assert.equal(errors.length, 2);
    } finally {
      await victim.dispose();
      await healthy.dispose();
    }
  } finally {
    await h.server.shutdown();
  }
});

Deno.test("onmessage set as a property, and removeEventListener, still work through the guard", async () => {
  const seen: string[] = [];
  const h = startServer({ pingInterval: 0 }, {
    open(socket) {
      const extra = (event: Event) => seen.push(`extra:${(event as MessageEvent).data}`);
      socket.addEventListener("message", extra);
      socket.onmessage = (event) => {
        seen.push(`on:${(event as MessageEvent).data}`);
        socket.removeEventListener("message", extra);
        socket.send("ack");
      };
    },
  });
  try {
    const client = await TestClient.open(h.server.url);
    try {
      client.ws.send("one");
      assert.equal(await client.next(), "ack");
      client.ws.send("two");
      assert.equal(await client.next(), "ack");
      assert.deepEqual(seen, ["extra:one", "on:one", "on:two"]);
    } finally {
      await client.dispose();
    }
  } finally {
    await h.server.shutdown();
  }
});
