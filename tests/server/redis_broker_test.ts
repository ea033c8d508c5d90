/**
 * The Redis broker against a real redis-server (started per test on a free
 * 127.0.0.1 port, persistence off, stopped after): two servers sharing rooms,
 * text and binary, many publishers in order, Redis killed and restarted,
 * Redis stopped (SIGSTOP) past the PING deadline, a slow Redis with a
 * bounded queue, oversized messages, credentials, and peers that are not
 * Redis. No mock Redis here; the RESP codec has its own unit tests.
 */

import assert from "node:assert/strict";
import {
  checkRedis,
  type ClientWebSocket,
  connect,
  formatPrometheus,
  RedisBroker,
  type RedisBrokerOptions,
  RedisError,
  serve,
  type Server,
} from "../../mod.ts";
import { RedisConnection } from "../../src/server/redis_connection.ts";
import { delay, waitUntil } from "../helpers/harness.ts";
import { freePort, HAS_REDIS, type RedisProcess, startRedis } from "../helpers/redis.ts";

const ignore = !HAS_REDIS;

/** Options that make faults show within a test's few seconds. */
const FAST: RedisBrokerOptions = {
  pingInterval: 100,
  pingTimeout: 400,
  connectTimeout: 400,
  minRetryDelay: 20,
  maxRetryDelay: 200,
  onStateChange: () => {},
};

interface Node {
  server: Server<{ room: string }>;
  broker: RedisBroker;
}

/** A server whose sockets join the room named by their path and publish to the others there. */
function startNode(url: string, options: RedisBrokerOptions = {}): Node {
  const broker = new RedisBroker({ url, ...FAST, ...options });
  const server = serve<{ room: string }>({ port: 0, hostname: "127.0.0.1", broker }, {
    upgrade: (request) => ({ data: { room: new URL(request.url).pathname.slice(1) } }),
    open(socket) {
      socket.subscribe(socket.data.room);
    },
    message(socket, data) {
      socket.publish(socket.data.room, data);
    },
  });
  return { server, broker };
}

/** How many subscriber connections Redis has for `channel` (PUBSUB NUMSUB). */
async function numsub(redis: RedisProcess, channel: string, password?: string): Promise<number> {
  const connection = await RedisConnection.open(
    { tls: false, hostname: "127.0.0.1", port: redis.port, password },
    { timeout: 1_000, maxQueueBytes: 1 << 20 },
  );
  try {
    const reply = await connection.command(["PUBSUB", "NUMSUB", channel]);
    return (reply as [Uint8Array, number])[1];
  } finally {
    connection.close("done");
    await connection.closed;
  }
}

async function waitSubscribed(
  redis: RedisProcess,
  room: string,
  count: number,
  password?: string,
): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (true) {
    try {
      if (await numsub(redis, `tsunagu:${room}`, password) === count) return;
    } catch {
      // Redis still starting: try again.
    }
    if (Date.now() > deadline) throw new Error(`${room} never had ${count} subscribers`);
    await delay(20);
  }
}

/** A client that records what it receives. */
async function listen(
  node: Node,
  room: string,
): Promise<[ClientWebSocket, (string | Uint8Array)[]]> {
  const socket = await connect(`${node.server.url}/${room}`);
  const received: (string | Uint8Array)[] = [];
  socket.addEventListener("message", (event) => received.push((event as MessageEvent).data));
  return [socket, received];
}

async function closeAll(clients: ClientWebSocket[], nodes: Node[], redis: RedisProcess) {
  for (const client of clients) client.close();
  await Promise.all(clients.map((client) => client.closed));
  await Promise.all(nodes.map((node) => node.server.shutdown()));
  await redis.stop();
}

