/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof`): the top
 * functions by self time with their share of all samples, and by total
 * (inclusive) time for the project's own functions.
 *
 *   deno run -A bench/prof_summary.ts FILE.cpuprofile [TOP]
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = Deno.args;
if (file === undefined) {
  console.error("usage: prof_summary.ts FILE.cpuprofile [TOP]");
  Deno.exit(2);
}
const top = Number(topArg ?? 25);
const profile: Profile = JSON.parse(await Deno.readTextFile(file));

const byId = new Map<number, ProfileNode>();
const parent = new Map<number, number>();
for (const node of profile.nodes) {
  byId.set(node.id, node);
  for (const child of node.children ?? []) parent.set(child, node.id);
}

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const short = url.replace(/^.*\/(src|bench|ext)\//, "$1/").replace(/^file:\/\/.*\//, "");
  return `${functionName || "(anonymous)"} ${short ? `${short}:${lineNumber + 1}` : ""}`.trim();
}

const self = new Map<string, number>();
const total = new Map<string, number>();
let all = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0;
  all += dt;
  const leaf = byId.get(profile.samples[i])!;
  const name = label(leaf);
  self.set(name, (self.get(name) ?? 0) + dt);
  const seen = new Set<string>();
  for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
    const n = label(byId.get(id)!);
    if (seen.has(n)) continue;
    seen.add(n);
    total.set(n, (total.get(n) ?? 0) + dt);
  }
}

function print(title: string, map: Map<string, number>, filter: (name: string) => boolean): void {
  console.log(`\n${title}`);
  const rows = [...map].filter(([name]) => filter(name)).sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [name, t] of rows) {
    console.log(`${(100 * t / all).toFixed(1).padStart(5)}%  ${name}`);
  }
}

console.log(`${file}: ${(all / 1000).toFixed(0)} ms sampled`);
print("self time", self, () => true);
print("total time (project code)", total, (name) => /src\/|bench\//.test(name));
