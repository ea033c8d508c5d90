/**
 * One server per core on one port: `serveWorkers` runs this file in N
 * workers sharing the port (the kernel spreads connections over them) and
 * their topics, so everyone in a room hears everyone whichever worker they
 * landed on.
 *
 *   deno run --allow-net --allow-read --unstable-net examples/multicore.ts [port] [--hostname HOST] [--workers N]
 *
 * Port defaults to 8080, hostname to 127.0.0.1, workers to one per core.
 * Every WebSocket path is a room. From JSR, import with
 * `import { serveInWorker, serveWorkers } from "jsr:@tsunagu/ws";`
 * (`--allow-read` lets the workers load this file.)
 *
 * @module
 */

import { serveInWorker, serveWorkers } from "../mod.ts";

if ("WorkerGlobalScope" in globalThis) {
  // In a worker: one server, rooms by path; publish reaches every worker's subscribers.
  await serveInWorker<{ room: string }>({}, {
    upgrade: (request) => ({ data: { room: new URL(request.url).pathname } }),
    open: (socket) => void socket.subscribe(socket.data.room),
    message: (socket, data, server) => void server.publish(socket.data.room, data),
  });
} else {
  const args = [...Deno.args];
  const option = (name: string) => {
    const at = args.indexOf(name);
    return at < 0 ? undefined : args.splice(at, 2)[1];
  };
  const hostname = option("--hostname") ?? "127.0.0.1";
  const workers = Number(option("--workers") ?? navigator.hardwareConcurrency);
  const pool = serveWorkers(import.meta.url, { workers, hostname, port: Number(args[0] ?? 8080) });
  await pool.listening;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  console.log(`multicore listening on ws://${host}:${pool.addr.port}/ (${pool.workers} workers)`);
  const stop = () => pool.shutdown();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await pool.finished;
  Deno.exit(0);
}
