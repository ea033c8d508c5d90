/**
 * The runtime's read op for a TCP connection, called without the public
 * `conn.read` wrapper, on the Deno versions this was checked against.
 *
 * Why: `conn.read` is an async function that adds the op's promise to a
 * set, awaits it in a try/finally, takes it out of the set again and then
 * maps 0 to null. Every read of every connection pays that: an async
 * frame, a second promise and its microtask, and the set's insert and
 * delete, ~600 bytes allocated per read (V8 sampling heap profiler, bench
 * /RESULTS.md "Stop 23"). The set only serves `conn.ref()`/`conn.unref()`,
 * which the server never calls on its connections. The op itself is what
 * `conn.read` awaits: the same bytes, the same errors, 0 (not null) at the
 * end of the stream.
 *
 * Used only where all of this holds: a tested runtime version, the
 * runtime's core object and read op present, a plain TCP connection (not
 * TLS: its reads go through the TLS stream, left to the public method)
 * with its resource id where Deno keeps it. Anywhere else, and with the
 * server option `runtimeInternals: false`, {@linkcode rawReadId} returns
 * null and `conn.read` is used as before.
 *
 * @module
 */

/** Deno versions whose `TcpConn.read` was read and found to be the wrapper described above. */
const TESTED_VERSIONS = /^2\.9\./;

/** The runtime's async read op: resolves with the bytes read, 0 at the end. */
type ReadOp = (rid: number, buffer: Uint8Array) => Promise<number>;

let core: { read: ReadOp } | null | undefined;
let ridKey: symbol | undefined;

/** The core object with its read op, if this runtime is a tested one. */
function coreOps(): { read: ReadOp } | null {
  if (core === undefined) {
    core = null;
    try {
      if (TESTED_VERSIONS.test(Deno.version.deno)) {
        // deno-lint-ignore no-explicit-any
        const internal = (Deno as any)[(Deno as any).internal];
        const found = internal?.core;
        if (found !== undefined && typeof found.read === "function") core = found;
      }
    } catch {
      core = null;
    }
  }
  return core ?? null;
}

/**
 * The resource id to pass to {@linkcode readOp} for `conn`, or null when
 * its reads must go through `conn.read` (see the module notes).
 *
 * @example
 * ```ts
 * import { rawReadId, readOp } from "./raw_read.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = await listener.accept();
 * await client.write(new Uint8Array([1, 2, 3]));
 * const rid = rawReadId(conn);
 * const buffer = new Uint8Array(8);
 * console.log(rid === null ? await conn.read(buffer) : await readOp(rid, buffer)); // 3
 * client.close();
 * conn.close();
 * listener.close();
 * ```
 */
export function rawReadId(conn: Deno.Conn): number | null {
  if (coreOps() === null) return null;
  // TLS connections have a handshake; their reads stay public.
  if (typeof (conn as Partial<Deno.TlsConn>).handshake === "function") return null;
  if ((conn.remoteAddr as Deno.NetAddr).transport !== "tcp") return null;
  if (ridKey === undefined) {
    ridKey = Object.getOwnPropertySymbols(conn).find((key) =>
      key.description === "Deno.internal.rid"
    );
    if (ridKey === undefined) return null;
  }
  const rid = (conn as unknown as Record<symbol, unknown>)[ridKey];
  return typeof rid === "number" && Number.isInteger(rid) && rid >= 0 ? rid : null;
}

/**
 * Reads into `buffer` through the runtime's op: resolves with the bytes
 * read, 0 at the end of the stream (and at once for an empty buffer, as
 * `conn.read` does); rejects as `conn.read` would
 * (a reset, or a connection closed meanwhile). Only for an id from
 * {@linkcode rawReadId}.
 *
 * @example
 * ```ts
 * import { rawReadId, readOp } from "./raw_read.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = await listener.accept();
 * client.close();
 * const rid = rawReadId(conn);
 * if (rid !== null) console.log(await readOp(rid, new Uint8Array(8))); // 0: the end
 * conn.close();
 * listener.close();
 * ```
 */
export function readOp(rid: number, buffer: Uint8Array): Promise<number> {
  // As conn.read: an empty buffer is answered at once (the op would wait
  // for data, then report 0, which callers take for the end).
  if (buffer.length === 0) return Promise.resolve(0);
  return core!.read(rid, buffer);
}
