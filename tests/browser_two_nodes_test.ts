/**
 * Scaling out, as a person sees it: two `tsunagu serve --mode chat` nodes
 * share one real Redis; the chat page in headless Chromium is open on node
 * A and a Deno WebSocket client is in the same room on node B. What the
 * page sends reaches B, and what B says appears on the page.
 *
 * Ignored, with the reason, without Chromium or redis-server (CI installs
 * both; a missing one fails there).
 */

import { findChromium, launchChromium } from "./helpers/chromium.ts";
import { startExample } from "./helpers/example_process.ts";
import { TestClient, waitUntil } from "./helpers/harness.ts";
import { freePort, HAS_REDIS, startRedis } from "./helpers/redis.ts";

const FLAGS = ["--allow-net=127.0.0.1", "--allow-read"];
const inCI = ["true", "1"].includes((Deno.env.get("CI") ?? "").toLowerCase());
const missing = findChromium() === undefined
  ? "no Chromium found"
  : HAS_REDIS
  ? undefined
  : "no redis-server found";
const NAME = "browser: the chat page on node A and a client on node B share a room through Redis";

Deno.test({
  name: missing !== undefined && !inCI ? `${NAME} (skipped: ${missing})` : NAME,
  ignore: missing !== undefined && !inCI,
  async fn() {
    const redis = await startRedis();
    const node = (port: number) =>
      startExample("src/cli/main.ts", FLAGS, [
        "serve",
        "--port",
        String(port),
        "--hostname",
        "127.0.0.1",
        "--mode",
        "chat",
        "-q",
        "--redis",
        redis.url,
      ]);
    const a = await node(freePort());
    const b = await node(freePort());
    const browser = await launchChromium();
    let bob: TestClient | null = null;
    try {
      await waitUntil(
        () => /redis .*connected/.test(a.output()) && /redis .*connected/.test(b.output()),
        "both nodes connected to Redis",
      );
      // The page, from node A.
      await browser.navigate(`http://${a.url.host}/?room=ops`);
      await browser.waitFor(`document.getElementById("status").textContent === "connected"`);
      // Bob, on node B, in the same room.
      bob = await TestClient.open(`ws://${b.url.host}/chat?room=ops`);
      bob.ws.send(JSON.stringify({ type: "join", name: "bob" }));
      const lines = `[...document.querySelectorAll("#log li")].map((li) => li.textContent)`;
      // A join notice crossed from B to A...
      await browser.waitFor(`${lines}.includes("bob joined.")`);
      // ...the page's message crosses from A to B...
      await browser.evaluate(`(() => {
        const input = document.getElementById("message");
        input.value = "hello from node A";
        document.getElementById("send").click();
      })()`);
      while (true) {
        const message = JSON.parse(String(await bob.next()));
        if (message.type === "message" && message.text === "hello from node A") break;
      }
      // ...and Bob's answer reaches the page.
      bob.ws.send(JSON.stringify({ name: "bob", text: "hello from node B" }));
      await browser.waitFor(`${lines}.at(-1) === "bob: hello from node B"`);
    } finally {
      await bob?.dispose();
      await browser.close();
      await a.close();
      await b.close();
      await redis.stop();
    }
  },
});
