/**
 * serveWorkers: N workers on one port share topics (a message published in
 * one worker reaches subscribers in all, text as text and bytes as bytes),
 * shutdown reaches every client with 1001, and a worker that dies is
 * reported and replaced while the others keep serving.
 */

import assert from "node:assert/strict";
import { serveWorkers, type WorkerPool } from "../../mod.ts";
import { TestClient, waitUntil } from "../helpers/harness.ts";

const APP = new URL("../fixtures/worker_app.ts", import.meta.url);

/** Opens clients until there is one on each worker (the kernel picks), at most 60. */
async function clientsOnEveryWorker(pool: WorkerPool): Promise<Map<number, TestClient>> {
  const byWorker = new Map<number, TestClient>();
  const extra: TestClient[] = [];
  for (let i = 0; i < 60 && byWorker.size < pool.workers; i++) {
    const client = await TestClient.open(`ws://127.0.0.1:${pool.addr.port}/`);
    const index = Number(String(await client.next()).split(" ")[1]);
    if (byWorker.has(index)) extra.push(client);
    else byWorker.set(index, client);
  }
  for (const client of extra) await client.dispose();
  return byWorker;
}

Deno.test("workers: two workers share a port and their topics", async () => {
  const pool = serveWorkers(APP, { workers: 2, port: 0, hostname: "127.0.0.1" });
  await pool.listening;
  const clients = await clientsOnEveryWorker(pool);
  try {
    assert.equal(clients.size, 2, "the kernel spread 60 connections over both workers");
    const a = clients.get(0)!;
    const b = clients.get(1)!;
    // Published in worker 0, heard in worker 1 (and in 0), in order, kinds
    // kept, none lost in a burst (a BroadcastChannel drops some here).
    const burst = 3000;
    for (let i = 0; i < burst; i++) a.ws.send(`m${i}`);
    a.ws.send(new Uint8Array([1, 2, 3]));
    for (const client of [a, b]) {
      for (let i = 0; i < burst; i++) assert.equal(await client.next(), `m${i}`);
      assert.deepEqual(await client.next(), new Uint8Array([1, 2, 3]));
    }
    b.ws.send("metrics");
    const broker = JSON.parse(String(await b.next()));
    assert.equal(broker.up, true);
    assert.equal(broker.messagesIn, burst + 1);
  } finally {
    const closes = [...clients.values()].map((client) => client.waitClosed());
    await pool.shutdown();
    // Shutdown reached every worker: every client got 1001.
    for (const event of await Promise.all(closes)) assert.equal(event.code, 1001);
    await pool.finished;
  }
});

Deno.test("workers: a worker that dies is reported and replaced; the others keep serving", async () => {
  const failures: [unknown, number][] = [];
  const pool = serveWorkers(APP, {
    workers: 2,
    port: 0,
    hostname: "127.0.0.1",
    onWorkerError: (error, index) => failures.push([error, index]),
  });
  await pool.listening;
  const clients = await clientsOnEveryWorker(pool);
  try {
    const victim = clients.get(0)!;
    const survivor = clients.get(1)!;
    victim.ws.send("crash");
    await waitUntil(() => pool.restarts === 1, "the worker to be replaced");
    assert.equal(failures.length, 1);
    assert.equal(failures[0][1], 0);
    assert.match(String(failures[0][0]), /crashed on purpose/);
    // The dead worker's client was cut off; the other one still works.
    const cut = await victim.waitClosed();
    assert.notEqual(cut.code, 1000);
    survivor.ws.send("still here");
    assert.equal(await survivor.next(), "still here");
    // The replacement serves too, and shares topics again.
    await waitUntil(() => pool.listeningWorkers === 2, "the replacement to listen");
    clients.delete(0);
    await victim.dispose();
    const again = await clientsOnEveryWorker(pool);
    try {
      assert.equal(again.size, 2);
      again.get(0)!.ws.send("after restart");
      assert.equal(await again.get(1)!.next(), "after restart");
    } finally {
      for (const client of again.values()) await client.dispose();
    }
  } finally {
    for (const client of clients.values()) await client.dispose();
    await pool.shutdown();
  }
});

Deno.test("workers: a module that cannot start rejects listening instead of looping", async () => {
  const broken = `data:application/typescript,${
    encodeURIComponent("throw new Error('no start');")
  }`;
  const errors: unknown[] = [];
  const pool = serveWorkers(broken, {
    workers: 1,
    port: 0,
    hostname: "127.0.0.1",
    onWorkerError: (error) => errors.push(error),
  });
  await assert.rejects(pool.listening, /no start/);
  await pool.finished;
  assert.equal(pool.restarts, 0);
  assert.equal(errors.length, 1);
});
