/**
 * `tsunagu`: the command-line WebSocket server.
 *
 * ```sh
 * deno run --allow-net --allow-read jsr:@tsunagu/ws/cli serve --port 9000 --mode chat
 * ```
 *
 * `tsunagu serve` runs an echo, broadcast or chat server, optionally with
 * static files for plain HTTP requests and TLS (`--cert`/`--key`: wss://).
 * Run `tsunagu --help` for every flag. Errors in the command line print one
 * line and a usage hint to stderr and exit with 2; a missing Deno permission
 * or a port in use exits with 1; SIGINT/SIGTERM close every client with 1001
 * and exit with 0.
 *
 * The argument parser and the runner are exported for embedding and tests.
 *
 * @example Run the CLI in-process; aborting the signal shuts it down
 * ```ts
 * import { runCli } from "@tsunagu/ws/cli";
 * const stop = new AbortController();
 * const code = await runCli(["serve", "--port", "0", "--hostname", "127.0.0.1", "--quiet"], {
 *   signal: stop.signal,
 *   onListen(addr) {
 *     console.log("listening on port", addr.port);
 *     stop.abort(); // as SIGINT/SIGTERM would: close clients with 1001, then resolve
 *   },
 * });
 * console.log(code); // 0
 * ```
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };
import { CHAT_PAGE_HTML, CHAT_SOCKET_PATH, parseChatMessage } from "./chat.ts";
import { type HelpTopic, parseCliArgs, type ServeConfig, usage, usageHint } from "./cli_args.ts";
import { formatAddr, Logger } from "./logger.ts";
import { type ClientWebSocket, connect } from "./client.ts";
import { formatReport, runLoad } from "./load_tool.ts";
import { formatPrometheus } from "./metrics.ts";
import type { Handlers } from "./options.ts";
import { serve, type Server } from "./server.ts";
import { createStaticHandler, type StaticHandler } from "./static_files.ts";

export {
  type CliCommand,
  type CliError,
  type HelpTopic,
  type LogFormat,
  type Mode,
  parseCliArgs,
  parseDuration,
  parseSize,
  type ServeConfig,
  usage,
  usageHint,
} from "./cli_args.ts";
export type { LoadOptions } from "./load_tool.ts";

/**
 * The package version, from `deno.json`.
 *
 * @example
 * ```ts
 * import { VERSION } from "@tsunagu/ws/cli";
 * console.log(VERSION); // e.g. "0.1.0"
 * ```
 */
export const VERSION: string = denoJson.version;

/** How long a graceful shutdown waits for clients' closing handshakes, in ms. */
const SHUTDOWN_TIMEOUT = 5_000;

/**
 * Where {@linkcode runCli} writes and how it is stopped. Every field is
 * optional; the defaults are the console and the process's SIGINT/SIGTERM.
 *
 * @example
 * ```ts
 * import type { CliIo } from "@tsunagu/ws/cli";
 * const lines: string[] = [];
 * const io: CliIo = { stdout: (line) => lines.push(line), stderr: (line) => lines.push(line) };
 * ```
 */
export interface CliIo {
  /** Writes one line of output: help, version, log lines. Default `console.log`. */
  stdout?: (line: string) => void;
  /** Writes one line of error output. Default `console.error`. */
  stderr?: (line: string) => void;
  /**
   * Aborting it shuts the server down as SIGINT/SIGTERM would. When given, no
   * process signal listeners are installed.
   */
  signal?: AbortSignal;
  /** Called once the server listens, with its address. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** What `connect` sends, line by line. Default: the process's standard input. */
  stdin?: ReadableStream<Uint8Array>;
}

/** A start-up failure with its exit code: 2 for the user's input, 1 otherwise. */
class StartError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2) {
    super(message);
  }
}

/** Turns Deno's NotCapable message into one naming the flag to add. */
function permissionError(error: Error, flag: string): StartError {
  const match = /^Requires (.+?), run again with the (--allow-[a-z-]+) flag/.exec(error.message);
  const what = match ? match[1] : error.message;
  return new StartError(
    `missing permission: ${what}; run again with ${match?.[2] ?? flag}` +
      ` (e.g. deno run --allow-net --allow-read …)`,
    1,
  );
}

/** A start-up error for a file or directory named on the command line. */
function pathError(error: unknown, subject: string, missing: string): StartError {
  if (error instanceof Deno.errors.NotCapable) return permissionError(error, "--allow-read");
  const reason = error instanceof Deno.errors.NotFound
    ? missing
    : error instanceof Deno.errors.PermissionDenied
    ? "permission denied by the operating system"
    : error instanceof Deno.errors.IsADirectory
    ? "is a directory"
    : error instanceof Deno.errors.NotADirectory
    ? "not a directory"
    : (error as Error).message;
  return new StartError(`${subject}: ${reason}`, 2);
}

