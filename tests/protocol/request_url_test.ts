import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { requestHref } from "../../src/protocol/request_url.ts";

/** What the runtime's URL parser makes of the same URL (or "throws"). */
function parsed(scheme: string, authority: string, path: string): string {
  try {
    return new URL(`${scheme}://${authority}${path}`).href;
  } catch {
    return "throws";
  }
}

function ours(scheme: string, authority: string, path: string): string {
  try {
    return requestHref(scheme, authority, path);
  } catch {
    return "throws";
  }
}

Deno.test("requestHref: the URL parser's href for paths it keeps and paths it rewrites", () => {
  const cases: [string, string, string][] = [
    ["http", "127.0.0.1:8080", "/small"],
    ["http", "example.com:80", "/a/./b?x=1"],
    ["https", "example.com:443", "/"],
    ["https", "example.com:8443", "/a/../../b"],
    ["http", "a", "/%2e%2E/x"],
    ["http", "a", "/%2e"],
    ["http", "a", "/x%2ey"],
    ["http", "a", "/a/.."],
    ["http", "a", "/a/."],
    ["http", "a", "/a/.b/..c/...?q"],
    ["http", "a", "/.?q"],
    ["http", "a", "/a\\b"],
    ["http", "a", "/a b"],
    ["http", "a", "/a?b c'd\"e<f>g"],
    ["http", "a", "/{x}|^`[y]"],
    ["http", "a", "/a?%2e%2e/../x"],
    ["http", "a", "/%zz%4"],
    ["http", "127.1", "/"],
    ["http", "0x7f.0.0.1:0080", "/"],
    ["http", "xn--nxasmq6b.com", "/"],
    ["http", "[::1]:8080", "/p"],
    ["http", "a:65535", "//double//slash"],
    ["http", "café", "/"],
    ["http", "a", "/é"],
  ];
  for (const [scheme, authority, path] of cases) {
    assertEquals(ours(scheme, authority, path), parsed(scheme, authority, path), path);
  }
  assertThrows(() => requestHref("http", "xn--a", "/"));
});

Deno.test("requestHref: equals the URL parser on random paths of tricky characters", () => {
  // Seeded, so a failure can be replayed.
  let seed = 12345;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pieces = [
    "/",
    "/",
    ".",
    "..",
    "%2e",
    "%2E",
    "%",
    "%41",
    "?",
    "a",
    "Z",
    "0",
    "-",
    "_",
    "~",
    "!",
    "$",
    "&",
    "'",
    "(",
    "*",
    "+",
    ",",
    ";",
    "=",
    ":",
    "@",
    "\\",
    '"',
    "<",
    ">",
    "`",
    "{",
    "|",
    "^",
    "[",
    "]",
    " ",
    "é",
    "%zz",
  ];
  const authorities = ["a", "example.com:80", "127.0.0.1:8080", "[::1]", "h:443"];
  for (let n = 0; n < 20_000; n++) {
    let path = "/";
    const length = random(8);
    for (let i = 0; i < length; i++) path += pieces[random(pieces.length)];
    const scheme = random(2) === 0 ? "http" : "https";
    const authority = authorities[random(authorities.length)];
    assertEquals(ours(scheme, authority, path), parsed(scheme, authority, path), path);
  }
});

Deno.test("requestHref: the last answer kept is given only for the same origin and path", () => {
  // Interleaved repeats, as requests of several clients and servers arrive:
  // each answer must be the parser's, whatever was asked just before.
  const asks: [string, string, string][] = [
    ["http", "a:1", "/x"],
    ["http", "a:1", "/x"],
    ["http", "b:1", "/x"],
    ["https", "b:1", "/x"],
    ["https", "b:443", "/x"],
    ["https", "b:443", "/x?"],
    ["https", "b:443", "/x?"],
    ["http", "a:1", "/./x"],
    ["http", "a:1", "/./x"],
    ["http", "a:1", "/x"],
    ["http", "a:80", "/x"],
    ["http", "a", "/x"],
  ];
  for (const [scheme, authority, path] of asks) {
    assertEquals(ours(scheme, authority, path), parsed(scheme, authority, path));
  }
});
