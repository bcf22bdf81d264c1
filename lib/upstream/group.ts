/**
 * Several upstreams behind one strategy. Health stays per member: a member that is backing off
 * goes to the back of the line rather than being skipped, so when every member is failing the one
 * due to recover soonest is still tried. Among the healthy members the strategy decides:
 *
 * - `failover`: configured order; the next one only when the one before fails.
 * - `round_robin`: each query starts one member further along, spreading the load.
 * - `fastest`: the lowest smoothed round-trip time first; about 5% of queries start elsewhere
 *   (chosen through the injected Random), so every member's RTT stays known.
 * - `parallel`: the query goes to every healthy member at once; the first good answer wins and
 *   the others are ignored (each member still records its own outcome).
 *
 * Within a query, failures fall through to the next member in that order, each attempt capped at
 * `attemptTimeoutMs` and all of them at the query's deadline.
 */
import { decodeHeader, type Message, type Question, Rcode, rcodeOf } from "../dns/message.ts";
import type { Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";
import type { Health } from "./health.ts";
import { type Exchange, failure, type Upstream, type UpstreamErrorKind } from "./upstream.ts";

/** An upstream with failure bookkeeping the group can order by. */
export interface GroupMember extends Upstream {
  readonly health: Health;
}

/** Every strategy, declared once: config validation and messages read this list. */
export const STRATEGIES = ["failover", "round_robin", "fastest", "parallel"] as const;

/** How a group picks members; see the module comment. */
export type Strategy = typeof STRATEGIES[number];

/** Collaborators and tuning of a group. */
export interface GroupOptions {
  /** The group's name in logs and errors (split DNS: the upstream group). Default "group". */
  name?: string;
  clock: Clock;
  /** One try at one member before the next. */
  attemptTimeoutMs: number;
  /** Default `failover`. */
  strategy?: Strategy;
  /** Needed by `fastest` (exploration); unused otherwise. */
  random?: Random;
  /** Told the outcome and duration of every attempt at a member (metrics). */
  onResult?: (member: string, kind: UpstreamErrorKind | null, ms: number) => void;
}

/** Share of `fastest` queries sent to a member other than the fastest, to keep measuring it. */
export const EXPLORE_SHARE = 0.05;
/** Weight of a new sample in the smoothed RTT (exponentially weighted moving average). */
export const RTT_WEIGHT = 0.3;

/** Sends each query to its members according to a strategy. */
export class UpstreamGroup implements Upstream {
  readonly name: string;
  readonly strategy: Strategy;
  #rtt = new Map<GroupMember, number>();
  #next = 0;

  constructor(
    private readonly members: readonly GroupMember[],
    private readonly opts: GroupOptions,
  ) {
    this.name = opts.name ?? "group";
    this.strategy = opts.strategy ?? "failover";
    if (this.strategy === "fastest" && !opts.random) {
      throw new RangeError("the fastest strategy needs a Random");
    }
  }

  /** The smoothed RTT of a member in milliseconds, or undefined before its first answer. */
  rttOf(member: GroupMember): number | undefined {
    return this.#rtt.get(member);
  }

  async exchange(
    query: Uint8Array,
    question: Question,
    deadline: number,
    decoded?: Message,
  ): Promise<Exchange> {
    const { healthy, resting } = this.#split();
    let order: GroupMember[];
    let last: Exchange | null = null;
    if (this.strategy === "parallel" && healthy.length > 1) {
      const r = await this.#parallel(healthy, query, question, deadline, decoded);
      if (r.ok) return r;
      last = r;
      order = resting;
    } else {
      order = this.#arrange(healthy).concat(resting);
    }
    for (const member of order) {
      if (this.opts.clock.now() >= deadline) break;
      const result = await this.#attempt(member, query, question, deadline, decoded);
      if (result.ok) return result;
      last = result;
    }
    return last ??
      failure("timeout", this.name, "query deadline passed before any upstream answered");
  }

  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.close()));
  }

  /** Healthy members in configured order, and the backing-off ones, soonest recovery first. */
  #split(): { healthy: GroupMember[]; resting: GroupMember[] } {
    const healthy: GroupMember[] = [];
    const resting: GroupMember[] = [];
    for (const m of this.members) (m.health.available() ? healthy : resting).push(m);
    if (resting.length > 1) resting.sort((a, b) => a.health.retryAt - b.health.retryAt);
    return { healthy, resting };
  }

  /** The healthy members in the order this strategy tries them. */
  #arrange(healthy: GroupMember[]): GroupMember[] {
    const n = healthy.length;
    if (n < 2) return healthy;
    switch (this.strategy) {
      case "round_robin": {
        const start = this.#next++ % n;
        if (this.#next >= Number.MAX_SAFE_INTEGER) this.#next = 0;
        return healthy.slice(start).concat(healthy.slice(0, start));
      }
      case "fastest": {
        // Unmeasured members sort first, so each gets measured; ties keep configured order.
        const byRtt = healthy
          .map((m, i) => ({ m, i, rtt: this.#rtt.get(m) ?? -1 }))
          .sort((a, b) => a.rtt - b.rtt || a.i - b.i)
          .map((x) => x.m);
        const random = this.opts.random!;
        if (random.float() < EXPLORE_SHARE) {
          const pick = 1 + Math.floor(random.float() * (n - 1));
          const [explored] = byRtt.splice(pick, 1);
          byRtt.unshift(explored);
        }
        return byRtt;
      }
      default:
        return healthy;
    }
  }

  /** One member, one attempt, with the RTT sample `fastest` needs. */
  async #attempt(
    member: GroupMember,
    query: Uint8Array,
    question: Question,
    deadline: number,
    decoded: Message | undefined,
  ): Promise<Exchange> {
    const { clock, attemptTimeoutMs } = this.opts;
    const started = clock.now();
    const result = await member.exchange(
      query,
      question,
      Math.min(deadline, started + attemptTimeoutMs),
      decoded,
    );
    const ms = clock.now() - started;
    // A timeout is a (pessimistic) sample too, so a member that stops answering loses its place.
    if (result.ok || result.error.kind === "timeout") this.#sample(member, ms);
    this.opts.onResult?.(member.name, result.ok ? null : result.error.kind, ms);
    return result;
  }

  #sample(member: GroupMember, ms: number): void {
    const old = this.#rtt.get(member);
    this.#rtt.set(member, old === undefined ? ms : old + RTT_WEIGHT * (ms - old));
  }

  /**
   * Every member at once. Resolves with the first good answer: a reply whose rcode is not
   * SERVFAIL or REFUSED (those say "ask someone else"). If none is good, the first reply there
   * was, else the last failure.
   */
  #parallel(
    members: GroupMember[],
    query: Uint8Array,
    question: Question,
    deadline: number,
    decoded: Message | undefined,
  ): Promise<Exchange> {
    return new Promise((resolve) => {
      let left = members.length;
      let fallback: Exchange | null = null;
      let lastFailure: Exchange | null = null;
      let done = false;
      for (const m of members) {
        this.#attempt(m, query, question, deadline, decoded).then((r) => {
          left--;
          if (done) return;
          if (r.ok && isGood(r.reply)) {
            done = true;
            resolve(r);
            return;
          }
          if (r.ok) fallback ??= r;
          else lastFailure = r;
          if (left === 0) {
            done = true;
            resolve(fallback ?? lastFailure!);
          }
        });
      }
    });
  }
}

function isGood(reply: Uint8Array): boolean {
  const h = decodeHeader(reply);
  if (!h.ok) return false;
  const rcode = rcodeOf(h.value.flags);
  return rcode !== Rcode.SERVFAIL && rcode !== Rcode.REFUSED;
}
