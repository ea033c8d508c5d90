/**
 * The `tsunagu` CLI: the argument parser and help texts as units, `runCli`
 * in-process, and every flag and error path as a user meets them, with
 * `deno run src/cli/main.ts …` as a subprocess on 127.0.0.1 port 0. Every
 * subprocess is bounded (SIGKILL on a deadline) and awaited.
 */

import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import {
  type CliCommand,
  type CliError,
  parseCliArgs,
  parseDuration,
  parseSize,
  runCli,
  type ServeConfig,
  usage,
} from "../../src/cli/main.ts";
import { CHAT_PAGE_HTML } from "../../src/cli/chat.ts";
import { contentType } from "../../src/cli/static_files.ts";
import { serve } from "../../src/server/server.ts";
import { type ExampleProcess, ROOT, startExample } from "../helpers/example_process.ts";
import { type Finished, runCliProcess as runWith } from "../helpers/cli_process.ts";
import { TestClient, waitUntil } from "../helpers/harness.ts";
import { buildUpgradeRequest, type HttpResponse, OP, RawClient } from "../helpers/raw_client.ts";
import { clientFrame, closePayload } from "../helpers/frames.ts";

const FLAG_NAMES = [
  "port",
  "hostname",
  "mode",
  "path",
  "static",
  "metrics",
  "health",
  "max-payload",
  "max-connections",
  "idle-timeout",
  "cert",
  "key",
  "deflate",
  "reuse-port",
  "workers",
  "protocol",
  "origin",
  "redis",
  "redis-prefix",
  "log-format",
  "quiet",
];

/** The permissions the README gives for `deno run`, narrowed to loopback. */
const PERMISSIONS = ["--allow-net=127.0.0.1", "--allow-read"];

// ---------------------------------------------------------------------------
// Units: parser, sizes, durations, help.

function serveConfig(args: string[]): ServeConfig {
  const parsed = parseCliArgs(["serve", ...args]);
  assert.ok(!("error" in parsed), `unexpected error: ${(parsed as CliError).error}`);
  assert.equal(parsed.command, "serve");
  return (parsed as Extract<CliCommand, { command: "serve" }>).config;
}

function parseError(args: string[]): CliError {
  const parsed = parseCliArgs(args);
  assert.ok("error" in parsed, `expected an error for ${JSON.stringify(args)}`);
  assert.ok(!parsed.error.includes("\n"), "one line");
  return parsed;
}

Deno.test("cli args: serve defaults", () => {
  assert.deepEqual(serveConfig([]), {
    port: 8080,
    hostname: "0.0.0.0",
    mode: "echo",
    maxPayload: 16 * 1024 * 1024,
    idleTimeout: 120_000,
    logFormat: "text",
    quiet: false,
    deflate: false,
    reusePort: false,
    workers: 1,
    protocols: [],
    origins: [],
    redisPrefix: "tsunagu:",
  });
});

Deno.test("cli args: every flag, with separate and = values, and short forms", () => {
  assert.deepEqual(
    serveConfig([
      "--port",
      "9000",
      "--hostname=127.0.0.1",
      "--mode",
      "broadcast",
      "--path=/ws",
      "--static",
      "public",
      "--metrics=/metrics",
      "--health",
      "/healthz",
      "--max-payload",
      "64kb",
      "--max-connections=10",
      "--idle-timeout",
      "30s",
      "--cert",
      "c.pem",
      "--key=k.pem",
      "--log-format",
      "json",
      "--quiet",
      "--deflate",
      "--reuse-port",
      "--workers",
      "3",
    ]),
    {
      port: 9000,
      hostname: "127.0.0.1",
      mode: "broadcast",
      path: "/ws",
      staticDir: "public",
      metricsPath: "/metrics",
      healthPath: "/healthz",
      maxPayload: 65536,
      maxConnections: 10,
      idleTimeout: 30_000,
      certFile: "c.pem",
      keyFile: "k.pem",
      logFormat: "json",
      quiet: true,
      deflate: true,
      reusePort: true,
      workers: 3,
      protocols: [],
      origins: [],
      redisPrefix: "tsunagu:",
    },
  );
  const short = serveConfig(["-p", "0", "-q", "--mode=chat", "--max-connections", "unlimited"]);
  assert.deepEqual([short.port, short.quiet, short.mode], [0, true, "chat"]);
  assert.equal(short.maxConnections, Infinity);
  assert.equal(serveConfig(["--port", "1", "--port", "2"]).port, 2, "the last one wins");
  assert.equal(serveConfig(["--idle-timeout", "0"]).idleTimeout, 0);
  assert.equal(serveConfig(["--mode", "chat", "--path", "/chat"]).path, "/chat");
});

Deno.test("cli args: sizes and durations", () => {
  const sizes: [string, number | null][] = [
    ["0", 0],
    ["100", 100],
    ["100b", 100],
    ["1k", 1024],
    ["1KB", 1024],
    ["2kib", 2048],
    ["16mb", 16 * 1024 ** 2],
    ["16M", 16 * 1024 ** 2],
    ["1.5kb", 1536],
    ["1gb", 1024 ** 3],
    [" 8 mb ", 8 * 1024 ** 2],
    ["", null],
    ["mb", null],
    ["-1", null],
    ["1tb", null],
    ["1e3", null],
    ["0x10", null],
    ["99999999999999999999gb", null],
  ];
  for (const [text, expected] of sizes) assert.equal(parseSize(text), expected, text);
  const durations: [string, number | null][] = [
    ["0", 0],
    ["30", 30_000],
    ["30s", 30_000],
    ["250ms", 250],
    ["1.5s", 1500],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["1H", 3_600_000],
    ["", null],
    ["s", null],
    ["-5s", null],
    ["5d", null],
    ["soon", null],
  ];
  for (const [text, expected] of durations) assert.equal(parseDuration(text), expected, text);
});

