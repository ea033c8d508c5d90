/**
 * Deterministic fuzzing (issue 4): seeded random and mutated client frame
 * streams, checked against an independent reference model, first through
 * the pure frame parser + message assembler, then against a live server.
 *
 * Fixed seeds and bounded counts: the same streams every run, a few
 * seconds in all. `deno task fuzz` runs the same checks for longer with any
 * seed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { TestClient, waitUntil } from "../helpers/harness.ts";
import {
  caseSeed,
  checkCase,
  formatCase,
  type FuzzCase,
  generateCase,
  PARSER_FUZZ,
  shrinkCase,
} from "../fuzz/frame_fuzz.ts";
import { healthyRoundTrip, runLiveBatch, startFuzzServer } from "../fuzz/live_fuzz.ts";

const PARSER_SEED = 0x7a5e_2024;
const PARSER_CASES = 2_500;
const LIVE_SEED = 0x1d_c0de;
const LIVE_BATCHES = 6;
const LIVE_PER_BATCH = 30;
const LIVE_MAX_PAYLOAD = 2_048;

/** A failure report: the shrunk case and its violations, for the assertion message. */
async function report(fuzzCase: FuzzCase, violations: string[]): Promise<string> {
  const small = await shrinkCase(
    fuzzCase,
    (candidate) => checkCase(candidate).violations.length > 0,
  );
  return [
    ...violations.slice(0, 5),
    "original:",
    formatCase(fuzzCase),
    "shrunk:",
    formatCase(small),
    ...checkCase(small).violations.slice(0, 3),
  ].join("\n");
}

Deno.test("fuzz: parser + assembler match the model on random and mutated streams, whole and split", async () => {
  const seen = new Map<string, number>();
  const count = (key: string) => seen.set(key, (seen.get(key) ?? 0) + 1);
  for (let i = 0; i < PARSER_CASES; i++) {
    const fuzzCase = generateCase(caseSeed(PARSER_SEED, i), PARSER_FUZZ);
    const result = checkCase(fuzzCase);
    if (result.violations.length > 0) {
      assert.fail(
        `case ${i} of seed ${PARSER_SEED}:\n${await report(fuzzCase, result.violations)}`,
      );
    }
    const last = result.events.at(-1);
    count(
      last?.type === "error" ? `error ${last.code}` : last?.type === "close" ? "close" : "open",
    );
    for (const event of result.events) count(event.type);
  }
  // The generator reaches every outcome: each error code, clean closes,
  // streams that stay open, and every kind of message.
  for (const key of ["error 1002", "error 1007", "error 1009", "close", "open"]) {
    assert.ok((seen.get(key) ?? 0) >= 50, `only ${seen.get(key) ?? 0} streams ended as ${key}`);
  }
  for (const type of ["text", "binary", "ping", "pong"]) {
    assert.ok((seen.get(type) ?? 0) >= 200, `only ${seen.get(type) ?? 0} ${type} events`);
  }
});

for (const binaryMessages of ["copy", "view"] as const) {
  Deno.test(`fuzz (binaryMessages ${binaryMessages}): a live server answers mutated streams correctly and keeps serving a healthy client`, async () => {
    const fuzz = startFuzzServer(LIVE_MAX_PAYLOAD, binaryMessages);
    try {
      const healthy = await TestClient.open(fuzz.server.url);
      try {
        for (let batch = 0; batch < LIVE_BATCHES; batch++) {
          const { failures } = await runLiveBatch(
            fuzz,
            LIVE_SEED,
            batch * LIVE_PER_BATCH,
            LIVE_PER_BATCH,
          );
          for (const { index, fuzzCase, violations } of failures) {
            assert.fail(
              `live case ${index} of seed ${LIVE_SEED}:\n${violations.slice(0, 5).join("\n")}\n${
                formatCase(fuzzCase)
              }`,
            );
          }
          // Between batches the healthy client still gets exact echoes.
          assert.deepEqual(await healthyRoundTrip(healthy, batch), []);
        }
        // Every fuzz connection is gone; only the healthy client is left.
        await waitUntil(
          () => fuzz.server.connectionCount === 1,
          "only the healthy client to remain",
        );
        assert.equal(fuzz.server.connectionCount, 1);
      } finally {
        await healthy.dispose();
      }
      await waitUntil(() => fuzz.server.connectionCount === 0, "the healthy client to be gone");
      assert.deepEqual(fuzz.errors, [], "the error handler was called");
      assert.equal(fuzz.lateMessages, 0, "messages delivered after the close handler");
      assert.equal(fuzz.peers.size, LIVE_BATCHES * LIVE_PER_BATCH + 1);
    } finally {
      await fuzz.server.shutdown();
    }
  });
}
