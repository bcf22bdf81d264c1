/**
 * DNS over a byte stream (RFC 1035 4.2.2, RFC 7766): each message is preceded by its length as a
 * 16-bit big-endian integer. Shared by the TCP listener and the DNS-over-TLS upstream client.
 */

/** The largest message a 2-byte length prefix can describe. */
export const MAX_FRAMED_MESSAGE = 65535;

/** Prefixes each message with its length, concatenated into one buffer for a single write. */
export function frameAll(messages: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const m of messages) total += 2 + m.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const m of messages) {
    out[at] = m.length >> 8;
    out[at + 1] = m.length & 0xff;
    out.set(m, at + 2);
    at += 2 + m.length;
  }
  return out;
}

/**
 * Reassembles length-prefixed messages from arbitrary chunks: a read may hold half a message,
 * or several. Each message handed out is a copy the caller owns.
 */
export class FrameReader {
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;

  /** Appends a chunk of stream bytes (copied; the caller may reuse its buffer). */
  push(chunk: Uint8Array): void {
    if (this.#end + chunk.length > this.#buf.length) this.#makeRoom(chunk.length);
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  /** The next complete message, or null when more bytes are needed. */
  next(): Uint8Array | null {
    const available = this.#end - this.#start;
    if (available < 2) return null;
    const length = (this.#buf[this.#start] << 8) | this.#buf[this.#start + 1];
    if (available < 2 + length) return null;
    const from = this.#start + 2;
    this.#start = from + length;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return this.#buf.slice(from, from + length);
  }

  /** Bytes received that do not yet form a whole message (a stalled half-message shows here). */
  get pendingBytes(): number {
    return this.#end - this.#start;
  }

  #makeRoom(extra: number): void {
    const live = this.#end - this.#start;
    const size = Math.max(this.#buf.length, live + extra);
    const next = size > this.#buf.length ? new Uint8Array(size * 2) : this.#buf;
    next.set(this.#buf.subarray(this.#start, this.#end), 0);
    this.#buf = next;
    this.#start = 0;
    this.#end = live;
  }
}

/** Writes every byte: `Conn.write` may accept only part of a buffer. */
export async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  data: Uint8Array,
): Promise<void> {
  let at = 0;
  while (at < data.length) at += await w.write(data.subarray(at));
}

/**
 * Serialises writes of framed messages on one stream and coalesces whatever queued up during
 * the previous write into a single write (many small DNS messages, few syscalls). A write
 * failure is reported once through `onError`; later sends are ignored.
 */
export class FramedWriter {
  #queue: Uint8Array[] = [];
  #writing = false;
  #failed = false;
  #idle: (() => void)[] = [];

  constructor(
    private readonly sink: { write(p: Uint8Array): Promise<number> },
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Queues one message; returns at once. */
  send(message: Uint8Array): void {
    if (this.#failed) return;
    this.#queue.push(message);
    if (!this.#writing) this.#drain();
  }

  /** Resolves when everything queued so far has been written (or writing failed). */
  flushed(): Promise<void> {
    if (!this.#writing) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#failed) {
        const batch = this.#queue;
        this.#queue = [];
        await writeAll(this.sink, frameAll(batch));
      }
    } catch (err) {
      this.#failed = true;
      this.#queue = [];
      this.onError(err);
    } finally {
      this.#writing = false;
      for (const resolve of this.#idle.splice(0)) resolve();
    }
  }
}
