/**
 * The CLI's log line for each plain HTTP request its `fetch` handler
 * answers (static files, the chat page, health, metrics): method, path,
 * status, body bytes sent, and time taken. In text:
 *
 * ```text
 * 2024-05-06T07:08:09.123Z request 127.0.0.1:51234 GET /app.js 200 1432B 0.84ms
 * ```
 *
 * and in JSON (`--log-format json`) the fields `peer`, `method`, `path`,
 * `status`, `bytes`, `ms` and `complete`. Like the connection lines, they
 * are left out with `-q` (and then the handler is not wrapped at all).
 *
 * `bytes` counts the response body as the server takes it to write: the
 * body stream is wrapped, and a piece counts once the server comes back for
 * the next one (it writes each piece before reading on) or ends. A
 * response that is cut short (the client left, the body failed) logs the
 * bytes so far and `complete: false`. The server may read pieces that are
 * ready at once (up to 1 MiB) before it writes them, so a client that
 * leaves during that one write is not seen. HEAD and bodiless answers (304)
 * log 0 bytes. The line is written when the server settles the request's
 * `info.completed` (the response sent or abandoned), so `ms` runs from the
 * request reaching the handler to the last write. Requests the server
 * answers itself (malformed ones, upgrades, bodies over the limit, a
 * handler that throws) are not logged here: upgrades have their own lines,
 * and a throwing handler gives an error line.
 *
 * @module
 */

import { formatAddr, type Logger } from "./logger.ts";
import type { RequestInfo } from "../server/options.ts";

/** A `fetch` handler as the server calls it. */
export type FetchHandler = (request: Request, info: RequestInfo) => Response | Promise<Response>;

/** What one request's log line says. */
export interface RequestRecord {
  /** The client's `host:port`. */
  peer: string;
  /** The request method. */
  method: string;
  /** The request path, without the query. */
  path: string;
  /** The response status. */
  status: number;
  /** Body bytes sent (see the module notes). */
  bytes: number;
  /** Milliseconds from the request reaching the handler to the response's last write. */
  ms: number;
  /** False when the body was cut short. */
  complete: boolean;
}

/**
 * The text form of a request line (without the time).
 *
 * @example
 * ```ts
 * import { formatRequest } from "./request_log.ts";
 * const line = formatRequest({
 *   peer: "127.0.0.1:51234", method: "GET", path: "/app.js",
 *   status: 200, bytes: 1432, ms: 0.84, complete: true,
 * });
 * console.log(line); // request 127.0.0.1:51234 GET /app.js 200 1432B 0.84ms
 * ```
 */
export function formatRequest(record: RequestRecord): string {
  const { peer, method, path, status, bytes, ms, complete } = record;
  return `request ${peer} ${method} ${path} ${status} ${bytes}B ${ms}ms` +
    (complete ? "" : " (incomplete)");
}

/**
 * Wraps `fetch` so that each request it answers gets one log line through
 * `logger` once its body has been sent. Returns `fetch` itself when the
 * logger is quiet (or there is no handler).
 *
 * @param clock milliseconds, for tests; defaults to `performance.now()`.
 *
 * @example
 * ```ts
 * import { Logger } from "./logger.ts";
 * import { logRequests } from "./request_log.ts";
 * const lines: string[] = [];
 * const logger = new Logger({ format: "json", quiet: false, out: (l) => lines.push(l), err: console.error });
 * const fetch = logRequests(() => new Response("hello"), logger)!;
 * const info = { remoteAddr: { transport: "tcp" as const, hostname: "127.0.0.1", port: 5000 } };
 * const response = await fetch(new Request("http://localhost/hi"), info as never);
 * await response.text();
 * const { method, path, status, bytes } = JSON.parse(lines[0]);
 * console.log(method, path, status, bytes); // GET /hi 200 5
 * ```
 */
export function logRequests(
  fetch: FetchHandler | undefined,
  logger: Logger,
  clock: () => number = () => performance.now(),
): FetchHandler | undefined {
  if (fetch === undefined || logger.quiet) return fetch;
  return async (request, info) => {
    const started = clock();
    const response = await fetch(request, info);
    const head = request.method === "HEAD";
    let logged = false;
    const log = (bytes: number, complete: boolean) => {
      if (logged) return;
      logged = true;
      const record: RequestRecord = {
        peer: formatAddr(info.remoteAddr),
        method: request.method,
        path: new URL(request.url).pathname,
        status: response.status,
        bytes: head ? 0 : bytes,
        ms: Math.round((clock() - started) * 100) / 100,
        complete: head || complete,
      };
      logger.connection("request", formatRequest(record), { ...record });
    };
    // The server settles `completed` once the response is sent or
    // abandoned: the line is written then, with what the body counted.
    // Without it (a caller other than the server), when the body ends.
    const completed = (info as Partial<RequestInfo>).completed;
    if (response.body === null) {
      if (completed === undefined) log(0, true);
      else completed.then(() => log(0, true));
      return response;
    }
    const counted = new CountedBody(
      response.body,
      completed === undefined ? (bytes, complete) => log(bytes, complete) : () => {},
    );
    completed?.then(() => log(counted.bytes, counted.done));
    return new Response(counted.stream, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}

/**
 * A response body as a stream that is read only when its reader asks (no
 * read ahead), counting the bytes the reader has taken: a piece counts once
 * the reader asks for the next one (the server writes each piece before it
 * reads on) or the body ends. `onEnd(bytes, complete)` is called once: at
 * its end, when it fails, or when it is cancelled.
 */
class CountedBody {
  /** The stream to give the server in place of the body. */
  readonly stream: ReadableStream<Uint8Array>;
  /** Bytes taken so far. */
  bytes = 0;
  /** Whether the body was read to its end. */
  done = false;

  constructor(body: ReadableStream<Uint8Array>, onEnd: (bytes: number, complete: boolean) => void) {
    const reader = body.getReader();
    let taken = 0;
    let ended = false;
    const end = (complete: boolean) => {
      if (!ended) {
        ended = true;
        this.done = complete;
        onEnd(this.bytes, complete);
      }
    };
    this.stream = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        this.bytes += taken;
        taken = 0;
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (error) {
          end(false);
          throw error;
        }
        if (result.done) {
          end(true);
          controller.close();
          return;
        }
        taken = result.value?.byteLength ?? 0;
        controller.enqueue(result.value);
      },
      cancel: (reason) => {
        end(false);
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }
}
