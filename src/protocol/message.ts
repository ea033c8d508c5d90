/**
 * Message assembly (RFC 6455 §5.4-§5.6): turns frame events into messages,
 * enforcing fragment order, the size limit and UTF-8 validity. Pure: no I/O.
 *
 * @module
 */

import { CloseCode, decodeClosePayload, MAX_CONTROL_PAYLOAD, Opcode } from "./frame.ts";
import type { FrameHandler } from "./frame_parser.ts";
import { decodeUtf8Short, SHORT_UTF8 } from "./utf8.ts";

/**
 * What {@linkcode MessageAssembler} reports.
 *
 * @example
 * ```ts
 * import { FrameParser, MessageAssembler, type MessageHandler } from "@tsunagu/ws";
 * const handler: MessageHandler = {
 *   onText: (text) => console.log("text", text),
 *   onBinary: (data) => console.log("binary", data.length),
 *   onPing: () => {},
 *   onPong: () => {},
 *   onClose: (code, reason) => console.log("close", code, reason),
 *   onProtocolError: (code, message) => console.log("fail", code, message),
 * };
 * const assembler = new MessageAssembler(handler, { maxPayload: 1024 });
 * // A masked text frame "MDN": logs text MDN.
 * new FrameParser(assembler).push(new Uint8Array([129, 131, 61, 84, 35, 6, 112, 16, 109]));
 * ```
 */
export interface MessageHandler {
  /** A complete text message. */
  onText(text: string): void;
  /** A complete binary message; the array is the receiver's to keep. */
  onBinary(data: Uint8Array): void;
  /** A ping; the payload view is valid only during the call. */
  onPing(payload: Uint8Array): void;
  /** A pong; the payload view is valid only during the call. */
  onPong(payload: Uint8Array): void;
  /** The peer's close frame, validated (code 1005 when it carried none). */
  onClose(code: number, reason: string): void;
  /** A protocol violation: the connection must be failed with `code`. */
  onProtocolError(code: number, message: string): void;
}

/**
 * A shared allowance of bytes that assemblers may allocate on a peer's word
 * (the length a frame header declares) rather than on bytes received. Owned
 * by whoever creates the assemblers (the server); assemblers only borrow.
 *
 * @example
 * ```ts
 * import type { AssemblyBudget } from "@tsunagu/ws";
 * let left = 1 << 20;
 * const budget: AssemblyBudget = {
 *   take: (bytes) => bytes <= left && (left -= bytes, true),
 *   give: (bytes) => void (left += bytes),
 * };
 * console.log(budget.take(1000), left); // true 1047576
 * budget.give(1000);
 * console.log(left); // 1048576
 * ```
 */
export interface AssemblyBudget {
  /** Takes `bytes` from the budget; false (and nothing taken) when not enough is left. */
  take(bytes: number): boolean;
  /** Gives back `bytes` taken earlier. */
  give(bytes: number): void;
}

/**
 * Where a lending assembler's message buffers come from and go back to
 * (see {@linkcode MessageAssemblerOptions.lend}).
 *
 * @example
 * ```ts
 * import type { BufferLender } from "@tsunagu/ws";
 * const spare: Uint8Array[] = [];
 * const lender: BufferLender = {
 *   take: (size) => spare.find((buffer) => buffer.length >= size)?.subarray(0, size) ??
 *     new Uint8Array(size),
 *   give: (buffer) => void spare.push(new Uint8Array(buffer.buffer)),
 * };
 * console.log(lender.take(16).length); // 16
 * ```
 */
export interface BufferLender {
  /** A buffer of at least `size` bytes (the assembler uses its first `size`). */
  take(size: number): Uint8Array;
  /** A buffer from `take` that nothing uses any more. */
  give(buffer: Uint8Array): void;
}

/**
 * Options for {@linkcode MessageAssembler}.
 *
 * @example
 * ```ts
 * import { MessageAssembler, type MessageAssemblerOptions } from "@tsunagu/ws";
 * const options: MessageAssemblerOptions = { maxPayload: 64 * 1024 };
 * const assembler = new MessageAssembler({
 *   onText: (text) => console.log(text),
 *   onBinary: (data) => console.log(data),
 *   onPing: () => {},
 *   onPong: () => {},
 *   onClose: () => {},
 *   onProtocolError: (code, message) => console.log(code, message),
 * }, options);
 * console.log(assembler instanceof MessageAssembler); // true
 * ```
 */
