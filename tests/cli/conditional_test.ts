/**
 * Conditional and range requests as pure rules (src/cli/conditional.ts):
 * validators, HTTP-dates, `Range` parsing and the order of preconditions
 * (RFC 9110 §13.2.2), with no file or socket. The same rules over real HTTP
 * are in static_files_test.ts.
 */

import assert from "node:assert/strict";
import {
  decide,
  type FileAnswer,
  fileValidators,
  parseHttpDate,
  parseRange,
} from "../../src/cli/conditional.ts";

const MTIME = new Date(Date.UTC(2024, 4, 6, 7, 8, 9, 345));
const SIZE = 1000;
const VALIDATORS = fileValidators(SIZE, MTIME)!;
const NOW = MTIME.getTime() + 60_000;
/** Last-Modified as sent, and the same second as other forms and neighbours. */
const LAST_MODIFIED = "Mon, 06 May 2024 07:08:09 GMT";
const SECOND_BEFORE = "Mon, 06 May 2024 07:08:08 GMT";
const SECOND_AFTER = "Mon, 06 May 2024 07:08:10 GMT";

Deno.test("conditional: a strong tag from size and mtime; Last-Modified to the second", () => {
  assert.equal(VALIDATORS.etag, `"3e8-${MTIME.getTime().toString(16)}"`);
  assert.equal(VALIDATORS.lastModified, LAST_MODIFIED);
  assert.equal(VALIDATORS.mtime, MTIME.getTime());
  assert.notEqual(fileValidators(SIZE + 1, MTIME)!.etag, VALIDATORS.etag, "size changes it");
  assert.notEqual(
    fileValidators(SIZE, new Date(MTIME.getTime() + 1))!.etag,
    VALIDATORS.etag,
    "a millisecond changes it",
  );
  assert.equal(fileValidators(SIZE, new Date(MTIME))!.etag, VALIDATORS.etag, "stable");
  assert.equal(fileValidators(SIZE, null), null, "no mtime, no validators");
  assert.equal(fileValidators(0, new Date(0))!.etag, '"0-0"');
});

Deno.test("conditional: HTTP-dates in the three formats; anything else is not one", () => {
  const t = Date.UTC(1994, 10, 6, 8, 49, 37);
  assert.equal(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), t);
  assert.equal(parseHttpDate("  Sun, 06 Nov 1994 08:49:37 GMT "), t, "surrounding OWS");
  assert.equal(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", Date.UTC(2024, 0)), t);
  assert.equal(parseHttpDate("Sun Nov  6 08:49:37 1994"), t);
  assert.equal(parseHttpDate("Sun Nov 06 08:49:37 1994"), t);
  // RFC 850 years: more than 50 years ahead means the last century.
  assert.equal(
    parseHttpDate("Tuesday, 01-Jan-80 00:00:00 GMT", Date.UTC(2024, 0)),
    Date.UTC(1980, 0),
    "80 in 2024 is 1980",
  );
  assert.equal(
    parseHttpDate("Saturday, 01-Jan-50 00:00:00 GMT", Date.UTC(2024, 0)),
    Date.UTC(2050, 0),
    "50 in 2024 is 2050",
  );
  for (
    const bad of [
      "",
      "1",
      "yesterday",
      "2024-05-06T07:08:09Z",
      "Sun, 06 Nov 1994 08:49:37 UTC",
      "Sun, 06 Nov 1994 08:49:37 gmt",
      "sun, 06 Nov 1994 08:49:37 GMT",
      "Sun, 6 Nov 1994 08:49:37 GMT",
      "Sun,  06 Nov 1994 08:49:37 GMT",
      "Mon, 06 Nov 1994 08:49:37 GMT", // the wrong weekday
      "Wed, 31 Feb 1994 08:49:37 GMT", // no such day
      "Sun, 06 Nov 1994 24:00:00 GMT",
      "Sun, 06 Nov 1994 08:60:00 GMT",
      "Sun, 06 Nov 1994 08:49:60 GMT",
      "Sun, 06 Foo 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT", // two values joined
      "Sun, 06-Nov-94 08:49:37 GMT", // RFC 850 needs the long day name
    ]
  ) {
    assert.equal(parseHttpDate(bad), null, JSON.stringify(bad));
  }
});

