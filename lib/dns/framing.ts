/**
 * DNS over a byte stream (RFC 1035 4.2.2, RFC 7766): each message is preceded by its length as a
 * 16-bit big-endian integer. Shared by the stream listeners (TCP, DoT) and the stream upstreams
 * (TCP, DoT). No sockets here: the writer takes any sink with a `write`.
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

  /** Drops everything buffered (the connection is gone; its memory goes with it). */
  reset(): void {
    this.#buf = new Uint8Array(0);
    this.#start = this.#end = 0;
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

/** Optional behaviour of a {@link FramedWriter}. */
export interface FramedWriterOptions {
  /**
   * Most framed bytes (2-byte prefix included) waiting to be written, counting the write in
   * progress; a send that would go over is refused. Default unbounded (a client of ours).
   */
  maxBytes?: number;
  /** Most messages waiting to be written, counting the write in progress. Default unbounded. */
  maxMessages?: number;
  /** A write call was handed to the sink and has not completed yet: a deadline may start. */
  onWriteStart?: () => void;
  /** A write call completed: the peer took bytes, and what is queued went down. */
  onWriteDone?: () => void;
}

/**
 * Serialises writes of framed messages on one stream and coalesces whatever queued up during
 * the previous write into a single write (many small DNS messages, few syscalls). A write
 * failure is reported once through `onError`; later sends are ignored.
 *
 * Whatever waits to be written is counted (bytes and messages, until the sink accepts them), so
 * that a peer that does not read cannot make it grow without bound: `send` refuses a message
 * that would take the queue over `maxBytes`/`maxMessages`, and `abort` drops everything at once.
 * Messages sent in the same microtask turn go out in the same write.
 */
export class FramedWriter {
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #queuedMessages = 0;
  #scheduled = false;
  #writing = false;
  #failed = false;
  #idle: (() => void)[] = [];
  readonly #maxBytes: number;
  readonly #maxMessages: number;

  constructor(
    private readonly sink: { write(p: Uint8Array): Promise<number> },
    private readonly onError: (err: unknown) => void,
    private readonly opts: FramedWriterOptions = {},
  ) {
    this.#maxBytes = opts.maxBytes ?? Infinity;
    this.#maxMessages = opts.maxMessages ?? Infinity;
  }

  /** Framed bytes not yet accepted by the sink (the write in progress included). */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Messages not yet wholly accepted by the sink (the write in progress included). */
  get queuedMessages(): number {
    return this.#queuedMessages;
  }

  /**
   * Queues one message; returns at once. Returns false, queueing nothing, when the message would
   * take the queue over `maxBytes` or `maxMessages` (the caller decides what that costs); true
   * otherwise (also after a failure or `abort`, when sends are silently dropped).
   */
  send(message: Uint8Array): boolean {
    if (this.#failed) return true;
    const size = 2 + message.length;
    if (this.#queuedBytes + size > this.#maxBytes || this.#queuedMessages + 1 > this.#maxMessages) {
      return false;
    }
    this.#queue.push(message);
    this.#queuedBytes += size;
    this.#queuedMessages++;
    if (!this.#writing && !this.#scheduled) {
      // Start at the end of this turn, so that messages sent together are written together.
      this.#scheduled = true;
      queueMicrotask(() => {
        this.#scheduled = false;
        if (!this.#writing) this.#drain();
      });
    }
    return true;
  }

  /** Resolves when everything queued so far has been written (or writing failed or aborted). */
  flushed(): Promise<void> {
    if (this.#failed || (!this.#writing && this.#queue.length === 0)) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Drops everything queued and ignores later sends, without reporting an error. The write in
   * progress cannot be taken back: close the sink so that it settles.
   */
  abort(): void {
    this.#fail();
    this.#wakeIdle();
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#failed) {
        const batch = this.#queue;
        this.#queue = [];
        const data = frameAll(batch);
        // Messages count as written once their last byte is: `end` is where the next one ends.
        let next = 0;
        let end = 2 + batch[0].length;
        for (let at = 0; at < data.length;) {
          this.opts.onWriteStart?.();
          const n = await this.sink.write(data.subarray(at));
          if (this.#failed) return;
          at += n;
          this.#queuedBytes -= n;
          while (next < batch.length && end <= at) {
            this.#queuedMessages--;
            if (++next < batch.length) end += 2 + batch[next].length;
          }
          this.opts.onWriteDone?.();
        }
      }
    } catch (err) {
      if (!this.#failed) {
        this.#fail();
        this.onError(err);
      }
    } finally {
      this.#writing = false;
      this.#wakeIdle();
    }
  }

  #fail(): void {
    this.#failed = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#queuedMessages = 0;
  }

  #wakeIdle(): void {
    for (const resolve of this.#idle.splice(0)) resolve();
  }
}
