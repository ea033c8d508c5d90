/**
 * The server: listening, accepting, the registry of open connections,
 * topics, housekeeping timers and graceful shutdown.
 *
 * @module
 */

import { CloseCode } from "../protocol/frame.ts";
import type { Connection } from "../connection/connection.ts";
import { addTraffic, type ServerMetrics, type TrafficCounters } from "./metrics.ts";
import { SharedMessage } from "../connection/shared_message.ts";
import { HttpSession, readerOptions, type SessionHost } from "./http_session.ts";
import {
  type Handlers,
  type ResolvedOptions,
  resolveOptions,
  type ServeOptions,
} from "./options.ts";
import type { SendData, Socket } from "../connection/socket.ts";
import type { AssemblyBudget } from "../protocol/message.ts";
import type { ByteReaderOptions } from "../connection/byte_reader.ts";
import type { Broker } from "./broker.ts";

/**
 * Options for {@linkcode Server.shutdown}.
 *
 * @example
 * ```ts
 * import { serve, type ShutdownOptions } from "@tsunagu/ws";
 * const server = serve({ port: 0, hostname: "127.0.0.1" });
 * const options: ShutdownOptions = { code: 1001, reason: "maintenance", timeout: 1_000 };
 * await server.shutdown(options);
 * ```
 */
export interface ShutdownOptions {
  /** Close code sent to every client. Default 1001 (going away). */
  code?: number;
  /** Close reason sent to every client. Default `"server shutting down"`. */
  reason?: string;
  /** Milliseconds to wait for clients to finish the closing handshake before dropping them. Default: `closeTimeout`. */
  timeout?: number;
}

/** Waits for `promise` or `ms` milliseconds, whichever comes first; leaves no timer behind. */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
  try {
    await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

// Housekeeping runs at a quarter of the shortest configured timeout, so a
// deadline fires at most 25% late, but never more often than every 10 ms nor
// less often than every second.
function housekeepingInterval(options: ResolvedOptions): number {
  const periods = [
    options.handshakeTimeout,
    options.keepAliveTimeout,
    options.idleTimeout,
    options.pingInterval,
    options.pongTimeout,
    options.closeTimeout,
  ].filter((value) => value > 0);
  const shortest = periods.length === 0 ? 4000 : Math.min(...periods);
  return Math.min(1000, Math.max(10, Math.floor(shortest / 4)));
}

/**
 * Why `accept()` failed, which decides what the accept loop does next:
 *
 * - `"connection"`: a problem of that one connection, typically a peer that
 *   connected and reset before it was accepted (ENOTCONN: Deno asks for the
 *   peer's address, which a reset socket no longer has; ECONNABORTED), or a
 *   network error Linux passes on from the new socket (accept(2)). The next
 *   connection is unaffected: accept again at once, and tell no one (a peer
 *   can cause any number of these; they are counted in the metrics).
 * - `"resources"`: the process or system is out of descriptors, buffers or
 *   memory (EMFILE, ENFILE, ENOBUFS, ENOMEM). Accepting again at once would
 *   spin; pausing lets connections end and free what is needed.
 * - `"other"`: anything else is unexpected: treated like `"resources"`, so an
 *   error that repeats cannot spin the loop.
 */
export type AcceptErrorKind = "connection" | "resources" | "other";

const CONNECTION_ERRORS = new Set([
  "ENOTCONN",
  "ECONNABORTED",
  "ECONNRESET",
  "EPROTO",
  "EPERM",
  "ETIMEDOUT",
  "ENETDOWN",
  "ENETUNREACH",
  "EHOSTDOWN",
  "EHOSTUNREACH",
  "ENONET",
  "ENOPROTOOPT",
  "EOPNOTSUPP",
  "EINTR",
  "EAGAIN",
  "EWOULDBLOCK",
]);
const RESOURCE_ERRORS = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/** Classifies an `accept()` error by its errno code (Deno sets `code`), else its class. */
export function acceptErrorKind(error: unknown): AcceptErrorKind {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    if (CONNECTION_ERRORS.has(code)) return "connection";
    if (RESOURCE_ERRORS.has(code)) return "resources";
  }
  if (
    error instanceof Deno.errors.NotConnected || error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted || error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.TimedOut || error instanceof Deno.errors.WouldBlock
  ) {
    return "connection";
  }
  if (
    /too many open files|no buffer space|out of memory|cannot allocate memory/i.test(String(error))
  ) {
    return "resources";
  }
  return "other";
}

