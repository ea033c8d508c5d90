/**
 * `tsunagu serve --workers 2`: two servers in workers on one port, rooms
 * shared between them, and SIGTERM reaching every client of every worker.
 */

import assert from "node:assert/strict";
import { startExample } from "../helpers/example_process.ts";
import { TestClient } from "../helpers/harness.ts";

const FLAGS = ["--allow-net=127.0.0.1", "--allow-read", "--unstable-net"];

Deno.test("cli serve --workers 2: rooms span the workers; SIGTERM closes every client with 1001", async () => {
  const cli = await startExample("src/cli/main.ts", FLAGS, [
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "--mode",
    "broadcast",
    "--workers",
    "2",
    "-q",
  ]);
  const clients: TestClient[] = [];
  try {
    assert.match(cli.output(), /mode broadcast, 2 workers\)/);
    // 24 connections: the kernel spreads them over both workers (all on one
    // would have odds of 1 in 2^23), so the room must cross workers.
    for (let i = 0; i < 24; i++) {
      clients.push(await TestClient.open(new URL("/room", cli.url).href));
    }
    clients[0].ws.send("hello all");
    for (const client of clients) assert.equal(await client.next(), "hello all");
    const closes = clients.map((client) => client.waitClosed(10_000));
    const status = await cli.stop("SIGTERM");
    assert.equal(status.code, 0, cli.output());
    for (const event of await Promise.all(closes)) assert.equal(event.code, 1001);
  } finally {
    for (const client of clients) await client.dispose();
    await cli.close();
  }
});

Deno.test("cli serve --workers: bad values are one line and exit 2", async () => {
  for (const value of ["0", "many", "-1"]) {
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...FLAGS, "src/cli/main.ts", "serve", "--workers", value],
      cwd: new URL("../../", import.meta.url),
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(child.code, 2, value);
    assert.match(
      new TextDecoder().decode(child.stderr),
      /invalid value .* for --workers: expected auto or an integer from 1 to 256/,
    );
  }
});
