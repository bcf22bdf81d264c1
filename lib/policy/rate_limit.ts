/**
 * Per-client rate limiting: a token bucket per client prefix (a /24 for IPv4, a /56 for IPv6 by
 * default: one household or small network, so an attacker cannot escape the limit by cycling
 * addresses inside its own allocation). Buckets refill lazily from the injected clock when they
 * are touched, so there are no timers; memory is bounded by evicting the least recently used
 * bucket, so a flood from random (spoofed) sources cannot grow state without bound.
 *
 * Each prefix has two buckets with the same rate and burst: one for datagram (UDP) queries and
 * one for stream queries (TCP, DoT, DoH). A UDP source address can be spoofed, a stream's cannot
 * (its handshake proved it), so a spoofed UDP flood into a prefix must not empty the allowance
 * its real clients need to follow the TC=1 they were sent and retry over TCP — BIND's RRL leaves
 * TCP alone for the same reason; a separate stream bucket still bounds a TCP flooder.
 */
import type { Clock } from "../sys/clock.ts";
import { parseClientAddress } from "../net/ip.ts";

/** Settings of a RateLimiter; `qps` 0 disables limiting. */
export interface RateLimiterOptions {
  clock: Clock;
  /** Sustained queries per second allowed per client prefix; 0 = unlimited. */
  qps: number;
  /** Queries a prefix may send at once after being quiet (the bucket size), at least 1. */
  burst: number;
  /** IPv4 clients sharing this many leading bits share a bucket. Default 24. */
  ipv4Prefix?: number;
  /** IPv6 clients sharing this many leading bits share a bucket. Default 56. */
  ipv6Prefix?: number;
  /** The most buckets kept; beyond it the least recently used is forgotten. Default 100 000. */
  maxBuckets?: number;
}

/** What {@link RateLimiter.admit} decided about one query. */
export const Admission = {
  /** Within the prefix's allowance. */
  ALLOWED: 0,
  /** Over the limit: give it the limit's answer (REFUSED, TC=1) or drop it, as configured. */
  LIMITED: 1,
  /** Over the limit over UDP and thinned by slip: drop it whatever the action. */
  SILENT: 2,
} as const;

/** One of the {@link Admission} values. */
export type Admission = typeof Admission[keyof typeof Admission];

/** Key for clients whose address does not parse: they share one bucket (v4 keys are >= 0). */
const UNPARSEABLE_KEY = -1;

function check(ok: boolean, what: string, value: unknown): void {
  if (!ok) throw new RangeError(`rate limiter ${what}, got ${value}`);
}

/**
 * Token buckets per client prefix. `allow` / `admit` take one token from the client's bucket
 * for its transport (datagram or stream), refilled at `qps` per second up to `burst`. Forgetting a bucket is harmless for well-behaved clients (a
 * new bucket starts full, as theirs would be); under a flood from more than `maxBuckets`
 * prefixes an abusive client may get a fresh burst after being evicted, which bounds memory at
 * the cost of precision only while the flood lasts.
 *
 * Buckets live in slots of typed arrays linked into a recency list (most recent at the head), and
 * a Map finds a client's slot: a hit is one Map lookup and a few integer writes, an eviction
 * reuses the tail slot. (A Map used as its own LRU queue, deleting and re-inserting on every hit
 * and evicting its first key, degrades to O(n) per eviction in V8 as deleted entries pile up at
 * the front of its table.)
 */
export class RateLimiter {
  readonly #clock: Clock;
  readonly #perMs: number;
  readonly #burst: number;
  readonly #v4Mask: number;
  readonly #v6Mask = new Uint32Array(4);
  readonly #maxBuckets: number;
  readonly #unlimited: boolean;
  readonly #slots = new Map<number | string, number>();
  readonly #words = new Uint32Array(4);
  // Per slot: the key (to unmap on eviction), tokens and time of the last refill for datagrams
  // and for streams, queries over the limit since the last one answered (slip), list links.
  #keys: (number | string)[] = [];
  #tokens = new Float64Array(0);
  #last = new Float64Array(0);
  #streamTokens = new Float64Array(0);
  #streamLast = new Float64Array(0);
  #overLimit = new Int32Array(0);
  #prev = new Int32Array(0);
  #next = new Int32Array(0);
  #head = -1;
  #tail = -1;
  #used = 0;

  /** Throws RangeError on invalid options (the config layer validates user input first). */
  constructor(opts: RateLimiterOptions) {
    const { qps, burst } = opts;
    const ipv4Prefix = opts.ipv4Prefix ?? 24;
    const ipv6Prefix = opts.ipv6Prefix ?? 56;
    const maxBuckets = opts.maxBuckets ?? 100_000;
    check(Number.isFinite(qps) && qps >= 0, "qps must be a finite number >= 0", qps);
    check(Number.isFinite(burst) && burst >= 1, "burst must be a finite number >= 1", burst);
    check(
      Number.isInteger(ipv4Prefix) && ipv4Prefix >= 0 && ipv4Prefix <= 32,
      "ipv4Prefix must be an integer in 0-32",
      ipv4Prefix,
    );
    check(
      Number.isInteger(ipv6Prefix) && ipv6Prefix >= 0 && ipv6Prefix <= 128,
      "ipv6Prefix must be an integer in 0-128",
      ipv6Prefix,
    );
    check(
      Number.isInteger(maxBuckets) && maxBuckets >= 1 && maxBuckets <= 0x7fffffff,
      "maxBuckets must be an integer >= 1",
      maxBuckets,
    );
    this.#clock = opts.clock;
    this.#perMs = qps / 1000;
    this.#burst = burst;
    this.#v4Mask = ipv4Prefix === 0 ? 0 : (0xffffffff << (32 - ipv4Prefix)) >>> 0;
    for (let k = 0; k < 4; k++) {
      const bits = ipv6Prefix - 32 * k;
      this.#v6Mask[k] = bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
    }
    this.#maxBuckets = maxBuckets;
    this.#unlimited = qps === 0;
  }