// After an accept() that failed for lack of resources the loop pauses, 10 ms
// at first and twice as long after each further failure in a row, up to
// 100 ms: descriptors are freed within milliseconds when connections end,
// and 100 ms keeps a server at its limit responsive once they are.
const ACCEPT_PAUSE_MIN_MS = 10;
const ACCEPT_PAUSE_MAX_MS = 100;

// How many bytes, across all of a server's connections, message buffers may
// be allocated at the length a frame header declares instead of growing with
// the bytes received (src/message.ts). Trusting the header saves 2-3
// allocate-and-copy rounds per large message; the budget caps what peers that
// announce large messages and never send them can make the server hold.
// 32 MiB: two claims at the 16 MiB maxPayload default, or 32 messages of 1 MiB in flight at once.
const ASSEMBLY_BUDGET_BYTES = 32 * 1024 * 1024;

/**
 * Objects that come and go by the thousand per second (handshakes in
 * progress, open connections), as an array: each member carries its index
 * (under a symbol of the list's own) and leaves by swapping the last one
 * into its place. Not a Set: under that churn a Set is rehashed into a new
 * table every few dozen additions, and V8 links each obsolete table to its
 * successor (for iterators) with the entries it held. Once an obsolete
 * table has been promoted, that link keeps the next table, and every
 * connection in it, alive through scavenges until a full collection, and
 * the effect feeds itself: in the connect benchmark ~15% of the young
 * generation survived each scavenge (~2 MB whether 4 or 32 clients
 * connect), against 2–4% with no churned Set on the path (4 runs of 4),
 * and the scavenges took ~10% of the CPU.
 */
class SlotList<V extends object> {
  /** The members, in no particular order. */
  readonly items: V[] = [];
  readonly #slot = Symbol("slot");

  get size(): number {
    return this.items.length;
  }

