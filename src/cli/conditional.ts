/**
 * Conditional and range requests for static files (RFC 9110 §13, §14), as
 * pure functions: the validators of a file, and what a request's
 * `If-Match`, `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`,
 * `Range` and `If-Range` ask for given those validators and the file's size.
 * `static_files.ts` builds the responses; nothing here touches a file or a
 * socket, so every rule is tested without a network.
 *
 * @module
 */

/** What a file is compared by: a strong entity tag and its modification time. */
export interface Validators {
  /** A strong entity tag, quotes included: `"<size hex>-<mtime ms hex>"`. */
  etag: string;
  /** The modification time in whole milliseconds since the epoch. */
  mtime: number;
  /** The `Last-Modified` value: the modification time to the second, as an IMF-fixdate. */
  lastModified: string;
}

/**
 * The validators of a file with `size` bytes last modified at `mtime`, or
 * null when the file system gives no modification time (then there are no
 * conditional or `If-Range` answers, only whole files and plain ranges).
 *
 * The tag is strong: it changes whenever the size or the modification time
 * (to the millisecond) does, which is how nginx and most file servers tag
 * files. Two writes of the same size within one millisecond keep the tag.
 *
 * @example
 * ```ts
 * import { fileValidators } from "./conditional.ts";
 * const validators = fileValidators(1024, new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)));
 * console.log(validators?.etag); // "400-18cc820db2e"
 * console.log(validators?.lastModified); // Tue, 02 Jan 2024 03:04:05 GMT
 * ```
 */
export function fileValidators(size: number, mtime: Date | null): Validators | null {
  if (mtime === null || !Number.isFinite(mtime.getTime())) return null;
  const ms = Math.floor(mtime.getTime());
  return {
    etag: `"${size.toString(16)}-${ms.toString(16)}"`,
    mtime: ms,
    lastModified: new Date(ms).toUTCString(),
  };
}

/** One entity tag of a list: its opaque part (quotes included) and whether it is weak. */
interface EntityTag {
  weak: boolean;
  opaque: string;
}

/**
 * Parses `If-Match` / `If-None-Match`: `*`, or a comma-separated list of
 * entity tags (RFC 9110 §8.8.3). Null when the value is not valid: such a
 * header matches nothing.
 */
function parseEntityTags(value: string): "*" | EntityTag[] | null {
  if (value.trim() === "*") return "*";
  const tags: EntityTag[] = [];
  let i = 0;
  const skip = () => {
    while (i < value.length && " \t,".includes(value[i])) i++;
  };
  skip();
  while (i < value.length) {
    const weak = value.startsWith("W/", i);
    if (weak) i += 2;
    if (value[i] !== '"') return null;
    const close = value.indexOf('"', i + 1);
    if (close < 0) return null;
    const opaque = value.slice(i, close + 1);
    // etagc: %x21 / %x23-7E / obs-text (no controls, spaces or DEL).
    for (let c = 1; c < opaque.length - 1; c++) {
      const code = opaque.charCodeAt(c);
      if (code <= 0x20 || code === 0x7f) return null;
    }
    tags.push({ weak, opaque });
    i = close + 1;
    // Between tags: optional whitespace, then a comma (or the end).
    while (i < value.length && " \t".includes(value[i])) i++;
    if (i < value.length && value[i] !== ",") return null;
    skip();
  }
  return tags.length > 0 ? tags : null;
}

