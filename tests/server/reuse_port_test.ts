/**
 * `reusePort`: several servers (one per core, in workers or processes) share
 * one port and the kernel spreads connections over them. Runs under
 * `--unstable-net`, as `deno task test` does.
 */

import assert from "node:assert/strict";
import { serve } from "../../mod.ts";
import { TestClient } from "../helpers/harness.ts";

Deno.test("reusePort: two servers share a port and both get connections", async () => {
  const hits = [0, 0];
  const start = (index: number, port: number) =>
    serve({ port, hostname: "127.0.0.1", reusePort: true }, {
      message(socket, data) {
        hits[index]++;
        socket.send(`${index}:${data}`);
      },
    });
  const first = start(0, 0);
  const second = start(1, first.addr.port);
  const clients: TestClient[] = [];
  try {
    // 24 connections: the chance that the kernel's hash sends all of them
    // to one server is 2^-23.
    for (let i = 0; i < 24; i++) clients.push(await TestClient.open(first.url));
    for (const [i, client] of clients.entries()) {
      client.ws.send(`m${i}`);
      assert.match(String(await client.next()), new RegExp(`^[01]:m${i}$`));
    }
    assert.equal(hits[0] + hits[1], 24);
    assert.ok(hits[0] > 0 && hits[1] > 0, `connections per server: ${hits.join(", ")}`);
  } finally {
    for (const client of clients) await client.dispose();
    await first.shutdown();
    await second.shutdown();
  }
});

Deno.test("without reusePort a second server on the port is refused", async () => {
  const first = serve({ port: 0, hostname: "127.0.0.1" });
  try {
    assert.throws(
      () => serve({ port: first.addr.port, hostname: "127.0.0.1" }),
      Deno.errors.AddrInUse,
    );
  } finally {
    await first.shutdown();
  }
});

Deno.test("reusePort without --unstable-net is a TypeError, not a process exit", async () => {
  // Deno itself would end the process (exit 70) on an unstable listen option.
  const mod = new URL("../../mod.ts", import.meta.url).href;
  const script = `import { serve } from "${mod}";\n` +
    "try { serve({ port: 0, hostname: '127.0.0.1', reusePort: true }); }\n" +
    "catch (error) { console.log(String(error)); Deno.exit(3); }";
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 3);
  assert.match(
    new TextDecoder().decode(stdout),
    /TypeError: reusePort needs Deno's --unstable-net/,
  );
});
