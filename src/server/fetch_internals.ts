/**
 * Plain-HTTP requests and simple responses made and read the way
 * `Deno.serve` makes and reads its own: through the private slots of the
 * runtime's `Request` and `Response`, on the runtime versions this was
 * checked against, and only after a self-check at first use has found every
 * slot behaving as expected; anywhere else the server takes the public path
 * (`new Request`, `response.headers`, `response.body`) as before.
 *
 * Why (bench/RESULTS.md, "Stop 20: the request path through the runtime's
 * own slots"): on Deno 2.9 those two public paths were most of what made a
 * small keep-alive response cost twice `Deno.serve`'s CPU.
 * - `new Request(url)` builds its inner request as an object literal with
 *   accessors, which V8 keeps in dictionary mode: ~3 µs per request, and
 *   objects that made scavenges ten times slower. `Deno.serve` skips that
 *   constructor (`new Request(brand)` returns at once) and puts a small
 *   class instance in the private slot; {@linkcode fastRequest} does the
 *   same, with headers made only if the handler reads them.
 * - `response.body` makes a ReadableStream, its controller, a reader and
 *   their promises (~3 KB, and WeakMap entries the scavenger must visit)
 *   for a string body. A response made as `new Response(text | bytes, {
 *   headers: { "content-type": … } })` with status 200 carries its body
 *   and content type in "serve fast" slots, which `Deno.serve` reads
 *   instead; {@linkcode takeStaticResponse} reads the same slots, under the
 *   same rules (a body already read is refused), for a plain `Response`
 *   whose body stream was never asked for (a subclass's getters, or a
 *   stream the handler holds, are the public path's to read).
 *
 * What stays public: requests with a body or another method, every other
 * response, and every runtime version not listed in TESTED_VERSIONS (a
 * newer Deno takes the public path until it is checked and listed). The
 * server option `runtimeInternals: false` turns this off.
 *
 * @module
 */

import { headOf, isRejection, scanRequestHead } from "../protocol/handshake.ts";

/** Deno versions whose fetch internals were read and tested (ext/fetch, 2.9.x). */
const TESTED_VERSIONS = /^2\.9\./;

/** A request head's fields, lower-case names (as the head parser gives them). */
export type RequestFields = readonly (readonly [string, string])[];

/**
 * The inner request a fast `Request` reads from its private slot: the
 * fields and methods Deno's `Request` and its helpers (clone, `new
 * Request(request)`, `fetch(request)`) use, as plain class members, so V8
 * keeps the object fast. Names follow Deno's `newInnerRequest`
 * (ext/fetch/23_request.js).
 */
export class FastRequestState {
  methodInner: string;
  headerListInner: [string, string][] | null = null;
  body: null = null;
  redirectMode = "follow";
  redirectCount = 0;
  urlListInner: (() => string)[] | null = null;
  urlListProcessed: string[];
  clientRid: null = null;
  blobUrlEntry: null = null;
  #fields: RequestFields | string;
  #onLeft: (() => void)[] | null = null;
  #left = false;

  /**
   * `fields`: the head's fields, or the head's text (as
   * {@linkcode scanRequestHead} accepted it), from which they are read only
   * if the handler asks for the headers: the usual request is answered
   * without a string per field (see usualRequestOf).
   */
  constructor(method: string, url: string, fields: RequestFields | string) {
    this.methodInner = method;
    this.urlListProcessed = [url];
    this.#fields = fields;
  }

  get method(): string {
    return this.methodInner;
  }

  set method(value: string) {
    this.methodInner = value;
  }

  /** The header list, copied from the head when first asked for (a handler may change it). */
  get headerList(): [string, string][] {
    if (this.headerListInner === null) {
      const fields = this.#fields;
      if (typeof fields === "string") {
        // The same text scans to the same fields: the head's, as headOf
        // would have given them (fresh arrays, the handler's to change).
        // The scan is shared, and used here at once.
        const scanned = scanRequestHead(fields);
        this.headerListInner = isRejection(scanned) ? [] : headOf(scanned).headers;
      } else {
        const list: [string, string][] = new Array(fields.length);
        for (let i = 0; i < fields.length; i++) list[i] = [fields[i][0], fields[i][1]];
        this.headerListInner = list;
      }
    }
    return this.headerListInner;
  }

  set headerList(value: [string, string][]) {
    this.headerListInner = value;
  }

  get urlList(): (() => string)[] {
    if (this.urlListInner === null) {
      const url = this.urlListProcessed[0];
      this.urlListInner = [() => url];
    }
    return this.urlListInner;
  }

  set urlList(value: (() => string)[]) {
    this.urlListInner = value;
  }