Deno.test("cli args: every mistake is one error line naming the problem", () => {
  const cases: [string[], RegExp, "main" | "serve"][] = [
    [[], /missing command/, "main"],
    [["frobnicate"], /unknown command "frobnicate"/, "main"],
    [["--bogus"], /unknown flag --bogus/, "main"],
    [["serve", "--bogus"], /unknown flag --bogus/, "serve"],
    [["serve", "--bogus=1"], /unknown flag --bogus$/, "serve"],
    [["serve", "extra"], /unexpected argument "extra"/, "serve"],
    [["serve", "--port"], /missing value for --port/, "serve"],
    [["serve", "--port", "--quiet"], /missing value for --port/, "serve"],
    [["serve", "--port", "70000"], /invalid value "70000" for --port: .*0 to 65535/, "serve"],
    [["serve", "--port", "-1"], /invalid value "-1" for --port/, "serve"],
    [["serve", "--port", "80.5"], /invalid value "80.5" for --port/, "serve"],
    [["serve", "--port", "http"], /invalid value "http" for --port/, "serve"],
    [["serve", "--hostname="], /for --hostname: expected a non-empty value/, "serve"],
    [
      ["serve", "--mode", "party"],
      /invalid value "party" for --mode: expected echo, broadcast, chat/,
      "serve",
    ],
    [["serve", "--path", "ws"], /for --path: expected a URL path/, "serve"],
    [
      ["serve", "--metrics", "metrics"],
      /for --metrics: expected a URL path such as \/metrics/,
      "serve",
    ],
    [["serve", "--health=/h?x"], /for --health: expected a URL path/, "serve"],
    [["serve", "--path", "/ws?x=1"], /for --path/, "serve"],
    [["serve", "--static="], /for --static/, "serve"],
    [["serve", "--max-payload", "lots"], /for --max-payload: expected a size/, "serve"],
    [["serve", "--max-payload", "0"], /for --max-payload/, "serve"],
    [["serve", "--max-connections", "0"], /for --max-connections/, "serve"],
    [["serve", "--max-connections", "many"], /for --max-connections/, "serve"],
    [["serve", "--idle-timeout", "soon"], /for --idle-timeout: expected a duration/, "serve"],
    [
      ["serve", "--idle-timeout", "50ms"],
      /for --idle-timeout: expected 0 \(off\) or at least 100ms/,
      "serve",
    ],
    [["serve", "--log-format", "xml"], /for --log-format: expected text, json/, "serve"],
    [["serve", "--quiet=yes"], /--quiet takes no value/, "serve"],
    [["serve", "--cert", "c.pem"], /--cert and --key must be given together/, "serve"],
    [["serve", "--key", "k.pem"], /--cert and --key must be given together/, "serve"],
    [["serve", "--mode", "chat", "--path", "/room"], /--path must be \/chat/, "serve"],
  ];
  for (const [args, pattern, topic] of cases) {
    const error = parseError(args);
    assert.match(error.error, pattern, JSON.stringify(args));
    assert.equal(error.topic, topic, JSON.stringify(args));
  }
});

Deno.test("cli args: help and version commands", () => {
  for (const args of [["--help"], ["-h"], ["help"]]) {
    assert.deepEqual(parseCliArgs(args), { command: "help", topic: "main" });
  }
  for (const args of [["serve", "--help"], ["serve", "--port", "1", "-h"], ["help", "serve"]]) {
    assert.deepEqual(parseCliArgs(args), { command: "help", topic: "serve" });
  }
  // --help wins over a mistake next to it: the user is asking how to fix it.
  assert.deepEqual(parseCliArgs(["serve", "--port", "x", "--help"]), {
    command: "help",
    topic: "serve",
  });
  for (const args of [["--version"], ["-V"], ["version"]]) {
    assert.deepEqual(parseCliArgs(args), { command: "version" });
  }
});

Deno.test("cli help: both texts list every flag with its default, sizes and durations", () => {
  for (const topic of ["main", "serve"] as const) {
    const text = usage(topic, "9.9.9");
    assert.match(text, /tsunagu 9\.9\.9/);
    for (const name of FLAG_NAMES) {
      // The flag's entry runs from its name to the next flag; it shows a default.
      const entry = new RegExp(`\\n {2}(?:-\\w, | {4})--${name}\\b[^]*?\\(default: [^)]+\\)`)
        .exec(text);
      assert.ok(entry !== null, `${topic} help: --${name} with its default`);
      assert.ok(
        !/\n {2}(-\w, | {4})--/.test(entry[0].slice(1)),
        `${topic}: --${name}'s own default`,
      );
    }
    assert.match(text, /\(default: 8080\)/);
    assert.match(text, /\(default: 0\.0\.0\.0\)/);
    assert.match(text, /\(default: echo\)/);
    assert.match(text, /\(default: 16mb\)/);
    assert.match(text, /\(default: 120s\)/);
    assert.match(text, /Sizes are bytes/);
    assert.match(text, /Durations are seconds/);
    for (const line of text.split("\n")) assert.ok(line.length <= 80, `line too long: ${line}`);
  }
  assert.match(usage("main"), /Exit codes: 0 success, 1 .*, 2/s);
});

Deno.test("static files: content types by extension", () => {
  assert.equal(contentType("index.html"), "text/html; charset=utf-8");
  assert.equal(contentType("a/b/APP.JS"), "text/javascript; charset=utf-8");
  assert.equal(contentType("s.css"), "text/css; charset=utf-8");
  assert.equal(contentType("d.json"), "application/json; charset=utf-8");
  assert.equal(contentType("p.png"), "image/png");
  assert.equal(contentType("i.svg"), "image/svg+xml");
  assert.equal(contentType("m.wasm"), "application/wasm");
  assert.equal(contentType("README"), "application/octet-stream");
  assert.equal(contentType("x.unknown"), "application/octet-stream");
});

