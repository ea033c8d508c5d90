/**
 * The value syntax of the command line: sizes (`16mb`) and durations
 * (`30s`), parsed and formatted. Pure functions.
 *
 * @module
 */

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

const DURATION_UNITS: Record<string, number> = {
  "": 1000,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

function parseWithUnits(text: string, units: Record<string, number>): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (match === null) return null;
  const unit = units[match[2].toLowerCase()];
  if (unit === undefined) return null;
  const value = Math.floor(Number(match[1]) * unit);
  return Number.isSafeInteger(value) ? value : null;
}

/**
 * Parses a size: a number of bytes, or a number with a binary unit — `k`,
 * `kb`, `kib` (1024), `m`, `mb`, `mib` (1024²), `g`, `gb`, `gib` (1024³),
 * any case. Fractions are rounded down to whole bytes. Returns `null` when
 * the text is not a size.
 *
 * @example
 * ```ts
 * import { parseSize } from "@tsunagu/ws/cli";
 * console.log(parseSize("16mb")); // 16777216
 * console.log(parseSize("1.5k")); // 1536
 * console.log(parseSize("lots")); // null
 * ```
 */
export function parseSize(text: string): number | null {
  return parseWithUnits(text, SIZE_UNITS);
}

/**
 * Parses a duration into milliseconds: a number of seconds, or a number with
 * a unit — `ms`, `s`, `m` (minutes), `h`. Returns `null` when the text is not
 * a duration.
 *
 * @example
 * ```ts
 * import { parseDuration } from "@tsunagu/ws/cli";
 * console.log(parseDuration("30s")); // 30000
 * console.log(parseDuration("90")); // 90000 (plain numbers are seconds)
 * console.log(parseDuration("250ms")); // 250
 * ```
 */
export function parseDuration(text: string): number | null {
  return parseWithUnits(text, DURATION_UNITS);
}

/** Formats a byte count the way sizes are written on the command line. */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [["gb", 1024 ** 3], ["mb", 1024 ** 2], ["kb", 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}`;
}

/** Formats milliseconds the way durations are written on the command line. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0 (off)";
  if (ms % 1000 !== 0) return `${ms}ms`;
  return `${ms / 1000}s`;
}
