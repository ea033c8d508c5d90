/**
 * The chat page served on `/` by `examples/chat/server.ts` and `tsunagu serve
 * --mode chat`: one self-contained HTML document, kept here as a string so
 * the published package and the compiled binary carry it without reading
 * files at run time. The wire format it speaks is described in `chat.ts`.
 *
 * What the page does:
 * - Joins the room named by `?room=` in its own URL (default `lobby`) over
 *   `/chat?room=…` on the host that served it (`wss:` under HTTPS).
 * - Reconnects by itself when the connection ends, with exponential backoff
 *   (0.5 s doubling to 15 s, each delay drawn between half and all of it),
 *   showing "connecting…" and the close code and reason the server sent;
 *   Send is disabled while offline. Close stops that; Connect starts again.
 * - Keeps the nickname in `localStorage`, shows the room's recent history on
 *   every (re)join, join/leave/rename notices, who is in the room, and marks
 *   the reader's own messages (by connection id, remembered across reloads).
 * - Fits any width from 320 px up; an inline favicon spares the browser a
 *   request for `/favicon.ico`.
 *
 * @module
 */

/** The path the chat page's WebSocket connects to. */
export const CHAT_SOCKET_PATH = "/chat";

/** The chat page: one self-contained HTML document (styles and script inline). */
export const CHAT_PAGE_HTML: string = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>tsunagu chat</title>
    <link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='7' fill='%232a7'/%3E%3C/svg%3E">
    <style>
    :root {
      color-scheme: light dark;
      font-family: system-ui, sans-serif;
      --line: #8888;
      --accent: #2a7;
    }
    *, *::before, *::after {
      box-sizing: border-box;
    }
    html, body {
      height: 100%;
      margin: 0;
    }
    body {
      display: flex;
      flex-direction: column;
      gap: 0.5rem;
      max-width: 56rem;
      margin: 0 auto;
      padding: 0.75rem;
    }
    header {
      display: flex;
      flex-wrap: wrap;
      align-items: baseline;
      gap: 0.25rem 0.75rem;
    }
    h1 {
      font-size: 1.25rem;
      margin: 0;
    }
    #room {
      font-weight: 600;
      color: var(--accent);
      overflow-wrap: anywhere;
    }
    #status {
      margin-left: auto;
      font-size: 0.875rem;
      padding: 0.1rem 0.5rem;
      border-radius: 1rem;
      background: #888;
      color: #fff;
      white-space: nowrap;
    }
    #status[data-state="connected"] {
      background: #2a2;
    }
    #status[data-state="connecting"] {
      background: #b80;
    }
    #status[data-state="offline"], #status[data-state="closed"] {
      background: #c33;
    }
    #notice {
      margin: 0;
      font-size: 0.875rem;
      overflow-wrap: anywhere;
    }
    #notice:empty {
      display: none;
    }
    main {
      flex: 1;
      min-height: 12rem;
      display: grid;
      grid-template-columns: minmax(0, 1fr) 12rem;
      gap: 0.5rem;
    }
    #log, #people {
      min-height: 0;
      overflow-y: auto;
      border: 1px solid var(--line);
      border-radius: 0.25rem;
      margin: 0;
      padding: 0.5rem;
    }
    #log {
      list-style: none;
    }
    #log li {
      padding: 0.15rem 0.35rem;
      border-radius: 0.25rem;
      overflow-wrap: anywhere;
    }
    #log li.mine {
      background: #2a73;
    }
    #log li.notice {
      font-size: 0.875rem;
      font-style: italic;
      opacity: 0.75;
    }
    #log .name {
      font-weight: 600;
    }
    #people h2 {
      font-size: 0.875rem;
      margin: 0 0 0.25rem;
    }
    #members {
      list-style: none;
      margin: 0;
      padding: 0;
      overflow-wrap: anywhere;
    }
    #members li.mine {
      font-weight: 600;
    }
    form {
      display: grid;
      grid-template-columns: minmax(0, 9rem) minmax(0, 1fr) auto auto;
      gap: 0.5rem;
    }
    input, button {
      font: inherit;
      min-width: 0;
    }
    button:disabled {
      cursor: not-allowed;
    }
    @media (max-width: 40rem) {
      body {
        padding: 0.5rem;
      }
      main {
        grid-template-columns: minmax(0, 1fr);
        grid-template-rows: minmax(0, 1fr) auto;
      }
      #people {
        max-height: 6rem;
      }
      #members li {
        display: inline;
      }
      #members li + li::before {
        content: ", ";
        font-weight: normal;
      }
      form {
        grid-template-columns: minmax(0, 1fr) auto auto;
      }
      #name {
        grid-column: 1 / -1;
      }
    }
    </style>
  </head>
  <body>
    <header>
      <h1>tsunagu chat</h1>
      <span id="room"></span>
      <span id="status" data-state="connecting" role="status">connecting…</span>
    </header>
    <p id="notice" aria-live="polite"></p>
    <main>
      <ul id="log" aria-label="Messages"></ul>
      <section id="people" aria-label="Who is in the room">
        <h2>In the room: <span id="count">0</span></h2>
        <ul id="members"></ul>
      </section>
    </main>
    <form id="form">
      <input id="name" maxlength="40" autocomplete="nickname" aria-label="Nickname">
      <input id="message" autocomplete="off" maxlength="2000" placeholder="Say something…" aria-label="Message">
      <button id="send" type="submit" disabled>Send</button>
      <button id="close" type="button">Close</button>
    </form>
    <script>
    "use strict";
    {
      const $ = (id) => document.getElementById(id);
      const statusEl = $("status");
      const noticeEl = $("notice");
      const logEl = $("log");
      const membersEl = $("members");
      const nameEl = $("name");
      const messageEl = $("message");
      const sendEl = $("send");
      const closeEl = $("close");

      // Reconnection: the n-th retry waits between half and all of
      // min(MAX_DELAY, BASE_DELAY * 2^(n-1)) ms, so clients that lost the
      // same server do not all come back at the same moment.
      const BASE_DELAY = 500;
      const MAX_DELAY = 15000;
      const CONNECT_TIMEOUT = 10000;

      const store = {
        get(key) {
          try {
            return localStorage.getItem(key);
          } catch {
            return null;
          }
        },
        set(key, value) {
          try {
            localStorage.setItem(key, value);
          } catch {
            // Storage disabled: the nickname lasts until the page is closed.
          }
        },
      };
      const NAME_KEY = "tsunagu-chat:name";
      const IDS_KEY = "tsunagu-chat:ids";

      const room = (new URLSearchParams(location.search).get("room") || "").trim().slice(0, 40) ||
        "lobby";
      $("room").textContent = "#" + room;
      document.title = "#" + room + " · tsunagu chat";
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const socketUrl = scheme + "//" + location.host + "${CHAT_SOCKET_PATH}?room=" +
        encodeURIComponent(room);

      nameEl.value = store.get(NAME_KEY) || "guest-" + Math.random().toString(36).slice(2, 6);
      const currentName = () => nameEl.value.trim() || "guest";

      // The connection ids this browser had: its messages in the history are marked as its own.
      let myIds = [];
      try {
        const saved = JSON.parse(store.get(IDS_KEY) || "[]");
        if (Array.isArray(saved)) myIds = saved.filter((id) => typeof id === "string");
      } catch {
        // Unreadable: start afresh.
      }
      const rememberId = (id) => {
        myIds = [...myIds.filter((known) => known !== id), id].slice(-50);
        store.set(IDS_KEY, JSON.stringify(myIds));
      };
      const isMine = (id) => typeof id === "string" && myIds.includes(id);

      let ws = null;
      let wanted = true; // false after Close, until Connect
      let attempt = 0; // failed attempts since the last open connection
      let retryTimer = 0;
      let lost = ""; // how the last working connection ended, until we are back
      let joinedAs = null;

      const setState = (state, text) => {
        statusEl.dataset.state = state;
        statusEl.textContent = text;
        sendEl.disabled = state !== "connected";
        sendEl.title = state === "connected" ? "" : "Not connected";
        closeEl.textContent = state === "closed" ? "Connect" : "Close";
      };

      const describeClose = (event) => {
        if (event.code === 1006) return "1006, no close frame: the connection was lost";
        return String(event.code) + (event.reason ? ' "' + event.reason + '"' : "");
      };

      const scrolled = (change) => {
        const atBottom = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 4;
        change();
        if (atBottom) logEl.scrollTop = logEl.scrollHeight;
      };

      // A message line's text is exactly "name: text"; the time is a tooltip.
      const appendMessage = (msg) => {
        const li = document.createElement("li");
        li.className = isMine(msg.id) ? "message mine" : "message";
        if (typeof msg.time === "number") li.title = new Date(msg.time).toLocaleString();
        const who = document.createElement("span");
        who.className = "name";
        who.textContent = String(msg.name);
        li.append(who, ": " + String(msg.text));
        scrolled(() => logEl.append(li));
      };

      const appendNotice = (text) => {
        const li = document.createElement("li");
        li.className = "notice";
        li.textContent = text;
        scrolled(() => logEl.append(li));
      };

      const renderMembers = (members, count) => {
        membersEl.replaceChildren(...members.map((member) => {
          const li = document.createElement("li");
          const mine = isMine(member.id);
          li.className = mine ? "mine" : "";
          li.textContent = String(member.name) + (mine ? " (you)" : "");
          return li;
        }));
        $("count").textContent = String(count);
      };

      const send = (value) => {
        if (ws === null || ws.readyState !== WebSocket.OPEN) return false;
        ws.send(JSON.stringify(value));
        return true;
      };

      const join = () => {
        const name = currentName();
        if (name !== joinedAs && send({ type: "join", name })) joinedAs = name;
      };

      const onMessage = (event) => {
        if (typeof event.data !== "string") return;
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return;
        }
        if (msg === null || typeof msg !== "object") return;
        const who = String(msg.name);
        switch (msg.type) {
          case "welcome":
            rememberId(msg.id);
            // The history replaces what the log showed before this (re)join.
            logEl.replaceChildren();
            if (Array.isArray(msg.history)) msg.history.forEach(appendMessage);
            if (lost !== "") appendNotice("Reconnected after " + lost + ".");
            lost = "";
            break;
          case "join":
            appendNotice(isMine(msg.id) ? "You joined #" + room + " as " + who + "." : who + " joined.");
            break;
          case "leave":
            appendNotice(who + " left.");
            break;
          case "rename":
            appendNotice(String(msg.from) + " is now " + who + ".");
            break;
          case "presence":
            if (Array.isArray(msg.members)) renderMembers(msg.members, Number(msg.count) || 0);
            break;
          default:
            if ("text" in msg) appendMessage(msg);
        }
      };

      const connect = () => {
        clearTimeout(retryTimer);
        setState("connecting", "connecting…");
        const socket = ws = new WebSocket(socketUrl);
        let opened = false;
        const connectTimer = setTimeout(() => {
          if (socket.readyState === WebSocket.CONNECTING) socket.close();
        }, CONNECT_TIMEOUT);
        socket.addEventListener("open", () => {
          clearTimeout(connectTimer);
          if (ws !== socket) return;
          opened = true;
          attempt = 0;
          joinedAs = null;
          setState("connected", "connected");
          noticeEl.textContent = "";
          join();
        });
        socket.addEventListener("message", (event) => {
          if (ws === socket) onMessage(event);
        });
        socket.addEventListener("close", (event) => {
          clearTimeout(connectTimer);
          if (ws !== socket) return;
          ws = null;
          joinedAs = null;
          renderMembers([], 0);
          const why = describeClose(event);
          if (!wanted) {
            setState("closed", "disconnected");
            noticeEl.textContent = "Disconnected (" + why + "). Press Connect to join again.";
            return;
          }
          // Keep how the working connection ended until we are back.
          if (lost === "") lost = opened ? why : "could not connect";
          attempt++;
          const ceiling = Math.min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1));
          const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
          setState("offline", "offline");
          noticeEl.textContent = "Disconnected: " + lost + ". Reconnecting in " +
            (delay / 1000).toFixed(1) + " s (attempt " + attempt + ")…";
          retryTimer = setTimeout(connect, delay);
        });
      };

      // Back online (laptop woke up, network returned): try at once.
      addEventListener("online", () => {
        if (wanted && ws === null) connect();
      });

      nameEl.addEventListener("change", () => {
        nameEl.value = currentName();
        store.set(NAME_KEY, nameEl.value);
        join();
      });

      // Submitting the form covers both the Send button and the Enter key.
      $("form").addEventListener("submit", (event) => {
        event.preventDefault();
        const text = messageEl.value;
        if (text.trim() === "") return;
        store.set(NAME_KEY, currentName());
        join();
        if (!send({ type: "message", name: currentName(), text })) return;
        messageEl.value = "";
        messageEl.focus();
      });

      closeEl.addEventListener("click", () => {
        if (wanted) {
          wanted = false;
          clearTimeout(retryTimer);
          if (ws !== null) {
            ws.close(1000, "bye");
          } else {
            setState("closed", "disconnected");
            noticeEl.textContent = "";
          }
        } else {
          wanted = true;
          attempt = 0;
          lost = "";
          connect();
        }
      });

      connect();
    }
    </script>
  </body>
</html>
`;
