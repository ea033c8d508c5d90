/**
 * The object applications hold for one WebSocket connection. It behaves like
 * the standard `WebSocket` where the two overlap, so code written against
 * `Deno.upgradeWebSocket` or the browser API reads the same.
 *
 * @module
 */

import { SocketEvents } from "./socket_events.ts";

/**
 * The `readyState` values, as on the standard `WebSocket`.
 *
 * @example
 * ```ts
 * import { type Handlers, ReadyState } from "@tsunagu/ws";
 * console.log(ReadyState.OPEN); // 1
 * const handlers: Handlers = {
 *   message(socket, data) {
 *     if (socket.readyState === ReadyState.OPEN) socket.send(data);
 *   },
 * };
 * ```
 */
export const ReadyState = {
  CONNECTING: 0,
  OPEN: 1,
  CLOSING: 2,
  CLOSED: 3,
} as const;

/**
 * Data {@linkcode Socket.send} accepts: text is sent as a text frame, bytes as binary.
 *
 * @example
 * ```ts
 * import type { Handlers, SendData } from "@tsunagu/ws";
 * const greetings: SendData[] = ["hello", new Uint8Array([1, 2, 3]), new ArrayBuffer(4)];
 * const handlers: Handlers = {
 *   open(socket) {
 *     for (const data of greetings) socket.send(data); // one text, then two binary messages
 *   },
 * };
 * console.log(greetings.length); // 3
 * ```
 */
export type SendData = string | ArrayBuffer | ArrayBufferView;

