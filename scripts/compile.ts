/**
 * `deno task compile`: builds the standalone `tsunagu` binary with
 * `deno compile`, and turns the two ways that goes wrong for a new user into
 * one clear message each, with what to download and from where:
 *
 * - `deno compile` needs `denort`, the runtime a compiled program is built
 *   on. Unless DENORT_BIN names one, Deno downloads it, and without a
 *   network it prints a raw DNS error and leaves an empty output folder.
 * - DENORT_BIN pointed at the `deno` command itself "succeeds" with a binary
 *   that is plain Deno (it starts a REPL). That is refused before compiling,
 *   and a binary that does not answer `--version` as tsunagu is deleted.
 *
 *   deno task compile [--target TARGET] [--output PATH]
 *
 * Defaults: this machine's target, and dist/tsunagu (dist/tsunagu.exe for
 * Windows). Only --allow-net and --allow-read (with --unstable-net for
 * --reuse-port) are baked into the binary. Not part of the published
 * package.
 *
 * @module
 */

import { dirname } from "node:path";

/**
 * What the binary may do (the CLI needs the network, and files for --cert,
 * --key and --static), and the worker module `serve --workers` loads by URL,
 * which `deno compile` must be told to embed.
 */
const BAKED_FLAGS = [
  "--allow-net",
  "--allow-read",
  // --redis may take its password from this variable, never from the command line.
  "--allow-env=TSUNAGU_REDIS_PASSWORD",
  "--unstable-net",
  "--include",
  "src/cli/serve_worker.ts",
];
const ENTRY = "src/cli/main.ts";

/** The targets `deno compile` can build for. */
export const TARGETS: readonly string[] = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
];

/** The arguments of `deno task compile`. */
export interface CompileArgs {
  /** The target triple, e.g. `x86_64-unknown-linux-gnu`. */
  target: string;
  /** Where the binary goes. */
  output: string;
}

/**
 * Parses `[--target TARGET] [--output PATH]`; an error message for anything
 * else.
 *
 * @example
 * ```ts
 * import { parseCompileArgs } from "./compile.ts";
 * console.log(parseCompileArgs(["--target", "x86_64-pc-windows-msvc"], "x86_64-unknown-linux-gnu"));
 * // { target: "x86_64-pc-windows-msvc", output: "dist/tsunagu.exe" }
 * ```
 */
export function parseCompileArgs(
  args: readonly string[],
  host: string,
): CompileArgs | { error: string } {
  let target = host;
  let output: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].startsWith("--") && args[i].includes("=")
      ? [args[i].slice(0, args[i].indexOf("=")), args[i].slice(args[i].indexOf("=") + 1)]
      : [args[i], undefined];
    const value = () => inline ?? args[++i] ?? "";
    if (flag === "--target") {
      target = value();
      if (!TARGETS.includes(target)) {
        return {
          error: `unknown --target ${JSON.stringify(target)}: one of ${TARGETS.join(", ")}`,
        };
      }
    } else if (flag === "--output") {
      output = value();
      if (output === "") return { error: "missing value for --output" };
    } else {
      return {
        error: `unexpected argument ${JSON.stringify(args[i])} ` +
          "(usage: deno task compile [--target TARGET] [--output PATH])",
      };
    }
  }
  output ??= target.includes("windows") ? "dist/tsunagu.exe" : "dist/tsunagu";
  return { target, output };
}

/**
 * Where Deno downloads the denort runtime of `version` for `target` from.
 *
 * @example
 * ```ts
 * import { denortUrl } from "./compile.ts";
 * console.log(denortUrl("x86_64-unknown-linux-gnu", "2.9.6"));
 * // https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip
 * ```
 */
export function denortUrl(target: string, version: string): string {
  return `https://dl.deno.land/release/v${version}/denort-${target}.zip`;
}

/** What to download and how to use it: the end of every message about denort. */
export function howToGetDenort(target: string, version: string): string {
  const again = `deno task compile${target === Deno.build.target ? "" : ` --target ${target}`}`;
  return [
    `Download denort for Deno ${version} (your deno's version) and ${target} on a machine`,
    "with a network:",
    `  ${denortUrl(target, version)}`,
    `  (the same file is on https://github.com/denoland/deno/releases/tag/v${version})`,
    "then unzip it and run:",
    `  DENORT_BIN=/path/to/denort ${again}`,
  ].join("\n");
}

/**
 * The cause when `deno compile`'s output shows it could not download
 * denort (no network, DNS, proxy, timeout); null for any other failure.
 *
 * @example
 * ```ts
 * import { downloadFailure } from "./compile.ts";
 * const output = "0: Setting up base binary.\n" +
 *   "1: error sending request for url (https://dl.deno.land/…): client error (Connect): " +
 *   "dns error: failed to lookup address information: Name or service not known";
 * console.log(downloadFailure(output)); // dns error: failed to lookup address information: …
 * ```
 */
