/**
 * `tsunagu load` (src/cli/load_tool.ts, its flags in client_flags.ts):
 * --size is bounded by what the client accepts back, messages are built
 * before the clock starts, long runs print progress on stderr, and a failed
 * run says what failed (close codes, wrong bytes, refused connections).
 */

import assert from "node:assert/strict";
import { parseCliArgs, runCli } from "../../src/cli/main.ts";
import { MAX_LOAD_SIZE } from "../../src/cli/client_flags.ts";
import { formatReport, type LoadOptions, runLoad } from "../../src/cli/load_tool.ts";
import { serve } from "../../src/server/server.ts";

/** Runs `tsunagu load …` in-process; resolves with the exit code and both outputs' lines. */
async function load(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(["load", ...args], {
    stdout: (line) => out.push(line),
    stderr: (line) => err.push(line),
  });
  return { code, out, err };
}

Deno.test("load args: --size is at most the client's maxPayload, and clients × size at most 1gb", () => {
  assert.equal(MAX_LOAD_SIZE, 16 * 1024 * 1024);
  const ok = parseCliArgs(["load", "ws://h/", "--size", "16mb"]);
  assert.ok("command" in ok && ok.command === "load" && ok.options.size === MAX_LOAD_SIZE);
  for (
    const [args, message] of [
      [["--size", "100gb"], /--size: at most 16mb, the largest echo the client accepts/],
      [["--size", "16mb", "--clients", "65"], /--clients × --size is 1040mb: at most 1gb/],
    ] as const
  ) {
    const parsed = parseCliArgs(["load", "ws://h/", ...args]);
    assert.ok("error" in parsed, JSON.stringify(args));
    assert.match(parsed.error, message);
    assert.equal(parsed.topic, "load");
  }
});

Deno.test("load: large messages are built before the clock starts", async () => {
  const echo = serve({ port: 0, hostname: "127.0.0.1" }, {
    message: (socket, data) => void socket.send(data),
  });
  try {
    // 2 × 8 MiB of text took seconds to build inside the measured time, so a
    // 300 ms run ended before its first message: 0 round trips, 0 errors.
    const options: LoadOptions = {
      url: echo.url,
      clients: 2,
      duration: 300,
      size: 8 * 1024 * 1024,
      binary: false,
    };
    const report = await runLoad(options);
    assert.ok(report.messages > 0, formatReport(options, report));
    assert.equal(report.errors, 0, formatReport(options, report));
    assert.ok(report.elapsed < 2000, formatReport(options, report));
  } finally {
    await echo.shutdown();
  }
});

Deno.test("load: progress once per interval while it runs", async () => {
  const echo = serve({ port: 0, hostname: "127.0.0.1" }, {
    message: (socket, data) => void socket.send(data),
  });
  try {
    const lines: string[] = [];
    const options = { url: echo.url, clients: 2, duration: 550, size: 32, binary: false };
    await runLoad(options, { write: (line) => lines.push(line), interval: 100 });
    assert.ok(lines.length >= 4 && lines.length <= 6, lines.join("\n"));
    for (const line of lines) {
      assert.match(line, /^load: \d+ s of 1 s, [\d,]+ round trips \([\d,]+\/s\), 0 errors$/);
    }
  } finally {
    await echo.shutdown();
  }
});

Deno.test("load: a run of 3 s prints progress on stderr once a second; shorter runs do not", async () => {
  const echo = serve({ port: 0, hostname: "127.0.0.1" }, {
    message: (socket, data) => void socket.send(data),
  });
  try {
    const short = await load([echo.url, "--clients", "1", "--duration", "200ms"]);
    assert.equal(short.code, 0, short.out.join("\n"));
    assert.deepEqual(short.err, []);
    const long = await load([echo.url, "--clients", "1", "--duration", "3s"]);
    assert.equal(long.code, 0, long.out.join("\n"));
    assert.equal(long.err.length, 2, long.err.join("\n"));
    assert.match(long.err[0], /^load: 1 s of 3 s, [\d,]+ round trips/);
    assert.match(long.err[1], /^load: 2 s of 3 s, /);
  } finally {
    await echo.shutdown();
  }
});

Deno.test("load: a failed run says what failed: close codes, wrong bytes, refused connections", async () => {
  const small = serve({ port: 0, hostname: "127.0.0.1", maxPayload: 1024 }, {
    message: (socket, data) => void socket.send(data),
  });
  const liar = serve({ port: 0, hostname: "127.0.0.1" }, {
    message: (socket, data) => void socket.send(typeof data === "string" ? data + "!" : data),
  });
  const flipper = serve({ port: 0, hostname: "127.0.0.1" }, {
    message(socket, data) {
      const bytes = (data as Uint8Array).slice();
      bytes[10] ^= 1;
      socket.send(bytes);
    },
  });
  const refuser = serve({ port: 0, hostname: "127.0.0.1" }, {
    upgrade: () => new Response("go away", { status: 403 }),
  });
  try {
    const tooBig = await load([
      small.url,
      "--clients",
      "2",
      "--size",
      "2kb",
      "--duration",
      "200ms",
    ]);
    assert.equal(tooBig.code, 1);
    assert.match(tooBig.out[0], /0 round trips .* 2 closed early by the server$/);
    assert.match(
      tooBig.out[1],
      /^ {2}closed by the server before the end, with: 1009 "[^"]+" \(2×\)$/,
    );

    const wrong = await load([liar.url, "--clients", "1", "--size", "100", "--duration", "100ms"]);
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.out[1],
      /^ {2}wrong replies: [\d]+; the first: client 1, message 1: expected 100 B, got 101 B; the first difference is at byte 100$/,
    );

    const flipped = await load([
      flipper.url,
      "--clients",
      "1",
      "--size",
      "64",
      "--binary",
      "--duration",
      "100ms",
    ]);
    assert.equal(flipped.code, 1);
    assert.match(flipped.out[1], /message 1: expected 64 B; the first difference is at byte 10$/);

    const refused = await load([refuser.url, "--clients", "3", "--duration", "100ms"]);
    assert.equal(refused.code, 1);
    assert.match(refused.out[0], /3 connections failed$/);
    assert.match(
      refused.out[1],
      /^ {2}connections that failed to open: .*the server answered 403 instead of 101 \(3×\)$/,
    );
  } finally {
    for (const server of [small, liar, flipper, refuser]) await server.shutdown();
  }

  // Nothing listening at all: the operating system's refusal is named.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const nobody = await load([`ws://127.0.0.1:${port}/`, "--clients", "1", "--duration", "100ms"]);
  assert.equal(nobody.code, 1);
  assert.match(nobody.out[1], /connections that failed to open: .*refused/i);
});