Deno.test({
  name: "redis broker: two servers share rooms; text stays text, binary stays binary",
  ignore,
  async fn() {
    const redis = await startRedis();
    const a = startNode(redis.url);
    const b = startNode(redis.url);
    await waitUntil(() => a.broker.up && b.broker.up, "both brokers up");
    const [ca, gotA] = await listen(a, "lobby");
    const [cb, gotB] = await listen(b, "lobby");
    const [other, gotOther] = await listen(b, "elsewhere");
    await waitSubscribed(redis, "lobby", 2);

    ca.send("hello from a");
    cb.send(new Uint8Array([0, 13, 10, 255]));
    await waitUntil(() => gotA.length === 1, "binary across");
    b.server.publish("lobby", "server b says hi");
    await waitUntil(() => gotA.length === 2 && gotB.length === 2, "cross-node messages");
    assert.deepEqual(gotA, [new Uint8Array([0, 13, 10, 255]), "server b says hi"]);
    assert.deepEqual(gotB, ["hello from a", "server b says hi"]);
    await delay(50); // nothing twice, nothing to another room
    assert.equal(gotA.length + gotB.length, 4);
    assert.deepEqual(gotOther, []);

    const metrics = a.server.metrics().broker!;
    assert.equal(metrics.up, true);
    assert.equal(metrics.messagesOut, 1);
    assert.equal(metrics.bytesOut, "hello from a".length);
    assert.equal(metrics.messagesIn, 2);
    assert.match(formatPrometheus(a.server.metrics()), /^tsunagu_broker_messages_in_total 2$/m);

    // The last local subscriber leaving lets go of the channel.
    cb.close();
    await cb.closed;
    await waitSubscribed(redis, "lobby", 1);
    await closeAll([ca, other], [a, b], redis);
  },
});

Deno.test({
  name: "redis broker: 10,000 messages from 4 publishers on 2 nodes arrive complete and in order",
  ignore,
  async fn() {
    const redis = await startRedis();
    const a = startNode(redis.url);
    const b = startNode(redis.url);
    await waitUntil(() => a.broker.up && b.broker.up, "both brokers up");
    const [la, gotA] = await listen(a, "room");
    const [lb, gotB] = await listen(b, "room");
    const publishers = [
      (await listen(a, "room"))[0],
      (await listen(a, "room"))[0],
      (await listen(b, "room"))[0],
      (await listen(b, "room"))[0],
    ];
    await waitSubscribed(redis, "room", 2);
    const PER = 2_500;
    for (let seq = 0; seq < PER; seq++) {
      publishers.forEach((publisher, p) => {
        // Publishers 0 and 2 send text, 1 and 3 binary.
        if (p % 2 === 0) publisher.send(`${p}:${seq}`);
        else publisher.send(new Uint8Array([p, seq >> 8, seq & 0xff]));
      });
      if (seq % 250 === 0) await delay(1);
    }
    const total = PER * publishers.length;
    await waitUntil(() => gotA.length === total && gotB.length === total, "every message", 15_000);
    for (const got of [gotA, gotB]) {
      const next = [0, 0, 0, 0];
      for (const message of got) {
        let p: number, seq: number;
        if (typeof message === "string") [p, seq] = message.split(":").map(Number);
        else [p, seq] = [message[0], (message[1] << 8) | message[2]];
        assert.equal(typeof message === "string", p % 2 === 0, "text stays text");
        assert.equal(seq, next[p], `publisher ${p} in order`);
        next[p]++;
      }
      assert.deepEqual(next, [PER, PER, PER, PER]);
    }
    for (const node of [a, b]) {
      const metrics = node.server.metrics().broker!;
      assert.equal(metrics.messagesOut, 2 * PER);
      assert.equal(metrics.messagesIn, 2 * PER);
      assert.deepEqual(metrics.dropped, { down: 0, queueFull: 0, tooLarge: 0, malformed: 0 });
    }
    await closeAll([la, lb, ...publishers], [a, b], redis);
  },
});