  url(): string {
    return this.urlListProcessed[0];
  }

  currentUrl(): string {
    return this.urlListProcessed[this.urlListProcessed.length - 1];
  }

  /**
   * Called by the runtime when the request's `signal` is first made: the
   * signal aborts when {@linkcode clientLeft} is (or was) called, as
   * `Deno.serve`'s requests do.
   */
  onCancel(callback: () => void): void {
    if (this.#left) callback();
    else (this.#onLeft ??= []).push(callback);
  }

  /** The connection ended before the response was complete: the signal aborts. */
  clientLeft(): void {
    this.#left = true;
    const callbacks = this.#onLeft;
    this.#onLeft = null;
    if (callbacks !== null) { for (const callback of callbacks) callback(); }
  }
}

/** A response Deno holds whole in its "serve fast" slots: status 200, one optional content type, a body in memory. */
export class StaticResponse {
  /** The body as the application gave it. */
  body: string | Uint8Array = "";
  /** The `Content-Type` to send, or null for none. */
  contentType: string | null = null;
}

/** Private slots, found by their descriptions. */
interface Slots {
  brand: symbol;
  request: symbol;
  headersGuard: symbol;
  response: symbol;
  status: symbol;
  body: symbol;
  headerKind: symbol;
  contentType: symbol;
  consumed: symbol;
  lazyBody: symbol;
}

// "serve fast header kind" values (ext/fetch/23_response.js).
const HEADER_NONE = 0;
const HEADER_DEFAULT_TEXT = 1;
const HEADER_CONTENT_TYPE = 2;
const DEFAULT_TEXT = "text/plain;charset=UTF-8";
const UNSAFE_VALUE = /[\r\n\0]/;

type SlotObject = Record<symbol, unknown>;

let slots: Slots | null | undefined;
let lastSafeType = "";
const shared = new StaticResponse();

/** The slots, if this runtime is a tested version, has them all, and passes the self-check. */
function available(): Slots | null {
  if (slots === undefined) {
    slots = null;
    try {
      const found = findSlots();
      if (found !== null && selfCheck(found)) slots = found;
    } catch {
      slots = null;
    }
  }
  return slots;
}

function findSlots(): Slots | null {
  if (!TESTED_VERSIONS.test(Deno.version.deno)) return null;
  const named = (object: object): Map<string, symbol> =>
    new Map(Object.getOwnPropertySymbols(object).map((s) => [s.description ?? "", s]));
  const request = named(new Request("http://localhost/"));
  const response = named(new Response("x"));
  const found = {
    brand: request.get("[[webidl.brand]]"),
    request: request.get("request"),
    headersGuard: request.get("headers guard"),
    response: response.get("response"),
    status: response.get("serve fast status"),
    body: response.get("serve fast body"),
    headerKind: response.get("serve fast header kind"),
    contentType: response.get("serve fast content type"),
    consumed: response.get("serve fast consumed"),
    lazyBody: response.get("lazy static body"),
  };
  for (const value of Object.values(found)) if (value === undefined) return null;
  return found as Slots;
}

/**
 * Whether a request made through the slots behaves as a public one in
 * everything a handler can see, and the response slots hold what they
 * should: any difference, and the public path is used.
 */
function selfCheck(s: Slots): boolean {
  const url = "http://localhost:8080/a?b=1";
  const fields: RequestFields = [["host", "localhost:8080"], ["x-a", "1"], ["x-a", "2"]];
  const state = new FastRequestState("GET", url, fields);
  const fast = make(s, state);
  const plain = new Request(url);
  for (const [name, value] of fields) plain.headers.append(name, value);
  const same = (a: Request, b: Request) =>
    a instanceof Request && a.url === b.url && a.method === b.method &&
    a.headers.get("x-a") === b.headers.get("x-a") &&
    JSON.stringify([...a.headers]) === JSON.stringify([...b.headers]) &&
    a.body === null && a.bodyUsed === false && a.redirect === b.redirect;
  if (!same(fast, plain) || !same(fast.clone(), plain) || !same(new Request(fast), plain)) {
    return false;
  }
  // Headers are the request's own copy: changing them leaves the head alone.
  fast.headers.set("x-a", "3");
  if (fields[1][1] !== "1" || fast.headers.get("x-a") !== "3") return false;
  const signal = fast.signal;
  if (signal.aborted) return false;
  state.clientLeft();
  if (!signal.aborted || !(signal.reason instanceof DOMException)) return false;

  const json = "application/json";
  const text = new Response("hé", { headers: { "content-type": json } });
  const taken = takeWith(s, text);
  if (taken === null || taken === "used" || taken.body !== "hé" || taken.contentType !== json) {
    return false;
  }
  if (takeWith(s, text) !== "used") return false;
  const defaults = takeWith(s, new Response("x"));
  if (defaults === null || defaults === "used" || defaults.contentType !== DEFAULT_TEXT) {
    return false;
  }
  const bytes = takeWith(s, new Response(new Uint8Array([1, 2])));
  if (
    bytes === null || bytes === "used" || !(bytes.body instanceof Uint8Array) ||
    bytes.body.length !== 2 || bytes.contentType !== null
  ) return false;
  if (takeWith(s, new Response("x", { status: 201 })) !== null) return false;
  const touched = new Response("x");
  touched.headers.set("x-b", "1");
  if (takeWith(s, touched) !== null) return false;
  const stream = new Response(new ReadableStream());
  if (takeWith(s, stream) !== null) return false;
  // Its stream asked for: the public path reads it.
  const asked = new Response(new Uint8Array([1]));
  void asked.body;
  if (takeWith(s, asked) !== null) return false;
  return true;
}

function make(s: Slots, state: FastRequestState): Request {
  // The constructor returns at once for its own brand (what the runtime's
  // fromInnerRequest and Deno.serve use); the slot is then filled.
  const request = new Request(s.brand as unknown as string) as unknown as SlotObject;
  request[s.request] = state;
  request[s.headersGuard] = "request";
  return request as unknown as Request;
}

function takeWith(s: Slots, response: Response): StaticResponse | "used" | null {
  // The runtime's own class only: a subclass may answer through getters of
  // its own (status, headers, body), which the public path reads and the
  // slots know nothing of.
  if (Object.getPrototypeOf(response) !== Response.prototype) return null;
  const r = response as unknown as SlotObject;
  if (r[s.consumed] === true) return "used";
  if (r[s.status] !== 200) return null;
  const body = r[s.body];
  if (typeof body !== "string" && !(body instanceof Uint8Array)) return null;
  if (r[s.lazyBody] === null || r[s.lazyBody] === undefined) {
    // The body was made into its inner form: it must still be held as it
    // was given ({ body, consumed }) and unread. Once `.body` has been asked
    // for, it is a stream the handler has too, and may have locked (a
    // reader, tee, pipeTo), partly read or kept for later: the public path
    // reads that stream, or refuses it, as it would without the slots.
    const inner = (r[s.response] as { body?: { streamOrStatic?: unknown } | null } | undefined)
      ?.body;
    if (inner !== null && inner !== undefined) {
      const held = inner.streamOrStatic as { consumed?: unknown } | null | undefined;
      if (typeof held !== "object" || held === null || held.consumed !== false) return null;
    }
  }
  let contentType: string | null;
  switch (r[s.headerKind]) {
    case HEADER_NONE:
      contentType = null;
      break;
    case HEADER_DEFAULT_TEXT:
      contentType = DEFAULT_TEXT;
      break;
    case HEADER_CONTENT_TYPE: {
      const value = r[s.contentType];
      // The runtime puts only values Headers would accept here; checked
      // anyway, as the value goes into the head as it is. An application
      // answers with one or two types: the last one found safe is not
      // searched again (a comparison, not a regular expression, per response).
      if (typeof value !== "string") return null;
      if (value !== lastSafeType) {
        if (UNSAFE_VALUE.test(value)) return null;
        lastSafeType = value;
      }
      contentType = value;
      break;
    }
    default:
      return null;
  }
  r[s.consumed] = true;
  shared.body = body;
  shared.contentType = contentType;
  return shared;
}

/** Whether this runtime's slots are usable (a tested version that passed the self-check). */
export function fetchInternalsAvailable(): boolean {
  return available() !== null;
}

/**
 * A `Request` for a request without a body, built as `Deno.serve` builds
 * its own (see the module notes), or null when the slots are not usable.
 * `state` is the request's inner state: the caller keeps it to abort the
 * signal ({@linkcode FastRequestState.clientLeft}).
 */
export function fastRequest(state: FastRequestState): Request | null {
  const s = available();
  return s === null ? null : make(s, state);
}

/**
 * The body and content type of a response the runtime holds whole (a
 * plain `Response`, not a subclass; status 200, at most a `Content-Type`, a
 * body in memory, headers never read, body stream never asked for),
 * marked consumed as sending it would; `"used"` when its body was already
 * read (an error, as on the public path); null for any other response, or
 * when the slots are not usable: then the public path reads it. The result
 * is shared: valid until the next call.
 */
export function takeStaticResponse(response: Response): StaticResponse | "used" | null {
  const s = available();
  return s === null ? null : takeWith(s, response);
}
