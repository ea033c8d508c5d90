/**
 * UTF-8 validation of text messages: the MessageAssembler text path (what a
 * received text frame costs after parsing) and a fatal TextDecoder alone.
 *
 *   deno bench -A bench/utf8_bench.ts
 */

import { Opcode } from "../src/protocol/frame.ts";
import { MessageAssembler, type MessageHandler } from "../src/protocol/message.ts";
import { decodeUtf8Short } from "../src/protocol/utf8.ts";

const encoder = new TextEncoder();
const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

const samples = [
  ["32 B ASCII", encoder.encode("0123456789abcdef".repeat(2))],
  ["16 KiB ASCII", encoder.encode("x".repeat(16 * 1024))],
  ["16 KiB mixed UTF-8", encoder.encode("héllo wörld ✓ 日本 ".repeat(16 * 1024 / 24 | 0))],
] as const;

let received = 0;
const sink: MessageHandler = {
  onText: (text) => (received += text.length),
  onBinary: () => {},
  onPing: () => {},
  onPong: () => {},
  onClose: () => {},
  onProtocolError: (code, message) => {
    throw new Error(`${code} ${message}`);
  },
};

for (const [label, bytes] of samples) {
  const assembler = new MessageAssembler(sink, { maxPayload: 1 << 24 });
  Deno.bench({
    name: `MessageAssembler text ${label}`,
    group: label,
    baseline: true,
    fn() {
      assembler.onFrameStart(true, 0, Opcode.Text, bytes.length);
      assembler.onFramePayload(bytes);
      assembler.onFrameEnd();
    },
  });
  Deno.bench({
    name: `TextDecoder fatal ${label}`,
    group: label,
    fn() {
      fatal.decode(bytes);
    },
  });
  // Two fragments: the streaming decoder path.
  const half = bytes.length >>> 1;
  const fragmented = new MessageAssembler(sink, { maxPayload: 1 << 24 });
  Deno.bench({
    name: `MessageAssembler text ${label}, 2 fragments`,
    group: label,
    fn() {
      fragmented.onFrameStart(false, 0, Opcode.Text, half);
      fragmented.onFramePayload(bytes.subarray(0, half));
      fragmented.onFrameEnd();
      fragmented.onFrameStart(true, 0, Opcode.Continuation, bytes.length - half);
      fragmented.onFramePayload(bytes.subarray(half));
      fragmented.onFrameEnd();
    },
  });
}

// The JS decoder the assembler uses for messages up to 64 bytes.
for (const [label, bytes] of samples) {
  if (bytes.length > 64) continue;
  Deno.bench({
    name: `decodeUtf8Short ${label}`,
    group: label,
    fn() {
      decodeUtf8Short(bytes, 0, bytes.length);
    },
  });
}
