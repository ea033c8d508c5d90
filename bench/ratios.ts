/**
 * Summarises wsbench results against issue 12's targets: for each shape, the
 * median of every valid run of each server (across all result files given),
 * and the ratio of each tsunagu variant to deno_builtin and to deno_limit,
 * each computed within one compare run and then the median taken (the
 * machine drifts between runs; ratios inside one run are what can be
 * compared).
 *
 *   deno run -A bench/ratios.ts RESULTS_DIR_OR_JSONL...
 *
 * Reads `results.jsonl` as written by ../shared/wsbench/compare.sh. Invalid
 * runs and noisy ones (other processes above compare.sh's --max-foreign) are
 * left out.
 */

interface Run {
  scenario: string;
  server: string;
  ok: boolean;
  value: number;
  file: string;
}

const FIGURE: Record<string, string> = {
  echo_small_d1: "msgs_per_s",
  echo_small_d16: "msgs_per_s",
  echo_medium: "msgs_per_s",
  echo_large: "msgs_per_s",
  connect: "handshakes_per_s",
  idle: "kib_per_conn",
  fanout: "deliveries_per_s",
};
const SHAPES: Record<string, string> = {
  echo_small_d1: "echo 32 B, 1 in flight (msg/s)",
  echo_small_d16: "echo 32 B, 16 in flight (msg/s)",
  echo_medium: "echo 16 KiB (msg/s)",
  echo_large: "echo 1 MiB (msg/s)",
  connect: "connect + upgrade + close (/s)",
  idle: "idle KiB per connection (lower is better)",
  fanout: "fanout 1000 × 64 B (deliveries/s)",
};
// Issue 12's targets, as a ratio to deno_limit (idle: at most deno_limit's
// KiB; pipelined and fanout: at least Bun's figure).
const TARGET: Record<string, string> = {
  echo_small_d1: "≥ 0.95 limit",
  echo_small_d16: "≥ 1.0 bun",
  echo_medium: "≥ 0.85 limit",
  echo_large: "≥ 0.85 limit",
  connect: "≥ 0.9 limit",
  idle: "≤ 1.0 limit",
  fanout: "≥ 1.0 bun",
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function load(path: string): Promise<Run[]> {
  const file = path.endsWith(".jsonl") ? path : `${path}/results.jsonl`;
  const runs: Run[] = [];
  for (const line of (await Deno.readTextFile(file)).split("\n")) {
    if (line.trim() === "") continue;
    const record = JSON.parse(line);
    const key = FIGURE[record.scenario];
    if (key === undefined || typeof record[key] !== "number") continue;
    // A window in which other processes used more CPU than allowed is
    // noise, not a figure (compare.sh repeats it; the repeat counts).
    const noisy = typeof record.cpu?.foreign_pct === "number" &&
      typeof record.max_foreign === "number" && record.cpu.foreign_pct > record.max_foreign;
    runs.push({
      scenario: record.scenario,
      server: record.server,
      ok: record.ok === true && !noisy,
      value: record[key],
      file,
    });
  }
  return runs;
}

function format(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString("en") : value.toFixed(2);
}

if (Deno.args.length === 0) {
  console.error("usage: ratios.ts RESULTS_DIR_OR_JSONL...");
  Deno.exit(2);
}
const runs = (await Promise.all(Deno.args.map(load))).flat().filter((run) => run.ok);
const servers = [...new Set(runs.map((run) => run.server))];
const variants = servers.filter((server) => server.startsWith("tsunagu"));
const files = [...new Set(runs.map((run) => run.file))];

// Bun is the reference for the pipelined and fan-out shapes, when it ran.
const references = ["deno_builtin", "deno_limit", ...(servers.includes("bun") ? ["bun"] : [])];
const short = (server: string) => server.replace(/^deno_/, "");
const header = ["shape", ...servers.map((s) => `${s} (median)`)];
for (const variant of variants) {
  for (const reference of references) header.push(`${variant} / ${short(reference)}`);
}
header.push("target");
const lines = [`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`];
for (const scenario of Object.keys(FIGURE)) {
  const of = (server: string, file?: string) =>
    runs.filter((run) =>
      run.scenario === scenario && run.server === server &&
      (file === undefined || run.file === file)
    ).map((run) => run.value);
  if (variants.every((variant) => of(variant).length === 0)) continue;
  const row = [SHAPES[scenario]];
  for (const server of servers) {
    const values = of(server);
    row.push(values.length === 0 ? "—" : `${format(median(values))} (${values.length})`);
  }
  for (const variant of variants) {
    for (const reference of references) {
      // Ratio within each compare run (median of the variant's runs there
      // over the reference's), then the median over runs.
      const ratios: number[] = [];
      for (const file of files) {
        const mine = of(variant, file);
        const theirs = of(reference, file);
        if (mine.length > 0 && theirs.length > 0) ratios.push(median(mine) / median(theirs));
      }
      row.push(ratios.length === 0 ? "—" : `${median(ratios).toFixed(2)}×`);
    }
  }
  row.push(TARGET[scenario]);
  lines.push(`| ${row.join(" | ")} |`);
}
console.log(lines.join("\n"));
