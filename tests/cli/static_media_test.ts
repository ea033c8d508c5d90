/**
 * Seeking in a media file served by the static handler, in headless
 * Chromium: the `<audio>` element asks for `Range: bytes=0-`, gets 206 and
 * `Accept-Ranges`, so the file is seekable; a seek far ahead makes it drop
 * that response (the client leaves mid-body) and ask for a range from the
 * new position, which plays from there. The server records each request's
 * `Range` and status.
 *
 * Without Chromium the test is reported as ignored; in CI (CI=true) a
 * missing browser fails instead, as in tests/browser_test.ts.
 */

import assert from "node:assert/strict";
import { createStaticHandler } from "../../src/cli/static_files.ts";
import { serve } from "../../src/server/server.ts";
import { findChromium, launchChromium } from "../helpers/chromium.ts";

const inCI = ["true", "1"].includes((Deno.env.get("CI") ?? "").toLowerCase());
const chromium = findChromium();
const SKIP = !chromium && !inCI;

const RATE = 8000;
const SECONDS = 20 * 60; // 9.6 MB of 8-bit mono PCM: more than Chromium buffers ahead
const HEADER = 44;

/** A WAV file of a quiet tone: 8-bit unsigned mono PCM. */
function wav(): Uint8Array {
  const samples = RATE * SECONDS;
  const bytes = new Uint8Array(HEADER + samples);
  const view = new DataView(bytes.buffer);
  const ascii = (at: number, text: string) => {
    for (let i = 0; i < text.length; i++) bytes[at + i] = text.charCodeAt(i);
  };
  ascii(0, "RIFF");
  view.setUint32(4, 36 + samples, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, RATE, true);
  view.setUint32(28, RATE, true); // bytes per second
  view.setUint16(32, 1, true); // block align
  view.setUint16(34, 8, true); // bits per sample
  ascii(36, "data");
  view.setUint32(40, samples, true);
  for (let i = 0; i < samples; i++) bytes[HEADER + i] = 128 + Math.round(8 * Math.sin(i / 8));
  return bytes;
}

Deno.test({
  name: SKIP
    ? "static media: seeking in Chromium (ignored: no Chromium found)"
    : "static media: Chromium plays and seeks an <audio> file through 206 ranges",
  ignore: SKIP,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "tsunagu-static-media-" });
    const seen: { range: string | null; status: number; contentRange: string | null }[] = [];
    try {
      await Deno.writeFile(`${root}/tone.wav`, wav());
      await Deno.writeTextFile(
        `${root}/index.html`,
        '<!doctype html><title>media</title><audio id="a" src="/tone.wav" preload="metadata"></audio>',
      );
      const files = await createStaticHandler(root);
      const server = serve({ port: 0, hostname: "127.0.0.1" }, {
        async fetch(request) {
          const response = await files(request);
          if (new URL(request.url).pathname === "/tone.wav") {
            seen.push({
              range: request.headers.get("range"),
              status: response.status,
              contentRange: response.headers.get("content-range"),
            });
          }
          return response;
        },
      });
      const browser = await launchChromium();
      try {
        await browser.navigate(`http://127.0.0.1:${server.addr.port}/`);
        const duration = await browser.waitFor<number>(
          `(() => { const a = document.getElementById("a"); return a.readyState >= 1 && a.duration; })()`,
          10_000,
        );
        assert.ok(Math.abs(duration - SECONDS) < 1, `duration ${duration}`);
        assert.equal(
          await browser.evaluate(`document.getElementById("a").seekable.end(0) > ${SECONDS - 1}`),
          true,
          "seekable to the end: the server takes ranges",
        );
        assert.ok(seen.length >= 1);
        assert.equal(seen[0].range, "bytes=0-", "Chromium asks for a range from the start");
        assert.equal(seen[0].status, 206);

        // Seek near the end, then play from there (a user gesture allows play()).
        const target = SECONDS - 30;
        await browser.evaluate(
          `new Promise((resolve) => { const a = document.getElementById("a");` +
            ` a.addEventListener("seeked", resolve, { once: true }); a.currentTime = ${target}; })`,
        );
        await browser.send("Runtime.evaluate", {
          expression: `document.getElementById("a").play()`,
          userGesture: true,
          awaitPromise: true,
        });
        const position = await browser.waitFor<number>(
          `(() => { const t = document.getElementById("a").currentTime; return t > ${
            target + 0.2
          } && t; })()`,
          10_000,
        );
        assert.ok(position < SECONDS, `plays on from the seek: ${position}`);

        const offset = HEADER + target * RATE;
        const far = seen.find((entry) => {
          const start = Number(/^bytes=(\d+)-/.exec(entry.range ?? "")?.[1] ?? -1);
          return entry.status === 206 && start > offset - RATE * 10 && start <= offset;
        });
        assert.ok(far, `a 206 for a range from near ${offset}: ${JSON.stringify(seen)}`);
        assert.match(far.contentRange!, new RegExp(`^bytes \\d+-${HEADER + SECONDS * RATE - 1}/`));
      } finally {
        await browser.close();
        await server.shutdown();
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