  /** Buckets currently held (never more than maxBuckets). */
  get size(): number {
    return this.#used;
  }

  /**
   * Takes a token for `ip` (a socket's peer address) from its datagram bucket, or with `stream`
   * from its stream bucket; false means drop or refuse the query.
   */
  allow(ip: string, stream = false): boolean {
    return this.admit(ip, stream, 1) === Admission.ALLOWED;
  }

  /**
   * Like {@link allow}, and for a datagram query over the limit also applies RRL's slip, counted
   * per prefix (stored with its buckets, so a flood from one prefix never decides which of
   * another's limited queries are answered): every `slip`-th one is LIMITED (answered with the
   * limit's action), the rest SILENT; `slip` 1 answers all, 0 none. Streams are never thinned.
   */
  admit(ip: string, stream: boolean, slip: number): Admission {
    if (this.#unlimited) return Admission.ALLOWED;
    const key = this.#key(ip);
    const now = this.#clock.now();
    let slot = this.#slots.get(key);
    if (slot !== undefined) {
      if (slot !== this.#head) {
        this.#unlink(slot);
        this.#pushHead(slot);
      }
    } else {
      slot = this.#newSlot();
      this.#keys[slot] = key;
      this.#slots.set(key, slot);
      this.#pushHead(slot);
      this.#tokens[slot] = this.#streamTokens[slot] = this.#burst;
      this.#last[slot] = this.#streamLast[slot] = now;
      this.#overLimit[slot] = 0;
    }
    const tokens = stream ? this.#streamTokens : this.#tokens;
    const last = stream ? this.#streamLast : this.#last;
    let t = tokens[slot];
    const elapsed = now - last[slot];
    if (elapsed > 0) {
      t += elapsed * this.#perMs;
      if (t > this.#burst) t = this.#burst;
      last[slot] = now;
    }
    if (t >= 1) {
      tokens[slot] = t - 1;
      return Admission.ALLOWED;
    }
    tokens[slot] = t;
    if (stream || slip === 1) return Admission.LIMITED;
    if (slip <= 0) return Admission.SILENT;
    if (++this.#overLimit[slot] < slip) return Admission.SILENT;
    this.#overLimit[slot] = 0;
    return Admission.LIMITED;
  }

  /** A free slot: a fresh one while below maxBuckets, else the least recently used one. */
  #newSlot(): number {
    if (this.#used < this.#maxBuckets) {
      if (this.#used === this.#tokens.length) this.#grow();
      return this.#used++;
    }
    const slot = this.#tail;
    this.#unlink(slot);
    this.#slots.delete(this.#keys[slot]);
    return slot;
  }

  /** Doubles the slot arrays (up to maxBuckets), so memory follows the number of clients seen. */
  #grow(): void {
    const size = Math.min(this.#maxBuckets, Math.max(64, this.#tokens.length * 2));
    const grown = <T extends Float64Array | Int32Array>(old: T, fresh: T): T => {
      fresh.set(old);
      return fresh;
    };
    this.#tokens = grown(this.#tokens, new Float64Array(size));
    this.#last = grown(this.#last, new Float64Array(size));
    this.#streamTokens = grown(this.#streamTokens, new Float64Array(size));
    this.#streamLast = grown(this.#streamLast, new Float64Array(size));
    this.#overLimit = grown(this.#overLimit, new Int32Array(size));
    this.#prev = grown(this.#prev, new Int32Array(size));
    this.#next = grown(this.#next, new Int32Array(size));
  }

  #unlink(slot: number): void {
    const p = this.#prev[slot];
    const n = this.#next[slot];
    if (p >= 0) this.#next[p] = n;
    else this.#head = n;
    if (n >= 0) this.#prev[n] = p;
    else this.#tail = p;
  }

  #pushHead(slot: number): void {
    this.#prev[slot] = -1;
    this.#next[slot] = this.#head;
    if (this.#head >= 0) this.#prev[this.#head] = slot;
    else this.#tail = slot;
    this.#head = slot;
  }

  /** The bucket key of a client: a number for IPv4 prefixes, a short string for IPv6 ones. */
  #key(ip: string): number | string {
    const w = this.#words;
    const family = parseClientAddress(ip, w);
    if (family === 4) return (w[3] & this.#v4Mask) >>> 0;
    if (family === 0) return UNPARSEABLE_KEY;
    // The masked address as 8 UTF-16 code units: one short string, built in one call.
    const m = this.#v6Mask;
    const a = w[0] & m[0], b = w[1] & m[1], c = w[2] & m[2], d = w[3] & m[3];
    return String.fromCharCode(
      a >>> 16,
      a & 0xffff,
      b >>> 16,
      b & 0xffff,
      c >>> 16,
      c & 0xffff,
      d >>> 16,
      d & 0xffff,
    );
  }
}
