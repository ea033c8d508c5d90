/**
 * The chat example in a real browser: headless Chromium (driven over CDP by
 * tests/helpers/chromium.ts) loads the page from the example server
 * (`examples/chat/server.ts`) and is used as a person would use it, with
 * plain Deno WebSocket clients as the other people in the room:
 *
 * - the room comes from the page's URL; join, leave and rename notices, the
 *   list of who is in the room, own messages marked; the nickname and the
 *   room's recent history survive a reload; Close and Connect; no console
 *   error or warning (a favicon request that fails would be one);
 * - after the server restarts the page shows the close code and reason it
 *   sent (1001 "server shutting down"), "connecting…" while it retries,
 *   Send disabled, and it reconnects by itself;
 * - the layout fits 320, 390 and 1280 px wide viewports: every control's
 *   box lies inside the viewport and nothing scrolls sideways (boxes, not
 *   pixels, are compared; set TSUNAGU_SCREENSHOTS=DIR to save a PNG per
 *   width for a person to look at).
 *
 * Without Chromium the tests are reported as ignored, with the reason in
 * their names and printed; in CI (CI=true), where .ci/run installs Chromium,
 * a missing browser fails instead.
 */

import assert from "node:assert/strict";
import { type Browser, findChromium, launchChromium } from "./helpers/chromium.ts";
import { type ExampleProcess, startExample } from "./helpers/example_process.ts";
import { TestClient } from "./helpers/harness.ts";

const SKIP_REASON = "no Chromium found; install the Debian package chromium";
const EXAMPLE = "examples/chat/server.ts";
const PERMISSIONS = ["--allow-net"];

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
/** The text of every line in #log marked as the reader's own. */
const MINE = `[...${byId("log")}.querySelectorAll("li.mine")].map((li) => li.textContent)`;
/** The names in the list of who is in the room. */
const MEMBERS = `[...${byId("members")}.querySelectorAll("li")].map((li) => li.textContent)`;
const STATUS = `${byId("status")}.textContent`;
const CONNECTED = `${STATUS} === "connected"`;

/** `url` with `path` and the ws: scheme. */
function wsUrl(base: URL, path: string): string {
  const url = new URL(path, base);
  url.protocol = "ws:";
  return url.href;
}

/** The next message `client` receives, parsed; skips presence updates unless asked for. */
async function nextJson(client: TestClient, type?: string): Promise<Record<string, unknown>> {
  while (true) {
    const message = JSON.parse(await client.next() as string);
    if (type === undefined ? message.type !== "presence" : message.type === type) return message;
  }
}

/**
 * Collects every console error or warning, uncaught exception and browser
 * log entry of level warning or error (failed requests, such as a favicon
 * that is not there, are reported this way), and every request for
 * /favicon.ico.
 */
async function watchConsole(browser: Browser): Promise<string[]> {
  const problems: string[] = [];
  browser.on<{ type: string; args: { value?: unknown; description?: string }[] }>(
    "Runtime.consoleAPICalled",
    ({ type, args }) => {
      if (["error", "warning", "assert"].includes(type)) {
        problems.push(`console.${type}: ${args.map((a) => a.value ?? a.description).join(" ")}`);
      }
    },
  );
  browser.on<{ exceptionDetails: { text: string; exception?: { description?: string } } }>(
    "Runtime.exceptionThrown",
    ({ exceptionDetails }) =>
      problems.push(
        `exception: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`,
      ),
  );
  browser.on<{ entry: { level: string; source: string; text: string; url?: string } }>(
    "Log.entryAdded",
    ({ entry }) => {
      if (entry.level === "error" || entry.level === "warning") {
        problems.push(`${entry.source} ${entry.level}: ${entry.text} ${entry.url ?? ""}`);
      }
    },
  );
  browser.on<{ request: { url: string } }>("Network.requestWillBeSent", ({ request }) => {
    if (new URL(request.url).pathname === "/favicon.ico") problems.push(`request ${request.url}`);
  });
  await browser.send("Runtime.enable");
  await browser.send("Log.enable");
  await browser.send("Network.enable");
  return problems;
}

