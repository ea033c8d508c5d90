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
 * body stream is wrapped, and a piece counts once the server comes back
 * for the next one (it writes each piece before reading on) or ends. A
 * response that is cut short (the client left, the body failed) logs the
 * bytes so far and `complete: false`. The server may read pieces that are
 * ready at once (up to 1 MiB) before it writes them, so a client that
 * leaves during that one write is not seen. HEAD and bodiless answers (304)
 * log 0 bytes. `ms` runs from the request reaching the handler to the
 * body's end; for an answer without a body, to the handler's return.
 * Requests the server answers itself (malformed ones, upgrades, bodies
 * over the limit, a handler that throws) are not logged here: upgrades
 * have their own lines, and a throwing handler gives an error line.
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
  /** Milliseconds from the request reaching the handler to the end of the response body. */
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
    const log = (bytes: number, complete: boolean) => {
      const record: RequestRecord = {
        peer: formatAddr(info.remoteAddr),
        method: request.method,
        path: new URL(request.url).pathname,
        status: response.status,
        bytes: request.method === "HEAD" ? 0 : bytes,
        ms: Math.round((clock() - started) * 100) / 100,
        complete,
      };
      logger.connection("request", formatRequest(record), { ...record });
    };
    if (response.body === null) {
      log(0, true);
      return response;
    }
    return new Response(countedBody(response.body, request.method === "HEAD", log), {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}

/**
 * `body` as a stream that is read only when its reader asks (no read
 * ahead), calling `done(bytes, complete)` once: at its end, when it fails,
 * or when it is cancelled. A piece counts once the reader asks for the
 * next one. For HEAD the server cancels the body unsent: that is complete.
 */
function countedBody(
  body: ReadableStream<Uint8Array>,
  head: boolean,
  done: (bytes: number, complete: boolean) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  let taken = 0;
  let finished = false;
  const finish = (complete: boolean) => {
    if (!finished) {
      finished = true;
      done(bytes, complete);
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      bytes += taken;
      taken = 0;
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        finish(false);
        throw error;
      }
      if (result.done) {
        finish(true);
        controller.close();
        return;
      }
      taken = result.value?.byteLength ?? 0;
      controller.enqueue(result.value);
    },
    cancel(reason) {
      finish(head);
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
