/**
 * The chat example in a real browser: headless Chromium (driven over CDP by
 * tests/helpers/chromium.ts) loads the page from the example server, types a
 * name and a message, clicks Send and sees the broadcast in #log; a plain
 * Deno WebSocket client in the same room sees it too, and its own message
 * shows up on the page. Clicking Close makes #status "disconnected".
 *
 * Without Chromium the test is reported as ignored, with the reason in its
 * name and printed; in CI (CI=true), where .ci/run installs Chromium, a
 * missing browser fails instead.
 */

import assert from "node:assert/strict";
import { type Browser, findChromium, launchChromium } from "./helpers/chromium.ts";
import { startExample } from "./helpers/example_process.ts";
import { TestClient } from "./helpers/harness.ts";

const NAME = "browser: chat page sends, receives broadcasts and closes";
const SKIP_REASON = "no Chromium found; install the Debian package chromium";

const inCI = ["true", "1"].includes((Deno.env.get("CI") ?? "").toLowerCase());
const chromium = findChromium();

/** A JavaScript expression for the element with `id`, as a string literal is safe. */
const byId = (id: string) => `document.getElementById(${JSON.stringify(id)})`;

/** Focuses an input, selects its content and types `text` over it, as a person would. */
async function typeInto(browser: Browser, id: string, text: string): Promise<void> {
  await browser.evaluate(`(${byId(id)}.focus(), ${byId(id)}.select())`);
  await browser.send("Input.insertText", { text });
  assert.equal(await browser.evaluate(`${byId(id)}.value`), text);
}

/** Clicks the middle of an element with real mouse events. */
async function click(browser: Browser, id: string): Promise<void> {
  const [x, y] = await browser.evaluate<[number, number]>(
    `(() => { const r = ${byId(id)}.getBoundingClientRect();` +
      ` return [r.left + r.width / 2, r.top + r.height / 2]; })()`,
  );
  for (const type of ["mousePressed", "mouseReleased"]) {
    await browser.send("Input.dispatchMouseEvent", { type, x, y, button: "left", clickCount: 1 });
  }
}

/** The text of every line in #log. */
const LOG_LINES = `[...${byId("log")}.querySelectorAll("li")].map((li) => li.textContent)`;

async function chatInBrowser(): Promise<void> {
  const server = await startExample(
    "examples/chat/server.ts",
    ["--allow-net", "--allow-read"],
    ["0"],
  );
  let browser: Browser | null = null;
  let deno: TestClient | null = null;
  try {
    assert.equal(server.url.protocol, "http:", server.output());
    assert.notEqual(server.url.port, "0", `printed port 0\n${server.output()}`);
    browser = await launchChromium();
    await browser.navigate(server.url.href);
    await browser.waitFor(`${byId("status")}.textContent === "connected"`);

    // A second member of the room: a plain Deno client on /chat. Its own
    // message coming back proves it is subscribed; the page must show it too.
    const room = new URL("/chat", server.url);
    room.protocol = "ws:";
    deno = await TestClient.open(room.href);
    const fromDeno = { name: "deno", text: "<b>not bold</b> & welcome" };
    deno.ws.send(JSON.stringify(fromDeno));
    assert.deepEqual(pick(JSON.parse(await deno.next() as string)), fromDeno);
    await browser.waitFor(`${LOG_LINES}.includes("deno: <b>not bold</b> & welcome")`);
    assert.equal(
      await browser.evaluate(`${byId("log")}.querySelector("b") === null`),
      true,
      "message text must be shown as text, not HTML",
    );

    // The person at the page types a name and a message and clicks Send.
    await typeInto(browser, "name", "alice");
    await typeInto(browser, "message", "hello from chromium ✓");
    await click(browser, "send");
    await browser.waitFor(`${LOG_LINES}.at(-1) === "alice: hello from chromium ✓"`);
    assert.deepEqual(await browser.evaluate(LOG_LINES), [
      "deno: <b>not bold</b> & welcome",
      "alice: hello from chromium ✓",
    ]);
    assert.equal(await browser.evaluate(`${byId("message")}.value`), "", "input is cleared");
    const broadcast = JSON.parse(await deno.next() as string);
    assert.deepEqual(pick(broadcast), { name: "alice", text: "hello from chromium ✓" });
    assert.equal(typeof broadcast.time, "number");

    // The browser negotiated compression, and a large message (compressed by
    // the browser, inflated by the server, compressed on the way back) comes
    // back intact from /echo.
    const echo = await browser.evaluate(`new Promise((resolve, reject) => {
      const big = "compressible ".repeat(5000) + "✓";
      const socket = new WebSocket("ws://" + location.host + "/echo");
      socket.onerror = () => reject(new Error("echo socket failed"));
      socket.onopen = () => socket.send(big);
      socket.onmessage = (event) => {
        resolve({ extensions: socket.extensions, same: event.data === big });
        socket.close();
      };
    })`);
    assert.deepEqual(echo, {
      extensions: "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
      same: true,
    });

    await click(browser, "close");
    await browser.waitFor(`${byId("status")}.textContent === "disconnected"`);

    await deno.dispose();
    await browser.close();
    const status = await server.stop("SIGTERM");
    assert.equal(status.code, 0, `chat exit status ${JSON.stringify(status)}\n${server.output()}`);
  } finally {
    await deno?.dispose();
    await browser?.close();
    await server.close();
  }
}

/** The name and text of a chat message (its time varies). */
function pick(message: { name: unknown; text: unknown }) {
  return { name: message.name, text: message.text };
}

if (chromium === undefined && !inCI) {
  console.log(`${NAME}: skipped: ${SKIP_REASON}`);
  Deno.test({ ignore: true, name: `${NAME} (skipped: ${SKIP_REASON})`, fn() {} });
} else {
  Deno.test(NAME, async () => {
    assert.ok(
      chromium !== undefined,
      `CI=true but ${SKIP_REASON} (.ci/run should have installed it; see /tmp/tsunagu-apt.log)`,
    );
    await chatInBrowser();
  });
}
