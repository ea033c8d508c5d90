// unmask/unmaskWord (src/protocol/mask.ts) against a plain byte loop, for every
// length around the small/word/64-bit-path thresholds, every alignment and phase.

import { unmask, unmaskWord } from "../../src/protocol/mask.ts";

function reference(data: Uint8Array, key: Uint8Array, phase: number): Uint8Array {
  const out = data.slice();
  for (let i = 0; i < out.length; i++) out[i] ^= key[(phase + i) & 3];
  return out;
}

Deno.test("unmask matches a byte loop for every length, offset and phase", () => {
  const key = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
  const packed = key[0] | (key[1] << 8) | (key[2] << 16) | (key[3] << 24);
  const backing = new Uint8Array(300_016);
  for (let i = 0; i < backing.length; i++) backing[i] = (i * 131 + 7) & 0xff;
  for (
    const length of [
      ...[0, 1, 2, 3, 4, 5, 7, 8, 31, 32, 33, 63, 64, 65, 66, 67, 127, 128, 300],
      // Around the 64-bit path (from 1024 bytes) and long payloads.
      ...[511, 512, 513, 527, 1000, 1023, 1024, 1025, 1031, 4099, 262_144, 262_159, 300_000],
    ]
  ) {
    for (let offset = 0; offset < 8; offset++) {
      for (let phase = 0; phase < 4; phase++) {
        const expected = reference(backing.subarray(offset, offset + length), key, phase);
        for (
          const apply of [
            unmask,
            (d: Uint8Array, _k: Uint8Array, p: number) => unmaskWord(d, packed, p),
          ]
        ) {
          const copy = backing.slice();
          apply(copy.subarray(offset, offset + length), key, phase);
          // Bytes around the range must be untouched; check a margin, not all.
          const from = Math.max(0, offset - 8);
          const to = Math.min(copy.length, offset + length + 8);
          for (let i = from; i < to; i++) {
            const want = i >= offset && i < offset + length ? expected[i - offset] : backing[i];
            if (copy[i] !== want) {
              throw new Error(`length ${length} offset ${offset} phase ${phase}: byte ${i}`);
            }
          }
        }
      }
    }
  }
});

Deno.test("unmask decodes the RFC 6455 §5.7 example", () => {
  const data = new Uint8Array([0x7f, 0x9f, 0x4d, 0x51, 0x58]);
  unmask(data, new Uint8Array([0x37, 0xfa, 0x21, 0x3d]));
  if (new TextDecoder().decode(data) !== "Hello") throw new Error("not Hello");
});