/** Turns any {@linkcode SendData} into a view of its bytes (no copy), or keeps a string. */
export function toPayload(data: SendData): string | Uint8Array {
  if (typeof data === "string" || data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError("send() takes a string, an ArrayBuffer or an ArrayBufferView");
}

/**
 * How binary messages appear in `message` events: a `Uint8Array` (default) or an `ArrayBuffer`.
 *
 * @example
 * ```ts
 * import type { BinaryType, Handlers } from "@tsunagu/ws";
 * const binaryType: BinaryType = "arraybuffer";
 * const handlers: Handlers = {
 *   open(socket) {
 *     socket.binaryType = binaryType;
 *     // Binary messages now arrive as ArrayBuffers.
 *     socket.onmessage = (event) => console.log((event as MessageEvent).data);
 *   },
 * };
 * console.log(binaryType); // arraybuffer
 * ```
 */
export type BinaryType = "uint8array" | "arraybuffer";

/**
 * How a connection ended: what `close` handlers and events report.
 *
 * @example
 * ```ts
 * import type { CloseInfo, Handlers } from "@tsunagu/ws";
 * function describe(info: CloseInfo): string {
 *   return `${info.code} ${info.reason}${info.wasClean ? "" : " (dropped)"}`;
 * }
 * const handlers: Handlers = {
 *   async open(socket) {
 *     console.log(describe(await socket.closed));
 *   },
 * };
 * console.log(describe({ code: 1000, reason: "bye", wasClean: true })); // 1000 bye
 * ```
 */
export interface CloseInfo {
  /** The close code: the peer's (1005 when it sent none), ours on a protocol error, 1006 when dropped. */
  code: number;
  /** The close reason. */
  reason: string;
  /** Whether the closing handshake completed. */
  wasClean: boolean;
}

/**
 * An event-handler property value (`onmessage` and friends), as on the standard `WebSocket`.
 *
 * @example
 * ```ts
 * import type { Handlers, SocketEventHandler } from "@tsunagu/ws";
 * const logMessage: SocketEventHandler = (event) => console.log((event as MessageEvent).data);
 * const handlers: Handlers = {
 *   open(socket) {
 *     socket.onmessage = logMessage;
 *   },
 * };
 * logMessage?.(new MessageEvent("message", { data: "hi" })); // hi
 * ```
 */
export type SocketEventHandler = ((event: Event) => unknown) | null;

/**
 * What a socket needs from the connection it stands for. The connection
 * implements it; the socket only forwards, so the socket module does not
 * depend on the connection's module (which creates sockets).
 */
export interface SocketTransport {
  readonly readyState: number;
  readonly url: string;
  readonly protocol: string;
  readonly extensions: string;
  readonly bufferedAmount: number;
  readonly remoteAddr: Deno.NetAddr;
  readonly headers: Headers;
  /** How the connection ended; null while it is open. */
  readonly closeInfo: CloseInfo | null;
  /** Where the connection delivers events once the socket has asked for them; null until then. */
  events: SocketEvents | null;
  send(data: SendData): boolean;
  close(code?: number, reason?: string): void;
  terminate(): void;
  ping(data?: SendData): boolean;
  drained(): Promise<void>;
  subscribe(topic: string): boolean;
  unsubscribe(topic: string): boolean;
  isSubscribed(topic: string): boolean;
  topicList(): string[];
  publish(topic: string, data: SendData): number;
  /** A listener failed: report it and close with 1011. */
  handlerFailed(error: unknown): void;
}

/** What a socket keeps once the application listens or asks for `closed`. */
interface Listening {
  /** The guarded wrapper registered for each listener, so removal finds it. */
  wrappers: Map<EventListenerOrEventListenerObject, EventListener> | null;
  onopen: SocketEventHandler;
  onmessage: SocketEventHandler;
  onclose: SocketEventHandler;
  onerror: SocketEventHandler;
  closed: Promise<CloseInfo> | null;
}

/**
 * One open WebSocket connection, from either end: the server hands one to
 * its handlers for each accepted upgrade, and `connect()` resolves to one.
 * Applications never construct it. (`ServerWebSocket` and `ClientWebSocket`
 * are other names for it, kept so existing code and docs read on.)
 *
 * Besides the handler style of {@linkcode serve}, it supports the standard
 * event style (`onmessage`, `addEventListener("message", …)`) and
 * `for await (const message of socket)`. Event objects are only allocated
 * when someone listens for them.
 *
 * @example
 * ```ts
 * import { serve } from "@tsunagu/ws";
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, {
 *   async open(socket) {
 *     socket.send("welcome");
 *     for await (const message of socket) socket.send(message); // echo until closed
 *   },
 * });
 * await server.shutdown();
 * ```
 */
export class Socket<T = undefined> extends EventTarget {
  /** Readiness constant, as on the standard `WebSocket`. */
  static readonly CONNECTING = 0;
  /** Readiness constant, as on the standard `WebSocket`. */
  static readonly OPEN = 1;
  /** Readiness constant, as on the standard `WebSocket`. */
  static readonly CLOSING = 2;
  /** Readiness constant, as on the standard `WebSocket`. */
  static readonly CLOSED = 3;

  /** Application data, as returned by the `upgrade` handler. */
  data: T;
  /** How binary messages are given to event listeners and iterators. Handlers always get a `Uint8Array`. */
  binaryType: BinaryType = "uint8array";

  #transport: SocketTransport;
  // Listeners, handler properties and `closed`, made when the application
  // first uses one of them: most server sockets only ever use handlers, so
  // they hold one field instead of six (idle memory).
  #listening: Listening | null = null;

  /** Created by the connection it stands for; not for applications to call. */
  constructor(transport: SocketTransport, data: T) {
    super();
    this.#transport = transport;
    this.data = data;
  }

  /** The connection state: 0 connecting, 1 open, 2 closing, 3 closed. */
  get readyState(): number {
    return this.#transport.readyState;
  }

  /** The request URL, as `ws://host/path?query` (or `wss://`). */
  get url(): string {
    return this.#transport.url;
  }

  /** The subprotocol chosen during the handshake, or `""`. */
  get protocol(): string {
    return this.#transport.protocol;
  }

  /** The extensions in use, as answered in the handshake, or `""`. */
  get extensions(): string {
    return this.#transport.extensions;
  }

  /** Bytes of frames (headers included) accepted by `send` and not yet written to the socket. */
  get bufferedAmount(): number {
    return this.#transport.bufferedAmount;
  }

  /** The client's address. */
  get remoteAddr(): Deno.NetAddr {
    return this.#transport.remoteAddr;
  }

  /** The upgrade request's headers. */
  get headers(): Headers {
    return this.#transport.headers;
  }

  /** Resolves when the connection has closed, with the code and reason. */
  get closed(): Promise<CloseInfo> {
    const state = this.#state;
    if (state.closed === null) {
      const info = this.#transport.closeInfo;
      state.closed = info !== null ? Promise.resolve(info) : this.#events().closed();
    }
    return state.closed;
  }

  /**
   * Sends a message: strings as text, bytes as binary. Never blocks: the frame
   * is queued and written with whatever else is sent in the same tick.
   *
   * Returns `false` when the message was not accepted: the socket is not open,
   * or the peer is not reading and the send buffer is over `maxBufferedAmount`
   * (the socket is then closed with 1008). Accepted messages are written
   * unless the peer disconnects.
   *
   * @example
   * ```ts ignore
   * socket.send("hello");
   * socket.send(new Uint8Array([1, 2, 3]));
   * ```
   */
  send(data: SendData): boolean {
    return this.#transport.send(data);
  }

  /**
   * Starts the closing handshake: sends a close frame with `code` (default
   * 1000) and `reason` (at most 123 UTF-8 bytes), then waits a bounded time
   * for the peer's close before closing TCP. Does nothing if already closing.
   *
   * @throws {RangeError} for a code that may not be sent (valid: 1000-1003,
   * 1007-1014, 3000-4999) or a reason over 123 bytes.
   */
  close(code?: number, reason?: string): void {
    this.#transport.close(code, reason);
  }

  /** Closes the TCP connection at once, without a closing handshake (reported as 1006). */
  terminate(): void {
    this.#transport.terminate();
  }

  /** Sends a ping with an optional payload of at most 125 bytes. Returns whether it was queued. */
  ping(data?: SendData): boolean {
    return this.#transport.ping(data);
  }

  /** Resolves once every message sent so far has been written to the socket. */
  drained(): Promise<void> {
    return this.#transport.drained();
  }

  /** Subscribes to a topic for {@linkcode Server.publish}. Returns false if already subscribed. */
  subscribe(topic: string): boolean {
    return this.#transport.subscribe(topic);
  }

  /** Unsubscribes from a topic. Returns false if not subscribed. */
  unsubscribe(topic: string): boolean {
    return this.#transport.unsubscribe(topic);
  }

  /** Whether this socket is subscribed to `topic`. */
  isSubscribed(topic: string): boolean {
    return this.#transport.isSubscribed(topic);
  }

  /** The topics this socket is subscribed to. */
  get topics(): string[] {
    return this.#transport.topicList();
  }

  /**
   * Sends `data` to every other subscriber of `topic` (not to this socket).
   * The frame is encoded once for all recipients. Returns how many accepted it.
   */
  publish(topic: string, data: SendData): number {
    return this.#transport.publish(topic, data);
  }

  /** Event-handler property, as on the standard `WebSocket`. Never fires on the server: sockets are handed over already open. */
  get onopen(): SocketEventHandler {
    return this.#listening === null ? null : this.#listening.onopen;
  }
  set onopen(listener: SocketEventHandler) {
    const state = this.#state;
    state.onopen = this.#swapListener("open", state.onopen, listener);
  }
  /** Event-handler property for `message` events (`event.data` is a string or bytes). */
  get onmessage(): SocketEventHandler {
    return this.#listening === null ? null : this.#listening.onmessage;
  }
  set onmessage(listener: SocketEventHandler) {
    const state = this.#state;
    state.onmessage = this.#swapListener("message", state.onmessage, listener);
  }
  /** Event-handler property for the `close` event (a `CloseEvent`). */
  get onclose(): SocketEventHandler {
    return this.#listening === null ? null : this.#listening.onclose;
  }
  set onclose(listener: SocketEventHandler) {
    const state = this.#state;
    state.onclose = this.#swapListener("close", state.onclose, listener);
  }
  /** Event-handler property for `error` events (a handler failed). */
  get onerror(): SocketEventHandler {
    return this.#listening === null ? null : this.#listening.onerror;
  }
  set onerror(listener: SocketEventHandler) {
    const state = this.#state;
    state.onerror = this.#swapListener("error", state.onerror, listener);
  }

  /**
   * As `EventTarget.addEventListener`; also turns on event dispatch for this
   * socket. A listener that throws (or returns a rejected promise) is treated
   * like a failing handler: the socket closes with 1011 and the error goes to
   * the `error` handler, instead of becoming an uncaught exception that would
   * end the whole process.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    if (listener === null) return;
    this.#events().listening = true;
    const wrappers = this.#state.wrappers ??= new Map();
    let guarded = wrappers.get(listener);
    if (guarded === undefined) {
      guarded = (event: Event) => {
        try {
          const result: unknown = typeof listener === "function"
            ? listener.call(this, event)
            : listener.handleEvent(event);
          if (result instanceof Promise) {
            result.catch((error) => this.#transport.handlerFailed(error));
          }
        } catch (error) {
          this.#transport.handlerFailed(error);
        }
      };
      wrappers.set(listener, guarded);
    }
    super.addEventListener(type, guarded, options);
  }

  /** As `EventTarget.removeEventListener`. */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void {
    const guarded = listener === null ? undefined : this.#listening?.wrappers?.get(listener);
    if (guarded !== undefined) super.removeEventListener(type, guarded, options);
  }

  /**
   * Iterates over incoming messages until the connection closes. Messages are
   * queued from the first call on, so start iterating in `open`.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<string | Uint8Array> {
    return this.#events().iterate(this.#transport.closeInfo !== null);
  }

  /** The event side, created on first use and handed to the transport to deliver to. */
  get #state(): Listening {
    return this.#listening ??= {
      wrappers: null,
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      closed: null,
    };
  }

  #events(): SocketEvents {
    let events = this.#transport.events;
    if (events === null) events = this.#transport.events = new SocketEvents(this);
    return events;
  }

  #swapListener(
    type: string,
    previous: SocketEventHandler,
    next: SocketEventHandler,
  ): SocketEventHandler {
    if (previous !== null) this.removeEventListener(type, previous as EventListener);
    if (next !== null) this.addEventListener(type, next as EventListener);
    return next;
  }
}
