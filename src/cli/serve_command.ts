/**
 * `tsunagu serve`: starts the server the flags describe (echo, broadcast or
 * chat; static files, metrics and health on plain HTTP; TLS), logs, and
 * shuts down gracefully on SIGINT/SIGTERM.
 *
 * @module
 */

import { CHAT_PAGE_HTML, CHAT_SOCKET_PATH, ChatRooms } from "./chat.ts";
import { type CliIo, pathError, permissionError, StartError } from "./io.ts";
import { formatAddr, Logger } from "./logger.ts";
import type { ServeConfig } from "./serve_flags.ts";
import { createStaticHandler, type StaticHandler } from "./static_files.ts";
import { VERSION } from "./version.ts";
import { formatPrometheus } from "../server/metrics.ts";
import { defaultMaxConnections, type Handlers, type ServeOptions } from "../server/options.ts";
import { serve, type Server } from "../server/server.ts";
import { serveWorkers } from "../server/workers.ts";
import { openRedisBroker } from "./redis_option.ts";
import { logRequests } from "./request_log.ts";
import type { RedisBroker } from "../server/redis_broker.ts";

/** How long a graceful shutdown waits for clients' closing handshakes, in ms. */
const SHUTDOWN_TIMEOUT = 5_000;
/** Reads a PEM file named by `flag`; a clear StartError otherwise. */
export async function readPem(path: string, flag: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw pathError(error, `cannot read ${flag} file ${JSON.stringify(path)}`, "no such file");
  }
}

/** Opens the --static directory; a clear StartError otherwise. */
export async function openStatic(dir: string): Promise<StaticHandler> {
  try {
    return await createStaticHandler(dir);
  } catch (error) {
    throw pathError(error, `cannot serve --static ${JSON.stringify(dir)}`, "no such directory");
  }
}

/** What the server keeps per connection, for routing and logging. */
export interface Peer {
  /** The request path: the room in broadcast and chat modes. */
  path: string;
  /** The client's `host:port`. */
  peer: string;
}

