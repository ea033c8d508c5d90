/**
 * The in-place upgrade check (`upgradeOf`, the fast path every usual
 * WebSocket handshake takes) against the general path (`headOf` →
 * `requestAddress` → `checkUpgrade` → body framing) on hand-made heads that
 * random single edits rarely reach: coordinated duplicates, NBSP and other
 * latin-1 whitespace around tokens, lists spread over several fields,
 * absolute-form and odd targets, versions, body framing on an upgrade. The
 * fast path may decline anything (the general path then answers), but when
 * it accepts, the general path must accept too, with the same values.
 */

import assert from "node:assert/strict";
import {
  checkUpgrade,
  headerValues,
  headOf,
  isRejection,
  isUpgradeRequest,
  requestAddress,
  scanRequestHead,
  upgradeOf,
} from "../../src/protocol/handshake.ts";
import { requestBodyFraming } from "../../src/protocol/http1_body.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
function general(text: string): unknown {
  const f = scanRequestHead(text);
  if (isRejection(f)) return f;
  const head = headOf(f);
  if (head.version[0] !== 1) return { status: 505 };
  if (head.target === "*") return { status: "star" };
  const addr = requestAddress(head);
  if (isRejection(addr)) return addr;
  if (!isUpgradeRequest(head)) return "plain";
  const up = checkUpgrade(head, true);
  if (isRejection(up)) return up;
  const fr = requestBodyFraming(
    headerValues(head, "content-length"),
    headerValues(head, "transfer-encoding"),
  );
  if (fr.kind !== "none") return { status: 400, fr };
  return { ...up, ...addr, extensionValues: headerValues(head, "sec-websocket-extensions") };
}
function fast(text: string): unknown {
  const f = scanRequestHead(text);
  if (isRejection(f)) return f;
  const u = upgradeOf(f);
  return u === null ? null : {
    ...u,
    protocols: [...u.protocols],
    extensions: [...u.extensions],
    extensionValues: [...u.extensionValues],
  };
}
const lines = (rl: string, ...h: string[]) =>
  rl + "\r\n" + h.map((x) => x + "\r\n").join("") + "\r\n";
const base = [
  "Host: example.com",
  "Upgrade: websocket",
  "Connection: Upgrade",
  `Sec-WebSocket-Key: ${KEY}`,
  "Sec-WebSocket-Version: 13",
];
const swap = (i: number, v: string | null) =>
  base.flatMap((x, j) => j === i ? (v === null ? [] : [v]) : [x]);