async function readPem(path: string, flag: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw pathError(error, `cannot read ${flag} file ${JSON.stringify(path)}`, "no such file");
  }
}

async function openStatic(dir: string): Promise<StaticHandler> {
  try {
    return await createStaticHandler(dir);
  } catch (error) {
    throw pathError(error, `cannot serve --static ${JSON.stringify(dir)}`, "no such directory");
  }
}

/** What the server keeps per connection, for routing and logging. */
interface Peer {
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
      if (pathname === healthPath) return textResponse(200, "ok");
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

function handlers(
  config: ServeConfig,
  logger: Logger,
  files: StaticHandler | undefined,
  server: () => Server<Peer>,
): Handlers<Peer> {
  const { mode } = config;
  return {
    upgrade(request, info) {
      const path = new URL(request.url).pathname;
      const peer = formatAddr(info.remoteAddr);
      if (config.path !== undefined && path !== config.path) {
        logger.connection("reject", `reject ${peer} ${path} 404`, { peer, path, status: 404 });
        return textResponse(404, "not found");
      }
      return { data: { path, peer } };
    },
    open(socket) {
      const { path, peer } = socket.data;
      logger.connection("open", `open ${peer} ${path}`, { peer, path });
      if (mode !== "echo") socket.subscribe(path);
    },
    message(socket, data) {
      if (mode === "echo") {
        socket.send(data);
      } else if (mode === "broadcast") {
        server().publish(socket.data.path, data);
      } else {
        const message = parseChatMessage(data);
        if (message === null) {
          socket.close(1003, "expected JSON {name, text}");
          return;
        }
        server().publish(socket.data.path, JSON.stringify({ ...message, time: Date.now() }));
      }
    },
    close(socket, code, reason) {
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
    fetch: httpHandler(config, files, server),
  };
}

function startServer(
  config: ServeConfig,
  tls: { cert: string; key: string } | undefined,
  serverHandlers: Handlers<Peer>,
  onListen: CliIo["onListen"],
): Server<Peer> {
  const where = `${config.hostname}:${config.port}`;
  try {
    return serve<Peer>({
      port: config.port,
      hostname: config.hostname,
      ...tls,
      maxPayload: config.maxPayload,
      maxConnections: config.maxConnections,
      idleTimeout: config.idleTimeout,
      perMessageDeflate: config.deflate,
      reusePort: config.reusePort,
      onListen,
    }, serverHandlers);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw permissionError(error, "--allow-net");
    const message = (error as Error).message;
    if (/--unstable-net/.test(message)) {
      throw new StartError(
        "--reuse-port needs deno's --unstable-net flag (deno run --unstable-net …)",
        2,
      );
    }
    if (error instanceof Deno.errors.AddrInUse) {
      throw new StartError(`cannot listen on ${where}: address already in use`, 1);
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new StartError(
        `cannot listen on ${where}: the operating system refused (ports below 1024 usually ` +
          `need privileges; try a higher --port)`,
        1,
      );
    }
    if (
      tls !== undefined &&
      (error instanceof Deno.errors.InvalidData || /\b(key|cert)/i.test(message))
    ) {
      throw new StartError(`invalid --cert or --key: ${message}`, 2);
    }
    if (error instanceof Deno.errors.AddrNotAvailable || /lookup address/.test(message)) {
      throw new StartError(`cannot listen on ${where} (check --hostname): ${message}`, 2);
    }
    throw new StartError(`cannot listen on ${where}: ${message}`, 1);
  }
}

/** The URLs to show at start-up: WebSocket first, then HTTP when pages are served. */
function listeningUrls(server: Server<Peer>, config: ServeConfig, httpServed: boolean) {
  const { hostname, port } = server.addr;
  const hosts = [formatAddr(server.addr)];
  if (hostname === "0.0.0.0" || hostname === "::") hosts.push(`localhost:${port}`);
  const tls = server.url.startsWith("wss:");
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

async function runServe(
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
  let running: Server<Peer> | undefined;
  const serverHandlers = handlers(config, logger, files, () => running!);
  const server = running = startServer(config, tls, serverHandlers, io.onListen);

  const urls = listeningUrls(server, config, serverHandlers.fetch !== undefined);
  const pathNote = config.path === undefined ? "" : `, upgrades on ${config.path} only`;
  logger.info(
    "listening",
    `tsunagu ${VERSION} listening on ${urls.ws.join(" ")} (mode ${config.mode}${pathNote})`,
    { version: VERSION, urls: urls.ws, mode: config.mode, path: config.path },
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
 * Runs `tsunagu` with `args` (without the program name) and resolves with
 * the exit code: 0 on success (including after a graceful shutdown), 1 for a
 * runtime failure (missing permission, port in use), 2 for an invalid command
 * line or an unreadable `--cert`/`--key`/`--static`. User mistakes print one
 * line plus a usage hint to stderr, never a stack trace.
 *
 * `serve` resolves only once the server has shut down: on SIGINT/SIGTERM, or
 * when `io.signal` is aborted.
 *
 * @example
 * ```ts
 * import { runCli } from "@tsunagu/ws/cli";
 * const lines: string[] = [];
 * const code = await runCli(["--version"], { stdout: (line) => lines.push(line) });
 * console.log(code, lines[0]); // 0 "tsunagu 0.1.0"
 * ```
 */
export async function runCli(args: readonly string[], io: CliIo = {}): Promise<number> {
  const out = io.stdout ?? ((line: string) => console.log(line));
  const err = io.stderr ?? ((line: string) => console.error(line));
  const fail = (message: string, code: number, topic?: HelpTopic) => {
    err(`tsunagu: ${message}`);
    if (topic !== undefined) err(usageHint(topic));
    return code;
  };
  const parsed = parseCliArgs(args);
  if ("error" in parsed) return fail(parsed.error, 2, parsed.topic);
  switch (parsed.command) {
    case "help":
      out(usage(parsed.topic, VERSION).trimEnd());
      return 0;
    case "version":
      out(`tsunagu ${VERSION}`);
      return 0;
    case "connect":
      return await runConnect(parsed, io, out, err);
    case "load": {
      const report = await runLoad(parsed.options);
      out(formatReport(parsed.options, report));
      const clean = report.errors === 0 && report.failedConnections === 0 &&
        report.closedEarly === 0;
      return clean && report.messages > 0 ? 0 : 1;
    }
    case "serve":
      try {
        return await runServe(parsed.config, io, out, err);
      } catch (error) {
        if (!(error instanceof StartError)) throw error;
        return fail(error.message, error.exitCode, error.exitCode === 2 ? "serve" : undefined);
      }
  }
}

/**
 * `tsunagu connect URL`: a client on the terminal. Lines of stdin go out as
 * text messages; messages received are printed to stdout, one per line;
 * status lines go to stderr. At the end of stdin, once the server has been
 * quiet for `wait` ms (replies still on their way would be dropped after
 * our close frame, as the standard WebSocket drops them in CLOSING), the
 * connection is closed with 1000. Exit 0 after a clean close, 1 otherwise.
 */
async function runConnect(
  { url, protocols, wait, deflate }: {
    url: string;
    protocols: string[];
    wait: number;
    deflate: boolean;
  },
  io: CliIo,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  let socket: ClientWebSocket;
  try {
    socket = await connect(url, { protocols, perMessageDeflate: deflate });
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      err(`tsunagu: ${permissionError(error, "--allow-net").message}`);
      return 1;
    }
    err(`tsunagu: cannot connect to ${url}: ${(error as Error).message}`);
    return 1;
  }
  const agreed = [
    socket.protocol ? `subprotocol ${socket.protocol}` : "",
    socket.extensions ? socket.extensions.split(";")[0] : "",
  ].filter(Boolean).join(", ");
  err(`connected to ${url}${agreed ? ` (${agreed})` : ""}`);
  let lastHeard = Date.now();
  const printing = (async () => {
    for await (const message of socket) {
      lastHeard = Date.now();
      out(typeof message === "string" ? message : `<binary ${message.length} bytes>`);
    }
  })();
  const sending = (async () => {
    const input = (io.stdin ?? Deno.stdin.readable).pipeThrough(new TextDecoderStream());
    let pending = "";
    for await (const chunk of input) {
      if (socket.readyState !== 1) break;
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        socket.send(pending.slice(0, newline).replace(/\r$/, ""));
        pending = pending.slice(newline + 1);
      }
      // A long input to a slow server: wait for the queue rather than fill it.
      if (socket.bufferedAmount > 1024 * 1024) await socket.drained();
    }
    if (pending !== "" && socket.readyState === 1) socket.send(pending);
    // Everything typed has gone out: close once the replies have stopped.
    await socket.drained();
    lastHeard = Math.max(lastHeard, Date.now());
    while (socket.readyState === 1 && Date.now() - lastHeard < wait) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, wait)));
    }
    socket.close(1000);
  })();
  // stdin may still be open when the server closes first: its reader is left behind.
  sending.catch(() => {});
  const closed = await socket.closed;
  await printing;
  err(`closed ${closed.code}${closed.reason ? ` ${JSON.stringify(closed.reason)}` : ""}`);
  return closed.wasClean ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
