/**
 * The health policy every upstream kind follows (DoT, TCP, UDP, DoH), and the failure bookkeeping
 * for one upstream.
 *
 * What marks an upstream down:
 * - A connection-level failure, at once: the connection could not be made (refused, unreachable,
 *   connect or TLS handshake timed out, certificate rejected), or it went away with the query
 *   outstanding and no answer, or a datagram could not be sent.
 * - Sustained answer failures: a query that got no reply in time, or a reply that is not a usable
 *   answer, says little by itself — one slow or broken name looks the same as a dead server. Such
 *   a failure counts only when the upstream has given no usable answer to anything since that
 *   query was sent, and the upstream is down after {@link DEFAULT_FAILURE_THRESHOLD} of them in a
 *   row. So a slow name costs only its own queries while other names are being answered, and
 *   a burst of slow names sent at once cannot add up either.
 * - `down` and `overloaded` are our own decisions, never evidence against the upstream.
 *
 * Any usable answer (whatever its rcode) resets the count and ends an episode. While down, the
 * upstream is avoided and probed after a backoff period that doubles (with jitter) up to a cap.
 * Episodes are what get logged: the first failure and the recovery, not every failed query.
 */
import type { Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";
import type { UpstreamErrorKind } from "./upstream.ts";

/** Backoff bounds in milliseconds. */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

/**
 * How much one failure of a kind says about the upstream: `connection` marks it down at once,
 * `answer` counts towards the sustained-failure threshold, `none` is no evidence at all.
 */
export type FailureWeight = "connection" | "answer" | "none";

/** The weight of every failure kind; declared once, for every upstream kind. */
export const FAILURE_WEIGHT: Readonly<Record<UpstreamErrorKind, FailureWeight>> = Object.freeze({
  connect: "connection",
  tls: "connection",
  closed: "connection",
  timeout: "answer",
  protocol: "answer",
  down: "none",
  overloaded: "none",
});

/**
 * Answer failures in a row, each with no usable answer from the upstream since its query was
 * sent, that mark an upstream down. Three rides out a single lost datagram or two at low traffic;
 * under any traffic a dead upstream reaches it within about one attempt timeout.
 */
export const DEFAULT_FAILURE_THRESHOLD = 3;

/** Tuning of the health policy. */
export interface HealthPolicy {
  /** See {@link DEFAULT_FAILURE_THRESHOLD}; at least 1. */
  failureThreshold: number;
}

/** The policy's defaults. */
export const DEFAULT_HEALTH_POLICY: Readonly<HealthPolicy> = Object.freeze({
  failureThreshold: DEFAULT_FAILURE_THRESHOLD,
});

/**
 * What one failed exchange did to the health: `ignored` (no evidence, or already down: only the
 * probe decides then), `counted` (one more answer failure, still up), `down` (a new episode).
 */
export type Verdict = "ignored" | "counted" | "down";

/** Whether an upstream should be tried first, and since when it has been failing. */
export class Health {
  #failures = 0;
  #retryAt = 0;
  #backoffMs = 0;
  #answered = 0;
  #silentFailures = 0;
  #threshold: number;

  constructor(
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly backoff: BackoffOptions,
    policy: Partial<HealthPolicy> = {},
  ) {
    const threshold = policy.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD;
    if (!Number.isInteger(threshold) || threshold < 1) {
      throw new RangeError(`failure threshold must be a positive integer, not ${threshold}`);
    }
    this.#threshold = threshold;
  }

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

  /** Failures recorded in the current episode (0 when healthy). */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Usable answers so far: read it when a query is sent and pass it to {@link judge} if the query
   * fails, so the policy knows whether anything was answered in between.
   */
  get answered(): number {
    return this.#answered;
  }

  /** Answer failures counted towards the threshold since the last answer or episode. */
  get silentFailures(): number {
    return this.#silentFailures;
  }

  /** The sustained-failure threshold in force. */
  get failureThreshold(): number {
    return this.#threshold;
  }

  /**
   * Applies the policy to a failed exchange of `kind` whose query was sent when {@link answered}
   * read `answeredAtSend`. Starts an episode (calls {@link fail}) when the verdict is `down`.
   */
  judge(kind: UpstreamErrorKind, answeredAtSend: number): Verdict {
    const weight = FAILURE_WEIGHT[kind];
    if (weight === "none" || !this.available()) return "ignored";
    if (weight === "answer") {
      if (answeredAtSend !== this.#answered) return "ignored"; // it answered since: alive
      if (++this.#silentFailures < this.#threshold) return "counted";
    }
    this.fail();
    return "down";
  }

  /**
   * Records a failure that needs no judging (a failed dial, a failed probe): starts an episode
   * or extends it. Returns true when it starts a new episode (was healthy before).
   */
  fail(): boolean {
    this.#failures++;
    this.#silentFailures = 0;
    this.#backoffMs = this.#failures === 1
      ? this.backoff.baseMs
      : Math.min(this.#backoffMs * 2, this.backoff.maxMs);
    const jitter = 0.8 + 0.4 * this.random.float();
    this.#retryAt = this.clock.now() + this.#backoffMs * jitter;
    return this.#failures === 1;
  }

  /** Records a usable answer; returns true when it ends an episode (was failing before). */
  succeed(): boolean {
    const recovered = this.#failures > 0;
    this.#answered++;
    this.#silentFailures = 0;
    this.#failures = 0;
    this.#retryAt = 0;
    return recovered;
  }
}
