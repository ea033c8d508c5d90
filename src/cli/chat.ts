/**
 * The chat rooms shared by `examples/chat/server.ts` and `tsunagu serve --mode
 * chat`: the wire format, the server side of a room ({@linkcode ChatRooms}:
 * members, presence, join/leave notices, recent history) and the browser page
 * (in `chat_page.ts`, re-exported here).
 *
 * A room is chosen by the connection's URL: its path and its `room` query
 * parameter (`/chat?room=kitchen`; without one the room is `lobby`). The page
 * at `/?room=kitchen` connects to `/chat?room=kitchen`.
 *
 * Client to server, JSON text messages:
 * - `{ "type": "join", "name": string }` enters the room under a nickname
 *   (sent again with another name: a rename). The joining client gets a
 *   `welcome` with its id and the room's recent history; everyone gets a
 *   `join` notice and the new `presence` list.
 * - `{ "name": string, "text": string }` (optionally `"type": "message"`)
 *   says something. Clients that never join may still send and receive
 *   messages; they are not listed in the room.
 *
 * Server to client, JSON text messages, each with a `type`:
 * - `message`: `{ type, id, name, text, time }` to everyone in the room, the
 *   sender included (`id` is the sender's connection id).
 * - `welcome`: `{ type, id, room, history }` to a client that joined:
 *   `history` holds the room's last messages, oldest first.
 * - `join` / `leave`: `{ type, id, name, time }`; `rename`:
 *   `{ type, id, name, from, time }`.
 * - `presence`: `{ type, count, members: [{ id, name }] }` after every change.
 *
 * Anything else closes the connection with 1003.
 *
 * @module
 */

export { CHAT_PAGE_HTML, CHAT_SOCKET_PATH } from "./chat_page.ts";

/** A chat message as a client sends it. */
export interface ChatMessage {
  /** The sender's nickname, at most 40 characters. */
  name: string;
  /** The message text, at most 2000 characters. */
  text: string;
}

/** What a client may send: a message, or a join (or rename) under a nickname. */
export type ChatInput =
  | { type: "message"; name: string; text: string }
  | { type: "join"; name: string };

/** A chat message as the server sends it, and as the room's history keeps it. */
export interface ChatEntry {
  /** Always `"message"`. */
  type: "message";
  /** The sender's connection id. */
  id: string;
  /** The sender's nickname. */
  name: string;
  /** The message text. */
  text: string;
  /** When the server received it, in milliseconds since the epoch. */
  time: number;
}

/** Longest nickname kept, in UTF-16 code units. */
export const MAX_NAME_LENGTH = 40;
/** Longest message text kept, in UTF-16 code units. */
export const MAX_TEXT_LENGTH = 2000;
/** Longest room name kept, in UTF-16 code units. */
export const MAX_ROOM_LENGTH = 40;
/** The room of a connection whose URL names none. */
export const DEFAULT_ROOM = "lobby";

/** Trims `name` and caps its length; control characters become spaces. */
function cleanName(name: string): string {
  // deno-lint-ignore no-control-regex
  return name.replace(/[\u0000-\u001f\u007f]/g, " ").trim().slice(0, MAX_NAME_LENGTH);
}

/**
 * Parses what a client sent; `null` when it is not one of the
 * {@linkcode ChatInput} shapes. Sizes are capped so one client cannot make
 * everyone's page huge; an empty nickname becomes `guest`.
 *
 * @example
 * ```ts
 * import { parseChatInput } from "./chat.ts";
 * console.log(parseChatInput('{"type":"join","name":" ann "}')); // { type: "join", name: "ann" }
 * console.log(parseChatInput("not json")); // null
 * ```
 */
export function parseChatInput(data: string | Uint8Array): ChatInput | null {
  if (typeof data !== "string") return null;
  let value;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || typeof value.name !== "string") return null;
  const name = cleanName(value.name) || "guest";
  if (value.type === "join") return { type: "join", name };
  if (value.type !== undefined && value.type !== "message") return null;
  if (typeof value.text !== "string") return null;
  return { type: "message", name, text: value.text.slice(0, MAX_TEXT_LENGTH) };
}

/**
 * Parses a client's chat message; `null` when it is not JSON
 * `{ name: string, text: string }` (a join is not a message).
 *
 * @example
 * ```ts
 * import { parseChatMessage } from "./chat.ts";
 * console.log(parseChatMessage('{"name":"ann","text":"hi"}')); // { name: "ann", text: "hi" }
 * ```
 */
