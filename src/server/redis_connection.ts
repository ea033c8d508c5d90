/**
 * One connection to Redis: the socket, a read loop feeding the pure RESP
 * parser, a bounded write queue (commands written in the same tick go out in
 * one write), the handshake (AUTH, SELECT, PING), and a PING-with-deadline
 * liveness check that finds a connection that died without a reset.
 *
 * @module
 */

import {
  encodeCommand,
  type RespArg,
  RespError,
  RespParser,
  type RespValue,
} from "../protocol/resp.ts";

/** Where and how to reach Redis, from a `redis://` or `rediss://` URL. */
export interface RedisTarget {
  /** `rediss:`: TLS through `Deno.connectTls`. */
  tls: boolean;
  hostname: string;
  port: number;
  /** ACL user name (Redis 6+); with `password`. */
  username?: string;
  password?: string;
  /** Database number for `SELECT`, from the URL path (`/2`). */
  db?: number;
}

/**
 * Reads `redis://[[user]:password@]host[:port][/db]` (or `rediss://` for
 * TLS). User name and password are percent-decoded.
 *
 * @throws {TypeError} for anything else, with the reason.
 */
export function parseRedisUrl(url: string): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`not a URL: ${JSON.stringify(redactUrl(url))}`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new TypeError(
      `a Redis URL starts with redis:// or rediss://, got ${JSON.stringify(parsed.protocol)}`,
    );
  }
  const hostname = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  const port = parsed.port === "" ? 6379 : Number(parsed.port);
  const target: RedisTarget = { tls: parsed.protocol === "rediss:", hostname, port };
  if (parsed.username !== "") target.username = decodeURIComponent(parsed.username);
  if (parsed.password !== "") target.password = decodeURIComponent(parsed.password);
  const path = parsed.pathname.replace(/^\//, "");
  if (path !== "") {
    if (!/^\d{1,5}$/.test(path)) {
      throw new TypeError(
        `the path of a Redis URL is a database number, got ${JSON.stringify(path)}`,
      );
    }
    target.db = Number(path);
  }
  return target;
}

/** The URL with any password replaced by `***`, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*:)[^@/]*@/i, "$1***@");
}

/** `host:port` of a target, IPv6 bracketed. */
export function targetAddress(target: RedisTarget): string {
  const host = target.hostname.includes(":") ? `[${target.hostname}]` : target.hostname;
  return `${target.tls ? "rediss" : "redis"}://${host}:${target.port}`;
}

/**
 * Why a Redis connection failed. `kind`: `unreachable` (no TCP/TLS
 * connection), `auth` (credentials refused or missing), `protocol` (the
 * peer is not Redis, or broke RESP), `timeout` (no answer in time),
 * `closed` (the connection ended), `command` (Redis answered an error).
 *
 * @example
 * ```ts
 * import { RedisError } from "@tsunagu/ws";
 * const error = new RedisError("auth", "Redis refused the password");
 * console.log(error.kind); // auth
 * ```
 */
export class RedisError extends Error {
  /** What went wrong, see the class documentation. */
  readonly kind: "unreachable" | "auth" | "protocol" | "timeout" | "closed" | "command";

  /** Makes an error of `kind`. */
  constructor(kind: RedisError["kind"], message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RedisError";
    this.kind = kind;
  }
}

/** Settings of {@linkcode RedisConnection.open}. */
export interface RedisConnectionOptions {
  /** Milliseconds for connecting and the handshake together. */
  timeout: number;
  /** Bytes that may wait in the write queue; `send` refuses beyond. */
  maxQueueBytes: number;
  /** Extra root certificates for `rediss:`. */
  caCerts?: string[];
  /** Largest bulk string accepted from Redis. */
  maxBulkLength?: number;
  /** Aborting it gives up connecting (the broker closing). */
  signal?: AbortSignal;
}

interface Pending {
  resolve(value: RespValue): void;
  reject(error: Error): void;
}

const READ_SIZE = 64 * 1024;
// Batches of queued commands are joined into writes of at most this many bytes.
const WRITE_BATCH = 256 * 1024;

/** One open, authenticated connection to Redis. */
export class RedisConnection {
  #conn: Deno.Conn;
  #parser: RespParser;
  // Replies are matched to commands in order; null: a reply nobody awaits.
  #pending: (Pending | null)[] = [];
  #pendingHead = 0;
  #onPush: ((value: RespValue) => void) | null = null;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #writing = false;
  #maxQueueBytes: number;
  #closeReason: string | null = null;
  #resolveClosed!: (reason: string) => void;
  #reading: Promise<void>;
  /** When bytes last arrived (ms since epoch). */
  lastReceived = Date.now();
  // When the PING now awaited was sent; 0 when none is awaited.
  #pingSent = 0;
  #lastPing = Date.now();
  /** Resolves with the reason once the connection has ended and its read loop is done. */
  readonly closed: Promise<string>;
  /** Where error replies to unawaited commands go. */
  onCommandError: (error: RespError) => void = () => {};

