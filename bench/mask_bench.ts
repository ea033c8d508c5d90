/**
 * unmask throughput at the three sizes the wsbench scenarios use: 32 B
 * (small echo), 16 KiB (medium) and 1 MiB (large). A plain byte loop is the
 * reference each size is compared with.
 *
 *   deno bench -A bench/mask_bench.ts
 */

import { unmask, unmaskWord } from "../src/protocol/mask.ts";

const KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

function byteLoop(data: Uint8Array, key: Uint8Array): void {
  for (let i = 0; i < data.length; i++) data[i] ^= key[i & 3];
}

function filled(size: number): Uint8Array {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = i * 31;
  return data;
}

for (
  const [label, size] of [["32 B", 32], ["16 KiB", 16 * 1024], ["1 MiB", 1024 * 1024]] as const
) {
  // Offset 2 inside a larger buffer, as a payload after a 2-byte header sits
  // in the read buffer: the unaligned head is part of what is measured.
  const backing = filled(size + 16);
  const data = backing.subarray(2, 2 + size);
  Deno.bench({
    name: `unmask ${label}`,
    group: `unmask ${label}`,
    baseline: true,
    fn() {
      unmask(data, KEY);
    },
  });
  Deno.bench({
    name: `byte loop ${label} (reference)`,
    group: `unmask ${label}`,
    fn() {
      byteLoop(data, KEY);
    },
  });
}

// What the frame parser calls: the key already packed into a number.
for (
  const [label, size] of [["32 B", 32], ["16 KiB", 16 * 1024], ["1 MiB", 1024 * 1024]] as const
) {
  const backing = filled(size + 16);
  const data = backing.subarray(2, 2 + size);
  Deno.bench({
    name: `unmaskWord ${label} (parser path)`,
    group: `unmask ${label}`,
    fn() {
      unmaskWord(data, 0x3d21fa37);
    },
  });
}
