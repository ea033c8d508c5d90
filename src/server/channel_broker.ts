/**
 * A {@linkcode Broker} for servers in one process: workers (or several
 * servers on one thread) share topics over `MessagePort`s, one port per
 * pair of servers.
 *
 * Why MessagePorts and not a `BroadcastChannel`, which would need no set-up:
 * Deno's BroadcastChannel drops messages when a burst outruns a receiver
 * (measured: of 20,000 messages posted in a loop, 5,888 arrived; of 1,000,
 * 322), silently. A MessagePort queues instead and delivered every message
 * in the same runs (200,000 of 200,000), in order. One port per pair is one
 * hop from any server to any other with no relay thread; the pool mends the
 * mesh when a worker is replaced (see workers.ts). bench/channel_bench.ts
 * measures both.
 *
 * @module
 */

import type { Broker, BrokerDeliver, BrokerMetrics } from "./broker.ts";

/** What crosses a port: a topic and its message. */
interface PeerMessage {
  topic: string;
  data: string | Uint8Array;
}

/**
 * A broker over MessagePorts: every server whose broker is linked to this
 * one (by {@linkcode ChannelBroker.link}, or by {@linkcode serveWorkers}
 * for its workers) receives this server's publishes for the topics it has
 * subscribers of, and this server theirs.
 *
 * Delivery is in order per publisher and nothing is lost while both ends
 * run: ports queue rather than drop. There is no backpressure between
 * servers: a publisher that outruns another server's event loop grows that
 * server's queue (the same as a fast publisher on one server grows its
 * sockets' queues, which `maxBufferedAmount` bounds).
 *
 * @example Two servers in one process, linked
 * ```ts
 * import { ChannelBroker, serve } from "@tsunagu/ws";
 * const brokerA = new ChannelBroker();
 * const brokerB = new ChannelBroker();
 * ChannelBroker.link(brokerA, brokerB);
 * const a = serve({ port: 0, hostname: "127.0.0.1", broker: brokerA });
 * const b = serve({ port: 0, hostname: "127.0.0.1", broker: brokerB }, {
 *   open(socket) {
 *     socket.subscribe("lobby");
 *     socket.send("joined");
 *   },
 * });
 * const client = new WebSocket(b.url);
 * const heard = await new Promise((resolve) => {
 *   client.onmessage = (event) => {
 *     if (event.data === "joined") a.publish("lobby", "hello from a");
 *     else resolve(event.data);
 *   };
 * });
 * console.log(heard); // hello from a
 * client.close();
 * await Promise.all([a.shutdown(), b.shutdown()]);
 * ```
 */
export class ChannelBroker implements Broker {
  #peers = new Map<string, MessagePort>();
  #deliver: BrokerDeliver | null = null;
  #started = false;
  #closed = false;
  #topics = new Set<string>();
  #metrics = { messagesOut: 0, bytesOut: 0, messagesIn: 0, bytesIn: 0, malformed: 0 };
  static #linked = 0;

  /**
   * Links two brokers with a new `MessageChannel`: each then hears the
   * other's publishes. Link every pair that should share topics.
   */
  static link(a: ChannelBroker, b: ChannelBroker): void {
    const { port1, port2 } = new MessageChannel();
    const id = `link-${++ChannelBroker.#linked}`;
    a.addPeer(id, port1);
    b.addPeer(id, port2);
  }

  /**
   * Adds the port to another server's broker, under an `id` this broker
   * uses only to {@linkcode ChannelBroker.removePeer} it again. A port with
   * the same id replaces the old one.
   */
  addPeer(id: string, port: MessagePort): void {
    this.removePeer(id);
    if (this.#closed) {
      port.close();
      return;
    }
    this.#peers.set(id, port);
    port.onmessage = (event: MessageEvent<PeerMessage>) => this.#receive(event.data);
    // A port receives only once started; before start() nothing is delivered anyway.
    if (this.#started) port.start();
  }

  /** Closes the port to a server that is gone (e.g. a worker being replaced). */
  removePeer(id: string): void {
    const port = this.#peers.get(id);
    if (port === undefined) return;
    port.close();
    this.#peers.delete(id);
  }

  /** How many other servers this broker reaches. */
  get peers(): number {
    return this.#peers.size;
  }

  /** Starts receiving; called by the server. */
  start(deliver: BrokerDeliver): void {
    this.#deliver = deliver;
    this.#started = true;
    for (const port of this.#peers.values()) port.start();
  }

  /** Starts taking `topic`'s messages. */
  subscribe(topic: string): void {
    this.#topics.add(topic);
  }

  /** Stops taking `topic`'s messages. */
  unsubscribe(topic: string): void {
    this.#topics.delete(topic);
  }

  /** Posts a message to every linked server. */
  publish(topic: string, data: string | Uint8Array): void {
    if (this.#closed || this.#peers.size === 0) return;
    const message: PeerMessage = { topic, data };
    for (const port of this.#peers.values()) port.postMessage(message);
    this.#metrics.messagesOut++;
    this.#metrics.bytesOut += data.length;
  }

  /** Closes every port; called by the server at shutdown. */
  close(): void {
    this.#closed = true;
    for (const port of this.#peers.values()) port.close();
    this.#peers.clear();
    this.#deliver = null;
  }

  /**
   * Counters for `server.metrics().broker`. Byte counts are payload bytes
   * for binary messages and UTF-16 lengths for text (no encoding just to count).
   */
  metrics(): BrokerMetrics {
    const { messagesOut, bytesOut, messagesIn, bytesIn, malformed } = this.#metrics;
    return {
      up: !this.#closed,
      messagesOut,
      bytesOut,
      messagesIn,
      bytesIn,
      dropped: { malformed },
      reconnects: 0,
    };
  }

  #receive(message: PeerMessage): void {
    if (
      message === null || typeof message !== "object" || typeof message.topic !== "string" ||
      (typeof message.data !== "string" && !(message.data instanceof Uint8Array))
    ) {
      this.#metrics.malformed++;
      return;
    }
    // Every linked server gets every message: keep those with local interest.
    if (!this.#topics.has(message.topic) || this.#deliver === null) return;
    this.#metrics.messagesIn++;
    this.#metrics.bytesIn += message.data.length;
    this.#deliver(message.topic, message.data);
  }
}
