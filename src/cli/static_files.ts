/**
 * Safe static file serving for `tsunagu serve --static DIR`.
 *
 * A request path is split on `/` and each segment percent-decoded on its own,
 * so an encoded `..` (`%2e%2e`) or an encoded separator (`%2f`, `%5c`) can
 * never climb out of the root: such segments get 403. Dotfiles (`.env`,
 * `.git/…`) are not served (404). After that the path is resolved with
 * `realPath`, so a symbolic link that leads out of the root gets 403 too.
 * Only regular files are read (no devices or FIFOs); a directory is served
 * through its `index.html`, and there are no directory listings.
 *
 * Files carry a strong `ETag` (size and modification time) and
 * `Last-Modified`, so `If-None-Match` / `If-Modified-Since` get 304, and
 * `Accept-Ranges: bytes`: a single `Range` gets 206 with only those bytes,
 * read from the file at their offset, an unsatisfiable one 416, and
 * `If-Range` naming an older version the whole file (rules in
 * `conditional.ts`). Small files that have not changed for a while are
 * kept in memory (see {@linkcode FileCache}); larger ones are streamed,
 * never read whole.
 *
 * @module
 */

import { join, sep } from "node:path";
import { decide, type FileAnswer, fileValidators, type Validators } from "./conditional.ts";

const TEXT = "charset=utf-8";

/** Content types by lower-case file extension. */
const CONTENT_TYPES: Record<string, string> = {
  html: `text/html; ${TEXT}`,
  htm: `text/html; ${TEXT}`,
  css: `text/css; ${TEXT}`,
  js: `text/javascript; ${TEXT}`,
  mjs: `text/javascript; ${TEXT}`,
  json: `application/json; ${TEXT}`,
  map: `application/json; ${TEXT}`,
  webmanifest: `application/manifest+json; ${TEXT}`,
  txt: `text/plain; ${TEXT}`,
  md: `text/markdown; ${TEXT}`,
  csv: `text/csv; ${TEXT}`,
  xml: `application/xml; ${TEXT}`,
  svg: "image/svg+xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  avif: "image/avif",
  ico: "image/x-icon",
  wasm: "application/wasm",
  pdf: "application/pdf",
  zip: "application/zip",
  gz: "application/gzip",
  woff: "font/woff",
  woff2: "font/woff2",
  ttf: "font/ttf",
  otf: "font/otf",
  mp3: "audio/mpeg",
  ogg: "audio/ogg",
  wav: "audio/wav",
  mp4: "video/mp4",
  webm: "video/webm",
};

/**
 * The `Content-Type` for a file name, by its extension;
 * `application/octet-stream` when unknown.
 *
 * @example
 * ```ts
 * import { contentType } from "./static_files.ts";
 * console.log(contentType("app.js")); // text/javascript; charset=utf-8
 * console.log(contentType("data.bin")); // application/octet-stream
 * ```
 */
export function contentType(name: string): string {
  const dot = name.lastIndexOf(".");
  if (dot < 0) return "application/octet-stream";
  return CONTENT_TYPES[name.slice(dot + 1).toLowerCase()] ?? "application/octet-stream";
}

function plain(status: number, message: string, headers: HeadersInit = {}): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": `text/plain; ${TEXT}`, ...headers },
  });
}

const notFound = () => plain(404, "not found");
const forbidden = () => plain(403, "forbidden");

/** Maps a file-system error to a response: 403 for permissions, 404 otherwise. */
function fromError(error: unknown): Response {
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return forbidden();
  }
  return notFound();
}

/** A request path split into decoded segments, or the response refusing it. */
function decodeSegments(pathname: string): string[] | Response {
  const segments: string[] = [];
  for (const raw of pathname.split("/")) {
    if (raw === "") continue;
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return plain(400, "bad request path");
    }
    if (
      segment === "." || segment === ".." || /[/\\\0]/.test(segment) ||
      (Deno.build.os === "windows" && segment.includes(":"))
    ) {
      return forbidden();
    }
    if (segment.startsWith(".")) return notFound();
    segments.push(segment);
  }
  return segments;
}

