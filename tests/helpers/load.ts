/**
 * Load for the hostile-client tests: a raw peer that floods the server with
 * the same bytes flat out and never reads, and a healthy echo client that
 * measures its round trips meanwhile. Both are bounded in time.
 *
 * The flooder yields a macrotask every few milliseconds of writing: the
 * test's own event loop must stay responsive for the clients it measures
 * (a write the kernel takes at once resolves without a turn of the event
 * loop), and it still sends far more than the server can take.
 *
 * Test tooling, not part of the published library.
 *
 * @module
 */

import { RawClient, withTimeout } from "./raw_client.ts";
import { delay, TestClient } from "./harness.ts";

/** What a flood achieved. */
export interface FloodResult {
  /** Bytes the kernel accepted from the flooder. */
  written: number;
  /** Bytes read from the server (with `drain`). */
  read: number;
  /** Whether the server ended the connection (a write failed) before the deadline. */
  cutOff: boolean;
}

/** How {@linkcode flood} behaves besides sending. */
export interface FloodOptions {
  /** The upgrade request's path. Default `/`. */
  path?: string;
  /** Sent once before the flood (say, the first frame of a fragmented message). */
  prefix?: Uint8Array;
  /** Read and discard whatever the server sends (a peer that keeps up); default: never read. */
  drain?: boolean;
  /** Extra upgrade request headers. */
  headers?: [string, string][];
}

/** `frame` repeated to fill about `size` bytes: one write's worth of a flood. */
export function repeatFrame(frame: Uint8Array, size = 64 * 1024): Uint8Array {
  const count = Math.max(1, Math.floor(size / frame.length));
  const out = new Uint8Array(count * frame.length);
  for (let i = 0; i < count; i++) out.set(frame, i * frame.length);
  return out;
}

/**
 * Connects to `port`, upgrades, then writes `chunk` again and again for `ms`
 * milliseconds, reading nothing unless told to drain, and closes. A write
 * that the server does not take waits at most until the deadline.
 */
export async function flood(
  port: number,
  chunk: Uint8Array,
  ms: number,
  options: FloodOptions = {},
): Promise<FloodResult> {
  const raw = await RawClient.connect(port);
  let written = 0;
  let read = 0;
  let cutOff = false;
  let draining: Promise<void> = Promise.resolve();
  try {
    await raw.handshake({ path: options.path ?? "/", headers: options.headers });
    if (options.drain) {
      draining = (async () => {
        const into = new Uint8Array(256 * 1024);
        try {
          while (true) {
            const n = await raw.conn.read(into);
            if (n === null) break;
            read += n;
          }
        } catch {
          // Closed by us at the end, or reset by the server.
        }
      })();
    }
    if (options.prefix !== undefined) await raw.write(options.prefix);
    const deadline = Date.now() + ms;
    // Whole chunks only: a partial write followed by the chunk from its
    // start would garble the stream into a protocol error.
    let offset = 0;
    let turnStarted = Date.now();
    while (Date.now() < deadline) {
      const write = raw.conn.write(offset === 0 ? chunk : chunk.subarray(offset));
      write.catch(() => {});
      let n: number;
      try {
        n = await withTimeout(write, Math.max(1, deadline - Date.now()), "a flood write");
      } catch (error) {
        if (!(error as Error).message.startsWith("timed out")) cutOff = true;
        break;
      }
      written += n;
      offset = (offset + n) % chunk.length;
      // A macrotask turn now and then, so the clients in this process keep running.
      if (offset === 0 && Date.now() - turnStarted >= 2) {
        await delay(0);
        turnStarted = Date.now();
      }
    }
  } finally {
    raw.close();
    await draining;
  }
  return { written, read, cutOff };
}

/** What the healthy client saw. */
export interface ProbeResult {
  /** Echoes sent. */
  sent: number;
  /** Echoes that came back. */
  echoed: number;
  /** The worst round trip in milliseconds (the wait, for an echo that never came). */
  worstMs: number;
  /** Every round trip in milliseconds, in order. */
  roundTrips: number[];
}