Deno.test({
  name:
    "redis broker: Redis killed mid-stream: local delivery goes on, drops counted, rooms resume",
  ignore,
  async fn() {
    const redis = await startRedis();
    const a = startNode(redis.url);
    const b = startNode(redis.url);
    await waitUntil(() => a.broker.up && b.broker.up, "both brokers up");
    const [local, gotLocal] = await listen(a, "room");
    const [remote, gotRemote] = await listen(b, "room");
    await waitSubscribed(redis, "room", 2);

    let seq = 0;
    const publishSome = async (count: number) => {
      for (let k = 0; k < count; k++) {
        a.server.publish("room", String(seq++));
        await delay(2);
      }
    };
    await publishSome(50);
    await waitUntil(() => gotRemote.length === 50, "before the kill");

    await redis.stop("SIGKILL");
    await waitUntil(() => !a.broker.up && !b.broker.up, "both brokers see Redis gone");
    await publishSome(50); // Redis down: local only
    await waitUntil(() => gotLocal.length === 100, "local delivery while Redis is down");
    assert.equal(gotRemote.length, 50);
    assert.ok(a.server.metrics().broker!.dropped.down >= 50);
    assert.match(formatPrometheus(a.server.metrics()), /^tsunagu_broker_up 0$/m);

    await redis.restart();
    await waitUntil(() => a.broker.up && b.broker.up, "both brokers back");
    await waitSubscribed(redis, "room", 2); // subscribed again with no one asking
    await publishSome(50);
    await waitUntil(() => gotLocal.length === 150 && gotRemote.length === 100, "after restart");
    // Local: every message in order; remote: all but the ones sent while Redis was down.
    assert.deepEqual(gotLocal, Array.from({ length: 150 }, (_, k) => String(k)));
    assert.deepEqual(gotRemote, [
      ...Array.from({ length: 50 }, (_, k) => String(k)),
      ...Array.from({ length: 50 }, (_, k) => String(100 + k)),
    ]);
    assert.ok(a.server.metrics().broker!.reconnects >= 1);
    assert.ok(b.server.metrics().broker!.reconnects >= 1);
    await closeAll([local, remote], [a, b], redis);
  },
});

Deno.test({
  name: "redis broker: a Redis that stops answering (SIGSTOP) is found by PING and replaced",
  ignore,
  async fn() {
    const redis = await startRedis();
    const states: string[] = [];
    const a = startNode(redis.url, { onStateChange: (up) => void states.push(up ? "up" : "down") });
    const b = startNode(redis.url);
    await waitUntil(() => a.broker.up && b.broker.up, "both brokers up");
    const [remote, gotRemote] = await listen(b, "room");
    await waitSubscribed(redis, "room", 1);
    a.server.publish("room", "before");
    await waitUntil(() => gotRemote.length === 1, "before the stop");

    redis.pause(); // no RST, no FIN: only the PING deadline can tell
    const stoppedAt = Date.now();
    await waitUntil(() => !a.broker.up, "a's broker notices", 3_000);
    const detectedIn = Date.now() - stoppedAt;
    assert.ok(detectedIn < 1_500, `detected after ${detectedIn} ms`);
    assert.match(a.broker.lastError?.message ?? "", /PING|no answer/);
    redis.resume();
    await waitUntil(() => a.broker.up && b.broker.up, "brokers back after SIGCONT", 5_000);
    await waitSubscribed(redis, "room", 1);
    a.server.publish("room", "after");
    await waitUntil(() => gotRemote.length === 2, "after the stop");
    assert.deepEqual(gotRemote, ["before", "after"]);
    assert.deepEqual(states.slice(0, 3), ["up", "down", "up"]);
    await closeAll([remote], [a, b], redis);
  },
});

