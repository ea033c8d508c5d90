/**
 * The command line as a whole (src/cli/args.ts): a missing or unknown
 * command lists every command, and `connect` and `load` have help texts of
 * their own (`--help`, `-h` or `tsunagu help COMMAND`), to which their
 * mistakes point.
 */

import assert from "node:assert/strict";
import { parseCliArgs, runCli, usage } from "../../src/cli/main.ts";

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, {
    stdout: (line) => out.push(line),
    stderr: (line) => err.push(line),
  });
  return { code, out, err };
}

Deno.test("cli: a missing or unknown command lists serve, connect and load", async () => {
  for (
    const [args, first] of [
      [[], "tsunagu: missing command (expected serve, connect or load)"],
      [["bogus"], 'tsunagu: unknown command "bogus" (expected serve, connect or load)'],
    ] as const
  ) {
    const result = await run([...args]);
    assert.deepEqual(result, {
      code: 2,
      out: [],
      err: [first, "Run 'tsunagu --help' for usage."],
    });
  }
  const overview = usage("main");
  assert.match(overview, /tsunagu connect --help +show the flags of connect/);
  assert.match(overview, /tsunagu load --help +show the flags of load/);
});

Deno.test("cli: connect --help and load --help print their own help", async () => {
  for (const command of ["connect", "load"] as const) {
    for (
      const args of [
        [command, "--help"],
        [command, "-h"],
        [command, "ws://h/", "--bogus", "--help"],
        ["help", command],
      ]
    ) {
      assert.deepEqual(parseCliArgs(args), { command: "help", topic: command }, args.join(" "));
      const result = await run(args);
      assert.equal(result.code, 0);
      assert.deepEqual(result.err, []);
      const text = result.out.join("\n");
      assert.equal(text, usage(command, result.out[0].split(":")[0].split(" ")[1]).trimEnd());
      assert.match(text, new RegExp(`^Usage: tsunagu ${command} URL \\[flags\\]$`, "m"));
      assert.doesNotMatch(text, /--max-payload|--static/, "not the serve flags");
      for (const line of text.split("\n")) assert.ok(line.length <= 80, `too long: ${line}`);
    }
  }
  const connect = usage("connect");
  for (const flag of ["--protocol NAME", "--deflate", "--wait DURATION", "--ca FILE"]) {
    assert.ok(connect.includes(`\n  ${flag} `), `connect help lists ${flag}`);
  }
  const load = usage("load");
  for (const flag of ["--clients N", "--duration DURATION", "--size SIZE", "--binary"]) {
    assert.ok(load.includes(`\n  ${flag} `), `load help lists ${flag}`);
  }
});

Deno.test("cli: mistakes in connect and load point to their own help", async () => {
  for (
    const [args, message] of [
      [["connect"], "connect needs a ws:// or wss:// URL"],
      [["connect", "ws://h/", "--port", "1"], "unknown flag --port for connect"],
      [["load", "ws://h/", "--clients", "0"], "invalid value for --clients: expected 1 to 10000"],
      [
        ["load", "http://h/"],
        'invalid URL "http://h/" (expected ws://host[:port]/path or wss://…)',
      ],
    ] as const
  ) {
    const result = await run([...args]);
    assert.deepEqual(result, {
      code: 2,
      out: [],
      err: [`tsunagu: ${message}`, `Run 'tsunagu ${args[0]} --help' for usage.`],
    });
  }
});
