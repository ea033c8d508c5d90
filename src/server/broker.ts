/**
 * The broker seam: how topic messages travel between servers (processes,
 * machines). A server with a {@linkcode Broker} delivers every publish to its
 * own subscribers at once, as without one, and hands it to the broker; what
 * the broker brings from other servers goes to local subscribers only.
 *
 * @module
 */

/**
 * Where a broker hands messages from other servers: the server delivers them
 * to its local subscribers of `topic` only (never back to the broker).
 * Strings go out as text frames, bytes as binary frames.
 *
 * @example
 * ```ts
 * import type { BrokerDeliver } from "@tsunagu/ws";
 * const seen: string[] = [];
 * const deliver: BrokerDeliver = (topic, data) => void seen.push(`${topic}: ${data}`);
 * deliver("lobby", "hi");
 * console.log(seen); // [ "lobby: hi" ]
 * ```
 */
export type BrokerDeliver = (topic: string, data: string | Uint8Array) => void;

/**
 * Counters of a broker, shown as `server.metrics().broker` and in the
 * Prometheus text (`tsunagu_broker_*`).
 *
 * @example
 * ```ts
 * import type { BrokerMetrics } from "@tsunagu/ws";
 * const metrics: BrokerMetrics = {
 *   up: true,
 *   messagesOut: 0,
 *   bytesOut: 0,
 *   messagesIn: 0,
 *   bytesIn: 0,
 *   dropped: { down: 0, queueFull: 0, tooLarge: 0, malformed: 0 },
 *   reconnects: 0,
 * };
 * console.log(metrics.up); // true
 * ```
 */
export interface BrokerMetrics {
  /** Whether the broker is connected (messages can cross to other servers now). */
  up: boolean;
  /** Messages handed on to other servers. */
  messagesOut: number;
  /** Payload bytes of those messages. */
  bytesOut: number;
  /** Messages received from other servers and delivered locally. */
  messagesIn: number;
  /** Payload bytes of those messages. */
  bytesIn: number;
  /**
   * Messages not carried, by cause: `down` (published while the broker was
   * not connected), `queueFull` (the broker did not keep up and its send
   * queue was full), `tooLarge` (over the broker's size cap), `malformed`
   * (received bytes that were not a message). A broker may add causes.
   */
  dropped: Record<string, number>;
  /** Times the connection was lost (or could not be made) and tried again. */
  reconnects: number;
}

/**
 * Carries topic messages between servers. Pass one to
 * `serve({ broker })`; the server owns it from then on: it calls
 * {@linkcode Broker.start} once, keeps the broker's subscriptions equal to
 * the topics that have local subscribers (`subscribe` on a topic's first
 * local subscriber, `unsubscribe` on its last), calls `publish` for every
 * `server.publish` and `socket.publish` (whether or not any local socket
 * listens), and calls {@linkcode Broker.close} when it shuts down.
 *
 * The contract for implementations:
 *
 * - Call `deliver` only with messages published by other servers, never with
 *   this server's own (they were delivered locally already), and only for
 *   topics currently subscribed.
 * - Keep a publisher's order: messages from one server on one topic reach
 *   every other server in the order they were published.
 * - Keep strings as strings and bytes as bytes.
 * - Never block or throw in `publish`, `subscribe` or `unsubscribe`: they
 *   run on the message path. Queue (bounded) or drop, and count drops.
 * - Reconnect by itself, and subscribe again to every current topic after
 *   reconnecting.
 *
 * @example A broker for servers in one process (a user-written broker: any
 * bus with publish and subscribe fits the same shape, e.g. NATS)
 * ```ts
 * import { type Broker, type BrokerDeliver, serve } from "@tsunagu/ws";
 *
 * class LocalBus {
 *   nodes = new Set<LocalBroker>();
 * }
 *
 * class LocalBroker implements Broker {
 *   #deliver: BrokerDeliver | null = null;
 *   #topics = new Set<string>();
 *   constructor(readonly bus: LocalBus) {}
 *   start(deliver: BrokerDeliver): void {
 *     this.#deliver = deliver;
 *     this.bus.nodes.add(this);
 *   }
 *   subscribe(topic: string): void {
 *     this.#topics.add(topic);
 *   }
 *   unsubscribe(topic: string): void {
 *     this.#topics.delete(topic);
 *   }
 *   publish(topic: string, data: string | Uint8Array): void {
 *     for (const node of this.bus.nodes) {
 *       // Not back to the publisher; only to nodes with local interest.
 *       if (node !== this && node.#topics.has(topic)) node.#deliver!(topic, data);
 *     }
 *   }
 *   close(): void {
 *     this.bus.nodes.delete(this);
 *   }
 * }
 *
 * const bus = new LocalBus();
 * const a = serve({ port: 0, hostname: "127.0.0.1", broker: new LocalBroker(bus) });
 * const b = serve({ port: 0, hostname: "127.0.0.1", broker: new LocalBroker(bus) }, {
 *   open(socket) {
 *     socket.subscribe("lobby");
 *     socket.send("joined");
 *   },
 * });
 * const client = new WebSocket(b.url);
 * const messages: string[] = [];
 * await new Promise<void>((resolve) =>
 *   client.onmessage = (event) => {
 *     messages.push(event.data);
 *     if (event.data === "joined") a.publish("lobby", "hello from a"); // no subscriber on a
 *     else resolve();
 *   }
 * );
 * console.log(messages); // [ "joined", "hello from a" ]
 * client.close();
 * await Promise.all([a.shutdown(), b.shutdown()]);
 * ```
 */
export interface Broker {
  /**
   * Called once by the server when it starts. Connect in the background:
   * the server serves local traffic at once, whether or not the broker is up.
   */
  start(deliver: BrokerDeliver): void;
  /** The first local subscriber of `topic` arrived: receive its messages from now on. */
  subscribe(topic: string): void;
  /** The last local subscriber of `topic` left: stop receiving its messages. */
  unsubscribe(topic: string): void;
  /** Carry a message to the other servers. Must not throw or block. */
  publish(topic: string, data: string | Uint8Array): void;
  /** Called by the server when it has shut down: release connections and timers. */
  close(): void | Promise<void>;
  /** Optional counters, shown as `server.metrics().broker`. */
  metrics?(): BrokerMetrics;
}
