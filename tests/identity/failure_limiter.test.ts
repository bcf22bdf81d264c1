import assert from "node:assert/strict";
import { FailureLimiter } from "../../lib/identity/failure_limiter.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

function limiter(clock: FakeClock, maxTracked = 10_000) {
  return new FailureLimiter({
    clock,
    maxFailures: 5,
    failuresPerMinute: 6,
    blockMs: 60_000,
    maxTracked,
  });
}

Deno.test("a burst of failures is allowed, the next one blocks the address for blockMs", () => {
  const clock = new FakeClock();
  const l = limiter(clock);
  for (let i = 0; i < 5; i++) {
    assert.equal(l.recordFailure("198.51.100.1"), false, `failure ${i + 1}`);
  }
  assert.equal(l.retryAfterMs("198.51.100.1"), 0);
  assert.equal(l.recordFailure("198.51.100.1"), true);
  assert.equal(l.retryAfterMs("198.51.100.1"), 60_000);
  assert.equal(l.retryAfterMs("198.51.100.2"), 0, "another address is not blocked");
  clock.advance(59_999);
  assert.equal(l.retryAfterMs("198.51.100.1"), 1);
  clock.advance(1);
  assert.equal(l.retryAfterMs("198.51.100.1"), 0);
  assert.equal(l.blockedCount, 0, "an expired block is forgotten when looked at");
  // 60 s earned back 6 failures (capped at the burst of 5).
  for (let i = 0; i < 5; i++) assert.equal(l.recordFailure("198.51.100.1"), false);
  assert.equal(l.recordFailure("198.51.100.1"), true);
});

Deno.test("sustained guessing is held to failuresPerMinute", () => {
  const clock = new FakeClock();
  const l = limiter(clock);
  let allowed = 0;
  // One guess a second for ten minutes, skipping while blocked.
  for (let s = 0; s < 600; s++) {
    if (l.retryAfterMs("203.0.113.5") === 0 && !l.recordFailure("203.0.113.5")) allowed++;
    clock.advance(1000);
  }
  assert.ok(allowed <= 5 + 6 * 10, `${allowed} failed guesses in 10 minutes`);
  assert.ok(allowed >= 30, `${allowed}: the limit still lets a mistyped token be retried`);
});

Deno.test("IPv6 addresses of one /64 share a bucket; IPv4-mapped is IPv4", () => {
  const clock = new FakeClock();
  const l = limiter(clock);
  for (let i = 0; i < 5; i++) l.recordFailure(`2001:db8:0:1::${i + 1}`);
  assert.equal(l.recordFailure("2001:db8:0:1:ffff::9"), true);
  assert.ok(l.retryAfterMs("2001:db8:0:1::abcd") > 0, "the whole /64 is blocked");
  assert.equal(l.retryAfterMs("2001:db8:0:2::1"), 0);
  for (let i = 0; i < 6; i++) l.recordFailure("::ffff:192.0.2.1");
  assert.ok(l.retryAfterMs("192.0.2.1") > 0);
});

Deno.test("state stays bounded under failures from many addresses", () => {
  const clock = new FakeClock();
  const l = limiter(clock, 100);
  for (let i = 0; i < 5000; i++) {
    const ip = `10.${(i >> 8) & 255}.${i & 255}.1`;
    for (let k = 0; k < 6; k++) l.recordFailure(ip);
  }
  assert.ok(l.blockedCount <= 100, `${l.blockedCount} blocks held`);
  assert.ok(l.retryAfterMs("10.19.135.1") > 0, "the most recent offender is still blocked");
});

Deno.test("invalid settings are refused", () => {
  const clock = new FakeClock();
  assert.throws(() => new FailureLimiter({ clock, failuresPerMinute: 0 }), /failuresPerMinute/);
  assert.throws(() => new FailureLimiter({ clock, blockMs: -1 }), /blockMs/);
  assert.throws(() => new FailureLimiter({ clock, maxFailures: 0 }), /burst/);
});