const cases: string[] = [
  lines("GET / HTTP/1.1", ...base),
  lines("GET http://example.com/ HTTP/1.1", ...base),
  lines("GET /a#b HTTP/1.1", ...base),
  lines("GET /a?#b HTTP/1.1", ...base),
  lines("GET //x HTTP/1.1", ...base),
  lines("GET /\x80 HTTP/1.1", ...base),
  lines("GET / HTTP/1.0", ...base),
  lines("GET / HTTP/1.9", ...base),
  lines("GET / HTTP/2.0", ...base),
  lines("GET / HTTP/0.9", ...base),
  lines("get / HTTP/1.1", ...base),
  lines("GETS / HTTP/1.1", ...base),
  lines("POST / HTTP/1.1", ...base),
  lines("GET / HTTP/1.1", ...swap(0, "Host: exa\xa0mple.com")),
  lines("GET / HTTP/1.1", ...swap(0, "Host: \xa0example.com")),
  lines("GET / HTTP/1.1", ...swap(0, "Host: example.com\xa0")),
  lines("GET / HTTP/1.1", ...swap(0, "Host: EXAMPLE.com:80")),
  lines("GET / HTTP/1.1", ...swap(0, "Host: example.com:")),
  lines("GET / HTTP/1.1", ...swap(0, "Host: [::1]:99")),
  lines("GET / HTTP/1.1", ...swap(0, "Host: ")),
  lines("GET / HTTP/1.1", ...swap(0, null)),
  lines("GET / HTTP/1.1", ...base, "Host: example.com"),
  lines("GET / HTTP/1.1", ...base, "host: other"),
  lines("GET / HTTP/1.1", ...swap(1, "Upgrade: \xa0websocket\xa0")),
  lines("GET / HTTP/1.1", ...swap(1, "Upgrade: h2c, \twebsocket ,")),
  lines("GET / HTTP/1.1", ...swap(1, "Upgrade: websocket/13")),
  lines("GET / HTTP/1.1", ...swap(1, "Upgrade: web socket")),
  lines("GET / HTTP/1.1", ...swap(1, "Upgrade: WebSocket")),
  lines("GET / HTTP/1.1", ...swap(1, "Upgrade: \x85websocket")),
  lines("GET / HTTP/1.1", ...swap(1, "Upgrade: websocket\x0b")),
  lines("GET / HTTP/1.1", ...swap(1, "Upgrade:")),
  lines("GET / HTTP/1.1", ...swap(1, "Upgrade: ,"), "Upgrade: websocket"),
  lines("GET / HTTP/1.1", ...swap(2, "Connection: keep-alive,\xa0Upgrade\xa0")),
  lines("GET / HTTP/1.1", ...swap(2, "Connection: keep-alive"), "Connection: upgrade"),
  lines("GET / HTTP/1.1", ...swap(2, "Connection: up grade")),
  lines("GET / HTTP/1.1", ...swap(2, "Connection: upgrade\xff")),
  lines("GET / HTTP/1.1", ...swap(2, "Connection: close, upgrade")),
  lines("GET / HTTP/1.1", ...base, `Sec-WebSocket-Key: ${KEY}`),
  lines("GET / HTTP/1.1", ...swap(3, `Sec-WebSocket-Key: ${KEY}, ${KEY}`)),
  lines("GET / HTTP/1.1", ...swap(3, `Sec-WebSocket-Key:\t${KEY}\t`)),
  lines("GET / HTTP/1.1", ...swap(3, `Sec-WebSocket-Key: \xa0${KEY}`)),
  lines("GET / HTTP/1.1", ...base, "Sec-WebSocket-Version: 13"),
  lines("GET / HTTP/1.1", ...swap(4, "Sec-WebSocket-Version: 13, 8")),
  lines("GET / HTTP/1.1", ...swap(4, "Sec-WebSocket-Version: 013")),
  lines("GET / HTTP/1.1", ...swap(4, "Sec-WebSocket-Version: 13\xa0")),
  lines("GET / HTTP/1.1", ...swap(4, "Sec-WebSocket-Version: \xa013")),
  lines("GET / HTTP/1.1", ...swap(4, null)),
  lines("GET / HTTP/1.1", ...base, "Content-Length: 0"),
  lines("GET / HTTP/1.1", ...base, "Content-Length: 5"),
  lines("GET / HTTP/1.1", ...base, "Transfer-Encoding: chunked"),
  lines("GET / HTTP/1.1", ...base, "Transfer-Encoding:"),
  lines("GET / HTTP/1.1", ...base, "Content-Length:"),
  lines(
    "GET / HTTP/1.1",
    ...base,
    "Sec-WebSocket-Protocol: a, b",
    "Sec-WebSocket-Protocol: \xa0c\xa0, ,",
  ),
  lines("GET / HTTP/1.1", ...base, "Sec-WebSocket-Protocol:"),
  lines(
    "GET / HTTP/1.1",
    ...base,
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    "Sec-WebSocket-Extensions: x",
  ),
  lines("GET / HTTP/1.1", ...base, "Sec-WebSocket-Extensions:"),
  lines("GET / HTTP/1.1", ...base, "X-\xe9: 1"),
  lines("GET / HTTP/1.1", ...base, "X: \xe9\xa0"),
  lines("GET /\x7f HTTP/1.1", ...base),
  lines(
    "GET / HTTP/1.1",
    "Host: example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${KEY}`,
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Version-X: 1",
  ),
  lines(
    "GET / HTTP/1.1",
    "host: example.com",
    "upgrade: websocket",
    "connection: upgrade",
    `sec-websocket-key: ${KEY}`,
    "sec-websocket-version: 13",
  ),
  lines(
    "GET / HTTP/1.1",
    "HOST: example.com",
    "UPGRADE: WEBSOCKET",
    "CONNECTION: UPGRADE",
    `SEC-WEBSOCKET-KEY: ${KEY}`,
    "SEC-WEBSOCKET-VERSION: 13",
  ),
  lines("GET /? HTTP/1.1", ...base),
  lines("GET * HTTP/1.1", ...base),
];

Deno.test("upgradeOf never accepts what the general path refuses, and agrees when it accepts", () => {
  const disagreements: string[] = [];
  let taken = 0;
  for (const text of cases) {
    const quick = fast(text);
    if (quick === null || isRejection(quick as object)) continue;
    taken++;
    try {
      assert.deepEqual(quick, general(text));
    } catch {
      disagreements.push(
        `${JSON.stringify(text)}\n fast=${JSON.stringify(quick)}\n general=${
          JSON.stringify(general(text))
        }`,
      );
    }
  }
  assert.deepEqual(disagreements, []);
  // The usual upgrade, and its all-lower and all-upper case spellings, take
  // the fast path (a fast path that declined everything would pass above).
  assert.notEqual(fast(cases[0]), null);
  assert.ok(taken >= 3, `the fast path took only ${taken} of ${cases.length}`);
});
