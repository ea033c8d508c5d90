/**
 * `tsunagu connect --ca FILE` (src/cli/connect_command.ts): a wss:// server
 * whose certificate is signed by a private CA (here the self-signed test
 * certificate, its own CA) is trusted with --ca and refused without it, with
 * a hint; a --ca that cannot be used is a usage error.
 */

import assert from "node:assert/strict";
import { runCli } from "../../src/cli/main.ts";
import { serve } from "../../src/server/server.ts";
import { ROOT } from "../helpers/example_process.ts";

const CERT_FILE = new URL("tests/fixtures/tls_cert.pem", ROOT).pathname;
const KEY_FILE = new URL("tests/fixtures/tls_key.pem", ROOT).pathname;

/** Runs `tsunagu connect …` in-process with `input` as stdin. */
async function connect(args: string[], input = "") {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(["connect", ...args], {
    stdout: (line) => out.push(line),
    stderr: (line) => err.push(line),
    stdin: ReadableStream.from([new TextEncoder().encode(input)]),
  });
  return { code, out, err };
}

Deno.test("connect --ca FILE trusts a private CA for wss://; without it the refusal says to use it", async () => {
  const server = serve({
    port: 0,
    hostname: "127.0.0.1",
    cert: await Deno.readTextFile(CERT_FILE),
    key: await Deno.readTextFile(KEY_FILE),
  }, { message: (socket, data) => void socket.send(`echo ${data}`) });
  try {
    assert.match(server.url, /^wss:/);
    const trusted = await connect([server.url, "--ca", CERT_FILE, "--wait", "200ms"], "hi\n");
    assert.equal(trusted.code, 0, trusted.err.join("\n"));
    assert.deepEqual(trusted.out, ["echo hi"]);
    assert.match(trusted.err[0], /^connected to wss:\/\/127\.0\.0\.1:\d+/);

    const untrusted = await connect([server.url, "--wait", "200ms"], "hi\n");
    assert.equal(untrusted.code, 1);
    assert.deepEqual(untrusted.out, []);
    assert.equal(untrusted.err.length, 1, untrusted.err.join("\n"));
    assert.match(
      untrusted.err[0],
      /^tsunagu: cannot connect to wss:\/\/127\.0\.0\.1:\d+: .*certificate/,
    );
    assert.match(untrusted.err[0], /pass --ca FILE\)$/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("connect --ca: a missing or non-PEM file, or a ws:// URL, is a usage error (exit 2)", async () => {
  const missing = await connect(["wss://127.0.0.1:1/", "--ca", "/nonexistent/ca.pem"]);
  assert.equal(missing.code, 2);
  assert.deepEqual(missing.err, [
    'tsunagu: cannot read --ca file "/nonexistent/ca.pem": no such file',
    "Run 'tsunagu connect --help' for usage.",
  ]);
  const notPem = await connect(["wss://127.0.0.1:1/", "--ca", KEY_FILE]);
  assert.equal(notPem.code, 2);
  assert.match(notPem.err[0], /--ca file .* holds no PEM certificate/);
  const plain = await connect(["ws://127.0.0.1:1/", "--ca", CERT_FILE]);
  assert.equal(plain.code, 2);
  assert.deepEqual(plain.err, [
    "tsunagu: --ca is for wss:// URLs (it adds a trusted certificate for TLS)",
    "Run 'tsunagu connect --help' for usage.",
  ]);
});
