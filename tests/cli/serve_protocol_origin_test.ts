/**
 * `tsunagu serve --protocol NAME` (repeatable) answers the first subprotocol
 * the client offers that it speaks, so clients that offer one (Chromium, ws)
 * connect; `--origin ORIGIN` (repeatable) refuses browser pages from other
 * origins with 403.
 */

import assert from "node:assert/strict";
import { parseCliArgs } from "../../src/cli/main.ts";
import { startExample } from "../helpers/example_process.ts";
import { buildUpgradeRequest, RawClient } from "../helpers/raw_client.ts";

const FLAGS = ["--allow-net=127.0.0.1", "--allow-read"];

Deno.test("cli args: --protocol and --origin are repeatable and checked", () => {
  const parsed = parseCliArgs([
    "serve",
    "--protocol",
    "chat.v2",
    "--protocol=chat.v1",
    "--origin",
    "https://Example.com/",
    "--origin",
    "http://localhost:8080",
  ]);
  assert.ok("command" in parsed && parsed.command === "serve");
  assert.deepEqual(parsed.config.protocols, ["chat.v2", "chat.v1"]);
  assert.deepEqual(parsed.config.origins, ["https://example.com", "http://localhost:8080"]);
  for (
    const [args, why] of [
      [["--protocol", "two words"], /for --protocol: expected a token/],
      [["--origin", "example.com"], /for --origin: expected an origin/],
      [["--origin", "https://example.com/path"], /for --origin: expected an origin/],
    ] as const
  ) {
    const bad = parseCliArgs(["serve", ...args]);
    assert.ok("error" in bad, args.join(" "));
    assert.match(bad.error, why);
  }
});

Deno.test("cli serve --protocol: the first offered that we speak is chosen", async () => {
  const cli = await startExample("src/cli/main.ts", FLAGS, [
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "-q",
    "--protocol",
    "chat.v1",
    "--protocol",
    "chat.v2",
  ]);
  try {
    for (
      const [offered, chosen] of [
        [["chat.v2", "chat.v1"], "chat.v2"], // the client's order of preference
        [["other", "chat.v1"], "chat.v1"],
        [[], ""],
      ] as const
    ) {
      const client = new WebSocket(cli.url, [...offered]);
      await new Promise((resolve, reject) => {
        client.onopen = resolve;
        client.onerror = reject;
      });
      assert.equal(client.protocol, chosen, offered.join(","));
      const closed = new Promise((resolve) => client.onclose = resolve);
      client.close();
      await closed;
    }
  } finally {
    await cli.stop();
  }
});

Deno.test("cli serve --origin: other origins get 403; listed ones and non-browser clients connect", async () => {
  const cli = await startExample("src/cli/main.ts", FLAGS, [
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "-q",
    "--origin",
    "https://chat.example",
  ]);
  try {
    const port = Number(cli.url.port);
    for (
      const [origin, status] of [
        ["https://evil.example", 403],
        ["https://chat.example", 101],
        ["HTTPS://CHAT.EXAMPLE", 101],
        [undefined, 101],
      ] as const
    ) {
      using client = await RawClient.connect(port);
      const headers: [string, string][] = origin === undefined ? [] : [["Origin", origin]];
      await client.write(new TextEncoder().encode(buildUpgradeRequest({ headers })));
      const head = await client.readResponseHead();
      assert.equal(head.status, status, String(origin));
    }
  } finally {
    await cli.stop();
  }
});
