/**
 * The layers of src/ stay true: each file imports only from its own layer
 * or one below it (protocol → connection → server | client → cli), and the
 * pure protocol layer uses no sockets, timers or files. Read from the
 * import lines of every file, so a new file is checked without being listed.
 */

import assert from "node:assert/strict";

const SRC = new URL("../src/", import.meta.url);

/** Each layer, with the layers its files may import from (itself included). */
const ALLOWED: Record<string, readonly string[]> = {
  protocol: ["protocol"],
  connection: ["protocol", "connection"],
  server: ["protocol", "connection", "server"],
  client: ["protocol", "connection", "client"],
  cli: ["protocol", "connection", "server", "client", "cli"],
};

/** Calls that would give a protocol module I/O or time of its own. */
const IMPURE =
  /\bDeno\.(connect|listen|connectTls|listenTls|open|readFile|readTextFile|writeFile)|\bset(Timeout|Interval)\(|\bDate\.now\(/;

interface Source {
  layer: string;
  path: string;
  text: string;
}

async function sources(): Promise<Source[]> {
  const found: Source[] = [];
  for await (const entry of Deno.readDir(SRC)) {
    if (!entry.isDirectory) {
      throw new Error(`src/${entry.name} is outside every layer: move it into one`);
    }
    const dir = new URL(`${entry.name}/`, SRC);
    for await (const file of Deno.readDir(dir)) {
      if (!file.name.endsWith(".ts")) continue;
      const text = await Deno.readTextFile(new URL(file.name, dir));
      found.push({ layer: entry.name, path: `src/${entry.name}/${file.name}`, text });
    }
  }
  return found;
}

/** The module specifiers of a file's static and dynamic imports and re-exports. */
function specifiers(text: string): string[] {
  const found: string[] = [];
  const pattern =
    /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']/g;
  for (const match of text.matchAll(pattern)) found.push(match[1] ?? match[2] ?? match[3]);
  return found;
}

/** The layer a relative specifier lands in, or the path outside src/ it names. */
function targetLayer(from: string, specifier: string): string {
  const resolved = new URL(specifier, new URL(from, new URL("../", SRC))).href;
  if (!resolved.startsWith(SRC.href)) return resolved.slice(new URL("../", SRC).href.length);
  return resolved.slice(SRC.href.length).split("/")[0];
}

Deno.test("layers: src/ holds only the five layer folders, each with files", async () => {
  const layers = new Set((await sources()).map((source) => source.layer));
  assert.deepEqual([...layers].sort(), Object.keys(ALLOWED).sort());
});

Deno.test("layers: no file imports from a layer above its own", async () => {
  const wrong: string[] = [];
  for (const source of await sources()) {
    for (const specifier of specifiers(source.text)) {
      if (!specifier.startsWith(".")) continue;
      const layer = targetLayer(source.path, specifier);
      // deno.json (the version) is the only file outside src/ a layer may read.
      if (layer === "deno.json" && source.layer === "cli") continue;
      if (!ALLOWED[source.layer].includes(layer)) {
        wrong.push(`${source.path} imports ${specifier} (${layer})`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("layers: the library imports only Deno and node: built-ins", async () => {
  const external: string[] = [];
  for (const source of await sources()) {
    for (const specifier of specifiers(source.text)) {
      if (specifier.startsWith(".") || specifier.startsWith("node:")) continue;
      external.push(`${source.path} imports ${specifier}`);
    }
  }
  assert.deepEqual(external, []);
});

Deno.test("layers: protocol/ modules are pure (no sockets, files, timers or clock)", async () => {
  const impure: string[] = [];
  for (const source of await sources()) {
    if (source.layer !== "protocol") continue;
    // Comments may name what the code must not do.
    const code = source.text.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
    const match = IMPURE.exec(code);
    if (match !== null) impure.push(`${source.path}: ${match[0]}`);
  }
  assert.deepEqual(impure, []);
});

Deno.test("layers: the checker sees a wrong arrow (self-test on a made-up file)", () => {
  const text = 'import { serve } from "../server/server.ts";\nexport * from "./frame.ts";';
  assert.deepEqual(specifiers(text), ["../server/server.ts", "./frame.ts"]);
  assert.equal(targetLayer("src/protocol/x.ts", "../server/server.ts"), "server");
  assert.equal(targetLayer("src/protocol/x.ts", "./frame.ts"), "protocol");
  assert.ok(!ALLOWED.protocol.includes("server"));
});
