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
  encodeMaskedFrame,
  MAX_CLOSE_REASON_BYTES,
  MAX_CONTROL_PAYLOAD,
  Opcode,
} from "../protocol/frame.ts";
import { type FrameHandler, FrameParser } from "../protocol/frame_parser.ts";
import { isRejection, parseRequestText } from "../protocol/handshake.ts";
import {
  compressedFrame,
  type DeflateParams,
  inflateMessage,
} from "../protocol/permessage_deflate.ts";
import { SharedMessage } from "./shared_message.ts";
import { giveBuffer, joinPool, leavePool, takeBuffer } from "./buffer_pool.ts";
import { FrameWriter } from "./frame_writer.ts";
import { type AssemblyBudget, MessageAssembler, type MessageHandler } from "../protocol/message.ts";
import type { ResolvedConnectionOptions, SocketHandlers } from "./options.ts";
import {
  type CloseInfo,
  ReadyState,
  type SendData,
  Socket,
  type SocketTransport,
  toPayload,
} from "./socket.ts";
import type { SocketEvents } from "./socket_events.ts";

/** What a connection needs from the server (or client) that owns it. */
export interface ConnectionHost<T> {
  readonly options: ResolvedConnectionOptions;
  readonly handlers: SocketHandlers<T>;
  /** Passed to every handler as its last argument: the `Server`, for a server's connections. */
  readonly owner: unknown;
  /** A coarse clock (ms), refreshed by the server's housekeeping timer. */
  readonly now: number;
  /** Bytes all connections together may allocate for messages on their headers' word. */
  readonly assemblyBudget?: AssemblyBudget;
  /** Bytes all connections together may hold in messages still being received (1013 beyond). */
  readonly messageMemory?: AssemblyBudget;
  /** The connection has finished; forget it. */
  connectionClosed(connection: Connection<T>): void;
  /** The application has been told the connection closed with `code` (TCP may still be draining). */
  socketClosed(connection: Connection<T>, code: number): void;
  /** Adds or removes a topic subscription. */
  setSubscribed(connection: Connection<T>, topic: string, subscribed: boolean): void;
  /** Publishes a message to a topic's subscribers except `except`. */
  publishFrame(topic: string, message: SharedMessage, except: Connection<T> | null): number;
  /** Reports an application error. */
  reportError(error: unknown, socket?: Socket<T>): void;
  /**
   * The connection's read loop has ended (started by
   * {@linkcode Connection.start}); the connection may still be closing.
   */
  readLoopEnded?(connection: Connection<T>): void;
}

/** Everything a connection is born with, from the handshake. */
export interface ConnectionInit<T> {
  conn: Deno.Conn;
  reader: ByteReader;
  url: string;
  protocol: string;
  /**
   * The upgrade request's headers: as `Headers`, or as the request head's
   * text (decoded by `decodeRequestHead`), parsed on first use. The text
   * costs the connection nothing but the string itself.
   */
  headers: Headers | string;
  data: T;
  /** The negotiated permessage-deflate parameters; null without compression. */
  deflate?: DeflateParams | null;
  /** The extensions as answered in the 101 (`Sec-WebSocket-Extensions`), or `""`. */
  extensions?: string;
  /**
   * Which end this is. A client masks every frame it sends and expects
   * unmasked frames (RFC 6455 §5.1). Default `"server"`.
   */
  role?: "server" | "client";
}

const textEncoder = new TextEncoder();

// Payload still to come of at least this many bytes is read straight into
// its message's buffer. Below it, an ordinary read (which may also bring the
// next frames) is cheaper than a read of its own, and the copy is small.
const DIRECT_READ_MIN = 16 * 1024;

// The largest read on a connection that negotiated permessage-deflate is
// maxPayload / DEFLATE_RATIO bytes, between DEFLATE_READ_MIN and
// DEFLATE_READ_MAX: deflate's ratio is at most about 1032:1, so the messages
// a read completes inflate to at most the one already under way (up to
// maxPayload) plus about maxPayload more. 16 KiB (the cap at the 16 MiB
// default) inflates to ~16 MiB, some 20 ms of CPU.
const DEFLATE_RATIO = 1024;
const DEFLATE_READ_MIN = 256;
const DEFLATE_READ_MAX = 16 * 1024;

// ---- fair reading ----
//
// In Deno, `await conn.read()` on a socket that already holds data resolves
// without returning to the event loop, so a peer that keeps its socket
// readable (1-byte messages, empty pings or empty continuation frames sent
// flat out) would keep its read loop running while other sockets, the
// accept loop and timers wait. So each read loop does a bounded amount of
// work per turn of the event loop: after READS_PER_TURN reads in one turn,
// or TURN_MS after its second read in the turn (a single read is never cut
// short, and a loop's first read in a turn costs no clock reading), it
// waits for the next turn before reading again.
//
// A turn is seen through a shared 0 ms timer (the ticker), armed by the
// first read that completes after the previous tick: it fires only once the
// event loop has come round to timers, which is also when Deno polls the
// sockets. Counting against it costs a comparison per read; a loop that
// waits for its data (every loop under ordinary traffic) starts each read
// in a new turn and never yields. The wait itself is a 0 ms timer too.
// setImmediate and a MessageChannel message are cheaper per yield (~2.4 and
// ~3.6 µs, against ~1 ms until the timer fires) but do not make Deno poll
// the sockets: behind a peer flooding a plain echo loop, yielding every 16
// reads with them still cost a second client round trips of 200-300 ms,
// the timer 10-20 ms (measured on the 2-core benchmark machine).
const READS_PER_TURN = 16;
const TURN_MS = 10;
/** Turns seen so far: bumped by the ticker. */
let turn = 0;
let ticker: ReturnType<typeof setTimeout> | undefined;
let ticking = false;
/** Read loops running: the ticker is cleared when the last one ends (no timer outlives them). */
let readLoops = 0;

