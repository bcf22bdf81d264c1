/**
 * Several upstreams used in failover order: the first healthy one gets the query; when it fails
 * (connect, TLS, timeout, closed) the next one is tried within the query's remaining time. An
 * upstream that is backing off goes to the back of the line rather than being skipped, so when
 * every upstream is failing the one due to recover soonest is still tried.
 */
import type { Question } from "../dns/message.ts";
import type { Clock } from "../sys/clock.ts";
import type { Health } from "./health.ts";
import { type Exchange, failure, type Upstream } from "./upstream.ts";

/** An upstream with failure bookkeeping the group can order by. */
export interface GroupMember extends Upstream {
  readonly health: Health;
}

/** Tries members in order of health, each for at most `attemptTimeoutMs`. */
export class UpstreamGroup implements Upstream {
  readonly name = "group";

  constructor(
    private readonly members: readonly GroupMember[],
    private readonly opts: { clock: Clock; attemptTimeoutMs: number },
  ) {}

  async exchange(query: Uint8Array, question: Question, deadline: number): Promise<Exchange> {
    const { clock, attemptTimeoutMs } = this.opts;
    let last: Exchange | null = null;
    for (const member of this.#order()) {
      const now = clock.now();
      if (now >= deadline) break;
      const result = await member.exchange(
        query,
        question,
        Math.min(deadline, now + attemptTimeoutMs),
      );
      if (result.ok) return result;
      last = result;
    }
    return last ??
      failure("timeout", this.name, "query deadline passed before any upstream answered");
  }

  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.close()));
  }

  /** Healthy members in configured order, then the backing-off ones, soonest recovery first. */
  #order(): readonly GroupMember[] {
    if (this.members.every((m) => m.health.available())) return this.members;
    const healthy: GroupMember[] = [];
    const resting: GroupMember[] = [];
    for (const m of this.members) (m.health.available() ? healthy : resting).push(m);
    resting.sort((a, b) => a.health.retryAt - b.health.retryAt);
    return healthy.concat(resting);
  }
}
