/**
 * The chat rooms of src/cli/chat.ts: the wire format, and ChatRooms as a
 * unit (fake sockets, a fake publish) for members, notices, renames,
 * bounded history and bounded idle rooms; then the same rooms behind
 * `tsunagu serve --mode chat` (in-process) and `examples/chat/server.ts`,
 * which must share them.
 */

import assert from "node:assert/strict";
import {
  type ChatEntry,
  chatRoomName,
  ChatRooms,
  type ChatSocket,
  chatTopic,
  parseChatInput,
  parseChatMessage,
} from "../../src/cli/chat.ts";
import { runCli } from "../../src/cli/main.ts";
import { startExample } from "../helpers/example_process.ts";
import { TestClient } from "../helpers/harness.ts";

Deno.test("chat wire: joins and messages parse, with sizes capped; anything else is null", () => {
  assert.deepEqual(parseChatInput('{"type":"join","name":"  ann  "}'), {
    type: "join",
    name: "ann",
  });
  assert.deepEqual(parseChatInput('{"name":"ann","text":"hi"}'), {
    type: "message",
    name: "ann",
    text: "hi",
  });
  assert.deepEqual(parseChatInput('{"type":"message","name":"","text":"x"}'), {
    type: "message",
    name: "guest",
    text: "x",
  });
  assert.equal(parseChatInput('{"name":"a\\u0000b","type":"join"}')?.name, "a b");
  const long = parseChatInput(JSON.stringify({ name: "n".repeat(99), text: "t".repeat(9999) }));
  assert.deepEqual([long?.name.length, long?.type === "message" && long.text.length], [40, 2000]);
  for (
    const bad of [
      "not json",
      "null",
      "[]",
      '{"text":"no name"}',
      '{"name":"ann"}',
      '{"type":"dance","name":"ann","text":"x"}',
      '{"name":1,"text":"x"}',
    ]
  ) {
    assert.equal(parseChatInput(bad), null, bad);
  }
  assert.equal(parseChatInput(new Uint8Array([123, 125])), null, "binary is not chat");
  assert.deepEqual(parseChatMessage('{"name":"ann","text":"hi"}'), { name: "ann", text: "hi" });
  assert.equal(parseChatMessage('{"type":"join","name":"ann"}'), null);
});

Deno.test("chat wire: the room comes from the URL's path and ?room=", () => {
  assert.equal(chatRoomName("ws://h/chat"), "lobby");
  assert.equal(chatRoomName("ws://h/chat?room=%20kitchen%20"), "kitchen");
  assert.equal(chatRoomName(`ws://h/chat?room=${"r".repeat(60)}`), "r".repeat(40));
  assert.equal(chatTopic("ws://h/chat"), chatTopic("ws://h/chat?room=lobby"));
  assert.notEqual(chatTopic("ws://h/chat?room=a"), chatTopic("ws://h/chat?room=b"));
  assert.notEqual(chatTopic("ws://h/chat?room=a"), chatTopic("ws://h/other?room=a"));
});

/** A socket that records what it was sent, and a room server that publishes to them. */
class FakeSocket implements ChatSocket {
  sent: Record<string, unknown>[] = [];
  topics = new Set<string>();
  closedWith: [number?, string?] | null = null;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  subscribe(topic: string) {
    this.topics.add(topic);
  }
  close(code?: number, reason?: string) {
    this.closedWith = [code, reason];
  }
  /** Everything received so far, without presence updates, then forgotten. */
  take(): Record<string, unknown>[] {
    const taken = this.sent.filter((message) => message.type !== "presence");
    this.sent = [];
    return taken;
  }
}

function fakeServer(options: { historySize?: number; maxIdleRooms?: number } = {}) {
  const sockets: FakeSocket[] = [];
  let clock = 1000;
  const rooms = new ChatRooms({
    ...options,
    publish(topic, data) {
      for (const socket of sockets) if (socket.topics.has(topic)) socket.send(data);
    },
    now: () => clock++,
  });
  const open = (url: string) => {
    const socket = new FakeSocket(url);
    sockets.push(socket);
    rooms.open(socket);
    return socket;
  };
  const close = (socket: FakeSocket) => {
    sockets.splice(sockets.indexOf(socket), 1);
    rooms.close(socket);
  };
  return { rooms, open, close };
}

