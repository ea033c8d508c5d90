/**
 * Server metrics: a snapshot of counters ({@linkcode ServerMetrics}) and
 * their Prometheus text form. Counting is done where the events happen
 * (per connection, on plain fields, so the message path pays an increment
 * and nothing else); the snapshot adds them up when asked.
 *
 * @module
 */

import type { BrokerMetrics } from "./broker.ts";

/**
 * Counters of one server since it started, from `server.metrics()`.
 *
 * @example
 * ```ts
 * import { serve, type ServerMetrics } from "@tsunagu/ws";
 * const server = serve({ port: 0, hostname: "127.0.0.1" });
 * const metrics: ServerMetrics = server.metrics();
 * console.log(metrics.connections, metrics.messagesReceived); // 0 0
 * await server.shutdown();
 * ```
 */
export interface ServerMetrics {
  /** WebSocket connections open now (as the application sees them). */
  connections: number;
  /** WebSocket connections opened since the start. */
  connectionsOpened: number;
  /**
   * TCP connections accepted since the start, of every kind: each WebSocket
   * and each plain HTTP connection, however many requests it carried
   * (keep-alive), counts once.
   */
  connectionsAccepted: number;
  /** Data messages received (text and binary, after reassembly). */
  messagesReceived: number;
  /** Data messages accepted for sending (each recipient of a publish counts). */
  messagesSent: number;
  /** Bytes read from WebSocket connections (frames, headers included). */
  bytesReceived: number;
  /** Bytes written to WebSocket connections (frames, headers included). */
  bytesSent: number;
  /** Closed connections by the close code the application was told. */
  closes: Record<number, number>;
  /** Plain HTTP responses (refused handshakes and `fetch` answers) by status. */
  httpResponses: Record<number, number>;
  /**
   * Failed `accept()` calls by kind: `connection` (one peer's problem, such
   * as a reset before it was accepted; accepted again at once and not
   * reported to the `error` handler), `resources` (out of descriptors,
   * buffers or memory; each followed by a brief pause) and `other`
   * (unexpected; paused like `resources`).
   */
  acceptErrors: { connection: number; resources: number; other: number };
  /** The broker's counters, when the server has a broker that keeps them. */
  broker?: BrokerMetrics;
}

/** One connection's traffic counters, kept on the connection itself. */
export interface TrafficCounters {
  messagesReceived: number;
  messagesSent: number;
  bytesReceived: number;
  bytesSent: number;
}

/** Adds `from`'s traffic counters to `into`. */
export function addTraffic(into: TrafficCounters, from: TrafficCounters): void {
  into.messagesReceived += from.messagesReceived;
  into.messagesSent += from.messagesSent;
  into.bytesReceived += from.bytesReceived;
  into.bytesSent += from.bytesSent;
}

function labelled(
  name: string,
  help: string,
  label: string,
  values: Record<number | string, number>,
): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} counter`];
  for (const [key, value] of Object.entries(values)) {
    lines.push(`${name}{${label}="${key}"} ${value}`);
  }
  return lines.join("\n");
}

function single(name: string, help: string, type: "counter" | "gauge", value: number): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}`;
}

/**
 * The metrics in the Prometheus text exposition format (version 0.0.4),
 * names prefixed `tsunagu_`.
 *
 * @example
 * ```ts
 * import { formatPrometheus, serve } from "@tsunagu/ws";
 * const server = serve({ port: 0, hostname: "127.0.0.1" });
 * const text = formatPrometheus(server.metrics());
 * console.log(text.split("\n").find((line) => line.startsWith("tsunagu_connections ")));
 * // tsunagu_connections 0
 * await server.shutdown();
 * ```
 */
export function formatPrometheus(metrics: ServerMetrics): string {
  return [
    single("tsunagu_connections", "Open WebSocket connections.", "gauge", metrics.connections),
    single(
      "tsunagu_connections_opened_total",
      "WebSocket connections opened.",
      "counter",
      metrics.connectionsOpened,
    ),
    single(
      "tsunagu_tcp_connections_accepted_total",
      "TCP connections accepted (WebSocket and plain HTTP; keep-alive counts once).",
      "counter",
      metrics.connectionsAccepted,
    ),
    single(
      "tsunagu_messages_received_total",
      "Data messages received.",
      "counter",
      metrics.messagesReceived,
    ),
    single(
      "tsunagu_messages_sent_total",
      "Data messages accepted for sending.",
      "counter",
      metrics.messagesSent,
    ),
    single(
      "tsunagu_received_bytes_total",
      "Bytes read from WebSocket connections.",
      "counter",
      metrics.bytesReceived,
    ),
    single(
      "tsunagu_sent_bytes_total",
      "Bytes written to WebSocket connections.",
      "counter",
      metrics.bytesSent,
    ),
    labelled(
      "tsunagu_closes_total",
      "Closed WebSocket connections by close code.",
      "code",
      metrics.closes,
    ),
    labelled(
      "tsunagu_http_responses_total",
      "Plain HTTP responses by status.",
      "status",
      metrics.httpResponses,
    ),
    labelled(
      "tsunagu_accept_errors_total",
      "Failed accepts by kind: connection (retried at once), resources, other (paused).",
      "kind",
      metrics.acceptErrors,
    ),
    ...(metrics.broker === undefined ? [] : [formatBroker(metrics.broker)]),
  ].join("\n") + "\n";
}

function formatBroker(broker: BrokerMetrics): string {
  return [
    single(
      "tsunagu_broker_up",
      "Whether the broker is connected (1) or not (0).",
      "gauge",
      +broker.up,
    ),
    single(
      "tsunagu_broker_messages_out_total",
      "Messages handed to the broker for other servers.",
      "counter",
      broker.messagesOut,
    ),
    single(
      "tsunagu_broker_sent_bytes_total",
      "Payload bytes handed to the broker.",
      "counter",
      broker.bytesOut,
    ),
    single(
      "tsunagu_broker_messages_in_total",
      "Messages from other servers delivered locally.",
      "counter",
      broker.messagesIn,
    ),
    single(
      "tsunagu_broker_received_bytes_total",
      "Payload bytes received from the broker.",
      "counter",
      broker.bytesIn,
    ),
    labelled(
      "tsunagu_broker_dropped_total",
      "Messages the broker did not carry, by cause.",
      "cause",
      broker.dropped,
    ),
    single(
      "tsunagu_broker_reconnects_total",
      "Broker connections lost (or not made) and tried again.",
      "counter",
      broker.reconnects,
    ),
  ].join("\n");
}
