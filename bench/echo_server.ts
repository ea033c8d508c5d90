/**
 * wsbench server for tsunagu: what `../shared/wsbench/compare.sh` runs as
 * the project's server.
 *
 *   deno run -A bench/echo_server.ts PORT [--read-mode read|stream] [--read-buffer-size BYTES]
 *                                         [--binary-messages copy|view]
 *
 * - `/`          echo: every message is sent back as received (text stays text)
 * - `/broadcast` every message from any client goes to every client connected
 *                on `/broadcast`, sender included, through a topic and
 *                `server.publish`, so the frame is encoded once per message.
 *
 * Listens on 127.0.0.1 only. The read path can also be chosen with the
 * environment variable `TSUNAGU_READ_MODE` (the flag wins), so both paths can
 * be compared with the same server in one compare.sh run; likewise
 * `TSUNAGU_BINARY_MESSAGES` for `--binary-messages` (the `binaryMessages`
 * option: "copy", the default, or "view"). SIGTERM (what
 * compare.sh sends) and SIGINT shut down gracefully and exit 0.
 *
 * @module
 */

import { type ReadMode, serve, type ServerWebSocket } from "../mod.ts";

interface Args {
  port: number;
  readMode: ReadMode;
  readBufferSize: number | undefined;
  binaryMessages: "copy" | "view";
}

function usage(message: string): never {
  console.error(
    `echo_server: ${message}\n` +
      "usage: echo_server.ts PORT [--read-mode read|stream] [--read-buffer-size BYTES]" +
      " [--binary-messages copy|view]",
  );
  Deno.exit(2);
}

function parseArgs(args: string[]): Args {
  let port: number | undefined;
  let readMode = Deno.env.get("TSUNAGU_READ_MODE") ?? "read";
  let readBufferSize: number | undefined;
  let binaryMessages = Deno.env.get("TSUNAGU_BINARY_MESSAGES") ?? "copy";
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [flag, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = () => inline ?? args[++i] ?? usage(`${flag} needs a value`);
    if (flag === "--read-mode") readMode = value();
    else if (flag === "--read-buffer-size") readBufferSize = Number(value());
    else if (flag === "--binary-messages") binaryMessages = value();
    else if (flag.startsWith("--")) usage(`unknown option ${flag}`);
    else port = Number(arg);
  }
  if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    usage("PORT must be an integer from 0 to 65535");
  }
  if (readMode !== "read" && readMode !== "stream") usage(`bad read mode ${readMode}`);
  if (binaryMessages !== "copy" && binaryMessages !== "view") {
    usage(`bad binary messages mode ${binaryMessages}`);
  }
  return { port, readMode, readBufferSize, binaryMessages };
}

const TOPIC = "broadcast";
// socket.data marks the broadcast sockets, so the per-message branch is one
// property read instead of a URL parse.
const BROADCAST = 1;
const ECHO = 0;

const { port, readMode, readBufferSize, binaryMessages } = parseArgs(Deno.args);

function pathOf(url: string): string {
  const slash = url.indexOf("/", url.indexOf("//") + 2);
  if (slash < 0) return "/";
  const query = url.indexOf("?", slash);
  return query < 0 ? url.slice(slash) : url.slice(slash, query);
}

const server = serve<number>({
  hostname: "127.0.0.1",
  port,
  readMode,
  readBufferSize,
  binaryMessages,
  onListen: ({ hostname, port }) =>
    console.log(
      `tsunagu echo_server (readMode ${readMode}, binaryMessages ${binaryMessages})` +
        ` listening on ${hostname}:${port}`,
    ),
}, {
  open(socket: ServerWebSocket<number>) {
    if (pathOf(socket.url) === "/broadcast") {
      socket.data = BROADCAST;
      socket.subscribe(TOPIC);
    } else {
      socket.data = ECHO;
    }
  },
  message(socket, data) {
    if (socket.data === BROADCAST) server.publish(TOPIC, data);
    else socket.send(data);
  },
  error() {
    // A peer that vanishes mid-write is normal under load; stay quiet.
  },
});

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  // compare.sh SIGKILLs after 3 s: give clients a short grace period only.
  server.shutdown({ timeout: 500 }).finally(() => Deno.exit(0));
}
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
