/**
 * The long fuzz run (`deno task fuzz`): the checks of `tests/fuzz_test.ts`
 * with any seed, for as long as asked.
 *
 *   deno run -A tests/fuzz/run.ts [--duration SECONDS] [--seed N] [--mode parser|live|all]
 *   deno run -A tests/fuzz/run.ts --seed N --case I [--mode parser|live]
 *
 * Alternates slices of parser+assembler cases with batches of live-server
 * cases (one raw TCP connection each, a healthy standard client checked
 * between batches) until the duration has passed. Prints counts of streams,
 * events and error codes. On the first violation it shrinks the case,
 * prints the seed, the case index, the original and the shrunk bytes and the
 * command that replays it, and exits 1. Bad flags exit 2.
 *
 * @module
 */

import { TestClient } from "../helpers/harness.ts";
import {
  type CaseResult,
  caseSeed,
  checkCase,
  formatCase,
  type FuzzCase,
  generateCase,
  liveFuzz,
  PARSER_FUZZ,
  shrinkCase,
} from "./frame_fuzz.ts";
import {
  checkLiveCase,
  type FuzzServer,
  healthyRoundTrip,
  liveCaseFails,
  runLiveBatch,
  runLiveCase,
  startFuzzServer,
} from "./live_fuzz.ts";

type Mode = "parser" | "live" | "all";

interface Args {
  duration: number;
  seed: number;
  mode: Mode;
  replay: number | null;
}

const USAGE = "usage: deno task fuzz [--duration SECONDS] [--seed N] [--mode parser|live|all]\n" +
  "       deno task fuzz --seed N --case I [--mode parser|live]";

// The live server's limit, and how the live case sequence is told apart from the parser one.
const LIVE_MAX_PAYLOAD = 2_048;
const LIVE_BATCH = 20;
const PARSER_SLICE = 250;
const liveSeed = (seed: number) => (seed ^ 0x5eed_11fe) >>> 0;

function usage(message: string): never {
  console.error(`fuzz: ${message}\n${USAGE}`);
  Deno.exit(2);
}

function parseArgs(args: string[]): Args {
  let duration = 60;
  let seed: number | undefined;
  let mode: Mode = "all";
  let replay: number | null = null;
  const integer = (flag: string, text: string, max: number): number => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value > max) {
      usage(`${flag} takes an integer from 0 to ${max}, got ${JSON.stringify(text)}`);
    }
    return value;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      Deno.exit(0);
    }
    const eq = arg.indexOf("=");
    const flag = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = flag === arg ? undefined : arg.slice(eq + 1);
    const value = () => inline ?? args[++i] ?? usage(`${flag} needs a value`);
    if (flag === "--duration") {
      const text = value();
      duration = Number(text);
      if (!/^\d+(\.\d+)?$/.test(text) || !(duration > 0) || duration > 86_400) {
        usage(
          `--duration takes seconds, more than 0 and at most 86400, got ${JSON.stringify(text)}`,
        );
      }
    } else if (flag === "--seed") {
      seed = integer(flag, value(), 0xffff_ffff);
    } else if (flag === "--case") {
      replay = integer(flag, value(), Number.MAX_SAFE_INTEGER);
    } else if (flag === "--mode") {
      const text = value();
      if (text !== "parser" && text !== "live" && text !== "all") {
        usage(`--mode is parser, live or all, got ${JSON.stringify(text)}`);
      }
      mode = text;
    } else {
      usage(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  if (replay !== null && seed === undefined) usage("--case needs the --seed it came from");
  if (replay !== null && mode === "all") mode = "parser";
  return { duration, seed: seed ?? crypto.getRandomValues(new Uint32Array(1))[0], mode, replay };
}

/** Counts by key, printed sorted. */
class Tally {
  #counts = new Map<string, number>();
  add(key: string, n = 1): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + n);
  }
  toString(): string {
    return [...this.#counts].sort(([a], [b]) => a.localeCompare(b)).map(([key, n]) => `${key} ${n}`)
      .join(", ") || "-";
  }
}

async function failWith(
  args: Args,
  kind: "parser" | "live",
  index: number,
  fuzzCase: FuzzCase,
  violations: string[],
  fails: (candidate: FuzzCase) => boolean | Promise<boolean>,
): Promise<never> {
  console.error(`\nFUZZ VIOLATION (${kind}) seed ${args.seed}, case ${index}:`);
  for (const violation of violations.slice(0, 10)) console.error(`  - ${violation}`);
  console.error(`\noriginal:\n${formatCase(fuzzCase)}`);
  const small = await shrinkCase(fuzzCase, fails, kind === "parser" ? 5_000 : 300);
  console.error(`\nminimal reproduction:\n${formatCase(small)}`);
  if (kind === "parser") {
    for (const violation of checkCase(small).violations.slice(0, 5)) {
      console.error(`  - ${violation}`);
    }
  }
  console.error(`\nreplay: deno task fuzz --seed ${args.seed} --case ${index} --mode ${kind}`);
  Deno.exit(1);
}

/** Generates and checks parser case `index`; on a violation, reports it and exits. */
async function parserCase(
  args: Args,
  index: number,
): Promise<{ fuzzCase: FuzzCase; result: CaseResult }> {
  const fuzzCase = generateCase(caseSeed(args.seed, index), PARSER_FUZZ);
  const result = checkCase(fuzzCase);
  if (result.violations.length > 0) {
    await failWith(
      args,
      "parser",
      index,
      fuzzCase,
      result.violations,
      (candidate) => checkCase(candidate).violations.length > 0,
    );
  }
  return { fuzzCase, result };
}

