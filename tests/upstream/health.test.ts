import assert from "node:assert/strict";
import { Health } from "../../lib/upstream/health.ts";
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
