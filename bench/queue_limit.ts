/**
 * A yardstick for the pipelined-echo and fan-out shapes: the fastest
 * WebSocket server plain TypeScript can be on Deno's public API when reads
 * never wait for writes. wsbench's `deno_limit` awaits each write before its
 * next read and flushes each subscriber through an async function, so it is
 * no ceiling for those two shapes (bench/RESULTS.md, "What is left"); this
 * is. Like `deno_limit` it does no validation, has no limits and no
 * application API: it is not a server, only a measure of what Deno's
 * `conn.read`/`conn.write` allow when a server does nothing else.
 *
 *   deno run -A bench/queue_limit.ts PORT
 *
 * - `/`           echo: the complete frames of each read go back (unmasked,
 *                 text stays text) as one write.
 * - `/broadcast`  the complete frames of each read are encoded once and go
 *                 to every connection on `/broadcast`, sender included.
 *
 * Per connection: a read is always pending (callbacks, no async frames);
 * output goes out at once when no write is pending, written straight from
 * the read buffer (the next read then goes into the spare buffer), and
 * otherwise waits and leaves, with whatever else waited, as one write when
 * the pending one completes. That is the least work per read and per write
 * the runtime allows: one `read` op per batch of frames in, one `write` op
 * per batch out, nothing allocated per frame.
 *
 * Listens on 127.0.0.1. SIGTERM and SIGINT end it.
 *
 * @module
 */

import { createHash } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const BUFFER_BYTES = 64 * 1024;
const latin1 = new TextDecoder("latin1");
const ascii = new TextEncoder();
const room = new Set<Peer>();

/** XORs buf[start, end) with the key `word`, lined up with 4-aligned offsets. */
function unmask(buf: Uint8Array, start: number, end: number, word: number): void {
  let i = start;
  while (i < end && (i & 3) !== 0) buf[i] ^= word >>> ((i++ & 3) << 3);
  const words = (end - i) >>> 2;
  if (words > 0) {
    const view = new Uint32Array(buf.buffer, buf.byteOffset + i, words);
    for (let k = 0; k < words; k++) view[k] ^= word;
    i += words << 2;
  }
  while (i < end) buf[i] ^= word >>> ((i++ & 3) << 3);
}

class Peer {
  conn: Deno.TcpConn;
  buf: Uint8Array = new Uint8Array(BUFFER_BYTES);
  /** A buffer not in use, for the next read while `buf` is being written. */
  spare: Uint8Array | null = new Uint8Array(BUFFER_BYTES);
  filled = 0;
  /** The buffer a pending write was lent (returned to `spare` after it). */
  lent: Uint8Array | null = null;
  writing = false;
  waiting: Uint8Array[] = [];
  closing = false;
  ended = false;
  broadcast = false;
  onRead = (n: number | null) => this.#read(n);
  onWritten = (n: number) => this.#written(n);
  onFailed = () => this.end();
  /** What the pending write is sending, to resume a short write. */
  out: Uint8Array = new Uint8Array(0);
  outAt = 0;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    room.delete(this);
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  readNext(): void {
    if (this.ended) return;
    this.conn.read(this.buf.subarray(this.filled)).then(this.onRead, this.onFailed);
  }

  /** Sends `bytes`, which must stay unchanged until written (see `lend`). */
  send(bytes: Uint8Array): void {
    if (this.ended) return;
    if (this.writing) {
      this.waiting.push(bytes);
      return;
    }
    this.#write(bytes);
  }

