import assert from "node:assert/strict";
import { Admission, RateLimiter, type RateLimiterOptions } from "../../lib/policy/rate_limit.ts";
import { FakeClock, seededRandom } from "../helpers/fake_clock.ts";

function limiter(opts: Partial<RateLimiterOptions> = {}): { rl: RateLimiter; clock: FakeClock } {
  const clock = new FakeClock();
  return { rl: new RateLimiter({ clock, qps: 10, burst: 5, ...opts }), clock };
}

/** How many of `n` queries from `ip` are allowed right now. */
function allowedOf(rl: RateLimiter, ip: string, n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (rl.allow(ip)) ok++;
  return ok;
}

Deno.test("qps 0 means unlimited and keeps no state", () => {
  const { rl } = limiter({ qps: 0, burst: 1 });
  assert.equal(allowedOf(rl, "192.0.2.1", 10_000), 10_000);
  assert.equal(rl.size, 0);
});

Deno.test("a new client may send a full burst at once, then is limited", () => {
  const { rl } = limiter({ qps: 10, burst: 5 });
  assert.equal(allowedOf(rl, "192.0.2.1", 5), 5);
  assert.equal(rl.allow("192.0.2.1"), false);
});

Deno.test("the bucket refills at qps as the clock advances, one token per 1/qps", () => {
  const { rl, clock } = limiter({ qps: 10, burst: 5 });
  allowedOf(rl, "192.0.2.1", 5);
  assert.equal(rl.allow("192.0.2.1"), false);
  clock.advance(50); // half a token
  assert.equal(rl.allow("192.0.2.1"), false);
  clock.advance(50); // one token
  assert.equal(rl.allow("192.0.2.1"), true);
  assert.equal(rl.allow("192.0.2.1"), false);
  clock.advance(300);
  assert.equal(allowedOf(rl, "192.0.2.1", 10), 3);
});

Deno.test("refused queries do not consume tokens", () => {
  const { rl, clock } = limiter({ qps: 10, burst: 1 });
  assert.equal(rl.allow("192.0.2.1"), true);
  for (let i = 0; i < 100; i++) assert.equal(rl.allow("192.0.2.1"), false);
  clock.advance(100);
  assert.equal(rl.allow("192.0.2.1"), true);
});

Deno.test("a long quiet period refills to the burst and no further", () => {
  const { rl, clock } = limiter({ qps: 10, burst: 5 });
  allowedOf(rl, "192.0.2.1", 5);
  clock.advance(3_600_000);
  assert.equal(allowedOf(rl, "192.0.2.1", 100), 5);
});

Deno.test("a steady client at exactly qps is never refused", () => {
  const { rl, clock } = limiter({ qps: 20, burst: 1 });
  for (let i = 0; i < 1000; i++) {
    assert.equal(rl.allow("192.0.2.1"), true, `query ${i}`);
    clock.advance(50);
  }
});

Deno.test("a fractional qps allows one query per 1/qps seconds", () => {
  const { rl, clock } = limiter({ qps: 0.5, burst: 1 });
  assert.equal(rl.allow("192.0.2.1"), true);
  clock.advance(1999);
  assert.equal(rl.allow("192.0.2.1"), false);
  clock.advance(1);
  assert.equal(rl.allow("192.0.2.1"), true);
});

const sharing: { name: string; a: string; b: string; shared: boolean; opts?: object }[] = [
  { name: "same /24", a: "192.0.2.1", b: "192.0.2.254", shared: true },
  { name: "different /24", a: "192.0.2.1", b: "192.0.3.1", shared: false },
  { name: "mapped and plain IPv4", a: "::ffff:192.0.2.1", b: "192.0.2.7", shared: true },
  { name: "same /56", a: "2001:db8:0:1200::1", b: "2001:db8:0:12ff:ffff::1", shared: true },
  { name: "different /56", a: "2001:db8:0:1200::1", b: "2001:db8:0:1300::1", shared: false },
  { name: "same /64 prefix, other /48", a: "2001:db8:1::1", b: "2001:db8:2::1", shared: false },
  { name: "IPv4 and IPv6 never", a: "0.0.0.1", b: "::1", shared: false },
  {
    name: "/32 separates addresses",
    a: "192.0.2.1",
    b: "192.0.2.2",
    shared: false,
    opts: { ipv4Prefix: 32 },
  },
  {
    name: "/0 shares everything",
    a: "1.1.1.1",
    b: "9.9.9.9",
    shared: true,
    opts: { ipv4Prefix: 0 },
  },
  {
    name: "IPv6 /128 separates addresses",
    a: "2001:db8::1",
    b: "2001:db8::2",
    shared: false,
    opts: { ipv6Prefix: 128 },
  },
  {
    name: "IPv6 /48",
    a: "2001:db8:1:1::1",
    b: "2001:db8:1:ff::1",
    shared: true,
    opts: { ipv6Prefix: 48 },
  },
  { name: "unparseable addresses", a: "garbage", b: "more garbage", shared: true },
];

