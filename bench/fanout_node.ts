/**
 * One server node for bench/broker_fanout.ts, in its own process so that its
 * CPU (from /proc/PID/stat) and its V8 profile are the server's alone.
 *
 *   deno run -A bench/fanout_node.ts PORT [--redis URL] [--node-id ID]
 *
 * - `/broadcast`: the socket subscribes to one topic.
 * - any path: every message from the socket is `server.publish`ed to that
 *   topic, so a publisher on another path (broker_fanout uses `/publish`)
 *   is not among the subscribers, while wsbench's loadgen (which publishes
 *   on `/broadcast`) works as against bench/echo_server.ts.
 * - `--redis URL`: the library's RedisBroker carries the topic to the other
 *   nodes.
 *
 * Prints `ready PORT` on stdout once it listens (and, with a broker, once the
 * broker is up); SIGTERM and SIGINT shut down gracefully and exit 0, which
 * also lets `deno run --cpu-prof` write its profile.
 *
 * @module
 */

import { RedisBroker, serve, type ServerWebSocket } from "../mod.ts";

const TOPIC = "room";

function usage(message: string): never {
  console.error(
    `fanout_node: ${message}\nusage: fanout_node.ts PORT [--redis URL] [--node-id ID]`,
  );
  Deno.exit(2);
}

let port: number | undefined;
let redisUrl: string | undefined;
let nodeId: string | undefined;
for (let i = 0; i < Deno.args.length; i++) {
  const arg = Deno.args[i];
  if (arg === "--redis") redisUrl = Deno.args[++i] ?? usage("--redis needs a URL");
  else if (arg === "--node-id") nodeId = Deno.args[++i] ?? usage("--node-id needs a value");
  else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
  else port = Number(arg);
}
if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
  usage("PORT must be an integer from 0 to 65535");
}

const broker = redisUrl === undefined ? undefined : new RedisBroker({
  url: redisUrl,
  nodeId,
  // The benchmark checks readiness itself; a reconnect would show in stderr.
  onStateChange: (up, reason) => {
    if (!up) console.error(`fanout_node: broker down: ${reason}`);
  },
});

// Whether the socket is a subscriber, decided once at open: one property read
// per message instead of a URL parse.
const server = serve<boolean>({
  hostname: "127.0.0.1",
  port,
  broker,
  onListen: () => {}, // quiet: the benchmark reads `ready` from stdout
}, {
  open(socket: ServerWebSocket<boolean>) {
    const url = socket.url;
    const slash = url.indexOf("/", url.indexOf("//") + 2);
    socket.data = slash >= 0 && url.startsWith("/broadcast", slash);
    if (socket.data) socket.subscribe(TOPIC);
  },
  message(_socket, data) {
    server.publish(TOPIC, data);
  },
  error() {
    // A client that goes away mid-write at the end of a run is normal.
  },
});

// Ready once listening and, with a broker, once it is connected (bounded).
{
  const deadline = Date.now() + 10_000;
  while (broker !== undefined && !broker.up) {
    if (Date.now() > deadline) {
      console.error("fanout_node: the broker did not come up within 10 s");
      Deno.exit(1);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  console.log(`ready ${server.addr.port}`);
}

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  server.shutdown({ timeout: 500 }).finally(() => Deno.exit(0));
}
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
