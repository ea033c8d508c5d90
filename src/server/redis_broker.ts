/**
 * A {@linkcode Broker} on Redis Pub/Sub: topic messages cross between
 * servers through `PUBLISH` on one connection and `SUBSCRIBE` on a
 * dedicated one, under a channel prefix.
 *
 * @module
 */

import {
  decodeEnvelope,
  envelopeFrom,
  envelopeHead,
  isNodeId,
} from "../protocol/broker_envelope.ts";
import { encodeCommand, type RespValue } from "../protocol/resp.ts";
import { utf8Length } from "../protocol/utf8.ts";
import type { Broker, BrokerDeliver, BrokerMetrics } from "./broker.ts";
import {
  parseRedisUrl,
  RedisConnection,
  type RedisConnectionOptions,
  RedisError,
  type RedisTarget,
  targetAddress,
} from "./redis_connection.ts";

/**
 * Options of {@linkcode RedisBroker}.
 *
 * @example
 * ```ts
 * import type { RedisBrokerOptions } from "@tsunagu/ws";
 * const options: RedisBrokerOptions = {
 *   url: "redis://redis.internal:6379/0",
 *   password: Deno.env.get("REDIS_PASSWORD"),
 *   prefix: "chat:",
 * };
 * ```
 */
export interface RedisBrokerOptions {
  /**
   * `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS.
   * Default `redis://127.0.0.1:6379`.
   */
  url?: string;
  /** ACL user name; overrides the URL's. */
  username?: string;
  /** Password; overrides the URL's (keep it off command lines). */
  password?: string;
  /** Extra root certificates (PEM) for `rediss://`. */
  caCerts?: string[];
  /** Channel name prefix: topic `room` is channel `tsunagu:room` by default. */
  prefix?: string;
  /**
   * Largest message (payload bytes; text counted in UTF-8) sent through
   * Redis; larger ones reach local subscribers only and are counted as
   * `tooLarge`. Default 1 MiB.
   */
  maxMessageBytes?: number;
  /**
   * Bytes of commands that may wait for a Redis that does not keep up;
   * messages beyond are dropped and counted as `queueFull`. Default 8 MiB.
   */
  maxQueueBytes?: number;
  /** Milliseconds between PINGs on each connection. Default 5 000. */
  pingInterval?: number;
  /** Milliseconds a PING may go unanswered before the connection is replaced. Default 5 000. */
  pingTimeout?: number;
  /** Milliseconds for connecting and authenticating. Default 5 000. */
  connectTimeout?: number;
  /** First retry delay in ms; doubles per failure (with jitter) up to `maxRetryDelay`. Default 100. */
  minRetryDelay?: number;
  /** Longest retry delay in ms. Default 5 000. */
  maxRetryDelay?: number;
  /** This server's id in the messages it publishes (printable ASCII). Default: random. */
  nodeId?: string;
  /**
   * Called when the broker goes up or down (with the reason), e.g. for
   * logging. Default: a line on stderr per change.
   */
  onStateChange?: (up: boolean, reason: string) => void;
}

const decoder = new TextDecoder();
// SUBSCRIBE at most this many channels per command when subscribing again.
const SUBSCRIBE_BATCH = 1000;

