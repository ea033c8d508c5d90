// Durations are milliseconds; a value from 1 to 99 is almost surely seconds
// (Bun's `idleTimeout: 120`) and would close every client at once, so serve()
// and connect() refuse it with a TypeError that names the option.

import assert from "node:assert/strict";
import { connect, serve } from "../../mod.ts";

const DURATIONS = [
  "handshakeTimeout",
  "idleTimeout",
  "pingInterval",
  "pongTimeout",
  "closeTimeout",
] as const;

Deno.test("serve: a duration from 1 to 99 ms is a TypeError naming the option", () => {
  for (const name of DURATIONS) {
    for (const value of [1, 30, 99]) {
      assert.throws(
        () => serve({ port: 0, hostname: "127.0.0.1", [name]: value }),
        (error: unknown) =>
          error instanceof TypeError && error.message.startsWith(`${name} is in milliseconds`) &&
          error.message.includes(`${value * 1000}`),
        `${name}: ${value}`,
      );
    }
  }
});

Deno.test("serve: 0 (off) and 100 ms or more are accepted", async () => {
  for (const value of [0, 100, 120_000]) {
    const server = serve({
      port: 0,
      hostname: "127.0.0.1",
      idleTimeout: value,
      pingInterval: value,
    });
    await server.shutdown();
  }
});

Deno.test("connect: the same rule for the client's durations, before any connection", async () => {
  for (const name of ["handshakeTimeout", "pingInterval", "pongTimeout", "closeTimeout"]) {
    await assert.rejects(
      // Port 9 on loopback: nothing listens, but the check comes first.
      () => connect("ws://127.0.0.1:9/", { [name]: 50 }),
      (error: unknown) =>
        error instanceof TypeError && error.message.startsWith(`${name} is in milliseconds`),
      name,
    );
  }
});
