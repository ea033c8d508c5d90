/**
 * Soak test (`deno task soak`, not run in CI): an echo server in a
 * subprocess, hammered by many raw clients for a while, with its memory
 * watched.
 *
 *   deno run -A bench/soak.ts [--clients N] [--duration SECONDS] [--seed N]
 *
 * Each client runs sessions back to back until the time is up: connect,
 * handshake, send 1-40 messages of random size (1 B - 64 KiB, text or binary,
 * up to 8 in flight), then either close cleanly (a close frame right behind
 * the last message: the server must echo every message before it echoes the
 * close) or drop the TCP connection abruptly, sometimes in the middle of a
 * frame. On cleanly closed sessions every echo is compared with what was sent.
 *
 * Reports the server's resident memory (VmRSS from /proc) at start, peak and
 * end, and messages sent vs echoed on clean sessions. Exits 1 if those differ,
 * an echo was wrong, a session hung, or the server misbehaved; 2 on bad flags.
 *
 * The server half is this same file run with `--serve`: it prints its port,
 * answers `stats` / `gc` lines on stdin with a JSON line, and shuts down when
 * stdin closes.
 *
 * @module
 */

import { FrameParser, MessageAssembler, type MessageHandler, serve } from "../mod.ts";
import { clientFrame, closePayload } from "../tests/helpers/frames.ts";
import { Rng } from "../tests/fuzz/frame_fuzz.ts";

const USAGE = "usage: deno task soak [--clients N] [--duration SECONDS] [--seed N]";
const SESSION_TIMEOUT_MS = 20_000;
const MAX_MESSAGE = 64 * 1024;

// ---- shared: lines over a byte stream -----------------------------------------

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
  if (buffered !== "") yield buffered;
}

// ---- the server process -----------------------------------------------------------

interface ServerStats {
  connections: number;
  opened: number;
  closes: Record<string, number>;
  messages: number;
  bytes: number;
  errors: string[];
  rss: number;
  /** V8 heap in use plus external (ArrayBuffer) memory: what a leak would grow. */
  heap: number;
}