async function replay(args: Args, index: number): Promise<void> {
  if (args.mode === "parser") {
    const { fuzzCase, result } = await parserCase(args, index);
    console.log(formatCase(fuzzCase));
    console.log(`model events: ${result.events.length}`);
  } else {
    const fuzz = startFuzzServer(LIVE_MAX_PAYLOAD);
    const fuzzCase = generateCase(caseSeed(liveSeed(args.seed), index), liveFuzz(LIVE_MAX_PAYLOAD));
    const result = await runLiveCase(fuzz.port, fuzzCase);
    const violations = checkLiveCase(fuzzCase, result, fuzz.peers.get(result.path));
    console.log(formatCase(fuzzCase));
    console.log(`server replies: ${result.replies.join(" | ") || "-"}; ending ${result.ending}`);
    if (violations.length > 0) {
      await failWith(args, "live", index, fuzzCase, violations, (c) => liveCaseFails(fuzz, c));
    }
    await fuzz.server.shutdown({ timeout: 1_000 });
  }
  console.log("no violation");
}

async function main(): Promise<void> {
  const args = parseArgs(Deno.args);
  if (args.replay !== null) return await replay(args, args.replay);
  console.log(`fuzz: seed ${args.seed}, ${args.duration} s, mode ${args.mode}`);
  const started = Date.now();
  const deadline = started + args.duration * 1_000;
  const parser = { streams: 0, bytes: 0, events: new Tally(), endings: new Tally() };
  const live = { connections: 0, batches: 0, replies: new Tally(), endings: new Tally() };
  let fuzz: FuzzServer | null = null;
  let healthy: TestClient | null = null;
  if (args.mode !== "parser") {
    fuzz = startFuzzServer(LIVE_MAX_PAYLOAD);
    healthy = await TestClient.open(fuzz.server.url);
  }
  let nextProgress = started + 10_000;
  while (Date.now() < deadline) {
    if (args.mode !== "live") {
      for (let k = 0; k < PARSER_SLICE && Date.now() < deadline; k++) {
        const { fuzzCase, result } = await parserCase(args, parser.streams);
        parser.streams++;
        parser.bytes += fuzzCase.bytes.length;
        for (const event of result.events) {
          parser.events.add(event.type === "error" ? `error ${event.code}` : event.type);
        }
        const last = result.events.at(-1);
        parser.endings.add(last?.type === "error" || last?.type === "close" ? last.type : "open");
      }
    }
    if (fuzz !== null && healthy !== null && Date.now() < deadline) {
      const { results, failures } = await runLiveBatch(
        fuzz,
        liveSeed(args.seed),
        live.connections,
        LIVE_BATCH,
      );
      if (failures.length > 0) {
        const [{ index, fuzzCase, violations }] = failures;
        await failWith(args, "live", index, fuzzCase, violations, (c) => liveCaseFails(fuzz, c));
      }
      live.connections += LIVE_BATCH;
      live.batches++;
      for (const result of results) {
        live.endings.add(result.ending);
        live.replies.add(
          result.closeCode === null
            ? "no close frame"
            : `close ${result.closeCode < 3000 ? result.closeCode : "3000-4999"}`,
        );
      }
      const problems = await healthyRoundTrip(healthy, live.batches);
      if (problems.length > 0) {
        console.error(
          `\nFUZZ VIOLATION (healthy client) seed ${args.seed}, after live batch ${live.batches}:`,
        );
        for (const problem of problems) console.error(`  - ${problem}`);
        Deno.exit(1);
      }
    }
    if (Date.now() >= nextProgress) {
      nextProgress += 10_000;
      console.log(
        `  ${
          Math.round((Date.now() - started) / 1000)
        } s: ${parser.streams} streams, ${live.connections} live connections`,
      );
    }
  }
  const problems: string[] = [];
  if (fuzz !== null && healthy !== null) {
    const lingering = fuzz.server.connectionCount;
    if (lingering !== 1) {
      problems.push(`${lingering} connections open besides none but the healthy client`);
    }
    await healthy.dispose();
    await fuzz.server.shutdown({ timeout: 1_000 });
    if (fuzz.errors.length > 0) {
      problems.push(
        `the error handler got ${fuzz.errors.length} errors: ${String(fuzz.errors[0])}`,
      );
    }
    if (fuzz.lateMessages > 0) problems.push(`${fuzz.lateMessages} messages after a close handler`);
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`\nfuzz: seed ${args.seed}, ${seconds} s`);
  if (args.mode !== "live") {
    console.log(`parser: ${parser.streams} streams, ${(parser.bytes / 1_048_576).toFixed(1)} MiB`);
    console.log(`  events: ${parser.events}`);
    console.log(`  streams ended by: ${parser.endings}`);
  }
  if (args.mode !== "parser") {
    console.log(
      `live: ${live.connections} connections in ${live.batches} batches (maxPayload ${LIVE_MAX_PAYLOAD})`,
    );
    console.log(`  server answers: ${live.replies}`);
    console.log(`  connections ended by: ${live.endings}`);
    console.log(`  healthy client: ${live.batches} echo round trips`);
  }
  if (problems.length > 0) {
    console.error(
      `\nFUZZ VIOLATION seed ${args.seed}:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
    Deno.exit(1);
  }
  console.log("no violations");
}

await main();
