/**
 * The runtime's read and write ops for a TCP connection, called without
 * the public `conn.read`/`conn.write` wrappers, on the Deno versions this
 * was checked against.
 *
 * Why: on Deno 2.9 both wrappers are async functions around the op.
 * `conn.read` adds the op's promise to a set, awaits it in a try/finally,
 * takes it out of the set again and maps 0 to null; `conn.write` awaits
 * the op and returns its result. Every read and write of every connection
 * paid an async frame, a second promise and its microtask (and for reads
 * the set's insert and delete): ~600 bytes allocated per plain-HTTP
 * request for the read alone, 1 KB per WebSocket handshake (`--trace-gc`,
 * bench/RESULTS.md "Stop 23"). The set only serves `conn.ref()` and
 * `conn.unref()`, which the server never calls on its connections. The ops
 * are what the wrappers await: the same bytes, the same errors; a read
 * resolves 0 (not null) at the end of the stream.
 *
 * Used only where all of this holds: a tested runtime version, the
 * runtime's core object with both ops present, a plain TCP connection (not
 * TLS: its bytes go through the TLS stream, left to the public methods)
 * with its resource id where Deno keeps it. Anywhere else, and with the
 * server option `runtimeInternals: false`, {@linkcode rawId} returns null
 * and the public methods are used.
 *
 * @module
 */

/** Deno versions whose `TcpConn.read`/`write` were read and found to be the wrappers described above. */
const TESTED_VERSIONS = /^2\.9\./;

/** The runtime's async ops: each resolves with a byte count (a read: 0 at the end). */
interface CoreOps {
  read(rid: number, buffer: Uint8Array): Promise<number>;
  write(rid: number, data: Uint8Array): Promise<number>;
}

let core: CoreOps | null | undefined;
let ridKey: symbol | undefined;

/** The core object with its ops, if this runtime is a tested one. */
function coreOps(): CoreOps | null {
  if (core === undefined) {
    core = null;
    try {
      if (TESTED_VERSIONS.test(Deno.version.deno)) {
        // deno-lint-ignore no-explicit-any
        const internal = (Deno as any)[(Deno as any).internal];
        const found = internal?.core;
        if (
          found !== undefined && typeof found.read === "function" &&
          typeof found.write === "function"
        ) {
          core = found;
        }
      }
    } catch {
      core = null;
    }
  }
  return core ?? null;
}

/**
 * The resource id to pass to {@linkcode readFrom} and {@linkcode writeTo}
 * for `conn`, or null when its bytes must go through `conn.read` and
 * `conn.write` (see the module notes).
 *
 * @example
 * ```ts
 * import { rawId } from "./raw_io.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = await listener.accept();
 * // A number on Deno 2.9 (plain TCP), null elsewhere.
 * console.log(rawId(conn));
 * client.close();
 * conn.close();
 * listener.close();
 * ```
 */
export function rawId(conn: Deno.Conn): number | null {
  if (coreOps() === null) return null;
  // TLS connections have a handshake; their reads and writes stay public.
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
 * One read into `buffer` from `conn`: through the runtime's op when `rid`
 * (from {@linkcode rawId}) is given, else `conn.read`. Resolves with the
 * bytes read; at the end of the stream with 0 through the op, null through
 * `conn.read` (callers take both for the end); at once with 0 for an empty
 * buffer either way. Rejects as `conn.read` would (a reset, or a
 * connection closed meanwhile).
 *
 * @example
 * ```ts
 * import { rawId, readFrom } from "./raw_io.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = await listener.accept();
 * await client.write(new Uint8Array([1, 2, 3]));
 * console.log(await readFrom(conn, rawId(conn), new Uint8Array(8))); // 3
 * client.close();
 * conn.close();
 * listener.close();
 * ```
 */
export function readFrom(
  conn: Deno.Conn,
  rid: number | null,
  buffer: Uint8Array,
): Promise<number | null> {
  if (rid === null) return conn.read(buffer);
  // As conn.read: an empty buffer is answered at once (the op would wait
  // for data, then report 0, which callers take for the end).
  if (buffer.length === 0) return Promise.resolve(0);
  return core!.read(rid, buffer);
}

/**
 * One write of `bytes` (or their start) to `conn`: through the runtime's
 * op when `rid` (from {@linkcode rawId}) is given, else `conn.write`. The
 * one place every writer of a connection chooses, so that none drifts back
 * to the wrapper. Resolves with the bytes written, which may be fewer than
 * `bytes.length`; rejects as `conn.write` would (a reset, a broken pipe, a
 * connection closed meanwhile).
 *
 * @example
 * ```ts
 * import { rawId, writeTo } from "./raw_io.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = await listener.accept();
 * console.log(await writeTo(conn, rawId(conn), new Uint8Array([1, 2]))); // 2
 * client.close();
 * conn.close();
 * listener.close();
 * ```
 */
export function writeTo(conn: Deno.Conn, rid: number | null, bytes: Uint8Array): Promise<number> {
  return rid === null ? conn.write(bytes) : core!.write(rid, bytes);
}