async function runServer(): Promise<void> {
  const stats: ServerStats = {
    connections: 0,
    opened: 0,
    closes: {},
    messages: 0,
    bytes: 0,
    errors: [],
    rss: 0,
    heap: 0,
  };
  const server = serve({ hostname: "127.0.0.1", port: 0 }, {
    open() {
      stats.opened++;
    },
    message(socket, data) {
      stats.messages++;
      stats.bytes += typeof data === "string" ? new TextEncoder().encode(data).length : data.length;
      socket.send(data);
    },
    close(_socket, code) {
      stats.closes[code] = (stats.closes[code] ?? 0) + 1;
    },
    error(error) {
      if (stats.errors.length < 10) stats.errors.push(String(error));
    },
  });
  const report = () => {
    stats.connections = server.connectionCount;
    const memory = Deno.memoryUsage();
    stats.rss = memory.rss;
    stats.heap = memory.heapUsed + memory.external;
    console.log(JSON.stringify(stats));
  };
  console.log(JSON.stringify({ port: server.addr.port }));
  for await (const line of lines(Deno.stdin.readable)) {
    if (line === "gc") {
      // Several passes, with turns between them: ArrayBuffers are released
      // by callbacks that run after the collection that found them dead.
      for (let i = 0; i < 3; i++) {
        (globalThis as { gc?: () => void }).gc?.();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    if (line === "stats" || line === "gc") report();
  }
  await server.shutdown({ timeout: 2_000 });
  report();
}

// ---- the client side ------------------------------------------------------------

interface Args {
  clients: number;
  duration: number;
  seed: number;
}

function usage(message: string): never {
  console.error(`soak: ${message}\n${USAGE}`);
  Deno.exit(2);
}

function parseArgs(args: string[]): Args {
  const result: Args = {
    clients: 200,
    duration: 30,
    seed: crypto.getRandomValues(new Uint32Array(1))[0],
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const eq = arg.indexOf("=");
    const flag = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    const text = flag === arg ? args[++i] : arg.slice(eq + 1);
    const limits: Record<string, [number, number]> = {
      "--clients": [1, 10_000],
      "--duration": [1, 86_400],
      "--seed": [0, 0xffff_ffff],
    };
    const range = limits[flag];
    if (range === undefined) usage(`unknown argument ${JSON.stringify(arg)}`);
    if (text === undefined) usage(`${flag} needs a value`);
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < range[0] || value > range[1]) {
      usage(
        `${flag} takes an integer from ${range[0]} to ${range[1]}, got ${JSON.stringify(text)}`,
      );
    }
    result[flag.slice(2) as keyof Args] = value;
  }
  return result;
}

interface Totals {
  sessions: number;
  clean: number;
  abrupt: number;
  failed: number;
  sentClean: number;
  echoedClean: number;
  sentAbrupt: number;
  failures: string[];
}

function fail(totals: Totals, message: string): void {
  totals.failed++;
  if (totals.failures.length < 10) totals.failures.push(message);
}

// Text is cut from a pool of BMP characters (no surrogate pairs to split).
const TEXT_POOL = (() => {
  const rng = new Rng(1);
  const alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;é€ñ日本語✓";
  return Array.from({ length: 2 * MAX_MESSAGE }, () => alphabet[rng.int(alphabet.length)]).join("");
})();

function randomMessage(rng: Rng): string | Uint8Array {
  // Log-uniform: as many 1-2 byte messages as 32-64 KiB ones.
  const size = Math.min(MAX_MESSAGE, Math.max(1, Math.floor(2 ** (rng.float() * 16.01))));
  if (rng.chance(0.5)) {
    const start = rng.int(TEXT_POOL.length - size);
    return TEXT_POOL.slice(start, start + size);
  }
  const bytes = new Uint8Array(size);
  crypto.getRandomValues(bytes);
  return bytes;
}

function sameMessage(a: string | Uint8Array, b: string | Uint8Array): boolean {
  if (typeof a === "string" || typeof b === "string") return a === b;
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

const HANDSHAKE = (port: number) =>
  new TextEncoder().encode(
    `GET /soak HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/** One connection's life. Never throws; every wait is bounded by the session deadline. */
async function session(rng: Rng, port: number, totals: Totals): Promise<void> {
  totals.sessions++;
  const deadline = Date.now() + SESSION_TIMEOUT_MS;
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (error) {
    return fail(totals, `connect: ${error}`);
  }
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }, SESSION_TIMEOUT_MS);
  const pending: (string | Uint8Array)[] = [];
  let echoed = 0;
  let mismatch: string | null = null;
  let closeCode: number | null = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    const resolve = wake;
    wake = null;
    resolve?.();
  };
  const echo = (data: string | Uint8Array) => {
    const expected = pending.shift();
    if (expected === undefined || !sameMessage(expected, data)) {
      mismatch ??= `echo ${echoed} differs from what was sent`;
    }
    echoed++;
    notify();
  };
  const pongs: Uint8Array[] = [];
  const handler: MessageHandler = {
    onText: echo,
    onBinary: echo,
    onPing: (payload) => void pongs.push(clientFrame({ opcode: 0xa, payload: payload.slice() })),
    onPong: () => {},
    onClose: (code) => {
      closeCode = code;
      notify();
    },
    onProtocolError: (code, message) => {
      mismatch ??= `server sent a bad frame (${code}: ${message})`;
      notify();
    },
  };
  const parser = new FrameParser(new MessageAssembler(handler, { maxPayload: 1 << 20 }), {
    expectMasked: false,
  });
  let ended = false;
  const reading = (async () => {
    const buffer = new Uint8Array(64 * 1024);
    let head = true;
    let headBytes = new Uint8Array(0);
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) break;
        let chunk = buffer.subarray(0, n);
        if (head) {
          const joined = new Uint8Array(headBytes.length + n);
          joined.set(headBytes);
          joined.set(chunk, headBytes.length);
          const text = new TextDecoder("latin1").decode(joined);
          const end = text.indexOf("\r\n\r\n");
          if (end < 0) {
            headBytes = joined;
            continue;
          }
          if (!text.startsWith("HTTP/1.1 101 ")) {
            mismatch ??= `handshake refused: ${text.split("\r\n")[0]}`;
            break;
          }
          head = false;
          chunk = joined.subarray(end + 4);
          notify();
        }
        parser.push(chunk);
        if (pongs.length > 0) await writeAll(conn, pongs.splice(0).reduce(concatBytes));
      }
    } catch {
      // Reset, or closed by us.
    }
    ended = true;
    notify();
  })();
  const waitFor = async (condition: () => boolean): Promise<boolean> => {
    while (!condition()) {
      if (ended || Date.now() > deadline) return condition();
      await new Promise<void>((resolve) => wake = resolve);
    }
    return true;
  };

  const count = rng.between(1, 40);
  const window = rng.between(1, 8);
  const roll = rng.float();
  const abruptAfter = roll < 0.7 ? -1 : rng.int(count + 1); // 30% of sessions drop the connection
  let sent = 0;
  try {
    await writeAll(conn, HANDSHAKE(port));
    for (; sent < count; sent++) {
      if (sent === abruptAfter) break;
      if (!await waitFor(() => pending.length < window)) break;
      const message = randomMessage(rng);
      pending.push(message);
      await writeAll(
        conn,
        clientFrame({
          opcode: typeof message === "string" ? 1 : 2,
          payload: message,
          mask: rng.bytes(4),
        }),
      );
    }
    if (abruptAfter >= 0) {
      // Sometimes half a frame first, then the TCP connection just goes away.
      if (rng.chance(0.5)) {
        const frame = clientFrame({ opcode: 2, payload: new Uint8Array(rng.between(10, 5_000)) });
        await writeAll(conn, frame.subarray(0, rng.between(1, frame.length - 1)));
      }
    } else {
      await writeAll(
        conn,
        clientFrame({ opcode: 8, payload: closePayload(1000, "bye"), mask: rng.bytes(4) }),
      );
    }
  } catch (error) {
    if (abruptAfter < 0) mismatch ??= `write failed: ${error}`;
  }
  if (abruptAfter >= 0) {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
    await reading;
    clearTimeout(timer);
    totals.abrupt++;
    totals.sentAbrupt += sent;
    return;
  }
  await waitFor(() => ended);
  clearTimeout(timer);
  try {
    conn.close();
  } catch {
    // The server closed first, as it should.
  }
  await reading;
  if (mismatch !== null) return fail(totals, mismatch);
  if (closeCode !== 1000) {
    return fail(totals, `session ended without the close echo (got ${closeCode})`);
  }
  totals.clean++;
  totals.sentClean += sent;
  totals.echoedClean += echoed;
  if (echoed !== sent) fail(totals, `sent ${sent} messages, ${echoed} echoed before the close`);
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function vmRss(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return match === null ? NaN : Number(match[1]) * 1024;
}

function openFds(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

const mib = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const args = parseArgs(Deno.args);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", import.meta.filename!, "--serve"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = child.stdin.getWriter();
  const replies = lines(child.stdout);
  const next = async <T>(): Promise<T> => {
    const { value, done } = await replies.next();
    if (done) throw new Error("the server process exited");
    return JSON.parse(value) as T;
  };
  const ask = async (command: string): Promise<ServerStats> => {
    await stdin.write(new TextEncoder().encode(`${command}\n`));
    return await next<ServerStats>();
  };
  const { port } = await next<{ port: number }>();
  const heapStart = (await ask("gc")).heap;
  const rssStart = vmRss(child.pid);
  const fdsStart = openFds(child.pid);
  let rssPeak = rssStart;
  console.log(
    `soak: ${args.clients} clients for ${args.duration} s, seed ${args.seed}, server pid ${child.pid} on 127.0.0.1:${port}`,
  );
  const totals: Totals = {
    sessions: 0,
    clean: 0,
    abrupt: 0,
    failed: 0,
    sentClean: 0,
    echoedClean: 0,
    sentAbrupt: 0,
    failures: [],
  };
  const started = Date.now();
  const stopAt = started + args.duration * 1_000;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, vmRss(child.pid));
  }, 250);
  const seeds = new Rng(args.seed);
  await Promise.all(Array.from({ length: args.clients }, async () => {
    const rng = new Rng(seeds.u32());
    while (Date.now() < stopAt) await session(rng, port, totals);
  }));
  clearInterval(sampler);
  const rssLoaded = vmRss(child.pid);
  // Every client has finished; the server must drop to zero connections.
  let stats = await ask("stats");
  for (let i = 0; i < 50 && stats.connections > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    stats = await ask("stats");
  }
  stats = await ask("gc");
  const rssEnd = vmRss(child.pid);
  const fdsEnd = openFds(child.pid);
  await stdin.close();
  const final = await next<ServerStats>();
  const status = await child.status;
  const seconds = (Date.now() - started) / 1000;

  console.log(`\nsessions: ${totals.sessions} in ${seconds.toFixed(1)} s`);
  console.log(
    `  closed cleanly ${totals.clean}, dropped abruptly ${totals.abrupt}, failed ${totals.failed}`,
  );
  console.log(
    `  messages on clean sessions: sent ${totals.sentClean}, echoed ${totals.echoedClean}`,
  );
  console.log(`  messages on dropped sessions: sent ${totals.sentAbrupt} (echoes not counted)`);
  console.log(
    `server: ${final.opened} connections opened, ${final.messages} messages, ${
      mib(final.bytes)
    } echoed`,
  );
  console.log(`  close codes seen by the close handler: ${JSON.stringify(final.closes)}`);
  console.log(
    `  connections left after the clients: ${stats.connections}; error handler calls: ${final.errors.length}`,
  );
  console.log(
    `  resident memory (VmRSS): start ${mib(rssStart)}, peak ${mib(rssPeak)}, loaded end ${
      mib(rssLoaded)
    }, idle after gc ${mib(rssEnd)}`,
  );
  console.log(`  JS heap + external after gc: start ${mib(heapStart)}, end ${mib(stats.heap)}`);
  console.log(`  open file descriptors: start ${fdsStart}, end ${fdsEnd}`);
  console.log(`  process exit code ${status.code}`);

  const problems = [...totals.failures];
  if (totals.sentClean !== totals.echoedClean) {
    problems.push(`clean sessions: ${totals.sentClean} sent but ${totals.echoedClean} echoed`);
  }
  if (totals.clean === 0) problems.push("no session closed cleanly");
  if (stats.connections !== 0) {
    problems.push(`${stats.connections} connections still open on the server`);
  }
  if (final.errors.length > 0) problems.push(`server errors: ${final.errors.join("; ")}`);
  if (status.code !== 0) problems.push(`server exited with ${status.code}`);
  if (problems.length > 0) {
    console.error(
      `\nSOAK FAILED (seed ${args.seed}):\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
    Deno.exit(1);
  }
  console.log("ok");
}

if (Deno.args[0] === "--serve") await runServer();
else await main();
