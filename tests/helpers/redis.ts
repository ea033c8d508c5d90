/**
 * A throwaway real `redis-server` for a test: on a free 127.0.0.1 port,
 * persistence off, stopped (and its process awaited) by the test. Every wait
 * is bounded. Test tooling, not part of the published library.
 *
 * @module
 */

/** Whether `redis-server` is on the PATH (tests skip themselves, with a note, when not). */
export const HAS_REDIS: boolean = (() => {
  try {
    const { success } = new Deno.Command("redis-server", { args: ["--version"], stdout: "null" })
      .outputSync();
    return success;
  } catch {
    return false;
  }
})();

if (!HAS_REDIS) console.log("redis-server not found: the Redis tests are skipped");

/** A running redis-server. */
export interface RedisProcess {
  /** Its port on 127.0.0.1. */
  port: number;
  /** `redis://127.0.0.1:port`. */
  url: string;
  /** Stops it (SIGKILL unless said otherwise) and waits for the process to end. */
  stop(signal?: Deno.Signal): Promise<void>;
  /** Starts it again on the same port (after `stop`). */
  restart(): Promise<void>;
  /** SIGSTOP: the process stays, answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
}

/** A port that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function waitForPort(
  port: number,
  child: Deno.ChildProcess,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  child.kill("SIGKILL");
  await child.status;
  throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`);
}

/** Starts a redis-server with `extraArgs` (e.g. `["--requirepass", "secret"]`). */
export async function startRedis(extraArgs: string[] = []): Promise<RedisProcess> {
  const port = freePort();
  let child: Deno.ChildProcess | null = null;
  let paused = false;
  const spawn = async () => {
    child = new Deno.Command("redis-server", {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        ...extraArgs,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitForPort(port, child);
  };
  await spawn();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop(signal: Deno.Signal = "SIGKILL") {
      const running = child;
      if (running === null) return;
      child = null;
      try {
        if (paused) running.kill("SIGCONT");
        running.kill(signal);
      } catch {
        // Already gone.
      }
      paused = false;
      await running.status;
    },
    restart: spawn,
    pause() {
      child?.kill("SIGSTOP");
      paused = true;
    },
    resume() {
      child?.kill("SIGCONT");
      paused = false;
    },
  };
}
