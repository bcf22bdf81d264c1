/**
 * A clock that moves only when a test says so. Timers scheduled through it fire, in order of
 * due time, inside `advance`, so timeouts, backoff and idle expiry are tested without sleeping.
 */
import type { Cancel, Clock } from "../../lib/sys/clock.ts";
import { Rng } from "./rng.ts";

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  live: boolean;
}

/** A manually driven Clock. */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: Timer[] = [];

  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  schedule(ms: number, fn: () => void): Cancel {
    const t = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, live: true };
    this.#timers.push(t);
    return () => {
      t.live = false;
    };
  }

  /** Timers still waiting to fire. */
  get pending(): number {
    return this.#timers.filter((t) => t.live).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      this.#timers = this.#timers.filter((t) => t.live);
      let next: Timer | null = null;
      for (const t of this.#timers) {
        if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) {
          next = t;
        }
      }
      if (!next) break;
      next.live = false;
      this.#now = next.at;
      next.fn();
    }
    this.#now = target;
  }
}

/** A deterministic Random for tests: the seeded generator of rng.ts behind lib/sys's interface. */
export function seededRandom(seed = 0x2545f491): { uint16(): number; float(): number } {
  const rng = new Rng(seed);
  return { uint16: () => rng.u32() & 0xffff, float: () => rng.u32() / 4294967296 };
}