// ---------------------------------------------------------------------------
// runCli in-process.

async function runCaptured(
  args: string[],
): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, { stdout: (l) => out.push(l), stderr: (l) => err.push(l) });
  return { code, out, err };
}

Deno.test("runCli: --version, --help, and errors as exit codes", async () => {
  const version = await runCaptured(["--version"]);
  assert.deepEqual(version, { code: 0, out: [`tsunagu ${denoJson.version}`], err: [] });
  const help = await runCaptured(["serve", "--help"]);
  assert.equal(help.code, 0);
  assert.equal(help.out.length, 1);
  assert.equal(help.out[0], usage("serve", denoJson.version).trimEnd());
  const bad = await runCaptured(["serve", "--mode", "party"]);
  assert.equal(bad.code, 2);
  assert.deepEqual(bad.out, []);
  assert.deepEqual(bad.err, [
    'tsunagu: invalid value "party" for --mode: expected echo, broadcast, chat',
    "Run 'tsunagu serve --help' for usage.",
  ]);
});

Deno.test("runCli: serves in-process until its signal aborts", async () => {
  const out: string[] = [];
  const stop = new AbortController();
  let port = 0;
  const listening = Promise.withResolvers<void>();
  const done = runCli(["serve", "--port", "0", "--hostname", "127.0.0.1"], {
    stdout: (line) => out.push(line),
    stderr: (line) => out.push(line),
    signal: stop.signal,
    onListen(addr) {
      port = addr.port;
      listening.resolve();
    },
  });
  await listening.promise;
  const client = await TestClient.open(`ws://127.0.0.1:${port}/in-process`);
  try {
    client.ws.send("ping");
    assert.equal(await client.next(), "ping");
    stop.abort();
    assert.equal((await client.waitClosed()).code, 1001);
  } finally {
    await client.dispose();
  }
  assert.equal(await done, 0);
  assert.match(out.join("\n"), /listening on ws:\/\/127\.0\.0\.1:\d+\//);
  assert.match(out.at(-1)!, /stopped$/);
});

// ---------------------------------------------------------------------------
// Subprocess helpers.

function runCliProcess(args: string[], flags = PERMISSIONS): Promise<Finished> {
  return runWith(args, flags);
}

/** Starts `tsunagu serve` on 127.0.0.1, port 0, with `args`. */
function startCli(args: string[], flags = PERMISSIONS): Promise<ExampleProcess> {
  return startExample("src/cli/main.ts", flags, [
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    ...args,
  ]);
}

/** The lines the process wrote to stdout so far. */
function stdoutLines(process: ExampleProcess): string[] {
  const output = process.output();
  const start = output.indexOf("--- stdout ---\n") + "--- stdout ---\n".length;
  const end = output.lastIndexOf("--- stderr ---\n");
  return output.slice(start, end).split("\n").filter((line) => line !== "");
}

/** Stops with SIGTERM and asserts exit code 0. */
async function stopCleanly(process: ExampleProcess): Promise<void> {
  const status = await process.stop("SIGTERM");
  assert.equal(status.code, 0, process.output());
}

/** A server test: starts the CLI, runs `body`, always stops it (SIGKILL on failure). */
async function withCli(
  args: string[],
  body: (process: ExampleProcess, url: URL) => Promise<void>,
  flags = PERMISSIONS,
): Promise<void> {
  const process = await startCli(args, flags);
  try {
    await body(process, process.url);
    await stopCleanly(process);
  } finally {
    await process.close();
  }
}

/** Sends one raw HTTP request and reads its response (the connection may persist). */
async function rawRequest(port: number, head: string): Promise<HttpResponse> {
  using client = await RawClient.connect(port);
  await client.write(head);
  return await client.readResponse({ method: head.slice(0, head.indexOf(" ")) });
}

function get(port: number, target: string, method = "GET"): Promise<HttpResponse> {
  return rawRequest(port, `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
}

function wsUrl(url: URL, path: string): string {
  return `ws://${url.host}${path}`;
}

// ---------------------------------------------------------------------------
// Subprocess: commands that end by themselves.

Deno.test("cli process: --help and serve --help print usage to stdout, exit 0", async () => {
  for (const args of [["--help"], ["serve", "--help"]]) {
    const run = await runCliProcess(args, []);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, "");
    for (const name of FLAG_NAMES) assert.match(run.stdout, new RegExp(`--${name}\\b`));
    assert.match(run.stdout, /\(default: 8080\)/);
  }
});

Deno.test("cli process: --version prints the deno.json version", async () => {
  const run = await runCliProcess(["--version"], []);
  assert.deepEqual(run, { code: 0, stdout: `tsunagu ${denoJson.version}\n`, stderr: "" });
});

/** Asserts exit code 2 and exactly: one `tsunagu:` error line, then the usage hint. */
function assertUsageError(run: Finished, pattern: RegExp): void {
  assert.equal(run.code, 2, run.stderr);
  assert.equal(run.stdout, "");
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 2, run.stderr);
  assert.match(lines[0], /^tsunagu: /);
  assert.match(lines[0], pattern);
  assert.match(lines[1], /^Run 'tsunagu (serve )?--help' for usage\.$/);
}

