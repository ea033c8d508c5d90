/**
 * What each worker of `tsunagu serve --workers N` runs: the same server as
 * one process (`serve_command.ts` builds its options and handlers from the
 * same config), on the pool's shared port, with the pool's broker.
 *
 * @module
 */

import { Logger } from "./logger.ts";
import { openRedisBroker } from "./redis_option.ts";
import { openStatic, type Peer, readPem, serveHandlers, serveOptions } from "./serve_command.ts";
import type { ServeConfig } from "./serve_flags.ts";
import type { Server } from "../server/server.ts";
import { serveInWorker, workerInit } from "../server/workers.ts";

const config = (await workerInit()).data as ServeConfig;
const tls = config.certFile !== undefined && config.keyFile !== undefined
  ? { cert: await readPem(config.certFile, "--cert"), key: await readPem(config.keyFile, "--key") }
  : undefined;
const files = config.staticDir !== undefined ? await openStatic(config.staticDir) : undefined;
const logger = new Logger({
  format: config.logFormat,
  quiet: config.quiet,
  out: (line) => console.log(line),
  err: (line) => console.error(line),
});
const { port: _port, hostname: _hostname, reusePort: _reusePort, ...options } = serveOptions(
  config,
  tls,
);
// With --redis, each worker is a node of its own on Redis: rooms span the
// workers and the machines alike. Without it, the pool's channel broker.
const broker = await openRedisBroker(config, logger);
// The handlers reach the server only once it runs (metrics on --metrics).
const server: Server<Peer> = await serveInWorker<Peer>(
  { ...options, broker },
  serveHandlers(config, logger, files, () => server, broker),
);