Deno.test({
  name: "redis broker: a stalled Redis gets at most maxQueueBytes; the rest is dropped and counted",
  ignore,
  async fn() {
    const redis = await startRedis();
    const a = startNode(redis.url, {
      maxQueueBytes: 64 * 1024,
      pingTimeout: 10_000, // the stall is not detected during this test
      maxMessageBytes: 8 * 1024,
    });
    await waitUntil(() => a.broker.up, "broker up");
    const [local, gotLocal] = await listen(a, "room");
    redis.pause();
    const payload = new Uint8Array(4 * 1024);
    const COUNT = 5_000; // 20 MiB: more than the socket buffers and the queue together
    for (let k = 0; k < COUNT; k++) {
      a.server.publish("room", payload);
      if (k % 100 === 0) await delay(0);
    }
    a.server.publish("room", new Uint8Array(10 * 1024)); // over maxMessageBytes
    await waitUntil(() => gotLocal.length === COUNT + 1, "local delivery", 10_000);
    const metrics = a.server.metrics().broker!;
    assert.ok(metrics.dropped.queueFull > 0, "drops counted");
    assert.equal(metrics.dropped.tooLarge, 1);
    // What went out (kernel buffers + queue) is bounded, far below the 20 MiB offered.
    assert.ok(metrics.bytesOut < 12 * 1024 * 1024, `${metrics.bytesOut} bytes out`);
    assert.equal(metrics.messagesOut + metrics.dropped.queueFull, COUNT);
    redis.resume();
    await closeAll([local], [a], redis);
  },
});