/**
 * A healthy client: connects to `url`, then sends one message every
 * `everyMs` for `ms` milliseconds and waits (at most `timeoutMs`) for each
 * echo, recording the round trips.
 */
export async function probeEcho(
  url: string,
  ms: number,
  everyMs = 100,
  timeoutMs = 3_000,
): Promise<ProbeResult> {
  const client = await TestClient.open(url, 10_000);
  const result: ProbeResult = { sent: 0, echoed: 0, worstMs: 0, roundTrips: [] };
  try {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const started = performance.now();
      const text = `probe ${result.sent++}`;
      client.ws.send(text);
      let roundTrip: number;
      try {
        const reply = await withTimeout(client.next(timeoutMs), timeoutMs + 100, "an echo");
        if (reply !== text) throw new Error(`echo ${JSON.stringify(reply)} for ${text}`);
        roundTrip = performance.now() - started;
        result.echoed++;
      } catch (error) {
        if (client.closeEvent !== null) throw error;
        // No echo within timeoutMs: recorded as the worst, and the probe
        // ends (a late echo would be taken for the next probe's reply).
        result.roundTrips.push(Math.round(performance.now() - started));
        result.worstMs = Math.max(result.worstMs, performance.now() - started);
        break;
      }
      result.roundTrips.push(Math.round(roundTrip));
      result.worstMs = Math.max(result.worstMs, roundTrip);
      await delay(Math.max(0, everyMs - roundTrip));
    }
  } finally {
    await client.dispose(10_000);
  }
  result.worstMs = Math.round(result.worstMs);
  return result;
}

/** What {@linkcode readFrames} saw. */
export interface ReadResult {
  /** Complete data frames received. */
  frames: number;
  /** Bytes received. */
  bytes: number;
  /** The code of the server's close frame, if one came (1005 for none in it). */
  closeCode: number | null;
}

/**
 * Reads everything the server sends on `conn` as fast as it can, in reads of
 * at most `bufferSize` bytes (each followed by `pauseMs` of handling, for a
 * reader slower than the server), until EOF, a reset, or `signal` aborts
 * (then the connection is closed), counting frames without keeping them.
 */
export async function readFrames(
  conn: Deno.Conn,
  signal: AbortSignal,
  bufferSize = 256 * 1024,
  pauseMs = 0,
): Promise<ReadResult> {
  const result: ReadResult = { frames: 0, bytes: 0, closeCode: null };
  const buffer = new Uint8Array(bufferSize);
  // Parser state: header bytes gathered, payload bytes still to skip.
  const header = new Uint8Array(14);
  let headerLength = 0;
  let skip = 0;
  let opcode = 0;
  let close: number[] | null = null;
  const onAbort = () => {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    while (!signal.aborted) {
      const n = await conn.read(buffer);
      if (n === null) break;
      result.bytes += n;
      let i = 0;
      while (i < n) {
        if (skip > 0) {
          const take = Math.min(skip, n - i);
          if (close !== null) close.push(...buffer.subarray(i, i + take));
          skip -= take;
          i += take;
        } else {
          header[headerLength++] = buffer[i++];
          if (headerLength < 2) continue;
          const len7 = header[1] & 0x7f;
          const size = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
          if (headerLength < size) continue;
          opcode = header[0] & 0x0f;
          skip = len7 === 126
            ? (header[2] << 8) | header[3]
            : len7 === 127
            ? Number(new DataView(header.buffer, 2, 8).getBigUint64(0))
            : len7;
          headerLength = 0;
          close = opcode === 0x8 ? [] : null;
        }
        if (skip === 0 && headerLength === 0) {
          if (opcode === 0x8 && close !== null) {
            result.closeCode = close.length >= 2 ? (close[0] << 8) | close[1] : 1005;
          } else if (opcode !== 0x9 && opcode !== 0xa) {
            result.frames++;
          }
          opcode = -1;
        }
      }
      if (pauseMs > 0) await delay(pauseMs);
    }
  } catch {
    // Closed by the abort, or reset by the server.
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  return result;
}
