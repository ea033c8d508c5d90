/**
 * A minimal headless-Chromium driver for browser tests.
 *
 * It speaks the Chrome DevTools Protocol (CDP) over Deno's built-in
 * `WebSocket` client, so it needs no npm packages. It is test tooling, not
 * part of the published library.
 *
 * Required permissions: `--allow-run`, `--allow-read`, `--allow-write`
 * (temporary profile directory), `--allow-net=127.0.0.1` and
 * `--allow-env=CHROMIUM_BIN`.
 *
 * @module
 */

/** Candidate executables, tried in order after the `CHROMIUM_BIN` variable. */
const CANDIDATES = [
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
];

/** How long `launchChromium()` waits for the DevTools endpoint. */
const LAUNCH_TIMEOUT_MS = 45_000;
/** Default time limit for one CDP command. */
const SEND_TIMEOUT_MS = 15_000;
/** Default time limit for `navigate()`. */
const NAVIGATE_TIMEOUT_MS = 15_000;
/** Default time limit for `waitFor()`. */
const WAIT_FOR_TIMEOUT_MS = 5_000;
/** How long `close()` waits for a graceful exit before sending SIGKILL. */
const EXIT_TIMEOUT_MS = 5_000;
/** How much of Chromium's stderr is kept for error messages. */
const STDERR_TAIL_BYTES = 4096;

/**
 * Returns the path of a Chromium (or Chrome) executable, or `undefined` if
 * none is found. Looks at the `CHROMIUM_BIN` environment variable first, then
 * at `/usr/bin/chromium`, `/usr/bin/chromium-browser` and
 * `/usr/bin/google-chrome`.
 */
export function findChromium(): string | undefined {
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get("CHROMIUM_BIN");
  } catch {
    // No env permission: fall through to the well-known paths.
  }
  for (const path of fromEnv ? [fromEnv, ...CANDIDATES] : CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Missing or unreadable: try the next one.
    }
  }
  return undefined;
}

/** A running headless Chromium, driven through one page target over CDP. */
export interface Browser {
  /** Process id of the Chromium browser process. */
  readonly pid: number;
  /** Port of the DevTools HTTP/WebSocket endpoint on 127.0.0.1. */
  readonly port: number;
  /**
   * Sends a CDP command to the page target and resolves with its result.
   * A CDP error response, a closed connection or a timeout rejects.
   */
  send<T = Record<string, unknown>>(
    method: string,
    params?: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<T>;
  /**
   * Resolves with the params of the next CDP event named `method`
   * (for example `"Page.loadEventFired"`); rejects after `timeoutMs`.
   * Enable the event's domain first.
   */
  waitForEvent<T = Record<string, unknown>>(method: string, timeoutMs?: number): Promise<T>;
  /**
   * Calls `listener` with the params of every CDP event named `method` (for
   * example `"Runtime.consoleAPICalled"`) until the returned function is
   * called or the browser closes. Enable the event's domain first.
   */
  on<T = Record<string, unknown>>(method: string, listener: (params: T) => void): () => void;
  /**
   * Navigates the page to `url` and resolves once its load event has fired.
   * Rejects on a navigation error (e.g. connection refused) or after
   * `timeoutMs`. Not for same-document (`#hash`) navigations, which fire no
   * load event.
   */
  navigate(url: string, timeoutMs?: number): Promise<void>;
  /**
   * Evaluates a JavaScript expression in the page (awaiting a returned
   * promise) and resolves with its JSON-serialisable value. Throws if the
   * expression throws or its promise rejects.
   */
  evaluate<T = unknown>(expression: string): Promise<T>;
  /**
   * Re-evaluates `expression` every 25 ms until it yields a truthy value,
   * and resolves with that value. Errors thrown while polling are retried.
   * Rejects after `timeoutMs` (default 5000).
   */
  waitFor<T = unknown>(expression: string, timeoutMs?: number): Promise<T>;
  /**
   * Closes the CDP socket, stops Chromium, waits for it to exit and removes
   * its temporary profile directory. Safe to call more than once.
   */
  close(): Promise<void>;
}

interface Pending {
  method: string;
  resolve: (result: Record<string, unknown>) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: string };
}