export function parseChatMessage(data: string | Uint8Array): ChatMessage | null {
  const input = parseChatInput(data);
  return input?.type === "message" ? { name: input.name, text: input.text } : null;
}

/**
 * The room a connection to `url` is in: `room` from the query (trimmed, at
 * most 40 characters), or `lobby`.
 *
 * @example
 * ```ts
 * import { chatRoomName } from "./chat.ts";
 * console.log(chatRoomName("ws://example.com/chat?room=kitchen")); // kitchen
 * console.log(chatRoomName("ws://example.com/chat")); // lobby
 * ```
 */
export function chatRoomName(url: string): string {
  const room = cleanName(new URL(url).searchParams.get("room") ?? "").slice(0, MAX_ROOM_LENGTH);
  return room || DEFAULT_ROOM;
}

/**
 * The publish/subscribe topic of the room a connection to `url` is in: its
 * path and room name, so `/chat?room=a`, `/chat?room=b` and `/other` are
 * separate rooms and `/chat` is `/chat?room=lobby`.
 *
 * @example
 * ```ts
 * import { chatTopic } from "./chat.ts";
 * console.log(chatTopic("ws://example.com/chat")); // /chat?room=lobby
 * ```
 */
export function chatTopic(url: string): string {
  return `${new URL(url).pathname}?room=${chatRoomName(url)}`;
}

/** What {@linkcode ChatRooms} needs of a socket (a server socket has all of it). */
export interface ChatSocket {
  /** The request URL, which names the room. */
  readonly url: string;
  /** Sends one message to this client. */
  send(data: string): unknown;
  /** Subscribes the socket to a topic, so that `publish` reaches it. */
  subscribe(topic: string): unknown;
  /** Closes the connection. */
  close(code?: number, reason?: string): void;
}

/** Settings of {@linkcode ChatRooms}. */
export interface ChatRoomsOptions {
  /**
   * Sends `data` to every socket subscribed to `topic`, usually
   * `(topic, data) => server.publish(topic, data)`.
   */
  publish(topic: string, data: string): void;
  /** Messages kept per room and sent to whoever joins. Default 50; 0 keeps none. */
  historySize?: number;
  /**
   * Rooms whose history is kept once everyone has left. Beyond it the room
   * that has been quiet longest is forgotten. Rooms with members are always
   * kept. Default 100.
   */
  maxIdleRooms?: number;
  /** Names listed in a `presence` message at most (`count` is always exact). Default 100. */
  maxListedMembers?: number;
  /** The clock, in milliseconds since the epoch. Default `Date.now`. */
  now?: () => number;
}

interface Member {
  id: string;
  topic: string;
  room: string;
  /** Set once the member has joined under a nickname. */
  name: string | null;
}

interface Room {
  name: string;
  /** Connections in the room, joined or not. */
  listeners: number;
  /** Members who joined, in the order they joined. */
  members: Set<Member>;
  history: ChatEntry[];
}

/**
 * The server side of the chat rooms: call {@linkcode ChatRooms.open},
 * {@linkcode ChatRooms.message} and {@linkcode ChatRooms.close} from the
 * server's handlers for every chat connection. It keeps each room's members
 * and its last `historySize` messages (bounded, also in the number of empty
 * rooms remembered) and sends the messages of the wire format described in
 * this module.
 *
 * @example
 * ```ts
 * import { serve, type Server } from "../../mod.ts";
 * import { ChatRooms } from "./chat.ts";
 *
 * const rooms = new ChatRooms({ publish: (topic, data) => server.publish(topic, data) });
 * const server: Server = serve({ port: 0, hostname: "127.0.0.1" }, {
 *   open: (socket) => rooms.open(socket),
 *   message: (socket, data) => rooms.message(socket, data),
 *   close: (socket) => rooms.close(socket),
 * });
 * await server.shutdown();
 * ```
 */
export class ChatRooms {
  #publish: (topic: string, data: string) => void;
  #historySize: number;
  #maxIdleRooms: number;
  #maxListed: number;
  #now: () => number;
  #members = new Map<ChatSocket, Member>();
  /** Rooms by topic, the least recently active first. */
  #rooms = new Map<string, Room>();
  /** Rooms with no connection, kept for their history. */
  #idleRooms = 0;

  /** Rooms for the server whose `publish` `options` gives. */
  constructor(options: ChatRoomsOptions) {
    this.#publish = options.publish;
    this.#historySize = Math.max(0, options.historySize ?? 50);
    this.#maxIdleRooms = Math.max(0, options.maxIdleRooms ?? 100);
    this.#maxListed = Math.max(0, options.maxListedMembers ?? 100);
    this.#now = options.now ?? Date.now;
  }