function textResponse(status: number, message: string, headers: HeadersInit = {}): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/** The plain-HTTP handler: health, metrics, the chat page and/or static files, or none. */
function httpHandler(
  config: ServeConfig,
  files: StaticHandler | undefined,
  server: () => Server<Peer>,
  broker?: RedisBroker,
): Handlers<Peer>["fetch"] {
  const { healthPath, metricsPath } = config;
  if (
    config.mode !== "chat" && files === undefined && healthPath === undefined &&
    metricsPath === undefined
  ) {
    return undefined;
  }
  return (request) => {
    const readOnly = request.method === "GET" || request.method === "HEAD";
    const { pathname } = new URL(request.url);
    if (pathname === healthPath || pathname === metricsPath) {
      if (!readOnly) return textResponse(405, "method not allowed", { allow: "GET, HEAD" });
      if (pathname === healthPath) {
        // Still 200: local rooms work without Redis, so the node stays in service.
        return textResponse(200, broker !== undefined && !broker.up ? "ok (redis down)" : "ok");
      }
      return new Response(formatPrometheus(server().metrics()), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    if (config.mode === "chat") {
      if (pathname === "/" || pathname === "/index.html") {
        if (!readOnly) return textResponse(405, "method not allowed", { allow: "GET, HEAD" });
        return new Response(CHAT_PAGE_HTML, {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      }
    }
    if (files !== undefined) return files(request);
    return readOnly
      ? textResponse(404, "not found")
      : textResponse(405, "method not allowed", { allow: "GET, HEAD" });
  };
}

/** The handlers of `tsunagu serve` for `config` (the same in one process or in each worker). */
export function serveHandlers(
  config: ServeConfig,
  logger: Logger,
  files: StaticHandler | undefined,
  server: () => Server<Peer>,
  broker?: RedisBroker,
): Handlers<Peer> {
  const { mode } = config;
  const rooms = mode === "chat"
    ? new ChatRooms({ publish: (topic, data) => void server().publish(topic, data) })
    : undefined;
  return {
    upgrade(request, info) {
      const path = new URL(request.url).pathname;
      const peer = formatAddr(info.remoteAddr);
      if (config.path !== undefined && path !== config.path) {
        logger.connection("reject", `reject ${peer} ${path} 404`, { peer, path, status: 404 });
        return textResponse(404, "not found");
      }
      const origin = request.headers.get("origin");
      if (
        config.origins.length > 0 && origin !== null &&
        !config.origins.includes(origin.toLowerCase())
      ) {
        logger.connection("reject", `reject ${peer} ${path} 403 origin ${origin}`, {
          peer,
          path,
          status: 403,
          origin,
        });
        return textResponse(403, "origin not allowed");
      }
      // The client's order of preference, among those we speak.
      const protocol = info.protocols.find((offered) => config.protocols.includes(offered));
      return { protocol, data: { path, peer } };
    },
    open(socket) {
      const { path, peer } = socket.data;
      logger.connection("open", `open ${peer} ${path}`, { peer, path });
      if (rooms !== undefined) rooms.open(socket);
      else if (mode !== "echo") socket.subscribe(path);
    },
    message(socket, data) {
      if (mode === "echo") {
        socket.send(data);
      } else if (mode === "broadcast") {
        server().publish(socket.data.path, data);
      } else {
        rooms?.message(socket, data);
      }
    },
    close(socket, code, reason) {
      rooms?.close(socket);
      const { path, peer } = socket.data;
      const why = reason === "" ? "" : ` ${JSON.stringify(reason)}`;
      logger.connection("close", `close ${peer} ${path} ${code}${why}`, {
        peer,
        path,
        code,
        reason,
      });
    },
    error(error, socket) {
      const message = error instanceof Error ? error.message : String(error);
      logger.error("error", `handler failed: ${message}`, {
        error: message,
        peer: socket?.data.peer,
        path: socket?.data.path,
      });
    },
    // One log line per plain HTTP request, unless -q.
    fetch: logRequests(httpHandler(config, files, server, broker), logger),
  };
}

/** The `serve()` options `config` asks for. */
export function serveOptions(
  config: ServeConfig,
  tls: { cert: string; key: string } | undefined,
): ServeOptions {
  return {
    port: config.port,
    hostname: config.hostname,
    ...tls,
    maxPayload: config.maxPayload,
    maxConnections: config.maxConnections,
    idleTimeout: config.idleTimeout,
    perMessageDeflate: config.deflate,
    reusePort: config.reusePort,
  };
}

function startServer(
  config: ServeConfig,
  tls: { cert: string; key: string } | undefined,
  serverHandlers: Handlers<Peer>,
  onListen: CliIo["onListen"],
  broker?: RedisBroker,
): Server<Peer> {
  try {
    return serve<Peer>({ ...serveOptions(config, tls), broker, onListen }, serverHandlers);
  } catch (error) {
    throw listenError(error, config, tls !== undefined);
  }
}

/** A failure to listen, as the one line and exit code the user sees. */
export function listenError(error: unknown, config: ServeConfig, tls: boolean): StartError {
  const where = `${config.hostname}:${config.port}`;
  {
    if (error instanceof Deno.errors.NotCapable) return permissionError(error, "--allow-net");
    const message = (error as Error).message;
    if (/--unstable-net/.test(message)) {
      return new StartError(
        "--reuse-port and --workers need deno's --unstable-net flag (deno run --unstable-net …)",
        2,
      );
    }
    if (error instanceof Deno.errors.AddrInUse) {
      return new StartError(`cannot listen on ${where}: address already in use`, 1);
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      return new StartError(
        `cannot listen on ${where}: the operating system refused (ports below 1024 usually ` +
          `need privileges; try a higher --port)`,
        1,
      );
    }
    if (
      tls &&
      (error instanceof Deno.errors.InvalidData || /\b(key|cert)/i.test(message))
    ) {
      return new StartError(`invalid --cert or --key: ${message}`, 2);
    }
    if (error instanceof Deno.errors.AddrNotAvailable || /lookup address/.test(message)) {
      return new StartError(`cannot listen on ${where} (check --hostname): ${message}`, 2);
    }
    return new StartError(`cannot listen on ${where}: ${message}`, 1);
  }
}

/** The URLs to show at start-up: WebSocket first, then HTTP when pages are served. */
function listeningUrls(addr: Deno.NetAddr, tls: boolean, config: ServeConfig, httpServed: boolean) {
  const { hostname, port } = addr;
  const hosts = [formatAddr(addr)];
  if (hostname === "0.0.0.0" || hostname === "::") hosts.push(`localhost:${port}`);
  const path = config.path ?? (config.mode === "chat" ? CHAT_SOCKET_PATH : "/");
  return {
    ws: hosts.map((host) => `${tls ? "wss" : "ws"}://${host}${path}`),
    http: httpServed ? hosts.map((host) => `${tls ? "https" : "http"}://${host}/`) : [],
  };
}

/** Installs the shutdown triggers; returns their removal. */
function onStop(stop: (why: string) => void, signal: AbortSignal | undefined): () => void {
  if (signal !== undefined) {
    const listener = () => stop("aborted");
    signal.addEventListener("abort", listener);
    return () => signal.removeEventListener("abort", listener);
  }
  const names: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM"];
  const installed: [Deno.Signal, () => void][] = [];
  for (const name of names) {
    const listener = () => stop(name);
    Deno.addSignalListener(name, listener);
    installed.push([name, listener]);
  }
  return () => {
    for (const [name, listener] of installed) Deno.removeSignalListener(name, listener);
  };
}

/** Runs `tsunagu serve` until the server has shut down; resolves with the exit code. */
export async function runServe(
  config: ServeConfig,
  io: CliIo,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const tls = config.certFile !== undefined && config.keyFile !== undefined
    ? {
      cert: await readPem(config.certFile, "--cert"),
      key: await readPem(config.keyFile, "--key"),
    }
    : undefined;
  const files = config.staticDir !== undefined ? await openStatic(config.staticDir) : undefined;
  const logger = new Logger({ format: config.logFormat, quiet: config.quiet, out, err });
  const broker = await openRedisBroker(config, logger);
  let running: Server<Peer> | undefined;
  const serverHandlers = serveHandlers(config, logger, files, () => running!, broker);
  // One server here, or one per worker on a shared port (--workers); with
  // --redis each worker opens its own connection to Redis.
  const server: Pick<Server<Peer>, "addr" | "finished" | "shutdown"> = config.workers > 1
    ? await startWorkers(config, io.onListen)
    : running = startServer(config, tls, serverHandlers, io.onListen, broker);

  const urls = listeningUrls(
    server.addr,
    tls !== undefined,
    config,
    serverHandlers.fetch !== undefined,
  );
  const pathNote = config.path === undefined ? "" : `, upgrades on ${config.path} only`;
  const workersNote = config.workers > 1 ? `, ${config.workers} workers` : "";
  // As each worker chooses it (serveInWorker shares the default out).
  const max = config.workers > 1
    ? config.maxConnections ?? Math.max(1, Math.floor(defaultMaxConnections() / config.workers))
    : running!.maxConnections;
  const perWorker = config.workers > 1 ? " per worker" : "";
  logger.info(
    "listening",
    `tsunagu ${VERSION} listening on ${urls.ws.join(" ")} ` +
      `(mode ${config.mode}${pathNote}${workersNote}), ` +
      (max === Infinity ? "no connection limit" : `at most ${max} connections${perWorker}`),
    {
      version: VERSION,
      urls: urls.ws,
      mode: config.mode,
      path: config.path,
      workers: config.workers,
      maxConnections: max,
    },
  );
  if (urls.http.length > 0) {
    const what = [
      config.mode === "chat" ? "chat page" : "",
      files ? "static files" : "",
      config.healthPath === undefined ? "" : `health on ${config.healthPath}`,
      config.metricsPath === undefined ? "" : `metrics on ${config.metricsPath}`,
    ].filter(Boolean).join(", ");
    logger.info("http", `serving ${what} on ${urls.http.join(" ")}`, { urls: urls.http });
  }

  let forced: () => void = () => {};
  const forcedExit = new Promise<number>((resolve) => forced = () => resolve(1));
  let stopping = false;
  const stop = (why: string) => {
    if (stopping) {
      logger.info("forced", `${why} again: exiting without waiting for clients`, { signal: why });
      forced();
      return;
    }
    stopping = true;
    logger.info("shutdown", `${why}: shutting down, closing clients with 1001`, { signal: why });
    server.shutdown({ timeout: SHUTDOWN_TIMEOUT });
  };
  const removeTriggers = onStop(stop, io.signal);
  if (io.signal?.aborted) stop("aborted");
  try {
    const code = await Promise.race([server.finished.then(() => 0), forcedExit]);
    if (code === 0) logger.info("stopped", "stopped");
    return code;
  } finally {
    removeTriggers();
  }
}

/**
 * Starts `config.workers` workers sharing the port, each running
 * `serve_worker.ts` (the same handlers as one process) with the pool's
 * in-process broker, so rooms span every worker.
 */
async function startWorkers(
  config: ServeConfig,
  onListen: CliIo["onListen"],
): Promise<Pick<Server<Peer>, "addr" | "finished" | "shutdown">> {
  const pool = serveWorkers(new URL("./serve_worker.ts", import.meta.url), {
    workers: config.workers,
    port: config.port,
    hostname: config.hostname,
    data: config,
    onListen,
    onWorkerError: (error, index) =>
      console.error(`tsunagu: worker ${index} failed and is being replaced: ${error}`),
  });
  try {
    await pool.listening;
  } catch (error) {
    throw listenError(error, config, config.certFile !== undefined);
  }
  return pool;
}
