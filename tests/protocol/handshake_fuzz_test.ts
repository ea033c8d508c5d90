/**
 * Deterministic fuzzing of the opening handshake (issue 4): seeded random
 * and mutated request heads, first through the pure head parser and upgrade
 * validator, then against a live server that must answer every one with a
 * 101 or a defined HTTP error status (or drop it at the handshake deadline
 * when it never ends), while a healthy client keeps being served.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  acceptKey,
  encodeSwitchingProtocols,
  findHeadEnd,
  parseRequestHead,
  validateUpgrade,
} from "../../mod.ts";
import { Rng } from "../fuzz/frame_fuzz.ts";
import { buildUpgradeRequest } from "../helpers/raw_client.ts";
import { startServer, TestClient } from "../helpers/harness.ts";

const SEED = 0x4ead_2026;
const PURE_CASES = 4_000;
const LIVE_CASES = 120;
const LIVE_BATCH = 20;

/** Statuses the server may answer a request head with. */
const REJECTION_STATUSES = new Set([400, 405, 426, 431]);

const latin1 = new TextDecoder("latin1");

const TOKENS = [
  "GET",
  "POST",
  "HTTP/1.1",
  "HTTP/1.0",
  "HTTP/2.0",
  "Upgrade",
  "upgrade",
  "websocket",
  "WebSocket",
  "keep-alive, Upgrade",
  "Sec-WebSocket-Key",
  "Sec-WebSocket-Version",
  "13",
  "8",
  "dGhlIHNhbXBsZSBub25jZQ==",
  "Host",
  ":",
  ",",
  " ",
  "\t",
  "\r\n",
  "\n",
  "\r",
  "\0",
  "\x7f",
  "\xff",
  "/",
  "?",
  "%2e%2e",
];

/** One mutated request head (latin-1 text: every char is one byte). */
function mutatedHead(rng: Rng): string {
  if (rng.int(20) === 0) {
    // Pure noise, now and then.
    let noise = "";
    for (let n = rng.int(300); n > 0; n--) noise += String.fromCharCode(rng.int(256));
    return noise + "\r\n\r\n";
  }
  const headers: [string, string][] = [];
  if (rng.int(3) === 0) headers.push(["Sec-WebSocket-Protocol", "chat, superchat"]);
  if (rng.int(3) === 0) headers.push(["Origin", "https://example.com"]);
  let text = buildUpgradeRequest({ headers });
  for (let m = 1 + rng.int(4); m > 0; m--) {
    const at = rng.int(text.length + 1);
    switch (rng.int(7)) {
      case 0: // flip one byte
        text = text.slice(0, at) + String.fromCharCode(rng.int(256)) + text.slice(at + 1);
        break;
      case 1: // delete a span
        text = text.slice(0, at) + text.slice(at + 1 + rng.int(20));
        break;
      case 2: // insert a token
        text = text.slice(0, at) + TOKENS[rng.int(TOKENS.length)] + text.slice(at);
        break;
      case 3: { // duplicate a line
        const lines = text.split("\r\n");
        const i = rng.int(lines.length);
        lines.splice(i, 0, lines[i]);
        text = lines.join("\r\n");
        break;
      }
      case 4: { // drop a line
        const lines = text.split("\r\n");
        lines.splice(rng.int(lines.length), 1);
        text = lines.join("\r\n");
        break;
      }
      case 5: // change the case of everything after a point
        text = text.slice(0, at) +
          (rng.int(2) ? text.slice(at).toUpperCase() : text.slice(at).toLowerCase());
        break;
      default: // a long value
        text = text.slice(0, at) + "x".repeat(rng.int(3000)) + text.slice(at);
    }
  }
  return text;
}

function toBytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
}