Deno.test("conditional: Range gives one range clipped to the file, unsatisfiable, or null", () => {
  const cases: [string, number, ReturnType<typeof parseRange>][] = [
    ["bytes=0-0", 10, { start: 0, end: 0 }],
    ["bytes=0-9", 10, { start: 0, end: 9 }],
    ["bytes=2-5", 10, { start: 2, end: 5 }],
    ["bytes=5-100", 10, { start: 5, end: 9 }],
    ["bytes=5-", 10, { start: 5, end: 9 }],
    ["bytes=0-", 10, { start: 0, end: 9 }],
    ["bytes=9-9", 10, { start: 9, end: 9 }],
    ["bytes=-3", 10, { start: 7, end: 9 }],
    ["bytes=-10", 10, { start: 0, end: 9 }],
    ["bytes=-1000", 10, { start: 0, end: 9 }],
    ["bytes=0-99999999999999999999999", 10, { start: 0, end: 9 }],
    ["Bytes = 2-5", 10, { start: 2, end: 5 }],
    ["bytes= 2-5 ", 10, { start: 2, end: 5 }],
    ["bytes=2-5,", 10, { start: 2, end: 5 }],
    ["bytes=, 2-5", 10, { start: 2, end: 5 }],
    ["bytes=007-008", 10, { start: 7, end: 8 }],
    ["bytes=10-", 10, "unsatisfiable"],
    ["bytes=10-20", 10, "unsatisfiable"],
    ["bytes=99999999999999999999-", 10, "unsatisfiable"],
    ["bytes=-0", 10, "unsatisfiable"],
    ["bytes=0-", 0, "unsatisfiable"],
    ["bytes=-5", 0, "unsatisfiable"],
    // Ignored: the whole file.
    ["bytes=0-1,5-6", 10, null],
    ["bytes=0-1, 0-1", 10, null],
    ["bytes=5-2", 10, null],
    ["bytes=", 10, null],
    ["bytes=,", 10, null],
    ["bytes=-", 10, null],
    ["bytes=a-b", 10, null],
    ["bytes=1-2-3", 10, null],
    ["bytes=1 -2", 10, null],
    ["bytes=+1-2", 10, null],
    ["bytes=-1-2", 10, null],
    ["bytes=0x1-2", 10, null],
    ["bytes 0-1", 10, null],
    ["items=0-1", 10, null],
    ["", 10, null],
  ];
  for (const [value, size, expected] of cases) {
    assert.deepEqual(parseRange(value, size), expected, `${JSON.stringify(value)} of ${size}`);
  }
});

function answer(headers: Record<string, string>, method = "GET", now = NOW): FileAnswer {
  return decide(method, new Headers(headers), SIZE, VALIDATORS, now);
}

Deno.test("conditional: If-None-Match (weak comparison) gives 304 and wins over If-Modified-Since", () => {
  const etag = VALIDATORS.etag;
  for (
    const value of [etag, `W/${etag}`, `"x", ${etag}`, `"x",${etag} , "y"`, "*", ` ${etag} `]
  ) {
    assert.deepEqual(answer({ "if-none-match": value }), { status: 304 }, value);
    assert.deepEqual(answer({ "if-none-match": value }, "HEAD"), { status: 304 }, value);
  }
  for (const value of ['"x"', 'W/"x"', etag.slice(1, -1), `${etag}x`, `"${etag}"`, "", ","]) {
    assert.deepEqual(answer({ "if-none-match": value }), { status: 200 }, value);
  }
  // Invalid lists match nothing.
  for (const value of [`${etag} junk`, `w/${etag}`, `${etag} ${etag}`, '"unterminated']) {
    assert.deepEqual(answer({ "if-none-match": value }), { status: 200 }, value);
  }
  // Present, If-None-Match decides alone: a fresh date does not give 304 for another tag,
  assert.deepEqual(
    answer({ "if-none-match": '"other"', "if-modified-since": LAST_MODIFIED }),
    { status: 200 },
  );
  // and a matching tag gives 304 whatever the date says.
  assert.deepEqual(
    answer({ "if-none-match": etag, "if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT" }),
    { status: 304 },
  );
  // 304 comes before Range.
  assert.deepEqual(answer({ "if-none-match": etag, range: "bytes=0-1" }), { status: 304 });
});