/** The headers of a 200 for a file: type, length, validators, `Accept-Ranges`. */
function fileHeaders(
  type: string,
  size: number,
  validators: Validators | null,
): Record<string, string> {
  return {
    "content-type": type,
    "content-length": String(size),
    "accept-ranges": "bytes",
    "x-content-type-options": "nosniff",
    ...validatorHeaders(validators),
  };
}

function validatorHeaders(validators: Validators | null): Record<string, string> {
  return validators === null
    ? {}
    : { etag: validators.etag, "last-modified": validators.lastModified };
}

/** The response for an answer without the file's bytes (304, 412, 416), else null. */
function answerWithoutBody(
  answer: FileAnswer,
  size: number,
  validators: Validators | null,
): Response | null {
  switch (answer.status) {
    case 304:
      // The validators, no body and no length (RFC 9110 §15.4.5).
      return new Response(null, { status: 304, headers: validatorHeaders(validators) });
    case 412:
      return plain(412, "precondition failed");
    case 416:
      return plain(416, "range not satisfiable", {
        "content-range": `bytes */${size}`,
        "accept-ranges": "bytes",
      });
    default:
      return null;
  }
}

/** Bytes read from a file at a time; at most one such read is ahead of the response writer. */
const READ_CHUNK = 64 * 1024;

/** Closes `file`, ignoring a second close. */
function closeQuietly(file: Deno.FsFile): void {
  try {
    file.close();
  } catch {
    // Already closed.
  }
}

/**
 * A stream of the next `length` bytes of `file` from its current position.
 * The first piece (up to 64 KiB) is read before this resolves, so a small
 * file's whole body is ready when the server writes the head: one write for
 * both, with its Content-Length. After that, reads go on demand, one read
 * ahead of what the response writer has taken, so a client that stops
 * reading holds back the reads. The file is closed when the bytes are all
 * read, on an error, or when the stream is cancelled (the client left). A
 * file that ends early (truncated meanwhile) errors the stream, so the
 * response is cut short rather than padded.
 */
async function fileBody(file: Deno.FsFile, length: number): Promise<ReadableStream<Uint8Array>> {
  let left = length;
  let open = true;
  // Closed once: a second close would throw (and cost an exception each time).
  const close = () => {
    if (open) {
      open = false;
      closeQuietly(file);
    }
  };
  const read = async (): Promise<Uint8Array> => {
    const chunk = new Uint8Array(Math.min(left, READ_CHUNK));
    let got: number | null;
    try {
      got = await file.read(chunk);
    } catch (error) {
      close();
      throw error;
    }
    if (got === null) {
      close();
      throw new Error("the file ended before its length");
    }
    left -= got;
    if (left === 0) close();
    return got === chunk.length ? chunk : chunk.subarray(0, got);
  };
  const first = left > 0 ? await read() : null;
  if (left === 0) close();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (first !== null) controller.enqueue(first);
      if (left === 0) controller.close();
    },
    async pull(controller) {
      controller.enqueue(await read());
      if (left === 0) controller.close();
    },
    cancel: close,
  }, { highWaterMark: 1 });
}

/** Files up to this size are kept in memory once read whole. */
const CACHE_FILE_BYTES = 128 * 1024;

/** The cache's default budget, in bytes of file content. */
const DEFAULT_STATIC_CACHE_BYTES = 16 * 1024 * 1024;

/**
 * A file changed less than this long ago is read for each request and not
 * cached. Stamps are coarse (Deno gives ctime in whole seconds, and the
 * kernel's clock ticks in milliseconds), so a write of the same size right
 * after a read could keep size, mtime and ctime; a file whose mtime and
 * ctime are this old gets a later ctime on any change, even one that sets
 * mtime back.
 */
const SETTLED_MS = 2_000;

