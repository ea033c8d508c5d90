/**
 * The fuzz streams of `frame_fuzz.ts` against a live server: each case is
 * sent on its own raw TCP connection after a valid opening handshake, and
 * what comes back is checked against the reference model.
 *
 * The server is an echo server ({@linkcode startFuzzServer}) that records,
 * per request path, the messages its handler got and the code its `close`
 * handler got. Every fuzz connection asks for a path of its own: client
 * ports are reused under load, so they cannot tell connections apart.
 *
 * @module
 */

import type { Server } from "../../mod.ts";
import type { RecordedEvent } from "../helpers/frames.ts";
import { startServer, type TestClient } from "../helpers/harness.ts";
import { type Frame, OP, RawClient } from "../helpers/raw_client.ts";
import {
  caseSeed,
  decodeUtf8,
  eventKey,
  type FuzzCase,
  generateCase,
  hex,
  liveFuzz,
  modelDecode,
} from "./frame_fuzz.ts";

/** What the server's handlers saw for one client connection. */
export interface ServerSide {
  /** Event keys of the messages the `message` handler got, in order. */
  messages: string[];
  /** The code the `close` handler got, once it ran. */
  closeCode?: number;
}

/** An echo server for live fuzzing, and what its handlers saw. */
export interface FuzzServer {
  /** The server. */
  server: Server<undefined>;
  /** Its port on 127.0.0.1. */
  port: number;
  /** The server's message size limit. */
  maxPayload: number;
  /** Per request path (each fuzz connection has its own; the healthy client uses `/`). */
  peers: Map<string, ServerSide>;
  /** Everything the `error` handler got: nothing is expected. */
  errors: unknown[];
  /** Messages delivered to a socket after its `close` handler ran: nothing is expected. */
  lateMessages: number;
}

/**
 * Starts an echo server on 127.0.0.1:0 with `maxPayload`, no heartbeat, and
 * records what it sees; `binaryMessages` as the server option (with
 * `"view"` the handler records and echoes the lent view during the call).
 */
export function startFuzzServer(
  maxPayload: number,
  binaryMessages: "copy" | "view" = "copy",
): FuzzServer {
  const peers = new Map<string, ServerSide>();
  const peer = (url: string): ServerSide => {
    const path = new URL(url).pathname;
    let side = peers.get(path);
    if (side === undefined) peers.set(path, side = { messages: [] });
    return side;
  };
  const fuzz: FuzzServer = {
    server: undefined as unknown as Server<undefined>,
    port: 0,
    maxPayload,
    peers,
    errors: [],
    lateMessages: 0,
  };
  const harness = startServer(
    { maxPayload, pingInterval: 0, closeTimeout: 2_000, binaryMessages },
    {
      message(socket, data) {
        const side = peer(socket.url);
        if (side.closeCode !== undefined) fuzz.lateMessages++;
        side.messages.push(
          eventKey(
            typeof data === "string" ? { type: "text", text: data } : { type: "binary", data },
          ),
        );
        socket.send(data);
      },
      close(socket, code) {
        peer(socket.url).closeCode = code;
      },
    },
  );
  fuzz.server = harness.server;
  fuzz.port = harness.port;
  fuzz.errors = harness.errors;
  return fuzz;
}

/** How one live case ended. */
export interface LiveResult {
  /** The request path it used: its key in {@linkcode FuzzServer.peers}. */
  path: string;
  /** Event keys of the frames the server sent (close frames as `close CODE`). */
  replies: string[];
  /** How the connection ended: EOF, reset, or our deadline (a hang). */
  ending: "eof" | "reset" | "deadline";
  /** The code of the server's close frame, if it sent one. */
  closeCode: number | null;
  /** What went wrong on the wire; the caller adds the server-side checks. */
  violations: string[];
}

function frameKey(frame: Frame): string {
  switch (frame.opcode) {
    case OP.TEXT:
      // Not the helper's decodeText: it drops a leading BOM, which is part of the message.
      return eventKey({ type: "text", text: decodeUtf8(frame.payload) });
    case OP.BINARY:
      return eventKey({ type: "binary", data: frame.payload });
    case OP.PONG:
      return eventKey({ type: "pong", data: frame.payload });
    case OP.CLOSE: {
      if (frame.payload.length === 0) return "close 1005";
      if (frame.payload.length < 2) throw new Error("close frame of 1 byte");
      decodeUtf8(frame.payload.subarray(2)); // the reason must be UTF-8
      return `close ${(frame.payload[0] << 8) | frame.payload[1]}`;
    }
    default:
      throw new Error(`unexpected server frame: opcode ${frame.opcode} [${hex(frame.payload)}]`);
  }
}

