/**
 * Which in-process transport carries topic messages between workers best:
 * a BroadcastChannel (what ChannelBroker uses) or a MessagePort pair (what a
 * hand-built relay would use). One worker posts N messages of a given size,
 * the other counts them; messages per second, median of 5 runs each, both
 * measured in the same process one after the other.
 *
 *   deno run -A bench/channel_bench.ts [messages] [size]
 */

const WORKER = `
const mode = new URL(import.meta.url).hash.slice(1);
self.onmessage = (event) => {
  const { n, size, port } = event.data;
  const payload = "x".repeat(size);
  if (mode === "channel") {
    const channel = new BroadcastChannel("bench");
    setTimeout(() => { for (let i = 0; i < n; i++) channel.postMessage({ topic: "t", data: payload }); channel.close(); }, 20);
  } else {
    for (let i = 0; i < n; i++) port.postMessage({ topic: "t", data: payload });
  }
};
`;

async function run(mode: "channel" | "port", n: number, size: number): Promise<number> {
  const url = `data:application/javascript,${encodeURIComponent(WORKER)}#${mode}`;
  const sender = new Worker(url, { type: "module" });
  let received = 0;
  let start = 0;
  let closeReceiver = () => {};
  const done = new Promise<void>((resolve) => {
    const count = () => {
      if (received++ === 0) start = performance.now();
      if (received === n) resolve();
    };
    if (mode === "channel") {
      const channel = new BroadcastChannel("bench");
      channel.onmessage = count;
      closeReceiver = () => channel.close();
      sender.postMessage({ n, size });
    } else {
      const { port1, port2 } = new MessageChannel();
      port1.onmessage = count;
      closeReceiver = () => port1.close();
      sender.postMessage({ n, size, port: port2 }, [port2]);
    }
  });
  await done;
  closeReceiver();
  const seconds = (performance.now() - start) / 1000;
  sender.terminate();
  return (n - 1) / seconds;
}

const n = Number(Deno.args[0] ?? 200_000);
const size = Number(Deno.args[1] ?? 64);
const results: Record<string, number[]> = { channel: [], port: [] };
for (let i = 0; i < 5; i++) {
  for (const mode of ["channel", "port"] as const) results[mode].push(await run(mode, n, size));
}
const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
for (const [mode, values] of Object.entries(results)) {
  console.log(
    `${mode.padEnd(8)} ${
      Math.round(median(values)).toLocaleString("en")
    } msg/s (${size} B, median of 5)`,
  );
}
console.log(`ratio channel/port: ${(median(results.channel) / median(results.port)).toFixed(2)}`);