  /** A new connection: it hears its room from now on (and joins when it sends a join). */
  open(socket: ChatSocket): void {
    if (this.#members.has(socket)) return;
    const topic = chatTopic(socket.url);
    const member: Member = { id: newId(), topic, room: chatRoomName(socket.url), name: null };
    let room = this.#rooms.get(topic);
    if (room === undefined) {
      room = { name: member.room, listeners: 0, members: new Set(), history: [] };
      this.#rooms.set(topic, room);
    } else if (room.listeners === 0) {
      this.#idleRooms--;
    }
    room.listeners++;
    this.#touch(topic, room);
    this.#members.set(socket, member);
    socket.subscribe(topic);
  }

  /** A message from a connection: a join, a rename or a chat message; anything else is 1003. */
  message(socket: ChatSocket, data: string | Uint8Array): void {
    const member = this.#members.get(socket);
    const room = member && this.#rooms.get(member.topic);
    if (member === undefined || room === undefined) return;
    const input = parseChatInput(data);
    if (input === null) {
      socket.close(1003, "expected JSON {name, text} or {type: join, name}");
      return;
    }
    this.#touch(member.topic, room);
    if (input.type === "join" || (member.name !== null && member.name !== input.name)) {
      this.#join(socket, member, room, input.name);
    }
    if (input.type === "message") {
      const entry: ChatEntry = {
        type: "message",
        id: member.id,
        name: input.name,
        text: input.text,
        time: this.#now(),
      };
      if (this.#historySize > 0) {
        room.history.push(entry);
        if (room.history.length > this.#historySize) room.history.shift();
      }
      this.#publish(member.topic, JSON.stringify(entry));
    }
  }

  /** A connection ended: a member who had joined leaves the room. */
  close(socket: ChatSocket): void {
    const member = this.#members.get(socket);
    const room = member && this.#rooms.get(member.topic);
    if (member === undefined || room === undefined) return;
    this.#members.delete(socket);
    if (member.name !== null) {
      room.members.delete(member);
      this.#notice(member, { type: "leave", id: member.id, name: member.name });
      this.#presence(member.topic, room);
    }
    if (--room.listeners > 0) return;
    if (room.history.length === 0) {
      this.#rooms.delete(member.topic);
      return;
    }
    this.#idleRooms++;
    // Forget the quietest idle rooms beyond the limit.
    for (const [topic, idle] of this.#rooms) {
      if (this.#idleRooms <= this.#maxIdleRooms) break;
      if (idle.listeners > 0) continue;
      this.#rooms.delete(topic);
      this.#idleRooms--;
    }
  }

  /**
   * The nicknames of the members of the room that a connection to `url` is
   * in, in the order they joined.
   */
  members(url: string): string[] {
    const room = this.#rooms.get(chatTopic(url));
    return room === undefined ? [] : [...room.members].map((member) => member.name!);
  }

  /** The messages kept for the room that a connection to `url` is in, oldest first. */
  history(url: string): ChatEntry[] {
    return [...this.#rooms.get(chatTopic(url))?.history ?? []];
  }

  /** How many rooms are remembered: those with connections, and idle ones kept for their history. */
  get roomCount(): number {
    return this.#rooms.size;
  }

  #join(socket: ChatSocket, member: Member, room: Room, name: string): void {
    const from = member.name;
    if (from === name) return;
    member.name = name;
    if (from === null) {
      room.members.add(member);
      socket.send(JSON.stringify({
        type: "welcome",
        id: member.id,
        room: member.room,
        history: room.history,
      }));
      this.#notice(member, { type: "join", id: member.id, name });
    } else {
      this.#notice(member, { type: "rename", id: member.id, name, from });
    }
    this.#presence(member.topic, room);
  }

  #notice(member: Member, notice: Record<string, unknown>): void {
    this.#publish(member.topic, JSON.stringify({ ...notice, time: this.#now() }));
  }

  #presence(topic: string, room: Room): void {
    const members = [];
    for (const member of room.members) {
      if (members.length >= this.#maxListed) break;
      members.push({ id: member.id, name: member.name });
    }
    this.#publish(topic, JSON.stringify({ type: "presence", count: room.members.size, members }));
  }

  /** Moves a room to the most recently active end. */
  #touch(topic: string, room: Room): void {
    this.#rooms.delete(topic);
    this.#rooms.set(topic, room);
  }
}

/** A connection id: 12 random hex digits. */
function newId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