Deno.test({
  name: "redis broker: credentials (password, ACL user), SELECT, and clear errors",
  ignore,
  async fn() {
    const redis = await startRedis(["--requirepass", "s3cret"]);
    const base = `127.0.0.1:${redis.port}`;
    await checkRedis({ url: `redis://:s3cret@${base}` });
    await checkRedis({ url: `redis://${base}/3`, password: "s3cret" });

    const wrong = await checkRedis({ url: `redis://:nope@${base}` }).catch((error) => error);
    assert.ok(wrong instanceof RedisError);
    assert.equal(wrong.kind, "auth");
    assert.match(wrong.message, /refused the credentials: WRONGPASS/);
    assert.doesNotMatch(wrong.message, /nope/); // the password is never shown

    const missing = await checkRedis({ url: `redis://${base}` }).catch((error) => error);
    assert.equal(missing.kind, "auth");
    assert.match(missing.message, /needs a password \(NOAUTH/);

    const db = await checkRedis({ url: `redis://:s3cret@${base}/999` }).catch((error) => error);
    assert.equal(db.kind, "command");
    assert.match(db.message, /SELECT 999/);

    // An ACL user (Redis 6+).
    const admin = await RedisConnection.open(
      { tls: false, hostname: "127.0.0.1", port: redis.port, password: "s3cret" },
      { timeout: 1_000, maxQueueBytes: 1 << 20 },
    );
    const reply = await admin.command(["ACL", "SETUSER", "ws", "on", ">pw%2", "~*", "&*", "+@all"]);
    assert.equal(reply, "OK");
    admin.close("done");
    await admin.closed;
    await checkRedis({ url: `redis://ws:pw%252@${base}` }); // percent-decoded: pw%2
    const wrongUser = await checkRedis({ url: `redis://ws:pw@${base}` }).catch((error) => error);
    assert.match(wrongUser.message, /user "ws": WRONGPASS/);

    // A broker with a wrong password keeps serving locally, reports down with the reason.
    let reason = "";
    const node = startNode(`redis://:nope@${base}`, { onStateChange: (_, why) => reason = why });
    await waitUntil(() => reason !== "", "the broker's first attempt");
    assert.match(reason, /WRONGPASS/);
    assert.equal(node.broker.up, false);
    assert.equal(node.broker.lastError?.kind, "auth");
    const [client, got] = await listen(node, "room");
    node.server.publish("room", "local still works");
    await waitUntil(() => got.length === 1, "local delivery");
    assert.equal(node.server.metrics().broker!.dropped.down, 1);
    await closeAll([client], [node], redis);
  },
});

Deno.test({
  name: "redis broker: a URL that is not Redis, or nobody there, is a clear error",
  ignore,
  async fn() {
    // Something that speaks HTTP, something that says nothing, and nothing at all.
    const http = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const serveHttp = (async () => {
      for await (const conn of http) {
        await conn.write(new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n\r\n"));
        conn.close();
      }
    })();
    const serveSilent = (async () => {
      for await (const conn of silent) held.push(conn);
    })();
    const port = (listener: Deno.Listener) => (listener.addr as Deno.NetAddr).port;

    const notRedis = await checkRedis({ url: `redis://127.0.0.1:${port(http)}` }).catch((e) => e);
    assert.equal(notRedis.kind, "protocol");
    assert.match(notRedis.message, /not a Redis server at redis:\/\/127\.0\.0\.1:\d+/);

    const mute = await checkRedis({ url: `redis://127.0.0.1:${port(silent)}`, connectTimeout: 300 })
      .catch((e) => e);
    assert.equal(mute.kind, "timeout");
    assert.match(mute.message, /no answer from .* within 300 ms/);

    const free = port(silent) === 1 ? 2 : 1; // port 1: nothing listens there
    const none = await checkRedis({ url: `redis://127.0.0.1:${free}` }).catch((e) => e);
    assert.equal(none.kind, "unreachable");

    assert.throws(() => new RedisBroker({ url: "http://localhost" }), /redis:\/\/ or rediss:\/\//);
    assert.throws(() => new RedisBroker({ url: "redis://h/x" }), /database number/);

    http.close();
    silent.close();
    await Promise.allSettled([serveHttp, serveSilent]);
    for (const conn of held) conn.close();
  },
});

Deno.test({
  name: "redis broker: shutdown does not wait for a connection attempt to a stalled Redis",
  ignore,
  async fn() {
    const redis = await startRedis();
    redis.pause(); // TCP connects (the kernel accepts), the handshake never answers
    const node = startNode(redis.url, { connectTimeout: 5_000 });
    await delay(100);
    const started = Date.now();
    await node.server.shutdown();
    assert.ok(Date.now() - started < 1_000, `shutdown took ${Date.now() - started} ms`);
    assert.equal(node.broker.up, false);
    await redis.stop();
  },
});

Deno.test({
  name: "redis broker: rediss:// (TLS through Deno.connectTls) with a private CA and a password",
  ignore,
  async fn() {
    const tlsPort = freePort();
    const redis = await startRedis([
      "--tls-port",
      String(tlsPort),
      "--tls-cert-file",
      "tests/fixtures/tls_cert.pem",
      "--tls-key-file",
      "tests/fixtures/tls_key.pem",
      "--tls-auth-clients",
      "no",
      "--requirepass",
      "tls-pass",
    ]);
    const caCerts = [await Deno.readTextFile("tests/fixtures/tls_cert.pem")];
    const url = `rediss://:tls-pass@localhost:${tlsPort}`;
    // Without the CA, the certificate is refused: a clear error, not a hang.
    const untrusted = await checkRedis({ url }).catch((error) => error);
    assert.equal(untrusted.kind, "unreachable");
    assert.match(
      untrusted.message,
      /cannot connect to rediss:\/\/localhost:\d+: TLS handshake failed/,
    );
    await checkRedis({ url, caCerts });

    const a = startNode(url, { caCerts });
    const b = startNode(url, { caCerts });
    await waitUntil(() => a.broker.up && b.broker.up, "both brokers up over TLS");
    const [client, got] = await listen(b, "secure");
    await waitSubscribed(redis, "secure", 1, "tls-pass");
    a.server.publish("secure", new Uint8Array([1, 2, 3]));
    a.server.publish("secure", "text over tls");
    await waitUntil(() => got.length === 2, "messages over TLS");
    assert.deepEqual(got, [new Uint8Array([1, 2, 3]), "text over tls"]);
    await closeAll([client], [a, b], redis);
  },
});