for (const c of sharing) {
  Deno.test(`bucket sharing: ${c.name} (${c.a}, ${c.b}) ${c.shared ? "share" : "do not share"}`, () => {
    const { rl } = limiter({ qps: 1, burst: 3, ...c.opts });
    assert.equal(allowedOf(rl, c.a, 3), 3);
    assert.equal(rl.allow(c.b), !c.shared);
    assert.equal(rl.size, c.shared ? 1 : 2);
  });
}

Deno.test("at maxBuckets the least recently used bucket is evicted", () => {
  const { rl } = limiter({ qps: 1, burst: 2, maxBuckets: 2 });
  allowedOf(rl, "10.0.1.1", 2); // A drained
  allowedOf(rl, "10.0.2.1", 2); // B drained
  assert.equal(rl.allow("10.0.1.1"), false); // A used again: now the most recent
  assert.equal(rl.allow("10.0.3.1"), true); // C evicts B
  assert.equal(rl.size, 2);
  assert.equal(rl.allow("10.0.1.1"), false, "A kept its (empty) bucket");
  assert.equal(allowedOf(rl, "10.0.2.1", 3), 2, "B starts again with a full burst");
});

Deno.test("an evicted client starts again with a full burst", () => {
  const { rl } = limiter({ qps: 1, burst: 4, maxBuckets: 1 });
  assert.equal(allowedOf(rl, "10.0.1.1", 10), 4);
  assert.equal(rl.allow("10.0.2.1"), true);
  assert.equal(allowedOf(rl, "10.0.1.1", 10), 4);
  assert.equal(rl.size, 1);
});

Deno.test("1,000,000 random sources never hold more than maxBuckets buckets", () => {
  const random = seededRandom(0x5eed);
  const { rl, clock } = limiter({ qps: 5, burst: 10, maxBuckets: 10_000 });
  const known = "203.0.113.9";
  let refusedKnown = 0;
  for (let i = 0; i < 1_000_000; i++) {
    const a = random.uint16();
    const b = random.uint16();
    const ip = i % 2 === 0
      ? `${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`
      : `2001:${a.toString(16)}:${b.toString(16)}:${random.uint16().toString(16)}::1`;
    rl.allow(ip);
    if (rl.size > 10_000) assert.fail(`size ${rl.size} after ${i + 1} sources`);
    if (i % 1000 === 0) {
      clock.advance(1);
      if (!rl.allow(known)) refusedKnown++;
    }
  }
  assert.equal(rl.size, 10_000);
  // A client active throughout stays recently used, so it keeps its bucket and its limit:
  // 1000 queries in 1 s at 5 qps with a burst of 10.
  assert.ok(refusedKnown > 900, `known client refused only ${refusedKnown} times`);
});

Deno.test("buckets are reused after eviction, so refill state starts fresh", () => {
  const { rl, clock } = limiter({ qps: 1, burst: 1, maxBuckets: 3 });
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 10; i++) assert.equal(rl.allow(`10.${round}.${i}.1`), true);
    clock.advance(10);
  }
  assert.equal(rl.size, 3);
});

const badOptions: [string, Partial<RateLimiterOptions>, RegExp][] = [
  ["negative qps", { qps: -1 }, /qps must be a finite number >= 0, got -1/],
  ["NaN qps", { qps: NaN }, /qps .* got NaN/],
  ["infinite qps", { qps: Infinity }, /qps .* got Infinity/],
  ["burst below 1", { burst: 0.5 }, /burst must be a finite number >= 1, got 0.5/],
  ["IPv4 prefix 33", { ipv4Prefix: 33 }, /ipv4Prefix must be an integer in 0-32, got 33/],
  ["IPv6 prefix 129", { ipv6Prefix: 129 }, /ipv6Prefix must be an integer in 0-128, got 129/],
  ["fractional prefix", { ipv6Prefix: 56.5 }, /ipv6Prefix .* got 56.5/],
  ["no buckets", { maxBuckets: 0 }, /maxBuckets must be an integer >= 1, got 0/],
];