export function downloadFailure(output: string): string | null {
  if (!/base binary|denort/i.test(output)) return null;
  const line = output.split("\n").find((text) =>
    /error sending request|dns error|Connection refused|timed out|network/i.test(text)
  );
  if (line === undefined) return null;
  const cause = /(dns error: .*|tcp connect error: .*|Connection refused.*|timed out.*)$/i
    .exec(line)?.[1];
  return (cause ?? line.replace(/^\s*\d+:\s*/, "")).trim();
}

/** Runs `command args…` to its end (killed after `timeoutMs`) and returns its exit code and output. */
async function run(
  command: string,
  args: string[],
  env: Record<string, string> | undefined,
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(env === undefined ? {} : { env, clearEnv: true }),
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited meanwhile.
    }
  }, timeoutMs);
  try {
    const { code, stdout, stderr } = await child.output();
    const text = new TextDecoder();
    return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** Whether `path` is the deno command-line tool (its `--version` says `deno X.Y.Z`). */
async function isDenoCli(path: string): Promise<boolean> {
  try {
    const { stdout } = await run(path, ["--version"], undefined, 10_000);
    return /^deno \d+\.\d+\.\d+/.test(stdout);
  } catch {
    return false;
  }
}

/** Whether `path` exists; false for any error. */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Removes `path` if it is an empty folder; ignores every error. */
async function removeIfEmpty(path: string): Promise<void> {
  try {
    for await (const _ of Deno.readDir(path)) return;
    await Deno.remove(path);
  } catch {
    // Not there, not empty or not ours: leave it.
  }
}

/** Builds the binary; resolves with the exit code after printing what happened. */
export async function compile(args: readonly string[]): Promise<number> {
  const version = Deno.version.deno;
  const parsed = parseCompileArgs(args, Deno.build.target);
  if ("error" in parsed) {
    console.error(`compile: ${parsed.error}`);
    return 2;
  }
  const { target, output } = parsed;
  const fail = (message: string) => {
    console.error(`compile: ${message}`);
    return 1;
  };

  // An empty DENORT_BIN counts as unset, and is not passed on.
  const env = Deno.env.toObject();
  const denort = env.DENORT_BIN ?? "";
  delete env.DENORT_BIN;
  if (denort !== "") {
    if (!(await exists(denort))) {
      return fail(
        `DENORT_BIN=${denort} does not exist.\n${howToGetDenort(target, version)}`,
      );
    }
    if (await isDenoCli(denort)) {
      return fail(
        `DENORT_BIN=${denort} is the deno command-line tool, not denort: a binary built on it ` +
          `would be plain Deno, not tsunagu.\n${howToGetDenort(target, version)}`,
      );
    }
    env.DENORT_BIN = denort;
  }

  const folder = dirname(output);
  const folderExisted = await exists(folder);
  const result = await run(
    Deno.execPath(),
    [
      "compile",
      ...BAKED_FLAGS,
      "--target",
      target,
      "--output",
      output,
      ENTRY,
    ],
    env,
    600_000,
  );
  const cleanUp = async () => {
    await Deno.remove(output).catch(() => {});
    if (!folderExisted) await removeIfEmpty(folder);
  };
  if (result.code !== 0) {
    await cleanUp();
    const cause = denort === "" ? downloadFailure(result.stdout + result.stderr) : null;
    if (cause !== null) {
      return fail(
        `cannot get denort, so ${output} was not built: deno compile builds the binary on ` +
          `denort, the runtime of Deno ${version} for ${target}; it is not in Deno's cache, and ` +
          `downloading it failed (${cause}).\n${howToGetDenort(target, version)}`,
      );
    }
    console.error(result.stdout + result.stderr);
    return fail(`deno compile failed (exit ${result.code}); ${output} was not built`);
  }

  // A binary for this machine must answer as tsunagu: one built on the wrong
  // runtime (plain deno, another version) would not.
  if (target === Deno.build.target) {
    const check = await run(output, ["--version"], undefined, 30_000).catch((error) => ({
      code: -1,
      stdout: "",
      stderr: String(error),
    }));
    if (!/^tsunagu \S+/.test(check.stdout)) {
      await cleanUp();
      const seen = (check.stdout || check.stderr).trim().split("\n")[0];
      return fail(
        `the binary built on ${denort === "" ? "the cached denort" : `DENORT_BIN=${denort}`} ` +
          `does not run as tsunagu (--version said ${JSON.stringify(seen)}), so it was ` +
          `deleted. Is it the denort of Deno ${version}?\n${howToGetDenort(target, version)}`,
      );
    }
  }
  const { size } = await Deno.stat(output);
  console.log(`compile: built ${output} for ${target} (${(size / 1024 ** 2).toFixed(0)} MiB)`);
  return 0;
}

if (import.meta.main) Deno.exit(await compile(Deno.args));
