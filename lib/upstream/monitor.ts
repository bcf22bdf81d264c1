/**
 * Health bookkeeping shared by every upstream kind: results update a Health (backoff), failures
 * schedule a background probe when the backoff ends, and episodes are logged once (the first
 * failure and the recovery, not every failed query). Clients never pay for probing: while an
 * upstream is failing, only the probe finds out whether it is back.
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
import { type BackoffOptions, Health } from "./health.ts";
import { type Exchange, failure, type UpstreamErrorKind } from "./upstream.ts";

/** The probe sent to a failing upstream: ". NS", which every recursive resolver can answer. */
export const PROBE = encodeQuery({ id: 0, name: ".", qtype: RRType.NS });

/** The question of {@link PROBE}, for matching its reply. */
export const PROBE_QUESTION: Question = (() => {
  const d = decodeQuery(PROBE);
  if (!d.ok || !d.value.question) throw new Error("probe query does not decode");
  return d.value.question;
})();

/** What a monitor needs: whom it watches, how to probe, and which failures are faults. */
export interface MonitorOptions {
  /** The upstream's name, for logs. */
  name: string;
  clock: Clock;
  random: Random;
  backoff: BackoffOptions;
  /** Sends {@link PROBE} bypassing the "down" shortcut, answering by `deadline`. */
  probe: (deadline: number) => Promise<Exchange>;
  /** How long a probe may take in all (connect plus answer). */
  probeBudgetMs: number;
  /**
   * Failure kinds that {@link HealthMonitor.record} counts. An upstream that records some kinds
   * where they happen (a pool records dial failures at the dial) leaves them out here; `down` and
   * `overloaded` are never new faults.
   */
  counts: readonly UpstreamErrorKind[];
}

const log = logger("upstream");

/** Health of one upstream plus its probe schedule. */
export class HealthMonitor {
  readonly health: Health;
  #cancelProbe: Cancel | null = null;
  #probing = false;
  #lastProbeAt = -Infinity;
  #closed = false;
  #counts: ReadonlySet<UpstreamErrorKind>;

  constructor(private readonly opts: MonitorOptions) {
    this.health = new Health(opts.clock, opts.random, opts.backoff);
    this.#counts = new Set(opts.counts);
  }

  /**
   * Records an exchange's outcome: a success ends an episode, a counted failure extends one, and a
   * query turned away as `down` asks for an early probe.
   */
  record(result: Exchange): void {
    if (result.ok) {
      if (this.health.succeed()) {
        log.info("upstream {upstream} recovered", { upstream: this.opts.name });
      }
      return;
    }
    const { kind, message } = result.error;
    if (kind === "down") this.#probeOnDemand();
    else if (this.#counts.has(kind)) this.fail(kind, message);
  }

  /** Records a failure found outside an exchange result (e.g. a background dial). */
  fail(kind: UpstreamErrorKind, message: string): void {
    if (this.#closed) return;
    const firstOfEpisode = this.health.fail();
    const fields = {
      upstream: this.opts.name,
      kind,
      reason: message,
      failures: this.health.failures,
    };
    if (firstOfEpisode) log.warn("upstream {upstream} failing: {reason}", fields);
    else log.debug("upstream {upstream} still failing: {reason}", fields);
    this.#scheduleProbe();
  }

  /** Stops probing; later results are ignored. */
  close(): void {
    this.#closed = true;
    this.#cancelProbe?.();
    this.#cancelProbe = null;
  }

  /** One probe at a time, due when the backoff ends; it reschedules itself while failing. */
  #scheduleProbe(): void {
    if (this.#cancelProbe || this.#probing || this.#closed) return;
    const { clock } = this.opts;
    this.#cancelProbe = clock.schedule(this.health.retryAt - clock.now(), () => {
      this.#cancelProbe = null;
      this.#probe();
    });
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
    this.record(result);
    // A failure the probe's upstream records itself (a dial) or does not count (overloaded)
    // schedules nothing here; still failing must always mean a probe is due.
    if (!this.health.available()) this.#scheduleProbe();
  }
}
