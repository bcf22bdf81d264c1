/**
 * One DNS-over-TLS connection shared by many queries at once (RFC 7766 pipelining). Each query
 * gets an ID unique on this connection; replies may come in any order and are matched by ID and
 * question. A reply that matches nothing is discarded and counted, never delivered.
 */
import { decodeQuery, type Question } from "../dns/message.ts";
import { questionMatches, withId } from "../dns/reply.ts";
import { FramedWriter, FrameReader } from "../listen/framing.ts";
import type { Cancel, Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";
import { errText } from "../sys/errors.ts";

/** What a single send on a connection came to. */
export type ConnectionResult =
  | { ok: true; reply: Uint8Array }
  | { ok: false; kind: "timeout" | "closed"; message: string };

/** Counters of replies this connection threw away; the pool adds them to its metrics. */
export interface DiscardCounts {
  unknownId: number;
  mismatched: number;
  malformed: number;
}

/** Tuning and collaborators for a connection. */
export interface ConnectionOptions {
  clock: Clock;
  random: Random;
  /** The most queries outstanding at once on this connection. */
  maxInFlight: number;
  /** Close after this long with nothing outstanding (servers drop idle clients; we go first). */
  idleTimeoutMs: number;
  /** Told once, when the connection is closed for any reason. */
  onClose: (conn: DotConnection, reason: string) => void;
}

interface Pending {
  question: Question;
  sentAt: number;
  settle: (r: ConnectionResult) => void;
  cancelTimer: Cancel;
}

const READ_BUFFER = 65536 + 2;

/** A pipelined DoT client connection over an already-established stream. */
export class DotConnection {
  readonly discarded: DiscardCounts = { unknownId: 0, mismatched: 0, malformed: 0 };
  #pending = new Map<number, Pending>();
  #writer: FramedWriter;
  #reader = new FrameReader();
  #closed = false;
  #lastReadAt: number;
  #cancelIdle: Cancel | null = null;

  constructor(private readonly stream: Deno.Conn, private readonly opts: ConnectionOptions) {
    this.#lastReadAt = opts.clock.now();
    this.#writer = new FramedWriter(stream, (err) => this.close(`write failed: ${errText(err)}`));
    this.#armIdle();
    this.#readLoop();
  }

  /** Queries outstanding right now. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** True once closed; a closed connection accepts nothing. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True while another query can be sent without exceeding the in-flight cap. */
  get hasCapacity(): boolean {
    return !this.#closed && this.#pending.size < this.opts.maxInFlight;
  }

  /** Sends one query and waits for its reply until `deadline`. */
  exchange(query: Uint8Array, question: Question, deadline: number): Promise<ConnectionResult> {
    if (this.#closed) return Promise.resolve({ ok: false, kind: "closed", message: "closed" });
    const id = this.#freeId();
    const { clock } = this.opts;
    this.#cancelIdle?.();
    this.#cancelIdle = null;
    return new Promise((settle) => {
      const sentAt = clock.now();
      const cancelTimer = clock.schedule(deadline - sentAt, () => this.#timeout(id, sentAt));
      this.#pending.set(id, { question, sentAt, settle, cancelTimer });
      this.#writer.send(withId(query, id));
    });
  }

  /** Closes the stream; every outstanding query resolves as `closed` (the pool may retry it). */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelIdle?.();
    try {
      this.stream.close();
    } catch { /* already closed by the peer */ }
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      p.cancelTimer();
      p.settle({ ok: false, kind: "closed", message: `connection closed: ${reason}` });
    }
    this.opts.onClose(this, reason);
  }

  #freeId(): number {
    for (;;) {
      const id = this.opts.random.uint16();
      if (!this.#pending.has(id)) return id;
    }
  }

  #timeout(id: number, sentAt: number): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    p.settle({ ok: false, kind: "timeout", message: "no reply before the deadline" });
    // A peer that has said nothing since this query went out is presumed dead: close it so the
    // next queries get a fresh connection instead of waiting on a silent one.
    if (this.#lastReadAt <= sentAt) this.close("peer silent");
    else this.#armIdle();
  }

  #deliver(message: Uint8Array): void {
    if (message.length < 12) {
      this.discarded.malformed++;
      return;
    }
    const id = (message[0] << 8) | message[1];
    const p = this.#pending.get(id);
    if (!p) {
      this.discarded.unknownId++;
      return;
    }
    const decoded = decodeQuery(message);
    if (!decoded.ok) {
      this.discarded.malformed++;
      return;
    }
    if (!questionMatches(p.question, decoded.value.question)) {
      this.discarded.mismatched++;
      return;
    }
    this.#pending.delete(id);
    p.cancelTimer();
    p.settle({ ok: true, reply: message });
    this.#armIdle();
  }

  #armIdle(): void {
    if (this.#pending.size > 0 || this.#closed || this.#cancelIdle) return;
    this.#cancelIdle = this.opts.clock.schedule(this.opts.idleTimeoutMs, () => {
      this.#cancelIdle = null;
      if (this.#pending.size === 0) this.close("idle");
    });
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(READ_BUFFER);
    let reason = "closed by peer";
    try {
      for (;;) {
        const n = await this.stream.read(buf);
        if (n === null) break;
        this.#lastReadAt = this.opts.clock.now();
        this.#reader.push(buf.subarray(0, n));
        for (let m = this.#reader.next(); m; m = this.#reader.next()) this.#deliver(m);
      }
    } catch (err) {
      if (!this.#closed) reason = `read failed: ${errText(err)}`;
    }
    this.close(reason);
  }
}
