/**
 * `deno task start` needs nothing from any registry: the library has no
 * dependencies, and the one test-only package (npm `ws`, imported by
 * tests/protocol/permessage_deflate_test.ts) must not be fetched before the
 * demo starts.
 *
 * Why deno.json says `"lock": false` and there is no deno.lock: `deno task`
 * installs every npm package a lock file lists before it runs any task, so a
 * lock holding `npm:ws` made `deno task start` fail without the npm registry.
 * The library itself locks nothing (it has no dependencies), and the test
 * pins its package to an exact version (`npm:ws@8.18.3`) in its import.
 *
 * The demo runs here as a user runs it, through `deno task start`, with an
 * empty DENO_DIR (nothing cached), the npm and JSR registries pointed at a
 * closed port on this machine, and every HTTP(S) proxy pointed there too, so
 * any download fails.
 */

import assert from "node:assert/strict";
import { startProcess } from "./helpers/example_process.ts";

/** An address where nothing listens: every request to it is refused. */
const NOWHERE = "http://127.0.0.1:9";

Deno.test("offline: deno task start serves the chat page with no registry and nothing cached", async () => {
  const denoDir = await Deno.makeTempDir({ prefix: "tsunagu-empty-deno-dir-" });
  try {
    const proc = await startProcess("deno task start", ["task", "start", "0"], {
      DENO_DIR: denoDir,
      NPM_CONFIG_REGISTRY: `${NOWHERE}/`,
      JSR_URL: `${NOWHERE}/`,
      HTTP_PROXY: NOWHERE,
      HTTPS_PROXY: NOWHERE,
      ALL_PROXY: NOWHERE,
      NO_PROXY: "",
    });
    try {
      assert.doesNotMatch(proc.output(), /Download|error/i, proc.output());
      const page = await fetch(proc.url);
      assert.equal(page.status, 200, proc.output());
      assert.match(await page.text(), /<title>tsunagu chat<\/title>/);
      const status = await proc.stop("SIGTERM");
      assert.equal(status.code, 0, `exit status ${JSON.stringify(status)}\n${proc.output()}`);
    } finally {
      await proc.close();
    }
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});
