/**
 * Connect-then-reset pairs, as an attacker makes them: a TCP connection is
 * opened (the kernel completes the handshake and queues it for accept) and
 * reset at once, before the server has accepted it. Deno cannot send a
 * reset on purpose (there is no SO_LINGER option), so this calls the C
 * library through FFI: socket, connect, setsockopt(SO_LINGER, {1, 0}) and
 * close, which sends RST instead of FIN. The calls are synchronous, so a
 * batch completes before the event loop (and a server in the same process)
 * gets another turn: every pair is reset before it can be accepted.
 *
 * Test tooling, not part of the published library. Linux and macOS only;
 * {@linkcode openResetter} returns null elsewhere or without FFI.
 *
 * @module
 */

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

/** Makes connect-then-reset pairs to a port on 127.0.0.1. */
export interface Resetter {
  /**
   * Opens up to `count` connections to 127.0.0.1:`port`, resetting each at
   * once; returns how many connected (it stops at the first that cannot).
   */
  resetPairs(port: number, count: number): number;
  /** Unloads the C library. */
  close(): void;
}

/** The FFI resetter, or null when FFI or the platform does not allow it. */
export function openResetter(): Resetter | null {
  const os = Deno.build.os;
  if (os !== "linux" && os !== "darwin") return null;
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen(os === "darwin" ? "libSystem.B.dylib" : "libc.so.6", SYMBOLS);
  } catch {
    return null;
  }
  const { socket, connect, setsockopt, close } = lib.symbols;
  // struct linger { int l_onoff = 1; int l_linger = 0; }: close() resets.
  const linger = new Uint8Array(new Int32Array([1, 0]).buffer);
  const SOL_SOCKET = os === "darwin" ? 0xffff : 1;
  const SO_LINGER = os === "darwin" ? 0x80 : 13;
  // struct timeval { 0 s, 200,000 µs } as SO_SNDTIMEO, which also bounds
  // connect(): were the listen backlog full, connect would otherwise block
  // the whole process while the kernel retries its SYN.
  const SO_SNDTIMEO = os === "darwin" ? 0x1005 : 21;
  const timeout = new Uint8Array(new BigInt64Array([0n, 200_000n]).buffer);
  return {
    resetPairs(port: number, count: number): number {
      // struct sockaddr_in for 127.0.0.1:port. Linux: u16 family (host
      // order); macOS: u8 length, u8 family.
      const addr = new Uint8Array(16);
      const view = new DataView(addr.buffer);
      if (os === "darwin") addr.set([16, 2]);
      else view.setUint16(0, 2, true);
      view.setUint16(2, port, false);
      addr.set([127, 0, 0, 1], 4);
      let connected = 0;
      for (let i = 0; i < count; i++) {
        const fd = socket(2, 1, 0); // AF_INET, SOCK_STREAM
        if (fd < 0) break;
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, timeout, timeout.length);
        if (connect(fd, addr, 16) !== 0) {
          // The backlog is full (or the port closed): it will not drain
          // while this loop holds the thread, so stop here.
          close(fd);
          break;
        }
        setsockopt(fd, SOL_SOCKET, SO_LINGER, linger, linger.length);
        close(fd);
        connected++;
      }
      return connected;
    },
    close() {
      lib.close();
    },
  };
}
