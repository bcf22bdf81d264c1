import assert from "node:assert/strict";
import type { Question } from "../../lib/dns/message.ts";
import { UpstreamGroup } from "../../lib/upstream/group.ts";
import type { GroupMember } from "../../lib/upstream/group.ts";
import { Health } from "../../lib/upstream/health.ts";
import { type Exchange, failure } from "../../lib/upstream/upstream.ts";
import { FakeClock, seededRandom } from "../helpers/fake_clock.ts";
import { answered } from "../helpers/exchange.ts";

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

const ok = (upstream: string): Exchange => answered(new Uint8Array(12), upstream);

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

/**
 * A member that answers after `latencyMs` on the fake clock (or times out at its deadline if that
 * comes first), recording when it was asked. `rcode` sets the answer's header rcode.
 */
function timed(
  clock: FakeClock,
  name: string,
  latencyMs: number,
  opts: { rcode?: number; fail?: "connect" } = {},
): GroupMember & { asked: number[] } {
  const health = new Health(clock, seededRandom(), { baseMs: 1000, maxMs: 8000 });
  const asked: number[] = [];
  return {
    name,
    health,
    asked,
    exchange(_q, _question, deadline) {
      const now = clock.now();
      asked.push(now);
      return new Promise((resolve) => {
        if (opts.fail) return resolve(failure(opts.fail, name, "refused"));
        const late = now + latencyMs > deadline;
        clock.schedule(late ? deadline - now : latencyMs, () => {
          if (late) return resolve(failure("timeout", name, "too slow"));
          const reply = new Uint8Array(12);
          reply[3] = opts.rcode ?? 0;
          resolve(answered(reply, name));
        });
      });
    },
    close: () => Promise.resolve(),
  };
}

/** Runs one query through `g`, moving the fake clock until it is answered. */
async function ask(g: UpstreamGroup, clock: FakeClock, budgetMs = 5000): Promise<Exchange> {
  let done = false;
  const p = g.exchange(new Uint8Array(12), question, clock.now() + budgetMs).finally(() => {
    done = true;
  });
  for (let i = 0; i < budgetMs && !done; i++) {
    clock.advance(1);
    for (let turn = 0; turn < 10; turn++) await Promise.resolve(); // let the answer propagate
  }
  return await p;
}

const neverExplore = { uint16: () => 0, float: () => 0.5 };

/** A Random whose float() returns `floats` in turn, then 0.5. */
function scripted(floats: number[]) {
  return { uint16: () => 0, float: () => floats.shift() ?? 0.5 };
}

Deno.test("round_robin starts each query one member further along", async () => {
  const clock = new FakeClock();
  const ms = ["a", "b", "c"].map((n) => timed(clock, n, 5));
  const g = new UpstreamGroup(ms, { clock, attemptTimeoutMs: 2000, strategy: "round_robin" });
  const order: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await ask(g, clock);
    order.push(r.ok ? r.upstream : "-");
  }
  assert.deepEqual(order, ["a", "b", "c", "a", "b", "c"]);
});

Deno.test("round_robin moves on to the next member when one fails", async () => {
  const clock = new FakeClock();
  const a = timed(clock, "a", 5);
  const b = timed(clock, "b", 5, { fail: "connect" });
  const c = timed(clock, "c", 5);
  const g = new UpstreamGroup([a, b, c], {
    clock,
    attemptTimeoutMs: 2000,
    strategy: "round_robin",
  });
  await ask(g, clock); // a
  const r = await ask(g, clock); // b's turn: it fails, c answers
  assert.equal(r.ok && r.upstream, "c");
  assert.equal(b.asked.length, 1);
});

Deno.test("fastest measures every member once, then prefers the lowest smoothed RTT", async () => {
  const clock = new FakeClock();
  const a = timed(clock, "a", 50);
  const b = timed(clock, "b", 10);
  const c = timed(clock, "c", 30);
  const g = new UpstreamGroup([a, b, c], {
    clock,
    attemptTimeoutMs: 2000,
    strategy: "fastest",
    random: neverExplore,
  });
  const order: string[] = [];
  for (let i = 0; i < 8; i++) {
    const r = await ask(g, clock);
    order.push(r.ok ? r.upstream : "-");
  }
  assert.deepEqual(order, ["a", "b", "c", "b", "b", "b", "b", "b"]);
  assert.equal(g.rttOf(b), 10);
  assert.equal(g.rttOf(a), 50);
});

