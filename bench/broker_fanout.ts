/**
 * Fan-out through the Redis broker, side by side with one node and no broker
 * (issue 13's benchmark): 1 publisher on node A, N subscribers split across
 * nodes A and B; publish-to-last-delivery latency (one message in flight)
 * and deliveries per second (bursts). Also the cost `publish` pays for the
 * broker when no other node listens. Starts its own redis-server.
 *
 *   deno run -A bench/broker_fanout.ts [subscribers=1000] [messages=300]
 *
 * Everything runs in one process (servers, clients), so the figures compare
 * the setups with each other; they are not absolute server capacity.
 */

import { type ClientWebSocket, connect, RedisBroker, serve, type Server } from "../mod.ts";
import { startRedis } from "../tests/helpers/redis.ts";

const SUBSCRIBERS = Number(Deno.args[0] ?? 1000);
const MESSAGES = Number(Deno.args[1] ?? 300);
const BURST = 100;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

interface Setup {
  name: string;
  publishOn: Server;
  servers: Server[];
  brokers: RedisBroker[];
}

function node(broker?: RedisBroker): Server {
  return serve({ port: 0, hostname: "127.0.0.1", broker, maxConnections: 100_000 }, {
    open: (socket) => socket.subscribe("room"),
  });
}

async function measure(setup: Setup): Promise<string> {
  const clients: ClientWebSocket[] = [];
  let received = 0;
  let target = 0;
  let onTarget = () => {};
  for (let k = 0; k < SUBSCRIBERS; k++) {
    const server = setup.servers[k % setup.servers.length];
    const client = await connect(server.url);
    client.addEventListener("message", () => {
      if (++received === target) onTarget();
    });
    clients.push(client);
  }
  // Wait until every node has its subscribers (and the brokers have subscribed).
  const deadline = Date.now() + 10_000;
  while (
    setup.servers.reduce((n, server) => n + server.subscriberCount("room"), 0) < SUBSCRIBERS ||
    setup.brokers.some((broker) => !broker.up)
  ) {
    if (Date.now() > deadline) throw new Error("setup timed out");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, 200)); // SUBSCRIBE reaches Redis
  const until = (count: number) =>
    new Promise<void>((resolve, reject) => {
      target = count;
      const timer = setTimeout(() => reject(new Error(`stuck at ${received}/${count}`)), 10_000);
      onTarget = () => {
        clearTimeout(timer);
        resolve();
      };
      if (received >= count) onTarget();
    });

  const latencies: number[] = [];
  for (let m = 0; m < MESSAGES; m++) {
    const start = performance.now();
    const done = until(received + SUBSCRIBERS);
    setup.publishOn.publish("room", `message ${m} ${"x".repeat(64)}`);
    await done;
    latencies.push(performance.now() - start);
  }
  latencies.sort((a, b) => a - b);

  const bursts = Math.max(1, Math.floor(MESSAGES / BURST));
  const start = performance.now();
  for (let b = 0; b < bursts; b++) {
    const done = until(received + SUBSCRIBERS * BURST);
    for (let m = 0; m < BURST; m++) setup.publishOn.publish("room", `burst ${m} ${"x".repeat(64)}`);
    await done;
  }
  const seconds = (performance.now() - start) / 1000;
  const rate = (bursts * BURST * SUBSCRIBERS) / seconds;

  for (const client of clients) client.close();
  await Promise.all(clients.map((client) => client.closed));
  await Promise.all(setup.servers.map((server) => server.shutdown()));
  return `| ${setup.name} | ${SUBSCRIBERS} | ${latencies.length} | ${
    percentile(latencies, 0.5).toFixed(2)
  } | ${percentile(latencies, 0.99).toFixed(2)} | ${Math.round(rate).toLocaleString("en")} |`;
}

async function publishCost(broker: RedisBroker | undefined, label: string): Promise<string> {
  const server = node(broker);
  while (broker !== undefined && !broker.up) await new Promise((r) => setTimeout(r, 10));
  const N = 200_000;
  const payload = "x".repeat(64);
  // Warm-up, then measure; nobody subscribes anywhere. Yield now and then so
  // the broker's queue drains to Redis as it would in a real server.
  for (let k = 0; k < 10_000; k++) server.publish("nobody", payload);
  let elapsed = 0;
  for (let chunk = 0; chunk < N / 1000; chunk++) {
    const start = performance.now();
    for (let k = 0; k < 1000; k++) server.publish("nobody", payload);
    elapsed += performance.now() - start;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  const dropped = broker?.metrics().dropped.queueFull ?? 0;
  await server.shutdown();
  return `| ${label} | ${((elapsed / N) * 1e6).toFixed(0)} ns | ${dropped} |`;
}

const redis = await startRedis();
try {
  const lines: string[] = [];
  lines.push(
    "| setup | subscribers | messages | p50 ms | p99 ms | deliveries/s |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  );
  {
    const a = node();
    lines.push(
      await measure({ name: "one node, no broker", publishOn: a, servers: [a], brokers: [] }),
    );
  }
  {
    const quiet = { onStateChange: () => {} };
    const brokerA = new RedisBroker({ url: redis.url, ...quiet });
    const brokerB = new RedisBroker({ url: redis.url, ...quiet });
    const a = node(brokerA);
    const b = node(brokerB);
    lines.push(
      await measure({
        name: "nodes A + B through Redis (publisher on A)",
        publishOn: a,
        servers: [a, b],
        brokers: [brokerA, brokerB],
      }),
    );
  }
  lines.push(
    "",
    "| publish, nobody listening | time per publish | queueFull drops |",
    "| --- | ---: | ---: |",
  );
  lines.push(await publishCost(undefined, "no broker"));
  lines.push(
    await publishCost(new RedisBroker({ url: redis.url, onStateChange: () => {} }), "Redis broker"),
  );
  console.log(lines.join("\n"));
} finally {
  await redis.stop();
}
