/**
 * One DNS stream connection (TCP, or TLS for DoT) shared by many queries at once (RFC 7766
 * pipelining). Each query gets an ID unique on this connection; replies may come in any order and
 * are matched by ID and question (see PendingQueries). The connection closes itself when idle,
 * before the server would: after our idle timeout, or sooner if the server announced a shorter
 * one with edns-tcp-keepalive (RFC 7828).
 */
import type { Question } from "../dns/message.ts";
import { keepaliveTimeoutMs } from "../dns/edns.ts";
import { setId } from "../dns/reply.ts";
import { FramedWriter, FrameReader } from "../dns/framing.ts";
import type { Cancel, Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";
import { errText } from "../sys/errors.ts";
import { type ConnectionResult, type DiscardCounts, PendingQueries } from "./pending.ts";
import type { UpstreamStream } from "./dial.ts";

export type { ConnectionResult, DiscardCounts } from "./pending.ts";

/**
 * How much earlier than a server's announced keepalive timeout we close an idle connection, so
 * a query is never written into a connection the server is just closing.
 */
export const KEEPALIVE_MARGIN_MS = 1000;

/** Tuning and collaborators for a connection. */
export interface ConnectionOptions {
  clock: Clock;
  random: Random;
  /** The most queries outstanding at once on this connection. */
  maxInFlight: number;
  /** Close after this long with nothing outstanding (servers drop idle clients; we go first). */
  idleTimeoutMs: number;
  /** Told once, when the connection is closed for any reason. */
  onClose: (conn: StreamConnection, reason: string) => void;
}

const READ_BUFFER = 65536 + 2;

/** A pipelined DNS client connection over an already-established stream. */
export class StreamConnection {
  #pending: PendingQueries;
  #writer: FramedWriter;
  #reader = new FrameReader();
  #closed = false;
  #silent = false;
  /** When the peer last sent anything; -Infinity before it ever has. */
  #lastReadAt = -Infinity;
  #cancelIdle: Cancel | null = null;
  #idleTimeoutMs: number;

  constructor(private readonly stream: UpstreamStream, private readonly opts: ConnectionOptions) {
    this.#idleTimeoutMs = opts.idleTimeoutMs;
    this.#pending = new PendingQueries({
      clock: opts.clock,
      random: opts.random,
      onTimeout: (sentAt) => this.#timedOut(sentAt),
    });
    this.#writer = new FramedWriter(stream, (err) => this.close(`write failed: ${errText(err)}`));
    this.#armIdle();
    this.#readLoop();
  }

  /** Replies this connection threw away (unknown ID, wrong question, malformed). */
  get discarded(): DiscardCounts {
    return this.#pending.discarded;
  }

  /** Queries outstanding right now. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** True once closed; a closed connection accepts nothing. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * True once closed by us because the peer said nothing while a query timed out: the queries
   * it still carried got no reply, which is all that is known about them (not a broken
   * connection: the server may just be slow on those names).
   */
  get abandonedAsSilent(): boolean {
    return this.#silent;
  }

  /** True while another query can be sent without exceeding the in-flight cap. */
  get hasCapacity(): boolean {
    return !this.#closed && this.#pending.size < this.opts.maxInFlight;
  }

  /** The idle timeout in force: ours, or shorter if the server announced one (RFC 7828). */
  get idleTimeoutMs(): number {
    return this.#idleTimeoutMs;
  }

  /**
   * Sends one query and waits for its reply until `deadline`. The connection takes `query` over:
   * its ID is overwritten in place (no copy per query), so the caller passes a buffer of its own.
   */
  exchange(query: Uint8Array, question: Question, deadline: number): Promise<ConnectionResult> {
    if (this.#closed) return Promise.resolve({ ok: false, kind: "closed", message: "closed" });
    this.#cancelIdle?.();
    this.#cancelIdle = null;
    const { id, result } = this.#pending.add(question, deadline);
    setId(query, id);
    this.#writer.send(query);
    return result;
  }

  /** Closes the stream; every outstanding query resolves as `closed` (the pool may retry it). */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelIdle?.();
    try {
      this.stream.close();
    } catch { /* already closed by the peer */ }
    this.#pending.closeAll(`connection closed: ${reason}`);
    this.opts.onClose(this, reason);
  }

  #timedOut(sentAt: number): void {
    // A peer that has said nothing since this query went out is presumed dead: close it so the
    // next queries get a fresh connection instead of waiting on a silent one. (A read at the
    // same instant as the send counts as heard from: on a coarse or fake clock, a peer that is
    // answering other names must not be taken for a dead one.)
    if (this.#lastReadAt < sentAt) {
      this.#silent = true;
      this.close("peer silent");
    } else this.#armIdle();
  }

  #deliver(message: Uint8Array): void {
    const msg = this.#pending.deliver(message);
    if (!msg) return;
    const announced = keepaliveTimeoutMs(msg.edns);
    if (announced !== null) {
      this.#idleTimeoutMs = Math.max(
        0,
        Math.min(this.opts.idleTimeoutMs, announced - KEEPALIVE_MARGIN_MS),
      );
    }
    this.#armIdle();
  }

  #armIdle(): void {
    if (this.#pending.size > 0 || this.#closed || this.#cancelIdle) return;
    this.#cancelIdle = this.opts.clock.schedule(this.#idleTimeoutMs, () => {
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
