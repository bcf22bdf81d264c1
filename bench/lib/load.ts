/**
 * Paced load and its accounting: a {@link Pacer} says how many queries of a stream are due at
 * each tick of the generator (and how many it skipped because the tick came late), and
 * {@link tally} counts the outcomes of the queries sent (clients.ts records them).
 */
import type { Rec } from "./clients.ts";

/** The load is sent in ticks of this many ms. */
export const TICK_MS = 10;

/**
 * One stream of the load at a fixed rate: each tick asks how many are due by now. At most `cap`
 * are sent in one tick; a larger backlog (the tick came late) is skipped and counted, not sent
 * later. `cap` Infinity is catch-up pacing: a late tick sends the whole backlog.
 */
export class Pacer {
  /** Sent or skipped. */
  done = 0;
  skipped = 0;

  constructor(readonly rate: number, readonly cap: number) {}

  /** How many to send now, `s` seconds into the load. */
  due(s: number): number {
    const due = Math.ceil(this.rate * s) - this.done;
    if (due <= 0) return 0;
    const k = Math.min(due, this.cap);
    this.skipped += due - k;
    this.done += due;
    return k;
  }
}

/** Counts over a set of query records. */
export interface Tally {
  sent: number;
  noerror: number;
  servfail: number;
  other: number;
  tc: number;
  lost: number;
  late: number;
  mismatch: number;
  /** Latencies of answers within LOST_AFTER_MS, ascending. */
  lat: number[];
}

/** Tallies `recs`. */
export function tally(recs: Rec[]): Tally {
  const t: Tally = {
    sent: recs.length,
    noerror: 0,
    servfail: 0,
    other: 0,
    tc: 0,
    lost: 0,
    late: 0,
    mismatch: 0,
    lat: [],
  };
  for (const r of recs) {
    if (r.lost || r.ms < 0) {
      t.lost++;
      if (r.late) t.late++;
      continue;
    }
    if (r.mismatch) t.mismatch++;
    if (r.tc) t.tc++;
    if (r.rcode === 0) t.noerror++;
    else if (r.rcode === 2) t.servfail++;
    else t.other++;
    t.lat.push(r.ms);
  }
  t.lat.sort((a, b) => a - b);
  return t;
}
