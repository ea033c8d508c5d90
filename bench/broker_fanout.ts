/**
 * Fan-out through the Redis broker, side by side with one node and no broker
 * (issue 13's benchmark): 1 publisher on node A, N subscribers split evenly
 * across the nodes; deliveries per second with K messages in flight, and
 * publish-to-last-delivery p50/p99 with one in flight. Also the cost
 * `publish` pays for the broker when no other node listens.
 *
 *   deno run -A bench/broker_fanout.ts [--subscribers 1000] [--runs 2] [--seconds 5]
 *       [--latency-messages 300] [--inflight 8] [--profile DIR] [--loadgen]
 *
 * Processes and cores (the machine has two): every server node is its own
 * process (bench/fanout_node.ts) pinned to core 0, so the figures are the
 * server's and its CPU is read from /proc/PID/stat; this process holds all
 * the clients (raw TCP: one read can carry many frames, and counting frames
 * costs far less per delivery than a WebSocket object's events) and pins
 * itself, and the redis-server it starts, to core 1. Both nodes of the
 * broker setup share core 0, so that setup has the same server CPU budget as
 * the one node without a broker: the difference is what the broker costs.
 *
 * Setups, each with fresh node processes and fresh connections, their order
 * reversed every other run (the machine drifts): "one node, no broker";
 * "one node with the Redis broker, no other node" (what the broker itself
 * costs under load); "nodes A + B through Redis (publisher on A)". Each
 * measured window waits (up to 20 s) for other processes on the machine to
 * use under 15% of a core, and the tables show how much they used during it.
 *
 * `--profile DIR` runs every node under `deno run --cpu-prof` (profiles in
 * DIR/<setup>-<node>/; summarise with bench/prof_summary.ts). `--loadgen`
 * also runs wsbench's C loadgen (fanout, one port only) against one node
 * without a broker, as a check on how much the Deno client side limits the
 * one-node figure.
 *
 * Columns: "node CPU ms/message" and "ns/delivery" are user + system time
 * of the node processes (all threads) per message or delivery; "frames/read"
 * is how many messages a subscriber's read brought, about how many frames a
 * node put in one write to it (its corking); "core 0 / 1 busy" includes
 * interrupt work and other processes. "limited by": a core at >= 90% busy,
 * "noisy" when other processes used over 25% of a core, otherwise the K
 * messages in flight bound the rate.
 *
 * Every wait is bounded; everything listens on 127.0.0.1.
 */

import { RedisBroker, serve } from "../mod.ts";
import { startRedis } from "../tests/helpers/redis.ts";

// ---------------------------------------------------------------- arguments