export interface MessageAssemblerOptions {
  /** Largest message accepted, in bytes; larger ones fail with 1009. */
  maxPayload: number;
  /**
   * Lets a final frame's buffer be allocated at its declared length at once,
   * while the budget lasts (see {@linkcode AssemblyBudget}). Without it (or
   * when it is spent), the buffer grows with the bytes received.
   */
  budget?: AssemblyBudget;
  /**
   * Memory for messages still being received, shared by every assembler
   * that holds it: a message in progress takes what it holds (its assembly
   * buffer as allocated; for text, the bytes received) and gives it back
   * when it ends in any way. When the budget refuses, the message fails with
   * 1013 (try again later): it is within `maxPayload`, but messages in
   * progress elsewhere hold the memory for now. Without it, no such limit.
   * Messages that arrive whole in one read are delivered straight from the
   * read buffer and never take from it.
   */
  memory?: AssemblyBudget;
  /**
   * Decompresses a whole message (permessage-deflate, RFC 7692): given, the
   * RSV1 bit on a message's first frame marks it compressed, and it is
   * inflated once complete, to at most `maxLength` bytes. Without it, RSV1
   * is a protocol error.
   */
  inflate?: (compressed: Uint8Array, maxLength: number) => Uint8Array | {
    code: number;
    message: string;
  };
  /**
   * Lends binary messages instead of giving them away: `onBinary` receives a
   * view that is valid only during the call, and the memory behind it is
   * reused for later messages. A message that arrived whole in one read is
   * a view into the caller's read buffer (no copy at all); a longer one is
   * assembled in a buffer taken from the lender and given back once
   * `onBinary` returns. Without it, every binary message is a fresh array
   * that the receiver keeps.
   */
  lend?: BufferLender;
}

// A binary message assembled from several pieces starts with a buffer of
// INITIAL_ASSEMBLY_BYTES and grows to GROWTH_FACTOR times the bytes received,
// so memory is bounded by what the peer actually sent, not by what it claims.
const GROWTH_FACTOR = 4;
const INITIAL_ASSEMBLY_BYTES = 16 * 1024;

// Decoded text pieces are folded into one flat string every this many, so
// a message sent as many tiny fragments costs about its length in memory
// rather than a string object (some 20 bytes) per fragment.
const TEXT_FOLD_PARTS = 1024;

const singleDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Assembles frames into messages. Plug it into a {@linkcode FrameParser} as
 * its handler.
 *
 * Text is validated as it arrives: pieces are decoded with a streaming, fatal
 * UTF-8 decoder, which throws as soon as the bytes so far cannot begin valid
 * UTF-8, so an invalid message fails (1007) at the first bad fragment rather
 * than at its end.
 *
 * @example
 * ```ts
 * import { FrameParser, MessageAssembler } from "@tsunagu/ws";
 * const assembler = new MessageAssembler({
 *   onText: (text) => console.log("text", text),
 *   onBinary: (data) => console.log("binary", data),
 *   onPing: () => {},
 *   onPong: () => {},
 *   onClose: (code, reason) => console.log("close", code, reason),
 *   onProtocolError: (code, message) => console.log("fail", code, message),
 * }, { maxPayload: 1 << 20 });
 * new FrameParser(assembler).push(new Uint8Array([129, 131, 61, 84, 35, 6, 112, 16, 109]));
 * ```
 */
export class MessageAssembler implements FrameHandler {
  #out: MessageHandler;
  #maxPayload: number;

  // The current frame.
  #frameOpcode = 0;
  #frameFin = false;
  #frameLength = 0;
  #frameReceived = 0;

  // The message in progress: 0 when none, else Opcode.Text or Opcode.Binary.
  #messageOpcode = 0;
  #messageLength = 0;
  // Binary assembly buffer (fragmented or multi-read messages only).
  #assembly: Uint8Array | null = null;
  #assembled = 0;
  #budget: AssemblyBudget | null;
  // Bytes of #assembly taken from #budget (0 when it was grown by bytes
  // received); given back by #dropAssembly on every way a message ends.
  #borrowed = 0;
  #memory: AssemblyBudget | null;
  // Bytes the message in progress holds of #memory: its assembly buffer's
  // length, or its text bytes; given back by #release when it ends.
  #held = 0;
  // Text assembly: streaming decoder and decoded pieces.
  #decoder: TextDecoder | null = null;
  // Made by the first piece of a text message that spans reads: most
  // connections never have one, and idle ones hold no array (idle memory).
  #textParts: string[] | null = null;
  // Parts before this index are folded runs; those after it are pieces.
  #textFolded = 0;