Deno.test("fastest sends a query elsewhere when the injected Random says explore", async () => {
  const clock = new FakeClock();
  const a = timed(clock, "a", 50);
  const b = timed(clock, "b", 10);
  const c = timed(clock, "c", 30);
  // Three warm-up queries draw 0.5 each (no exploring); then 0.01 explores and 0.99 picks the
  // last of the other members by RTT: a.
  const random = scripted([0.5, 0.5, 0.5, 0.01, 0.99]);
  const g = new UpstreamGroup([a, b, c], {
    clock,
    attemptTimeoutMs: 2000,
    strategy: "fastest",
    random,
  });
  for (let i = 0; i < 3; i++) await ask(g, clock);
  const explored = await ask(g, clock);
  assert.equal(explored.ok && explored.upstream, "a");
  const next = await ask(g, clock);
  assert.equal(next.ok && next.upstream, "b");
});

Deno.test("fastest explores about 5% of queries, keeping the others' RTT known", async () => {
  const clock = new FakeClock();
  const a = timed(clock, "a", 20);
  const b = timed(clock, "b", 2);
  const g = new UpstreamGroup([a, b], {
    clock,
    attemptTimeoutMs: 2000,
    strategy: "fastest",
    random: seededRandom(7),
  });
  for (let i = 0; i < 1000; i++) await ask(g, clock);
  const share = (a.asked.length - 1) / 1000; // minus its one warm-up query
  assert.ok(share > 0.02 && share < 0.09, `explored ${share}`);
});

Deno.test("fastest demotes a member that starts timing out", async () => {
  const clock = new FakeClock();
  const a = timed(clock, "a", 5);
  const b = timed(clock, "b", 20);
  const g = new UpstreamGroup([a, b], {
    clock,
    attemptTimeoutMs: 100,
    strategy: "fastest",
    random: neverExplore,
  });
  await ask(g, clock);
  await ask(g, clock);
  const slowA = timed(clock, "a", 500); // same health, now slower than the attempt timeout
  a.exchange = slowA.exchange;
  const r = await ask(g, clock);
  assert.equal(r.ok && r.upstream, "b", "a timed out, b answered");
  assert.ok(g.rttOf(a)! > g.rttOf(b)!);
  a.health.succeed(); // healthy again, but measured slow: b stays first
  const next = await ask(g, clock);
  assert.equal(next.ok && next.upstream, "b");
});

Deno.test("parallel asks every healthy member at once and the first answer wins", async () => {
  const clock = new FakeClock();
  const a = timed(clock, "a", 30);
  const b = timed(clock, "b", 10);
  const g = new UpstreamGroup([a, b], { clock, attemptTimeoutMs: 2000, strategy: "parallel" });
  const start = clock.now();
  const r = await ask(g, clock);
  assert.equal(r.ok && r.upstream, "b");
  assert.equal(clock.now() - start, 10, "answered when the fastest answered");
  assert.deepEqual([a.asked, b.asked], [[start], [start]]);
});

Deno.test("parallel prefers a later good answer to an early SERVFAIL", async () => {
  const clock = new FakeClock();
  const a = timed(clock, "a", 30);
  const b = timed(clock, "b", 10, { rcode: 2 });
  const g = new UpstreamGroup([a, b], { clock, attemptTimeoutMs: 2000, strategy: "parallel" });
  const r = await ask(g, clock);
  assert.equal(r.ok && r.upstream, "a");
});

Deno.test("parallel returns the SERVFAIL when no member has anything better", async () => {
  const clock = new FakeClock();
  const a = timed(clock, "a", 30, { fail: "connect" });
  const b = timed(clock, "b", 10, { rcode: 2 });
  const g = new UpstreamGroup([a, b], { clock, attemptTimeoutMs: 2000, strategy: "parallel" });
  const r = await ask(g, clock);
  assert.equal(r.ok && r.upstream, "b");
});

Deno.test("parallel falls back to backing-off members when every healthy one fails", async () => {
  const clock = new FakeClock();
  const a = timed(clock, "a", 5, { fail: "connect" });
  const b = timed(clock, "b", 5, { fail: "connect" });
  const c = timed(clock, "c", 5);
  c.health.fail();
  const g = new UpstreamGroup([a, b, c], { clock, attemptTimeoutMs: 2000, strategy: "parallel" });
  const r = await ask(g, clock);
  assert.equal(r.ok && r.upstream, "c");
  assert.equal(a.asked.length + b.asked.length, 2);
});

Deno.test("a backing-off member goes last whatever the strategy", async () => {
  for (const strategy of ["round_robin", "fastest", "parallel"] as const) {
    const clock = new FakeClock();
    const a = timed(clock, "a", 5);
    const b = timed(clock, "b", 5);
    a.health.fail();
    const g = new UpstreamGroup([a, b], {
      clock,
      attemptTimeoutMs: 2000,
      strategy,
      random: neverExplore,
    });
    for (let i = 0; i < 3; i++) {
      const r = await ask(g, clock);
      assert.equal(r.ok && r.upstream, "b", strategy);
    }
    assert.equal(a.asked.length, 0, strategy);
  }
});
