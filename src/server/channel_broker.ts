/**
 * A {@linkcode Broker} for servers in one process: workers (or several
 * servers on one thread) share topics through a `BroadcastChannel`.
 *
 * Why a BroadcastChannel and not MessagePorts: a channel is one hop from
 * any worker to every other, with no relay thread and no N×N mesh of ports
 * to set up and mend when a worker is replaced; the spec keeps one sender's
 * messages in order; and structured cloning keeps strings as strings and
 * bytes as bytes. Its cost is that every worker receives every message and
 * drops those for topics it has no subscriber of: with one worker per core
 * that is a handful of receivers, measured in bench/RESULTS.md.
 *
 * @module
 */

import type { Broker, BrokerDeliver, BrokerMetrics } from "./broker.ts";

/** What crosses the channel: a topic and its message. */
interface ChannelMessage {
  topic: string;
  data: string | Uint8Array;
}

/**
 * A broker over a `BroadcastChannel`: every server in the process that
 * uses the same channel name shares its topics with the others. This is
 * what {@linkcode serveWorkers} gives each worker; use it directly to share
 * topics between servers you start yourself in one process.
 *
 * Delivery is in order per publisher and never lost while both ends run (a
 * channel has no network to fail); a message published while a worker is
 * being replaced does not reach that worker's clients, who have been
 * disconnected anyway.
 *
 * @example
 * ```ts
 * import { ChannelBroker, serve } from "@tsunagu/ws";
 * const a = serve({ port: 0, hostname: "127.0.0.1", broker: new ChannelBroker("doc-example") });
 * const b = serve({ port: 0, hostname: "127.0.0.1", broker: new ChannelBroker("doc-example") }, {
 *   open(socket) {
 *     socket.subscribe("lobby");
 *     socket.send("joined");
 *   },
 * });
 * const client = new WebSocket(b.url);
 * const heard = await new Promise((resolve) => {
 *   client.onmessage = (event) => {
 *     if (event.data === "joined") setTimeout(() => a.publish("lobby", "hello from a"), 50);
 *     else resolve(event.data);
 *   };
 * });
 * console.log(heard); // hello from a
 * client.close();
 * await Promise.all([a.shutdown(), b.shutdown()]);
 * ```
 */
export class ChannelBroker implements Broker {
  readonly #name: string;
  #channel: BroadcastChannel | null = null;
  #deliver: BrokerDeliver | null = null;
  #topics = new Set<string>();
  #metrics = {
    messagesOut: 0,
    bytesOut: 0,
    messagesIn: 0,
    bytesIn: 0,
    malformed: 0,
  };

  /** Servers whose brokers use the same `name` share topics. */
  constructor(name = "tsunagu") {
    this.#name = name;
  }

  /** Opens the channel; called by the server. */
  start(deliver: BrokerDeliver): void {
    this.#deliver = deliver;
    const channel = this.#channel = new BroadcastChannel(this.#name);
    channel.onmessage = (event: MessageEvent<ChannelMessage>) => this.#receive(event.data);
  }

  /** Starts taking `topic`'s messages from the channel. */
  subscribe(topic: string): void {
    this.#topics.add(topic);
  }

  /** Stops taking `topic`'s messages. */
  unsubscribe(topic: string): void {
    this.#topics.delete(topic);
  }

  /** Posts a message to every other server on the channel. */
  publish(topic: string, data: string | Uint8Array): void {
    const channel = this.#channel;
    if (channel === null) return;
    channel.postMessage({ topic, data } satisfies ChannelMessage);
    this.#metrics.messagesOut++;
    this.#metrics.bytesOut += byteLength(data);
  }

  /** Closes the channel. */
  close(): void {
    this.#channel?.close();
    this.#channel = null;
    this.#deliver = null;
  }

  /** Counters for `server.metrics().broker`. */
  metrics(): BrokerMetrics {
    const { messagesOut, bytesOut, messagesIn, bytesIn, malformed } = this.#metrics;
    return {
      up: this.#channel !== null,
      messagesOut,
      bytesOut,
      messagesIn,
      bytesIn,
      dropped: { malformed },
      reconnects: 0,
    };
  }

  #receive(message: ChannelMessage): void {
    // Anyone in the process may post on a channel name: check the shape.
    if (
      message === null || typeof message !== "object" || typeof message.topic !== "string" ||
      (typeof message.data !== "string" && !(message.data instanceof Uint8Array))
    ) {
      this.#metrics.malformed++;
      return;
    }
    // Every server on the channel gets every message: keep those with local interest.
    if (!this.#topics.has(message.topic) || this.#deliver === null) return;
    this.#metrics.messagesIn++;
    this.#metrics.bytesIn += byteLength(message.data);
    this.#deliver(message.topic, message.data);
  }
}

/** Bytes of a binary message; a string counts its UTF-16 length (no encoding just to count). */
function byteLength(data: string | Uint8Array): number {
  return data.length;
}
