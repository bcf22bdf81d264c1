/**
 * Failure bookkeeping for one upstream: after a failure it is avoided and probed after a backoff
 * period that doubles (with jitter) up to a cap; a success clears it. Episodes are what get
 * logged: the first failure and the recovery, not every failed query.
 */
import type { Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";

/** Backoff bounds in milliseconds. */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

/** Whether an upstream should be tried first, and since when it has been failing. */
export class Health {
  #failures = 0;
  #retryAt = 0;
  #backoffMs = 0;

  constructor(
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly backoff: BackoffOptions,
  ) {}

  /**
   * True when healthy. A failing upstream becomes available again only when a background probe
   * (or a query on a connection that is still open) succeeds, so clients never pay for probing.
   */
  available(): boolean {
    return this.#failures === 0;
  }

  /** When the next probe is due (0 when healthy); orders upstreams when all are down. */
  get retryAt(): number {
    return this.#retryAt;
  }

  /** Consecutive failures without a success in between. */
  get failures(): number {
    return this.#failures;
  }

  /** Records a failure; returns true when it starts a new episode (was healthy before). */
  fail(): boolean {
    this.#failures++;
    this.#backoffMs = this.#failures === 1
      ? this.backoff.baseMs
      : Math.min(this.#backoffMs * 2, this.backoff.maxMs);
    const jitter = 0.8 + 0.4 * this.random.float();
    this.#retryAt = this.clock.now() + this.#backoffMs * jitter;
    return this.#failures === 1;
  }

  /** Records a success; returns true when it ends an episode (was failing before). */
  succeed(): boolean {
    const recovered = this.#failures > 0;
    this.#failures = 0;
    this.#retryAt = 0;
    return recovered;
  }
}
