/**
 * One server per core: {@linkcode serveWorkers} runs N copies of an
 * application module in Deno workers that share one port (`reusePort`, so
 * the kernel spreads connections over them) and share topics through a
 * {@linkcode ChannelBroker} in each, linked to every other worker's by a
 * MessagePort; {@linkcode serveInWorker} is what the module calls instead
 * of `serve`. Shutdown reaches every worker; a worker that dies is reported
 * and replaced, and the mesh of ports is mended around it.
 *
 * @module
 */

import { ChannelBroker } from "./channel_broker.ts";
import { defaultMaxConnections, type Handlers, type ServeOptions } from "./options.ts";
import { serve, type Server } from "./server.ts";

/** What the pool tells a worker when it starts it. */
export interface WorkerInit {
  /** This worker's number, 0 to `workers - 1` (a replacement takes the number of the one it replaces). */
  index: number;
  /** How many workers the pool runs. */
  workers: number;
  /** The port every worker listens on. */
  port: number;
  /** The interface every worker listens on. */
  hostname: string;
  /** The `data` given to {@linkcode serveWorkers}, cloned. */
  data: unknown;
}

/** A port to another worker's broker, named after that worker. */
interface PeerPort {
  id: string;
  port: MessagePort;
}

type ToWorker =
  | { type: "init"; init: WorkerInit; peers: PeerPort[] }
  | { type: "peer"; peer: PeerPort }
  | { type: "peer-gone"; id: string }
  | { type: "shutdown"; timeout: number | undefined };

type FromWorker =
  | { type: "listening" }
  | { type: "finished" }
  | { type: "failed"; message: string };

/**
 * Options for {@linkcode serveWorkers}.
 *
 * @example
 * ```ts
 * import type { WorkersOptions } from "@tsunagu/ws";
 * const options: WorkersOptions = { workers: "auto", port: 8080, hostname: "0.0.0.0" };
 * console.log(options.workers); // auto
 * ```
 */
export interface WorkersOptions {
  /** How many workers: a number from 1, or `"auto"` for one per core. Default `"auto"`. */
  workers?: number | "auto";
  /** The port all workers share; 0 picks a free one first. Default 8080. */
  port?: number;
  /** Interface to listen on. Default `"0.0.0.0"`. */
  hostname?: string;
  /** Handed to every worker as {@linkcode WorkerInit.data} (structured-cloned): e.g. settings. */
  data?: unknown;
  /** Called when a worker fails (it is replaced). Default: logged with `console.error`. */
  onWorkerError?: (error: unknown, index: number) => void;
  /** Called once every worker listens. */
  onListen?: (addr: Deno.NetAddr) => void;
}

/** The slowest a crashing worker is replaced: its delay doubles from 100 ms up to this. */
const MAX_RESTART_DELAY = 5_000;
/** A worker that ran this long resets its replacement delay. */
const HEALTHY_AFTER = 30_000;
/** How long a worker may take to listen before it counts as failed. */
const START_TIMEOUT = 30_000;

interface Slot {
  index: number;
  worker: Worker | null;
  /** The worker has said it listens. */
  listening: boolean;
  started: number;
  restartDelay: number;
  finished: (() => void) | null;
  restartTimer: ReturnType<typeof setTimeout> | null;
}

/**
 * A pool of workers serving one port; from {@linkcode serveWorkers}.
 *
 * @example
 * ```ts ignore
 * import { serveWorkers } from "@tsunagu/ws";
 * const pool = serveWorkers(new URL("./app.ts", import.meta.url), { workers: 2, port: 8080 });
 * await pool.listening;
 * Deno.addSignalListener("SIGTERM", () => pool.shutdown());
 * await pool.finished;
 * ```
 */
export class WorkerPool {
  /** The shared address, once {@linkcode WorkerPool.listening} has resolved. */
  addr: Deno.NetAddr;
  /** Resolves once every worker listens; rejects if one fails before it does. */
  readonly listening: Promise<void>;
  /** Resolves once {@linkcode WorkerPool.shutdown} has finished every worker. */
  readonly finished: Promise<void>;
  #module: URL;
  #options: WorkersOptions;
  #init: Omit<WorkerInit, "index">;
  #slots: Slot[] = [];
  #restarts = 0;
  #stopping: Promise<void> | null = null;
  #resolveFinished!: () => void;
  #listeners = 0;
  #resolveListening!: () => void;
  #rejectListening!: (error: unknown) => void;
  #listened = false;

