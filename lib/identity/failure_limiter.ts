/**
 * Slows down credential guessing: each failed authentication from an address takes a token from
 * that address's bucket (lib/policy/rate_limit.ts, per /32 for IPv4 and per /64 for IPv6, so an
 * attacker cannot escape by cycling the addresses of one host); a failure that finds the bucket
 * empty blocks the address for a while. A blocked address is refused before its credential is
 * even looked at, so a correct guess during the block does not succeed either.
 *
 * Bounded: at most `maxTracked` buckets and as many blocked addresses; beyond that the least
 * recently seen bucket and the oldest block are forgotten (a flood from many addresses buys each
 * one at most a fresh allowance, never unbounded memory). Time comes from the injected Clock.
 */
import { parseClientAddress } from "../net/ip.ts";
import { RateLimiter } from "../policy/rate_limit.ts";
import type { Clock } from "../sys/clock.ts";

/** Settings; every field but `clock` has a documented default. */
export interface FailureLimiterOptions {
  clock: Clock;
  /** Failures an address may have in a burst before it is blocked. Default 10. */
  maxFailures?: number;
  /** Failures per minute an address earns back (the sustained guessing rate). Default 6. */
  failuresPerMinute?: number;
  /** How long a blocked address is refused, in ms. Default 60 000. */
  blockMs?: number;
  /** Addresses tracked at most (buckets, and blocks). Default 10 000. */
  maxTracked?: number;
}

export const DEFAULT_MAX_FAILURES = 10;
export const DEFAULT_FAILURES_PER_MINUTE = 6;
export const DEFAULT_FAILURE_BLOCK_MS = 60_000;
export const DEFAULT_FAILURE_MAX_TRACKED = 10_000;

const IPV4_BITS = 32;
const IPV6_BITS = 64;

/** Per-address failure accounting for one listener. */
export class FailureLimiter {
  readonly #clock: Clock;
  readonly #buckets: RateLimiter;
  readonly #blockMs: number;
  readonly #maxTracked: number;
  /** Blocked keys and when their block ends; insertion order is block order. */
  readonly #blocked = new Map<number | string, number>();
  readonly #words = new Uint32Array(4);

  /** Throws RangeError on invalid settings (config validates user input first). */
  constructor(opts: FailureLimiterOptions) {
    const maxFailures = opts.maxFailures ?? DEFAULT_MAX_FAILURES;
    const perMinute = opts.failuresPerMinute ?? DEFAULT_FAILURES_PER_MINUTE;
    this.#blockMs = opts.blockMs ?? DEFAULT_FAILURE_BLOCK_MS;
    this.#maxTracked = opts.maxTracked ?? DEFAULT_FAILURE_MAX_TRACKED;
    if (!(Number.isFinite(perMinute) && perMinute > 0)) {
      throw new RangeError(`failuresPerMinute must be a number > 0, got ${perMinute}`);
    }
    if (!(Number.isFinite(this.#blockMs) && this.#blockMs >= 0)) {
      throw new RangeError(`blockMs must be a number >= 0, got ${this.#blockMs}`);
    }
    this.#clock = opts.clock;
    this.#buckets = new RateLimiter({
      clock: opts.clock,
      qps: perMinute / 60,
      burst: maxFailures,
      ipv4Prefix: IPV4_BITS,
      ipv6Prefix: IPV6_BITS,
      maxBuckets: this.#maxTracked,
    });
  }

  /** Addresses blocked right now (expired blocks included until they are next looked at). */
  get blockedCount(): number {
    return this.#blocked.size;
  }

  /**
   * Milliseconds until `ip` may try again, or 0 if it is not blocked. Call before checking a
   * credential; a positive answer means refuse (HTTP 429 with Retry-After) without checking.
   */
  retryAfterMs(ip: string): number {
    const key = this.#key(ip);
    const until = this.#blocked.get(key);
    if (until === undefined) return 0;
    const left = until - this.#clock.now();
    if (left > 0) return left;
    this.#blocked.delete(key);
    return 0;
  }

  /** Records a failed authentication from `ip`; true when this failure blocks the address. */
  recordFailure(ip: string): boolean {
    if (this.#buckets.allow(ip)) return false;
    const key = this.#key(ip);
    this.#blocked.delete(key);
    if (this.#blocked.size >= this.#maxTracked) {
      const oldest = this.#blocked.keys().next().value;
      if (oldest !== undefined) this.#blocked.delete(oldest);
    }
    this.#blocked.set(key, this.#clock.now() + this.#blockMs);
    return true;
  }

  /** The block key: the IPv4 address, or the IPv6 /64 (as the rate limiter buckets them). */
  #key(ip: string): number | string {
    const w = this.#words;
    const family = parseClientAddress(ip, w);
    if (family === 4) return w[3];
    if (family === 6) return `${w[0]}:${w[1]}`;
    return "?";
  }
}