Deno.test("handshake fuzz: the pure parser and validator give a head or a defined rejection, never a throw", () => {
  const rng = new Rng(SEED);
  const outcomes = new Map<string, number>();
  for (let i = 0; i < PURE_CASES; i++) {
    const text = mutatedHead(rng);
    const bytes = toBytes(text);
    const end = findHeadEnd(bytes, 0, bytes.length);
    // Only a complete head reaches the parser in the server.
    const head = parseRequestHead(end < 0 ? toBytes(text + "\r\n\r\n") : bytes.subarray(0, end));
    if ("status" in head) {
      assert.equal(head.status, 400, `case ${i}: ${JSON.stringify(text.slice(0, 200))}`);
      outcomes.set("400 parse", (outcomes.get("400 parse") ?? 0) + 1);
      continue;
    }
    const upgrade = validateUpgrade(head);
    if ("status" in upgrade) {
      assert.ok(REJECTION_STATUSES.has(upgrade.status), `case ${i}: status ${upgrade.status}`);
      outcomes.set(`${upgrade.status}`, (outcomes.get(`${upgrade.status}`) ?? 0) + 1);
      continue;
    }
    // Accepted: it must really be a valid RFC 6455 request.
    assert.equal(head.method, "GET", `case ${i}`);
    assert.ok(head.version[0] > 1 || head.version[1] >= 1, `case ${i}: version`);
    assert.match(upgrade.key, /^[A-Za-z0-9+/]{21}[AQgw]==$/, `case ${i}: key`);
    const response = latin1.decode(encodeSwitchingProtocols(upgrade.key));
    assert.ok(response.includes(`Sec-WebSocket-Accept: ${acceptKey(upgrade.key)}\r\n`));
    outcomes.set("accepted", (outcomes.get("accepted") ?? 0) + 1);
  }
  // The generator must reach every outcome, or the test proves little.
  for (const outcome of ["accepted", "400 parse", "400", "405", "426"]) {
    assert.ok((outcomes.get(outcome) ?? 0) > 0, `no case reached ${outcome}: ${[...outcomes]}`);
  }
});

/** Sends `bytes` on a fresh connection; returns the status answered, or "eof". */
async function statusFor(port: number, bytes: Uint8Array): Promise<number | "eof"> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes);
  } catch {
    // The server may already have answered and closed (e.g. 431 mid-write).
  }
  let received = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  while (findHeadEnd(received, 0, received.length) < 0 && received.length < 64 * 1024) {
    let n: number | null;
    try {
      n = await conn.read(chunk);
    } catch {
      n = null; // a reset counts as the end
    }
    if (n === null) break;
    const joined = new Uint8Array(received.length + n);
    joined.set(received);
    joined.set(chunk.subarray(0, n), received.length);
    received = joined;
  }
  if (received.length === 0) return "eof";
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(latin1.decode(received.subarray(0, 32)));
  assert.ok(match, `not an HTTP response: ${JSON.stringify(latin1.decode(received.slice(0, 80)))}`);
  return Number(match[1]);
}

Deno.test("handshake fuzz: a live server answers every mutated head with 101 or a defined status and keeps serving", async () => {
  const errors: unknown[] = [];
  const h = startServer({ handshakeTimeout: 300, maxHeaderBytes: 2048, pingInterval: 0 }, {
    message(socket, data) {
      socket.send(data);
    },
    error: (error) => void errors.push(error),
  });
  const healthy = await TestClient.open(h.server.url);
  const rng = new Rng(SEED ^ 0x5a5a);
  const seen = new Map<string, number>();
  try {
    for (let batch = 0; batch < LIVE_CASES / LIVE_BATCH; batch++) {
      const heads = Array.from({ length: LIVE_BATCH }, () => toBytes(mutatedHead(rng)));
      const statuses = await Promise.all(heads.map((head) => statusFor(h.port, head)));
      statuses.forEach((status, i) => {
        const text = latin1.decode(heads[i]);
        if (status === "eof") {
          // Only a head that never ends may go unanswered (dropped at the deadline).
          assert.equal(findHeadEnd(heads[i], 0, heads[i].length), -1, JSON.stringify(text));
        } else {
          assert.ok(
            status === 101 || REJECTION_STATUSES.has(status),
            `status ${status} for ${JSON.stringify(text.slice(0, 200))}`,
          );
        }
        seen.set(String(status), (seen.get(String(status)) ?? 0) + 1);
      });
      healthy.ws.send(`batch ${batch}`);
      assert.equal(await healthy.next(), `batch ${batch}`);
    }
    assert.ok((seen.get("101") ?? 0) > 0 && (seen.get("400") ?? 0) > 0, `${[...seen]}`);
    assert.deepEqual(errors, [], "no handshake reached the error handler");
  } finally {
    await healthy.dispose();
    await h.server.shutdown();
  }
  assert.equal(h.server.connectionCount, 0);
});