function randomNodeId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a positive number, got ${value}`);
  }
  return value;
}

/** Whether `bytes` spells the ASCII `word`. */
function isWord(bytes: RespValue, word: string): boolean {
  if (!(bytes instanceof Uint8Array) || bytes.length !== word.length) return false;
  for (let k = 0; k < word.length; k++) if (bytes[k] !== word.charCodeAt(k)) return false;
  return true;
}

/**
 * Carries topic messages between servers through Redis Pub/Sub. Give it to
 * `serve({ broker: new RedisBroker({ url }) })`.
 *
 * - One connection publishes (`PUBLISH prefix+topic envelope`), another is
 *   subscribed to the channels of the topics that have local subscribers.
 *   The envelope keeps text apart from binary and names the publishing
 *   server, which ignores its own messages when Redis echoes them.
 * - Delivery between servers is at-most-once, like Redis Pub/Sub: while
 *   Redis is unreachable, local delivery carries on and messages for other
 *   servers are dropped and counted (`down`). The broker reconnects with
 *   backoff and jitter and subscribes again to every current topic.
 * - Each connection is PINGed every `pingInterval`; one that answers
 *   nothing for `pingTimeout` (Redis stopped, or a NAT forgot the
 *   connection) is replaced.
 * - At most `maxQueueBytes` wait for a slow Redis (`queueFull` drops beyond),
 *   and messages over `maxMessageBytes` stay local (`tooLarge`).
 *
 * @example
 * ```ts ignore
 * import { RedisBroker, serve } from "@tsunagu/ws";
 * const server = serve({
 *   port: 8080,
 *   broker: new RedisBroker({ url: "redis://127.0.0.1:6379" }),
 * }, {
 *   open: (socket) => socket.subscribe("lobby"),
 *   message: (socket, data) => server.publish("lobby", data), // every node's lobby
 * });
 * ```
 */
export class RedisBroker implements Broker {
  readonly #target: RedisTarget;
  readonly #prefix: string;
  readonly #nodeId: string;
  readonly #maxMessageBytes: number;
  readonly #connectionOptions: RedisConnectionOptions;
  readonly #pingInterval: number;
  readonly #pingTimeout: number;
  readonly #minRetryDelay: number;
  readonly #maxRetryDelay: number;
  readonly #onStateChange: (up: boolean, reason: string) => void;

  // Envelope headers (kind byte, node id) for text and binary, made once.
  readonly #textHead: Uint8Array;
  readonly #binaryHead: Uint8Array;
  #deliver: BrokerDeliver | null = null;
  #topics = new Set<string>();
  #publisher: RedisConnection | null = null;
  #subscriber: RedisConnection | null = null;
  #up = false;
  #closed = false;
  #running: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;
  // Aborted by close(): a connection attempt in progress gives up at once.
  #abort = new AbortController();
  #lastError: RedisError | null = null;
  #metrics = {
    messagesOut: 0,
    bytesOut: 0,
    messagesIn: 0,
    bytesIn: 0,
    reconnects: 0,
  };
  #dropped = { down: 0, queueFull: 0, tooLarge: 0, malformed: 0 };

  /**
   * Checks the options (a bad URL throws here); connects only once the
   * server starts it.
   *
   * @throws {TypeError} for a URL that is not `redis://` or `rediss://`.
   */
  constructor(options: RedisBrokerOptions = {}) {
    const target = parseRedisUrl(options.url ?? "redis://127.0.0.1:6379");
    if (options.username !== undefined) target.username = options.username;
    if (options.password !== undefined) target.password = options.password;
    this.#target = target;
    this.#prefix = options.prefix ?? "tsunagu:";
    this.#nodeId = options.nodeId ?? randomNodeId();
    if (!isNodeId(this.#nodeId)) {
      throw new RangeError("nodeId must be 1 to 255 printable ASCII characters");
    }
    this.#textHead = envelopeHead(this.#nodeId, true);
    this.#binaryHead = envelopeHead(this.#nodeId, false);
    this.#maxMessageBytes = positive("maxMessageBytes", options.maxMessageBytes ?? 1024 * 1024);
    this.#pingInterval = positive("pingInterval", options.pingInterval ?? 5_000);
    this.#pingTimeout = positive("pingTimeout", options.pingTimeout ?? 5_000);
    this.#minRetryDelay = positive("minRetryDelay", options.minRetryDelay ?? 100);
    this.#maxRetryDelay = positive("maxRetryDelay", options.maxRetryDelay ?? 5_000);
    this.#connectionOptions = {
      timeout: positive("connectTimeout", options.connectTimeout ?? 5_000),
      maxQueueBytes: positive("maxQueueBytes", options.maxQueueBytes ?? 8 * 1024 * 1024),
      caCerts: options.caCerts,
      signal: this.#abort.signal,
      // A message from another server is at most its maxMessageBytes plus the
      // envelope; accept up to 64 MiB so servers with different caps agree.
      maxBulkLength: 64 * 1024 * 1024,
    };
    const where = targetAddress(target);
    this.#onStateChange = options.onStateChange ??
      ((up, reason) =>
        console.error(
          up
            ? `tsunagu: redis broker up (${where})`
            : `tsunagu: redis broker down (${where}): ${reason}; retrying`,
        ));
  }

  /** Whether both connections are open and subscribed. */
  get up(): boolean {
    return this.#up;
  }

  /** This server's id in the messages it publishes. */
  get nodeId(): string {
    return this.#nodeId;
  }

  /** The last connection error, if any (for health checks and logs). */
  get lastError(): RedisError | null {
    return this.#lastError;
  }

  /** Starts connecting (in the background); called by the server. */
  start(deliver: BrokerDeliver): void {
    if (this.#running !== null) throw new Error("the broker was started already");
    if (this.#closed) throw new Error("the broker is closed");
    this.#deliver = deliver;
    const tick = Math.max(10, Math.min(this.#pingInterval, this.#pingTimeout) / 4);
    this.#timer = setInterval(() => this.#heartbeat(), tick);
    this.#running = this.#run();
  }

  subscribe(topic: string): void {
    if (this.#topics.has(topic)) return;
    this.#topics.add(topic);
    this.#subscriber?.send(encodeCommand(["SUBSCRIBE", this.#prefix + topic]), true);
  }

  unsubscribe(topic: string): void {
    if (!this.#topics.delete(topic)) return;
    this.#subscriber?.send(encodeCommand(["UNSUBSCRIBE", this.#prefix + topic]), true);
  }

  publish(topic: string, data: string | Uint8Array): void {
    const publisher = this.#publisher;
    if (publisher === null || !this.#up) {
      this.#dropped.down++;
      return;
    }
    const text = typeof data === "string";
    const size = text ? utf8Length(data) : data.length;
    if (size > this.#maxMessageBytes) {
      this.#dropped.tooLarge++;
      return;
    }
    // One buffer: PUBLISH, the channel, and the envelope (header then payload).
    const head = text ? this.#textHead : this.#binaryHead;
    const command = encodeCommand(["PUBLISH", this.#prefix + topic, [head, data]]);
    if (!publisher.send(command)) {
      this.#dropped[publisher.open ? "queueFull" : "down"]++;
      return;
    }
    this.#metrics.messagesOut++;
    this.#metrics.bytesOut += size;
  }

  /** Counters: state, messages and bytes each way, drops by cause, reconnects. */
  metrics(): BrokerMetrics {
    return { up: this.#up, ...this.#metrics, dropped: { ...this.#dropped } };
  }

  /** Closes both connections and stops retrying; called by the server at shutdown. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#abort.abort();
    this.#publisher?.close("broker closed");
    this.#subscriber?.close("broker closed");
    this.#wake?.();
    await this.#running;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      let publisher: RedisConnection | null = null;
      let subscriber: RedisConnection | null = null;
      let reason: string;
      try {
        publisher = await RedisConnection.open(this.#target, this.#connectionOptions);
        if (this.#closed) break;
        subscriber = await RedisConnection.open(this.#target, this.#connectionOptions);
        if (this.#closed) break;
        subscriber.subscriberMode((value) => this.#onPush(value));
        publisher.onCommandError = (error) => {
          publisher!.close(`Redis refused a PUBLISH: ${error.message}`);
        };
        this.#publisher = publisher;
        this.#subscriber = subscriber;
        // Every current topic again: a new connection starts with none.
        const channels = [...this.#topics].map((topic) => this.#prefix + topic);
        for (let at = 0; at < channels.length; at += SUBSCRIBE_BATCH) {
          subscriber.send(
            encodeCommand(["SUBSCRIBE", ...channels.slice(at, at + SUBSCRIBE_BATCH)]),
            true,
          );
        }
        this.#lastError = null;
        this.#setUp(true, "connected");
        failures = 0;
        reason = await Promise.race([publisher.closed, subscriber.closed]);
        this.#lastError = new RedisError("closed", reason);
      } catch (error) {
        this.#lastError = error instanceof RedisError
          ? error
          : new RedisError("closed", (error as Error).message);
        reason = this.#lastError.message;
      } finally {
        this.#publisher = null;
        this.#subscriber = null;
        publisher?.close("reconnecting");
        subscriber?.close("reconnecting");
        await Promise.all([publisher?.closed, subscriber?.closed]);
      }
      if (this.#closed) break;
      this.#metrics.reconnects++;
      if (this.#up || failures === 0) this.#setUp(false, reason, true);
      const ceiling = Math.min(this.#maxRetryDelay, this.#minRetryDelay * 2 ** failures);
      failures = Math.min(failures + 1, 30);
      // Full jitter in the upper half: servers that lost Redis together do not retry together.
      await this.#sleep(ceiling * (0.5 + Math.random() * 0.5));
    }
    this.#up = false;
  }

  #setUp(up: boolean, reason: string, force = false): void {
    if (this.#up === up && !force) return;
    this.#up = up;
    try {
      this.#onStateChange(up, reason);
    } catch {
      // A logging callback must not stop the broker.
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    }).then(() => {
      this.#wake = null;
    });
  }

  #heartbeat(): void {
    const now = Date.now();
    this.#publisher?.heartbeat(now, this.#pingInterval, this.#pingTimeout);
    this.#subscriber?.heartbeat(now, this.#pingInterval, this.#pingTimeout);
  }

  /** A reply on the subscriber connection: a message, a confirmation or a pong. */
  #onPush(value: RespValue): void {
    if (!Array.isArray(value) || value.length !== 3 || !isWord(value[0], "message")) return;
    const channel = value[1];
    const payload = value[2];
    if (!(channel instanceof Uint8Array) || !(payload instanceof Uint8Array)) {
      this.#dropped.malformed++;
      return;
    }
    if (envelopeFrom(payload, this.#nodeId)) return; // our own, delivered locally already
    const name = decoder.decode(channel);
    if (!name.startsWith(this.#prefix)) return;
    const topic = name.slice(this.#prefix.length);
    if (!this.#topics.has(topic)) return; // unsubscribed while in flight
    const envelope = decodeEnvelope(payload);
    if (envelope === null) {
      this.#dropped.malformed++;
      return;
    }
    this.#metrics.messagesIn++;
    this.#metrics.bytesIn += payload.length - 2 - envelope.node.length;
    this.#deliver?.(topic, envelope.data);
  }
}

/**
 * Connects to Redis once (AUTH, SELECT, PING) and disconnects: to refuse to
 * start on a wrong password or a URL that is not Redis, rather than retry
 * forever. Options as for {@linkcode RedisBroker}.
 *
 * @throws {RedisError} with `kind` `unreachable`, `timeout`, `auth`,
 * `protocol` or `command`, and the reason in the message.
 *
 * @example
 * ```ts ignore
 * import { checkRedis, RedisError } from "@tsunagu/ws";
 * try {
 *   await checkRedis({ url: "redis://127.0.0.1:6379" });
 * } catch (error) {
 *   if (error instanceof RedisError && error.kind === "auth") Deno.exit(1);
 * }
 * ```
 */
export async function checkRedis(options: RedisBrokerOptions = {}): Promise<void> {
  const target = parseRedisUrl(options.url ?? "redis://127.0.0.1:6379");
  if (options.username !== undefined) target.username = options.username;
  if (options.password !== undefined) target.password = options.password;
  const connection = await RedisConnection.open(target, {
    timeout: options.connectTimeout ?? 5_000,
    maxQueueBytes: 1024 * 1024,
    caCerts: options.caCerts,
  });
  connection.close("checked");
  await connection.closed;
}
