/**
 * The event side of a socket: `message`/`close`/`error` events, async
 * iteration and the `closed` promise. A socket creates it only when the
 * application first asks for one of these, so a connection served by plain
 * handlers carries none of this state (idle memory) and its message path
 * tests one field for null.
 *
 * @module
 */

import type { CloseInfo } from "./socket.ts";

/** What the events need of their socket: the standard dispatch and `binaryType`. */
export interface EventSocket {
  dispatchEvent(event: Event): boolean;
  binaryType: "uint8array" | "arraybuffer";
}

interface IteratorState {
  queue: (string | Uint8Array)[];
  waiting: ((result: IteratorResult<string | Uint8Array>) => void) | null;
  done: boolean;
}

/** Delivers one connection's events to listeners, iterators and the `closed` promise. */
export class SocketEvents {
  /** Some listener was added: dispatch Event objects (only then are they allocated). */
  listening = false;
  #socket: EventSocket;
  #iterator: IteratorState | null = null;
  #resolveClosed: ((info: CloseInfo) => void) | null = null;

  constructor(socket: EventSocket) {
    this.#socket = socket;
  }

  /** A promise for the close, resolved by {@linkcode SocketEvents.close}. */
  closed(): Promise<CloseInfo> {
    return new Promise((resolve) => this.#resolveClosed = resolve);
  }

  /** An async iterator over messages from now on (ended at once when `closed`). */
  iterate(closed: boolean): AsyncIterableIterator<string | Uint8Array> {
    const state = this.#iterator ??= { queue: [], waiting: null, done: closed };
    const iterator: AsyncIterableIterator<string | Uint8Array> = {
      next: () => {
        if (state.queue.length > 0) {
          return Promise.resolve({ value: state.queue.shift()!, done: false });
        }
        if (state.done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => state.waiting = resolve);
      },
      return: () => {
        state.done = true;
        state.queue = [];
        this.#iterator = null;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** A message arrived (after the `message` handler). */
  message(data: string | Uint8Array): void {
    const iterator = this.#iterator;
    if (iterator !== null && !iterator.done) {
      if (iterator.waiting !== null) {
        const resolve = iterator.waiting;
        iterator.waiting = null;
        resolve({ value: data, done: false });
      } else {
        iterator.queue.push(data);
      }
    }
    if (this.listening) {
      const socket = this.#socket;
      const value = typeof data !== "string" && socket.binaryType === "arraybuffer"
        ? (data.buffer as ArrayBuffer).slice(data.byteOffset, data.byteOffset + data.byteLength)
        : data;
      socket.dispatchEvent(new MessageEvent("message", { data: value }));
    }
  }

  /** The connection closed (after the `close` handler). */
  close(info: CloseInfo): void {
    const iterator = this.#iterator;
    if (iterator !== null) {
      iterator.done = true;
      if (iterator.waiting !== null) {
        const resolve = iterator.waiting;
        iterator.waiting = null;
        resolve({ value: undefined, done: true });
      }
    }
    if (this.#resolveClosed !== null) this.#resolveClosed(info);
    if (this.listening) this.#socket.dispatchEvent(new CloseEvent("close", info));
  }

  /** A handler or listener failed; the socket is closing with 1011. */
  error(error: unknown): void {
    if (this.listening) {
      this.#socket.dispatchEvent(new ErrorEvent("error", { error, message: String(error) }));
    }
  }
}
