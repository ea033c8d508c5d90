/**
 * Plain-HTTP benchmark server: what `bench/http_bench.ts` runs, one server
 * kind per process, on 127.0.0.1.
 *
 *   deno run -A bench/http_server.ts KIND PORT DIR
 *
 * KIND:
 * - `deno`         `Deno.serve` as a Deno user would write it: `/small` a
 *                  fixed text, `/file.bin` opened, `stat`ed and streamed
 *                  from `file.readable` with its length and validators.
 * - `deno-static`  `Deno.serve` with tsunagu's static handler (the one
 *                  `tsunagu serve --static` uses) for files: the same
 *                  handler work as `tsunagu`, so the difference is the server.
 * - `tsunagu`      tsunagu's `serve()` with a `fetch` handler: `/small` the
 *                  same text, everything else the static handler.
 *
 * The environment variable `STATIC_CACHE_BYTES` sets the static handler's
 * cache budget (default: the handler's; 0 measures without the cache).
 *
 * SIGTERM and SIGINT stop the server and exit 0.
 *
 * @module
 */

import { serve } from "../mod.ts";
import { createStaticHandler } from "../src/cli/static_files.ts";

const [kind, portText, dir] = Deno.args;
const port = Number(portText);
if (!["deno", "deno-static", "tsunagu"].includes(kind) || !Number.isInteger(port) || !dir) {
  console.error("usage: http_server.ts deno|deno-static|tsunagu PORT DIR");
  Deno.exit(2);
}

const SMALL = "hello, world\n";
const small = () => new Response(SMALL, { headers: { "content-type": "text/plain" } });
const cacheText = Deno.env.get("STATIC_CACHE_BYTES");
const files = await createStaticHandler(dir, {
  cacheBytes: cacheText === undefined ? undefined : Number(cacheText),
});

/** The plain `Deno.serve` way: open, stat, stream `file.readable`. */
async function denoFile(path: string): Promise<Response> {
  const file = await Deno.open(path);
  const stat = await file.stat();
  return new Response(file.readable, {
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(stat.size),
      "accept-ranges": "bytes",
      etag: `"${stat.size.toString(16)}-${stat.mtime!.getTime().toString(16)}"`,
      "last-modified": stat.mtime!.toUTCString(),
    },
  });
}

const handler = (request: Request): Response | Promise<Response> => {
  const { pathname } = new URL(request.url);
  if (pathname === "/small") return small();
  if (kind === "deno") {
    if (pathname === "/file.bin") return denoFile(`${dir}/file.bin`);
    return new Response("not found\n", { status: 404 });
  }
  return files(request);
};

const stop = new AbortController();
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(signal, () => stop.abort());
}
if (kind === "tsunagu") {
  const server = serve({ port, hostname: "127.0.0.1", signal: stop.signal }, { fetch: handler });
  await server.finished;
} else {
  const server = Deno.serve(
    { port, hostname: "127.0.0.1", signal: stop.signal, onListen: () => {} },
    handler,
  );
  await server.finished;
}
Deno.exit(0);