interface RemoteObject {
  type: string;
  value?: unknown;
  description?: string;
}

interface EvaluateResult {
  result: RemoteObject;
  exceptionDetails?: { text: string; exception?: RemoteObject };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Races `promise` against a timer that is always cleared afterwards. */
async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads a stream to its end in the background, keeping only the last
 * `STDERR_TAIL_BYTES` in `tail.text`. `cancel()` stops reading early.
 */
function drainTail(stream: ReadableStream<Uint8Array>, tail: { text: string }) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  const done = (async () => {
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        tail.text = (tail.text + decoder.decode(value, { stream: true })).slice(-STDERR_TAIL_BYTES);
      }
    } catch {
      // The pipe broke or reading was cancelled; nothing more to read.
    } finally {
      reader.releaseLock();
    }
  })();
  return {
    done,
    cancel: () => reader.cancel().catch(() => {}),
  };
}

/**
 * Pids of live (non-zombie) processes whose command line mentions `marker`.
 * Every Chromium helper process (zygotes, renderers, GPU, utility, and the
 * daemonised crashpad handlers reparented to pid 1) carries the profile
 * directory in its arguments. Returns `[]` where `/proc` is unavailable.
 */
async function processesMentioning(marker: string): Promise<number[]> {
  const pids: number[] = [];
  try {
    for await (const entry of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        // A zombie's cmdline is empty, so it never matches.
        const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`);
        if (cmdline.includes(marker)) pids.push(Number(entry.name));
      } catch {
        // Exited meanwhile, or not ours to read.
      }
    }
  } catch {
    // No /proc (not Linux) or no read permission: nothing to report.
  }
  return pids;
}

/** Opens a WebSocket and resolves once it is open. */
function openSocket(url: string, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      cleanup();
      ws.close();
      reject(new Error(`CDP WebSocket ${url} did not open within ${timeoutMs} ms`));
    }, timeoutMs);
    const onOpen = () => {
      cleanup();
      resolve(ws);
    };
    const onError = (e: Event) => {
      cleanup();
      const msg = e instanceof ErrorEvent ? e.message : "error event";
      reject(new Error(`CDP WebSocket ${url} failed to open: ${msg}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      ws.removeEventListener("open", onOpen);
      ws.removeEventListener("error", onError);
    };
    ws.addEventListener("open", onOpen);
    ws.addEventListener("error", onError);
  });
}

/** Closes a WebSocket and waits (bounded) for its close event. */
async function closeSocket(ws: WebSocket, timeoutMs: number): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = new Promise<void>((resolve) => {
    ws.addEventListener("close", () => resolve(), { once: true });
  });
  if (ws.readyState !== WebSocket.CLOSING) ws.close();
  try {
    await withTimeout(closed, timeoutMs, "closing the CDP WebSocket");
  } catch {
    // The process is about to be killed, which tears the socket down anyway.
  }
}