/** Whether `value` (an `If-Match` or `If-None-Match` list) names `etag`. */
function matches(value: string, etag: string, strong: boolean): boolean {
  const tags = parseEntityTags(value);
  if (tags === null) return false;
  if (tags === "*") return true;
  return tags.some((tag) => tag.opaque === etag && !(strong && tag.weak));
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

const IMF_FIXDATE = /^([A-Z][a-z]{2}), (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT$/;
const RFC850_DATE = /^([A-Z][a-z]+), (\d\d)-([A-Z][a-z]{2})-(\d\d) (\d\d):(\d\d):(\d\d) GMT$/;
const ASCTIME_DATE = /^([A-Z][a-z]{2}) ([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})$/;

/**
 * Parses an HTTP-date (RFC 9110 §5.6.7) in any of its three formats
 * (IMF-fixdate, the obsolete RFC 850 and asctime forms) to milliseconds
 * since the epoch; null when it is not one. Stricter than `Date.parse`,
 * which reads `"1"` as the year 2001.
 *
 * @param now the current time, for RFC 850's two-digit years (a year more
 *   than 50 years ahead is taken as the last century's).
 *
 * @example
 * ```ts
 * import { parseHttpDate } from "./conditional.ts";
 * console.log(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT")); // 784111777000
 * console.log(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT")); // 784111777000
 * console.log(parseHttpDate("Sun Nov  6 08:49:37 1994")); // 784111777000
 * console.log(parseHttpDate("yesterday")); // null
 * ```
 */
export function parseHttpDate(value: string, now: number = Date.now()): number | null {
  value = value.trim();
  let day: string, date: string, month: string, year: number;
  let hh: string, mm: string, ss: string;
  let names = DAYS;
  let match: RegExpExecArray | null;
  if ((match = IMF_FIXDATE.exec(value)) !== null) {
    [, day, date, month, , hh, mm, ss] = match;
    year = Number(match[4]);
  } else if ((match = RFC850_DATE.exec(value)) !== null) {
    [, day, date, month, , hh, mm, ss] = match;
    names = LONG_DAYS;
    const thisYear = new Date(now).getUTCFullYear();
    year = Math.floor(thisYear / 100) * 100 + Number(match[4]);
    if (year > thisYear + 50) year -= 100;
  } else if ((match = ASCTIME_DATE.exec(value)) !== null) {
    [, day, month, date, hh, mm, ss] = match;
    year = Number(match[7]);
  } else {
    return null;
  }
  const monthIndex = MONTHS.indexOf(month);
  if (monthIndex < 0 || !names.includes(day)) return null;
  const time = Date.UTC(year, monthIndex, Number(date), Number(hh), Number(mm), Number(ss));
  const parsed = new Date(time);
  // Out-of-range fields (31 Feb, 25:00, second 60) roll over in Date.UTC: refuse them.
  if (
    parsed.getUTCDate() !== Number(date) || parsed.getUTCMonth() !== monthIndex ||
    parsed.getUTCHours() !== Number(hh) || parsed.getUTCMinutes() !== Number(mm) ||
    parsed.getUTCSeconds() !== Number(ss) || names[parsed.getUTCDay()] !== day
  ) {
    return null;
  }
  return time;
}

/** One byte range, both ends included, within the file. */
export interface ByteRange {
  /** The first byte's offset. */
  start: number;
  /** The last byte's offset (included). */
  end: number;
}

/**
 * Reads a `Range` header for a file of `size` bytes (RFC 9110 §14.1.2):
 * the one range it asks for (`bytes=a-b`, `bytes=a-`, `bytes=-n`), clipped
 * to the file; `"unsatisfiable"` when that range lies outside it (416); or
 * null when the header is to be ignored and the whole file sent: another
 * unit, invalid syntax (including `b < a`), or more than one range.
 *
 * @example
 * ```ts
 * import { parseRange } from "./conditional.ts";
 * console.log(parseRange("bytes=0-99", 1000)); // { start: 0, end: 99 }
 * console.log(parseRange("bytes=900-", 1000)); // { start: 900, end: 999 }
 * console.log(parseRange("bytes=-100", 1000)); // { start: 900, end: 999 }
 * console.log(parseRange("bytes=1000-", 1000)); // unsatisfiable
 * console.log(parseRange("bytes=0-1,5-6", 1000)); // null
 * ```
 */
export function parseRange(value: string, size: number): ByteRange | "unsatisfiable" | null {
  const equals = value.indexOf("=");
  if (equals < 0 || value.slice(0, equals).trim().toLowerCase() !== "bytes") return null;
  const specs = value.slice(equals + 1).split(",").map((spec) => spec.trim()).filter((spec) =>
    spec !== ""
  );
  if (specs.length !== 1) return null;
  const spec = specs[0];
  const suffix = /^-(\d+)$/.exec(spec);
  if (suffix !== null) {
    const length = Number(suffix[1]);
    if (length === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - length), end: size - 1 };
  }
  const int = /^(\d+)-(\d*)$/.exec(spec);
  if (int === null) return null;
  const first = Number(int[1]);
  const last = int[2] === "" ? Infinity : Number(int[2]);
  if (last < first) return null;
  if (first >= size) return "unsatisfiable";
  return { start: first, end: Math.min(last, size - 1) };
}

/** What to answer a GET or HEAD of a file. */
export type FileAnswer =
  | { status: 200 }
  | { status: 206; range: ByteRange }
  | { status: 304 }
  | { status: 412 }
  | { status: 416 };

/**
 * Decides the answer to a GET or HEAD of a file of `size` bytes with
 * `validators`, in RFC 9110 §13.2.2's order: `If-Match` (else
 * `If-Unmodified-Since`) failing gives 412; `If-None-Match` matching (weak
 * comparison), or when it is absent `If-Modified-Since` not older than the
 * file, gives 304; then, for GET only, a single satisfiable `Range` gives
 * 206 and an unsatisfiable one 416, unless `If-Range` names another version
 * (strong comparison; a date only when it is the file's `Last-Modified` and
 * that is at least a second old, so strong), which gives the whole file.
 * Invalid dates and lists are ignored, as if absent.
 *
 * @param now the current time in ms, for the strength of a date in `If-Range`.
 *
 * @example
 * ```ts
 * import { decide, fileValidators } from "./conditional.ts";
 * const validators = fileValidators(1000, new Date(0));
 * const headers = new Headers({ "if-none-match": validators!.etag, range: "bytes=0-9" });
 * console.log(decide("GET", headers, 1000, validators).status); // 304
 * console.log(decide("GET", new Headers({ range: "bytes=0-9" }), 1000, validators)); // { status: 206, range: { start: 0, end: 9 } }
 * ```
 */
export function decide(
  method: string,
  headers: Headers,
  size: number,
  validators: Validators | null,
  now: number = Date.now(),
): FileAnswer {
  // Compared to the second: Last-Modified is sent to the second.
  const modified = validators === null ? null : Math.floor(validators.mtime / 1000) * 1000;

  const ifMatch = headers.get("if-match");
  if (ifMatch !== null) {
    if (validators === null || !matches(ifMatch, validators.etag, true)) {
      // `*` matches any current representation, even one without a tag.
      if (!(validators === null && parseEntityTags(ifMatch) === "*")) return { status: 412 };
    }
  } else {
    const since = headerDate(headers, "if-unmodified-since", now);
    if (since !== null && modified !== null && modified > since) return { status: 412 };
  }

  const ifNoneMatch = headers.get("if-none-match");
  if (ifNoneMatch !== null) {
    const tags = parseEntityTags(ifNoneMatch);
    if (tags === "*" || (validators !== null && matches(ifNoneMatch, validators.etag, false))) {
      return { status: 304 };
    }
  } else {
    const since = headerDate(headers, "if-modified-since", now);
    if (since !== null && modified !== null && modified <= since) return { status: 304 };
  }

  const rangeHeader = headers.get("range");
  if (method !== "GET" || rangeHeader === null) return { status: 200 };
  const ifRange = headers.get("if-range");
  if (ifRange !== null && !ifRangeMatches(ifRange.trim(), validators, modified, now)) {
    return { status: 200 };
  }
  const range = parseRange(rangeHeader, size);
  if (range === null) return { status: 200 };
  if (range === "unsatisfiable") return { status: 416 };
  return { status: 206, range };
}

/** A header's HTTP-date, or null when absent or not valid (then ignored). */
function headerDate(headers: Headers, name: string, now: number): number | null {
  const value = headers.get(name);
  return value === null ? null : parseHttpDate(value, now);
}

/** Whether `If-Range` names the current version (RFC 9110 §13.1.5). */
function ifRangeMatches(
  value: string,
  validators: Validators | null,
  modified: number | null,
  now: number,
): boolean {
  if (validators === null || modified === null) return false;
  if (value.startsWith('"') || value.startsWith("W/")) {
    // Strong comparison: a weak tag never matches.
    return value === validators.etag;
  }
  const date = parseHttpDate(value, now);
  // A date is a strong validator only if the file has not changed in the
  // second it names (it is at least one second old).
  return date !== null && date === modified && now - validators.mtime >= 1000;
}
