/**
 * The opening handshake's CPU cost: the accept key (node:crypto, as used,
 * against crypto.subtle for reference) and the whole request-head path.
 *
 *   deno bench -A bench/handshake_bench.ts
 */

import { createHash } from "node:crypto";
import {
  acceptKey,
  encodeSwitchingProtocols,
  findHeadEnd,
  parseRequestHead,
  validateUpgrade,
} from "../src/protocol/handshake.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const encoder = new TextEncoder();

Deno.bench({
  name: "acceptKey (node:crypto createHash)",
  group: "accept key",
  baseline: true,
  fn() {
    acceptKey(KEY);
  },
});

Deno.bench({
  name: "crypto.subtle.digest SHA-1 + btoa (reference)",
  group: "accept key",
  async fn() {
    const digest = await crypto.subtle.digest("SHA-1", encoder.encode(KEY + GUID));
    btoa(String.fromCharCode(...new Uint8Array(digest)));
  },
});

Deno.bench({
  name: "node:crypto createHash, fresh each time (reference)",
  group: "accept key",
  fn() {
    createHash("sha1").update(KEY + GUID).digest("base64");
  },
});

const request = encoder.encode(
  "GET / HTTP/1.1\r\nHost: 127.0.0.1:18700\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
);
Deno.bench({
  name: "request head: find end, parse, validate, encode 101",
  group: "head",
  fn() {
    const end = findHeadEnd(request, 0, request.length);
    const head = parseRequestHead(request.subarray(0, end));
    if ("status" in head) throw new Error("bad head");
    const upgrade = validateUpgrade(head);
    if ("status" in upgrade) throw new Error("bad upgrade");
    encodeSwitchingProtocols(upgrade.key);
  },
});
