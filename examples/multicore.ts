/**
 * One server per core on one port: each worker runs `serve` with
 * `reusePort`, the kernel spreads connections over them, and a
 * BroadcastChannel carries room messages between workers, so everyone in a
 * room hears everyone whichever worker they landed on.
 *
 *   deno run --allow-net --allow-read --unstable-net examples/multicore.ts [port] [--hostname HOST] [--workers N]
 *
 * Port defaults to 8080, hostname to 127.0.0.1, workers to the number of
 * cores (at least 2). Every
 * WebSocket path is a room: each message is sent to everyone connected on
 * the same path. From JSR, import with `import { serve } from "jsr:@tsunagu/ws";`
 *
 * (`--allow-read` lets the workers load this file: it is both the main
 * program and, with `?worker`, the workers' code.)
 *
 * @module
 */

import { serve } from "../mod.ts";

interface RoomMessage {
  room: string;
  data: string | Uint8Array;
}

/** The worker side: one server on the shared port, rooms relayed through a BroadcastChannel. */
function runWorker(port: number, hostname: string): void {
  const scope = self as unknown as Worker;
  const relay = new BroadcastChannel("tsunagu-multicore-rooms");
  const server = serve<{ room: string }>({ port, hostname, reusePort: true }, {
    upgrade: (request) => ({ data: { room: new URL(request.url).pathname } }),
    open: (socket) => void socket.subscribe(socket.data.room),
    message(socket, data, server) {
      server.publish(socket.data.room, data);
      relay.postMessage({ room: socket.data.room, data } satisfies RoomMessage);
    },
  });
  // Messages from the other workers' clients, for this worker's clients.
  relay.onmessage = (event: MessageEvent<RoomMessage>) => {
    server.publish(event.data.room, event.data.data);
  };
  scope.onmessage = async () => {
    relay.close();
    await server.shutdown();
    scope.postMessage({ stopped: true });
  };
  scope.postMessage({ port: server.addr.port });
}

/** The main side: starts the workers (the first picks the port), stops them on a signal. */
async function runMain(): Promise<void> {
  let port = 8080;
  let hostname = "127.0.0.1";
  let count = Math.max(2, navigator.hardwareConcurrency);
  for (let i = 0; i < Deno.args.length; i++) {
    if (Deno.args[i] === "--workers") count = Number(Deno.args[++i]);
    else if (Deno.args[i] === "--hostname") hostname = Deno.args[++i] ?? hostname;
    else port = Number(Deno.args[i]);
  }
  if (
    !Number.isInteger(port) || port < 0 || port > 65535 || !Number.isInteger(count) || count < 1
  ) {
    console.error("multicore: usage: multicore.ts [port] [--hostname HOST] [--workers N]");
    Deno.exit(2);
  }
  const workers: Worker[] = [];
  const start = (port: number) =>
    new Promise<number>((resolve) => {
      const url = new URL("./multicore.ts", import.meta.url);
      url.search = new URLSearchParams({ port: String(port), hostname }).toString();
      const worker = new Worker(url.href, { type: "module" });
      worker.onmessage = (event) => resolve(event.data.port);
      workers.push(worker);
    });
  // The first worker binds the port (0: any free one); the others join it.
  port = await start(port);
  await Promise.all(Array.from({ length: count - 1 }, () => start(port)));
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  console.log(`multicore listening on ws://${host}:${port}/ (${count} workers)`);

  const stopped = new Promise<void>((resolve) => {
    const stop = async () => {
      await Promise.all(workers.map((worker) =>
        new Promise((done) => {
          worker.onmessage = done;
          worker.postMessage("stop");
        })
      ));
      resolve();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
  await stopped;
  for (const worker of workers) worker.terminate();
  Deno.exit(0);
}

// The same file is the workers' code: they load it with their settings in the query.
const settings = new URL(import.meta.url).searchParams;
if (settings.has("port")) runWorker(Number(settings.get("port")), settings.get("hostname")!);
else await runMain();
