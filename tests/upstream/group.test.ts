import assert from "node:assert/strict";
import type { Question } from "../../lib/dns/message.ts";
import { UpstreamGroup } from "../../lib/upstream/group.ts";
import type { GroupMember } from "../../lib/upstream/group.ts";
import { Health } from "../../lib/upstream/health.ts";
import { type Exchange, failure } from "../../lib/upstream/upstream.ts";
import { FakeClock, seededRandom } from "../helpers/fake_clock.ts";

const question: Question = {
  name: new Uint8Array([1, 97, 0]),
  qtype: 1,
  qclass: 1,
  start: 12,
  end: 19,
};

/** A member that answers from a script and records the deadlines it was given. */
function member(clock: FakeClock, name: string, results: Exchange[]): GroupMember & {
  deadlines: number[];
} {
  const health = new Health(clock, seededRandom(), { baseMs: 1000, maxMs: 8000 });
  const deadlines: number[] = [];
  return {
    name,
    health,
    deadlines,
    exchange(_q, _question, deadline) {
      deadlines.push(deadline);
      const r = results.shift() ?? failure("timeout", name, "script ran out");
      if (r.ok) health.succeed();
      else health.fail();
      return Promise.resolve(r);
    },
    close: () => Promise.resolve(),
  };
}

const ok = (upstream: string): Exchange => ({ ok: true, reply: new Uint8Array(12), upstream });

Deno.test("the first upstream in configured order answers when healthy", async () => {
  const clock = new FakeClock();
  const a = member(clock, "a", [ok("a")]);
  const b = member(clock, "b", [ok("b")]);
  const g = new UpstreamGroup([a, b], { clock, attemptTimeoutMs: 2000 });
  const r = await g.exchange(new Uint8Array(12), question, clock.now() + 5000);
  assert.equal(r.ok && r.upstream, "a");
  assert.equal(b.deadlines.length, 0);
});

Deno.test("a failing upstream fails over to the next, each attempt capped", async () => {
  const clock = new FakeClock();
  const a = member(clock, "a", [failure("connect", "a", "refused")]);
  const b = member(clock, "b", [ok("b")]);
  const g = new UpstreamGroup([a, b], { clock, attemptTimeoutMs: 2000 });
  const start = clock.now();
  const r = await g.exchange(new Uint8Array(12), question, start + 5000);
  assert.equal(r.ok && r.upstream, "b");
  assert.deepEqual(a.deadlines, [start + 2000]);
});

Deno.test("an attempt never runs past the query's own deadline", async () => {
  const clock = new FakeClock();
  const a = member(clock, "a", [ok("a")]);
  const g = new UpstreamGroup([a], { clock, attemptTimeoutMs: 2000 });
  await g.exchange(new Uint8Array(12), question, clock.now() + 500);
  assert.deepEqual(a.deadlines, [clock.now() + 500]);
});

Deno.test("a backing-off upstream goes to the back of the line", async () => {
  const clock = new FakeClock();
  const a = member(clock, "a", []);
  const b = member(clock, "b", [ok("b")]);
  a.health.fail();
  const g = new UpstreamGroup([a, b], { clock, attemptTimeoutMs: 2000 });
  const r = await g.exchange(new Uint8Array(12), question, clock.now() + 5000);
  assert.equal(r.ok && r.upstream, "b");
  assert.equal(a.deadlines.length, 0);
});

Deno.test("when every upstream is backing off, the one recovering soonest is tried", async () => {
  const clock = new FakeClock();
  const a = member(clock, "a", []);
  const b = member(clock, "b", [ok("b")]);
  a.health.fail();
  a.health.fail(); // longer backoff than b
  b.health.fail();
  const g = new UpstreamGroup([a, b], { clock, attemptTimeoutMs: 2000 });
  const r = await g.exchange(new Uint8Array(12), question, clock.now() + 5000);
  assert.equal(r.ok && r.upstream, "b");
});

Deno.test("when every upstream fails the last error is returned", async () => {
  const clock = new FakeClock();
  const a = member(clock, "a", [failure("tls", "a", "bad certificate")]);
  const b = member(clock, "b", [failure("connect", "b", "refused")]);
  const g = new UpstreamGroup([a, b], { clock, attemptTimeoutMs: 2000 });
  const r = await g.exchange(new Uint8Array(12), question, clock.now() + 5000);
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.error.upstream, "b");
});
