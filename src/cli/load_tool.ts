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
  /** Replies that arrived but differed from the message sent. */
  wrongReplies: number;
  /** The first wrong reply, described (which client, what was expected, what came). */
  firstWrongReply?: string;
  /** Clients still waiting for a reply when the run was cut off, 2 s after the end. */
  unanswered: number;
  /** How the server closed connections early, as `code "reason"`, with how many. */
  closes: Record<string, number>;
  /** Why connections could not be opened, with how many. */
  connectErrors: Record<string, number>;
}

/** How {@linkcode runLoad} reports progress while it runs. */
export interface LoadProgress {
  /** Writes one progress line (the CLI: stderr). */
  write(line: string): void;
  /** Milliseconds between lines. Default 1000. */
  interval?: number;
}

/** Text of `size` characters, a pattern that shows misplaced bytes. */
function textTemplate(size: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return alphabet.repeat(Math.ceil(size / alphabet.length)).slice(0, size);
}

/** `size` bytes of a pattern that shows misplaced bytes. */
function binaryTemplate(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31) & 0xff;
  return bytes;
}

/** Null when `reply` is `sent`; else what differs. */
function difference(sent: string | Uint8Array, reply: unknown): string | null {
  const kind = (value: unknown) => typeof value === "string" ? "text" : "binary";
  const length = (value: unknown) =>
    typeof value === "string" ? value.length : value instanceof Uint8Array ? value.length : 0;
  if (kind(sent) !== kind(reply)) {
    return `expected ${kind(sent)} of ${length(sent)} B, got ${kind(reply)} of ${length(reply)} B`;
  }
  if (typeof sent === "string" && sent === reply) return null;
  let at = 0;
  if (sent instanceof Uint8Array && reply instanceof Uint8Array) {
    while (at < sent.length && at < reply.length && sent[at] === reply[at]) at++;
  } else {
    const text = reply as string;
    while (at < sent.length && at < text.length && sent[at] === text[at]) at++;
  }
  if (at === sent.length && at === length(reply)) return null;
  const sizes = length(reply) === sent.length
    ? `${sent.length} B`
    : `${sent.length} B, got ${length(reply)} B`;
  return `expected ${sizes}; the first difference is at byte ${at}`;
}

/**
 * What one client sends: `template` with the client's index and the
 * sequence number over its start, so a repeated, stale or misrouted echo
 * does not match. Binary messages are stamped in place in the client's own
 * copy (the previous message has been echoed, so it is no longer queued).
 */