  /** Starts the workers. Prefer {@linkcode serveWorkers}. */
  constructor(module: string | URL, options: WorkersOptions = {}) {
    this.#module = new URL(module);
    this.#options = options;
    const count = options.workers === undefined || options.workers === "auto"
      ? Math.max(1, navigator.hardwareConcurrency || 1)
      : options.workers;
    if (!Number.isInteger(count) || count < 1) {
      throw new RangeError(`workers must be an integer from 1 or "auto", got ${options.workers}`);
    }
    const hostname = options.hostname ?? "0.0.0.0";
    let port = options.port ?? 8080;
    if (port === 0) {
      // Every worker must listen on the same port: pick a free one first.
      const probe = Deno.listen({ hostname, port: 0 });
      port = (probe.addr as Deno.NetAddr).port;
      probe.close();
    }
    this.addr = { transport: "tcp", hostname, port };
    this.#init = { workers: count, port, hostname, data: options.data };
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.listening = new Promise((resolve, reject) => {
      this.#resolveListening = resolve;
      this.#rejectListening = reject;
    });
    // A pool nobody awaits must not leave an unhandled rejection behind.
    this.listening.catch(() => {});
    for (let index = 0; index < count; index++) {
      this.#slots.push({
        index,
        worker: null,
        listening: false,
        started: 0,
        restartDelay: 100,
        finished: null,
        restartTimer: null,
      });
    }
    for (const slot of this.#slots) this.#spawn(slot);
  }

  /** How many workers the pool runs. */
  get workers(): number {
    return this.#slots.length;
  }

  /** How many workers listen now (fewer than `workers` while one is being replaced). */
  get listeningWorkers(): number {
    return this.#slots.filter((slot) => slot.listening).length;
  }

  /** How many workers have been replaced after failing. */
  get restarts(): number {
    return this.#restarts;
  }

  /**
   * Shuts every worker's server down as `server.shutdown()` does (clients
   * get 1001 after what was queued for them), waits for all, and ends the
   * workers. `timeout` is each server's wait for its clients (default its
   * `closeTimeout`).
   */
  shutdown(options: { timeout?: number } = {}): Promise<void> {
    if (this.#stopping !== null) return this.#stopping;
    this.#stopping = (async () => {
      const waits = this.#slots.map((slot) => {
        if (slot.restartTimer !== null) clearTimeout(slot.restartTimer);
        const worker = slot.worker;
        if (worker === null) return Promise.resolve();
        const done = new Promise<void>((resolve) => slot.finished = resolve);
        worker.postMessage({ type: "shutdown", timeout: options.timeout } satisfies ToWorker);
        // A worker that cannot finish (stuck in a loop) is ended anyway.
        const limit = (options.timeout ?? 5_000) + 5_000;
        let timer: ReturnType<typeof setTimeout> | undefined;
        return Promise.race([done, new Promise((r) => timer = setTimeout(r, limit))]).then(() => {
          clearTimeout(timer);
          worker.terminate();
          slot.worker = null;
          slot.listening = false;
        });
      });
      await Promise.all(waits);
      if (!this.#listened) this.#rejectListening(new Error("the pool was shut down"));
      this.#resolveFinished();
    })();
    return this.#stopping;
  }

  #spawn(slot: Slot): void {
    slot.restartTimer = null;
    if (this.#stopping !== null) return;
    const worker = new Worker(this.#module, { type: "module" });
    slot.worker = worker;
    slot.listening = false;
    // Link this worker's broker to every other worker's: a new port each,
    // the other end sent to that worker (a replacement gets fresh ones).
    const peers: PeerPort[] = [];
    for (const other of this.#slots) {
      if (other === slot || other.worker === null) continue;
      const { port1, port2 } = new MessageChannel();
      peers.push({ id: peerId(other.index), port: port1 });
      other.worker.postMessage(
        { type: "peer", peer: { id: peerId(slot.index), port: port2 } } satisfies ToWorker,
        [port2],
      );
    }
    slot.started = Date.now();
    let listening = false;
    const startTimer = setTimeout(() => {
      if (!listening) {
        fail(new Error(`worker ${slot.index} did not listen within ${START_TIMEOUT} ms`));
      }
    }, START_TIMEOUT);
    const fail = (error: unknown) => {
      clearTimeout(startTimer);
      if (slot.worker !== worker) return;
      worker.terminate();
      slot.worker = null;
      slot.listening = false;
      for (const other of this.#slots) {
        other.worker?.postMessage({ type: "peer-gone", id: peerId(slot.index) } satisfies ToWorker);
      }
      if (slot.finished !== null) {
        // Failing while shutting down still counts as finished.
        slot.finished();
        return;
      }
      this.#report(error, slot.index);
      if (!this.#listened) {
        // A worker that cannot even start would fail again: give up.
        this.#rejectListening(error);
        this.shutdown();
        return;
      }
      if (this.#stopping !== null) return;
      this.#restarts++;
      if (Date.now() - slot.started > HEALTHY_AFTER) slot.restartDelay = 100;
      const delay = slot.restartDelay;
      slot.restartDelay = Math.min(MAX_RESTART_DELAY, slot.restartDelay * 2);
      slot.restartTimer = setTimeout(() => this.#spawn(slot), delay);
    };
    worker.onerror = (event: ErrorEvent) => {
      // Handled here: an uncaught error in a worker must not end the process.
      event.preventDefault();
      fail(event.error ?? new Error(event.message));
    };
    worker.onmessageerror = () =>
      fail(new Error(`worker ${slot.index} sent a message that could not be read`));
    worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      if (message.type === "listening") {
        listening = slot.listening = true;
        clearTimeout(startTimer);
        if (++this.#listeners === this.#slots.length && !this.#listened) {
          this.#listened = true;
          this.#options.onListen?.(this.addr);
          this.#resolveListening();
        }
      } else if (message.type === "finished") {
        slot.finished?.();
      } else if (message.type === "failed") {
        fail(new Error(message.message));
      }
    };
    worker.postMessage(
      { type: "init", init: { ...this.#init, index: slot.index }, peers } satisfies ToWorker,
      peers.map((peer) => peer.port),
    );
  }

  #report(error: unknown, index: number): void {
    const handler = this.#options.onWorkerError;
    if (handler === undefined) {
      console.error(`tsunagu: worker ${index} failed and is replaced:`, error);
      return;
    }
    try {
      handler(error, index);
    } catch (secondary) {
      console.error("tsunagu: onWorkerError failed:", secondary);
    }
  }
}

/**
 * Runs `module` in `workers` Deno workers (default one per core) that share
 * one port and their topics: a `publish` in one worker reaches subscribers
 * in all. The module calls {@linkcode serveInWorker} where a single-process
 * program would call `serve`. Needs `--unstable-net` (for `reusePort`);
 * workers get the process's permissions.
 *
 * `shutdown()` shuts every worker's server down (1001 to every client) and
 * resolves `finished` once all are done. A worker that throws an uncaught
 * error is reported (`onWorkerError`) and replaced, after a delay that
 * doubles while it keeps failing (100 ms to 5 s); its clients are cut off
 * and reconnect to the others.
 *
 * @example Two workers on one port (app.ts calls serveInWorker)
 * ```ts ignore
 * import { serveWorkers } from "@tsunagu/ws";
 * const pool = serveWorkers(new URL("./app.ts", import.meta.url), { workers: 2, port: 8080 });
 * await pool.listening;
 * console.log(`listening on ${pool.addr.port} with ${pool.workers} workers`);
 * ```
 */
export function serveWorkers(module: string | URL, options: WorkersOptions = {}): WorkerPool {
  return new WorkerPool(module, options);
}

function peerId(index: number): string {
  return `worker-${index}`;
}

/**
 * The worker side's state: what the pool sent before the application asked
 * for it. Listening starts when this module is loaded in a worker, so no
 * message from the pool is missed, whatever the application awaits first.
 */
const inWorker = "WorkerGlobalScope" in globalThis;
let initReceived: WorkerInit | null = null;
let initWaiter: ((init: WorkerInit) => void) | null = null;
/** Ports to other workers that arrived before the broker exists. */
const pendingPeers = new Map<string, MessagePort>();
let workerBroker: ChannelBroker | null = null;
let onShutdown: ((timeout: number | undefined) => void) | null = null;

function fromPool(event: MessageEvent): void {
  const message = event.data as ToWorker;
  if (message === null || typeof message !== "object") return;
  if (message.type === "init") {
    for (const peer of message.peers) addPeer(peer);
    initReceived = message.init;
    initWaiter?.(message.init);
  } else if (message.type === "peer") {
    addPeer(message.peer);
  } else if (message.type === "peer-gone") {
    workerBroker?.removePeer(message.id);
    pendingPeers.get(message.id)?.close();
    pendingPeers.delete(message.id);
  } else if (message.type === "shutdown") {
    onShutdown?.(message.timeout);
  }
}

function addPeer(peer: PeerPort): void {
  if (workerBroker !== null) {
    workerBroker.addPeer(peer.id, peer.port);
  } else {
    pendingPeers.get(peer.id)?.close();
    pendingPeers.set(peer.id, peer.port);
  }
}

if (inWorker) {
  (globalThis as unknown as {
    addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  }).addEventListener("message", fromPool);
}

/**
 * Inside a worker started by {@linkcode serveWorkers}: what the pool sent
 * (index, port, the pool's `data`). Rejects outside a worker.
 *
 * @example
 * ```ts ignore
 * import { workerInit } from "@tsunagu/ws";
 * const { index, data } = await workerInit();
 * ```
 */
export function workerInit(): Promise<WorkerInit> {
  if (!inWorker) {
    return Promise.reject(new Error("workerInit() and serveInWorker() run inside a worker"));
  }
  if (initReceived !== null) return Promise.resolve(initReceived);
  return new Promise((resolve) => {
    const previous = initWaiter;
    initWaiter = (init) => {
      previous?.(init);
      resolve(init);
    };
  });
}

/**
 * The `serve` of a worker started by {@linkcode serveWorkers}: listens on
 * the pool's port (`reusePort`) with a {@linkcode ChannelBroker} linked to
 * every other worker of the pool (unless `options.broker` is given, e.g. a
 * Redis broker, which then carries topics between workers and machines
 * alike), tells the pool it listens, and shuts down when the pool does.
 * `port`, `hostname` and `reusePort` come from the pool.
 *
 * @example app.ts, run by serveWorkers
 * ```ts ignore
 * import { serveInWorker } from "@tsunagu/ws";
 * await serveInWorker({}, {
 *   open: (socket) => void socket.subscribe("lobby"),
 *   message: (_socket, data, server) => void server.publish("lobby", data),
 * });
 * ```
 */
export async function serveInWorker<T = undefined>(
  options: Omit<ServeOptions, "port" | "hostname" | "reusePort">,
  handlers: Handlers<T> = {},
): Promise<Server<T>> {
  const init = await workerInit();
  const scope = globalThis as unknown as { postMessage(message: FromWorker): void };
  let broker = options.broker;
  if (broker === undefined) {
    const channel = workerBroker = new ChannelBroker();
    for (const [id, port] of pendingPeers) channel.addPeer(id, port);
    broker = channel;
  } else {
    // Another broker carries the topics: the ports to other workers are not needed.
    for (const port of pendingPeers.values()) port.close();
  }
  pendingPeers.clear();
  let server: Server<T>;
  try {
    server = serve<T>({
      ...options,
      // The workers are threads of one process and share its open-file
      // limit: the default connection limit is shared out among them.
      maxConnections: options.maxConnections ??
        Math.max(1, Math.floor(defaultMaxConnections() / init.workers)),
      port: init.port,
      hostname: init.hostname,
      reusePort: true,
      broker,
    }, handlers);
  } catch (error) {
    scope.postMessage({ type: "failed", message: String(error) });
    throw error;
  }
  onShutdown = async (timeout) => {
    await server.shutdown({ timeout });
    scope.postMessage({ type: "finished" });
  };
  scope.postMessage({ type: "listening" });
  return server;
}