  private constructor(conn: Deno.Conn, options: RedisConnectionOptions, where: string) {
    this.#conn = conn;
    this.#maxQueueBytes = options.maxQueueBytes;
    const closed = new Promise<string>((resolve) => this.#resolveClosed = resolve);
    this.#parser = new RespParser({
      onReply: (value) => this.#reply(value),
      onProtocolError: (message) => this.close(`not a Redis server at ${where}: ${message}`),
    }, { maxBulkLength: options.maxBulkLength });
    this.#reading = this.#readLoop();
    this.closed = this.#reading.then(() => closed);
  }

  /**
   * Connects, authenticates (`AUTH` when the target has a password),
   * selects the database, and checks with `PING` that the peer is Redis.
   *
   * @throws {RedisError} with the reason.
   */
  static async open(
    target: RedisTarget,
    options: RedisConnectionOptions,
  ): Promise<RedisConnection> {
    const where = targetAddress(target);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error("timed out")), options.timeout);
    const giveUp = () => controller.abort(new Error("given up"));
    options.signal?.addEventListener("abort", giveUp);
    try {
      if (options.signal?.aborted) throw new RedisError("closed", "given up");
      return await RedisConnection.#open(target, options, where, controller.signal);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", giveUp);
    }
  }

  static async #open(
    target: RedisTarget,
    options: RedisConnectionOptions,
    where: string,
    deadline: AbortSignal,
  ): Promise<RedisConnection> {
    let conn: Deno.Conn;
    try {
      conn = await withDeadline<Deno.Conn>(
        target.tls
          ? connectTls(target, options.caCerts)
          : Deno.connect({ hostname: target.hostname, port: target.port, signal: deadline }),
        deadline,
        (late) => late.close(),
      );
    } catch (error) {
      if (deadline.aborted) {
        throw new RedisError("timeout", `cannot connect to ${where} within ${options.timeout} ms`);
      }
      throw new RedisError(
        "unreachable",
        `cannot connect to ${where}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    try {
      (conn as Deno.TcpConn).setNoDelay?.(true);
    } catch {
      // Not TCP, or already gone: the handshake will tell.
    }
    const connection = new RedisConnection(conn, options, where);
    try {
      await withDeadline(connection.#handshake(target, where), deadline);
    } catch (error) {
      connection.close("handshake failed");
      await connection.closed;
      if (deadline.aborted && !(error instanceof RedisError)) {
        throw new RedisError(
          "timeout",
          `no answer from ${where} within ${options.timeout} ms (is it Redis, and running?)`,
        );
      }
      throw error;
    }
    return connection;
  }

  async #handshake(target: RedisTarget, where: string): Promise<void> {
    if (target.password !== undefined) {
      const args = target.username === undefined
        ? ["AUTH", target.password]
        : ["AUTH", target.username, target.password];
      const reply = await this.#expect(args, where);
      if (reply instanceof RespError) {
        throw new RedisError(
          "auth",
          `Redis at ${where} refused the credentials${
            target.username === undefined ? "" : ` of user ${JSON.stringify(target.username)}`
          }: ${reply.message}`,
        );
      }
    }
    if (target.db !== undefined) {
      const reply = await this.#expect(["SELECT", String(target.db)], where);
      if (reply instanceof RespError) {
        throw new RedisError(
          "command",
          `Redis at ${where} refused SELECT ${target.db}: ${reply.message}`,
        );
      }
    }
    const pong = await this.#expect(["PING"], where);
    if (pong instanceof RespError) {
      if (pong.kind === "NOAUTH" || pong.kind === "WRONGPASS") {
        throw new RedisError(
          "auth",
          `Redis at ${where} needs a password (${pong.message}); give it in the URL ` +
            `(redis://:password@host) or the password option`,
        );
      }
      throw new RedisError("protocol", `Redis at ${where} answered PING with ${pong.message}`);
    }
    if (pong !== "PONG") {
      throw new RedisError(
        "protocol",
        `not a Redis server at ${where}: PING was not answered PONG`,
      );
    }
  }

  /** A command's reply; the connection ending first is a RedisError. */
  async #expect(args: RespArg[], where: string): Promise<RespValue> {
    try {
      return await this.command(args);
    } catch (error) {
      const reason = (error as Error).message;
      const kind = /^not a Redis server/.test(reason) ? "protocol" : "closed";
      throw new RedisError(kind, kind === "protocol" ? reason : `${where}: ${reason}`);
    }
  }

  /** Whether the connection is open. */
  get open(): boolean {
    return this.#closeReason === null;
  }

  /** Bytes waiting to be written. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Sends a command and waits for its reply (an error reply is a {@linkcode RespError} value). */
  command(args: RespArg[]): Promise<RespValue> {
    return new Promise((resolve, reject) => {
      if (!this.open) {
        reject(new Error(this.#closeReason!));
        return;
      }
      this.#pending.push({ resolve, reject });
      this.#enqueue(encodeCommand(args));
    });
  }

  /**
   * Sends an encoded command without waiting for its reply. Returns false
   * (and sends nothing) when the connection is closed or, unless `force`,
   * the write queue is over its limit.
   */
  send(command: Uint8Array, force = false): boolean {
    if (!this.open) return false;
    if (!force && this.#queuedBytes + command.length > this.#maxQueueBytes) return false;
    if (this.#onPush === null) this.#pending.push(null);
    this.#enqueue(command);
    return true;
  }

  /**
   * Subscriber mode: from now on every reply (messages, subscribe
   * confirmations, pongs) goes to `onPush`. Call once no command is awaited.
   */
  subscriberMode(onPush: (value: RespValue) => void): void {
    this.#onPush = onPush;
  }

  /**
   * The liveness check, called periodically: sends PING once `interval` ms
   * have passed since the last one, and closes the connection when nothing
   * at all arrived within `timeout` ms of a PING (a connection that died
   * silently, or a Redis that stopped).
   */
  heartbeat(now: number, interval: number, timeout: number): void {
    if (!this.open) return;
    if (this.#pingSent !== 0) {
      if (this.lastReceived >= this.#pingSent) this.#pingSent = 0;
      else if (now - this.#pingSent > timeout) {
        this.close(`no answer to PING within ${timeout} ms`);
        return;
      }
    }
    if (now - this.#lastPing >= interval) {
      this.#lastPing = now;
      if (this.#pingSent === 0) this.#pingSent = now;
      this.send(PING, true);
    }
  }

  /** Closes the socket; `closed` resolves once the read loop is done. Idempotent. */
  close(reason: string): void {
    if (this.#closeReason !== null) return;
    this.#closeReason = reason;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    const error = new Error(reason);
    for (let k = this.#pendingHead; k < this.#pending.length; k++) this.#pending[k]?.reject(error);
    this.#pending = [];
    this.#pendingHead = 0;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#resolveClosed(reason);
  }

  #reply(value: RespValue): void {
    if (this.#onPush !== null) {
      this.#onPush(value);
      return;
    }
    if (this.#pendingHead >= this.#pending.length) {
      this.close("Redis sent a reply nobody asked for");
      return;
    }
    const waiter = this.#pending[this.#pendingHead++];
    if (this.#pendingHead > 1024 && this.#pendingHead * 2 > this.#pending.length) {
      this.#pending = this.#pending.slice(this.#pendingHead);
      this.#pendingHead = 0;
    }
    if (waiter !== null) waiter.resolve(value);
    else if (value instanceof RespError) this.onCommandError(value);
  }

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(READ_SIZE);
    try {
      while (this.open) {
        const n = await this.#conn.read(buffer);
        if (n === null) {
          this.close("Redis closed the connection");
          break;
        }
        this.lastReceived = Date.now();
        this.#parser.push(buffer.subarray(0, n));
      }
    } catch (error) {
      this.close(`connection to Redis lost: ${(error as Error).message}`);
    }
  }

  #enqueue(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    if (!this.#writing) {
      this.#writing = true;
      // Commands issued in the same tick go out together.
      queueMicrotask(() => this.#flush());
    }
  }

  async #flush(): Promise<void> {
    try {
      while (this.open && this.#queue.length > 0) {
        const batch = this.#takeBatch();
        let written = 0;
        while (written < batch.length) written += await this.#conn.write(batch.subarray(written));
        if (this.open) this.#queuedBytes -= batch.length;
      }
    } catch (error) {
      this.close(`writing to Redis failed: ${(error as Error).message}`);
    } finally {
      this.#writing = false;
    }
  }

  #takeBatch(): Uint8Array {
    const queue = this.#queue;
    let count = 1;
    let size = queue[0].length;
    while (count < queue.length && size + queue[count].length <= WRITE_BATCH) {
      size += queue[count++].length;
    }
    if (count === 1) return queue.shift()!;
    const batch = new Uint8Array(size);
    let at = 0;
    for (const part of queue.splice(0, count)) {
      batch.set(part, at);
      at += part.length;
    }
    return batch;
  }
}

const PING = encodeCommand(["PING"]);

/** A TLS connection with its handshake done, so a refused certificate shows here, by name. */
async function connectTls(target: RedisTarget, caCerts: string[] | undefined): Promise<Deno.Conn> {
  const conn = await Deno.connectTls({ hostname: target.hostname, port: target.port, caCerts });
  try {
    await conn.handshake();
  } catch (error) {
    conn.close();
    throw new Error(`TLS handshake failed: ${(error as Error).message}`, { cause: error });
  }
  return conn;
}

/**
 * Waits for `promise` until `signal` aborts; then rejects, and hands the
 * value to `late` should it still arrive (to close a late connection).
 */
function withDeadline<V>(
  promise: Promise<V>,
  signal: AbortSignal,
  late?: (value: V) => void,
): Promise<V> {
  if (signal.aborted) {
    promise.then(late, () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<V>((resolve, reject) => {
    let done = false;
    const onAbort = () => {
      if (done) return;
      done = true;
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then((value) => {
      signal.removeEventListener("abort", onAbort);
      if (done) late?.(value);
      else {
        done = true;
        resolve(value);
      }
    }, (error) => {
      signal.removeEventListener("abort", onAbort);
      if (!done) {
        done = true;
        reject(error);
      }
    });
  });
}
