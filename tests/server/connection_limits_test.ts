/**
 * Server-wide limits with safe defaults (issue 10): open connections are
 * limited by default, from the process's open-file limit, so a flood of idle
 * WebSockets is refused with 503 before the server runs out of descriptors
 * (after which new clients would hang: TCP completes, nothing answers).
 */

import assert from "node:assert/strict";
import { serve, serveWorkers } from "../../mod.ts";
import { TestClient } from "../helpers/harness.ts";
import { defaultMaxConnections } from "../../src/server/options.ts";
import { buildUpgradeRequest, RawClient, withTimeout } from "../helpers/raw_client.ts";
import { killQuietly, spawnInRoot } from "../helpers/example_process.ts";

Deno.test("maxConnections defaults to the open-file limit less a reserve, and is visible", async () => {
  // Tests run with --allow-all, so the server can read the limit too.
  const limits = await Deno.readTextFile("/proc/self/limits").catch(() => null);
  const match = limits === null ? null : /^Max open files\s+(\d+)\s/m.exec(limits);
  const files = match === null ? 1024 : Number(match[1]);
  const expected = files - Math.max(64, Math.ceil(files / 8));
  assert.equal(defaultMaxConnections(), expected);
  const server = serve({ port: 0, hostname: "127.0.0.1" });
  try {
    assert.equal(server.maxConnections, expected);
  } finally {
    await server.shutdown();
  }
  const chosen = serve({ port: 0, hostname: "127.0.0.1", maxConnections: Infinity });
  try {
    assert.equal(chosen.maxConnections, Infinity, "an explicit limit wins, Infinity included");
  } finally {
    await chosen.shutdown();
  }
});

/** The CLI under `ulimit -n files`, with the URL and start-up line it printed. */
async function startLimitedCli(files: number, args = "") {
  const child = spawnInRoot("sh", [
    "-c",
    // --allow-all: Deno lets nothing less read /proc/self/limits.
    `ulimit -n ${files} && exec "$0" run --allow-all --unstable-net src/cli/main.ts ` +
    `serve --port 0 --hostname 127.0.0.1 -q ${args}`,
    Deno.execPath(),
  ]);
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  const firstLine = (async () => {
    while (!stdout.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the CLI exited before listening: ${stdout}${await stderr}`);
      stdout += value;
    }
    return stdout.split("\n")[0];
  })();
  const stop = async () => {
    killQuietly(child, "SIGTERM");
    await reader.cancel().catch(() => {});
    await stderr.catch(() => "");
    await child.status;
  };
  try {
    const line = await withTimeout(firstLine, 20_000, "the CLI's start-up line");
    const url = /listening on (ws:\/\/\S+)/.exec(line);
    assert.ok(url, line);
    return { line, port: Number(new URL(url[1]).port), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

Deno.test({
  name: "an idle-connection flood under a small open-file limit gets 503 at the default limit",
  ignore: Deno.build.os === "windows",
  async fn() {
    // 256 descriptors: the default is 256 - 64 = 192 connections.
    const cli = await startLimitedCli(256);
    const clients: RawClient[] = [];
    try {
      assert.match(cli.line, /at most 192 connections$/, "the start-up line says the limit");
      for (let i = 0; i < 192; i++) {
        const raw = await RawClient.connect(cli.port);
        clients.push(raw);
        await raw.handshake({}, 5_000);
      }
      // Without the default, this upgrade got a 101, and a few dozen later
      // the server ran out of descriptors and new clients hung.
      for (let i = 0; i < 3; i++) {
        using refused = await RawClient.connect(cli.port);
        await refused.write(buildUpgradeRequest());
        const response = await refused.readHttpResponse(5_000);
        assert.equal(response.status, 503, response.text);
      }
      // A freed slot is used again.
      clients.pop()!.close();
      let reopened = false;
      for (let attempt = 0; attempt < 50 && !reopened; attempt++) {
        using raw = await RawClient.connect(cli.port);
        await raw.write(buildUpgradeRequest());
        const head = await raw.readResponseHead(5_000);
        reopened = head.status === 101;
        if (!reopened) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(reopened, "an upgrade succeeds once a connection closed");
    } finally {
      for (const raw of clients) raw.close();
      await cli.stop();
    }
  },
});

Deno.test({
  name: "workers share the default connection limit: one process, one open-file limit",
  ignore: Deno.build.os === "windows",
  async fn() {
    const cli = await startLimitedCli(256, "--workers 2");
    try {
      assert.match(cli.line, /2 workers\), at most 96 connections per worker$/);
    } finally {
      await cli.stop();
    }
  },
});

Deno.test("serveWorkers: each worker's default limit is the process's shared out", async () => {
  const pool = serveWorkers(new URL("../fixtures/worker_app.ts", import.meta.url), {
    workers: 2,
    port: 0,
    hostname: "127.0.0.1",
  });
  await pool.listening;
  try {
    const client = await TestClient.open(`ws://127.0.0.1:${pool.addr.port}/`);
    try {
      await client.next(); // "worker N"
      client.ws.send("limit");
      assert.equal(Number(await client.next()), Math.floor(defaultMaxConnections() / 2));
    } finally {
      await client.dispose();
    }
  } finally {
    await pool.shutdown();
    await pool.finished;
  }
});