/** A file's bytes with the identity and stamps they were read under. */
interface CachedFile {
  dev: number;
  ino: number;
  size: number;
  mtime: number;
  ctime: number | null;
  bytes: Uint8Array<ArrayBuffer>;
  validators: Validators | null;
}

/** The identity and stamps of a file as `stat` gives them, or null when it cannot be cached. */
function identity(info: Deno.FileInfo): Omit<CachedFile, "bytes" | "validators"> | null {
  // Without an inode number (Windows) a replaced file could not be told from
  // the cached one, and without mtime nor from an edited one.
  if (info.ino === null || info.mtime === null) return null;
  return {
    dev: info.dev,
    ino: info.ino,
    size: info.size,
    mtime: info.mtime.getTime(),
    ctime: info.ctime?.getTime() ?? null,
  };
}

/**
 * The contents of small static files, so a hit answers from memory instead
 * of opening, reading and closing the file: on a 64 KiB file that is the
 * larger part of a request's cost (the open and read ops, and a fresh zeroed
 * array per request). A hit is still checked against the file every time:
 * the path is resolved and `stat`ed as for any request, and the entry is
 * used only if device, inode, size, mtime and ctime are all unchanged, so a
 * replaced, edited, touched or re-permissioned file is read again at once.
 * Only files that have been still for two seconds are cached, and
 * only when a second `stat` after the read shows the file unchanged while it
 * was read. Entries live under a byte budget and the least recently used
 * go first.
 */
class FileCache {
  readonly #entries = new Map<string, CachedFile>();
  readonly #budget: number;
  #bytes = 0;

  constructor(budget: number) {
    this.#budget = budget;
  }

  /** Whether a file with this `stat` may be read whole and kept. */
  wants(info: Deno.FileInfo, now: number): boolean {
    return this.#budget > 0 && info.isFile && info.size <= CACHE_FILE_BYTES &&
      info.size <= this.#budget && identity(info) !== null &&
      now - info.mtime!.getTime() >= SETTLED_MS &&
      (info.ctime === null || now - info.ctime.getTime() >= SETTLED_MS);
  }

  /** The entry for `path` if `info` shows the same file, unchanged. */
  get(path: string, info: Deno.FileInfo): CachedFile | undefined {
    const entry = this.#entries.get(path);
    if (entry === undefined) return undefined;
    const now = identity(info);
    if (
      now === null || now.dev !== entry.dev || now.ino !== entry.ino ||
      now.size !== entry.size || now.mtime !== entry.mtime || now.ctime !== entry.ctime
    ) {
      this.#remove(path, entry);
      return undefined;
    }
    // Most recently used last: Map keeps insertion order.
    this.#entries.delete(path);
    this.#entries.set(path, entry);
    return entry;
  }

  /** Keeps `bytes`, read from `path` while `before` and `after` were its `stat`. */
  put(
    path: string,
    before: Deno.FileInfo,
    after: Deno.FileInfo,
    bytes: Uint8Array<ArrayBuffer>,
  ): void {
    const was = identity(before);
    const is = identity(after);
    if (
      was === null || is === null || was.dev !== is.dev || was.ino !== is.ino ||
      was.size !== is.size || was.mtime !== is.mtime || was.ctime !== is.ctime ||
      bytes.length !== was.size
    ) {
      return;
    }
    const old = this.#entries.get(path);
    if (old !== undefined) this.#remove(path, old);
    for (const [oldest, entry] of this.#entries) {
      if (this.#bytes + bytes.length <= this.#budget) break;
      this.#remove(oldest, entry);
    }
    this.#entries.set(path, {
      ...was,
      bytes,
      validators: fileValidators(was.size, before.mtime),
    });
    this.#bytes += bytes.length;
  }

  #remove(path: string, entry: CachedFile): void {
    this.#entries.delete(path);
    this.#bytes -= entry.bytes.length;
  }
}