Deno.test("cli process: user mistakes exit 2 with one error line and a usage hint", async () => {
  const cases: [string[], RegExp][] = [
    [[], /missing command/],
    [["serve", "--bogus"], /unknown flag --bogus/],
    [["serve", "--port", "70000"], /--port: expected an integer from 0 to 65535/],
    [["serve", "--mode", "party"], /--mode: expected echo, broadcast, chat/],
    [["serve", "--max-payload", "huge"], /--max-payload/],
    [["serve", "--idle-timeout", "later"], /--idle-timeout/],
    [["serve", "--log-format", "xml"], /--log-format/],
    [
      ["serve", "--cert", "tests/fixtures/missing.pem", "--key", "tests/fixtures/tls_key.pem"],
      /cannot read --cert file "tests\/fixtures\/missing\.pem": no such file/,
    ],
    [
      ["serve", "--cert", "tests/fixtures/tls_cert.pem", "--key", "tests/fixtures/nope.pem"],
      /cannot read --key file .*no such file/,
    ],
    [["serve", "--static", "tests/fixtures/no-such-dir"], /--static .*no such directory/],
    [["serve", "--static", "deno.json"], /--static "deno\.json": not a directory/],
  ];
  for (const [args, pattern] of cases) {
    // A listening address, so that a mistake that is not caught cannot block on port 8080.
    const where = args[0] === "serve" ? ["--port", "0", "--hostname", "127.0.0.1"] : [];
    const run = await runCliProcess([...args, ...where]);
    assertUsageError(run, pattern);
  }
});

Deno.test("cli process: a missing permission names the flag to add, exit 1", async () => {
  const net = await runCliProcess(["serve", "--port", "0", "--hostname", "127.0.0.1"], []);
  assert.equal(net.code, 1, net.stderr);
  const netLines = net.stderr.trimEnd().split("\n");
  assert.equal(netLines.length, 1, net.stderr);
  assert.match(netLines[0], /^tsunagu: missing permission: net access to .*--allow-net/);

  const read = await runCliProcess(
    ["serve", "--port", "0", "--hostname", "127.0.0.1", "--static", "tests"],
    ["--allow-net=127.0.0.1"],
  );
  assert.equal(read.code, 1, read.stderr);
  assert.match(read.stderr, /^tsunagu: missing permission: read access to .*--allow-read/);
  assert.equal(read.stderr.trimEnd().split("\n").length, 1, read.stderr);
});

Deno.test("cli process: a port in use is one error line, exit 1", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const run = await runCliProcess(["serve", "--port", `${port}`, "--hostname", "127.0.0.1"]);
  assert.equal(run.code, 1, run.stderr);
  assert.equal(run.stderr, `tsunagu: cannot listen on 127.0.0.1:${port}: address already in use\n`);
});

// ---------------------------------------------------------------------------
// Subprocess: the server, flag by flag.

Deno.test("cli serve: echo mode on any path, one log line per open and close, SIGTERM exits 0", async () => {
  await withCli([], async (process, url) => {
    assert.equal(url.protocol, "ws:");
    assert.match(
      stdoutLines(process)[0],
      /tsunagu \S+ listening on ws:\/\/127\.0\.0\.1:\d+\/ \(mode echo\)/,
    );
    for (const path of ["/", "/a", "/deep/path?x=1"]) {
      const client = await TestClient.open(wsUrl(url, path));
      try {
        client.ws.send(`text on ${path}`);
        assert.equal(await client.next(), `text on ${path}`);
        const bytes = Uint8Array.from({ length: 200 }, (_, i) => i);
        client.ws.send(bytes);
        assert.deepEqual(await client.next(), bytes);
      } finally {
        client.ws.close(4000, "done");
        await client.dispose();
      }
    }
    await waitUntil(
      () => stdoutLines(process).filter((line) => / close /.test(line)).length === 3,
      "three close lines",
    );
    const lines = stdoutLines(process);
    const opens = lines.filter((line) => / open /.test(line));
    const closes = lines.filter((line) => / close /.test(line));
    assert.equal(opens.length, 3);
    assert.match(opens[1], /open 127\.0\.0\.1:\d+ \/a$/);
    assert.match(closes[1], /close 127\.0\.0\.1:\d+ \/a 4000 "done"$/);
    assert.match(closes[2], /close 127\.0\.0\.1:\d+ \/deep\/path 4000 "done"$/);
  });
});

Deno.test("cli serve: the close log line gives the server's reason when the client echoes none", async () => {
  const process = await startCli([]);
  try {
    using client = await RawClient.connect(Number(process.url.port));
    await client.handshake();
    const stopped = process.stop("SIGTERM");
    await client.expectClose(1001, "server shutting down");
    // As browsers may: the echo carries the code and no reason.
    await client.write(clientFrame({ opcode: OP.CLOSE, payload: closePayload(1001) }));
    assert.equal((await stopped).code, 0, process.output());
    const lines = stdoutLines(process);
    assert.ok(
      lines.some((line) => / close .* 1001 "server shutting down"$/.test(line)),
      process.output(),
    );
  } finally {
    await process.close();
  }
});

Deno.test("cli serve: SIGTERM and SIGINT close every client with 1001 and exit 0", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const process = await startCli([]);
    const clients: TestClient[] = [];
    try {
      for (let i = 0; i < 3; i++) clients.push(await TestClient.open(wsUrl(process.url, `/c${i}`)));
      const status = await process.stop(signal);
      assert.equal(status.code, 0, process.output());
      for (const client of clients) {
        const event = await client.waitClosed();
        assert.equal(event.code, 1001);
        assert.equal(event.reason, "server shutting down");
      }
      const lines = stdoutLines(process);
      assert.ok(lines.some((line) => line.includes(`${signal}: shutting down`)), process.output());
      assert.match(lines.at(-1)!, /stopped$/);
      // The log line gives the reason the server sent, not the client's echo of it.
      assert.equal(
        lines.filter((line) => / close .* 1001 "server shutting down"$/.test(line)).length,
        3,
        process.output(),
      );
    } finally {
      for (const client of clients) await client.dispose();
      await process.close();
    }
  }
});

