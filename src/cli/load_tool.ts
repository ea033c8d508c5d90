/**
 * `tsunagu load`: a small load generator on the client. Each of N clients
 * sends a message, waits for the echo, checks that it is the same bytes,
 * and repeats until the time is up; then it reports throughput and
 * round-trip latency. Meant for trying a deployment end to end from the
 * same binary; for careful comparisons use a load generator in C on its own
 * core (bench/RESULTS.md).
 *
 * @module
 */

import { type ClientWebSocket, connect } from "../client/client.ts";

/**
 * What `tsunagu load` runs.
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "@tsunagu/ws/cli";
 * const parsed = parseCliArgs(["load", "ws://127.0.0.1:8080/", "--clients", "4"]);
 * if ("command" in parsed && parsed.command === "load") console.log(parsed.options.clients); // 4
 * ```
 */
export interface LoadOptions {
  /** The echo endpoint to load. */
  url: string;
  /** Concurrent connections. */
  clients: number;
  /** Milliseconds to send for. */
  duration: number;
  /** Bytes per message. */
  size: number;
  /** Send binary messages instead of text. */
  binary: boolean;
}

/** What one run measured. */
export interface LoadReport {
  /** Round trips completed with the right reply. */
  messages: number;
  /** Replies that were not the message sent (wrong, repeated or out of order), or never came. */
  errors: number;
  /** Connections the server closed before the time was up. */
  closedEarly: number;
  /** Connections that could not be opened. */
  failedConnections: number;
  /** Milliseconds actually measured. */
  elapsed: number;
  /** Round-trip times, milliseconds, sorted. */
  latencies: number[];
}

/** The payload client `index` sends: a pattern that shows misplaced bytes. */
function payload(options: LoadOptions, index: number): string | Uint8Array {
  if (options.binary) {
    return Uint8Array.from({ length: options.size }, (_, i) => (i * 31 + index) & 0xff);
  }
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let text = "";
  for (let i = 0; i < options.size; i++) text += alphabet[(i + index) % alphabet.length];
  return text;
}

function same(a: string | Uint8Array, b: unknown): boolean {
  if (typeof a === "string") return a === b;
  if (!(b instanceof Uint8Array) || b.length !== a.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * `template` with `sequence` written over its start, so that every message
 * differs from the one before: a repeated or stale echo does not match.
 */
function stamped(template: string | Uint8Array, sequence: number): string | Uint8Array {
  if (typeof template === "string") {
    const tag = `${sequence}:`;
    return template.length > tag.length ? tag + template.slice(tag.length) : template;
  }
  const message = template.slice();
  for (let i = 0; i < 4 && i < message.length; i++) message[i] = (sequence >>> (8 * i)) & 0xff;
  return message;
}

async function runClient(
  socket: ClientWebSocket,
  template: string | Uint8Array,
  until: number,
  report: LoadReport,
): Promise<void> {
  const replies = socket[Symbol.asyncIterator]();
  for (let sequence = 0; Date.now() < until; sequence++) {
    if (socket.readyState !== 1) {
      report.closedEarly++;
      return;
    }
    const message = stamped(template, sequence);
    const sent = performance.now();
    socket.send(message);
    const reply = await replies.next();
    if (reply.done) {
      report.errors++;
      return;
    }
    if (same(message, reply.value)) {
      report.messages++;
      report.latencies.push(performance.now() - sent);
    } else {
      report.errors++;
    }
  }
}

/** Runs the load and returns what it measured (never throws for server failures). */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const report: LoadReport = {
    messages: 0,
    errors: 0,
    closedEarly: 0,
    failedConnections: 0,
    elapsed: 0,
    latencies: [],
  };
  const opened = await Promise.allSettled(
    Array.from({ length: options.clients }, () => connect(options.url)),
  );
  const sockets = opened.flatMap((result) => result.status === "fulfilled" ? [result.value] : []);
  report.failedConnections = options.clients - sockets.length;
  const start = performance.now();
  const until = Date.now() + options.duration;
  // A server that stops answering must not keep the tool waiting forever:
  // two seconds after the end, whatever is still waiting is cut off.
  const cutOff = setTimeout(() => {
    for (const socket of sockets) socket.terminate();
  }, options.duration + 2000);
  await Promise.all(
    sockets.map((socket, i) => runClient(socket, payload(options, i), until, report)),
  );
  clearTimeout(cutOff);
  report.elapsed = performance.now() - start;
  for (const socket of sockets) socket.close(1000);
  await Promise.all(sockets.map((socket) => socket.closed));
  report.latencies.sort((a, b) => a - b);
  return report;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/**
 * The report as one line, e.g. `4 clients, 64 B text, 2.0 s: 52,113 round
 * trips (26,051/s), p50 0.15 ms, p99 0.41 ms, 0 errors`.
 */
export function formatReport(options: LoadOptions, report: LoadReport): string {
  const seconds = report.elapsed / 1000;
  const rate = seconds > 0 ? Math.round(report.messages / seconds) : 0;
  const ms = (value: number) => `${value.toFixed(2)} ms`;
  const failed =
    (report.failedConnections > 0 ? `, ${report.failedConnections} connections failed` : "") +
    (report.closedEarly > 0 ? `, ${report.closedEarly} closed early by the server` : "");
  return `${options.clients} clients, ${options.size} B ${options.binary ? "binary" : "text"}, ` +
    `${seconds.toFixed(1)} s: ${report.messages.toLocaleString("en-US")} round trips ` +
    `(${rate.toLocaleString("en-US")}/s), p50 ${ms(percentile(report.latencies, 0.5))}, ` +
    `p99 ${ms(percentile(report.latencies, 0.99))}, ${report.errors} errors${failed}`;
}