  add(value: V): void {
    (value as Record<symbol, number>)[this.#slot] = this.items.length;
    this.items.push(value);
  }

  delete(value: V): void {
    const slots = value as Record<symbol, number>;
    const at = slots[this.#slot];
    if (at === undefined || at < 0 || this.items[at] !== value) return;
    const last = this.items.pop()!;
    if (last !== value) {
      this.items[at] = last;
      (last as Record<symbol, number>)[this.#slot] = at;
    }
    slots[this.#slot] = -1;
  }

  clear(): void {
    for (const value of this.items) (value as Record<symbol, number>)[this.#slot] = -1;
    this.items.length = 0;
  }
}

/**
 * The open sockets: a {@linkcode SlotList}, and the live `Set` that
 * `Server.clients` returns, made only once the application asks for it
 * (in the order the sockets opened) and kept up to date from then on. A
 * server whose application never looks does not churn a Set per
 * connection (see SlotList).
 */
class SocketRegistry<V extends object> {
  #list = new SlotList<V>();
  #set: Set<V> | null = null;
  readonly #order = Symbol("opened");
  #opened = 0;

  get size(): number {
    return this.#list.size;
  }

  add(value: V): void {
    (value as Record<symbol, number>)[this.#order] = this.#opened++;
    this.#list.add(value);
    this.#set?.add(value);
  }

  delete(value: V): void {
    this.#list.delete(value);
    this.#set?.delete(value);
  }

  /** The live set of members, in the order they were added. */
  view(): ReadonlySet<V> {
    if (this.#set === null) {
      const order = this.#order;
      const items = [...this.#list.items];
      items.sort((a, b) =>
        (a as Record<symbol, number>)[order] - (b as Record<symbol, number>)[order]
      );
      this.#set = new Set(items);
    }
    return this.#set;
  }
}

/** A byte allowance shared by one server's connections. */
class ByteBudget implements AssemblyBudget {
  #left: number;

  constructor(bytes: number) {
    this.#left = bytes;
  }

  take(bytes: number): boolean {
    if (bytes > this.#left) return false;
    this.#left -= bytes;
    return true;
  }

  give(bytes: number): void {
    this.#left += bytes;
  }
}

/**
 * A running WebSocket server, as returned by {@linkcode serve}.
 *
 * @example
 * ```ts
 * import { serve } from "@tsunagu/ws";
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, {
 *   open(socket) {
 *     socket.subscribe("news");
 *   },
 * });
 * console.log(server.url); // e.g. ws://127.0.0.1:40123
 * server.publish("news", "hello, subscribers");
 * await server.shutdown();
 * ```
 */
export class Server<T = undefined> {
  #core: ServerCore<T>;

  /** Starts listening. Prefer {@linkcode serve}. */
  constructor(options: ServeOptions, handlers: Handlers<T>) {
    this.#core = new ServerCore(options, handlers, this);
  }

  /** The address the server listens on. */
  get addr(): Deno.NetAddr {
    return this.#core.addr;
  }

  /** The server's URL, e.g. `ws://127.0.0.1:8080`. IPv6 hosts are bracketed. */
  get url(): string {
    const { addr, scheme } = this.#core;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    return `${scheme}://${host}:${addr.port}`;
  }

  /** Resolves when the server has shut down and every connection is closed. */
  get finished(): Promise<void> {
    return this.#core.finished;
  }

  /** The open sockets. */
  get clients(): ReadonlySet<Socket<T>> {
    return this.#core.sockets.view();
  }

  /**
   * The limit on open WebSocket connections in force: the `maxConnections`
   * option, or the default chosen from the process's open-file limit.
   * Upgrades beyond it get 503.
   *
   * @example
   * ```ts
   * import { serve } from "@tsunagu/ws";
   * const server = serve({ port: 0, hostname: "127.0.0.1", maxConnections: 500 });
   * console.log(server.maxConnections); // 500
   * await server.shutdown();
   * ```
   */
  get maxConnections(): number {
    return this.#core.options.maxConnections;
  }

  /** How many WebSocket connections are open (not yet closed as far as the application knows). */
  get connectionCount(): number {
    return this.#core.sockets.size;
  }

  /**
   * Sends `data` to every subscriber of `topic`. The frame is encoded once
   * (and compressed once, for subscribers that negotiated permessage-deflate)
   * and the same bytes are queued for every recipient; each recipient's writes are
   * corked, so a burst of publishes becomes one write per subscriber.
   * Subscribers over `maxBufferedAmount` are closed (1008) instead of slowing
   * the others. Returns how many subscribers accepted the message.
   */
  publish(topic: string, data: SendData): number {
    return this.#core.publishFrame(topic, new SharedMessage(data), null);
  }

  /**
   * Sends `data` to every open socket; the frame is encoded once. Returns how
   * many accepted it. Slow consumers are handled as in {@linkcode Server.publish}:
   * closed with 1008 and skipped, never waited for.
   */
  broadcast(data: SendData): number {
    const message = new SharedMessage(data);
    let accepted = 0;
    // Backwards: a connection that ends while being sent to leaves at once,
    // swapping in one already seen (see SlotList).
    const connections = this.#core.connections.items;
    for (let i = connections.length - 1; i >= 0; i--) {
      if (connections[i]?.sendShared(message)) accepted++;
    }
    return accepted;
  }

  /** How many sockets are subscribed to `topic`. */
  subscriberCount(topic: string): number {
    return this.#core.subscriberCount(topic);
  }

  /**
   * Counters since the server started: connections, messages and bytes each
   * way, close codes, plain HTTP statuses. A fresh snapshot on every call;
   * {@linkcode formatPrometheus} turns it into Prometheus text.
   *
   * @example
   * ```ts
   * import { serve } from "@tsunagu/ws";
   * const server = serve({ port: 0, hostname: "127.0.0.1" }, {
   *   message: (socket, data) => socket.send(data),
   * });
   * const client = new WebSocket(server.url);
   * await new Promise((resolve) => (client.onopen = resolve));
   * client.send("ping");
   * await new Promise((resolve) => (client.onmessage = resolve));
   * console.log(server.metrics().messagesReceived); // 1
   * client.close();
   * await server.shutdown();
   * ```
   */
  metrics(): ServerMetrics {
    return this.#core.metrics();
  }

  /**
   * Shuts down gracefully: stops accepting, drops handshakes in progress
   * and idle keep-alive connections, lets plain HTTP responses being sent
   * finish (each says `Connection: close`), sends a close frame (1001 by
   * default) to every WebSocket client after what was already queued for
   * it, waits up to `timeout` for those responses and closing handshakes,
   * then drops whoever is left. Resolves (like `finished`) when all is closed.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    return this.#core.shutdown(options);
  }

  /** Shuts down; lets `await using server = serve(…)` clean up. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

/**
 * The server's internals: what connections and handshakes see of it. Kept
 * apart from {@linkcode Server} so the public class shows only the public API.
 */
class ServerCore<T> implements SessionHost<T> {
  readonly options: ResolvedOptions;
  readonly handlers: Handlers<T>;
  /** The public server: every handler gets it as its last argument. */
  readonly owner: Server<T>;
  readonly scheme: "ws" | "wss";
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  /** Coarse clock (ms since epoch), refreshed by housekeeping; connections read it instead of calling Date.now(). */
  now: number = Date.now();
  readonly connections = new SlotList<Connection<T>>();
  readonly sockets = new SocketRegistry<Socket<T>>();
  readonly assemblyBudget: AssemblyBudget = new ByteBudget(ASSEMBLY_BUDGET_BYTES);
  readonly messageMemory: AssemblyBudget;

  #listener: Deno.Listener;
  #sessions = new SlotList<HttpSession<T>>();
  /** Upgrades writing their 101: they count against maxConnections already. */
  #reservedSlots = 0;
  #topics = new Map<string, Set<Connection<T>>>();
  /** Carries topic messages to and from other servers (see broker.ts). */
  #broker: Broker | undefined;
  // Metrics: what closed connections counted, and server-wide counters.
  #closedTraffic: TrafficCounters = {
    messagesReceived: 0,
    messagesSent: 0,
    bytesReceived: 0,
    bytesSent: 0,
  };
  #connectionsOpened = 0;
  #connectionsAccepted = 0;
  #closes: Record<number, number> = {};
  #httpResponses: Record<number, number> = {};
  #acceptErrors: Record<AcceptErrorKind, number> = { connection: 0, resources: 0, other: 0 };
  #timer: ReturnType<typeof setInterval>;
  #stopping: Promise<void> | null = null;
  #resolveFinished!: () => void;
  #allClosed: (() => void) | null = null;
  /** The accept loop; it ends once the listener is really closed. */
  #accepting: Promise<void>;
  readonly readerOptions: ByteReaderOptions;
  /**
   * How many accepted TCP connections are still alive (handshake, then
   * WebSocket). A count and two callbacks made once, not a set of promises
   * with a `.catch` promise, a `.then` promise and a closure per connection:
   * those stayed alive as long as each idle connection (idle memory).
   */
  #liveTasks = 0;
  #tasksOver: (() => void) | null = null;
  #taskEnded = (): void => {
    if (--this.#liveTasks === 0 && this.#tasksOver !== null) this.#tasksOver();
  };
  #taskFailed = (error: unknown): void => {
    this.reportError(error);
    this.#taskEnded();
  };

  constructor(options: ServeOptions, handlers: Handlers<T>, owner: Server<T>) {
    this.options = resolveOptions(options);
    this.handlers = handlers;
    this.owner = owner;
    const { hostname, port, cert, key } = this.options;
    this.scheme = cert !== undefined ? "wss" : "ws";
    this.readerOptions = readerOptions(this.options);
    this.messageMemory = new ByteBudget(this.options.maxPendingMessageBytes);
    // Passed only when asked for: the option is unstable in Deno, and without
    // --unstable-net Deno ends the whole process (exit 70) instead of
    // throwing. Deno.listenDatagram exists exactly when that flag is on.
    if (
      this.options.reusePort &&
      typeof (Deno as { listenDatagram?: unknown }).listenDatagram !== "function"
    ) {
      throw new TypeError("reusePort needs Deno's --unstable-net flag");
    }
    const reuse = this.options.reusePort ? { reusePort: true } : {};
    this.#listener = cert !== undefined && key !== undefined
      ? Deno.listenTls({ hostname, port, cert, key, ...reuse })
      : Deno.listen({ hostname, port, ...reuse });
    this.addr = this.#listener.addr as Deno.NetAddr;
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.#timer = setInterval(() => this.#housekeeping(), housekeepingInterval(this.options));
    const signal = this.options.signal;
    if (signal !== undefined) {
      if (signal.aborted) queueMicrotask(() => this.shutdown({}));
      else signal.addEventListener("abort", () => this.shutdown({}), { once: true });
    }
    this.#broker = this.options.broker;
    this.#startBroker();
    this.options.onListen?.(this.addr);
    this.#accepting = this.#acceptLoop();
  }

  subscriberCount(topic: string): number {
    return this.#topics.get(topic)?.size ?? 0;
  }

  shutdown(options: ShutdownOptions): Promise<void> {
    this.#stopping ??= this.#shutdown(options);
    return this.#stopping;
  }

  async #shutdown(options: ShutdownOptions): Promise<void> {
    const code = options.code ?? CloseCode.GoingAway;
    const reason = options.reason ?? "server shutting down";
    const timeout = options.timeout ?? this.options.closeTimeout;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    // Handshakes in progress and idle keep-alive connections are closed at
    // once; a plain request being answered finishes its response (which says
    // Connection: close) within the timeout, as WebSocket clients get it for
    // their closing handshake.
    const answering: Promise<void>[] = [];
    for (const session of [...this.#sessions.items]) {
      const stopped = session.stop();
      if (stopped === true) this.#sessions.delete(session);
      else answering.push(stopped);
    }
    const waits: Promise<unknown>[] = answering;
    if (this.connections.size > 0) {
      waits.push(new Promise<void>((resolve) => this.#allClosed = resolve));
      for (const connection of [...this.connections.items]) connection.shutdown(code, reason);
    }
    if (waits.length > 0) await waitAtMost(Promise.all(waits), timeout);
    for (const session of [...this.#sessions.items]) session.abort();
    this.#sessions.clear();
    for (const connection of [...this.connections.items]) connection.terminate();
    clearInterval(this.#timer);
    await this.#closeBroker();
    // Only when the pending accept has settled is the listening socket
    // really closed: until then a connect could still be queued and reset.
    await this.#accepting;
    // Let every read loop and handshake unwind, so no socket operation of
    // ours is pending once `finished` resolves. Bounded: an upgrade or fetch
    // handler that never returns must not hold shutdown forever.
    if (this.#liveTasks > 0) {
      await waitAtMost(new Promise<void>((resolve) => this.#tasksOver = resolve), timeout);
    }
    this.#resolveFinished();
  }

  async #acceptLoop(): Promise<void> {
    // The pause after the next resource failure; 0 until one happens.
    let pause = 0;
    while (this.#stopping === null) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopping !== null || error instanceof Deno.errors.BadResource) break;
        const kind = acceptErrorKind(error);
        this.#acceptErrors[kind]++;
        // One connection's failure: the next one is fine, accept it now.
        if (kind === "connection") continue;
        // Out of descriptors and the like (or unexpected): report the first
        // of a run, pause briefly, keep serving.
        if (pause === 0) this.reportError(error);
        pause = Math.min(Math.max(pause * 2, ACCEPT_PAUSE_MIN_MS), ACCEPT_PAUSE_MAX_MS);
        await new Promise((resolve) => setTimeout(resolve, pause));
        continue;
      }
      pause = 0;
      this.#connectionsAccepted++;
      this.#liveTasks++;
      this.#handle(conn);
    }
  }

  /**
   * Serves one accepted connection (a task counted in #liveTasks): its
   * requests, then, once upgraded, its WebSocket. Not an async function:
   * what is alive while a handshake is under way costs far more than its
   * size in an idle server's memory (it outlives young-generation
   * collections during a burst of connections, see bench/RESULTS.md, idle
   * memory), and a suspended async frame with its promise and reactions is
   * ~450 bytes where this is one closure and one reaction.
   */
  #handle(conn: Deno.Conn): void {
    let session: HttpSession<T>;
    try {
      if (this.#stopping !== null) {
        conn.close();
        this.#taskEnded();
        return;
      }
      try {
        (conn as Deno.TcpConn).setNoDelay?.(true);
      } catch {
        // Not a TCP connection (or already reset): no Nagle to turn off.
      }
      session = new HttpSession<T>(this, conn);
      this.#sessions.add(session);
    } catch (error) {
      this.#taskFailed(error);
      return;
    }
    try {
      // It reports its end through sessionEnded: no promise per session.
      session.start();
    } catch (error) {
      this.#sessions.delete(session);
      this.#taskFailed(error);
    }
  }

  /** A session ended: with its upgraded connection, or null once it is closed. */
  sessionEnded(session: HttpSession<T>, connection: Connection<T> | null): void {
    try {
      this.#sessions.delete(session);
      // Counted as a task of its own: the session is freed while the
      // connection lives on, and the read loop reports its end through
      // readLoopEnded: no promise or reaction per idle connection beyond
      // its pending read (idle memory).
      if (connection !== null) {
        this.#liveTasks++;
        connection.start();
      }
    } catch (error) {
      this.#taskFailed(error);
      return;
    }
    this.#taskEnded();
  }

  /** A connection's read loop ended: its task is over. */
  readLoopEnded(_connection: Connection<T>): void {
    this.#taskEnded();
  }

  #housekeeping(): void {
    const now = this.now = Date.now();
    // Backwards: a session that leaves at once swaps in one already seen.
    const sessions = this.#sessions.items;
    for (let i = sessions.length - 1; i >= 0; i--) {
      const session = sessions[i];
      if (session !== undefined && now >= session.deadline) session.expire(now);
    }
    // Backwards, as above: a connection that ends in its tick leaves at once.
    const connections = this.connections.items;
    for (let i = connections.length - 1; i >= 0; i--) connections[i]?.tick(now);
  }

  get stopping(): boolean {
    return this.#stopping !== null;
  }

  canAccept(): boolean {
    return this.#stopping === null &&
      this.connections.size + this.#reservedSlots < this.options.maxConnections;
  }

  reserveSlot(): boolean {
    if (!this.canAccept()) return false;
    this.#reservedSlots++;
    return true;
  }

  releaseSlot(): void {
    this.#reservedSlots--;
  }

  connectionOpened(connection: Connection<T>): void {
    this.connections.add(connection);
    this.sockets.add(connection.socket);
    this.#connectionsOpened++;
  }

  socketClosed(connection: Connection<T>, code: number): void {
    this.sockets.delete(connection.socket);
    this.#closes[code] = (this.#closes[code] ?? 0) + 1;
  }

  connectionClosed(connection: Connection<T>): void {
    this.connections.delete(connection);
    this.sockets.delete(connection.socket);
    addTraffic(this.#closedTraffic, connection);
    if (this.connections.size === 0 && this.#allClosed !== null) this.#allClosed();
  }

  httpResponded(status: number): void {
    this.#httpResponses[status] = (this.#httpResponses[status] ?? 0) + 1;
  }

  metrics(): ServerMetrics {
    const traffic = { ...this.#closedTraffic };
    for (const connection of this.connections.items) addTraffic(traffic, connection);
    return {
      connections: this.sockets.size,
      connectionsOpened: this.#connectionsOpened,
      connectionsAccepted: this.#connectionsAccepted,
      ...traffic,
      closes: { ...this.#closes },
      httpResponses: { ...this.#httpResponses },
      acceptErrors: { ...this.#acceptErrors },
      ...(this.#broker?.metrics ? { broker: this.#broker.metrics() } : {}),
    };
  }

  setSubscribed(connection: Connection<T>, topic: string, subscribed: boolean): void {
    let members = this.#topics.get(topic);
    if (subscribed) {
      if (members === undefined) {
        this.#topics.set(topic, members = new Set());
        this.#broker?.subscribe(topic); // first local subscriber
      }
      members.add(connection);
    } else if (members !== undefined) {
      members.delete(connection);
      if (members.size === 0) {
        this.#topics.delete(topic);
        this.#broker?.unsubscribe(topic); // last local subscriber left
      }
    }
  }

  publishFrame(topic: string, message: SharedMessage, except: Connection<T> | null): number {
    // Other servers hear of it whether or not a local socket listens.
    this.#broker?.publish(topic, message.payload);
    return this.deliverLocal(topic, message, except);
  }

  /** Sends to this server's subscribers of `topic` only (what the broker brings goes here). */
  deliverLocal(topic: string, message: SharedMessage, except: Connection<T> | null): number {
    const members = this.#topics.get(topic);
    if (members === undefined) return 0;
    // Slow-consumer policy (publish and broadcast alike): a fan-out never
    // waits for anyone and never queues without bound. Each subscriber gets
    // the same frame through sendFrame, which refuses it when that
    // subscriber already has more than maxBufferedAmount waiting; the
    // subscriber is then failed with 1008 (its close handler hears 1008) and
    // skipped from then on, while every other subscriber still gets this
    // message and later ones. A refused message is not retried or queued.
    let accepted = 0;
    for (const connection of members) {
      if (connection !== except && connection.sendShared(message)) accepted++;
    }
    return accepted;
  }

  #startBroker(): void {
    const broker = this.#broker;
    if (broker === undefined) return;
    try {
      broker.start((topic, data) => {
        if (this.#stopping === null) this.deliverLocal(topic, new SharedMessage(data), null);
      });
    } catch (error) {
      this.reportError(error);
    }
  }

  async #closeBroker(): Promise<void> {
    try {
      await this.#broker?.close();
    } catch (error) {
      this.reportError(error);
    }
  }

  reportError(error: unknown, socket?: Socket<T>): void {
    const handler = this.handlers.error;
    if (handler !== undefined) {
      try {
        handler.call(this.handlers, error, socket, this.owner);
        return;
      } catch (secondary) {
        error = secondary;
      }
    }
    console.error("tsunagu:", error);
  }
}

/**
 * Starts a WebSocket server.
 *
 * @example
 * ```ts
 * import { serve } from "@tsunagu/ws";
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, {
 *   message(socket, data) {
 *     socket.send(data); // echo
 *   },
 * });
 * const client = new WebSocket(server.url);
 * client.onopen = () => client.send("ping?");
 * const reply = await new Promise((resolve) => client.onmessage = (e) => resolve(e.data));
 * console.log(reply); // "ping?"
 * client.close();
 * await server.shutdown();
 * ```
 */
export function serve<T = undefined>(options: ServeOptions, handlers: Handlers<T> = {}): Server<T> {
  return new Server<T>(options, handlers);
}