/** Reads the rest of `file` into one array of exactly `size` bytes, or null if it ends early. */
async function readWhole(
  file: Deno.FsFile,
  size: number,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const bytes = new Uint8Array(size);
  let filled = 0;
  while (filled < size) {
    const got = await file.read(bytes.subarray(filled));
    if (got === null) return null;
    filled += got;
  }
  return bytes;
}

/**
 * A body of bytes held in memory, handed out as they are. Not
 * `new Response(bytes)`: that copies them into a fresh ArrayBuffer per
 * response, and on a 64 KiB file the allocation and the garbage collection
 * it brings cost more than everything else the cache saves (server CPU per
 * request 153–177 µs against 73–106 µs this way). The price is that the
 * reader gets the kept array itself: the server only writes it out, and the
 * request log only counts it, so nothing in the path changes it; a reader
 * that consumes the body with `arrayBuffer()`, `bytes()` or `text()` gets a
 * copy as always.
 */
function keptBody(bytes: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (bytes.length > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
}

/** The response for a GET of a file held in memory: 200, or 206 with the range's bytes. */
function answerFromMemory(
  request: Request,
  type: string,
  bytes: Uint8Array<ArrayBuffer>,
  validators: Validators | null,
): Response {
  const size = bytes.length;
  const answer = decide("GET", request.headers, size, validators);
  const bodiless = answerWithoutBody(answer, size, validators);
  if (bodiless !== null) return bodiless;
  const headers = fileHeaders(type, size, validators);
  if (answer.status !== 206) return new Response(keptBody(bytes), { headers });
  const { start, end } = answer.range;
  headers["content-length"] = String(end - start + 1);
  headers["content-range"] = `bytes ${start}-${end}/${size}`;
  return new Response(keptBody(bytes.subarray(start, end + 1)), { status: 206, headers });
}

/**
 * Options of {@linkcode createStaticHandler}.
 *
 * @example
 * ```ts ignore
 * import { createStaticHandler } from "./static_files.ts";
 * // Up to 64 MiB of small files in memory; { cacheBytes: 0 } reads every time.
 * const files = await createStaticHandler("./public", { cacheBytes: 64 * 1024 * 1024 });
 * ```
 */
export interface StaticOptions {
  /**
   * Bytes of file content kept in memory (files up to 128 KiB each that
   * have not changed for two seconds); 0 turns the cache off. Default 16 MiB.
   */
  cacheBytes?: number;
}

/**
 * Serves the files under one directory. Create it with
 * {@linkcode createStaticHandler}, which checks the directory first.
 */
export type StaticHandler = (request: Request) => Promise<Response>;

/**
 * Checks that `root` is a readable directory and returns a handler serving
 * the files under it to GET and HEAD requests (405 otherwise).
 *
 * @throws {Deno.errors.NotFound} when `root` does not exist.
 * @throws {Deno.errors.NotADirectory} when `root` is not a directory.
 * @throws {Deno.errors.NotCapable} without read permission for `root`.
 * @throws {RangeError} when `options.cacheBytes` is negative or not whole.
 *
 * @example
 * ```ts ignore
 * import { createStaticHandler } from "./static_files.ts";
 * const files = await createStaticHandler("../public");
 * const response = await files(new Request("http://localhost/index.html"));
 * console.log(response.status, response.headers.get("content-type"));
 * ```
 */
export async function createStaticHandler(
  root: string,
  options: StaticOptions = {},
): Promise<StaticHandler> {
  const cacheBytes = options.cacheBytes ?? DEFAULT_STATIC_CACHE_BYTES;
  if (!Number.isSafeInteger(cacheBytes) || cacheBytes < 0) {
    throw new RangeError(`cacheBytes must be a whole number of bytes >= 0, got ${cacheBytes}`);
  }
  const cache = new FileCache(cacheBytes);
  const rootReal = await Deno.realPath(root);
  if (!(await Deno.stat(rootReal)).isDirectory) {
    throw new Deno.errors.NotADirectory(`not a directory: ${root}`);
  }
  const prefix = rootReal.endsWith(sep) ? rootReal : rootReal + sep;
  const inside = (path: string) => path === rootReal || path.startsWith(prefix);

  return async (request: Request): Promise<Response> => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return plain(405, "method not allowed", { allow: "GET, HEAD" });
    }
    const url = new URL(request.url);
    const segments = decodeSegments(url.pathname);
    if (segments instanceof Response) return segments;
    try {
      // realpath and stat are synchronous, as nginx makes its file-system
      // calls in its event loop: from the kernel's caches each takes a few
      // µs, where an async call costs a hand-off to a thread and back (20-50
      // µs each measured here; the handler ran about 2x faster). The price:
      // a file system that stalls (a hung network mount) stalls the server.
      // Opening stays async: should the path become a FIFO after the check
      // below, only this request waits for a writer. The bytes are read
      // asynchronously too.
      let real = Deno.realPathSync(join(rootReal, ...segments));
      if (!inside(real)) return forbidden();
      let info = Deno.statSync(real);
      if (info.isDirectory) {
        if (!url.pathname.endsWith("/")) {
          // Relative links in the index need the trailing slash. The location
          // is rebuilt from the checked segments: never `//host` (open redirect).
          const location = `/${segments.map(encodeURIComponent).join("/")}/${url.search}`;
          return new Response(null, { status: 301, headers: { location } });
        }
        real = Deno.realPathSync(join(real, "index.html"));
        if (!inside(real)) return forbidden();
        info = Deno.statSync(real);
      }
      // Checked before opening: opening a FIFO would wait for a writer.
      if (!info.isFile) return notFound();
      const type = contentType(real);
      // HEAD: the answer GET would give, without opening the file (a Range
      // is ignored on HEAD: RFC 9110 §14.2 defines ranges for GET only).
      if (request.method === "HEAD") {
        const validators = fileValidators(info.size, info.mtime);
        const answer = decide("HEAD", request.headers, info.size, validators);
        return answerWithoutBody(answer, info.size, validators) ??
          new Response(null, { headers: fileHeaders(type, info.size, validators) });
      }
      const cached = cache.get(real, info);
      if (cached !== undefined) {
        return answerFromMemory(request, type, cached.bytes, cached.validators);
      }
      // The length and validators come from the open file, so they describe
      // what is read even if the path was replaced meanwhile.
      const file = await Deno.open(real);
      try {
        const opened = file.statSync();
        if (!opened.isFile) {
          closeQuietly(file);
          return notFound();
        }
        if (cache.wants(opened, Date.now())) {
          const bytes = await readWhole(file, opened.size);
          const after = file.statSync();
          closeQuietly(file);
          if (bytes === null) {
            return plain(503, "the file changed while it was read", { "retry-after": "1" });
          }
          cache.put(real, opened, after, bytes);
          const validators = fileValidators(opened.size, opened.mtime);
          return answerFromMemory(request, type, bytes, validators);
        }
        // Streamed, not read whole: a large file costs a read buffer, not its size.
        const validators = fileValidators(opened.size, opened.mtime);
        const answer = decide("GET", request.headers, opened.size, validators);
        const bodiless = answerWithoutBody(answer, opened.size, validators);
        if (bodiless !== null) {
          closeQuietly(file);
          return bodiless;
        }
        const headers = fileHeaders(type, opened.size, validators);
        if (answer.status !== 206) {
          return new Response(await fileBody(file, opened.size), { headers });
        }
        const { start, end } = answer.range;
        if (start > 0) await file.seek(start, Deno.SeekMode.Start);
        headers["content-length"] = String(end - start + 1);
        headers["content-range"] = `bytes ${start}-${end}/${opened.size}`;
        return new Response(await fileBody(file, end - start + 1), { status: 206, headers });
      } catch (error) {
        closeQuietly(file);
        throw error;
      }
    } catch (error) {
      return fromError(error);
    }
  };
}
