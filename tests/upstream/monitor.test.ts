import assert from "node:assert/strict";
import { DEFAULT_FAILURE_THRESHOLD } from "../../lib/upstream/health.ts";
import { HealthMonitor } from "../../lib/upstream/monitor.ts";
import { type Exchange, failure } from "../../lib/upstream/upstream.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { answered as answeredBy } from "../helpers/exchange.ts";

const random = { uint16: () => 0, float: () => 0.5 }; // no jitter: backoff periods are exact
const answered: Exchange = answeredBy(new Uint8Array(12), "u");
const down = failure("down", "u", "backing off after failures");

/** Lets settled probe promises run their continuations. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/**
 * A monitor whose probe answers from `outcomes` (then keeps failing), or calls `probe`, and
 * records the time of each probe.
 */
function monitorWith(
  outcomes: Exchange[],
  probe?: () => Promise<Exchange>,
): { clock: FakeClock; monitor: HealthMonitor; probes: number[] } {
  const clock = new FakeClock();
  const probes: number[] = [];
  const monitor = new HealthMonitor({
    name: "u",
    clock,
    random,
    backoff: { baseMs: 1000, maxMs: 16_000 },
    probe: () => {
      probes.push(clock.now());
      if (probe) return probe();
      return Promise.resolve(outcomes.shift() ?? failure("timeout", "u", "no answer"));
    },
    probeBudgetMs: 500,
  });
  return { clock, monitor, probes };
}

Deno.test("a query turned away as down brings the next probe forward", async () => {
  const outcomes: Exchange[] = [];
  const { clock, monitor, probes } = monitorWith(outcomes);
  monitor.fail("connect", "refused");
  for (let i = 0; i < 7; i++) { // probes at +1, +3, +7 s fail: the next is due at +15 s
    clock.advance(1000);
    await settle();
  }
  assert.equal(probes.length, 3);
  assert.equal(monitor.health.retryAt - clock.now(), 8000);
  outcomes.push(answered); // the upstream is back
  clock.advance(1500); // 6.5 s before the backoff's probe
  monitor.record(down, monitor.health.answered);
  assert.equal(probes.length, 4, "probed at once for the waiting client");
  assert.equal(probes[3], clock.now());
  await settle();
  assert.equal(monitor.health.available(), true, "the early probe ended the episode");
  assert.equal(clock.pending, 0, "no probe left scheduled after recovery");
  monitor.close();
});

Deno.test("probes on demand run at most once per base backoff period", async () => {
  const { clock, monitor, probes } = monitorWith([]);
  monitor.fail("connect", "refused");
  clock.advance(1000); // the scheduled probe (fails again, backoff 2 s)
  await settle();
  assert.equal(probes.length, 1);
  clock.advance(999);
  monitor.record(down, monitor.health.answered);
  assert.equal(probes.length, 1, "a probe ran less than a base period ago");
  clock.advance(1);
  monitor.record(down, monitor.health.answered);
  monitor.record(down, monitor.health.answered);
  assert.equal(probes.length, 2, "one probe for many waiting clients");
  await settle();
  monitor.close();
});

Deno.test("a healthy upstream is never probed because of demand", () => {
  const { monitor, probes } = monitorWith([]);
  monitor.record(down, monitor.health.answered);
  assert.equal(probes.length, 0);
  monitor.close();
});

Deno.test("a probe failure the monitor does not count still leaves a probe scheduled", async () => {
  const busy = failure("overloaded", "u", "every connection is at its in-flight cap");
  const { clock, monitor, probes } = monitorWith([busy, answered]);
  monitor.fail("connect", "refused");
  clock.advance(1000);
  await settle();
  assert.equal(probes.length, 1);
  assert.equal(monitor.health.available(), false);
  assert.ok(clock.pending > 0, "still failing, so a probe is due");
  clock.advance(1000);
  await settle();
  assert.equal(probes.length, 2);
  assert.equal(monitor.health.available(), true);
  monitor.close();
});

Deno.test("a probe that throws counts as a failure and does not stop probing", async () => {
  const thrower = () => Promise.reject(new Error("bug"));
  const { clock, monitor, probes } = monitorWith([], thrower);
  monitor.fail("connect", "refused");
  clock.advance(1000);
  await settle();
  assert.equal(probes.length, 1);
  assert.equal(monitor.health.failures, 2, "the throw was recorded as a failure");
  assert.ok(clock.pending > 0);
  monitor.close();
});

const timedOut = failure("timeout", "u", "no reply before the deadline");

/** Records `n` timeouts of queries sent with nothing answered since. */
function silentTimeouts(monitor: HealthMonitor, n: number): void {
  for (let i = 0; i < n; i++) monitor.record(timedOut, monitor.health.answered);
}

Deno.test("sustained answer failures start an episode that is probed at once", async () => {
  const { clock, monitor, probes } = monitorWith([answered]);
  silentTimeouts(monitor, DEFAULT_FAILURE_THRESHOLD - 1);
  assert.equal(monitor.health.available(), true);
  assert.equal(clock.pending, 0, "no probe while up");
  silentTimeouts(monitor, 1);
  assert.equal(monitor.health.available(), false);
  clock.advance(0);
  assert.deepEqual(probes, [clock.now()], "probed without waiting for the backoff");
  await settle();
  assert.equal(monitor.health.available(), true, "slow names, not a dead server: back at once");
  monitor.close();
});

Deno.test("a connection failure is probed when the backoff ends", () => {
  const { clock, monitor, probes } = monitorWith([answered]);
  monitor.record(failure("connect", "u", "refused"), monitor.health.answered);
  assert.equal(monitor.health.available(), false);
  clock.advance(999);
  assert.equal(probes.length, 0);
  clock.advance(1);
  assert.equal(probes.length, 1);
  monitor.close();
});

Deno.test("episodes of answer failures are probed at most once per base backoff period", async () => {
  const { clock, monitor, probes } = monitorWith([answered, answered]);
  silentTimeouts(monitor, DEFAULT_FAILURE_THRESHOLD);
  clock.advance(0);
  await settle();
  assert.equal(monitor.health.available(), true);
  silentTimeouts(monitor, DEFAULT_FAILURE_THRESHOLD); // down again straight away
  clock.advance(999);
  assert.equal(probes.length, 1, "the last probe was less than a base period ago");
  clock.advance(1);
  assert.equal(probes.length, 2);
  await settle();
  assert.equal(monitor.health.available(), true);
  monitor.close();
});
