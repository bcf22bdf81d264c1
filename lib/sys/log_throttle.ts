/**
 * Rate-limited logging for events a client can repeat at will (faults, refusals, pin mismatches):
 * one line per interval, with how many were silenced since, so logs cannot be flooded.
 */
import type { Clock } from "./clock.ts";

/**
 * Lets one event through per interval and counts the rest, so a fault that repeats on every
 * query cannot flood the log (or cost more CPU than the queries it breaks).
 */
export class LogThrottle {
  #nextAt = -Infinity;
  #suppressed = 0;

  constructor(private readonly clock: Clock, private readonly intervalMs: number) {}

  /** Null when this event should stay silent; otherwise how many were silenced before it. */
  take(): number | null {
    const now = this.clock.now();
    if (now < this.#nextAt) {
      this.#suppressed++;
      return null;
    }
    this.#nextAt = now + this.intervalMs;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    return suppressed;
  }
}