/** Runs `body` with the chat example on port 0 and a browser, and cleans both up. */
async function withChat(
  body: (browser: Browser, server: ExampleProcess) => Promise<void>,
): Promise<void> {
  const server = await startExample(EXAMPLE, PERMISSIONS, ["0"]);
  let browser: Browser | null = null;
  try {
    assert.equal(server.url.protocol, "http:", server.output());
    assert.notEqual(server.url.port, "0", `printed port 0\n${server.output()}`);
    browser = await launchChromium();
    await body(browser, server);
    await browser.close();
    const status = await server.stop("SIGTERM");
    assert.equal(status.code, 0, `chat exit status ${JSON.stringify(status)}\n${server.output()}`);
  } finally {
    await browser?.close();
    await server.close();
  }
}

async function roomsPresenceHistory(browser: Browser, server: ExampleProcess): Promise<void> {
  const problems = await watchConsole(browser);
  const page = new URL("/?room=kitchen", server.url).href;
  await browser.navigate(page);
  await browser.waitFor(CONNECTED);
  assert.equal(await browser.evaluate(`${byId("room")}.textContent`), "#kitchen");
  assert.equal(await browser.evaluate(`${byId("send")}.disabled`), false);
  const guest = await browser.evaluate<string>(`${byId("name")}.value`);
  assert.match(guest, /^guest-/);
  await browser.waitFor(`${LOG_LINES}.includes("You joined #kitchen as ${guest}.")`);
  await browser.waitFor(`${MEMBERS}.join() === "${guest} (you)"`);

  // The person picks a nickname (typing into the next field commits it).
  await typeInto(browser, "name", "alice");
  await typeInto(browser, "message", "");
  await browser.waitFor(`${LOG_LINES}.includes("${guest} is now alice.")`);
  await browser.waitFor(`${MEMBERS}.join() === "alice (you)"`);

  // Bob joins the same room from Deno; carol is in another room.
  const bob = await TestClient.open(wsUrl(server.url, "/chat?room=kitchen"));
  const carol = await TestClient.open(wsUrl(server.url, "/chat?room=garden"));
  try {
    bob.ws.send(JSON.stringify({ type: "join", name: "bob" }));
    const welcome = await nextJson(bob, "welcome");
    assert.equal(welcome.room, "kitchen");
    assert.deepEqual(welcome.history, []);
    await browser.waitFor(`${LOG_LINES}.includes("bob joined.")`);
    await browser.waitFor(`${MEMBERS}.join() === "alice (you),bob"`);
    assert.equal(await browser.evaluate(`${byId("count")}.textContent`), "2");

    carol.ws.send(JSON.stringify({ name: "carol", text: "in the garden" }));
    assert.equal((await nextJson(carol)).text, "in the garden");
    bob.ws.send(JSON.stringify({ name: "bob", text: "<b>not bold</b> & welcome" }));
    await browser.waitFor(`${LOG_LINES}.includes("bob: <b>not bold</b> & welcome")`);
    assert.equal(
      await browser.evaluate(`${byId("log")}.querySelector("b") === null`),
      true,
      "message text must be shown as text, not HTML",
    );

    await typeInto(browser, "message", "hello from chromium ✓");
    await click(browser, "send");
    await browser.waitFor(`${LOG_LINES}.at(-1) === "alice: hello from chromium ✓"`);
    assert.deepEqual(await browser.evaluate(MINE), ["alice: hello from chromium ✓"]);
    assert.equal(await browser.evaluate(`${byId("message")}.value`), "", "input is cleared");
    const seen: Record<string, unknown>[] = [];
    while (seen.at(-1)?.text !== "hello from chromium ✓") seen.push(await nextJson(bob));
    assert.equal(seen.at(-1)?.name, "alice");
    assert.equal(typeof seen.at(-1)?.time, "number");
    assert.ok(
      !(await browser.evaluate<string[]>(LOG_LINES)).some((line) => line.includes("garden")),
      "rooms are separate",
    );
  } finally {
    await bob.dispose();
    await carol.dispose();
  }
  await browser.waitFor(`${LOG_LINES}.includes("bob left.")`);
  await browser.waitFor(`${MEMBERS}.join() === "alice (you)"`);

  // A reload keeps the nickname and shows the room's history, own messages marked.
  await browser.navigate(page);
  await browser.waitFor(CONNECTED);
  assert.equal(await browser.evaluate(`${byId("name")}.value`), "alice");
  await browser.waitFor(`${LOG_LINES}.includes("You joined #kitchen as alice.")`);
  const lines = await browser.evaluate<string[]>(LOG_LINES);
  assert.deepEqual(lines.slice(0, 2), [
    "bob: <b>not bold</b> & welcome",
    "alice: hello from chromium ✓",
  ]);
  assert.deepEqual(await browser.evaluate(MINE), ["alice: hello from chromium ✓"]);

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

  // Close stops the connection (and the retries) until Connect.
  await click(browser, "close");
  await browser.waitFor(`${STATUS} === "disconnected"`);
  assert.equal(await browser.evaluate(`${byId("send")}.disabled`), true);
  assert.equal(await browser.evaluate(`${byId("close")}.textContent`), "Connect");
  assert.match(await browser.evaluate<string>(`${byId("notice")}.textContent`), /\(1000\b/);
  await click(browser, "close");
  await browser.waitFor(CONNECTED);
  assert.equal(await browser.evaluate(`${byId("close")}.textContent`), "Close");

  assert.deepEqual(problems, [], "no console errors or warnings, no /favicon.ico request");
}

async function reconnectAfterRestart(browser: Browser, first: ExampleProcess): Promise<void> {
  const port = first.url.port;
  await browser.navigate(first.url.href);
  await browser.waitFor(CONNECTED);
  // Every state the badge shows from now on, in order.
  await browser.evaluate(`(() => {
    window.states = [];
    new MutationObserver(() => window.states.push(${STATUS}))
      .observe(${byId("status")}, { childList: true, characterData: true, subtree: true });
  })()`);
  await typeInto(browser, "message", "before the restart");
  await click(browser, "send");
  await browser.waitFor(`${LOG_LINES}.at(-1)?.endsWith(": before the restart")`);

  const stopped = await first.stop("SIGTERM");
  assert.equal(stopped.code, 0, first.output());
  await browser.waitFor(`${byId("notice")}.textContent.includes('1001 "server shutting down"')`);
  assert.equal(await browser.evaluate(`${byId("send")}.disabled`), true, "Send is off offline");
  assert.notEqual(await browser.evaluate(STATUS), "connected");
  // Typing goes on while offline; the text waits in the field.
  await typeInto(browser, "message", "after the restart");

  const second = await startExample(EXAMPLE, PERMISSIONS, [port]);
  try {
    assert.equal(second.url.port, port, second.output());
    await browser.waitFor(CONNECTED, 20_000);
    const states = await browser.evaluate<string[]>("window.states");
    assert.equal(states[0], "offline", JSON.stringify(states));
    assert.ok(states.includes("connecting…"), JSON.stringify(states));
    assert.equal(states.at(-1), "connected", JSON.stringify(states));
    assert.equal(await browser.evaluate(`${byId("notice")}.textContent`), "");
    await browser.waitFor(
      `${LOG_LINES}.includes('Reconnected after 1001 "server shutting down".')`,
    );
    await click(browser, "send");
    await browser.waitFor(`${LOG_LINES}.at(-1)?.endsWith(": after the restart")`);
    const status = await second.stop("SIGTERM");
    assert.equal(status.code, 0, second.output());
  } finally {
    await second.close();
  }
}

/** The elements that must be wholly inside the viewport at every width. */
const LAID_OUT = ["room", "status", "log", "people", "name", "message", "send", "close"];

async function layoutAtWidths(browser: Browser, server: ExampleProcess): Promise<void> {
  const problems = await watchConsole(browser);
  const shots = Deno.env.get("TSUNAGU_SCREENSHOTS");
  // A long room name and long unbroken words must wrap, not widen the page.
  const room = "a-room-with-a-rather-long-name-indeed";
  const speaker = await TestClient.open(wsUrl(server.url, `/chat?room=${room}`));
  try {
    speaker.ws.send(JSON.stringify({ type: "join", name: "someone-with-a-long-nickname" }));
    speaker.ws.send(JSON.stringify({
      name: "someone-with-a-long-nickname",
      text: "x".repeat(300) + " and a few ordinary words after it",
    }));
    for (const [width, height] of [[320, 640], [390, 844], [1280, 800]]) {
      await browser.send("Emulation.setDeviceMetricsOverride", {
        width,
        height,
        deviceScaleFactor: 1,
        mobile: width < 600,
      });
      await browser.navigate(new URL(`/?room=${room}`, server.url).href);
      await browser.waitFor(CONNECTED);
      await browser.waitFor(`${LOG_LINES}.some((line) => line.includes("xxxxxxxx"))`);
      const layout = await browser.evaluate<{
        viewport: number;
        viewportHeight: number;
        scrollWidth: number;
        boxes: Record<string, { left: number; right: number; top: number; bottom: number }>;
      }>(`(() => {
        const boxes = {};
        for (const id of ${JSON.stringify(LAID_OUT)}) {
          const r = document.getElementById(id).getBoundingClientRect();
          boxes[id] = { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
        }
        return {
          viewport: window.innerWidth,
          viewportHeight: window.innerHeight,
          scrollWidth: document.documentElement.scrollWidth,
          boxes,
        };
      })()`);
      const where = `at ${width} px: ${JSON.stringify(layout)}`;
      assert.equal(layout.viewport, width, where);
      assert.ok(layout.scrollWidth <= width, `the page scrolls sideways ${where}`);
      for (const [id, box] of Object.entries(layout.boxes)) {
        assert.ok(box.right - box.left > 0 && box.bottom - box.top > 0, `#${id} is empty ${where}`);
        assert.ok(box.left >= 0 && box.right <= width, `#${id} sticks out ${where}`);
        assert.ok(box.top >= 0 && box.bottom <= layout.viewportHeight, `#${id} is below ${where}`);
      }
      const { message, send, close } = layout.boxes;
      assert.ok(message.right <= send.left && send.right <= close.left, `overlap ${where}`);
      assert.ok(
        message.right - message.left >= 120,
        `the message field is too narrow to type in ${where}`,
      );
      if (shots) {
        const { data } = await browser.send<{ data: string }>("Page.captureScreenshot", {
          format: "png",
        });
        await Deno.mkdir(shots, { recursive: true });
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        await Deno.writeFile(`${shots}/chat-${width}.png`, bytes);
      }
    }
  } finally {
    await speaker.dispose();
  }
  assert.deepEqual(problems, [], "no console errors or warnings, no /favicon.ico request");
}

const TESTS: [string, (browser: Browser, server: ExampleProcess) => Promise<void>][] = [
  [
    "browser: chat page — room from the URL, presence, notices, own messages, history and nickname after a reload, no console errors",
    roomsPresenceHistory,
  ],
  [
    "browser: chat page reconnects after a server restart, showing 1001 and the reason meanwhile",
    reconnectAfterRestart,
  ],
  ["browser: chat page fits 320, 390 and 1280 px wide viewports", layoutAtWidths],
];

for (const [name, body] of TESTS) {
  if (chromium === undefined && !inCI) {
    console.log(`${name}: skipped: ${SKIP_REASON}`);
    Deno.test({ ignore: true, name: `${name} (skipped: ${SKIP_REASON})`, fn() {} });
  } else {
    Deno.test(name, async () => {
      assert.ok(
        chromium !== undefined,
        `CI=true but ${SKIP_REASON} (.ci/run should have installed it; see /tmp/tsunagu-apt.log)`,
      );
      await withChat(body);
    });
  }
}