/** Polls the profile directory for `DevToolsActivePort` and returns the port. */
async function readDevToolsPort(
  userDataDir: string,
  exited: () => boolean,
  deadline: number,
): Promise<number> {
  const file = `${userDataDir}/DevToolsActivePort`;
  while (Date.now() < deadline) {
    if (exited()) throw new Error("Chromium exited before opening its DevTools port");
    try {
      // First line: port. Second line: browser target path. The file is
      // complete once the second line has been written.
      const lines = (await Deno.readTextFile(file)).split("\n");
      const port = Number(lines[0]);
      if (lines.length >= 2 && lines[1].startsWith("/") && Number.isInteger(port) && port > 0) {
        return port;
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await delay(25);
  }
  throw new Error(`Chromium did not write ${file} within ${LAUNCH_TIMEOUT_MS} ms`);
}

/** Polls `/json/list` for a page target and returns its WebSocket URL. */
async function findPageTarget(port: number, exited: () => boolean, deadline: number) {
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (exited()) throw new Error("Chromium exited before exposing a page target");
    try {
      const res = await fetch(`http://127.0.0.1:${port}/json/list`);
      const targets = (await res.json()) as { type: string; webSocketDebuggerUrl?: string }[];
      const page = targets.find((t) => t.type === "page" && t.webSocketDebuggerUrl);
      if (page) return page.webSocketDebuggerUrl!;
    } catch (error) {
      lastError = error;
    }
    await delay(25);
  }
  throw new Error(`No page target on DevTools port ${port}: ${lastError ?? "none listed"}`);
}

/**
 * Starts headless Chromium with a fresh temporary profile, waits for its
 * DevTools endpoint and connects to its `about:blank` page target.
 * Always pair with `await browser.close()` (e.g. in a `finally` block).
 * Throws if no Chromium is found or it does not come up within 15 s.
 */
export async function launchChromium(): Promise<Browser> {
  const bin = findChromium();
  if (!bin) {
    throw new Error(
      "Chromium not found: set CHROMIUM_BIN or install /usr/bin/chromium",
    );
  }
  const userDataDir = await Deno.makeTempDir({ prefix: "tsunagu-chromium-" });
  const child = new Deno.Command(bin, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--remote-debugging-port=0",
      `--user-data-dir=${userDataDir}`,
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    // Keep crash dumps inside the temporary profile instead of
    // ~/.config/chromium/Crash Reports.
    env: { BREAKPAD_DUMP_LOCATION: `${userDataDir}/crash-reports` },
  }).spawn();

  const stderr = { text: "" };
  const stderrPump = drainTail(child.stderr, stderr);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });

  let ws: WebSocket | undefined;
  let closing: Promise<void> | undefined;
  const pending = new Map<number, Pending>();
  const listeners = new Map<string, Set<(params: Record<string, unknown>) => void>>();
  const waiters = new Set<(reason: string) => void>();
  let nextId = 1;
  let port = 0;

  const failAll = (reason: string) => {
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`CDP ${p.method} failed: ${reason}`));
    }
    pending.clear();
    for (const cancel of [...waiters]) cancel(reason);
  };

  const shutdown = async () => {
    failAll("browser closed");
    if (ws) await closeSocket(ws, 2_000);
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
    }
    try {
      await withTimeout(status, EXIT_TIMEOUT_MS, "Chromium exit");
    } catch {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await status;
    }
    // The browser is gone; make sure its helpers are too (they normally exit
    // within milliseconds of it), escalating to SIGKILL after a while.
    let helpersDeadline = Date.now() + EXIT_TIMEOUT_MS;
    for (let killed = false;;) {
      const pids = await processesMentioning(userDataDir);
      if (pids.length === 0) break;
      if (Date.now() >= helpersDeadline) {
        if (killed) break;
        killed = true;
        helpersDeadline = Date.now() + 1_000;
        for (const pid of pids) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // Already gone.
          }
        }
      }
      await delay(25);
    }
    // Helpers inherit stderr; if one survived it could hold the pipe open.
    try {
      await withTimeout(stderrPump.done, 1_000, "draining Chromium stderr");
    } catch {
      await stderrPump.cancel();
      await stderrPump.done;
    }
    // Helper processes may still be flushing into the profile for a moment.
    for (let attempt = 0;; attempt++) {
      try {
        await Deno.remove(userDataDir, { recursive: true });
        break;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) break;
        if (attempt >= 20) throw error;
        await delay(50);
      }
    }
  };

  try {
    const deadline = Date.now() + LAUNCH_TIMEOUT_MS;
    port = await readDevToolsPort(userDataDir, () => exited, deadline);
    const wsUrl = await findPageTarget(port, () => exited, deadline);
    ws = await openSocket(wsUrl, Math.max(deadline - Date.now(), 1));
  } catch (error) {
    await shutdown();
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`${message}\n--- chromium stderr (tail) ---\n${stderr.text}`, {
      cause: error,
    });
  }

  const socket = ws;
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") return;
    const msg = JSON.parse(event.data) as CdpMessage;
    if (msg.id !== undefined) {
      const p = pending.get(msg.id);
      if (!p) return;
      pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) {
        const data = msg.error.data ? ` (${msg.error.data})` : "";
        p.reject(new Error(`CDP ${p.method} failed: ${msg.error.message}${data}`));
      } else {
        p.resolve(msg.result ?? {});
      }
    } else if (msg.method) {
      for (const listener of listeners.get(msg.method) ?? []) listener(msg.params ?? {});
    }
  });
  socket.addEventListener("close", () => failAll("CDP connection closed"));

  const send = <T = Record<string, unknown>>(
    method: string,
    params: Record<string, unknown> = {},
    timeoutMs = SEND_TIMEOUT_MS,
  ): Promise<T> => {
    if (closing || socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error(`CDP ${method} failed: connection is not open`));
    }
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`CDP ${method} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, {
        method,
        resolve: resolve as (result: Record<string, unknown>) => void,
        reject,
        timer,
      });
      socket.send(JSON.stringify({ id, method, params }));
    });
  };

  /** Subscribes to the next `method` event; `cancel` rejects and unsubscribes. */
  const subscribe = <T>(method: string, timeoutMs: number) => {
    let cancel: (reason: string) => void = () => {};
    const promise = new Promise<T>((resolve, reject) => {
      let set = listeners.get(method);
      if (!set) listeners.set(method, set = new Set());
      const listener = (params: Record<string, unknown>) => {
        done();
        resolve(params as T);
      };
      const timer = setTimeout(
        () => cancel(`timed out after ${timeoutMs} ms`),
        timeoutMs,
      );
      const done = () => {
        clearTimeout(timer);
        set.delete(listener);
        waiters.delete(cancel);
      };
      cancel = (reason) => {
        done();
        reject(new Error(`waiting for ${method}: ${reason}`));
      };
      set.add(listener);
      waiters.add(cancel);
    });
    return { promise, cancel };
  };

  const waitForEvent = <T = Record<string, unknown>>(
    method: string,
    timeoutMs = NAVIGATE_TIMEOUT_MS,
  ): Promise<T> => subscribe<T>(method, timeoutMs).promise;

  const evaluate = async <T = unknown>(expression: string): Promise<T> => {
    const { result, exceptionDetails } = await send<EvaluateResult>("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    });
    if (exceptionDetails) {
      const detail = exceptionDetails.exception?.description ??
        String(exceptionDetails.exception?.value ?? exceptionDetails.text);
      throw new Error(`evaluate(${JSON.stringify(expression)}) threw: ${detail}`);
    }
    return result.value as T;
  };

  const on = <T = Record<string, unknown>>(method: string, listener: (params: T) => void) => {
    let set = listeners.get(method);
    if (!set) listeners.set(method, set = new Set());
    const wrapped = (params: Record<string, unknown>) => listener(params as T);
    set.add(wrapped);
    return () => void set.delete(wrapped);
  };

  return {
    pid: child.pid,
    port,
    send,
    waitForEvent,
    on,
    evaluate,
    async navigate(url: string, timeoutMs = NAVIGATE_TIMEOUT_MS): Promise<void> {
      await send("Page.enable");
      // Subscribe before navigating so a fast load event is not missed.
      const loaded = subscribe("Page.loadEventFired", timeoutMs);
      try {
        const { errorText } = await send<{ errorText?: string }>("Page.navigate", { url });
        if (errorText) throw new Error(`navigate(${url}) failed: ${errorText}`);
      } catch (error) {
        loaded.promise.catch(() => {});
        loaded.cancel("navigation failed");
        throw error;
      }
      await loaded.promise;
    },
    async waitFor<T = unknown>(expression: string, timeoutMs = WAIT_FOR_TIMEOUT_MS): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      let last: unknown;
      while (true) {
        try {
          const value = await evaluate<T>(expression);
          if (value) return value;
          last = value;
        } catch (error) {
          // Retry page errors, but not a dead connection.
          if (closing || socket.readyState !== WebSocket.OPEN) throw error;
          last = error;
        }
        if (Date.now() >= deadline) {
          const shown = last instanceof Error ? last.message : JSON.stringify(last);
          throw new Error(
            `waitFor(${
              JSON.stringify(expression)
            }) timed out after ${timeoutMs} ms; last: ${shown}`,
          );
        }
        await delay(25);
      }
    },
    close(): Promise<void> {
      closing ??= shutdown();
      return closing;
    },
  };
}