interface Args {
  subscribers: number;
  runs: number;
  seconds: number;
  latencyMessages: number;
  inflight: number;
  profile: string | undefined;
  loadgen: boolean;
  publishCost: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    subscribers: 1000,
    runs: 2,
    seconds: 5,
    latencyMessages: 300,
    inflight: 8,
    profile: undefined,
    loadgen: false,
    publishCost: true,
  };
  const number = (flag: string, value: string | undefined, min: number): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min) throw new Error(`${flag} needs a number >= ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--subscribers") args.subscribers = number(flag, argv[++i], 2);
    else if (flag === "--runs") args.runs = number(flag, argv[++i], 1);
    else if (flag === "--seconds") args.seconds = number(flag, argv[++i], 1);
    else if (flag === "--latency-messages") args.latencyMessages = number(flag, argv[++i], 1);
    else if (flag === "--inflight") args.inflight = number(flag, argv[++i], 1);
    else if (flag === "--profile") args.profile = argv[++i];
    else if (flag === "--loadgen") args.loadgen = true;
    else if (flag === "--no-publish-cost") args.publishCost = false;
    else throw new Error(`unknown argument ${flag}`);
  }
  return args;
}

// ---------------------------------------------------------------- processes

const NODE_SCRIPT = new URL("./fanout_node.ts", import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;
const SERVER_CORE = "0";
const CLIENT_CORE = "1";
const TOPIC_CHANNEL = "tsunagu:room"; // RedisBroker's default prefix + fanout_node's topic
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects after `ms` with `what` in the message. */
function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** User + system CPU seconds of a process, all threads (/proc/PID/stat fields 14, 15). */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(
  decoder.decode(new Deno.Command("getconf", { args: ["CLK_TCK"] }).outputSync().stdout).trim(),
) || 100;

/**
 * Busy CPU seconds of the whole machine (/proc/stat): processes (user, nice,
 * system) and interrupt work (irq, softirq: on loopback, much of TCP), apart.
 */
function machineSeconds(): { processes: number; irq: number; core0: number; core1: number } {
  const lines = Deno.readTextFileSync("/proc/stat").split("\n");
  const busy = (prefix: string) => {
    const line = lines.find((line) => line.startsWith(prefix + " "));
    if (line === undefined) return { processes: 0, irq: 0 };
    const [user, nice, system, _idle, _iowait, irq, softirq, steal] = line.split(/\s+/).slice(1)
      .map(Number);
    return {
      processes: (user + nice + system + steal) / CLOCK_TICKS,
      irq: (irq + softirq) / CLOCK_TICKS,
    };
  };
  const all = busy("cpu");
  const core = (n: string) => {
    const { processes, irq } = busy(`cpu${n}`);
    return processes + irq;
  };
  return { ...all, core0: core(SERVER_CORE), core1: core(CLIENT_CORE) };
}

/**
 * Waits (at most `maxMs`) until the other processes use under `limit`% of a
 * core over one second; returns the last second's figure. The machine is
 * shared: this keeps a run from starting in the middle of someone's test suite.
 */
async function waitQuiet(own: number[], limit: number, maxMs: number): Promise<number> {
  const deadline = Date.now() + maxMs;
  while (true) {
    const m0 = machineSeconds().processes;
    const own0 = own.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    await sleep(1_000);
    const other = 100 *
      (machineSeconds().processes - m0 -
        (own.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - own0));
    if (other < limit || Date.now() > deadline) return other;
  }
}

/** The pid of the redis-server listening on `port` (its title is `redis-server HOST:PORT`). */
function redisPid(port: number): number {
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (/redis-server [^ ]*:\d+/.test(cmdline) && cmdline.includes(`:${port}\0`)) {
        return Number(entry.name);
      }
    } catch {
      // The process ended while we looked.
    }
  }
  throw new Error(`no redis-server process for port ${port}`);
}

interface Node {
  name: string;
  pid: number;
  port: number;
  child: Deno.ChildProcess;
}

/** Starts bench/fanout_node.ts on core 0 and waits (bounded) for its `ready PORT`. */
async function startNode(name: string, redisUrl: string | undefined, profileDir?: string) {
  const args = ["-c", SERVER_CORE, Deno.execPath(), "run", "-A"];
  if (profileDir !== undefined) args.push("--cpu-prof", `--cpu-prof-dir=${profileDir}`);
  args.push(NODE_SCRIPT, "0");
  if (redisUrl !== undefined) args.push("--redis", redisUrl, "--node-id", name);
  const child = new Deno.Command("taskset", { args, stdout: "piped", stderr: "inherit" }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const ready = (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`node ${name} exited before it was ready`);
      text += value;
      const match = /ready (\d+)/.exec(text);
      if (match) return Number(match[1]);
    }
  })();
  let port: number;
  try {
    port = await bounded(ready, 20_000, `node ${name} start`);
  } catch (error) {
    child.kill("SIGKILL");
    await child.status;
    throw error;
  }
  // Keep draining stdout so the node never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  return { name, pid: child.pid, port, child } satisfies Node;
}

/** SIGTERM (graceful: the profile gets written), SIGKILL after 10 s. */
async function stopNode(node: Node): Promise<void> {
  try {
    node.child.kill("SIGTERM");
  } catch {
    // Already gone.
  }
  const timer = setTimeout(() => {
    try {
      node.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, 10_000);
  await node.child.status;
  clearTimeout(timer);
}

/** Subscribers to `channel` as Redis counts them (PUBSUB NUMSUB), over a raw connection. */
async function redisNumSub(port: number, channel: string): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const parts = ["PUBSUB", "NUMSUB", channel];
    const command = `*${parts.length}\r\n` + parts.map((p) => `$${p.length}\r\n${p}\r\n`).join("");
    await conn.write(encoder.encode(command));
    const buffer = new Uint8Array(256);
    let text = "";
    while (!/:\d+\r\n$/.test(text)) {
      const n = await bounded(conn.read(buffer.subarray()), 2_000, "PUBSUB NUMSUB");
      if (n === null) throw new Error("redis closed the connection");
      text += decoder.decode(buffer.subarray(0, n));
    }
    return Number(/:(\d+)\r\n$/.exec(text)![1]);
  } finally {
    conn.close();
  }
}

// ---------------------------------------------------------------- clients

// The handshake of RFC 6455's example; the accept value is fixed.
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const PAYLOAD = 64; // bytes; the first 8 are the message's sequence number in hex
const READ_BUFFER = 16 * 1024;
const EMPTY = new Uint8Array(0);
const RING = 4096; // per-message delivery counts; must exceed the messages in flight
// Other processes' CPU (% of one core) under which a run starts, and how long to wait for it.
const QUIET_LIMIT = 15;
const QUIET_WAIT_MS = 20_000;

/** A raw WebSocket client connection, upgraded; `rest` holds bytes read past the 101 head. */
async function upgrade(
  port: number,
  path: string,
): Promise<{ conn: Deno.TcpConn; rest: Uint8Array }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  await conn.write(encoder.encode(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  ));
  const buffer = new Uint8Array(4096);
  let length = 0;
  while (true) {
    const n = await conn.read(buffer.subarray(length));
    if (n === null) throw new Error("the server closed during the handshake");
    length += n;
    const head = decoder.decode(buffer.subarray(0, length));
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) {
      if (length === buffer.length) throw new Error("handshake response too long");
      continue;
    }
    if (!head.startsWith("HTTP/1.1 101") || !head.includes(ACCEPT)) {
      throw new Error(`handshake refused: ${head.slice(0, head.indexOf("\r\n"))}`);
    }
    return { conn, rest: buffer.slice(end + 4, length) };
  }
}

/** Counters of one measurement, shared by every subscriber's read loop. */
class Tally {
  deliveries = 0;
  completed = 0; // messages delivered to every subscriber
  errors: string[] = [];
  counts = new Uint32Array(RING);
  onComplete: (seq: number) => void = () => {};
  // When each message in flight reached its first subscriber: with the
  // publish time and the last delivery, it splits the latency into getting
  // the message to the server(s) and getting it to all subscribers.
  firstAt = new Float64Array(RING);
  constructor(readonly subscribers: number) {}

  delivered(seq: number): void {
    this.deliveries++;
    const slot = seq & (RING - 1);
    const count = ++this.counts[slot];
    if (count === 1) this.firstAt[slot] = performance.now();
    if (count === this.subscribers) {
      this.counts[slot] = 0;
      this.completed++;
      this.onComplete(seq);
    }
  }

  error(message: string): void {
    if (this.errors.length < 10) this.errors.push(message);
  }
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57;
  return -1;
}

/**
 * One subscriber: reads frames as a stream and counts the messages. Messages
 * arrive in order on a connection, so the k-th is message k; the sequence
 * number in its payload is checked whenever its 8 bytes are in the same read
 * as the frame head (nearly always).
 */
class Subscriber {
  received = 0;
  reads = 0; // frames per read ~ frames per server write: how well the node corks
  closed = false;
  #carry: Uint8Array;
  #skip = 0; // payload bytes of the current frame still to come
  readonly done: Promise<void>;

  constructor(
    readonly conn: Deno.TcpConn,
    rest: Uint8Array,
    readonly tally: Tally,
    readonly node: string,
  ) {
    this.#carry = rest;
    this.done = this.#loop();
  }

  async #loop(): Promise<void> {
    const buffer = new Uint8Array(READ_BUFFER);
    try {
      // Bytes read past the handshake's head come first.
      const rest = this.#carry;
      this.#carry = EMPTY;
      if (rest.length > 0) this.#parse(rest, rest.length);
      while (true) {
        // A frame head split across reads was kept: it starts the buffer.
        const carried = this.#carry.length;
        if (carried > 0) buffer.set(this.#carry);
        const n = await this.conn.read(buffer.subarray(carried));
        if (n === null) break;
        this.reads++;
        this.#carry = EMPTY;
        this.#parse(buffer, carried + n);
      }
    } catch (error) {
      if (!this.closed) this.tally.error(`subscriber read: ${(error as Error).message}`);
    }
    this.closed = true;
  }

  #parse(bytes: Uint8Array, length: number): void {
    let at = 0;
    if (this.#skip > 0) {
      const take = Math.min(this.#skip, length);
      this.#skip -= take;
      at = take;
    }
    while (at < length) {
      if (length - at < 2) break;
      const b0 = bytes[at];
      const b1 = bytes[at + 1];
      let size = b1 & 0x7f;
      let head = 2;
      if (size === 126) head = 4;
      else if (size === 127) head = 10;
      if (length - at < head) break;
      if (size === 126) size = (bytes[at + 2] << 8) | bytes[at + 3];
      else if (size === 127) {
        size = (bytes[at + 6] * 2 ** 24) + ((bytes[at + 7] << 16) | (bytes[at + 8] << 8) |
          bytes[at + 9]);
      }
      if (b1 & 0x80) this.tally.error("masked frame from the server");
      const opcode = b0 & 0x0f;
      if (opcode === 1 || opcode === 2) {
        if (!(b0 & 0x80)) this.tally.error("fragmented message");
        if (size !== PAYLOAD) this.tally.error(`message of ${size} bytes`);
        const seq = this.received++;
        if (length - at >= head + 8) {
          let value = 0;
          for (let k = 0; k < 8; k++) value = value * 16 + hexValue(bytes[at + head + k]);
          if (value !== seq) this.tally.error(`message ${value} where ${seq} was due`);
        }
        this.tally.delivered(seq);
      } else if (opcode === 9) {
        // Ping: answer with an empty pong (masked, zero key) so no idle
        // check ever closes a subscriber mid-run.
        this.conn.write(new Uint8Array([0x8a, 0x80, 0, 0, 0, 0])).catch(() => {});
      } else if (opcode === 8) {
        this.tally.error("the server closed a subscriber");
      }
      at += head;
      const take = Math.min(size, length - at);
      at += take;
      this.#skip = size - take;
      if (this.#skip > 0) return;
    }
    // A partial frame head: kept for the next read.
    if (at < length) this.#carry = bytes.slice(at, length);
  }

  close(): void {
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * The publisher: masked text frames of PAYLOAD bytes, queued and written in
 * one `write` per batch (messages released in the same tick go together).
 */
class Publisher {
  seq = 0;
  #queue: Uint8Array[] = [];
  #writing = false;
  readonly #mask = crypto.getRandomValues(new Uint8Array(4));
  readonly #body: Uint8Array;
  failed: Error | null = null;

  constructor(readonly conn: Deno.TcpConn) {
    // Bytes 8.. are the same in every message: masked once here.
    this.#body = new Uint8Array(6 + PAYLOAD);
    this.#body.set([0x81, 0x80 | PAYLOAD], 0);
    this.#body.set(this.#mask, 2);
    for (let k = 8; k < PAYLOAD; k++) {
      this.#body[6 + k] = (k === 8 ? 0x20 : 0x78) ^ this.#mask[k & 3];
    }
    // Drain anything the server sends (nothing but a close is expected).
    (async () => {
      const sink = new Uint8Array(1024);
      while ((await conn.read(sink)) !== null);
    })().catch(() => {});
  }

  /** Queues the next message; returns its sequence number. */
  publish(): number {
    const seq = this.seq++;
    const frame = this.#body.slice();
    const hex = seq.toString(16).padStart(8, "0");
    for (let k = 0; k < 8; k++) frame[6 + k] = hex.charCodeAt(k) ^ this.#mask[k & 3];
    this.#queue.push(frame);
    if (!this.#writing) this.#flush();
    return seq;
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        const frames = this.#queue;
        this.#queue = [];
        const out = new Uint8Array(frames.length * frames[0].length);
        frames.forEach((frame, k) => out.set(frame, k * frame.length));
        for (let at = 0; at < out.length;) at += await this.conn.write(out.subarray(at));
      }
    } catch (error) {
      this.failed = error as Error;
    }
    this.#writing = false;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

interface Measurement {
  setup: string;
  subscribers: number;
  latencyMessages: number;
  p50: number;
  p99: number;
  firstP50: number; // publish to the first subscriber's delivery
  // With one in flight, per message (ms): wall time, and the CPU of all the
  // nodes and of the client process.
  latencyWall: number;
  latencyNodeCpu: number;
  latencyClientCpu: number;
  deliveriesPerSecond: number;
  seconds: number;
  nodeCpu: Record<string, number>; // % of a core over the measured window
  nodeCpuNsPerDelivery: number; // all nodes together
  framesPerRead: Record<string, number>; // by node: the subscribers' frames per read
  clientCpu: number;
  redisCpu: number | null;
  irqCpu: number; // interrupt work on both cores (mostly loopback TCP)
  otherCpu: number; // every other process on the machine
  quietBefore: number; // other processes' CPU in the second before the run
  serverCore: number; // how busy core 0 (nodes) and core 1 (clients, redis) were, %
  clientCore: number;
  errors: string[];
}

/** Runs the latency phase then the throughput phase against running nodes. */
async function measure(
  setup: string,
  nodes: Node[],
  args: Args,
  redis: { port: number; pid: number } | null,
): Promise<Measurement> {
  const tally = new Tally(args.subscribers);
  const subscribers: Subscriber[] = [];
  // At most 64 handshakes at a time: a burst of 1,000 would overflow the
  // listen backlog and measure SYN retries.
  let next = 0;
  const openOne = async () => {
    while (next < args.subscribers) {
      const k = next++;
      const node = nodes[k % nodes.length];
      const { conn, rest } = await upgrade(node.port, "/broadcast");
      subscribers.push(new Subscriber(conn, rest, tally, node.name));
    }
  };
  await bounded(Promise.all(Array.from({ length: 64 }, openOne)), 60_000, "opening subscribers");
  if (redis !== null) {
    // Every node's SUBSCRIBE must have reached Redis, or B's subscribers miss messages.
    const deadline = Date.now() + 10_000;
    while ((await redisNumSub(redis.port, TOPIC_CHANNEL)) < nodes.length) {
      if (Date.now() > deadline) throw new Error("the nodes did not all subscribe in Redis");
      await sleep(20);
    }
  }
  const own = [Deno.pid, ...nodes.map((node) => node.pid), ...(redis ? [redis.pid] : [])];
  const quietBefore = await waitQuiet(own, QUIET_LIMIT, QUIET_WAIT_MS);
  const { conn } = await upgrade(nodes[0].port, "/publish");
  const publisher = new Publisher(conn);

  const sentAt = new Float64Array(RING);
  let inflight = 1;
  let publishing = true;
  let lastProgress = performance.now();
  const latencies: number[] = [];
  const firsts: number[] = [];
  let recordLatency = true;
  const pump = () => {
    while (publishing && publisher.seq - tally.completed < inflight) {
      const seq = publisher.publish();
      sentAt[seq & (RING - 1)] = performance.now();
    }
  };
  let phaseDone: () => void = () => {};
  let target = Infinity;
  tally.onComplete = (seq) => {
    const now = performance.now();
    lastProgress = now;
    if (recordLatency) {
      latencies.push(now - sentAt[seq & (RING - 1)]);
      firsts.push(tally.firstAt[seq & (RING - 1)] - sentAt[seq & (RING - 1)]);
    }
    if (tally.completed >= target) phaseDone();
    else pump();
  };
  // Watchdog: a message that does not reach every subscriber within 5 s
  // (lost, or a subscriber closed) ends the run as failed.
  const cleanup: (() => void)[] = [];
  const stalled = new Promise<never>((_, reject) => {
    const timer = setInterval(() => {
      if (publisher.seq > tally.completed && performance.now() - lastProgress > 5_000) {
        clearInterval(timer);
        reject(
          new Error(
            `${setup}: stalled at ${tally.completed}/${publisher.seq} messages; ` +
              tally.errors.join("; "),
          ),
        );
      }
    }, 250);
    cleanup.push(() => clearInterval(timer));
  });
  stalled.catch(() => {});
  const until = (count: number) => {
    target = count;
    return Promise.race([new Promise<void>((resolve) => phaseDone = resolve), stalled]);
  };

  try {
    // Warm-up (JIT on both sides), then latency with one message in flight.
    recordLatency = false;
    lastProgress = performance.now();
    let phase = until(50);
    pump();
    await phase;
    recordLatency = true;
    const latencyEnd = tally.completed + args.latencyMessages;
    // CPU per message with one in flight: whether the latency is work (and
    // whose) or waiting.
    const latencyCpu0 = nodes.reduce((sum, node) => sum + cpuSeconds(node.pid), 0);
    const latencyClient0 = cpuSeconds(Deno.pid);
    const latencyT0 = performance.now();
    phase = until(latencyEnd);
    pump();
    await phase;
    const latencyWall = (performance.now() - latencyT0) / args.latencyMessages;
    const latencyNodeCpu = (nodes.reduce((sum, node) =>
      sum + cpuSeconds(node.pid), 0) - latencyCpu0) *
      1000 /
      args.latencyMessages;
    const latencyClientCpu = (cpuSeconds(Deno.pid) - latencyClient0) * 1000 /
      args.latencyMessages;
    latencies.sort((a, b) => a - b);
    firsts.sort((a, b) => a - b);

    // Throughput: K in flight, 1 s of warm-up, then the measured window.
    recordLatency = false;
    inflight = args.inflight;
    target = Infinity;
    pump();
    await Promise.race([sleep(1_000), stalled]);
    const cpu0 = nodes.map((node) => cpuSeconds(node.pid));
    const client0 = cpuSeconds(Deno.pid);
    const redis0 = redis === null ? 0 : cpuSeconds(redis.pid);
    const machine0 = machineSeconds();
    const perNode = () =>
      nodes.map((node) => {
        const mine = subscribers.filter((sub) => sub.node === node.name);
        return [
          mine.reduce((sum, sub) => sum + sub.received, 0),
          mine.reduce((sum, sub) => sum + sub.reads, 0),
        ];
      });
    const reads0 = perNode();
    const deliveries0 = tally.deliveries;
    const t0 = performance.now();
    await Promise.race([sleep(args.seconds * 1000), stalled]);
    const seconds = (performance.now() - t0) / 1000;
    const deliveries = tally.deliveries - deliveries0;
    const nodeSeconds = nodes.map((node, k) => cpuSeconds(node.pid) - cpu0[k]);
    const clientSeconds = cpuSeconds(Deno.pid) - client0;
    const redisSeconds = redis === null ? 0 : cpuSeconds(redis.pid) - redis0;
    const machine1 = machineSeconds();
    const reads1 = perNode();
    const framesPerRead: Record<string, number> = {};
    nodes.forEach((node, k) =>
      framesPerRead[node.name] = (reads1[k][0] - reads0[k][0]) / (reads1[k][1] - reads0[k][1])
    );
    // Stop publishing; what is in flight must still arrive.
    publishing = false;
    if (publisher.seq > tally.completed) await until(publisher.seq);
    if (publisher.failed) tally.error(`publisher: ${publisher.failed.message}`);

    const nodeCpu: Record<string, number> = {};
    nodes.forEach((node, k) => nodeCpu[node.name] = (100 * nodeSeconds[k]) / seconds);
    const totalNode = nodeSeconds.reduce((a, b) => a + b, 0);
    return {
      setup,
      subscribers: args.subscribers,
      latencyMessages: latencies.length,
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      firstP50: percentile(firsts, 0.5),
      latencyWall,
      latencyNodeCpu,
      latencyClientCpu,
      deliveriesPerSecond: deliveries / seconds,
      seconds,
      nodeCpu,
      framesPerRead,
      nodeCpuNsPerDelivery: (totalNode * 1e9) / deliveries,
      clientCpu: (100 * clientSeconds) / seconds,
      redisCpu: redis === null ? null : (100 * redisSeconds) / seconds,
      irqCpu: (100 * (machine1.irq - machine0.irq)) / seconds,
      otherCpu: Math.max(
        0,
        (100 *
          (machine1.processes - machine0.processes - totalNode - clientSeconds - redisSeconds)) /
          seconds,
      ),
      quietBefore,
      serverCore: (100 * (machine1.core0 - machine0.core0)) / seconds,
      clientCore: (100 * (machine1.core1 - machine0.core1)) / seconds,
      errors: tally.errors,
    };
  } finally {
    for (const done of cleanup) done();
    publishing = false;
    publisher.close();
    for (const subscriber of subscribers) subscriber.close();
    await bounded(Promise.all(subscribers.map((s) => s.done)), 5_000, "closing subscribers")
      .catch(() => {});
  }
}

// ---------------------------------------------------------------- loadgen

const LOADGEN = `${
  Deno.env.get("WSBENCH_BUILD") ?? `${Deno.env.get("HOME")}/.cache/tsunagu-wsbench`
}/bin/loadgen`;

/** wsbench's loadgen (fanout, core 1) against one node without a broker. */
async function loadgenOneNode(args: Args): Promise<string> {
  const node = await startNode("A", undefined);
  try {
    const { stdout, success } = await bounded(
      new Deno.Command("taskset", {
        args: [
          "-c",
          CLIENT_CORE,
          LOADGEN,
          "fanout",
          "-p",
          String(node.port),
          "-n",
          String(args.subscribers),
          "-s",
          String(PAYLOAD),
          "--inflight",
          String(args.inflight),
          "-w",
          "1",
          "-t",
          String(args.seconds),
          "--pid",
          String(node.pid),
        ],
        stdout: "piped",
        stderr: "inherit",
      }).output(),
      (args.seconds + 40) * 1000,
      "loadgen",
    );
    const lines = decoder.decode(stdout).trim().split("\n");
    const json = JSON.parse(lines[lines.length - 1]);
    return `loadgen (C) against one node, no broker: ${lines[0]}` +
      (success && json.ok ? "" : " [INVALID]");
  } finally {
    await stopNode(node);
  }
}

// ---------------------------------------------------------------- publish cost

/** In a child on core 0: time per `publish` to a topic nobody subscribes to. */
async function publishCost(broker: RedisBroker | undefined, label: string): Promise<string> {
  const server = serve({ port: 0, hostname: "127.0.0.1", broker, onListen: () => {} }, {});
  const deadline = Date.now() + 10_000;
  while (broker !== undefined && !broker.up) {
    if (Date.now() > deadline) throw new Error("the broker did not come up");
    await sleep(10);
  }
  const N = 200_000;
  const payload = "x".repeat(64);
  // Warm-up, then measure; nobody subscribes anywhere. Yield now and then so
  // the broker's queue drains to Redis as it would in a real server.
  for (let k = 0; k < 10_000; k++) server.publish("nobody", payload);
  await sleep(0);
  let elapsed = 0;
  for (let chunk = 0; chunk < N / 1000; chunk++) {
    const start = performance.now();
    for (let k = 0; k < 1000; k++) server.publish("nobody", payload);
    elapsed += performance.now() - start;
    await sleep(0);
  }
  const dropped = broker?.metrics().dropped.queueFull ?? 0;
  await server.shutdown();
  return `| ${label} | ${((elapsed / N) * 1e6).toFixed(0)} ns | ${dropped} |`;
}

async function publishCostChild(redisUrl: string): Promise<void> {
  console.log(await publishCost(undefined, "no broker"));
  console.log(
    await publishCost(new RedisBroker({ url: redisUrl, onStateChange: () => {} }), "Redis broker"),
  );
}

// ---------------------------------------------------------------- main

const LATENCY_HEAD = [
  "| setup | first delivery p50 ms | last delivery p50 ms | p99 ms | wall ms/message " +
  "| node CPU ms/message | client CPU ms/message |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
];

/** One in flight: publish to first and to last delivery, and where the time went. */
function latencyRow(m: Measurement): string {
  return `| ${m.setup} | ${m.firstP50.toFixed(2)} | ${m.p50.toFixed(2)} | ${m.p99.toFixed(2)} | ${
    m.latencyWall.toFixed(2)
  } | ${m.latencyNodeCpu.toFixed(2)} | ${m.latencyClientCpu.toFixed(2)} |`;
}

/**
 * What bounds a deliveries/s figure, as wsbench judges it: a core at >= 90%
 * is the limit (its side's figure is a ceiling, the other's a lower bound);
 * other processes over 25% of a core make the figure unreliable; with
 * neither, the K messages in flight (each waiting for its slowest
 * subscriber) bound it.
 */
function limitedBy(m: Measurement): string {
  if (m.otherCpu > 25) return "noisy";
  const server = m.serverCore >= 90;
  const client = m.clientCore >= 90;
  if (server && client) return "both cores";
  if (server) return "server core";
  if (client) return "client core";
  return "in-flight window";
}

const RATE_HEAD = [
  "| setup | deliveries/s | node CPU | node CPU ns/delivery | frames/read | client CPU " +
  "| client CPU ns/delivery | redis CPU | irq CPU | other procs (before) | core 0 / 1 busy " +
  "| limited by |",
  "| --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
];

/** K in flight: deliveries per second and the CPU of every party (% of one core). */
function rateRow(m: Measurement): string {
  const cpu = Object.entries(m.nodeCpu).map(([name, value]) => `${name} ${value.toFixed(0)}%`)
    .join(", ");
  const clientNs = (m.clientCpu / 100) * 1e9 / m.deliveriesPerSecond;
  const frames = Object.entries(m.framesPerRead).map(([name, value]) =>
    `${name} ${value.toFixed(1)}`
  ).join(", ");
  return `| ${m.setup} | ${Math.round(m.deliveriesPerSecond).toLocaleString("en")} | ${cpu} | ${
    m.nodeCpuNsPerDelivery.toFixed(0)
  } | ${frames} | ${m.clientCpu.toFixed(0)}% | ${clientNs.toFixed(0)} | ${
    m.redisCpu === null ? "–" : `${m.redisCpu.toFixed(0)}%`
  } | ${m.irqCpu.toFixed(0)}% | ${m.otherCpu.toFixed(0)}% (${m.quietBefore.toFixed(0)}%) | ${
    m.serverCore.toFixed(0)
  }% / ${m.clientCore.toFixed(0)}% | ${limitedBy(m)} |${
    m.errors.length > 0 ? ` INVALID: ${m.errors.join("; ")}` : ""
  }`;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function main(args: Args): Promise<void> {
  // This process holds the clients: pin it (all threads) and, through
  // inheritance, the redis-server it starts to the client core.
  const pin = await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", CLIENT_CORE, String(Deno.pid)],
    stdout: "null",
  }).output();
  if (!pin.success) throw new Error("taskset could not pin the client process");
  const load = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  console.log(
    `pinning: server nodes on core ${SERVER_CORE} (taskset), clients and redis-server on core ` +
      `${CLIENT_CORE}; ${args.subscribers} subscribers, ${PAYLOAD}-byte text messages, ` +
      `${args.inflight} in flight for deliveries/s (${args.seconds} s after 1 s of warm-up), ` +
      `1 in flight for latency (${args.latencyMessages} messages); load average before: ${load}`,
  );
  const redis = await startRedis();
  const results: Measurement[] = [];
  try {
    const setups = [
      {
        name: "one node, no broker",
        tag: "single",
        start: (dir?: string) => Promise.all([startNode("A", undefined, dir && `${dir}-A`)]),
        broker: false,
      },
      // The broker's own cost under load (PUBLISH out, the node's own
      // messages back from Redis) without the split into two processes.
      {
        name: "one node with the Redis broker, no other node",
        tag: "single-broker",
        start: (dir?: string) => Promise.all([startNode("A", redis.url, dir && `${dir}-A`)]),
        broker: true,
      },
      {
        name: "nodes A + B through Redis (publisher on A)",
        tag: "broker",
        start: (dir?: string) =>
          Promise.all([
            startNode("A", redis.url, dir && `${dir}-A`),
            startNode("B", redis.url, dir && `${dir}-B`),
          ]),
        broker: true,
      },
    ];
    const redisInfo = { port: redis.port, pid: redisPid(redis.port) };
    for (let run = 1; run <= args.runs; run++) {
      const order = run % 2 === 1 ? setups : [...setups].reverse();
      for (const setup of order) {
        const dir = args.profile === undefined
          ? undefined
          : `${args.profile}/${setup.tag}-run${run}`;
        const nodes = await setup.start(dir);
        try {
          const m = await measure(setup.name, nodes, args, setup.broker ? redisInfo : null);
          results.push(m);
          console.log(`run ${run}: ${latencyRow(m)}\nrun ${run}: ${rateRow(m)}`);
        } finally {
          await Promise.all(nodes.map(stopNode));
        }
      }
    }

    const lines = [
      "",
      `1 in flight, ${args.latencyMessages} messages per run:`,
      ...LATENCY_HEAD,
      ...results.map(latencyRow),
      "",
      `${args.inflight} in flight, ${args.seconds} s per run:`,
      ...RATE_HEAD,
      ...results.map(rateRow),
    ];
    if (args.runs > 1) {
      lines.push(
        "",
        "| setup | median p50 ms | median p99 ms | median deliveries/s |",
        "| --- | ---: | ---: | ---: |",
      );
      for (const setup of setups) {
        const mine = results.filter((m) => m.setup === setup.name);
        lines.push(
          `| ${setup.name} | ${median(mine.map((m) => m.p50)).toFixed(2)} | ${
            median(mine.map((m) => m.p99)).toFixed(2)
          } | ${Math.round(median(mine.map((m) => m.deliveriesPerSecond))).toLocaleString("en")} |`,
        );
      }
    }
    console.log(lines.join("\n"));

    if (args.loadgen) console.log("\n" + await loadgenOneNode(args));

    if (args.publishCost) {
      const { stdout, success } = await bounded(
        new Deno.Command("taskset", {
          args: [
            "-c",
            SERVER_CORE,
            Deno.execPath(),
            "run",
            "-A",
            SELF,
            "--publish-cost-child",
            redis.url,
          ],
          stdout: "piped",
          stderr: "inherit",
        }).output(),
        120_000,
        "publish cost",
      );
      if (!success) throw new Error("the publish-cost child failed");
      console.log(
        [
          "",
          `publish, nobody listening (200,000 publishes of 64 bytes, core ${SERVER_CORE}):`,
          "| publish, nobody listening | time per publish | queueFull drops |",
          "| --- | ---: | ---: |",
          decoder.decode(stdout).trim(),
        ].join("\n"),
      );
    }
  } finally {
    await redis.stop();
  }
}

if (Deno.args[0] === "--publish-cost-child") await publishCostChild(Deno.args[1]);
else await main(parseArgs(Deno.args));
