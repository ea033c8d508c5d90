/**
 * The broker seam, with a recording in-memory broker: subscriptions follow
 * local interest (first subscriber, last subscriber), every publish is
 * delivered locally once and handed to the broker, what the broker brings
 * goes to local subscribers only (never back out), text stays text, binary
 * stays binary, and the server starts, measures and closes its broker.
 */

import assert from "node:assert/strict";
import {
  type Broker,
  type BrokerDeliver,
  type BrokerMetrics,
  connect,
  formatPrometheus,
  serve,
} from "../../mod.ts";
import { waitUntil } from "../helpers/harness.ts";

class RecordingBroker implements Broker {
  deliver: BrokerDeliver | null = null;
  calls: string[] = [];
  published: [string, string | Uint8Array][] = [];
  closed = false;

  start(deliver: BrokerDeliver): void {
    this.deliver = deliver;
    this.calls.push("start");
  }
  subscribe(topic: string): void {
    this.calls.push(`subscribe ${topic}`);
  }
  unsubscribe(topic: string): void {
    this.calls.push(`unsubscribe ${topic}`);
  }
  publish(topic: string, data: string | Uint8Array): void {
    this.published.push([topic, data]);
  }
  close(): void {
    this.closed = true;
  }
  metrics(): BrokerMetrics {
    return {
      up: true,
      messagesOut: this.published.length,
      bytesOut: 0,
      messagesIn: 0,
      bytesIn: 0,
      dropped: { down: 2 },
      reconnects: 1,
    };
  }
}

Deno.test("broker seam: subscribe on the first local subscriber, unsubscribe on the last", async () => {
  const broker = new RecordingBroker();
  const server = serve({ port: 0, hostname: "127.0.0.1", broker }, {
    message(socket, data) {
      const [verb, topic] = String(data).split(" ");
      if (verb === "sub") socket.subscribe(topic);
      else socket.unsubscribe(topic);
      socket.send("done");
    },
  });
  const a = await connect(server.url);
  const b = await connect(server.url);
  const ask = async (client: typeof a, text: string) => {
    const reply = new Promise((resolve) =>
      client.addEventListener("message", resolve, { once: true })
    );
    client.send(text);
    await reply;
  };
  await ask(a, "sub room");
  await ask(b, "sub room");
  await ask(b, "sub other");
  await ask(a, "unsub room");
  assert.deepEqual(broker.calls, ["start", "subscribe room", "subscribe other"]);
  await ask(b, "unsub room");
  assert.deepEqual(broker.calls.slice(3), ["unsubscribe room"]);
  b.close(); // closing drops b's last topic
  await b.closed;
  await waitUntil(() => broker.calls.length === 5, "unsubscribe on close");
  assert.equal(broker.calls[4], "unsubscribe other");
  a.close();
  await a.closed;
  assert.equal(broker.closed, false);
  await server.shutdown();
  assert.equal(broker.closed, true);
});

Deno.test("broker seam: publish goes local once and to the broker; broker messages stay local", async () => {
  const broker = new RecordingBroker();
  const server = serve({ port: 0, hostname: "127.0.0.1", broker }, {
    open(socket) {
      socket.subscribe("room");
      socket.send("joined");
    },
    message(socket, data) {
      socket.publish("room", data); // to the others, and to the broker
    },
  });
  const got: { a: (string | Uint8Array)[]; b: (string | Uint8Array)[] } = { a: [], b: [] };
  const a = await connect(server.url);
  a.addEventListener("message", (event) => got.a.push((event as MessageEvent).data));
  const b = await connect(server.url);
  b.addEventListener("message", (event) => got.b.push((event as MessageEvent).data));
  await waitUntil(() => got.a.length === 1 && got.b.length === 1, "joined");

  // No topic subscriber at all: the broker still hears of it.
  assert.equal(server.publish("nobody-here", "x"), 0);
  server.publish("room", "from the server");
  a.send(new Uint8Array([1, 2, 3]));
  await waitUntil(() => got.b.length === 3, "b's messages");
  assert.deepEqual(got.b.slice(1), ["from the server", new Uint8Array([1, 2, 3])]);
  assert.deepEqual(broker.published, [
    ["nobody-here", "x"],
    ["room", "from the server"],
    ["room", new Uint8Array([1, 2, 3])],
  ]);

  // From the broker: to every local subscriber (the publisher is elsewhere),
  // text as text and binary as binary, and not back to the broker.
  broker.deliver!("room", "remote text");
  broker.deliver!("room", new Uint8Array([9, 8]));
  broker.deliver!("unknown-topic", "ignored");
  await waitUntil(() => got.a.length === 4 && got.b.length === 5, "remote messages");
  assert.deepEqual(got.a.slice(1), ["from the server", "remote text", new Uint8Array([9, 8])]);
  assert.deepEqual(got.b.slice(3), ["remote text", new Uint8Array([9, 8])]);
  assert.equal(broker.published.length, 3);

  const metrics = server.metrics();
  assert.equal(metrics.broker?.messagesOut, 3);
  const text = formatPrometheus(metrics);
  assert.match(text, /^tsunagu_broker_up 1$/m);
  assert.match(text, /^tsunagu_broker_dropped_total\{cause="down"\} 2$/m);
  assert.match(text, /^tsunagu_broker_reconnects_total 1$/m);
  a.close();
  b.close();
  await Promise.all([a.closed, b.closed]);
  await server.shutdown();
});

Deno.test("broker seam: a broker whose start throws does not stop the server", async () => {
  const errors: unknown[] = [];
  const broker = new RecordingBroker();
  broker.start = () => {
    throw new Error("no broker today");
  };
  const server = serve({ port: 0, hostname: "127.0.0.1", broker }, {
    error: (error) => void errors.push(error),
  });
  assert.equal(server.publish("t", "still fine"), 0);
  assert.equal((errors[0] as Error).message, "no broker today");
  assert.equal(formatPrometheus(server.metrics()).includes("tsunagu_broker_up"), true);
  await server.shutdown();
  assert.equal(broker.closed, true);
});

Deno.test("broker seam: no broker, no broker metrics", async () => {
  const server = serve({ port: 0, hostname: "127.0.0.1" });
  assert.equal(server.metrics().broker, undefined);
  assert.doesNotMatch(formatPrometheus(server.metrics()), /broker/);
  await server.shutdown();
});
