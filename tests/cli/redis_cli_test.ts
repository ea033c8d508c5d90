/**
 * `tsunagu serve --redis URL` as a user runs it: two CLI processes in chat
 * mode on different ports share rooms through one real redis-server (with a
 * password from TSUNAGU_REDIS_PASSWORD), and a wrong password, a URL that is
 * not Redis, or a malformed URL stop the start with the reason. Every
 * process is bounded and awaited.
 */

import assert from "node:assert/strict";
import { connect } from "../../mod.ts";
import { runCliProcess } from "../helpers/cli_process.ts";
import { startExample } from "../helpers/example_process.ts";
import { waitUntil } from "../helpers/harness.ts";
import { freePort, HAS_REDIS, startRedis } from "../helpers/redis.ts";

const ignore = !HAS_REDIS;
const FLAGS = ["--allow-net=127.0.0.1", "--allow-read", "--allow-env=TSUNAGU_REDIS_PASSWORD"];

Deno.test({
  name: "cli --redis: two chat servers share a room; the password comes from the environment",
  ignore,
  async fn() {
    const redis = await startRedis(["--requirepass", "hunter2"]);
    Deno.env.set("TSUNAGU_REDIS_PASSWORD", "hunter2");
    const args = (port: number) => [
      "serve",
      "--port",
      String(port),
      "--hostname",
      "127.0.0.1",
      "--mode",
      "chat",
      "--health",
      "/healthz",
      "--redis",
      redis.url,
    ];
    const a = await startExample("src/cli/main.ts", FLAGS, args(freePort()))
      .finally(() => Deno.env.delete("TSUNAGU_REDIS_PASSWORD"));
    Deno.env.set("TSUNAGU_REDIS_PASSWORD", "hunter2");
    const b = await startExample("src/cli/main.ts", FLAGS, args(freePort()))
      .finally(() => Deno.env.delete("TSUNAGU_REDIS_PASSWORD"));
    try {
      await waitUntil(
        () => /redis .*connected/.test(a.output()) && /redis .*connected/.test(b.output()),
        "both connected",
      );
      const health = await fetch(new URL("/healthz", `http://${a.url.host}`));
      assert.equal(await health.text(), "ok\n");
      const onA = await connect(a.url.href);
      const onB = await connect(b.url.href);
      const got: string[] = [];
      onB.addEventListener("message", (event) => got.push((event as MessageEvent).data));
      // The subscription reaches Redis shortly after the socket opens: retry until it has.
      const deadline = Date.now() + 5_000;
      let tries = 0;
      while (got.length === 0 && Date.now() < deadline) {
        onA.send(JSON.stringify({ name: "ann", text: `hello ${tries++}` }));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(got.length > 0, "a message crossed from a to b");
      const message = JSON.parse(got[0]);
      assert.equal(message.name, "ann");
      assert.match(message.text, /^hello \d+$/);
      onA.close();
      onB.close();
      await Promise.all([onA.closed, onB.closed]);
      assert.doesNotMatch(a.output() + b.output(), /hunter2/);
      assert.equal((await a.stop()).code, 0);
      assert.equal((await b.stop()).code, 0);
    } finally {
      await a.close();
      await b.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "cli --redis: a wrong password or a peer that is not Redis exits 1 with the reason",
  ignore,
  async fn() {
    const redis = await startRedis(["--requirepass", "hunter2"]);
    const http = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const answering = (async () => {
      for await (const conn of http) {
        await conn.write(new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n\r\n")).catch(
          () => {},
        );
        conn.close();
      }
    })();
    try {
      const serveArgs = (
        url: string,
      ) => ["serve", "--port", "0", "--hostname", "127.0.0.1", "--redis", url];
      const wrong = await runCliProcess(
        serveArgs(`redis://:letmein@127.0.0.1:${redis.port}`),
        FLAGS,
      );
      assert.equal(wrong.code, 1, wrong.stderr);
      assert.match(wrong.stderr, /refused the credentials: WRONGPASS/);
      assert.match(wrong.stderr, /redis:\/\/:\*\*\*@127\.0\.0\.1/);
      assert.doesNotMatch(wrong.stderr + wrong.stdout, /letmein/);

      const noPassword = await runCliProcess(serveArgs(redis.url), ["--allow-net=127.0.0.1"]);
      assert.equal(noPassword.code, 1);
      assert.match(noPassword.stderr, /needs a password/);
      assert.match(noPassword.stderr, /--allow-env=TSUNAGU_REDIS_PASSWORD/);

      const port = (http.addr as Deno.NetAddr).port;
      const notRedis = await runCliProcess(serveArgs(`redis://127.0.0.1:${port}`), FLAGS);
      assert.equal(notRedis.code, 1);
      assert.match(notRedis.stderr, /not a Redis server/);

      const badUrl = await runCliProcess(serveArgs("http://127.0.0.1"), FLAGS);
      assert.equal(badUrl.code, 2);
      assert.match(badUrl.stderr, /redis:\/\/ or rediss:\/\//);
    } finally {
      http.close();
      await answering.catch(() => {});
      await redis.stop();
    }
  },
});
