/**
 * Test harness for the hardening tests: a server on 127.0.0.1 that records
 * what the application is told (close codes, errors), a Deno `WebSocket`
 * client with bounded waits, and a bounded polling helper.
 *
 * Every wait here has a deadline, so a hung server fails a test instead of
 * hanging it. Test tooling, not part of the published library.
 *
 * @module
 */

import { type Handlers, serve, type ServeOptions, type Server } from "../../mod.ts";
import type { ServerWebSocket } from "../../mod.ts";
import { RawClient } from "./raw_client.ts";

/** One call of the application's `close` handler. */
export interface ClosedRecord {
  /** The socket the handler was called for. */
  socket: ServerWebSocket<unknown>;
  /** The code the handler got. */
  code: number;
  /** The reason the handler got. */
  reason: string;
}

/** A server with what its handlers saw. */
export interface Harness<T> {
  /** The server. */
  server: Server<T>;
  /** Its port on 127.0.0.1. */
  port: number;
  /** Sockets passed to `open`, in order. */
  opened: ServerWebSocket<T>[];
  /** Every call of the `close` handler, in order. */
  closed: ClosedRecord[];
  /** Every error passed to the `error` handler. */
  errors: unknown[];
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `predicate` every 10 ms until it holds; throws after `timeoutMs`.
 * Bounded in time and therefore in count.
 */
export async function waitUntil(
  predicate: () => boolean,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await delay(10);
  }
}

/**
 * Starts a server on 127.0.0.1 (port 0) whose `open`, `close` and `error`
 * handlers record what they are given and then call the ones passed in.
 */
export function startServer<T = undefined>(
  options: ServeOptions = {},
  handlers: Handlers<T> = {},
): Harness<T> {
  const opened: ServerWebSocket<T>[] = [];
  const closed: ClosedRecord[] = [];
  const errors: unknown[] = [];
  const server = serve<T>({ port: 0, hostname: "127.0.0.1", ...options }, {
    ...handlers,
    open(socket, server) {
      opened.push(socket);
      return handlers.open?.(socket, server);
    },
    close(socket, code, reason, server) {
      closed.push({ socket: socket as ServerWebSocket<unknown>, code, reason });
      return handlers.close?.(socket, code, reason, server);
    },
    error(error, socket, server) {
      errors.push(error);
      handlers.error?.(error, socket, server);
    },
  });
  return { server, port: server.addr.port, opened, closed, errors };
}

/**
 * Opens `count` raw connections to `port`, completing each handshake, and
 * pushes each onto `into` as soon as it connects, so the caller's `finally`
 * closes them all even when a later one fails.
 */
export async function openRawPeers(port: number, count: number, into: RawClient[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    const raw = await RawClient.connect(port);
    into.push(raw);
    await raw.handshake();
  }
}

/** Bytes of JS heap plus external (ArrayBuffer) memory in use: what buffers cost. */
export function memoryInUse(): number {
  const usage = Deno.memoryUsage();
  return usage.heapUsed + usage.external;
}

/** A Deno `WebSocket` client whose messages and close event can be awaited with deadlines. */
export class TestClient {
  /** The underlying standard client. */
  readonly ws: WebSocket;
  /** Messages received and not yet taken by {@linkcode TestClient.next}. */
  readonly messages: (string | Uint8Array)[] = [];
  /** Resolves with the close event (code, reason, wasClean). */
  readonly closed: Promise<CloseEvent>;
  /** The close event once it happened. */
  closeEvent: CloseEvent | null = null;
  #waiter: (() => void) | null = null;

  private constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (event) => {
      this.messages.push(
        typeof event.data === "string" ? event.data : new Uint8Array(event.data as ArrayBuffer),
      );
      this.#wake();
    };
    this.closed = new Promise((resolve) => {
      this.ws.onclose = (event) => {
        this.closeEvent = event;
        this.#wake();
        resolve(event);
      };
    });
  }

  /** Connects and waits for the connection to open (or throws after `timeoutMs`). */
  static async open(url: string, timeoutMs = 5_000): Promise<TestClient> {
    const client = new TestClient(url);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`client did not open within ${timeoutMs} ms`)),
          timeoutMs,
        );
        client.ws.onopen = () => resolve();
        client.ws.onerror = () => reject(new Error("client failed to connect"));
      });
    } catch (error) {
      await client.dispose();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.();
  }

  /** Waits until the close event, or throws after `timeoutMs`. */
  async waitClosed(timeoutMs = 5_000): Promise<CloseEvent> {
    const deadline = Date.now() + timeoutMs;
    while (this.closeEvent === null) await this.#sleep(deadline, "the close event");
    return this.closeEvent;
  }

  /** Takes the next message, waiting up to `timeoutMs`; throws if the socket closes first. */
  async next(timeoutMs = 5_000): Promise<string | Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length === 0) {
      if (this.closeEvent !== null) {
        throw new Error(`closed (${this.closeEvent.code}) while waiting for a message`);
      }
      await this.#sleep(deadline, "a message");
    }
    return this.messages.shift()!;
  }

  /** Sleeps until an event arrives or the deadline passes (then throws). */
  async #sleep(deadline: number, what: string): Promise<void> {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error(`timed out waiting for ${what}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    await new Promise<void>((resolve) => {
      this.#waiter = resolve;
      timer = setTimeout(() => {
        timedOut = true;
        resolve();
      }, remaining);
    });
    clearTimeout(timer);
    if (timedOut) throw new Error(`timed out waiting for ${what}`);
  }

  /** Closes (if still open) and waits for the close event, so no resource outlives the test. */
  async dispose(timeoutMs = 5_000): Promise<void> {
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) {
      try {
        this.ws.close();
      } catch {
        // Still connecting in a way close() refuses: the close event comes anyway.
      }
    }
    await this.waitClosed(timeoutMs);
  }
}
