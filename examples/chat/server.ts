/**
 * The echo + chat demo on one port: serves the chat page on `/`, echoes every
 * message sent on `/echo` back to its sender (text as text, binary as binary),
 * and on any other WebSocket path runs chat rooms: the page at `/?room=NAME`
 * joins room NAME over `/chat?room=NAME` (`lobby` without one), and every
 * other path has rooms of its own.
 *
 *   deno run --allow-net examples/chat/server.ts [port] [--hostname HOST]
 *
 * Port defaults to 8080, hostname to 127.0.0.1. From JSR, import with
 * `import { serve } from "jsr:@tsunagu/ws";`
 *
 * The rooms (members, join/leave notices, the last 50 messages of each room
 * for whoever joins), their JSON wire format and the page live in
 * `src/cli/chat.ts`, shared with `tsunagu serve --mode chat`. In short:
 * clients send `{ "type": "join", "name" }` and `{ "name", "text" }`; the
 * server sends everyone in the room `{ "type": "message", "id", "name",
 * "text", "time" }`, notices and the list of members.
 *
 * @module
 */

import { serve } from "../../mod.ts";
import { CHAT_PAGE_HTML as page, ChatRooms } from "../../src/cli/chat.ts";

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

const rooms = new ChatRooms({
  publish: (topic, data) => {
    server.publish(topic, data);
  },
});

const server = serve<{ echo: boolean }>({
  port,
  hostname,
  // Browsers offer compression; messages of 1 KiB and more are then sent
  // compressed (RFC 7692).
  perMessageDeflate: true,
  onListen: (addr) => console.log(`chat listening on http://${addr.hostname}:${addr.port}/`),
}, {
  upgrade: (request) => ({ data: { echo: new URL(request.url).pathname === ECHO_PATH } }),
  open(socket) {
    if (!socket.data.echo) rooms.open(socket);
  },
  message(socket, data) {
    if (socket.data.echo) socket.send(data);
    else rooms.message(socket, data);
  },
  close(socket) {
    if (!socket.data.echo) rooms.close(socket);
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
