/**
 * The echo + chat demo on one port: serves the chat page on `/`, echoes every
 * message sent on `/echo` back to its sender (text as text, binary as binary),
 * and on any other WebSocket path relays every message to everyone connected
 * on the same path (a room; the page uses `/chat`).
 *
 *   deno run --allow-net examples/chat/server.ts [port] [--hostname HOST]
 *
 * Port defaults to 8080, hostname to 127.0.0.1. From JSR, import with
 * `import { serve } from "jsr:@tsunagu/ws";`
 *
 * Wire format: clients send JSON `{ "name": string, "text": string }`; the
 * server sends everyone in the room `{ "name", "text", "time" }`. The page and
 * the message check live in `src/cli/chat.ts`, shared with `tsunagu serve --mode
 * chat`.
 *
 * @module
 */

import { serve } from "../../mod.ts";
import { CHAT_PAGE_HTML as page, parseChatMessage } from "../../src/cli/chat.ts";

const ECHO_PATH = "/echo";

let port = 8080;
let hostname = "127.0.0.1";
for (let i = 0; i < Deno.args.length; i++) {
  const arg = Deno.args[i];
  if (arg === "--hostname") hostname = Deno.args[++i] ?? hostname;
  else port = Number(arg);
}
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("chat: usage: server.ts [port] [--hostname HOST]");
  Deno.exit(2);
}

const server = serve<{ room: string }>({
  port,
  hostname,
  // Browsers offer compression; messages of 1 KiB and more are then sent
  // compressed (RFC 7692).
  perMessageDeflate: true,
  onListen: (addr) => console.log(`chat listening on http://${addr.hostname}:${addr.port}/`),
}, {
  upgrade: (request) => ({ data: { room: new URL(request.url).pathname } }),
  open(socket) {
    if (socket.data.room !== ECHO_PATH) socket.subscribe(socket.data.room);
  },
  message(socket, data) {
    if (socket.data.room === ECHO_PATH) {
      socket.send(data);
      return;
    }
    const message = parseChatMessage(data);
    if (message === null) {
      socket.close(1003, "expected JSON {name, text}");
      return;
    }
    server.publish(socket.data.room, JSON.stringify({ ...message, time: Date.now() }));
  },
  fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/" || pathname === "/index.html") {
      return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
    }
    return new Response("not found\n", { status: 404 });
  },
});

Deno.addSignalListener("SIGINT", () => server.shutdown());
Deno.addSignalListener("SIGTERM", () => server.shutdown());
await server.finished;
Deno.exit(0);
