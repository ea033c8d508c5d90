/**
 * Echo server: every text message comes back as text, every binary message
 * as binary, on any path.
 *
 *   deno run -A examples/echo.ts [port] [--hostname HOST]
 *
 * Port defaults to 8080, hostname to 127.0.0.1. From JSR, import with
 * `import { serve } from "jsr:@tsunagu/ws";`
 *
 * @module
 */

import { serve } from "../mod.ts";

function parseArgs(args: string[]): { port: number; hostname: string } {
  let port = 8080;
  let hostname = "127.0.0.1";
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--hostname") hostname = args[++i] ?? hostname;
    else if (args[i].startsWith("--hostname=")) hostname = args[i].slice("--hostname=".length);
    else port = Number(args[i]);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(
      `echo: invalid port ${JSON.stringify(args[0])}; usage: echo.ts [port] [--hostname HOST]`,
    );
    Deno.exit(2);
  }
  return { port, hostname };
}

const { port, hostname } = parseArgs(Deno.args);
const server = serve({
  port,
  hostname,
  onListen: (addr) => console.log(`echo server listening on ws://${addr.hostname}:${addr.port}`),
}, {
  message(socket, data) {
    socket.send(data);
  },
});

Deno.addSignalListener("SIGINT", () => server.shutdown());
Deno.addSignalListener("SIGTERM", () => server.shutdown());
await server.finished;
Deno.exit(0);