class Messages {
  #template: string | Uint8Array;
  #index: number;
  constructor(template: string | Uint8Array, index: number) {
    this.#template = typeof template === "string" ? template : template.slice();
    this.#index = index;
  }
  next(sequence: number): string | Uint8Array {
    const template = this.#template;
    if (typeof template === "string") {
      const tag = `${this.#index}.${sequence}:`;
      return template.length > tag.length ? tag + template.slice(tag.length) : template;
    }
    for (let i = 0; i < 8 && i < template.length; i++) {
      template[i] = ((i < 4 ? sequence : this.#index) >>> (8 * (i % 4))) & 0xff;
    }
    return template;
  }
}

/** `code "reason"`, as the summary lists closes. */
function describeClose(code: number, reason: string): string {
  return reason === "" ? `${code}` : `${code} ${JSON.stringify(reason)}`;
}

function count(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1;
}

interface RunState {
  until: number;
  /** Set when the run was cut off: a client whose iterator ends then was unanswered. */
  cutOff: boolean;
}

async function runClient(
  socket: ClientWebSocket,
  messages: Messages,
  index: number,
  state: RunState,
  report: LoadReport,
): Promise<void> {
  const replies = socket[Symbol.asyncIterator]();
  const closedEarly = async () => {
    report.closedEarly++;
    const { code, reason } = await socket.closed;
    count(report.closes, describeClose(code, reason));
  };
  for (let sequence = 0; Date.now() < state.until; sequence++) {
    if (socket.readyState !== 1) return await closedEarly();
    const message = messages.next(sequence);
    const sent = performance.now();
    socket.send(message);
    const reply = await replies.next();
    if (reply.done) {
      report.errors++;
      if (state.cutOff) report.unanswered++;
      else await closedEarly();
      return;
    }
    const wrong = difference(message, reply.value);
    if (wrong === null) {
      report.messages++;
      report.latencies.push(performance.now() - sent);
    } else {
      report.errors++;
      report.wrongReplies++;
      report.firstWrongReply ??= `client ${index + 1}, message ${sequence + 1}: ${wrong}`;
    }
  }
}

/**
 * Runs the load and returns what it measured (never throws for server
 * failures). The messages are built before the connections open and the
 * clock starts, so even large ones cost the measurement nothing.
 */
export async function runLoad(options: LoadOptions, progress?: LoadProgress): Promise<LoadReport> {
  const report: LoadReport = {
    messages: 0,
    errors: 0,
    closedEarly: 0,
    failedConnections: 0,
    elapsed: 0,
    latencies: [],
    wrongReplies: 0,
    unanswered: 0,
    closes: {},
    connectErrors: {},
  };
  const template = options.binary ? binaryTemplate(options.size) : textTemplate(options.size);
  const opened = await Promise.allSettled(
    Array.from({ length: options.clients }, () => connect(options.url)),
  );
  const sockets: ClientWebSocket[] = [];
  for (const result of opened) {
    if (result.status === "fulfilled") sockets.push(result.value);
    else count(report.connectErrors, (result.reason as Error)?.message ?? String(result.reason));
  }
  report.failedConnections = options.clients - sockets.length;
  const messages = sockets.map((_, i) => new Messages(template, i));

  const start = performance.now();
  const state: RunState = { until: Date.now() + options.duration, cutOff: false };
  // A server that stops answering must not keep the tool waiting forever:
  // two seconds after the end, whatever is still waiting is cut off.
  const cutOff = setTimeout(() => {
    state.cutOff = true;
    for (const socket of sockets) socket.terminate();
  }, options.duration + 2000);
  const ticker = progress === undefined ? undefined : setInterval(() => {
    const elapsed = performance.now() - start;
    // The run is over (its summary follows): a line now would only race it.
    if (elapsed >= options.duration) return;
    const seconds = elapsed / 1000;
    const rate = Math.round(report.messages / seconds);
    progress.write(
      `load: ${seconds.toFixed(0)} s of ${(options.duration / 1000).toFixed(0)} s, ` +
        `${report.messages.toLocaleString("en-US")} round trips ` +
        `(${rate.toLocaleString("en-US")}/s), ${report.errors} errors`,
    );
  }, progress.interval ?? 1000);
  try {
    await Promise.all(
      sockets.map((socket, i) => runClient(socket, messages[i], i, state, report)),
    );
  } finally {
    clearTimeout(cutOff);
    clearInterval(ticker);
  }
  report.elapsed = performance.now() - start;
  for (const socket of sockets) socket.close(1000);
  await Promise.all(sockets.map((socket) => socket.closed));
  report.latencies.sort((a, b) => a - b);
  return report;
}

/** Whether a run passed: at least one round trip, and nothing failed. */
export function loadSucceeded(report: LoadReport): boolean {
  return report.errors === 0 && report.failedConnections === 0 && report.closedEarly === 0 &&
    report.messages > 0;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** `{ "a": 2, "b": 1 }` as `a (2×), b`, the most frequent first. */
function tally(record: Record<string, number>): string {
  return Object.entries(record)
    .sort((a, b) => b[1] - a[1])
    .map(([what, times]) => times > 1 ? `${what} (${times}×)` : what)
    .join(", ");
}

/**
 * The report: one line, e.g. `4 clients, 64 B text, 2.0 s: 52,113 round
 * trips (26,051/s), p50 0.15 ms, p99 0.41 ms, 0 errors`; then, when the run
 * failed, one indented line for each kind of failure (connections that
 * could not be opened and why, close codes and reasons from the server,
 * wrong replies with the first described, replies that never came).
 */
export function formatReport(options: LoadOptions, report: LoadReport): string {
  const seconds = report.elapsed / 1000;
  const rate = seconds > 0 ? Math.round(report.messages / seconds) : 0;
  const ms = (value: number) => `${value.toFixed(2)} ms`;
  const failed =
    (report.failedConnections > 0 ? `, ${report.failedConnections} connections failed` : "") +
    (report.closedEarly > 0 ? `, ${report.closedEarly} closed early by the server` : "");
  const lines = [
    `${options.clients} clients, ${options.size} B ${options.binary ? "binary" : "text"}, ` +
    `${seconds.toFixed(1)} s: ${report.messages.toLocaleString("en-US")} round trips ` +
    `(${rate.toLocaleString("en-US")}/s), p50 ${ms(percentile(report.latencies, 0.5))}, ` +
    `p99 ${ms(percentile(report.latencies, 0.99))}, ${report.errors} errors${failed}`,
  ];
  if (report.failedConnections > 0) {
    lines.push(`  connections that failed to open: ${tally(report.connectErrors)}`);
  }
  if (report.closedEarly > 0) {
    lines.push(`  closed by the server before the end, with: ${tally(report.closes)}`);
  }
  if (report.wrongReplies > 0) {
    lines.push(`  wrong replies: ${report.wrongReplies}; the first: ${report.firstWrongReply}`);
  }
  if (report.unanswered > 0) {
    lines.push(`  no reply within 2 s after the end: ${report.unanswered} clients (cut off)`);
  }
  if (report.messages === 0 && lines.length === 1) {
    lines.push("  no round trip completed in the time given");
  }
  return lines.join("\n");
}
