/**
 * Keep-alive as a browser uses it: headless Chromium (tests/helpers/chromium.ts)
 * loads a page with several assets (a stylesheet, a script, images, JSON
 * fetched by the script one after another) from tsunagu's `fetch` handler,
 * and the page opens a WebSocket to the same port. The server counts the TCP
 * connections (`connectionsAccepted`) and which one served each request: the
 * requests must share connections rather than pay a connect each.
 *
 * Without Chromium the test is reported as ignored (in CI, where .ci/run
 * installs it, a missing browser fails), as in tests/browser_test.ts.
 */

import assert from "node:assert/strict";
import { findChromium, launchChromium } from "./helpers/chromium.ts";
import { serve } from "../mod.ts";

const SKIP_REASON = "no Chromium found; install the Debian package chromium";
const inCI = ["true", "1"].includes((Deno.env.get("CI") ?? "").toLowerCase());
const chromium = findChromium();

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>assets</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/style.css">
<script src="/app.js" defer></script>
</head><body><h1>assets</h1><img src="/a.svg" alt="a"><img src="/b.svg" alt="b">
<p id="status">loading</p></body></html>`;

const SCRIPT = `
(async () => {
  const parts = [];
  for (const name of ["one", "two", "three", "four"]) {
    const response = await fetch("/data/" + name + ".json");
    parts.push((await response.json()).name);
  }
  const socket = new WebSocket("ws://" + location.host + "/ws");
  socket.onopen = () => socket.send(parts.join(","));
  socket.onmessage = (event) => {
    document.getElementById("status").textContent = "echo " + event.data;
    socket.close();
  };
})();
`;

const SVG =
  `<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>`;

function asset(path: string): Response {
  if (path === "/") return new Response(PAGE, { headers: { "content-type": "text/html" } });
  if (path === "/style.css") {
    return new Response("h1 { color: teal }", { headers: { "content-type": "text/css" } });
  }
  if (path === "/app.js") {
    return new Response(SCRIPT, { headers: { "content-type": "text/javascript" } });
  }
  if (path.endsWith(".svg")) {
    return new Response(SVG, { headers: { "content-type": "image/svg+xml" } });
  }
  const data = /^\/data\/(\w+)\.json$/.exec(path);
  if (data) return Response.json({ name: data[1] });
  return new Response("not found", { status: 404 });
}

async function pageOverKeepAlive(): Promise<void> {
  // Which client port (one per TCP connection) served each request.
  const served: { path: string; port: number }[] = [];
  const server = serve({ port: 0, hostname: "127.0.0.1", pingInterval: 0 }, {
    fetch(request, info) {
      const path = new URL(request.url).pathname;
      served.push({ path, port: info.remoteAddr.port });
      return asset(path);
    },
    message(socket, data) {
      socket.send(data);
    },
  });
  const browser = await launchChromium();
  try {
    await browser.send("Page.enable");
    await browser.navigate(`http://127.0.0.1:${server.addr.port}/`);
    await browser.waitFor(`document.getElementById("status").textContent.startsWith("echo")`);
    assert.equal(
      await browser.evaluate(`document.getElementById("status").textContent`),
      "echo one,two,three,four",
    );
    const paths = served.map((entry) => entry.path).sort();
    for (const path of ["/", "/style.css", "/app.js", "/a.svg", "/b.svg", "/data/four.json"]) {
      assert.ok(paths.includes(path), `${path} was requested: ${paths}`);
    }
    const connections = new Set(served.map((entry) => entry.port));
    const perConnection = [...connections].map((port) =>
      served.filter((entry) => entry.port === port).length
    );
    // Chromium may open a few connections in parallel for the first assets;
    // the data fetched one after another reuses them.
    assert.ok(
      connections.size < served.length && Math.max(...perConnection) >= 4,
      `${served.length} requests over ${connections.size} connections (${perConnection})`,
    );
    // Every TCP connection: the plain ones, the WebSocket, and any Chromium
    // opened ahead of need.
    const accepted = server.metrics().connectionsAccepted;
    assert.ok(accepted <= connections.size + 3, `${accepted} connections accepted`);
    console.log(
      `${served.length} requests over ${connections.size} connections ${
        JSON.stringify(perConnection)
      }; ` +
        `${accepted} accepted in all`,
    );
  } finally {
    await browser.close();
    await server.shutdown();
  }
}

const NAME = "browser: a page with several assets loads over shared keep-alive connections";
if (chromium === undefined && !inCI) {
  console.log(`${NAME}: skipped: ${SKIP_REASON}`);
  Deno.test({ ignore: true, name: `${NAME} (skipped: ${SKIP_REASON})`, fn() {} });
} else {
  Deno.test(NAME, async () => {
    assert.ok(chromium !== undefined, `CI=true but ${SKIP_REASON}`);
    await pageOverKeepAlive();
  });
}
