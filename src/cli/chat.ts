/**
 * The chat room shared by `examples/chat/server.ts` and `tsunagu serve --mode
 * chat`: the browser page (kept here as a string so the published package and
 * the compiled binary carry it without reading files at run time) and the
 * wire-format check for incoming messages.
 *
 * Wire format: clients send JSON `{ "name": string, "text": string }`; the
 * server sends everyone in the room `{ "name", "text", "time" }`. The page
 * connects to `/chat` on the host that served it (`wss:` when served over
 * HTTPS).
 *
 * @module
 */

/** A chat message as a client sends it. */
export interface ChatMessage {
  /** The sender's nickname, at most 40 characters. */
  name: string;
  /** The message text, at most 2000 characters. */
  text: string;
}

/** The path the chat page's WebSocket connects to. */
export const CHAT_SOCKET_PATH = "/chat";

/**
 * Parses a client's chat message; `null` when it is not JSON
 * `{ name: string, text: string }`. Sizes are capped so one client cannot make
 * everyone's page huge.
 */
export function parseChatMessage(data: string | Uint8Array): ChatMessage | null {
  if (typeof data !== "string") return null;
  try {
    const value = JSON.parse(data);
    if (typeof value?.name !== "string" || typeof value?.text !== "string") return null;
    return { name: value.name.slice(0, 40), text: value.text.slice(0, 2000) };
  } catch {
    return null;
  }
}

/** The chat page: one self-contained HTML document (styles and script inline). */
export const CHAT_PAGE_HTML: string = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>tsunagu chat</title>
    <style>
    :root {
      color-scheme: light dark;
      font-family: system-ui, sans-serif;
    }
    body {
      max-width: 40rem;
      margin: 2rem auto;
      padding: 0 1rem;
    }
    header {
      display: flex;
      align-items: baseline;
      justify-content: space-between;
    }
    h1 {
      font-size: 1.25rem;
      margin: 0 0 1rem;
    }
    #status {
      font-size: 0.875rem;
      padding: 0.1rem 0.5rem;
      border-radius: 1rem;
      background: #d33;
      color: #fff;
    }
    #status.open {
      background: #2a2;
    }
    #log {
      list-style: none;
      margin: 0 0 1rem;
      padding: 0.5rem;
      height: min(20rem, 60vh);
      overflow-y: auto;
      border: 1px solid #8888;
      border-radius: 0.25rem;
    }
    #log li {
      padding: 0.15rem 0;
      overflow-wrap: anywhere;
    }
    #log .name {
      font-weight: 600;
    }
    form {
      display: flex;
      gap: 0.5rem;
    }
    #name {
      width: 7rem;
    }
    #message {
      flex: 1;
    }
    </style>
  </head>
  <body>
    <header>
      <h1>tsunagu chat</h1>
      <span id="status">disconnected</span>
    </header>
    <ul id="log"></ul>
    <form id="form">
      <input id="name" value="guest" maxlength="32" aria-label="Nickname">
      <input id="message" autocomplete="off" placeholder="Say something…" aria-label="Message">
      <button id="send" type="submit">Send</button>
      <button id="close" type="button">Close</button>
    </form>
    <script>
    "use strict";
    {
      const $ = (id) => document.getElementById(id);
      const statusEl = $("status");
      const logEl = $("log");
      const nameEl = $("name");
      const messageEl = $("message");

      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(scheme + "//" + location.host + "${CHAT_SOCKET_PATH}");

      const setStatus = (open) => {
        statusEl.textContent = open ? "connected" : "disconnected";
        statusEl.classList.toggle("open", open);
      };

      // Each line's text is exactly "name: text"; the time is a tooltip.
      const append = (msg) => {
        const li = document.createElement("li");
        if (typeof msg.time === "number") {
          li.title = new Date(msg.time).toLocaleString();
        }
        const who = document.createElement("span");
        who.className = "name";
        who.textContent = String(msg.name);
        li.append(who, ": " + String(msg.text));
        const atBottom = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 4;
        logEl.append(li);
        if (atBottom) logEl.scrollTop = logEl.scrollHeight;
      };

      ws.addEventListener("open", () => setStatus(true));
      ws.addEventListener("close", () => setStatus(false));
      ws.addEventListener("message", (event) => {
        if (typeof event.data !== "string") return;
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return;
        }
        if (msg && typeof msg === "object") append(msg);
      });

      // Submitting the form covers both the Send button and the Enter key.
      $("form").addEventListener("submit", (event) => {
        event.preventDefault();
        const text = messageEl.value;
        if (text.trim() === "" || ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify({ name: nameEl.value.trim() || "guest", text }));
        messageEl.value = "";
        messageEl.focus();
      });

      $("close").addEventListener("click", () => ws.close(1000, "bye"));
    }
    </script>
  </body>
</html>
`;
