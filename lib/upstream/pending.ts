/**
 * The queries outstanding on one upstream channel (a TCP/TLS connection or a UDP socket): each
 * gets an ID unique among those in flight on the channel, drawn from the injected (in production
 * cryptographic) Random, and a deadline on the clock. A reply settles a query only when its ID and
 * its question both match; anything else is discarded and counted, never delivered. Shared so
 * that every transport applies the same anti-spoofing rules.
 */
import { decodeMessage, isResponse, type Message, type Question } from "../dns/message.ts";
import { questionMatches } from "../dns/reply.ts";
import type { Cancel, Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";

/** What a single send on a channel came to. */
export type ConnectionResult =
  | { ok: true; reply: Uint8Array; msg: Message }
  | { ok: false; kind: "timeout" | "closed"; message: string };

/** Counters of replies a channel threw away; pools add them to their metrics. */
export interface DiscardCounts {
  unknownId: number;
  mismatched: number;
  malformed: number;
}

/** Sum of a channel's discard counters. */
export function totalDiscards(d: DiscardCounts): number {
  return d.unknownId + d.mismatched + d.malformed;
}

interface Pending {
  question: Question;
  settle: (r: ConnectionResult) => void;
  cancelTimer: Cancel;
}

/** The most IDs a 16-bit field holds; a channel must cap its in-flight queries below this. */
export const ID_SPACE = 65536;

/** ID allocation, deadlines and reply matching for one channel. */
export class PendingQueries {
  readonly discarded: DiscardCounts = { unknownId: 0, mismatched: 0, malformed: 0 };
  #pending = new Map<number, Pending>();

  /**
   * `onTimeout` runs after a query timed out (already settled), with the time it was sent, so
   * the channel can judge whether its peer has gone silent.
   */
  constructor(
    private readonly opts: { clock: Clock; random: Random; onTimeout?: (sentAt: number) => void },
  ) {}

  /** Queries outstanding right now. */
  get size(): number {
    return this.#pending.size;
  }

  /**
   * Registers a query due by `deadline`: returns the ID to put on the wire and the promise of its
   * outcome. The caller keeps `size` below {@link ID_SPACE}.
   */
  add(question: Question, deadline: number): { id: number; result: Promise<ConnectionResult> } {
    const id = this.#freeId();
    const { clock } = this.opts;
    const sentAt = clock.now();
    const result = new Promise<ConnectionResult>((settle) => {
      const cancelTimer = clock.schedule(deadline - sentAt, () => this.#timeout(id, sentAt));
      this.#pending.set(id, { question, settle, cancelTimer });
    });
    return { id, result };
  }

  /**
   * Offers a reply. Returns its decoded form when it settled a query; null when it was
   * discarded (too short or undecodable, unknown ID, QR=0, or a question that does not match).
   */
  deliver(message: Uint8Array): Message | null {
    if (message.length < 12) {
      this.discarded.malformed++;
      return null;
    }
    const id = (message[0] << 8) | message[1];
    const p = this.#pending.get(id);
    if (!p) {
      this.discarded.unknownId++;
      return null;
    }
    // A message with QR=0 is a query, not the answer to ours (a reflection, or a peer echoing
    // what it got): thrown away like a wrong ID, and the query keeps waiting for its reply.
    if (!isResponse(message)) {
      this.discarded.mismatched++;
      return null;
    }
    // Bytes after the message are ignored, as other resolvers do (decodeMessage stops at `end`).
    const decoded = decodeMessage(message);
    if (!decoded.ok) {
      this.discarded.malformed++;
      return null;
    }
    if (!questionMatches(p.question, decoded.value.question)) {
      this.discarded.mismatched++;
      return null;
    }
    this.#pending.delete(id);
    p.cancelTimer();
    p.settle({ ok: true, reply: message, msg: decoded.value });
    return decoded.value;
  }

  /** Settles one query as `closed` (e.g. its datagram could not be sent). */
  abort(id: number, message: string): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    p.cancelTimer();
    p.settle({ ok: false, kind: "closed", message });
  }

  /** Settles every outstanding query as `closed` (the owner may retry them elsewhere). */
  closeAll(message: string): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      p.cancelTimer();
      p.settle({ ok: false, kind: "closed", message });
    }
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
    this.opts.onTimeout?.(sentAt);
  }
}