  // Control frames are tiny (<= 125 bytes) but may still arrive split. Made
  // on the first control payload: a backing store per idle connection costs
  // ~350 bytes in Deno.
  #control: Uint8Array | null = null;
  #controlLength = 0;

  #closed = false;

  // permessage-deflate: the inflater, and whether the message in progress
  // is compressed (collected like binary, inflated at its end).
  #inflate: MessageAssemblerOptions["inflate"] | null;
  #compressed = false;
  // Lending binary messages (see MessageAssemblerOptions.lend), else null.
  #lend: BufferLender | null;

  /** Creates an assembler reporting to `out`. */
  constructor(out: MessageHandler, options: MessageAssemblerOptions) {
    this.#out = out;
    this.#maxPayload = options.maxPayload;
    this.#budget = options.budget ?? null;
    this.#memory = options.memory ?? null;
    this.#inflate = options.inflate ?? null;
    this.#lend = options.lend ?? null;
  }

  /**
   * The limit on a compressed message's received size. Deflate may grow
   * incompressible data: by 0.03% with zlib's defaults, by up to 4% with a
   * small memLevel, 12.5% with fixed Huffman codes only. Derived when
   * needed (compressed messages over maxPayload only), not a field per
   * connection.
   */
  get #compressedLimit(): number {
    const maxPayload = this.#maxPayload;
    return maxPayload + Math.floor(maxPayload / 8) + 1024;
  }

  /** Frame header: checks fragment order and the size limit before any payload arrives. */
  onFrameStart(fin: boolean, rsv: number, opcode: number, length: number): boolean {
    if (this.#closed) return false;
    // RSV checks live out of line: this is the per-frame hot path.
    if (rsv !== 0 && !this.#checkRsv(rsv, opcode)) return false;
    this.#frameOpcode = opcode;
    this.#frameFin = fin;
    this.#frameLength = length;
    this.#frameReceived = 0;
    if (opcode >= Opcode.Close) {
      this.#controlLength = 0;
      return true;
    }
    if (opcode === Opcode.Continuation) {
      if (this.#messageOpcode === 0) {
        return this.#fail(CloseCode.ProtocolError, "continuation frame without a message");
      }
    } else if (this.#messageOpcode !== 0) {
      return this.#fail(CloseCode.ProtocolError, "new data frame inside a fragmented message");
    } else {
      this.#messageOpcode = opcode;
      this.#messageLength = 0;
      this.#compressed = rsv !== 0;
    }
    // The limit is checked against the declared length, before any payload
    // byte is buffered.
    const total = this.#messageLength + length;
    if (total > this.#maxPayload && !this.#withinCompressedAllowance(total)) {
      return this.#fail(
        CloseCode.MessageTooBig,
        `message exceeds the ${this.#maxPayload}-byte limit`,
      );
    }
    this.#messageLength += length;
    return true;
  }

  /** Payload bytes: decoded (text) or collected (binary) as they arrive. */
  onFramePayload(chunk: Uint8Array): boolean {
    // Stopped (the connection is closing): the rest of a frame in progress
    // is not collected.
    if (this.#closed) return false;
    const first = this.#frameReceived === 0;
    this.#frameReceived += chunk.length;
    if (this.#frameOpcode >= Opcode.Close) {
      (this.#control ??= new Uint8Array(MAX_CONTROL_PAYLOAD)).set(chunk, this.#controlLength);
      this.#controlLength += chunk.length;
      return true;
    }
    const assembly = this.#assembly;
    if (
      assembly !== null && chunk.buffer === assembly.buffer && chunk.byteOffset === this.#assembled
    ) {
      // The reader wrote these bytes straight into the assembly buffer
      // (payloadBuffer) and the parser unmasked them there: already in place.
      this.#assembled += chunk.length;
      return true;
    }
    if (this.#compressed) return this.#appendBinary(chunk);
    // Hot path: an unfragmented message whose payload arrived in one piece is
    // delivered straight from the read buffer, with no assembly copy.
    if (
      first && this.#frameFin && chunk.length === this.#frameLength &&
      this.#messageLength === chunk.length
    ) {
      return this.#deliverWhole(chunk);
    }
    return this.#messageOpcode === Opcode.Text
      ? this.#appendText(chunk)
      : this.#appendBinary(chunk);
  }

  /** Frame end: completes a message on its final fragment, or handles a control frame. */
  onFrameEnd(): boolean {
    const opcode = this.#frameOpcode;
    if (opcode >= Opcode.Close) return this.#endControl(opcode);
    if (!this.#frameFin || this.#messageOpcode === 0) return true;
    if (this.#compressed) return this.#finishCompressed();
    // Zero-length frames and multi-piece messages finish here.
    if (this.#messageOpcode === Opcode.Text) {
      if (this.#decoder === null && this.#messageLength === 0) {
        this.#messageOpcode = 0;
        this.#out.onText("");
        return !this.#closed;
      }
      return this.#finishText();
    }
    const assembly = this.#assembly;
    const length = this.#assembled;
    // Forgotten before delivery: whatever onBinary does (close, fail), the
    // message is no longer in progress. A lent buffer goes back after.
    this.#assembly = null;
    this.#dropAssembly();
    this.#messageOpcode = 0;
    if (this.#lend !== null) {
      if (assembly === null) {
        this.#out.onBinary(new Uint8Array(0));
      } else {
        this.#out.onBinary(length === assembly.length ? assembly : assembly.subarray(0, length));
        this.#lend.give(assembly);
      }
      return !this.#closed;
    }
    this.#out.onBinary(
      assembly === null
        ? new Uint8Array(0)
        : length === assembly.length
        ? assembly
        : assembly.slice(0, length),
    );
    return !this.#closed;
  }

  /** A framing error from the parser: passed on as a protocol error. */
  onFrameError(code: number, message: string): void {
    this.#fail(code, message);
  }

  /**
   * RSV bits on a frame: only RSV1, only on a data message's first frame,
   * and only with an inflater (permessage-deflate, RFC 7692 §6.1).
   */
  #checkRsv(rsv: number, opcode: number): boolean {
    if (opcode >= Opcode.Close) {
      return this.#fail(CloseCode.ProtocolError, "RSV1 set on a control frame");
    }
    if (opcode === Opcode.Continuation) {
      return this.#fail(CloseCode.ProtocolError, "RSV1 set on a continuation frame");
    }
    if (rsv !== 0x40 || this.#inflate === null) {
      return this.#fail(CloseCode.ProtocolError, "RSV bits set without an extension");
    }
    return true;
  }

  /**
   * Compressed bytes may exceed the message's size (incompressible data);
   * the inflated size is limited separately.
   */
  #withinCompressedAllowance(total: number): boolean {
    return this.#compressed && total <= this.#compressedLimit;
  }

  /** A compressed message is complete: inflate it, then deliver it as text or binary. */
  #finishCompressed(): boolean {
    const opcode = this.#messageOpcode;
    const assembly = this.#assembly;
    const compressed = assembly === null
      ? new Uint8Array(0)
      : assembly.subarray(0, this.#assembled);
    const result = this.#inflate!(compressed, this.#maxPayload);
    // Inflated into a new buffer: the compressed bytes are done with.
    this.#dropAssembly();
    this.#messageOpcode = 0;
    this.#compressed = false;
    if (!(result instanceof Uint8Array)) return this.#fail(result.code, result.message);
    if (opcode === Opcode.Binary) {
      this.#out.onBinary(result);
      return !this.#closed;
    }
    return this.#deliverText(result);
  }

  /** Decodes a complete text message (fatal UTF-8) and delivers it. */
  #deliverText(bytes: Uint8Array): boolean {
    // Short messages: a JS decoder, cheaper than the native one's per-call
    // cost (src/utf8.ts). It returns null on invalid bytes, and the fatal
    // native decoder below then has the final word.
    let text = bytes.length <= SHORT_UTF8 ? decodeUtf8Short(bytes, 0, bytes.length) : null;
    if (text === null) {
      try {
        text = singleDecoder.decode(bytes);
      } catch {
        return this.#fail(CloseCode.InvalidPayload, "text message is not valid UTF-8");
      }
    }
    this.#out.onText(text);
    return !this.#closed;
  }

  #deliverWhole(chunk: Uint8Array): boolean {
    // Mark the message complete before calling out, so onFrameEnd sees no
    // message in progress.
    const opcode = this.#messageOpcode;
    this.#messageOpcode = 0;
    if (opcode === Opcode.Text) return this.#deliverText(chunk);
    // A copy, because the chunk lives in the reused read buffer; lent as is
    // when the receiver only borrows it. `slice` is the cheapest fresh copy
    // (16 KiB: 2.2 µs, against 6.4 for new Uint8Array + set, and the same
    // as ArrayBuffer.prototype.slice, which skips zero-filling).
    this.#out.onBinary(this.#lend === null ? chunk.slice() : chunk);
    return !this.#closed;
  }

  #appendText(chunk: Uint8Array): boolean {
    // The decoded pieces take about a byte per byte received (less for
    // multi-byte UTF-8): counted as received.
    if (!this.#hold(chunk.length)) {
      this.#resetText();
      return this.#fail(CloseCode.TryAgainLater, "server busy: too many messages in progress");
    }
    const decoder = this.#decoder ??= new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    try {
      const part = decoder.decode(chunk, { stream: true });
      if (part !== "") {
        const parts = this.#textParts ??= [];
        parts.push(part);
        if (parts.length - this.#textFolded === TEXT_FOLD_PARTS) {
          const run = parts.splice(this.#textFolded).join("");
          parts.push(run);
          this.#textFolded++;
        }
      }
    } catch {
      this.#resetText();
      return this.#fail(CloseCode.InvalidPayload, "text message is not valid UTF-8");
    }
    return true;
  }

  #finishText(): boolean {
    let tail: string;
    try {
      // Flushing throws when the message ends inside a multi-byte sequence.
      tail = this.#decoder === null ? "" : this.#decoder.decode();
    } catch {
      this.#resetText();
      return this.#fail(CloseCode.InvalidPayload, "text message ends inside a UTF-8 sequence");
    }
    const parts = this.#textParts;
    let text = tail;
    if (parts !== null) {
      if (tail !== "") parts.push(tail);
      text = parts.length === 1 ? parts[0] : parts.join("");
    }
    this.#resetText();
    this.#messageOpcode = 0;
    this.#out.onText(text);
    return !this.#closed;
  }

  #resetText(): void {
    this.#decoder = null;
    this.#textParts = null;
    this.#textFolded = 0;
    this.#release();
  }

  /**
   * Room for the reader to write the current frame's payload into directly,
   * skipping the copy from its read buffer: the free part of the binary
   * assembly buffer, at most `remaining` bytes (the frame's unread payload).
   * Null when the frame is not part of a binary message being assembled.
   * Bytes written there must then be passed to the parser as they are (it
   * unmasks them in place and reports them here, where they are recognised
   * as already assembled).
   */
  payloadBuffer(remaining: number): Uint8Array | null {
    if (
      this.#closed || this.#frameOpcode >= Opcode.Close ||
      (this.#messageOpcode !== Opcode.Binary && !this.#compressed)
    ) {
      return null;
    }
    const assembled = this.#assembled;
    // Grown by the same rule as for bytes received: a header's claim alone
    // never allocates more than the budget allows.
    const assembly = this.#reserve(assembled + 1);
    if (assembly === null) return null;
    return assembly.subarray(assembled, Math.min(assembly.length, assembled + remaining));
  }

  #appendBinary(chunk: Uint8Array): boolean {
    const needed = this.#assembled + chunk.length;
    const assembly = this.#reserve(needed);
    if (assembly === null) return false;
    assembly.set(chunk, this.#assembled);
    this.#assembled = needed;
    return true;
  }

  /**
   * The assembly buffer, grown if it holds fewer than `needed` bytes; null
   * (and the message failed with 1013) when the memory budget refuses.
   */
  #reserve(needed: number): Uint8Array | null {
    const assembly = this.#assembly;
    if (assembly !== null && assembly.length >= needed) return assembly;
    // Grow to four times what has arrived, never past what the current
    // frame (when it is the last) says the message will total, nor past the
    // largest message allowed. Memory stays within 4x the bytes the peer
    // really sent (a header's claim alone costs nothing), and a 1 MiB
    // message arriving in 64-256 KiB reads needs two or three
    // allocate-and-copy rounds instead of six with doubling.
    const known = this.#frameFin ? this.#messageLength : Infinity;
    const largest = this.#compressed ? this.#compressedLimit : this.#maxPayload;
    const grown = Math.max(
      needed,
      Math.min(Math.max(GROWTH_FACTOR * needed, INITIAL_ASSEMBLY_BYTES), known, largest),
    );
    let capacity = grown;
    // The last frame's header says exactly how much is coming: allocating
    // it at once saves the allocate-zero-copy rounds of growing (+24% on 1
    // MiB echo), but a header's claim is only trusted up to the shared
    // budget, so claims never sent cost at most the budget server-wide.
    if (
      capacity < known && this.#borrowed === 0 && this.#budget !== null &&
      this.#budget.take(known)
    ) {
      this.#borrowed = capacity = known;
    }
    const current = assembly === null ? 0 : assembly.length;
    if (!this.#hold(capacity - current)) {
      // Not enough memory for the claim: growing with the bytes received
      // may still fit.
      if (capacity !== grown) {
        this.#budget!.give(this.#borrowed);
        this.#borrowed = 0;
        capacity = grown;
      }
      if (capacity === grown && !this.#hold(capacity - current)) {
        this.#fail(CloseCode.TryAgainLater, "server busy: too many messages in progress");
        return null;
      }
    }
    const lend = this.#lend;
    let next: Uint8Array;
    if (lend === null) {
      // Fresh memory, the receiver's to keep: read straight into (kernel to
      // message, one copy) and delivered as is when it is exactly the
      // message. Measured and not adopted (bench/RESULTS.md, "Measured and
      // not adopted"): assembling in a pooled buffer and copying out at the
      // end (the copy is then the first touch of the fresh pages, from user
      // code, which costs more on a VM than the socket read touching them
      // in the kernel: 1 MiB echo 2x the user time), and a resizable
      // ArrayBuffer, which V8 maps without zeroing but whose views it reads
      // through a runtime call (unmask 4-20x slower, and every function
      // that meets one slows down for plain arrays too). Nor raising glibc's
      // trim threshold by freeing one untouched 16 MiB block (1 MiB echo:
      // half the CPU, a third of the page faults), as a server left after
      // peers abandoned large messages then kept ~60 MiB more; a smaller
      // block does not keep the memory reliably, because V8 frees tens of
      // MiB of dead messages at once.
      next = new Uint8Array(capacity);
    } else {
      next = lend.take(capacity);
      if (next.length !== capacity) next = next.subarray(0, capacity);
    }
    if (assembly !== null) {
      next.set(assembly.subarray(0, this.#assembled));
      lend?.give(assembly);
    }
    return this.#assembly = next;
  }

  /** Takes `bytes` of the memory budget for the message in progress; false if refused. */
  #hold(bytes: number): boolean {
    const memory = this.#memory;
    if (memory === null) return true;
    if (!memory.take(bytes)) return false;
    this.#held += bytes;
    return true;
  }

  /** Gives back what the message in progress held of the memory budget. */
  #release(): void {
    if (this.#held !== 0) {
      this.#memory!.give(this.#held);
      this.#held = 0;
    }
  }

  #endControl(opcode: number): boolean {
    const payload = this.#control === null
      ? new Uint8Array(0)
      : this.#control.subarray(0, this.#controlLength);
    if (opcode === Opcode.Ping) {
      this.#out.onPing(payload);
    } else if (opcode === Opcode.Pong) {
      this.#out.onPong(payload);
    } else {
      const result = decodeClosePayload(payload);
      if ("error" in result) return this.#fail(result.error, result.message);
      // Nothing after a close frame is processed (RFC 6455 §5.5.1).
      this.#closed = true;
      this.#out.onClose(result.code, result.reason);
      return false;
    }
    return !this.#closed;
  }

  /** Forgets the binary message in progress and gives back what it borrowed. */
  #dropAssembly(): void {
    // A message that ends unfinished gives its lent buffer back (one that
    // completed was taken off #assembly before delivery).
    if (this.#assembly !== null && this.#lend !== null) this.#lend.give(this.#assembly);
    this.#assembly = null;
    this.#assembled = 0;
    if (this.#borrowed !== 0) {
      this.#budget!.give(this.#borrowed);
      this.#borrowed = 0;
    }
    this.#release();
  }

  #fail(code: number, message: string): false {
    this.#dropAssembly();
    if (!this.#closed) {
      this.#closed = true;
      this.#out.onProtocolError(code, message);
    }
    return false;
  }

  /** Stops the assembler: frames after this are ignored (the connection is closing). */
  stop(): void {
    this.#closed = true;
    this.#dropAssembly();
    this.#resetText();
  }
}