/**
 * What the server must send back for the model's events: an echo per
 * message, a pong per ping (of which the server may leave out all but the
 * latest of those waiting, see checkLiveCase), then a close frame echoing the peer's code or
 * carrying the error code. Also the code its `close` handler must get
 * (1006 when the stream ends without a close or an error).
 */
export function expectedReplies(events: readonly RecordedEvent[]): {
  replies: string[];
  closes: boolean;
  serverCode: number;
} {
  const replies: string[] = [];
  for (const event of events) {
    if (event.type === "text" || event.type === "binary") replies.push(eventKey(event));
    else if (event.type === "ping") replies.push(eventKey({ type: "pong", data: event.data }));
    else if (event.type === "close" || event.type === "error") {
      replies.push(`close ${event.code}`);
      return { replies, closes: true, serverCode: event.code };
    }
  }
  return { replies, closes: false, serverCode: 1006 };
}

let connections = 0;

/**
 * Sends one case to the server at `port` and reads until the server ends
 * the connection (or `timeoutMs` passes: then the case is a hang). The
 * stream is written in the case's pieces, then the write side is shut so a
 * stream that ends mid-frame still ends.
 */
export async function runLiveCase(
  port: number,
  fuzzCase: FuzzCase,
  timeoutMs = 5_000,
): Promise<LiveResult> {
  const deadline = Date.now() + timeoutMs;
  const path = `/fuzz/${++connections}`;
  const client = await RawClient.connect(port);
  const result: LiveResult = {
    path,
    replies: [],
    ending: "deadline",
    closeCode: null,
    violations: [],
  };
  try {
    await client.handshake({ path }, timeoutMs);
    let start = 0;
    for (const cut of [...fuzzCase.splits, fuzzCase.bytes.length]) {
      try {
        await client.write(fuzzCase.bytes.subarray(start, cut));
      } catch {
        break; // the server already failed the connection and closed it
      }
      start = cut;
    }
    try {
      await client.conn.closeWrite();
    } catch {
      // Already reset by the server.
    }
    while (true) {
      let frame: Frame;
      try {
        frame = await client.readFrame(Math.max(1, deadline - Date.now()));
      } catch (error) {
        if (client.ended === null) {
          result.violations.push(`reading the server's frames: ${String(error)}`);
        }
        break;
      }
      if (result.closeCode !== null) {
        result.violations.push(`a frame after the close frame (opcode ${frame.opcode})`);
      }
      if (!frame.fin || frame.rsv !== 0) {
        result.violations.push(`server frame with FIN ${frame.fin}, RSV ${frame.rsv}`);
      }
      try {
        const key = frameKey(frame);
        result.replies.push(key);
        if (frame.opcode === OP.CLOSE) result.closeCode = Number(key.split(" ")[1]);
      } catch (error) {
        result.violations.push(String(error));
      }
    }
    if (client.ended !== null) result.ending = client.ended;
  } catch (error) {
    result.violations.push(`handshake: ${String(error)}`);
  } finally {
    client.close();
  }
  return result;
}

/**
 * Checks a live case: no hang; the server's frames are exactly the model's
 * replies when it closed with a close frame (a prefix of them when it just
 * dropped the connection, which it may do only when the stream had no close
 * and no error); the close code is the model's; the server's handlers saw
 * exactly the model's messages and the model's close code.
 */
