/**
 * Time enters the program only through a Clock, so that every rule that depends on time
 * (timeouts, backoff, idle expiry, cache TTLs) can be driven by a fake clock in tests.
 */

/** Cancels a scheduled callback; calling it twice is harmless. */
export type Cancel = () => void;

/** A monotonic millisecond clock that can also run a callback later. */
export interface Clock {
  /** Milliseconds on a monotonic scale; only differences are meaningful. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds unless cancelled first. */
  schedule(ms: number, fn: () => void): Cancel;
}

/** The real clock: `performance.now()` and host timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  schedule(ms, fn) {
    const id = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(id);
  },
};
