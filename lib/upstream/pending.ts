/**
 * The queries outstanding on one upstream channel (a TCP/TLS connection or a UDP socket): each
 * gets an ID unique among those in flight on the channel, drawn from the injected (in production
 * cryptographic) Random, and a deadline on the clock. A reply settles a query only when its ID and
 * its question both match; anything else is discarded and counted, never delivered. Shared so
 * that every transport applies the same anti-spoofing rules.
 */
import { decodeMessage, isResponse, type Message, type Question } from "../dns/message.ts";
import { questionMatches } from "../dns/reply.ts";
import type { Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";
import { DeadlineQueue } from "./deadlines.ts";

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
  /** Which add this is: the deadline entry that belongs to it carries the same number. */
  token: number;
  sentAt: number;
}

/** Answered entries tolerated in the deadline heap beyond the live ones before a compaction. */
const COMPACT_SLACK = 64;

/** The most IDs a 16-bit field holds; a channel must cap its in-flight queries below this. */
export const ID_SPACE = 65536;

/** ID allocation, deadlines and reply matching for one channel. */
export class PendingQueries {
  readonly discarded: DiscardCounts = { unknownId: 0, mismatched: 0, malformed: 0 };
  #pending = new Map<number, Pending>();
  /** One timer for every deadline on the channel (see deadlines.ts). */
  #deadlines: DeadlineQueue;
  #tokens = 0;
  #isLive = (id: number, token: number) => this.#pending.get(id)?.token === token;

  /**
   * `onTimeout` runs after a query timed out (already settled), with the time it was sent, so
   * the channel can judge whether its peer has gone silent.
   */
  constructor(
    private readonly opts: { clock: Clock; random: Random; onTimeout?: (sentAt: number) => void },
  ) {
    this.#deadlines = new DeadlineQueue(opts.clock, (id, token) => this.#timeout(id, token));
  }

  /** Queries outstanding right now. */
  get size(): number {
    return this.#pending.size;
  }

  /** Entries in the deadline heap, answered ones not yet swept included (tests: it stays bounded). */
  get deadlinesHeld(): number {
    return this.#deadlines.size;
  }

  /**
   * Registers a query due by `deadline`: returns the ID to put on the wire and the promise of its
   * outcome. The caller keeps `size` below {@link ID_SPACE}.
   */
  add(question: Question, deadline: number): { id: number; result: Promise<ConnectionResult> } {
    const id = this.#freeId();
    const sentAt = this.opts.clock.now();
    const token = ++this.#tokens;
    let settle!: (r: ConnectionResult) => void;
    const result = new Promise<ConnectionResult>((resolve) => (settle = resolve));
    this.#pending.set(id, { question, settle, token, sentAt });
    const deadlines = this.#deadlines;
    deadlines.add(deadline, id, token);
    // Answered entries wait in the heap until they come due; past a slack they are swept out at
    // once, so the heap stays proportional to what is in flight.
    if (deadlines.size > 2 * this.#pending.size + COMPACT_SLACK) deadlines.compact(this.#isLive);
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
    this.#forget(id);
    p.settle({ ok: true, reply: message, msg: decoded.value });
    return decoded.value;
  }

  /** Settles one query as `closed` (e.g. its datagram could not be sent). */
  abort(id: number, message: string): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#forget(id);
    p.settle({ ok: false, kind: "closed", message });
  }

  /** Settles every outstanding query as `closed` (the owner may retry them elsewhere). */
  closeAll(message: string): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#deadlines.clear();
    for (const p of pending) p.settle({ ok: false, kind: "closed", message });
  }

  /** Removes a settled query; with nothing left in flight the deadline timer goes too. */
  #forget(id: number): void {
    this.#pending.delete(id);
    if (this.#pending.size === 0) this.#deadlines.clear();
  }

  #freeId(): number {
    for (;;) {
      const id = this.opts.random.uint16();
      if (!this.#pending.has(id)) return id;
    }
  }

  #timeout(id: number, token: number): void {
    const p = this.#pending.get(id);
    if (!p || p.token !== token) return; // answered (or the ID reused) before its deadline
    this.#forget(id);
    p.settle({ ok: false, kind: "timeout", message: "no reply before the deadline" });
    this.opts.onTimeout?.(p.sentAt);
  }
}