const KITCHEN = "ws://h/chat?room=kitchen";

Deno.test("ChatRooms: join, presence, messages to the room, rename and leave", () => {
  const { rooms, open, close } = fakeServer();
  const ann = open(KITCHEN);
  const bob = open(KITCHEN);
  const elsewhere = open("ws://h/chat?room=garden");

  rooms.message(ann, JSON.stringify({ type: "join", name: "ann" }));
  const [welcome, joined] = ann.take();
  assert.deepEqual(Object.keys(welcome).sort(), ["history", "id", "room", "type"]);
  assert.deepEqual([welcome.type, welcome.room, welcome.history], ["welcome", "kitchen", []]);
  assert.match(welcome.id as string, /^[0-9a-f]{12}$/);
  assert.deepEqual(joined, { type: "join", id: welcome.id, name: "ann", time: 1000 });
  assert.deepEqual(bob.take(), [joined], "listeners hear the join too");
  assert.deepEqual(elsewhere.take(), [], "other rooms hear nothing");

  rooms.message(bob, JSON.stringify({ type: "join", name: "bob" }));
  const bobId = bob.take()[0].id;
  const presence = ann.sent.filter((message) => message.type === "presence").at(-1);
  assert.deepEqual(presence, {
    type: "presence",
    count: 2,
    members: [{ id: welcome.id, name: "ann" }, { id: bobId, name: "bob" }],
  });
  assert.deepEqual(rooms.members(KITCHEN), ["ann", "bob"]);
  ann.take();

  rooms.message(bob, JSON.stringify({ name: "bob", text: "hi ann" }));
  const said = { type: "message", id: bobId, name: "bob", text: "hi ann", time: 1002 };
  assert.deepEqual(ann.take(), [said]);
  assert.deepEqual(bob.take(), [said], "the sender hears its own message");

  // A message under another name renames the member first.
  rooms.message(bob, JSON.stringify({ name: "robert", text: "new name" }));
  const [renamed, message] = ann.take();
  assert.deepEqual(renamed, { type: "rename", id: bobId, name: "robert", from: "bob", time: 1003 });
  assert.equal(message.name, "robert");
  assert.deepEqual(rooms.members(KITCHEN), ["ann", "robert"]);

  close(bob);
  const lastPresence = ann.sent.at(-1);
  assert.deepEqual(ann.take(), [{ type: "leave", id: bobId, name: "robert", time: 1005 }]);
  assert.deepEqual(lastPresence, {
    type: "presence",
    count: 1,
    members: [{ id: welcome.id, name: "ann" }],
  });
  assert.deepEqual(elsewhere.sent, []);

  // A client that never joined can still talk, and is never listed.
  rooms.message(elsewhere, JSON.stringify({ name: "lurker", text: "psst" }));
  assert.equal(elsewhere.take()[0].text, "psst");
  assert.deepEqual(rooms.members("ws://h/chat?room=garden"), []);

  rooms.message(ann, "not json");
  assert.deepEqual(ann.closedWith, [1003, "expected JSON {name, text} or {type: join, name}"]);
});

Deno.test("ChatRooms: the last historySize messages are kept and sent on (re)join", () => {
  const { rooms, open, close } = fakeServer({ historySize: 3 });
  const ann = open(KITCHEN);
  rooms.message(ann, JSON.stringify({ type: "join", name: "ann" }));
  for (let i = 1; i <= 5; i++) rooms.message(ann, JSON.stringify({ name: "ann", text: `${i}` }));
  assert.deepEqual(rooms.history(KITCHEN).map((entry) => entry.text), ["3", "4", "5"]);
  close(ann);

  const again = open(KITCHEN);
  rooms.message(again, JSON.stringify({ type: "join", name: "ann" }));
  const history = again.take()[0].history as ChatEntry[];
  assert.deepEqual(history.map((entry) => entry.text), ["3", "4", "5"]);
  assert.deepEqual(Object.keys(history[0]).sort(), ["id", "name", "text", "time", "type"]);

  const none = fakeServer({ historySize: 0 });
  const solo = none.open(KITCHEN);
  none.rooms.message(solo, JSON.stringify({ name: "x", text: "gone" }));
  assert.deepEqual(none.rooms.history(KITCHEN), []);
});

