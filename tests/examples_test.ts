/**
 * Runs every example for real: `deno check`, then start it as a subprocess on
 * 127.0.0.1 port 0, talk to it with Deno's WebSocket client, send SIGTERM and
 * expect exit code 0.
 *
 * Examples are discovered from the examples/ folder: every .ts file that no
 * other example file imports is an entry point, and each needs a case in
 * CASES below. A new example without one fails its test. Each is started with
 * the permission flags of the `deno run … <file>` line in its own header
 * comment, so that documented command is what gets tested.
 */

import assert from "node:assert/strict";
import { runToEnd } from "./helpers/cli_process.ts";
import { ROOT, startExample } from "./helpers/example_process.ts";
import { TestClient } from "./helpers/harness.ts";

/** How one example is talked to. */
interface ExampleCase {
  /** Checks the example's behaviour against the URL it printed. */
  exercise(url: URL): Promise<void>;
}

const CASES: Record<string, ExampleCase> = {
  "examples/multicore.ts": {
    async exercise(url) {
      // 16 members of one room: the kernel spreads them over the workers
      // (all on one worker: chance 2^-15), and every message must reach
      // every member, whichever worker holds it.
      const room = new URL("/lobby", url).href;
      const members: TestClient[] = [];
      try {
        for (let i = 0; i < 16; i++) members.push(await TestClient.open(room));
        // The relay runs from the first message on; send one each from two members.
        for (const [sender, text] of [[members[0], "first"], [members[15], "second"]] as const) {
          sender.ws.send(text);
          for (const member of members) assert.equal(await member.next(), text);
        }
        members[3].ws.send(new Uint8Array([1, 2, 3]));
        for (const member of members) {
          assert.deepEqual(await member.next(), new Uint8Array([1, 2, 3]));
        }
      } finally {
        for (const member of members) await member.dispose();
      }
    },
  },
  "examples/echo.ts": {
    async exercise(url) {
      assert.equal(url.protocol, "ws:");
      const client = await TestClient.open(url.href);
      try {
        client.ws.send("héllo, echo ✓");
        assert.equal(await client.next(), "héllo, echo ✓");
        const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
        client.ws.send(bytes);
        assert.deepEqual(await client.next(), bytes); // binary stays binary
        client.ws.send("");
        assert.equal(await client.next(), "");
      } finally {
        await client.dispose();
      }
      assert.equal(client.closeEvent?.wasClean, true);
    },
  },
  "examples/chat/server.ts": {
    async exercise(url) {
      assert.equal(url.protocol, "http:");
      const page = await fetch(url);
      assert.equal(page.status, 200);
      assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
      assert.match(await page.text(), /<html/i);

      const chat = new URL("/chat", url);
      chat.protocol = "ws:";
      const alice = await TestClient.open(chat.href);
      let bob: TestClient | null = null;
      try {
        bob = await TestClient.open(chat.href);
        // Bob hears his own message back once he is in the room; then Alice must hear it too.
        bob.ws.send(JSON.stringify({ name: "bob", text: "anyone here?" }));
        for (const client of [bob, alice]) {
          const got = JSON.parse(await client.next() as string);
          assert.equal(got.name, "bob");
          assert.equal(got.text, "anyone here?");
          assert.equal(typeof got.time, "number");
        }
        alice.ws.send(JSON.stringify({ name: "alice", text: "hi bob" }));
        for (const client of [alice, bob]) {
          const got = JSON.parse(await client.next() as string);
          assert.deepEqual([got.name, got.text, typeof got.time], ["alice", "hi bob", "number"]);
        }
      } finally {
        await bob?.dispose();
        await alice.dispose();
      }

      // The same port also echoes on /echo, text as text and binary as binary.
      const echoUrl = new URL("/echo", url);
      echoUrl.protocol = "ws:";
      const echo = await TestClient.open(echoUrl.href);
      try {
        echo.ws.send("not json, just echo");
        assert.equal(await echo.next(), "not json, just echo");
        echo.ws.send(new Uint8Array([7, 8, 9]));
        assert.deepEqual(await echo.next(), new Uint8Array([7, 8, 9]));
      } finally {
        await echo.dispose();
      }
    },
  },
};

/** The flags of the `deno run <flags> <file>` usage line in an example's source, or null. */
function documentedFlags(source: string, file: string): string[] | null {
  const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const line = new RegExp(`deno run((?:\\s+-[^\\s]+)*)\\s+${escaped}\\b`).exec(source);
  return line === null ? null : line[1].trim().split(/\s+/).filter((flag) => flag !== "");
}

/** Relative imports (`from "./x.ts"`, `import "../y.ts"`) in a module's source. */
function relativeImports(source: string): string[] {
  const specifiers: string[] = [];
  for (const m of source.matchAll(/(?:from|import)\s*\(?\s*["'](\.\.?\/[^"']+)["']/g)) {
    specifiers.push(m[1]);
  }
  return specifiers;
}

/** Entry points under examples/: .ts files that no other example file imports. */
async function discoverExamples(): Promise<string[]> {
  const files: string[] = [];
  const walk = async (dir: URL, prefix: string) => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) await walk(new URL(`${entry.name}/`, dir), `${prefix}${entry.name}/`);
      else if (/\.(ts|tsx|mts)$/.test(entry.name)) files.push(`${prefix}${entry.name}`);
    }
  };
  await walk(new URL("examples/", ROOT), "examples/");
  const imported = new Set<string>();
  for (const file of files) {
    const base = new URL(file, ROOT);
    for (const specifier of relativeImports(await Deno.readTextFile(base))) {
      imported.add(new URL(specifier, base).href);
    }
  }
  return files.filter((file) => !imported.has(new URL(file, ROOT).href)).sort();
}

const examples = await discoverExamples();

Deno.test("examples: discovery finds the known entry points", () => {
  assert.ok(examples.includes("examples/echo.ts"), `found: ${examples.join(", ")}`);
  assert.ok(examples.includes("examples/chat/server.ts"), `found: ${examples.join(", ")}`);
  const stale = Object.keys(CASES).filter((file) => !examples.includes(file));
  assert.deepEqual(stale, [], "CASES names examples that no longer exist");
});

Deno.test(`examples: deno check ${examples.join(" ")}`, async () => {
  const { code, stdout, stderr } = await runToEnd(Deno.execPath(), ["check", ...examples], 120_000);
  assert.equal(code, 0, `deno check failed:\n${stdout}${stderr}`);
});

for (const file of examples) {
  Deno.test(`examples: ${file} serves on port 0, talks, exits 0 on SIGTERM`, async () => {
    const example = CASES[file];
    assert.ok(
      example,
      `${file} has no test case: add one to CASES in tests/examples_test.ts`,
    );
    const flags = documentedFlags(await Deno.readTextFile(new URL(file, ROOT)), file);
    assert.ok(flags, `${file} documents no "deno run <flags> ${file}" usage line`);
    const proc = await startExample(file, flags, ["0", "--hostname", "127.0.0.1"]);
    try {
      assert.equal(proc.url.hostname, "127.0.0.1", proc.output());
      assert.notEqual(proc.url.port, "", `no port in the printed URL\n${proc.output()}`);
      assert.notEqual(proc.url.port, "0", `printed port 0, not the real one\n${proc.output()}`);
      await example.exercise(proc.url);
      const status = await proc.stop("SIGTERM");
      assert.equal(status.code, 0, `exit status ${JSON.stringify(status)}\n${proc.output()}`);
      assert.equal(status.signal, null, proc.output());
    } finally {
      await proc.close();
    }
  });
}
