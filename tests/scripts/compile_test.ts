/**
 * scripts/compile.ts, behind `deno task compile`: the two ways compiling
 * fails for a new user each give one clear message that says what to
 * download and from where, exit 1, and leave no empty output folder:
 * denort not cached and not downloadable (no network: the registries and
 * proxies point at a closed port, DENO_DIR is empty), and DENORT_BIN
 * pointing at the deno command-line tool itself.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { denortUrl, downloadFailure, parseCompileArgs, TARGETS } from "../../scripts/compile.ts";
import { runToEnd } from "../helpers/cli_process.ts";

const NOWHERE = "http://127.0.0.1:9";
const URL_LINE = `  ${denortUrl(Deno.build.target, Deno.version.deno)}`;

/** Runs `deno task compile --output DIR/out/tsunagu` with `env`; the folder must not be left. */
async function compileInto(env: Record<string, string>) {
  const dir = await Deno.makeTempDir({ prefix: "tsunagu-compile-script-" });
  try {
    const output = join(dir, "out", "tsunagu");
    const run = await runToEnd(
      Deno.execPath(),
      ["task", "compile", "--output", output],
      300_000,
      env,
    );
    const left = [];
    for await (const entry of Deno.readDir(dir)) left.push(entry.name);
    return { ...run, left };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts one message naming the denort download, exit 1, nothing raw, nothing left. */
function assertClearFailure(run: Awaited<ReturnType<typeof compileInto>>, first: RegExp): void {
  assert.equal(run.code, 1, run.stderr);
  // deno task's own "Task compile …" line (no colours: NO_COLOR is set) comes first.
  const lines = run.stderr.split("\n").filter((line) => !line.startsWith("Task compile "));
  assert.match(lines[0], first, run.stderr);
  assert.ok(lines.includes(URL_LINE), `names the download:\n${run.stderr}`);
  assert.ok(
    lines.some((line) => line.includes("DENORT_BIN=/path/to/denort deno task compile")),
    run.stderr,
  );
  assert.doesNotMatch(run.stderr, /Caused by|Stack backtrace|error sending request/);
  assert.deepEqual(run.left, [], "no output folder left behind");
}

Deno.test("compile script: offline, one message saying which denort to download from where", async () => {
  const denoDir = await Deno.makeTempDir({ prefix: "tsunagu-empty-deno-dir-" });
  try {
    const run = await compileInto({
      DENO_DIR: denoDir,
      DENORT_BIN: "",
      HTTP_PROXY: NOWHERE,
      HTTPS_PROXY: NOWHERE,
      ALL_PROXY: NOWHERE,
      NO_PROXY: "",
    });
    assertClearFailure(
      run,
      /^compile: cannot get denort, so .*tsunagu was not built: .*downloading it failed \(.+\)\.$/,
    );
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});

Deno.test("compile script: DENORT_BIN pointing at deno itself is refused, before compiling", async () => {
  const run = await compileInto({ DENORT_BIN: Deno.execPath() });
  assertClearFailure(
    run,
    /^compile: DENORT_BIN=.* is the deno command-line tool, not denort: a binary built on it would be plain Deno, not tsunagu\.$/,
  );
  const missing = await compileInto({ DENORT_BIN: "/nonexistent/denort" });
  assertClearFailure(missing, /^compile: DENORT_BIN=\/nonexistent\/denort does not exist\.$/);
});

Deno.test("compile script: arguments, and what counts as a failed download", () => {
  assert.deepEqual(parseCompileArgs([], "x86_64-unknown-linux-gnu"), {
    target: "x86_64-unknown-linux-gnu",
    output: "dist/tsunagu",
  });
  assert.deepEqual(parseCompileArgs(["--target=x86_64-pc-windows-msvc"], TARGETS[0]), {
    target: "x86_64-pc-windows-msvc",
    output: "dist/tsunagu.exe",
  });
  assert.deepEqual(parseCompileArgs(["--output", "bin/ts"], TARGETS[0]), {
    target: TARGETS[0],
    output: "bin/ts",
  });
  assert.match(
    (parseCompileArgs(["--target", "mips"], TARGETS[0]) as { error: string }).error,
    /unknown --target "mips"/,
  );
  assert.match(
    (parseCompileArgs(["serve"], TARGETS[0]) as { error: string }).error,
    /unexpected argument "serve"/,
  );

  const head = "error: Writing deno compile executable to temporary file 'dist/tsunagu.tmp'\n\n" +
    "Caused by:\n    0: Setting up base binary.\n    1: error sending request for url " +
    "(https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error " +
    "(Connect): ";
  assert.equal(
    downloadFailure(
      `${head}dns error: failed to lookup address information: Name or service not known\n`,
    ),
    "dns error: failed to lookup address information: Name or service not known",
  );
  assert.equal(
    downloadFailure(`${head}tcp connect error: Connection refused (os error 111)\n`),
    "tcp connect error: Connection refused (os error 111)",
  );
  assert.equal(downloadFailure("error: TS2304 [ERROR]: Cannot find name 'x'."), null);
});