for (const [name, opts, message] of badOptions) {
  Deno.test(`RateLimiter rejects ${name} with a RangeError naming the value`, () => {
    assert.throws(() => limiter(opts), (err: unknown) => {
      assert.ok(err instanceof RangeError);
      assert.match(err.message, message);
      return true;
    });
  });
}

/** The obvious model: a Map in recency order, bucket objects, the same refill arithmetic. */
class ModelLimiter {
  #buckets = new Map<string, { tokens: number; last: number }>();
  constructor(
    private readonly clock: FakeClock,
    private readonly qps: number,
    private readonly burst: number,
    private readonly max: number,
  ) {}
  allow(key: string): boolean {
    const now = this.clock.now();
    let b = this.#buckets.get(key);
    if (b) {
      this.#buckets.delete(key);
      const elapsed = now - b.last;
      if (elapsed > 0) {
        b.tokens = Math.min(this.burst, b.tokens + elapsed * (this.qps / 1000));
        b.last = now;
      }
    } else {
      if (this.#buckets.size >= this.max) this.#buckets.delete(this.#buckets.keys().next().value!);
      b = { tokens: this.burst, last: now };
    }
    this.#buckets.set(key, b);
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    return ok;
  }
  get size(): number {
    return this.#buckets.size;
  }
}

Deno.test("the limiter decides exactly like a simple LRU model over 100,000 random steps", () => {
  const random = seededRandom(0xbeef);
  const clock = new FakeClock();
  const rl = new RateLimiter({ clock, qps: 7, burst: 3, ipv4Prefix: 32, maxBuckets: 8 });
  const model = new ModelLimiter(clock, 7, 3, 8);
  for (let i = 0; i < 100_000; i++) {
    const r = random.uint16();
    if (r < 6000) clock.advance(r % 300);
    const ip = `10.0.0.${random.uint16() % 20}`;
    assert.equal(rl.allow(ip), model.allow(ip), `step ${i}, ${ip}`);
    assert.equal(rl.size, model.size);
  }
});

Deno.test("stream queries draw from their own bucket, with the same rate and burst", () => {
  const clock = new FakeClock();
  const rl = new RateLimiter({ clock, qps: 2, burst: 2 });
  assert.equal(allowedOf(rl, "192.0.2.1", 5), 2, "UDP burst");
  let stream = 0;
  for (let i = 0; i < 5; i++) if (rl.allow("192.0.2.1", true)) stream++;
  assert.equal(stream, 2, "the stream burst is untouched by the UDP flood, and bounded");
  clock.advance(500);
  assert.equal(rl.allow("192.0.2.1", true), true, "refilled at qps");
  assert.equal(rl.allow("192.0.2.1", true), false);
  assert.equal(rl.size, 1, "one bucket pair per prefix");
});

Deno.test("slip is counted per prefix and forgotten with the prefix's buckets", () => {
  const clock = new FakeClock();
  const rl = new RateLimiter({ clock, qps: 1, burst: 1, maxBuckets: 2 });
  const { ALLOWED, LIMITED, SILENT } = Admission;
  assert.equal(rl.admit("192.0.2.1", false, 3), ALLOWED);
  assert.deepEqual([1, 2, 3].map(() => rl.admit("192.0.2.1", false, 3)), [SILENT, SILENT, LIMITED]);
  assert.equal(rl.admit("192.0.2.1", false, 3), SILENT);
  assert.equal(rl.admit("198.51.100.1", false, 3), ALLOWED);
  assert.equal(rl.admit("198.51.100.1", false, 3), SILENT, "B counts from zero");
  assert.equal(rl.admit("203.0.113.1", false, 3), ALLOWED, "evicts A, the least recent");
  assert.equal(rl.size, 2);
  assert.equal(rl.admit("192.0.2.1", false, 3), ALLOWED, "A starts over: fresh bucket, no count");
  assert.equal(rl.admit("192.0.2.1", true, 3), ALLOWED);
  assert.equal(rl.admit("192.0.2.1", true, 3), LIMITED, "streams are never thinned");
});