export function checkLiveCase(
  fuzzCase: FuzzCase,
  result: LiveResult,
  side: ServerSide | undefined,
): string[] {
  const model = modelDecode(fuzzCase.bytes, {
    maxPayload: fuzzCase.maxPayload,
    expectMasked: true,
  });
  const want = expectedReplies(model.events);
  const violations = [...result.violations];
  if (result.ending === "deadline") {
    violations.push("the server neither closed nor answered: a hang");
  }
  // Pongs are checked on their own: the server answers only the latest of
  // the pings waiting for a pong (RFC 6455 §5.5.3) and sends it ahead of
  // queued data, so they are a subsequence of the model's, in order, ending
  // with the last ping's when the server closed after answering everything.
  const isPong = (key: string) => key.startsWith("pong ");
  const got = result.replies.filter((key) => !isPong(key));
  const wanted = want.replies.filter((key) => !isPong(key));
  if (want.closes) {
    if (got.length !== wanted.length || got.some((key, i) => key !== wanted[i])) {
      violations.push(
        `replies ${JSON.stringify(result.replies)} are not the model's ${
          JSON.stringify(want.replies)
        }`,
      );
    }
  } else if (
    result.closeCode !== null || got.length > wanted.length ||
    got.some((key, i) => key !== wanted[i])
  ) {
    violations.push(
      `replies ${JSON.stringify(result.replies)} are not a prefix of the model's ${
        JSON.stringify(want.replies)
      }`,
    );
  }
  const gotPongs = result.replies.filter(isPong);
  const wantedPongs = want.replies.filter(isPong);
  let next = 0;
  for (const pong of gotPongs) {
    while (next < wantedPongs.length && wantedPongs[next] !== pong) next++;
    if (next++ >= wantedPongs.length) {
      violations.push(
        `pongs ${JSON.stringify(gotPongs)} are not in order among the model's ${
          JSON.stringify(wantedPongs)
        }`,
      );
      break;
    }
  }
  if (want.closes && wantedPongs.length > 0 && gotPongs.at(-1) !== wantedPongs.at(-1)) {
    violations.push(`the last ping was not answered: pongs ${JSON.stringify(gotPongs)}`);
  }
  const messages = model.events.filter((event) => event.type === "text" || event.type === "binary")
    .map(eventKey);
  if (side === undefined) {
    violations.push("the server's handlers never saw this connection");
  } else {
    if (side.messages.join("\n") !== messages.join("\n")) {
      violations.push(
        `the message handler got ${JSON.stringify(side.messages)}, the model says ${
          JSON.stringify(messages)
        }`,
      );
    }
    if (side.closeCode !== want.serverCode) {
      violations.push(`the close handler got ${side.closeCode}, the model says ${want.serverCode}`);
    }
  }
  return violations;
}

/** A live case that broke a rule. */
export interface LiveFailure {
  /** Its index in the run (its seed is `caseSeed(seed, index)`). */
  index: number;
  /** The case. */
  fuzzCase: FuzzCase;
  /** What went wrong. */
  violations: string[];
}

/**
 * Generates live cases `first` … `first + count - 1` of `seed`, sends them
 * concurrently (one connection each) and checks every one. Resolves with the
 * results (for statistics) and the failures.
 */
export async function runLiveBatch(
  fuzz: FuzzServer,
  seed: number,
  first: number,
  count: number,
): Promise<{ results: LiveResult[]; failures: LiveFailure[] }> {
  const options = liveFuzz(fuzz.maxPayload);
  const cases = Array.from(
    { length: count },
    (_, i) => generateCase(caseSeed(seed, first + i), options),
  );
  const results = await Promise.all(cases.map((fuzzCase) => runLiveCase(fuzz.port, fuzzCase)));
  const failures: LiveFailure[] = [];
  results.forEach((result, i) => {
    const violations = checkLiveCase(cases[i], result, fuzz.peers.get(result.path));
    if (violations.length > 0) failures.push({ index: first + i, fuzzCase: cases[i], violations });
  });
  return { results, failures };
}

/** Re-runs one live case on `fuzz` and checks it: the predicate for shrinking a live failure. */
export async function liveCaseFails(fuzz: FuzzServer, fuzzCase: FuzzCase): Promise<boolean> {
  const result = await runLiveCase(fuzz.port, fuzzCase);
  return checkLiveCase(fuzzCase, result, fuzz.peers.get(result.path)).length > 0;
}

/**
 * Sends a text and a binary message (each under 1 600 bytes, so within the
 * fuzz server's limit) on a healthy standard client and returns what is
 * wrong with the echoes (empty when both came back exactly).
 */
export async function healthyRoundTrip(client: TestClient, tag: number): Promise<string[]> {
  const text = `healthy ${tag} ✓ ${"x".repeat(tag % 15 * 100)}`;
  const binary = Uint8Array.from({ length: 300 + tag % 1000 }, (_, i) => (i * 7 + tag) & 0xff);
  client.ws.send(text);
  client.ws.send(binary);
  const problems: string[] = [];
  try {
    const first = await client.next();
    if (first !== text) problems.push(`healthy text echo ${JSON.stringify(first).slice(0, 80)}`);
    const second = await client.next();
    if (
      !(second instanceof Uint8Array) || second.length !== binary.length ||
      second.some((byte, i) => byte !== binary[i])
    ) problems.push("healthy binary echo differs");
  } catch (error) {
    problems.push(`healthy client: ${String(error)}`);
  }
  return problems;
}