Deno.test("cli serve: --mode broadcast sends every message to every client on the same path", async () => {
  await withCli(["--mode", "broadcast"], async (_process, url) => {
    const a1 = await TestClient.open(wsUrl(url, "/room-a"));
    const a2 = await TestClient.open(wsUrl(url, "/room-a"));
    const b = await TestClient.open(wsUrl(url, "/room-b"));
    try {
      a1.ws.send("to room a");
      assert.equal(await a1.next(), "to room a", "the sender hears it too");
      assert.equal(await a2.next(), "to room a");
      const bytes = new Uint8Array([1, 2, 3]);
      a2.ws.send(bytes);
      assert.deepEqual(await a1.next(), bytes, "binary stays binary");
      assert.deepEqual(await a2.next(), bytes);
      b.ws.send("to room b");
      assert.equal(await b.next(), "to room b", "room b got nothing from room a before");
      a1.ws.send("again");
      assert.equal(await a2.next(), "again");
      assert.equal(await a1.next(), "again");
      assert.deepEqual(a1.messages, [], "room b's message did not reach room a");
    } finally {
      for (const client of [a1, a2, b]) await client.dispose();
    }
  });
});

Deno.test("cli serve: --mode chat serves the page and relays JSON chat by room", async () => {
  await withCli(["--mode", "chat"], async (process, url) => {
    assert.match(
      stdoutLines(process)[0],
      /listening on ws:\/\/127\.0\.0\.1:\d+\/chat \(mode chat\)/,
    );
    await waitUntil(() => stdoutLines(process).length >= 2, "the second start-up line");
    assert.match(stdoutLines(process)[1], /serving chat page on http:\/\/127\.0\.0\.1:\d+\//);
    const page = await get(Number(url.port), "/");
    assert.equal(page.status, 200);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(page.text, CHAT_PAGE_HTML, "the one copy of the page, as examples/chat serves it");
    assert.equal((await get(Number(url.port), "/index.html")).status, 200);
    assert.equal((await get(Number(url.port), "/other")).status, 404);
    assert.equal((await get(Number(url.port), "/", "POST")).status, 405);

    const alice = await TestClient.open(wsUrl(url, "/chat"));
    const bob = await TestClient.open(wsUrl(url, "/chat"));
    const carol = await TestClient.open(wsUrl(url, "/elsewhere"));
    try {
      alice.ws.send(JSON.stringify({ name: "alice", text: "hi" }));
      for (const client of [alice, bob]) {
        const got = JSON.parse(await client.next() as string);
        assert.deepEqual([got.name, got.text, typeof got.time], ["alice", "hi", "number"]);
      }
      carol.ws.send(JSON.stringify({ name: "carol", text: "alone" }));
      assert.equal(JSON.parse(await carol.next() as string).text, "alone");
      assert.deepEqual([alice.messages, bob.messages], [[], []], "rooms are separate");
      bob.ws.send("not json");
      const closed = await bob.waitClosed();
      assert.equal(closed.code, 1003);
    } finally {
      for (const client of [alice, bob, carol]) await client.dispose();
    }
  });
});

Deno.test("cli serve: --path accepts upgrades on that path only; others get 404", async () => {
  await withCli(["--path", "/ws"], async (process, url) => {
    assert.match(
      stdoutLines(process)[0],
      /listening on ws:\/\/127\.0\.0\.1:\d+\/ws \(mode echo, upgrades on \/ws only\)/,
    );
    const client = await TestClient.open(wsUrl(url, "/ws?token=1"));
    try {
      client.ws.send("on /ws");
      assert.equal(await client.next(), "on /ws");
    } finally {
      await client.dispose();
    }
    for (const path of ["/", "/other", "/ws/", "/WS"]) {
      const response = await rawRequest(Number(url.port), buildUpgradeRequest({ path }));
      assert.equal(response.status, 404, path);
    }
    await waitUntil(
      () => stdoutLines(process).filter((line) => / reject /.test(line)).length === 4,
      "four reject lines",
    );
  });
});

Deno.test("cli serve: --static serves files safely", async () => {
  const base = await Deno.makeTempDir({ prefix: "tsunagu-static-" });
  const root = `${base}/root`;
  try {
    await Deno.mkdir(`${root}/sub`, { recursive: true });
    await Deno.mkdir(`${root}/empty`);
    await Deno.mkdir(`${base}/outside`);
    await Deno.writeTextFile(`${base}/outside/secret.txt`, "TOP SECRET");
    await Deno.writeTextFile(`${base}/secret.txt`, "TOP SECRET");
    await Deno.writeTextFile(`${root}/index.html`, "<h1>home</h1>");
    await Deno.writeTextFile(`${root}/sub/index.html`, "<h1>sub</h1>");
    await Deno.writeTextFile(`${root}/app.js`, "console.log(1);");
    await Deno.writeTextFile(`${root}/style.css`, "body {}");
    await Deno.writeTextFile(`${root}/data.json`, "{}");
    await Deno.writeFile(`${root}/pixel.png`, new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 255]));
    await Deno.writeTextFile(`${root}/notes.unknownext`, "?");
    await Deno.writeTextFile(`${root}/file name.txt`, "spaced");
    const big = Uint8Array.from({ length: 3 * 1024 * 1024 + 7 }, (_, i) => (i * 31 + 7) & 0xff);
    await Deno.writeFile(`${root}/big.bin`, big);
    await Deno.writeTextFile(`${root}/.env`, "TOP SECRET");
    await Deno.symlink(`${base}/secret.txt`, `${root}/escape.txt`);
    await Deno.symlink(`${base}/outside`, `${root}/escape-dir`);
    await Deno.symlink(`${root}/app.js`, `${root}/alias.js`);

    await withCli(["--static", root, "--path", "/ws"], async (process, url) => {
      const port = Number(url.port);
      await waitUntil(() => stdoutLines(process).length >= 2, "the second start-up line");
      assert.match(stdoutLines(process)[1], /serving static files on http:\/\/127\.0\.0\.1:\d+\//);
      const ok: [string, string, string][] = [
        ["/", "text/html; charset=utf-8", "<h1>home</h1>"],
        ["/index.html", "text/html; charset=utf-8", "<h1>home</h1>"],
        ["/sub/", "text/html; charset=utf-8", "<h1>sub</h1>"],
        ["/app.js", "text/javascript; charset=utf-8", "console.log(1);"],
        ["/style.css", "text/css; charset=utf-8", "body {}"],
        ["/data.json", "application/json; charset=utf-8", "{}"],
        ["/notes.unknownext", "application/octet-stream", "?"],
        ["/file%20name.txt", "text/plain; charset=utf-8", "spaced"],
        ["/alias.js?v=2", "text/javascript; charset=utf-8", "console.log(1);"],
      ];
      for (const [target, type, body] of ok) {
        const response = await get(port, target);
        assert.equal(response.status, 200, target);
        assert.equal(response.headers.get("content-type"), type, target);
        assert.equal(response.headers.get("x-content-type-options"), "nosniff");
        assert.equal(response.text, body, target);
      }
      const png = await get(port, "/pixel.png");
      assert.equal(png.headers.get("content-type"), "image/png");
      assert.deepEqual(png.body, new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 255]));

      // A large file is streamed with its length (the body is checked against it).
      const large = await get(port, "/big.bin");
      assert.equal(large.headers.get("content-length"), String(big.length));
      assert.ok(large.body.length === big.length && large.body.every((b, i) => b === big[i]));

      const redirect = await get(port, "/sub?x=1");
      assert.equal(redirect.status, 301);
      assert.equal(redirect.headers.get("location"), "/sub/?x=1");

      // HEAD: the GET headers and length, no body.
      using head = await RawClient.connect(port);
      await head.write("HEAD /app.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
      const headResponse = await head.readResponseHead();
      assert.equal(headResponse.status, 200);
      assert.equal(headResponse.headers.get("content-length"), "15");
      await head.expectEnd(true);
      assert.equal(head.pending.length, 0, "no body after a HEAD response");

      const post = await get(port, "/app.js", "POST");
      assert.equal(post.status, 405);
      assert.equal(post.headers.get("allow"), "GET, HEAD");

      for (const target of ["/missing.html", "/empty/", "/.env", "/sub/.hidden", "/app.js/x"]) {
        assert.equal((await get(port, target)).status, 404, target);
      }
      const attacks = [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/..%2F..%2Fsecret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/%2e%2e%5csecret.txt",
        "/..%5csecret.txt",
        "/.%2e/secret.txt",
        "/%252e%252e/secret.txt",
        "/escape.txt",
        "/escape-dir/secret.txt",
        "/escape-dir/",
        "/sub%2f..%2f..%2fsecret.txt",
        "/%00",
        "/a%00.html",
        "//outside/secret.txt",
      ];
      for (const target of attacks) {
        const response = await get(port, target);
        assert.ok([403, 404].includes(response.status), `${target}: ${response.status}`);
        assert.ok(!response.text.includes("TOP SECRET"), target);
      }
      for (const target of ["/escape.txt", "/escape-dir/secret.txt", "/..%2fsecret.txt"]) {
        assert.equal((await get(port, target)).status, 403, target);
      }
      assert.equal((await get(port, "/%ff")).status, 400, "invalid percent-encoding");

      // WebSocket upgrades still work beside the files.
      const client = await TestClient.open(wsUrl(url, "/ws"));
      try {
        client.ws.send("beside static");
        assert.equal(await client.next(), "beside static");
      } finally {
        await client.dispose();
      }
    });
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("cli serve: --max-connections refuses upgrades beyond it with 503", async () => {
  await withCli(["--max-connections", "1"], async (process, url) => {
    const first = await TestClient.open(wsUrl(url, "/"));
    try {
      const refused = await rawRequest(Number(url.port), buildUpgradeRequest());
      assert.equal(refused.status, 503);
    } finally {
      await first.dispose();
    }
    await waitUntil(() => stdoutLines(process).some((line) => / close /.test(line)), "close line");
    const again = await TestClient.open(wsUrl(url, "/"));
    await again.dispose();
  });
});

Deno.test("cli serve: --max-payload closes with 1009 above the limit", async () => {
  await withCli(["--max-payload", "1kb"], async (process, url) => {
    const client = await TestClient.open(wsUrl(url, "/"));
    try {
      client.ws.send("x".repeat(1024));
      assert.equal(await client.next(), "x".repeat(1024), "exactly the limit is fine");
    } finally {
      await client.dispose();
    }
    // One byte over: the frame header alone announces it, and the server
    // answers 1009 before any payload. The raw client sends only the header:
    // had it sent the payload too, the server would close TCP with those bytes
    // unread, the kernel would answer with a reset, and a client still
    // writing (Deno's WebSocket) reports an abnormal close instead of 1009.
    using raw = await RawClient.connect(Number(url.port));
    await raw.handshake({ path: "/big" });
    await raw.write(clientFrame({ opcode: OP.TEXT, declaredLength: 1025 }));
    await raw.expectClose(1009);
    await waitUntil(
      () => stdoutLines(process).some((line) => /close 127\.0\.0\.1:\d+ \/big 1009/.test(line)),
      "close line with 1009",
    );
  });
});

Deno.test("cli serve: --deflate accepts permessage-deflate offers; without it they are ignored", async () => {
  const offer: [string, string][] = [["Sec-WebSocket-Extensions", "permessage-deflate"]];
  for (const [args, expected] of [[["--deflate"], /^permessage-deflate/], [[], null]] as const) {
    await withCli([...args], async (_, url) => {
      using raw = await RawClient.connect(Number(url.port));
      const head = await raw.handshake({ headers: offer });
      const extensions = head.headers.get("sec-websocket-extensions");
      if (expected === null) assert.equal(extensions, null);
      else assert.match(extensions ?? "", expected);
    });
  }
});

Deno.test("cli serve: --health and --metrics answer load balancers and Prometheus", async () => {
  await withCli(["--health", "/healthz", "--metrics", "/metrics"], async (process, url) => {
    const port = Number(url.port);
    await waitUntil(() => stdoutLines(process).length >= 2, "the second start-up line");
    assert.match(stdoutLines(process)[1], /health on \/healthz, metrics on \/metrics/);
    const health = await get(port, "/healthz");
    assert.deepEqual([health.status, health.text], [200, "ok\n"]);
    const client = await TestClient.open(wsUrl(url, "/"));
    try {
      client.ws.send("counted");
      assert.equal(await client.next(), "counted");
      const metrics = await get(port, "/metrics");
      assert.equal(metrics.status, 200);
      assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      assert.match(metrics.text, /^tsunagu_connections 1$/m);
      assert.match(metrics.text, /^tsunagu_messages_received_total 1$/m);
      assert.match(metrics.text, /^tsunagu_http_responses_total\{status="200"\} 1$/m);
    } finally {
      await client.dispose();
    }
    assert.equal((await get(port, "/metrics", "POST")).status, 405);
    assert.equal((await get(port, "/elsewhere")).status, 404);
  });
});

Deno.test("cli serve: --reuse-port lets two processes share the port", async () => {
  const flags = [...PERMISSIONS, "--unstable-net"];
  await withCli(["--reuse-port"], async (first, url) => {
    await withCli(["--reuse-port", "--port", url.port], async (second) => {
      const clients: TestClient[] = [];
      try {
        // 16 connections: all on one process by chance is 2^-15.
        for (let i = 0; i < 16; i++) clients.push(await TestClient.open(wsUrl(url, "/")));
        for (const client of clients) {
          client.ws.send("shared");
          assert.equal(await client.next(), "shared");
        }
        await waitUntil(
          () => [first, second].every((p) => stdoutLines(p).some((line) => / open /.test(line))),
          "both processes accepting connections",
        );
      } finally {
        for (const client of clients) await client.dispose();
      }
    }, flags);
  }, flags);
});

Deno.test("cli process: --reuse-port without deno's --unstable-net is one error line, exit 2", async () => {
  const run = await runCliProcess([
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "--reuse-port",
  ]);
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /--reuse-port and --workers need deno's --unstable-net flag/);
});

Deno.test("cli args: connect takes a ws URL, subprotocols and a wait", () => {
  assert.deepEqual(parseCliArgs(["connect", "ws://127.0.0.1:9000/chat"]), {
    command: "connect",
    url: "ws://127.0.0.1:9000/chat",
    protocols: [],
    wait: 1000,
    deflate: false,
  });
  assert.deepEqual(
    parseCliArgs([
      "connect",
      "--protocol",
      "v2",
      "wss://example.com/",
      "--protocol=v1",
      "--wait=3s",
      "--deflate",
    ]),
    {
      command: "connect",
      url: "wss://example.com/",
      protocols: ["v2", "v1"],
      wait: 3000,
      deflate: true,
    },
  );
  for (
    const [args, message] of [
      [["connect"], /needs a ws:\/\/ or wss:\/\/ URL/],
      [["connect", "http://example.com/"], /invalid URL/],
      [["connect", "ws://a/", "ws://b/"], /one URL only/],
      [["connect", "ws://a/", "--wait", "soon"], /--wait/],
      [["connect", "ws://a/", "--port", "1"], /unknown flag --port for connect/],
    ] as const
  ) {
    assert.match(parseError([...args]).error, message, JSON.stringify(args));
  }
});

Deno.test("cli connect: stdin lines go out, replies come back on stdout, exit 0", async () => {
  const server = serve({ port: 0, hostname: "127.0.0.1", perMessageDeflate: { threshold: 0 } }, {
    message: (socket, data) => void socket.send(typeof data === "string" ? `echo ${data}` : data),
  });
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "src/cli/main.ts",
        "connect",
        `${server.url}/room`,
        "--wait",
        "300ms",
        "--deflate",
      ],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const input = child.stdin.getWriter();
    await input.write(new TextEncoder().encode("one\r\ntwo\nthree"));
    await input.close();
    const { code, stdout, stderr } = await child.output();
    const errors = new TextDecoder().decode(stderr);
    assert.equal(code, 0, errors);
    assert.deepEqual(new TextDecoder().decode(stdout).split("\n").filter(Boolean), [
      "echo one",
      "echo two",
      "echo three",
    ]);
    assert.match(errors, /connected to ws:\/\/127\.0\.0\.1:\d+\/room \(permessage-deflate\)/);
    assert.match(errors, /closed 1000/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("cli connect: a refused connection is one error line, exit 1", async () => {
  const server = serve({ port: 0, hostname: "127.0.0.1" }, {
    upgrade: () => new Response("no", { status: 403 }),
  });
  try {
    const run = await runCliProcess(["connect", server.url], ["--allow-net=127.0.0.1"]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /cannot connect to ws:\/\/127\.0\.0\.1:\d+: .*answered 403/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("cli args: load takes a ws URL, clients, duration, size and --binary", () => {
  assert.deepEqual(parseCliArgs(["load", "ws://127.0.0.1:9000/"]), {
    command: "load",
    options: { url: "ws://127.0.0.1:9000/", clients: 10, duration: 5000, size: 32, binary: false },
  });
  assert.deepEqual(
    parseCliArgs([
      "load",
      "ws://h/",
      "--clients=3",
      "--duration",
      "2s",
      "--size",
      "1kb",
      "--binary",
    ]),
    {
      command: "load",
      options: { url: "ws://h/", clients: 3, duration: 2000, size: 1024, binary: true },
    },
  );
  for (
    const [args, message] of [
      [["load"], /needs a ws:\/\/ or wss:\/\/ URL/],
      [["load", "ws://h/", "--clients", "0"], /--clients/],
      [["load", "ws://h/", "--duration", "0s"], /--duration/],
      [["load", "ws://h/", "--size", "lots"], /--size/],
    ] as const
  ) {
    assert.match(parseError([...args]).error, message, JSON.stringify(args));
  }
});

Deno.test("cli load: reports round trips against an echo server; wrong echoes fail it", async () => {
  const echo = serve({ port: 0, hostname: "127.0.0.1" }, {
    message: (socket, data) => void socket.send(data),
  });
  const liar = serve({ port: 0, hostname: "127.0.0.1" }, {
    message: (socket, data) => void socket.send(typeof data === "string" ? data + "!" : data),
  });
  const hangUp = serve({ port: 0, hostname: "127.0.0.1" }, {
    message(socket, data) {
      socket.send(data);
      socket.close(1001);
    },
  });
  try {
    const good = await runCliProcess(
      ["load", echo.url, "--clients", "3", "--duration", "300ms", "--size", "2kb", "--binary"],
      ["--allow-net=127.0.0.1"],
    );
    assert.equal(good.code, 0, good.stderr);
    assert.match(
      good.stdout,
      /^3 clients, 2048 B binary, [\d.]+ s: [\d,]+ round trips \([\d,]+\/s\), p50 [\d.]+ ms, p99 [\d.]+ ms, 0 errors$/m,
    );
    assert.doesNotMatch(good.stdout, /: 0 round trips/);
    const bad = await runCliProcess(
      ["load", liar.url, "--clients", "2", "--duration", "200ms"],
      ["--allow-net=127.0.0.1"],
    );
    assert.equal(bad.code, 1, bad.stdout);
    assert.match(bad.stdout, /[1-9][\d,]* errors/);
    // A server that hangs up after each echo: the echoes are right, the run is not.
    const quitter = await runCliProcess(
      ["load", hangUp.url, "--clients", "2", "--duration", "300ms"],
      ["--allow-net=127.0.0.1"],
    );
    assert.equal(quitter.code, 1, quitter.stdout);
    assert.match(quitter.stdout, /2 closed early by the server/);
  } finally {
    await echo.shutdown();
    await liar.shutdown();
    await hangUp.shutdown();
  }
});

Deno.test("cli serve: --idle-timeout closes silent clients with 1001", async () => {
  await withCli(["--idle-timeout", "300ms"], async (_process, url) => {
    const client = await TestClient.open(wsUrl(url, "/"));
    try {
      assert.equal((await client.waitClosed(15_000)).code, 1001);
    } finally {
      await client.dispose();
    }
  });
});

Deno.test("cli serve: --log-format json writes one JSON object per line", async () => {
  const process = await startCli(["--log-format=json", "--path", "/room"]);
  try {
    const client = await TestClient.open(wsUrl(process.url, "/room"));
    client.ws.close(1000, "bye");
    await client.dispose();
    await waitUntil(() => stdoutLines(process).some((l) => l.includes('"close"')), "close line");
    await rawRequest(Number(process.url.port), buildUpgradeRequest({ path: "/nope" }));
    await waitUntil(() => stdoutLines(process).some((l) => l.includes('"reject"')), "reject line");
    await stopCleanly(process);
    const records = stdoutLines(process).map((line) => JSON.parse(line));
    for (const record of records) {
      assert.equal(typeof record.time, "string");
      assert.ok(!Number.isNaN(Date.parse(record.time)));
      assert.equal(record.level, "info");
      assert.equal(typeof record.message, "string");
    }
    assert.deepEqual(
      records.map((r) => r.event),
      ["listening", "open", "close", "reject", "shutdown", "stopped"],
    );
    assert.match(records[0].urls[0], /^ws:\/\/127\.0\.0\.1:\d+\/room$/);
    assert.deepEqual([records[0].mode, records[0].path], ["echo", "/room"]);
    assert.equal(records[0].version, denoJson.version);
    assert.deepEqual([records[1].path, records[2].path], ["/room", "/room"]);
    assert.match(records[1].peer, /^127\.0\.0\.1:\d+$/);
    assert.deepEqual([records[2].code, records[2].reason], [1000, "bye"]);
    assert.deepEqual([records[3].path, records[3].status], ["/nope", 404]);
    assert.equal(records[4].signal, "SIGTERM");
  } finally {
    await process.close();
  }
});

Deno.test("cli serve: --quiet prints no per-connection lines", async () => {
  const process = await startCli(["--quiet", "--path", "/q"]);
  try {
    for (let i = 0; i < 2; i++) {
      const client = await TestClient.open(wsUrl(process.url, "/q"));
      client.ws.send("hi");
      assert.equal(await client.next(), "hi");
      await client.dispose();
    }
    const refused = await rawRequest(Number(process.url.port), buildUpgradeRequest({ path: "/" }));
    assert.equal(refused.status, 404);
    await stopCleanly(process);
    const lines = stdoutLines(process);
    assert.ok(!lines.some((line) => / (open|close|reject) /.test(line)), lines.join("\n"));
    assert.match(lines[0], /listening on/);
    assert.match(lines.at(-1)!, /stopped$/);
  } finally {
    await process.close();
  }
});
