/**
 * One upgraded connection: the reader loop, the writer, the closing
 * handshake and heartbeat state. This is where bytes meet the pure protocol
 * layers (frame parser, message assembler) and where application handlers
 * are called.
 *
 * @module
 */

import type { ByteReader } from "./byte_reader.ts";
import {
  CloseCode,
  encodeClosePayload,
  encodeFrame,
  encodeTextFrame,
  MAX_CLOSE_REASON_BYTES,
  MAX_CONTROL_PAYLOAD,
  Opcode,
} from "./frame.ts";
import { FrameParser } from "./frame_parser.ts";
import { FrameWriter } from "./frame_writer.ts";
import { MessageAssembler, type MessageHandler } from "./message.ts";
import type { Handlers, ResolvedOptions } from "./options.ts";
import {
  type CloseInfo,
  ReadyState,
  type SendData,
  ServerWebSocket,
  socketInternals,
} from "./socket.ts";

/** What a connection needs from the server that owns it. */
export interface ConnectionHost<T> {
  readonly options: ResolvedOptions;
  readonly handlers: Handlers<T>;
  /** A coarse clock (ms), refreshed by the server's housekeeping timer. */
  readonly now: number;
  /** The connection has finished; forget it. */
  connectionClosed(connection: Connection<T>): void;
  /** Adds or removes a topic subscription. */
  setSubscribed(connection: Connection<T>, topic: string, subscribed: boolean): void;
  /** Publishes an encoded frame to a topic's subscribers except `except`. */
  publishFrame(topic: string, frame: Uint8Array, except: Connection<T> | null): number;
  /** Reports an application error. */
  reportError(error: unknown, socket?: ServerWebSocket<T>): void;
}

/** Everything a connection is born with, from the handshake. */
export interface ConnectionInit<T> {
  conn: Deno.Conn;
  reader: ByteReader;
  url: string;
  protocol: string;
  headers: Headers | (() => Headers);
  data: T;
}

const textEncoder = new TextEncoder();