Deno.test("ChatRooms: empty rooms are remembered for their history up to maxIdleRooms, quietest forgotten first", () => {
  const { rooms, open, close } = fakeServer({ maxIdleRooms: 2 });
  const say = (room: string, text: string) => {
    const socket = open(`ws://h/chat?room=${room}`);
    rooms.message(socket, JSON.stringify({ name: "x", text }));
    close(socket);
  };
  say("a", "in a");
  say("b", "in b");
  assert.equal(rooms.roomCount, 2);
  const stays = open("ws://h/chat?room=c");
  say("a", "a again"); // a is now more recent than b
  say("d", "in d"); // three idle rooms with history: b, the quietest, goes
  assert.deepEqual(rooms.history("ws://h/chat?room=b"), []);
  assert.deepEqual(rooms.history("ws://h/chat?room=a").map((e) => e.text), ["in a", "a again"]);
  assert.deepEqual(rooms.history("ws://h/chat?room=d").map((e) => e.text), ["in d"]);
  assert.equal(rooms.roomCount, 3, "a and d idle, c occupied");

  // A room without history is not kept once empty; an occupied one always is.
  close(stays);
  assert.equal(rooms.roomCount, 2);
  for (let i = 0; i < 50; i++) say(`r${i}`, "x");
  assert.equal(rooms.roomCount, 2);
});

Deno.test("tsunagu serve --mode chat uses the shared rooms: join, history, presence", async () => {
  const stop = new AbortController();
  const listening = Promise.withResolvers<number>();
  const done = runCli(["serve", "--port", "0", "--hostname", "127.0.0.1", "--mode", "chat", "-q"], {
    stdout: () => {},
    stderr: () => {},
    signal: stop.signal,
    onListen: (addr) => listening.resolve(addr.port),
  });
  const port = await listening.promise;
  try {
    await joinTwiceAndSeeHistory(`ws://127.0.0.1:${port}/chat?room=cli`);
  } finally {
    stop.abort();
    assert.equal(await done, 0);
  }
});

Deno.test("examples/chat/server.ts uses the shared rooms: join, history, presence", async () => {
  const server = await startExample("examples/chat/server.ts", ["--allow-net"], ["0"]);
  try {
    await joinTwiceAndSeeHistory(`ws://${server.url.host}/chat?room=example`);
    assert.equal((await server.stop("SIGTERM")).code, 0, server.output());
  } finally {
    await server.close();
  }
});

/** Joins, talks, leaves; a second client joining afterwards gets the history. */
async function joinTwiceAndSeeHistory(url: string): Promise<void> {
  const first = await TestClient.open(url);
  try {
    first.ws.send(JSON.stringify({ type: "join", name: "first" }));
    assert.equal(JSON.parse(await first.next() as string).type, "welcome");
    first.ws.send(JSON.stringify({ name: "first", text: "remember me" }));
    const kinds: string[] = [];
    while (kinds.at(-1) !== "message") kinds.push(JSON.parse(await first.next() as string).type);
    assert.deepEqual(kinds, ["join", "presence", "message"]);
  } finally {
    await first.dispose();
  }
  const second = await TestClient.open(url);
  try {
    second.ws.send(JSON.stringify({ type: "join", name: "second" }));
    const welcome = JSON.parse(await second.next() as string);
    assert.equal(welcome.type, "welcome");
    assert.deepEqual(
      welcome.history.map((entry: ChatEntry) => [entry.name, entry.text]),
      [["first", "remember me"]],
    );
    assert.equal(JSON.parse(await second.next() as string).type, "join");
    const presence = JSON.parse(await second.next() as string);
    assert.deepEqual([presence.count, presence.members[0].name], [1, "second"]);
  } finally {
    await second.dispose();
  }
}
