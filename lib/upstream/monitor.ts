/**
 * Health bookkeeping shared by every upstream kind: results go through the one health policy
 * (see health.ts), failures schedule a background probe when the backoff ends, and episodes are
 * logged once (the first failure and the recovery, not every failed query). Clients never pay
 * for probing: while an upstream is failing, only the probe finds out whether it is back.
 *
 * An episode started by connection failures is probed when the backoff ends. One started by
 * sustained answer failures is probed at once (at most once per `baseMs`): those failures might
 * still be slow names rather than a dead server, and the probe tells which within a round trip.
 *
 * The backoff grows while nobody needs the upstream, but clients turned away with `down` bring the
 * next probe forward, at most one per `baseMs`: under traffic an upstream that comes back is
 * noticed within about a second, not after a backoff that grew to `maxMs` during the outage.
 */
import { decodeQuery, type Question, RRType } from "../dns/message.ts";
import { encodeQuery } from "../dns/reply.ts";
import type { Cancel, Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import type { Random } from "../sys/random.ts";
import { type BackoffOptions, FAILURE_WEIGHT, Health, type HealthPolicy } from "./health.ts";
import { type Exchange, failure, type UpstreamErrorKind } from "./upstream.ts";

/** The probe sent to a failing upstream: ". NS", which every recursive resolver can answer. */
export const PROBE = encodeQuery({ id: 0, name: ".", qtype: RRType.NS });

/** The question of {@link PROBE}, for matching its reply. */
export const PROBE_QUESTION: Question = (() => {
  const d = decodeQuery(PROBE);
  if (!d.ok || !d.value.question) throw new Error("probe query does not decode");
  return d.value.question;
})();

/** What a monitor needs: whom it watches, how to probe, and which failures it records itself. */
export interface MonitorOptions {
  /** The upstream's name, for logs. */
  name: string;
  clock: Clock;
  random: Random;
  backoff: BackoffOptions;
  /** The health policy's tuning; defaults from health.ts. */
  policy?: Partial<HealthPolicy>;
  /** Sends {@link PROBE} bypassing the "down" shortcut, answering by `deadline`. */
  probe: (deadline: number) => Promise<Exchange>;
  /** How long a probe may take in all (connect plus answer). */
  probeBudgetMs: number;
  /**
   * Failure kinds the upstream reports itself through {@link HealthMonitor.fail} where they
   * happen (a pool reports a failed dial at the dial, which a query may not have waited for), so
   * that exchange results of these kinds are not counted a second time. Default none.
   */
  reportedAtSource?: readonly UpstreamErrorKind[];
}

const log = logger("upstream");

/** Health of one upstream plus its probe schedule. */
export class HealthMonitor {
  readonly health: Health;
  #cancelProbe: Cancel | null = null;
  #probing = false;
  #lastProbeAt = -Infinity;
  #closed = false;
  #reportedAtSource: ReadonlySet<UpstreamErrorKind>;

  constructor(private readonly opts: MonitorOptions) {
    this.health = new Health(opts.clock, opts.random, opts.backoff, opts.policy);
    this.#reportedAtSource = new Set(opts.reportedAtSource);
  }

  /**
   * Records an exchange's outcome, given `answeredAtSend` (the `health.answered` read when its
   * query was sent): a success ends an episode, a failure is judged by the health policy, and a
   * query turned away as `down` asks for an early probe.
   */
  record(result: Exchange, answeredAtSend: number): void {
    if (this.#closed) return;
    if (result.ok) {
      if (this.health.succeed()) {
        log.info("upstream {upstream} recovered", { upstream: this.opts.name });
      }
      return;
    }
    const { kind, message } = result.error;
    if (kind === "down") return this.#probeOnDemand();
    if (this.#reportedAtSource.has(kind)) return;
    const verdict = this.health.judge(kind, answeredAtSend);
    if (verdict === "counted") {
      log.debug("upstream {upstream}: {reason} ({count} of {threshold} before down)", {
        upstream: this.opts.name,
        kind,
        reason: message,
        count: this.health.silentFailures,
        threshold: this.health.failureThreshold,
      });
    } else if (verdict === "down") {
      this.#logFailure(kind, message, true);
      if (FAILURE_WEIGHT[kind] === "answer") this.#probeSoon();
      else this.#scheduleProbe();
    }
  }

  /**
   * Records a connection-level failure found outside an exchange result (e.g. a background
   * dial): it starts an episode at once, or extends the current one.
   */
  fail(kind: UpstreamErrorKind, message: string): void {
    if (this.#closed) return;
    this.#logFailure(kind, message, this.health.fail());
    this.#scheduleProbe();
  }

  /** Stops probing; later results are ignored. */
  close(): void {
    this.#closed = true;
    this.#cancelProbe?.();
    this.#cancelProbe = null;
  }

  #logFailure(kind: UpstreamErrorKind, message: string, firstOfEpisode: boolean): void {
    const fields = {
      upstream: this.opts.name,
      kind,
      reason: message,
      failures: this.health.failures,
    };
    if (firstOfEpisode) log.warn("upstream {upstream} failing: {reason}", fields);
    else log.debug("upstream {upstream} still failing: {reason}", fields);
  }

  /** One probe at a time, due when the backoff ends; it reschedules itself while failing. */
  #scheduleProbe(at = this.health.retryAt): void {
    if (this.#cancelProbe || this.#probing || this.#closed) return;
    const { clock } = this.opts;
    this.#cancelProbe = clock.schedule(at - clock.now(), () => {
      this.#cancelProbe = null;
      this.#probe();
    });
  }

  /** A probe now, or once a base backoff period has passed since the last one. */
  #probeSoon(): void {
    this.#cancelProbe?.();
    this.#cancelProbe = null;
    this.#scheduleProbe(
      Math.max(this.opts.clock.now(), this.#lastProbeAt + this.opts.backoff.baseMs),
    );
  }

  /** A client was turned away: probe now unless a probe ran within the base backoff period. */
  #probeOnDemand(): void {
    if (this.#probing || this.#closed || this.health.available()) return;
    if (this.opts.clock.now() - this.#lastProbeAt < this.opts.backoff.baseMs) return;
    this.#cancelProbe?.();
    this.#cancelProbe = null;
    this.#probe();
  }

  async #probe(): Promise<void> {
    const { clock } = this.opts;
    this.#probing = true;
    this.#lastProbeAt = clock.now();
    const answeredAtSend = this.health.answered;
    let result: Exchange;
    try {
      result = await this.opts.probe(clock.now() + this.opts.probeBudgetMs);
    } catch (err) { // probes report failures as values; a throw is a bug, but must not crash
      result = failure("protocol", this.opts.name, `probe threw: ${errText(err)}`);
    } finally {
      this.#probing = false;
    }
    if (this.#closed) return;
    log.debug("probe of {upstream}: {outcome}", {
      upstream: this.opts.name,
      outcome: result.ok ? "answered" : result.error.message,
    });
    this.#recordProbe(result, answeredAtSend);
    // A failure the probe's upstream records itself (a dial) or that is no evidence (overloaded)
    // schedules nothing here; still failing must always mean a probe is due.
    if (!this.health.available()) this.#scheduleProbe();
  }

  /**
   * A probe's outcome: while down, any failure that is evidence extends the episode (the probe is
   * what decides then); if a query ended the episode meanwhile, the policy judges it like a query.
   */
  #recordProbe(result: Exchange, answeredAtSend: number): void {
    if (result.ok || this.health.available()) return this.record(result, answeredAtSend);
    const { kind, message } = result.error;
    if (FAILURE_WEIGHT[kind] === "none" || this.#reportedAtSource.has(kind)) return;
    this.#logFailure(kind, message, this.health.fail());
  }
}