/** Turns any {@linkcode SendData} into a view of its bytes (no copy), or keeps a string. */
export function toPayload(data: SendData): string | Uint8Array {
  if (typeof data === "string" || data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError("send() takes a string, an ArrayBuffer or an ArrayBufferView");
}

/** Encodes a message as one frame: text for strings, binary for bytes. */
export function encodeMessage(data: SendData): Uint8Array {
  const payload = toPayload(data);
  return typeof payload === "string"
    ? encodeTextFrame(payload)
    : encodeFrame(Opcode.Binary, payload);
}

function truncateReason(reason: string): string {
  let bytes = textEncoder.encode(reason);
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return reason;
  // Cut at a character boundary so the reason stays valid UTF-8.
  bytes = bytes.subarray(0, MAX_CLOSE_REASON_BYTES);
  return new TextDecoder().decode(bytes).replace(/\uFFFD$/, "");
}

/** One WebSocket connection after a successful upgrade. */
export class Connection<T> implements MessageHandler {
  /** The application's view of this connection. */
  readonly socket: ServerWebSocket<T>;
  readyState: number = ReadyState.OPEN;
  readonly url: string;
  readonly protocol: string;
  readonly remoteAddr: Deno.NetAddr;

  /** Host clock time of the last frame received (for the idle timeout). */
  lastReceived: number;
  /** Host clock time of the last heartbeat ping; 0 when none is outstanding. */
  pingSentAt = 0;
  /** Host clock time of the last heartbeat ping sent, outstanding or not. */
  lastPing: number;
  /** When a close we sent must be answered by (host clock); 0 when not closing. */
  closeDeadline = 0;

  #host: ConnectionHost<T>;
  #conn: Deno.Conn;
  #reader: ByteReader;
  #writer: FrameWriter;
  #parser: FrameParser;
  #assembler: MessageAssembler;
  #headers: Headers | (() => Headers);
  #topics: Set<string> | null = null;
  #closeSent = false;
  #finishing = false;
  #finished = false;
  #closeReceived: { code: number; reason: string } | null = null;

  constructor(host: ConnectionHost<T>, init: ConnectionInit<T>) {
    this.#host = host;
    this.#conn = init.conn;
    this.#reader = init.reader;
    this.url = init.url;
    this.protocol = init.protocol;
    this.#headers = init.headers;
    this.remoteAddr = init.conn.remoteAddr as Deno.NetAddr;
    this.lastReceived = this.lastPing = host.now;
    this.#writer = new FrameWriter(init.conn, () => this.#finish(CloseCode.Abnormal, "", false));
    this.#assembler = new MessageAssembler(this, { maxPayload: host.options.maxPayload });
    this.#parser = new FrameParser(this.#assembler, { expectMasked: true });
    this.socket = new ServerWebSocket<T>(this, init.data);
  }

  /** The upgrade request's headers (built on first use). */
  get headers(): Headers {
    if (typeof this.#headers === "function") this.#headers = this.#headers();
    return this.#headers;
  }

  /** Bytes queued and not yet written. */
  get bufferedAmount(): number {
    return this.#writer.bufferedAmount;
  }

  /** Runs the connection: calls `open`, then reads until the connection ends. */
  async run(): Promise<void> {
    this.#callHandler(this.#host.handlers.open, this.socket);
    await this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    const reader = this.#reader;
    const parser = this.#parser;
    try {
      // Bytes that arrived together with the request head are frames already.
      if (reader.filled > 0) this.#feed();
      while (!parser.failed && !this.#finished) {
        const n = await reader.fill();
        if (n === 0) break;
        this.#feed();
      }
    } catch {
      // A reset or a read on a socket we closed: handled below as a drop.
    } finally {
      reader.release();
    }
    if (!this.#finishing) {
      this.#finish(CloseCode.Abnormal, "", false);
    } else if (!this.#finished && this.#closeReceived === null) {
      // We had sent close and were waiting for the peer's; it went away instead.
      this.#finish(CloseCode.Abnormal, "", false);
    }
  }

  #feed(): void {
    const reader = this.#reader;
    this.lastReceived = this.#host.now;
    // The parser consumes everything (it keeps partial headers itself), so
    // the buffer is free for the next read as soon as push returns.
    this.#parser.push(reader.buffer.subarray(0, reader.filled));
    reader.filled = 0;
  }

  // ---- MessageHandler: events from the assembler ----

  /** A text message: delivered to the application. */
  onText(text: string): void {
    this.#deliver(text);
  }

  /** A binary message: delivered to the application. */
  onBinary(data: Uint8Array): void {
    this.#deliver(data);
  }

  /** A ping: answered with a pong carrying the same payload, unless we are closing. */
  onPing(payload: Uint8Array): void {
    if (!this.#closeSent) this.#writer.enqueue(encodeFrame(Opcode.Pong, payload));
  }

  /** A pong: the heartbeat is answered. */
  onPong(payload: Uint8Array): void {
    this.pingSentAt = 0;
    const handler = this.#host.handlers.pong;
    if (handler !== undefined) this.#callHandler(handler, this.socket, payload.slice());
  }

  /** The peer's close frame: echo it, then close TCP once it is written. */
  onClose(code: number, reason: string): void {
    this.#closeReceived = { code, reason };
    this.#parser.stop();
    if (!this.#closeSent) {
      // Echo the peer's code (RFC 6455 §5.5.1); an empty close is answered empty.
      this.#sendClose(code === CloseCode.NoStatus ? CloseCode.NoStatus : code, "");
    }
    this.#finishAfterFlush(code, reason, true);
  }

  /** A protocol violation: fail the connection with its code. */
  onProtocolError(code: number, message: string): void {
    this.#parser.stop();
    this.#fail(code, message);
  }

  #deliver(data: string | Uint8Array): void {
    // Messages that arrive after we started closing are dropped, as the
    // standard WebSocket does in the CLOSING state.
    if (this.readyState !== ReadyState.OPEN) return;
    const handler = this.#host.handlers.message;
    if (handler !== undefined) this.#callHandler(handler, this.socket, data);
    socketInternals.emitMessage(this.socket as ServerWebSocket<unknown>, data);
  }

  /**
   * Calls an application handler so that neither a throw nor a rejected
   * promise can escape: either closes this socket with 1011.
   */
  #callHandler<A extends unknown[]>(
    handler: ((...args: A) => unknown) | undefined,
    ...args: A
  ): void {
    if (handler === undefined) return;
    try {
      const result = handler.apply(this.#host.handlers, args);
      if (result instanceof Promise) result.catch((error) => this.#handlerFailed(error));
    } catch (error) {
      this.#handlerFailed(error);
    }
  }

  #handlerFailed(error: unknown): void {
    this.#host.reportError(error, this.socket);
    socketInternals.emitError(this.socket as ServerWebSocket<unknown>, error);
    if (this.readyState === ReadyState.OPEN) {
      this.#fail(CloseCode.InternalError, "internal error");
    }
  }

  // ---- sending ----

  /** Sends a message; see {@linkcode ServerWebSocket.send}. */
  send(data: SendData): boolean {
    return this.sendFrame(encodeMessage(data));
  }

  /** Queues an encoded data frame, applying the slow-consumer limit. */
  sendFrame(frame: Uint8Array): boolean {
    if (this.readyState !== ReadyState.OPEN) return false;
    if (this.#writer.bufferedAmount > this.#host.options.maxBufferedAmount) {
      this.#fail(CloseCode.PolicyViolation, "send buffer limit exceeded: peer is not reading");
      return false;
    }
    this.#writer.enqueue(frame);
    return true;
  }

  /** Sends a ping; see {@linkcode ServerWebSocket.ping}. */
  ping(data: SendData = ""): boolean {
    if (this.readyState !== ReadyState.OPEN) return false;
    const payload = toPayload(data);
    const bytes = typeof payload === "string" ? textEncoder.encode(payload) : payload;
    if (bytes.length > MAX_CONTROL_PAYLOAD) throw new RangeError("ping payload over 125 bytes");
    this.#writer.enqueue(encodeFrame(Opcode.Ping, bytes));
    return true;
  }

  /** Resolves when everything queued has been written. */
  drained(): Promise<void> {
    return this.#writer.drained();
  }

  // ---- closing ----

  /** Starts the closing handshake; see {@linkcode ServerWebSocket.close}. */
  close(code: number = CloseCode.Normal, reason = ""): void {
    // Validate first, so a bad call throws without side effects.
    encodeClosePayload(code, reason);
    if (this.readyState !== ReadyState.OPEN) return;
    this.#sendClose(code, reason);
  }

  /** Drops the TCP connection without a closing handshake. */
  terminate(): void {
    this.#finish(CloseCode.Abnormal, "", false);
  }

  #sendClose(code: number, reason: string): void {
    if (this.#closeSent) return;
    this.#closeSent = true;
    this.readyState = ReadyState.CLOSING;
    this.closeDeadline = this.#host.now + this.#host.options.closeTimeout;
    // Bypasses the send-buffer limit: the close frame must always be queued.
    this.#writer.enqueue(encodeFrame(Opcode.Close, encodeClosePayload(code, reason)));
  }

  /** Fails the connection (RFC 6455 §7.1.7): send close with `code`, then close TCP. */
  #fail(code: number, message: string): void {
    if (this.#finishing) return;
    this.#sendClose(code, truncateReason(message));
    this.#finishAfterFlush(code, message, false);
  }

  /** Closes TCP once what is queued (our close frame last) has been written. */
  #finishAfterFlush(code: number, reason: string, wasClean: boolean): void {
    if (this.#finishing) return;
    this.#finishing = true;
    this.#assembler.stop();
    this.#writer.drained().then(() => this.#finish(code, reason, wasClean));
  }

  /** Housekeeping, called by the server's timer with its clock. */
  tick(now: number): void {
    if (this.#finished) return;
    const options = this.#host.options;
    if (this.#closeSent) {
      // The peer never answered our close (or never read it): cut it off.
      if (now >= this.closeDeadline) this.#finish(CloseCode.Abnormal, "", false);
      return;
    }
    if (options.idleTimeout > 0 && now - this.lastReceived >= options.idleTimeout) {
      this.close(CloseCode.GoingAway, "idle timeout");
      return;
    }
    if (options.pingInterval > 0) {
      if (this.pingSentAt !== 0 && now - this.pingSentAt >= options.pongTimeout) {
        this.#finish(CloseCode.Abnormal, "", false);
        return;
      }
      if (this.pingSentAt === 0 && now - this.lastPing >= options.pingInterval) {
        this.pingSentAt = this.lastPing = now;
        this.#writer.enqueue(encodeFrame(Opcode.Ping, new Uint8Array(0)));
      }
    }
  }

  /** Starts the closing handshake for a server shutdown, or drops the peer if already closing. */
  shutdown(code: number, reason: string): void {
    if (this.readyState === ReadyState.OPEN) this.close(code, reason);
  }

  /** Ends the connection: closes TCP once and tells the application once. */
  #finish(code: number, reason: string, wasClean: boolean): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#finishing = true;
    this.readyState = ReadyState.CLOSED;
    this.#parser.stop();
    this.#assembler.stop();
    this.#writer.abort();
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer's reset.
    }
    const received = this.#closeReceived;
    if (received !== null && wasClean) {
      code = received.code;
      reason = received.reason;
    }
    if (this.#topics !== null) {
      for (const topic of this.#topics) this.#host.setSubscribed(this, topic, false);
      this.#topics = null;
    }
    this.#host.connectionClosed(this);
    const info: CloseInfo = { code, reason, wasClean };
    this.#callHandler(this.#host.handlers.close, this.socket, code, reason);
    socketInternals.emitClose(this.socket as ServerWebSocket<unknown>, info);
  }

  // ---- topics ----

  /** Subscribes to a topic. */
  subscribe(topic: string): boolean {
    if (this.#finished) return false;
    const topics = this.#topics ??= new Set();
    if (topics.has(topic)) return false;
    topics.add(topic);
    this.#host.setSubscribed(this, topic, true);
    return true;
  }

  /** Unsubscribes from a topic. */
  unsubscribe(topic: string): boolean {
    if (this.#topics === null || !this.#topics.delete(topic)) return false;
    this.#host.setSubscribed(this, topic, false);
    return true;
  }

  /** Whether subscribed to `topic`. */
  isSubscribed(topic: string): boolean {
    return this.#topics !== null && this.#topics.has(topic);
  }

  /** The subscribed topics. */
  topicList(): string[] {
    return this.#topics === null ? [] : [...this.#topics];
  }

  /** Publishes to a topic's other subscribers. */
  publish(topic: string, data: SendData, _from: ServerWebSocket<T>): number {
    return this.#host.publishFrame(topic, encodeMessage(data), this);
  }
}