function endTurn(): void {
  ticking = false;
  turn++;
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

// ---- producers that outrun their consumers ----
//
// A connection whose messages make the server queue more for a peer than
// that peer takes in (an echo to a peer that does not read, a publisher
// faster than its room's readers) is slowed rather than letting the queue
// grow to maxBufferedAmount and the peer be closed: whenever a message it
// delivers is sent to a queue over the high-water mark (maxBufferedAmount
// / 8, at most 2 MiB), its read loop stops reading, before its next read,
// until that queue is down to the low-water mark (half the high-water
// mark). Reading is what paces a peer (TCP backpressure reaches it), so
// this is the one lever that slows the producer without dropping anything.
// A queue that has not drained after DRAIN_WAIT_MS belongs to a peer too
// slow for what is sent to it (or one that stopped reading): the producer
// goes on, that queue is not waited for again until it has drained what it
// held then, and its peer is closed with 1008 at maxBufferedAmount as before.
const HIGH_WATER_MAX = 2 * 1024 * 1024;
const HIGH_WATER_MIN = 64 * 1024;
const DRAIN_WAIT_MS = 1000;

/** The connection whose message the application is handling now, if any. */
// deno-lint-ignore no-explicit-any
let delivering: Connection<any> | null = null;

// ---- memory ----
//
// V8 frees an ArrayBuffer's memory only when it collects garbage, and it
// collects only when JavaScript allocates: after an attack, a server left
// idle kept the buffers of connections long gone (hundreds of MiB) for good.
// Buffers that only a connection can reach (its read buffer, its unfinished
// message) are therefore detached when it ends, which frees their memory at
// once; the writer does the same with its pooled frames.
const DETACH_MIN = 16 * 1024;

// Bytes kept free before a lent message's payload in its pooled buffer:
// the largest server frame header, so the message can be framed in place.
const LENT_HEADROOM = 10;
// A lent message that came whole in one read is sent from the read buffer
// from this length on; below, copying it costs less than a fresh read
// buffer for the connection.
const LENT_READ_MIN = 4 * 1024;

/** Frees `buffer`'s memory now (it must be unreachable from anything still in use). */
function detach(buffer: ArrayBufferLike): void {
  if (buffer.byteLength < DETACH_MIN || !(buffer instanceof ArrayBuffer)) return;
  try {
    buffer.transfer(0);
  } catch {
    // Not detachable (a WebAssembly memory, or detached already): left to the GC.
  }
}

/** The headers of a request head's text (a head the handshake accepted, so it parses). */
function headersOf(text: string): Headers {
  const head = parseRequestText(text);
  return new Headers(isRejection(head) ? [] : head.headers);
}

function truncateReason(reason: string): string {
  let bytes = textEncoder.encode(reason);
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return reason;
  // Cut at a character boundary so the reason stays valid UTF-8.
  bytes = bytes.subarray(0, MAX_CLOSE_REASON_BYTES);
  return new TextDecoder().decode(bytes).replace(/\uFFFD$/, "");
}

/** A close frame's code and reason. */
interface CloseFrame {
  code: number;
  reason: string;
}

/** How a connection is closing: made when it starts to, not per open connection. */
interface Ending {
  /** The peer's close frame, once received. */
  closeReceived: CloseFrame | null;
  /** Our close frame, when we sent ours first. */
  closeInitiated: CloseFrame | null;
  /** Why we failed the connection, if we did. */
  failure: CloseFrame | null;
  /** What the application will be told once TCP is done. */
  outcome: CloseInfo | null;
  /** When our close must be answered by (real time, ms since the epoch); 0 until sent. */
  deadline: number;
}

/**
 * A connection that lends binary messages to the `message` handler
 * (binaryMessages "view"): assembly buffers come from the shared pool and
 * go back once the message has been handled, or abandoned.
 */
interface Lending {
  /**
   * The pooled buffer a direct read is filling, and one given back while it
   * did: it goes to the pool only once that read settles (the pool must
   * never hand out memory a read of ours may still write into).
   */
  reading: ArrayBufferLike | null;
  returnAfterRead: Uint8Array | null;
  /**
   * While a message is lent to the handler: that message, which `send` may
   * hand to the writer without a copy, and whether it lies in the read
   * buffer (else in a pooled assembly buffer).
   */
  lent: Uint8Array | null;
  lentFromRead: boolean;
  /** The assembly buffer the writer took over: not given back when the handler returns. */
  handedOver: ArrayBufferLike | null;
  /**
   * The read buffer the writer took over while the parser goes on through
   * that read: the read's later messages lie there and are copied when sent.
   */
  handedOverRead: ArrayBufferLike | null;
}

// Connection#flags bits.
const CLOSE_SENT = 1;
const FINISHING = 2;
const PING_OUTSTANDING = 4;
const READING_STOPPED = 8;
const LINGERING = 16;
const PARSER_STOPPED = 32;

// Where Connection#step starts: from the top, after waiting for drains, or
// after waiting for the next turn (straight to the read).
const STEP_DRAIN = 0;
const STEP_TURN = 1;
const STEP_READ = 2;

/** One WebSocket connection after a successful upgrade. */
export class Connection<T> implements MessageHandler, FrameHandler, SocketTransport {
  /** The application's view of this connection. */
  readonly socket: Socket<T>;
  /** Where events go once the socket has asked for them (listeners, iterators, `closed`). */
  events: SocketEvents | null = null;
  /** How the connection ended, as the application was told; null while it is open. */
  closeInfo: CloseInfo | null = null;
  readyState: number = ReadyState.OPEN;
  readonly url: string;
  readonly protocol: string;
  readonly extensions: string;
  readonly remoteAddr: Deno.NetAddr;

  /** Data messages delivered to the application (metrics). */
  messagesReceived = 0;
  /** Data messages accepted for sending (metrics). */
  messagesSent = 0;
  /** Bytes read from the socket since the upgrade (metrics). */
  bytesReceived = 0;

  /** Host clock time of the last frame received (for the idle timeout). */
  lastReceived: number;
  /** Host clock time of the last heartbeat ping queued, outstanding or not. */
  lastPing: number;
  /** When a close we sent must be answered by (real time, ms since the epoch); 0 when not closing. */
  get closeDeadline(): number {
    return this.#ending === null ? 0 : this.#ending.deadline;
  }

  #host: ConnectionHost<T>;
  #conn: Deno.Conn;
  #reader: ByteReader;
  // Made on first write (see #sink): an idle connection never writes, and a
  // writer is ~250 bytes per connection (idle memory).
  #writer: FrameWriter | null = null;
  // Made when the first frame bytes arrive (see #frameParser): an idle
  // connection never receives any, and a parser is ~120 bytes (idle memory).
  #parser: FrameParser | null = null;
  // Made on the first frame (see #frames): until then the parser reports to
  // the connection itself. An idle connection never receives one, and an
  // assembler is ~250 bytes per connection (idle memory).
  #assembler: MessageAssembler | null = null;
  #headers: Headers | string;
  #topics: Set<string> | null = null;
  #deflate: DeflateParams | null;
  #client: boolean;
  #finished = false;
  // The rarer yes/no states, one bit each of #flags (see the accessors
  // below): five fields fewer per connection (idle memory).
  #flags = 0;
  // How the connection is closing (see Ending); null while it is open, so an
  // open connection holds one field for all of it (idle memory).
  #ending: Ending | null = null;
  // Heartbeat: where the outstanding ping ends in the writer's byte stream
  // while it still waits behind queued data (0 once written); how far the
  // writer had got at the last look; and the time the pong deadline counts
  // from (see #pongDue). Whether a ping awaits its pong is a flag.
  #pingEnd = 0;
  #pingProgress = 0;
  #pongClock = 0;
  // Fair reading: the turn this loop last read in, its reads in that turn,
  // and when the second of them completed (performance.now()).
  #turn = -1;
  #turnReads = 0;
  #turnSince = 0;
  // Bytes inflated in turn #inflatedTurn (compressing connections only).
  #inflated = 0;
  #inflatedTurn = -1;
  // Slowing producers: the queue sizes that make a producer wait (ours as a
  // consumer), the queues this connection's messages overfilled (it waits
  // for them before its next read), and while this queue counts as too slow
  // to wait for: until the writer has written past #slowUntil.
  #highWater: number;
  #overfilled: Set<Connection<T>> | null = null;
  #slowUntil = 0;
  #stopWaiting: (() => void) | null = null;
  // The buffer an unfinished binary message is being read into (seen at
  // direct reads), freed if the connection ends before it is delivered.
  // Not tracked when lending: those buffers belong to the pool.
  #assembly: ArrayBufferLike | null = null;
  // With binaryMessages "view", the state of lending binary messages (see
  // Lending); null otherwise, so other connections pay one field for it.
  #lend: Lending | null;
  // The read loop's one callback (see #step), made when it starts, and
  // what resolves the promise run() returns, if it was called.
  #readDone: ((result: unknown) => void) | null = null;
  #loopEnded: (() => void) | null = null;

  // ---- state kept in #flags and #ending (idle memory) ----

  /** Our close frame is queued (or written): nothing more may be sent. */
  get #closeSent(): boolean {
    return (this.#flags & CLOSE_SENT) !== 0;
  }
  set #closeSent(on: boolean) {
    this.#flags = on ? this.#flags | CLOSE_SENT : this.#flags & ~CLOSE_SENT;
  }
  /** The connection is on its way out (#finishAfterFlush or #finish). */
  get #finishing(): boolean {
    return (this.#flags & FINISHING) !== 0;
  }
  set #finishing(on: boolean) {
    this.#flags = on ? this.#flags | FINISHING : this.#flags & ~FINISHING;
  }
  /** A heartbeat ping awaits its pong. */
  get #pingOutstanding(): boolean {
    return (this.#flags & PING_OUTSTANDING) !== 0;
  }
  set #pingOutstanding(on: boolean) {
    this.#flags = on ? this.#flags | PING_OUTSTANDING : this.#flags & ~PING_OUTSTANDING;
  }
  /** The read loop is over (peer EOF, error, or its close frame read): nothing more will be read. */
  get #readingStopped(): boolean {
    return (this.#flags & READING_STOPPED) !== 0;
  }
  set #readingStopped(on: boolean) {
    this.#flags = on ? this.#flags | READING_STOPPED : this.#flags & ~READING_STOPPED;
  }
  /** Our close frame is written and our side of TCP shut: reading until the peer's EOF. */
  get #lingering(): boolean {
    return (this.#flags & LINGERING) !== 0;
  }
  set #lingering(on: boolean) {
    this.#flags = on ? this.#flags | LINGERING : this.#flags & ~LINGERING;
  }

  /** The record of how the connection is closing, made on first need. */
  get #closing(): Ending {
    return this.#ending ??= {
      closeReceived: null,
      closeInitiated: null,
      failure: null,
      outcome: null,
      deadline: 0,
    };
  }
  /** The peer's close frame, once received. */
  get #closeReceived(): CloseFrame | null {
    return this.#ending === null ? null : this.#ending.closeReceived;
  }
  set #closeReceived(frame: CloseFrame | null) {
    this.#closing.closeReceived = frame;
  }
  /** The close frame we sent first (we started the closing handshake); null otherwise. */
  get #closeInitiated(): CloseFrame | null {
    return this.#ending === null ? null : this.#ending.closeInitiated;
  }
  set #closeInitiated(frame: CloseFrame | null) {
    this.#closing.closeInitiated = frame;
  }
  /**
   * Set when we failed the connection (protocol error, slow consumer,
   * handler error): the application hears this code however TCP ends
   * afterwards, even when the peer never reads our close frame and the
   * close deadline cuts it off.
   */
  get #failure(): CloseFrame | null {
    return this.#ending === null ? null : this.#ending.failure;
  }
  set #failure(frame: CloseFrame | null) {
    this.#closing.failure = frame;
  }
  /** How the application will be told the connection ended, once TCP is done. */
  get #outcome(): CloseInfo | null {
    return this.#ending === null ? null : this.#ending.outcome;
  }
  set #outcome(info: CloseInfo | null) {
    this.#closing.outcome = info;
  }
  /** The queue size a producer waits for this one to drain to: derived, not a field. */
  get #lowWater(): number {
    return this.#highWater / 2;
  }

  constructor(host: ConnectionHost<T>, init: ConnectionInit<T>) {
    this.#host = host;
    this.#conn = init.conn;
    this.#reader = init.reader;
    this.url = init.url;
    this.protocol = init.protocol;
    this.extensions = init.extensions ?? "";
    this.#headers = init.headers;
    this.remoteAddr = init.conn.remoteAddr as Deno.NetAddr;
    this.lastReceived = this.lastPing = host.now;
    const deflate = this.#deflate = init.deflate ?? null;
    this.#client = init.role === "client";
    const { maxPayload, maxBufferedAmount } = host.options;
    // Compressed input can cost ~1000x its size to inflate (up to maxPayload
    // per message): small reads bound the work one read can cause, and a
    // loop that keeps reading yields its turn after TURN_MS (fair reading).
    if (deflate !== null) {
      init.reader.capSize(
        Math.min(
          DEFLATE_READ_MAX,
          Math.max(DEFLATE_READ_MIN, Math.ceil(maxPayload / DEFLATE_RATIO)),
        ),
      );
    }
    // Never above maxBufferedAmount: #overBufferLimit checks the mark first.
    this.#highWater = Math.min(
      maxBufferedAmount,
      HIGH_WATER_MAX,
      Math.max(HIGH_WATER_MIN, maxBufferedAmount / 8),
    );
    if (host.options.binaryMessages === "view") {
      joinPool();
      this.#lend = {
        reading: null,
        returnAfterRead: null,
        lent: null,
        lentFromRead: false,
        handedOver: null,
        handedOverRead: null,
      };
    } else {
      this.#lend = null;
    }
    this.socket = new Socket<T>(this, init.data);
  }

  /** The frame parser, made on first use. */
  get #frameParser(): FrameParser {
    return this.#parser ?? this.#makeParser();
  }

  #makeParser(): FrameParser {
    const parser = this.#parser = new FrameParser(this, {
      expectMasked: !this.#client,
      // permessage-deflate marks compressed messages with RSV1.
      allowedRsv: this.#deflate === null ? 0 : 0x40,
    });
    // Stopped before it existed (the connection ended or is ending): it
    // ignores input, as one made at the start would by now.
    if ((this.#flags & PARSER_STOPPED) !== 0) parser.stop();
    return parser;
  }

  /** Stops the parser (made or not): input is ignored from now on. */
  #stopParser(): void {
    this.#flags |= PARSER_STOPPED;
    this.#parser?.stop();
  }

  /** The message assembler, made on first use. */
  #frames(): MessageAssembler {
    return this.#assembler ?? this.#makeAssembler();
  }

  #makeAssembler(): MessageAssembler {
    const host = this.#host;
    const assembler = this.#assembler = new MessageAssembler(this, {
      lend: this.#lend === null
        ? undefined
        : { take: (size) => this.#lendBuffer(size), give: (b) => this.#giveBack(b) },
      maxPayload: host.options.maxPayload,
      budget: host.assemblyBudget,
      memory: host.messageMemory,
      inflate: this.#deflate === null ? undefined : (compressed, maxLength) => {
        const inflated = inflateMessage(compressed, maxLength);
        if (inflated instanceof Uint8Array) this.#countInflated(inflated.length);
        return inflated;
      },
    });
    // A connection on its way out has a stopped assembler, as one made at
    // the start would be by now: it delivers nothing more.
    if (this.#finishing) assembler.stop();
    // From now on the parser reports to the assembler directly: the
    // connection stands in only until the first frame.
    this.#frameParser.setHandler(assembler);
    return assembler;
  }

  // ---- FrameHandler: stands in for the assembler until the first frame ----
  // The parser's first event on a connection is onFrameStart (or
  // onFrameError for a bad first header): either makes the assembler and
  // hands it the event; later events go to the assembler itself.

  /** See {@linkcode FrameHandler.onFrameStart}. */
  onFrameStart(fin: boolean, rsv: number, opcode: number, length: number): boolean {
    return this.#frames().onFrameStart(fin, rsv, opcode, length);
  }

  /** See {@linkcode FrameHandler.onFramePayload}. */
  onFramePayload(chunk: Uint8Array): boolean {
    return this.#frames().onFramePayload(chunk);
  }

  /** See {@linkcode FrameHandler.onFrameEnd}. */
  onFrameEnd(): boolean {
    return this.#frames().onFrameEnd();
  }

  /** See {@linkcode FrameHandler.onFrameError}. */
  onFrameError(code: number, message: string): void {
    this.#frames().onFrameError(code, message);
  }

  /** The upgrade request's headers (built on first use). */
  get headers(): Headers {
    const source = this.#headers;
    return typeof source === "string" ? this.#headers = headersOf(source) : source;
  }

  /** The writer failed (the peer went away): drop the connection. */
  writeFailed(_error: unknown): void {
    this.#finish(CloseCode.Abnormal, "", false);
  }

  /** Bytes written to the socket (metrics). */
  get bytesSent(): number {
    return this.#writer === null ? 0 : this.#writer.writtenBytes;
  }

  /** Bytes queued and not yet written. */
  get bufferedAmount(): number {
    return this.#writer === null ? 0 : this.#writer.bufferedAmount;
  }

  /** The writer, made on first use: everything that queues bytes goes through here. */
  get #sink(): FrameWriter {
    return this.#writer ?? this.#makeWriter();
  }

  #makeWriter(): FrameWriter {
    // The writer reports failure to this.writeFailed: no closure per connection.
    const writer = this.#writer = new FrameWriter(this.#conn, this, this.#reader.rid);
    // A connection that ended before it ever wrote has an aborted writer, as
    // one made at the start would be by now: it writes nothing.
    if (this.#finished) writer.abort();
    return writer;
  }

  /**
   * Runs the connection: calls `open`, then reads until the connection
   * ends; resolves then. For a client and tests; a server uses
   * {@linkcode Connection.start}, which keeps no promise per connection.
   */
  run(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#loopEnded = resolve;
      this.start();
    });
  }

  /**
   * Calls `open`, then reads until the connection ends, and then tells the
   * host ({@linkcode ConnectionHost.readLoopEnded}).
   *
   * The read loop is callbacks made once per connection, not an async
   * function: an idle connection then holds one pending read and its
   * reaction, where a suspended async loop held its frame (~270 bytes of
   * generator and registers), its promise, the await's closures and the
   * server's `.then` on it (idle memory, bench/RESULTS.md change 18). The
   * hot path is no longer: per read, the runtime's promise and one `.then`
   * (a reaction and a derived promise) against an await's reaction and
   * closures, and one microtask either way.
   */
  start(): void {
    this.#callHandler(this.#host.handlers.open, this.socket, this.#host.owner);
    // Both outcomes of every read in one closure (a rejection's reason is
    // never a number or null): one function per connection, not two.
    this.#readDone = (result) => this.#read(result);
    readLoops++;
    const reader = this.#reader;
    try {
      // Bytes that arrived together with the request head are frames already.
      if (reader.filled > 0) {
        this.bytesReceived += reader.filled;
        this.#feed();
      }
    } catch {
      return this.#loopEnd();
    }
    this.#step(STEP_DRAIN);
  }

  /**
   * One turn of the read loop, from `from` on: the waits a read may have to
   * make (for the queues this connection overfilled, for the next turn of
   * the event loop), then the read, whose callback takes the next turn.
   *
   * After a protocol error or a close frame the parser ignores input, but
   * reading goes on: closing a socket with unread bytes makes the kernel
   * send a reset, which can destroy our close frame before the peer reads
   * it. So we read (and discard) until the peer's EOF or the close deadline.
   */
  #step(from: number): void {
    try {
      if (this.#finished) return this.#loopEnd();
      // A producer waits for the queues its messages overfilled...
      if (from === STEP_DRAIN && this.#overfilled !== null) return this.#stepAfterDrains();
      // ...and a loop that has had its share of this turn for the next one
      // (see "fair reading"): two comparisons unless it read twice in it.
      if (
        from !== STEP_READ && this.#turnReads > 1 && this.#turn === turn &&
        (this.#turnReads >= READS_PER_TURN || performance.now() - this.#turnSince >= TURN_MS)
      ) {
        return this.#stepNextTurn();
      }
      const reader = this.#reader;
      // A long payload still to come is read straight into its message's
      // buffer, skipping the copy out of the read buffer (large messages).
      // (No parser yet: no frame under way, so no payload to come.)
      const parser = this.#parser;
      const target = parser !== null && reader.canReadInto
        ? parser.payloadTarget(DIRECT_READ_MIN)
        : null;
      if (target !== null) {
        const buffer = target.buffer;
        const lend = this.#lend;
        if (buffer !== this.#assembly && lend === null) {
          // The message's buffer grew: the old one was copied and dropped.
          if (this.#assembly !== null) detach(this.#assembly);
          this.#assembly = buffer;
        }
        // The read that brought this payload's start filled the buffer:
        // the buffer need not grow for the rest.
        reader.keepSize();
        if (lend !== null) lend.reading = buffer;
        return this.#readInto(parser!, target);
      }
      // The runtime's read promise itself, with the callback made once. (No
      // closure is made in this method: it would cost a context per read.)
      const done = this.#readDone!;
      reader.readRaw().then(done, done);
    } catch {
      // The buffer is full at its maximum size, or the socket is closed.
      this.#loopEnd();
    }
  }

  /** The loop waits for the queues it overfilled, then goes on to its read. */
  #stepAfterDrains(): void {
    this.#waitForDrain().then(() => this.#step(STEP_TURN), () => this.#loopEnd());
  }

  /** The loop has had its share of this turn: it reads in the next. */
  #stepNextTurn(): void {
    nextTurn().then(() => {
      // The event loop has been round: whatever the ticker says, this
      // loop's share starts afresh.
      this.#turn = -1;
      this.#step(STEP_READ);
    });
  }

  /** Reads straight into `target`: a closure per read, one per 16 KiB or more of payload. */
  #readInto(parser: FrameParser, target: Uint8Array): void {
    this.#reader.readInto(target).then(
      (n) => this.#readDirect(parser, target, n),
      () => this.#loopEnd(),
    );
  }

  /**
   * A read into the read buffer completed: `result` is the bytes read (null
   * or 0 at the end), or why it failed (a reset, or a socket we closed).
   */
  #read(result: unknown): void {
    if (typeof result !== "number" && result !== null) return this.#loopEnd();
    try {
      const count = this.#reader.commit(result);
      if (count === 0) return this.#loopEnd();
      this.#countRead();
      this.bytesReceived += count;
      this.#feed();
      // After the peer's close frame it sends nothing more (RFC 6455
      // §5.5.1) and TCP closes as soon as our reply is written, so no
      // further read: a read pending at conn.close() is rejected with an
      // Interrupted error whose construction (stack trace included) cost
      // ~7% of CPU per connection in the connect benchmark. A client
      // reads on until the server's EOF instead: the server closes TCP
      // first (RFC 6455 §7.1.1), so the client does not hold TIME_WAIT.
      if (this.#closeReceived !== null && !this.#client) return this.#loopEnd();
    } catch {
      // A handler's failure is caught where it is called; this is the
      // parser or the assembler on a connection torn down under it.
      return this.#loopEnd();
    }
    this.#step(STEP_DRAIN);
  }

  /** A direct read into a message's buffer (`target`) completed with `n` bytes. */
  #readDirect(parser: FrameParser, target: Uint8Array, n: number | null): void {
    try {
      if (n === null || n === 0) return this.#loopEnd();
      this.#countRead();
      this.bytesReceived += n;
      this.lastReceived = this.#host.now;
      parser.push(target, n);
      if (this.#lend !== null) this.#readSettled(this.#lend);
    } catch {
      return this.#loopEnd();
    }
    this.#step(STEP_DRAIN);
  }

  /** The read loop is over (peer EOF, a reset, or the connection closed): once. */
  #loopEnd(): void {
    const reader = this.#reader;
    try {
      reader.release();
      if (this.#lend !== null) this.#readSettled(this.#lend);
      if (--readLoops === 0 && ticking) {
        clearTimeout(ticker);
        endTurn();
      }
      this.#readingStopped = true;
      if (!this.#finished) {
        if (!this.#finishing) {
          // Dropped without a closing handshake (or while waiting for the peer's
          // reply to our close).
          this.#finish(CloseCode.Abnormal, "", false);
        } else if (this.#lingering) {
          this.#finishWithOutcome();
        }
        // Otherwise our close frame is still being written; #lingerThenFinish ends it.
      }
      // Nothing reads any more, and the assembler has let go of an unfinished
      // message: free both buffers now rather than at the next collection.
      if (this.#assembly !== null) {
        detach(this.#assembly);
        this.#assembly = null;
      }
      detach(reader.buffer.buffer);
    } catch (error) {
      this.#host.reportError(error);
    }
    const ended = this.#loopEnded;
    if (ended !== null) {
      this.#loopEnded = null;
      ended();
    }
    this.#host.readLoopEnded?.(this);
  }

  /**
   * A pooled buffer for a message to be lent, with LENT_HEADROOM bytes
   * before it: room for the frame header should the application send the
   * message straight back (see Lending.lent).
   */
  #lendBuffer(size: number): Uint8Array {
    return takeBuffer(size + LENT_HEADROOM).subarray(LENT_HEADROOM);
  }

  /**
   * A lent buffer goes back to the pool, unless a direct read is filling it
   * or the writer took it over (see Lending).
   */
  #giveBack(buffer: Uint8Array): void {
    const lend = this.#lend!;
    if (buffer.buffer === lend.handedOver) lend.handedOver = null;
    else if (buffer.buffer === lend.reading) lend.returnAfterRead = buffer;
    else giveBuffer(buffer);
  }

  /** A direct read has settled: a lent buffer given back while it filled it may go now. */
  #readSettled(lend: Lending): void {
    lend.reading = null;
    const buffer = lend.returnAfterRead;
    if (buffer !== null) {
      lend.returnAfterRead = null;
      giveBuffer(buffer);
    }
  }

  /** Accounts a completed read to the current turn, arming the ticker for the next. */
  #countRead(): void {
    if (!ticking) {
      ticking = true;
      ticker = setTimeout(endTurn, 0);
    }
    if (this.#turn !== turn) {
      this.#turn = turn;
      this.#turnReads = 1;
    } else if (++this.#turnReads === 2) {
      this.#turnSince = performance.now();
    }
  }

  /**
   * Inflating is the costliest work a read can bring (~1000 times its
   * bytes): once the messages read in this turn have inflated to maxPayload,
   * the turn is over for this loop, so one read inflates at most about twice
   * maxPayload (see DEFLATE_READ_MAX) before every other connection gets its
   * turn.
   */
  #countInflated(bytes: number): void {
    if (this.#inflatedTurn !== turn) {
      this.#inflatedTurn = turn;
      this.#inflated = 0;
    }
    this.#inflated += bytes;
    if (this.#inflated >= this.#host.options.maxPayload) this.#turnReads = READS_PER_TURN;
  }

  /**
   * Waits (at most DRAIN_WAIT_MS) until every queue this connection's
   * messages pushed over its high-water mark is down to its low-water mark;
   * the ones that are not are too slow to wait for (see "producers that
   * outrun their consumers").
   */
  async #waitForDrain(): Promise<void> {
    const queues = this.#overfilled!;
    this.#overfilled = null;
    const drains: Promise<void>[] = [];
    for (const queue of queues) {
      const writer = queue.#writer;
      if (writer !== null && !queue.#finished && writer.bufferedAmount > queue.#lowWater) {
        drains.push(writer.drainedTo(queue.#lowWater));
      }
    }
    if (drains.length === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#stopWaiting = resolve;
      timer = setTimeout(resolve, DRAIN_WAIT_MS);
      Promise.all(drains).then(() => resolve());
    });
    clearTimeout(timer);
    this.#stopWaiting = null;
    for (const queue of queues) {
      const writer = queue.#writer;
      if (writer === null) continue;
      const over = writer.bufferedAmount - queue.#lowWater;
      if (!queue.#finished && over > 0) queue.#slowUntil = writer.writtenBytes + over;
    }
  }

  #feed(): void {
    const reader = this.#reader;
    this.lastReceived = this.#host.now;
    // The parser consumes everything (it keeps partial headers itself), so
    // the buffer is free for the next read as soon as push returns.
    this.#frameParser.push(reader.buffer, reader.filled);
    reader.filled = 0;
    if (this.#lend !== null) this.#lend.handedOverRead = null;
  }

  // ---- MessageHandler: events from the assembler ----

  /** A text message: delivered to the application. */
  onText(text: string): void {
    // A compressed message was read into this buffer and inflated: done with.
    if (this.#assembly !== null) this.#releaseAssembly(null);
    this.#deliver(text);
  }

  /** A binary message: delivered to the application. */
  onBinary(data: Uint8Array): void {
    if (this.#assembly !== null) this.#releaseAssembly(data);
    // A lent message may go back out without a copy: one assembled in a
    // pooled buffer (room for the header kept before it), or a long one
    // that came whole in this read (the client's header before it is
    // longer than ours; the reader then gets another buffer).
    const lend = this.#lend;
    if (lend !== null) {
      const backing = data.buffer;
      const read = this.#reader.buffer;
      const fromRead = backing === read.buffer;
      if (
        fromRead
          // Only a read buffer that is the connection's own, whole
          // ArrayBuffer can be handed over.
          ? data.length >= LENT_READ_MIN && read.byteOffset === 0 &&
            read.length === backing.byteLength
          : data.byteOffset >= LENT_HEADROOM && backing !== lend.handedOverRead
      ) {
        lend.lent = data;
        lend.lentFromRead = fromRead;
        this.#deliver(data);
        lend.lent = null;
        return;
      }
    }
    this.#deliver(data);
  }

  /**
   * The message read into #assembly is complete: its buffer is freed now,
   * unless it is the very array handed to the application (`delivered`).
   */
  #releaseAssembly(delivered: Uint8Array | null): void {
    const assembly = this.#assembly!;
    this.#assembly = null;
    if (delivered === null || delivered.buffer !== assembly) detach(assembly);
  }

  /** A ping: answered with a pong carrying the same payload, unless we are closing. */
  onPing(payload: Uint8Array): void {
    if (this.#closeSent) return;
    // At most one pong waits to be written, answering the latest ping (RFC
    // 6455 §5.5.3): a peer that floods pings and reads nothing costs one
    // pong's memory, which a limit on queued wire bytes did not bound.
    const writer = this.#sink;
    const waiting = writer.waitingPong;
    // Fast path for a flood: a waiting pong of the same size is rewritten in
    // place, no allocation (a ping of up to 125 bytes has a 2-byte header,
    // then the mask a client adds, then the payload).
    const start = this.#client ? 6 : 2;
    if (waiting !== null && waiting.length === start + payload.length) {
      if (this.#client) {
        for (let i = 0; i < payload.length; i++) {
          waiting[start + i] = payload[i] ^ waiting[2 + (i & 3)];
        }
      } else {
        waiting.set(payload, start);
      }
      return;
    }
    writer.enqueuePong(this.#encode(Opcode.Pong, payload));
  }

  /** A pong: the heartbeat is answered. */
  onPong(payload: Uint8Array): void {
    this.#pingOutstanding = false;
    const handler = this.#host.handlers.pong;
    if (handler !== undefined) {
      this.#callHandler(handler, this.socket, payload.slice(), this.#host.owner);
    }
  }

  /** The peer's close frame: echo it, then close TCP once it is written. */
  onClose(code: number, reason: string): void {
    this.#closeReceived = { code, reason };
    this.#stopParser();
    if (!this.#closeSent) {
      // Echo the peer's code and reason (RFC 6455 §5.5.1, as ws and Deno
      // do); an empty close is answered empty.
      this.#sendClose(code, code === CloseCode.NoStatus ? "" : reason);
    }
    this.#finishAfterFlush(code, reason, true);
  }

  /** A protocol violation: fail the connection with its code. */
  onProtocolError(code: number, message: string): void {
    this.#stopParser();
    this.#fail(code, message);
  }

  #deliver(data: string | Uint8Array): void {
    // Messages that arrive after we started closing are dropped, as the
    // standard WebSocket does in the CLOSING state.
    if (this.readyState !== ReadyState.OPEN) return;
    this.messagesReceived++;
    const handlers = this.#host.handlers;
    const handler = handlers.message;
    // Whatever the application sends while handling this message is this
    // connection's doing: a queue it overfills makes it wait (#overBufferLimit).
    const previous = delivering;
    delivering = this;
    try {
      if (handler !== undefined) {
        // #callHandler inlined for the per-message path: a direct call instead
        // of a rest-arguments array and apply() on every message.
        try {
          const result = handler.call(handlers, this.socket, data, this.#host.owner);
          if (result instanceof Promise) result.catch((error) => this.handlerFailed(error));
        } catch (error) {
          this.handlerFailed(error);
        }
      }
      const events = this.events;
      if (events !== null) {
        // Listeners and iterators may keep what they get: never a lent view.
        events.message(this.#lend !== null && typeof data !== "string" ? data.slice() : data);
      }
    } finally {
      delivering = previous;
    }
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
      if (result instanceof Promise) result.catch((error) => this.handlerFailed(error));
    } catch (error) {
      this.handlerFailed(error);
    }
  }

  /** An application handler or listener failed: report it and close this socket with 1011. */
  handlerFailed(error: unknown): void {
    this.#host.reportError(error, this.socket);
    if (this.readyState !== ReadyState.OPEN) return;
    // Fail first: an `error` listener that throws in turn then finds the
    // socket closing and is only reported, not dispatched to again.
    this.#fail(CloseCode.InternalError, "internal error");
    this.events?.error(error);
  }

  // ---- sending ----

  /** Sends a message; see {@linkcode Socket.send}. */
  send(data: SendData): boolean {
    const payload = toPayload(data);
    if (this.readyState !== ReadyState.OPEN || this.#overBufferLimit()) return false;
    if (this.#client) {
      const deflate = this.#deflate;
      const compressed = deflate === null
        ? null
        : compressedFrame(payload, deflate, encodeMaskedFrame);
      if (compressed !== null) {
        this.#sink.enqueue(compressed);
      } else {
        const text = typeof payload === "string";
        const bytes = text ? textEncoder.encode(payload) : payload;
        this.#sink.enqueue(this.#encode(text ? Opcode.Text : Opcode.Binary, bytes));
      }
      this.messagesSent++;
      return true;
    }
    const deflate = this.#deflate;
    const compressed = deflate === null ? null : compressedFrame(payload, deflate);
    if (compressed !== null) {
      this.#sink.enqueue(compressed);
      this.messagesSent++;
      return true;
    }
    const lend = this.#lend;
    if (lend !== null && payload === lend.lent && deflate === null) {
      // The lent message itself, sent back during the handler (an echo, a
      // relay): framed in place where it lies, in a buffer the writer takes
      // over (1 MiB echo: one 1 MiB copy fewer per message).
      lend.lent = null;
      if (lend.lentFromRead) {
        const reader = this.#reader;
        lend.handedOverRead = reader.buffer.buffer;
        reader.buffer = takeBuffer(reader.buffer.length);
      } else {
        lend.handedOver = payload.buffer;
      }
      this.#sink.enqueueLentMessage(payload);
      this.messagesSent++;
      return true;
    }
    // The writer encodes: this frame is this connection's alone, so a large
    // one can go into a pooled buffer the writer recycles once written.
    this.#sink.enqueueMessage(payload);
    this.messagesSent++;
    return true;
  }

  /** One frame as this end must send it: masked from a client, plain from a server. */
  #encode(opcode: number, payload: Uint8Array): Uint8Array {
    return this.#client ? encodeMaskedFrame(opcode, payload) : encodeFrame(opcode, payload);
  }

  /** Queues a message shared with other recipients, compressed if this connection negotiated it. */
  sendShared(message: SharedMessage): boolean {
    return this.sendFrame(message.frameFor(this.#deflate));
  }

  /** Queues an encoded data frame, applying the slow-consumer limit. */
  sendFrame(frame: Uint8Array): boolean {
    if (this.readyState !== ReadyState.OPEN || this.#overBufferLimit()) return false;
    this.#sink.enqueue(frame);
    this.messagesSent++;
    return true;
  }

  /**
   * The slow-consumer check, before each send: over maxBufferedAmount
   * waiting to be written, the peer is not reading, and the connection is
   * failed with 1008. Over the high-water mark (never above that limit),
   * the connection whose message is being handled is asked to wait before
   * its next read (see "producers that outrun their consumers"), unless
   * this queue is too slow to wait for. Under the mark, one comparison.
   */
  #overBufferLimit(): boolean {
    const writer = this.#writer;
    if (writer === null) return false;
    const buffered = writer.bufferedAmount;
    if (buffered <= this.#highWater) return false;
    if (buffered > this.#host.options.maxBufferedAmount) {
      this.#fail(CloseCode.PolicyViolation, "send buffer limit exceeded: peer is not reading");
      return true;
    }
    const producer = delivering;
    if (producer !== null && writer.writtenBytes >= this.#slowUntil) {
      (producer.#overfilled ??= new Set()).add(this);
    }
    return false;
  }

  /** Sends a ping; see {@linkcode Socket.ping}. */
  ping(data: SendData = ""): boolean {
    if (this.readyState !== ReadyState.OPEN) return false;
    const payload = toPayload(data);
    const bytes = typeof payload === "string" ? textEncoder.encode(payload) : payload;
    if (bytes.length > MAX_CONTROL_PAYLOAD) throw new RangeError("ping payload over 125 bytes");
    this.#sink.enqueue(this.#encode(Opcode.Ping, bytes));
    return true;
  }

  /** Resolves when everything queued has been written. */
  drained(): Promise<void> {
    return this.#writer === null ? Promise.resolve() : this.#writer.drained();
  }

  // ---- closing ----

  /** Starts the closing handshake; see {@linkcode Socket.close}. */
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
    if (this.#closeReceived === null) this.#closeInitiated = { code, reason };
    this.readyState = ReadyState.CLOSING;
    // Real time, not the coarse clock, which may be a housekeeping tick old:
    // counted from it, the deadline could fire up to a tick early.
    this.#closing.deadline = Date.now() + this.#host.options.closeTimeout;
    // Bypasses the send-buffer limit: the close frame must always be queued.
    this.#sink.enqueue(this.#encode(Opcode.Close, encodeClosePayload(code, reason)));
  }

  /** Fails the connection (RFC 6455 §7.1.7): send close with `code`, then close TCP. */
  #fail(code: number, message: string): void {
    if (this.#finishing) return;
    this.#failure = { code, reason: message };
    this.#sendClose(code, truncateReason(message));
    this.#finishAfterFlush(code, message, false);
  }

  /**
   * Ends the connection once what is queued (our close frame last) has been
   * written: then our side of TCP is shut (the peer sees EOF, so the server
   * still closes first, as RFC 6455 §7.1.1 asks) and the connection ends at
   * the peer's EOF or at the close deadline, whichever comes first.
   */
  #finishAfterFlush(code: number, reason: string, wasClean: boolean): void {
    if (this.#finishing) return;
    this.#finishing = true;
    this.#outcome = { code, reason, wasClean };
    this.#assembler?.stop();
    this.drained().then(() => this.#lingerThenFinish());
  }

  #lingerThenFinish(): void {
    if (this.#finished) return;
    // After a clean exchange of close frames the peer sends nothing more, so
    // TCP can close at once. Only a failed connection (the peer may still be
    // sending) needs to drain until the peer's EOF.
    if (this.#readingStopped || (this.#closeReceived !== null && !this.#client)) {
      return this.#finishWithOutcome();
    }
    // The closing handshake is over as far as the application is concerned:
    // tell it now, not when the peer gets round to closing TCP.
    const outcome = this.#outcome!;
    this.#notifyClosed(outcome.code, outcome.reason, outcome.wasClean);
    this.#lingering = true;
    // After a clean exchange a client sends no FIN of its own: the server
    // closes first, so the TIME_WAIT stays on the server's side (RFC 6455
    // §7.1.1); closeTimeout bounds the wait.
    if (this.#client && this.#closeReceived !== null) return;
    this.#conn.closeWrite().catch(() => this.#finishWithOutcome());
  }

  #finishWithOutcome(): void {
    const outcome = this.#outcome ?? { code: CloseCode.Abnormal, reason: "", wasClean: false };
    this.#finish(outcome.code, outcome.reason, outcome.wasClean);
  }

  /** Housekeeping, called by the server's timer with its clock. */
  tick(now: number): void {
    if (this.#finished) return;
    const options = this.#host.options;
    if (this.#closeSent) {
      // The peer never answered our close, never read it, or never closed
      // its side of TCP after the exchange: cut it off.
      if (now >= this.closeDeadline) this.#finishWithOutcome();
      return;
    }
    if (options.idleTimeout > 0 && now - this.lastReceived >= options.idleTimeout) {
      this.close(CloseCode.GoingAway, "idle timeout");
      return;
    }
    if (options.pingInterval > 0) {
      if (this.#pingOutstanding) {
        if (!this.#pongDue(now, options.pongTimeout)) return;
        this.#finish(CloseCode.Abnormal, "", false);
      } else if (now - this.lastPing >= options.pingInterval) {
        this.#sendHeartbeat(now);
      }
    }
  }

  #sendHeartbeat(now: number): void {
    const writer = this.#sink;
    // Behind queued data the ping only leaves once that data is written.
    const queuedAhead = writer.bufferedAmount > 0;
    writer.enqueue(this.#encode(Opcode.Ping, new Uint8Array(0)));
    this.#pingOutstanding = true;
    this.#pingEnd = queuedAhead ? writer.writtenBytes + writer.bufferedAmount : 0;
    this.#pingProgress = writer.writtenBytes;
    this.#pongClock = this.lastPing = now;
  }

  /**
   * Whether the peer has had pongTimeout to answer the outstanding ping. The
   * clock counts from when the ping was written, not queued: a ping waiting
   * behind a large backlog to a slow but reading peer is not the peer's
   * fault. While it waits, the clock restarts whenever the writer makes
   * progress, so a peer that reads nothing at all is still dropped after
   * pongTimeout.
   */
  #pongDue(now: number, pongTimeout: number): boolean {
    if (this.#pingEnd !== 0) {
      const written = this.#sink.writtenBytes;
      if (written !== this.#pingProgress) {
        this.#pingProgress = written;
        this.#pongClock = now;
      }
      if (written >= this.#pingEnd) this.#pingEnd = 0;
    }
    return now - this.#pongClock >= pongTimeout;
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
    this.#stopParser();
    this.#assembler?.stop();
    this.#writer?.abort();
    // After the assembler gave back its buffer (stop, above); once, as
    // #finish runs once.
    if (this.#lend !== null) leavePool();
    this.#overfilled = null;
    this.#stopWaiting?.();
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer's reset.
    }
    this.#notifyClosed(code, reason, wasClean);
    this.#host.connectionClosed(this);
  }

  /** Tells the application, once, that the connection is closed. */
  #notifyClosed(code: number, reason: string, wasClean: boolean): void {
    if (this.readyState === ReadyState.CLOSED) return;
    this.readyState = ReadyState.CLOSED;
    const received = this.#closeReceived;
    const initiated = this.#closeInitiated;
    // Whoever started the closing handshake names the close: the peer's
    // code (RFC 6455 §7.1.5) when it said goodbye first, even if our echo
    // could not be written before TCP ended; ours when we did (the peer's
    // reply is only an echo, often with no reason: the application and its
    // logs hear "1001 server shutting down", not the peer's empty echo).
    if (initiated !== null && received !== null) {
      code = initiated.code;
      reason = initiated.reason;
    } else if (received !== null) {
      code = received.code;
      reason = received.reason;
    } else if (this.#failure !== null) {
      code = this.#failure.code;
      reason = this.#failure.reason;
    }
    if (this.#topics !== null) {
      for (const topic of this.#topics) this.#host.setSubscribed(this, topic, false);
      this.#topics = null;
    }
    this.#host.socketClosed(this, code);
    const info: CloseInfo = { code, reason, wasClean };
    this.closeInfo = info;
    this.#callHandler(this.#host.handlers.close, this.socket, code, reason, this.#host.owner);
    this.events?.close(info);
  }

  // ---- topics ----

  /** Subscribes to a topic. */
  subscribe(topic: string): boolean {
    if (this.readyState === ReadyState.CLOSED) return false;
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
  publish(topic: string, data: SendData): number {
    return this.#host.publishFrame(topic, new SharedMessage(data), this);
  }
}