Deno.test("conditional: If-Modified-Since gives 304 unless the file is newer (to the second)", () => {
  for (const value of [LAST_MODIFIED, SECOND_AFTER, "Tue, 01 Jan 2999 00:00:00 GMT"]) {
    assert.deepEqual(answer({ "if-modified-since": value }), { status: 304 }, value);
    assert.deepEqual(answer({ "if-modified-since": value }, "HEAD"), { status: 304 }, value);
  }
  for (const value of [SECOND_BEFORE, "Thu, 01 Jan 1970 00:00:00 GMT", "garbage", "1"]) {
    assert.deepEqual(answer({ "if-modified-since": value }), { status: 200 }, value);
  }
  // Without an mtime there is nothing to compare.
  assert.deepEqual(
    decide("GET", new Headers({ "if-modified-since": SECOND_AFTER }), SIZE, null, NOW),
    { status: 200 },
  );
});

Deno.test("conditional: If-Match and If-Unmodified-Since fail with 412 before anything else", () => {
  const etag = VALIDATORS.etag;
  assert.deepEqual(answer({ "if-match": etag }), { status: 200 });
  assert.deepEqual(answer({ "if-match": "*" }), { status: 200 });
  assert.deepEqual(answer({ "if-match": `"a", ${etag}` }), { status: 200 });
  assert.deepEqual(answer({ "if-match": `W/${etag}` }), { status: 412 }, "strong comparison");
  assert.deepEqual(answer({ "if-match": '"other"' }), { status: 412 });
  assert.deepEqual(answer({ "if-match": '"other"', "if-none-match": etag }), { status: 412 });
  assert.deepEqual(
    answer({ "if-match": etag, range: "bytes=0-1" }),
    { status: 206, range: { start: 0, end: 1 } },
  );
  assert.deepEqual(answer({ "if-unmodified-since": LAST_MODIFIED }), { status: 200 });
  assert.deepEqual(answer({ "if-unmodified-since": SECOND_BEFORE }), { status: 412 });
  assert.deepEqual(answer({ "if-unmodified-since": "garbage" }), { status: 200 }, "ignored");
  // If-Match present: If-Unmodified-Since is not looked at.
  assert.deepEqual(
    answer({ "if-match": etag, "if-unmodified-since": SECOND_BEFORE }),
    { status: 200 },
  );
});

Deno.test("conditional: Range on GET gives 206 or 416; HEAD and other answers ignore it", () => {
  assert.deepEqual(answer({ range: "bytes=10-19" }), {
    status: 206,
    range: { start: 10, end: 19 },
  });
  assert.deepEqual(answer({ range: "bytes=-1" }), { status: 206, range: { start: 999, end: 999 } });
  assert.deepEqual(answer({ range: "bytes=1000-" }), { status: 416 });
  assert.deepEqual(answer({ range: "bytes=0-1,3-4" }), { status: 200 });
  assert.deepEqual(answer({ range: "lines=1-2" }), { status: 200 });
  assert.deepEqual(answer({ range: "bytes=0-1" }, "HEAD"), { status: 200 });
  assert.deepEqual(answer({ range: "bytes=1000-" }, "HEAD"), { status: 200 });
});

Deno.test("conditional: If-Range with the current strong validator keeps the range; otherwise the whole file", () => {
  const etag = VALIDATORS.etag;
  const range = { range: "bytes=0-9" };
  const partial = { status: 206, range: { start: 0, end: 9 } };
  assert.deepEqual(answer({ ...range, "if-range": etag }), partial);
  assert.deepEqual(answer({ ...range, "if-range": ` ${etag} ` }), partial);
  assert.deepEqual(answer({ ...range, "if-range": LAST_MODIFIED }), partial);
  // Stale or weak: the whole file (200), never 416.
  for (
    const value of [
      '"stale"',
      `W/${etag}`,
      SECOND_BEFORE,
      SECOND_AFTER,
      "garbage",
      `${etag}, "x"`,
    ]
  ) {
    assert.deepEqual(answer({ ...range, "if-range": value }), { status: 200 }, value);
    assert.deepEqual(answer({ range: "bytes=5000-", "if-range": value }), { status: 200 }, value);
  }
  // A date is strong only once the file is a second old: modified this very second, it is weak.
  assert.deepEqual(
    answer({ ...range, "if-range": LAST_MODIFIED }, "GET", MTIME.getTime() + 500),
    { status: 200 },
  );
  assert.deepEqual(
    answer({ ...range, "if-range": etag }, "GET", MTIME.getTime() + 500),
    partial,
    "the tag is strong at once",
  );
  // If-Range without Range changes nothing.
  assert.deepEqual(answer({ "if-range": '"stale"' }), { status: 200 });
});
