/**
 * Which in-process transport carries topic messages between workers best:
 * a BroadcastChannel (what ChannelBroker uses) or a MessagePort pair (what a
 * hand-built relay would use). One worker posts N messages of a given size,
 * the main thread counts them; messages per second, median of 5 runs each,
 * both measured in the same process, alternating.
 *
 *   deno run -A bench/channel_bench.ts [messages] [size]
 */

interface Start {
  mode: "channel" | "port";
  n: number;
  size: number;
  port?: MessagePort;
}

if ("WorkerGlobalScope" in globalThis) {
  // The sender: this same file, run as a worker.
  const scope = globalThis as unknown as { onmessage: (event: MessageEvent<Start>) => void };
  scope.onmessage = (event: MessageEvent<Start>) => {
    const { mode, n, size, port } = event.data;
    const payload = "x".repeat(size);
    if (mode === "channel") {
      const channel = new BroadcastChannel("channel-bench");
      // Not closed here: a channel closed right after posting may drop what it posted.
      for (let i = 0; i < n; i++) channel.postMessage({ topic: "t", data: payload });
    } else {
      for (let i = 0; i < n; i++) port!.postMessage({ topic: "t", data: payload });
    }
  };
} else {
  /** Messages per second and how many of the `n` posted arrived (a quiet second ends a run). */
  const run = async (
    mode: "channel" | "port",
    n: number,
    size: number,
  ): Promise<{ rate: number; delivered: number }> => {
    const sender = new Worker(import.meta.url, { type: "module" });
    let received = 0;
    let start = 0;
    let end = 0;
    let close = () => {};
    let quiet: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      const count = () => {
        if (received++ === 0) start = performance.now();
        end = performance.now();
        clearTimeout(quiet);
        quiet = setTimeout(resolve, 1000);
        if (received === n) resolve();
      };
      if (mode === "channel") {
        const channel = new BroadcastChannel("channel-bench");
        channel.onmessage = count;
        close = () => channel.close();
        sender.postMessage({ mode, n, size } satisfies Start);
      } else {
        const { port1, port2 } = new MessageChannel();
        port1.onmessage = count;
        close = () => port1.close();
        sender.postMessage({ mode, n, size, port: port2 } satisfies Start, [port2]);
      }
    });
    clearTimeout(quiet);
    close();
    sender.terminate();
    return { rate: (received - 1) / ((end - start) / 1000), delivered: received };
  };

  const n = Number(Deno.args[0] ?? 200_000);
  const size = Number(Deno.args[1] ?? 64);
  const results: Record<string, number[]> = { channel: [], port: [] };
  const delivered: Record<string, number[]> = { channel: [], port: [] };
  for (let i = 0; i < 5; i++) {
    for (const mode of ["channel", "port"] as const) {
      const outcome = await run(mode, n, size);
      results[mode].push(outcome.rate);
      delivered[mode].push(outcome.delivered);
    }
  }
  const median = (values: number[]) =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  for (const [mode, values] of Object.entries(results)) {
    console.log(
      `${mode.padEnd(8)} ${Math.round(median(values)).toLocaleString("en")} msg/s ` +
        `(${size} B, median of 5); delivered of ${n}: ${delivered[mode].join(", ")}`,
    );
  }
  console.log(`ratio channel/port: ${(median(results.channel) / median(results.port)).toFixed(2)}`);
}
