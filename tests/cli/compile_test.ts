/**
 * The standalone binary. The `compile` task of deno.json (scripts/compile.ts)
 * is run as written, with `--output` in a temporary folder, and the binary is
 * then used as a person would: `--version`, `serve` on 127.0.0.1 port 0, a
 * WebSocket client, SIGTERM, exit code 0.
 *
 * `deno compile` needs `denort`, the runtime the binary is built on: Deno
 * takes it from the DENORT_BIN variable (a path to a denort of the same
 * version as `deno`), else from its cache, else downloads it. Where none of
 * these works (offline, no DENORT_BIN), the tests are reported as ignored
 * with the reason in their name; any other compile failure fails them.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import denoJson from "../../deno.json" with { type: "json" };
import { runToEnd } from "../helpers/cli_process.ts";
import { killQuietly } from "../helpers/example_process.ts";
import { TestClient } from "../helpers/harness.ts";

/** How long compiling may take (it may download denort). */
const COMPILE_TIMEOUT_MS = 300_000;
/** How long a running binary may live before it is killed. */
const RUN_TIMEOUT_MS = 60_000;

const outDir = await Deno.makeTempDir({ prefix: "tsunagu-compile-" });
globalThis.addEventListener("unload", () => Deno.removeSync(outDir, { recursive: true }));
const binary = join(outDir, Deno.build.os === "windows" ? "tsunagu.exe" : "tsunagu");

/** The compile task's arguments after `deno` (it runs scripts/compile.ts), with the output redirected. */
function compileArgs(): string[] {
  const words = denoJson.tasks.compile.split(/\s+/);
  assert.deepEqual(words.slice(0, 2), ["deno", "run"], "the compile task runs a script");
  assert.equal(words.at(-1), "scripts/compile.ts");
  return [...words.slice(1), "--output", binary];
}

/** Compiles; returns why the binary cannot be built here, or null once it is built. */
async function compile(): Promise<{ skip: string } | { fail: string } | null> {
  const result = await runToEnd(Deno.execPath(), compileArgs(), COMPILE_TIMEOUT_MS);
  if (result.code === 0) return null;
  const output = `${result.stdout}${result.stderr}`;
  const denortEnv = Deno.env.get("DENORT_BIN");
  // scripts/compile.ts says "cannot get denort" when it is not cached and the download failed.
  const noRuntime = /compile: cannot get denort/.test(output);
  if (!denortEnv && (noRuntime || result.code === 137)) {
    const cause = /downloading it failed \((.*)\)\./.exec(output)?.[1] ??
      `deno compile was killed after ${COMPILE_TIMEOUT_MS} ms`;
    return {
      skip: "deno compile cannot get the denort runtime here (not cached, download failed, " +
        `DENORT_BIN unset): ${cause.trim()}`,
    };
  }
  return { fail: `deno task compile failed (exit ${result.code}):\n${output}` };
}

const outcome = await compile();
const skip = outcome !== null && "skip" in outcome ? outcome.skip : undefined;
if (skip !== undefined) console.warn(`compile_test: skipped: ${skip}`);
const ignore = skip !== undefined;
const suffix = ignore
  ? " (skipped: no denort runtime: not cached, no download, DENORT_BIN unset)"
  : "";

function assertBuilt(): void {
  if (outcome !== null && "fail" in outcome) assert.fail(outcome.fail);
}

/** A running binary whose stdout is collected; bounded by RUN_TIMEOUT_MS. */
async function startBinary(args: string[]) {
  const child = new Deno.Command(binary, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => killQuietly(child), RUN_TIMEOUT_MS);
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  let match: RegExpExecArray | null = null;
  let ended = false;
  while ((match = /listening on (wss?:\/\/\S+)/.exec(stdout)) === null) {
    const { value, done } = await reader.read();
    if (done) {
      ended = true;
      break;
    }
    stdout += value;
  }
  const rest = (async () => {
    while (!ended) {
      const { value, done } = await reader.read();
      if (done) ended = true;
      else stdout += value;
    }
  })();
  const stop = async (signal: Deno.Signal) => {
    killQuietly(child, signal);
    const status = await child.status;
    await rest;
    clearTimeout(killer);
    return { status, stdout, stderr: await stderr };
  };
  if (match === null) {
    const { status, stderr: errors } = await stop("SIGKILL");
    throw new Error(`binary exited (${status.code}) before listening:\n${stdout}${errors}`);
  }
  return { url: new URL(match[1]), stop };
}

Deno.test({
  name: `compile: the binary prints its version${suffix}`,
  ignore,
  async fn() {
    assertBuilt();
    const result = await runToEnd(binary, ["--version"]);
    assert.deepEqual(result, { code: 0, stdout: `tsunagu ${denoJson.version}\n`, stderr: "" });
  },
});

Deno.test({
  name: `compile: the binary serves echo, closes clients with 1001 on SIGTERM, exits 0${suffix}`,
  ignore,
  async fn() {
    assertBuilt();
    const server = await startBinary(["serve", "--port", "0", "--hostname", "127.0.0.1"]);
    let client: TestClient | null = null;
    try {
      client = await TestClient.open(new URL("/compiled", server.url).href);
      client.ws.send("hello, binary");
      assert.equal(await client.next(), "hello, binary");
    } finally {
      const { status, stdout, stderr } = await server.stop("SIGTERM");
      if (client !== null) {
        assert.equal((await client.waitClosed()).code, 1001);
        await client.dispose();
      }
      assert.equal(status.code, 0, `${stdout}${stderr}`);
      assert.match(stdout, /open 127\.0\.0\.1:\d+ \/compiled/);
      assert.match(stdout, /stopped\n$/);
    }
  },
});

Deno.test({
  name: `compile: the binary carries the chat page (no files read at run time)${suffix}`,
  ignore,
  async fn() {
    assertBuilt();
    const server = await startBinary(["serve", "--port=0", "--hostname=127.0.0.1", "--mode=chat"]);
    try {
      const page = await fetch(new URL("/", server.url.href.replace(/^ws/, "http")));
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<title>tsunagu chat<\/title>/);
    } finally {
      const { status } = await server.stop("SIGTERM");
      assert.equal(status.code, 0);
    }
  },
});
