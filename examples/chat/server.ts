/**
 * Broadcast chat: serves the chat page on `/` and relays every message sent
 * on a WebSocket path to everyone connected on the same path (a room).
 *
 *   deno run --allow-net --allow-read examples/chat/server.ts [port] [--hostname HOST]
 *
 * Port defaults to 8080, hostname to 127.0.0.1. From JSR, import with
 * `import { serve } from "jsr:@tsunagu/ws";`
 *
 * Wire format: clients send JSON `{ "name": string, "text": string }`; the
 * server sends everyone in the room `{ "name", "text", "time" }`.
 *
 * @module
 */

import { serve } from "../../mod.ts";

interface ChatMessage {
  name: string;
  text: string;
}

function parseChatMessage(data: string | Uint8Array): ChatMessage | null {
  if (typeof data !== "string") return null;
  try {
    const value = JSON.parse(data);
    if (typeof value?.name !== "string" || typeof value?.text !== "string") return null;
    // Cap sizes so one client cannot make everyone's page huge.
    return { name: value.name.slice(0, 40), text: value.text.slice(0, 2000) };
  } catch {
    return null;
  }
}

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

const page = await Deno.readFile(new URL("./index.html", import.meta.url));

const server = serve<{ room: string }>({
  port,
  hostname,
  onListen: (addr) => console.log(`chat listening on http://${addr.hostname}:${addr.port}/`),
}, {
  upgrade: (request) => ({ data: { room: new URL(request.url).pathname } }),
  open(socket) {
    socket.subscribe(socket.data.room);
  },
  message(socket, data) {
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
