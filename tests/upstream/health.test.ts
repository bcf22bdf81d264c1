import assert from "node:assert/strict";
import { DEFAULT_FAILURE_THRESHOLD, Health } from "../../lib/upstream/health.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

const fixedRandom = (f: number) => ({ uint16: () => 0, float: () => f });

Deno.test("a failed upstream stays unavailable until a success, with a probe due after backoff", () => {
  const clock = new FakeClock();
  const h = new Health(clock, fixedRandom(0.5), { baseMs: 1000, maxMs: 8000 });
  assert.equal(h.available(), true);
  assert.equal(h.fail(), true, "first failure starts an episode");
  assert.equal(h.available(), false);
  assert.equal(h.retryAt, clock.now() + 1000);
  clock.advance(5000);
  assert.equal(h.available(), false, "time alone does not make it healthy");
  h.succeed();
  assert.equal(h.available(), true);
});

Deno.test("backoff doubles with each failure up to the cap", () => {
  const clock = new FakeClock();
  const h = new Health(clock, fixedRandom(0.5), { baseMs: 1000, maxMs: 4000 });
  const periods = [];
  for (let i = 0; i < 5; i++) {
    assert.equal(h.fail(), i === 0);
    periods.push(h.retryAt - clock.now());
  }
  assert.deepEqual(periods, [1000, 2000, 4000, 4000, 4000]);
});

Deno.test("backoff is jittered by ±20% so upstreams are not probed in lockstep", () => {
  const clock = new FakeClock();
  const low = new Health(clock, fixedRandom(0), { baseMs: 1000, maxMs: 4000 });
  const high = new Health(clock, fixedRandom(0.999), { baseMs: 1000, maxMs: 4000 });
  low.fail();
  high.fail();
  assert.equal(low.retryAt - clock.now(), 800);
  assert.ok(Math.abs(high.retryAt - clock.now() - 1200) < 1);
});

Deno.test("a success ends the episode and resets the backoff", () => {
  const clock = new FakeClock();
  const h = new Health(clock, fixedRandom(0.5), { baseMs: 1000, maxMs: 8000 });
  h.fail();
  h.fail();
  assert.equal(h.succeed(), true);
  assert.equal(h.succeed(), false);
  assert.equal(h.available(), true);
  h.fail();
  assert.equal(h.retryAt - clock.now(), 1000);
});

const backoff = { baseMs: 1000, maxMs: 8000 };

Deno.test("a connection-level failure marks the upstream down at once", () => {
  for (const kind of ["connect", "tls", "closed"] as const) {
    const h = new Health(new FakeClock(), fixedRandom(0.5), backoff);
    assert.equal(h.judge(kind, h.answered), "down", kind);
    assert.equal(h.available(), false, kind);
  }
});

Deno.test(`answer failures mark it down only when ${DEFAULT_FAILURE_THRESHOLD} come in a row with nothing answered`, () => {
  for (const kind of ["timeout", "protocol"] as const) {
    const h = new Health(new FakeClock(), fixedRandom(0.5), backoff);
    for (let i = 1; i < DEFAULT_FAILURE_THRESHOLD; i++) {
      assert.equal(h.judge(kind, h.answered), "counted", `${kind} #${i}`);
      assert.equal(h.available(), true);
    }
    assert.equal(h.judge(kind, h.answered), "down", kind);
    assert.equal(h.available(), false);
  }
});

Deno.test("an answer failure is no evidence when the upstream answered since its query was sent", () => {
  const h = new Health(new FakeClock(), fixedRandom(0.5), backoff);
  const sentBefore = h.answered; // a burst of slow queries goes out...
  h.succeed(); // ...another name is answered meanwhile...
  for (let i = 0; i < 10 * DEFAULT_FAILURE_THRESHOLD; i++) {
    assert.equal(h.judge("timeout", sentBefore), "ignored"); // ...then they all time out
  }
  assert.equal(h.available(), true);
  assert.equal(h.silentFailures, 0);
});

Deno.test("a usable answer resets the count of answer failures", () => {
  const h = new Health(new FakeClock(), fixedRandom(0.5), backoff);
  for (let round = 0; round < 5; round++) {
    for (let i = 1; i < DEFAULT_FAILURE_THRESHOLD; i++) h.judge("timeout", h.answered);
    h.succeed();
  }
  assert.equal(h.available(), true);
  assert.equal(h.silentFailures, 0);
});

Deno.test("our own decisions (down, overloaded) are never evidence", () => {
  const h = new Health(new FakeClock(), fixedRandom(0.5), backoff, { failureThreshold: 1 });
  assert.equal(h.judge("down", h.answered), "ignored");
  assert.equal(h.judge("overloaded", h.answered), "ignored");
  assert.equal(h.available(), true);
});

Deno.test("while down, query failures do not extend the backoff: the probe decides", () => {
  const clock = new FakeClock();
  const h = new Health(clock, fixedRandom(0.5), backoff);
  h.judge("connect", h.answered);
  const retryAt = h.retryAt;
  for (const kind of ["connect", "timeout", "closed"] as const) {
    assert.equal(h.judge(kind, h.answered), "ignored");
  }
  assert.equal(h.retryAt, retryAt);
  assert.equal(h.failures, 1);
});

Deno.test("the failure threshold is an option, and must be a positive integer", () => {
  const h = new Health(new FakeClock(), fixedRandom(0.5), backoff, { failureThreshold: 1 });
  assert.equal(h.judge("timeout", h.answered), "down");
  for (const bad of [0, -1, 1.5, NaN]) {
    assert.throws(
      () => new Health(new FakeClock(), fixedRandom(0.5), backoff, { failureThreshold: bad }),
      RangeError,
    );
  }
});