  #write(bytes: Uint8Array): void {
    this.writing = true;
    this.out = bytes;
    this.outAt = 0;
    this.conn.write(bytes).then(this.onWritten, this.onFailed);
  }

  #written(n: number): void {
    this.outAt += n;
    if (this.outAt < this.out.length) {
      this.conn.write(this.out.subarray(this.outAt)).then(this.onWritten, this.onFailed);
      return;
    }
    this.writing = false;
    if (this.lent !== null) {
      this.spare = this.lent;
      this.lent = null;
    }
    const waiting = this.waiting;
    if (waiting.length > 0) {
      let bytes = waiting[0];
      if (waiting.length > 1) {
        let total = 0;
        for (const w of waiting) total += w.length;
        bytes = new Uint8Array(total);
        let at = 0;
        for (const w of waiting) bytes.set(w, at), at += w.length;
      }
      this.waiting = [];
      this.#write(bytes);
    } else if (this.closing) this.end();
  }

  /** Frames in buf[0, filled): unmasked, headers rewritten, packed at the front of what they took. */
  #read(n: number | null): void {
    if (n === null || this.ended) return this.end();
    this.filled += n;
    const buf = this.buf;
    const filled = this.filled;
    let pos = 0;
    let start = -1;
    let w = 0;
    while (filled - pos >= 2) {
      const b0 = buf[pos], b1 = buf[pos + 1];
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (filled - pos < 4) break;
        len = (buf[pos + 2] << 8) | buf[pos + 3];
        hdr = 4;
      } else if (len === 127) {
        if (filled - pos < 10) break;
        len = buf[pos + 6] * 2 ** 24 + ((buf[pos + 7] << 16) | (buf[pos + 8] << 8) | buf[pos + 9]);
        hdr = 10;
      }
      if (filled - pos < hdr + 4 + len) break;
      const p = pos + hdr + 4;
      const key = buf[pos + hdr] | (buf[pos + hdr + 1] << 8) | (buf[pos + hdr + 2] << 16) |
        (buf[pos + hdr + 3] << 24);
      const r = p & 3;
      unmask(
        buf,
        p,
        p + len,
        r === 0 ? key >>> 0 : ((key << (8 * r)) | (key >>> (32 - 8 * r))) >>> 0,
      );
      const op = b0 & 0x0f;
      // The unmasked header goes right before the payload (length bytes first: they overlap).
      const h = p - hdr;
      if (hdr === 4) buf[h + 2] = len >>> 8, buf[h + 3] = len & 0xff;
      else if (hdr === 10) buf.copyWithin(h + 2, pos + 2, pos + 10);
      buf[h] = op === 0x9 ? 0x8a : b0;
      buf[h + 1] = len < 126 ? len : b1 & 0x7f;
      pos += hdr + 4 + len;
      if (op === 0x8) this.closing = true;
      if (op >= 0x8 && this.broadcast) {
        // Control frames answer the sender only.
        this.send(buf.slice(h, h + hdr + len));
        continue;
      }
      if (start < 0) start = w = h;
      else if (w !== h) buf.copyWithin(w, h, h + hdr + len);
      w += hdr + len;
      if (op === 0x8) break;
    }
    if (start >= 0) {
      if (this.broadcast) {
        const bytes = buf.slice(start, w);
        for (const peer of room) peer.send(bytes);
      } else if (!this.writing && this.spare !== null) {
        // Written from where it lies; the rest of this read and the next
        // read go to the spare buffer.
        const next = this.spare;
        this.spare = null;
        next.set(buf.subarray(pos, filled));
        this.filled = filled - pos;
        this.buf = next;
        this.lent = buf;
        this.send(buf.subarray(start, w));
        if (this.closing) return;
        return this.readNext();
      } else {
        this.send(buf.slice(start, w));
      }
    }
    if (this.closing) {
      if (!this.writing) this.end();
      return;
    }
    if (pos > 0) buf.copyWithin(0, pos, filled);
    this.filled = filled - pos;
    if (this.filled === buf.length) {
      // A frame larger than the buffer: room for it.
      const bigger = new Uint8Array(buf.length * 4);
      bigger.set(buf);
      this.buf = bigger;
    }
    this.readNext();
  }
}

async function handshake(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  const peer = new Peer(conn);
  const buf = peer.buf;
  try {
    for (;;) {
      const n = await conn.read(buf.subarray(peer.filled));
      if (n === null) return peer.end();
      peer.filled += n;
      const head = latin1.decode(buf.subarray(0, peer.filled));
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (peer.filled === buf.length) return peer.end();
        continue;
      }
      const target = head.slice(head.indexOf(" ") + 1, head.indexOf(" ", head.indexOf(" ") + 1));
      const at = head.search(/\r\nsec-websocket-key:/i);
      if (at < 0) return peer.end();
      const key = head.slice(head.indexOf(":", at) + 1, head.indexOf("\r\n", at + 2)).trim();
      const accept = createHash("sha1").update(key + GUID).digest("base64");
      await conn.write(ascii.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ));
      buf.copyWithin(0, end + 4, peer.filled);
      peer.filled -= end + 4;
      if (target.startsWith("/broadcast")) {
        peer.broadcast = true;
        room.add(peer);
      }
      // Bytes after the head are frames: handled as if just read.
      if (peer.filled > 0) {
        const had = peer.filled;
        peer.filled = 0;
        peer.onRead(had);
      } else peer.readNext();
      return;
    }
  } catch {
    peer.end();
  }
}

const port = Number(Deno.args[0] ?? "8080");
const listener = Deno.listen({ hostname: "127.0.0.1", port });
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(signal, () => Deno.exit(0));
}
console.log(`queue_limit listening on 127.0.0.1:${port}`);
for await (const conn of listener) handshake(conn);
