/**
 * The response cache: upstream replies kept as bytes and replayed with the client's ID, the
 * client's question spelling and TTLs counted down by age, all patched into a copy (RFC 1035 §7.4,
 * RFC 2308 negative caching, RFC 8767 serve-stale). Pure: time comes from the injected Clock, and
 * nothing runs on a timer: entries expire when touched or when LRU eviction reaches them.
 *
 * Memory (bench/cache_memory.ts): per entry one small object, the key string, the Map slot and the
 * reply as a one-byte (Latin-1) string: the reply bytes, then its TTL offsets as big-endian u16.
 * A string, not a Uint8Array, because each small typed array costs ~450 bytes more (a JSArrayBuffer
 * plus a malloc'd backing store and its bookkeeping outside the V8 heap); strings live in the
 * compacting heap, one header each. All times in an entry are integers (small ints, never boxed).
 */

import {
  type EdnsOption,
  Flag,
  type Message,
  Opcode,
  opcodeOf,
  Rcode,
  RRType,
} from "../dns/message.ts";
import { restoreQuestionCase, withoutOpt } from "../dns/reply.ts";

/** A reply without its OPT and its TTL positions, as withoutOpt makes it. */
type Stripped = NonNullable<ReturnType<typeof withoutOpt>>;
import type { Clock } from "../sys/clock.ts";
import { keyBits, keyFor } from "./key.ts";

export { cacheKey } from "./key.ts";

/** Limits and policy of a cache; durations in seconds, like TTLs. */
export interface CacheOptions {
  clock: Clock;
  /** Most entries kept; least recently used go first. Default 100_000. */
  maxEntries?: number;
  /** Budget for stored bytes plus a per-entry overhead estimate. Default 256 MiB. */
  maxBytes?: number;
  /** Floor for positive TTLs (not applied to negative or SERVFAIL entries). Default 0. */
  minTtl?: number;
  /** Ceiling for positive TTLs. Default 86400. */
  maxTtl?: number;
  /** Ceiling for negative (NXDOMAIN, NODATA) lifetimes. Default 3600. */
  maxNegativeTtl?: number;
  /** How long a SERVFAIL is remembered; 0 = never (RFC 2308 §7.1: at most 5 minutes). Default 5. */
  servfailTtl?: number;
  /** How long past expiry an entry may still be served stale (RFC 8767); 0 disables. Default 86400. */
  staleMaxAge?: number;
  /** Hits an entry needs before it is worth prefetching. Default 2. */
  prefetchMinHits?: number;
}

/** A cached answer ready to send (the pipeline adds the client-facing OPT). */
export interface CacheHit {
  /** A fresh buffer: client's ID and question spelling, TTLs counted down; OPT-less. */
  bytes: Uint8Array;
  /** Served past expiry (RFC 8767), every TTL 30. */
  stale: boolean;
  /** Refresh this entry upstream in the background: popular and in its last 10% of TTL. */
  prefetch: boolean;
  /** The upstream's options stored with the entry (its EDEs, its ECS scope), or null. */
  options: EdnsOption[] | null;
}

/** Counters for monitoring, cumulative since the cache was made (entries and bytes are current). */
export interface CacheStats {
  entries: number;
  /** Accounted bytes: stored bytes + key + CACHE_ENTRY_OVERHEAD per entry. */
  bytes: number;
  /** Fresh answers served. */
  hits: number;
  /** Lookups that served nothing (absent, or expired without a stale answer). */
  misses: number;
  /** Expired answers served under serve-stale. */
  staleHits: number;
  /** Entries pushed out by maxEntries or maxBytes. */
  evictions: number;
  /** Entries dropped because they were past their stale window (or expired, with stale off). */
  expired: number;
  /** Successful store() calls. */
  inserts: number;
}

/**
 * Memory per entry beyond its stored bytes and key characters, for the maxBytes budget: the entry
 * object (with its route tag), string headers, the Map slot and V8's heap headroom.
 * bench/cache_memory.ts measured 387 bytes of RSS per entry at 1M entries (278 of V8 heap), of
 * which 139 were reply bytes, TTL offsets and key chars: 248 + 139 = 387.
 */
export const CACHE_ENTRY_OVERHEAD = 248;

/** RFC 8767 §4: the TTL stale answers are served with. */
export const STALE_TTL = 30;

/** Entry kinds, in the low bits of Entry.meta; then the PREFETCHED bit; hits above META_HIT. */
const POSITIVE = 0;
const NEGATIVE = 1;
const SERVFAIL = 2;
const KIND_MASK = 3;
const PREFETCHED = 4;
const META_HIT = 8;
/** Hits stop counting here, so meta stays a small integer (only the prefetch threshold reads it). */
const MAX_COUNTED_HITS = 1 << 26;

/** RFC 2181 §8: a TTL with the top bit set is treated as zero. */
const MAX_TTL_VALUE = 0x7fffffff;

/** SOA rdata at its smallest: two root names and five 32-bit fields. */
const MIN_SOA_RDATA = 22;

/** Zone transfers (RFC 5936, RFC 1995) are multi-message streams, never one cacheable reply. */
const IXFR = 251;
const AXFR = 252;

/** Largest argument list handed to String.fromCharCode at once. */
const CHUNK = 8192;

/**
 * One cached reply: five fields (8 bytes each in Deno's V8, which has no pointer compression),
 * every one set in the constructor so all entries share one hidden class.
 */
class Entry {
  constructor(
    /**
     * The OPT-less reply, one char per byte, then one big-endian u16 TTL offset per record (the
     * reply's own header counts say how many: ancount + nscount + arcount), then the upstream
     * options kept for the client in wire form (code, length, data), then their length as a
     * big-endian u16 (two chars, 0 for none).
     */
    readonly data: string,
    /**
     * The Map key, kept so an LRU touch re-inserts this old string rather than the caller's fresh
     * one (which would put a young object in the old Map on every hit, to be promoted and freed).
     */
    readonly key: string,
    /** Whole ms since the cache's epoch at store time (an integer: no boxed double per entry). */
    readonly storedAt: number,
    /** Fresh lifetime, whole seconds. */
    readonly lifetime: number,
    /** kind | PREFETCHED | hits * META_HIT. */
    public meta: number,
    /**
     * The route the reply was fetched under (lib/route ForwardDecision.cacheTag; 0 without
     * split DNS): a lookup under another tag misses, so a reload that moves a name to another
     * group never serves the old group's answer.
     */
    readonly tag: number,
  ) {}
}

/** Length of the stored options of Entry.data (its last two chars). */
function optionsLength(data: string): number {
  return (data.charCodeAt(data.length - 2) << 8) | data.charCodeAt(data.length - 1);
}

/** Length of the reply part of Entry.data: all of it but two chars per record and the options. */
function replyLength(data: string): number {
  const records = ((data.charCodeAt(6) << 8) | data.charCodeAt(7)) +
    ((data.charCodeAt(8) << 8) | data.charCodeAt(9)) +
    ((data.charCodeAt(10) << 8) | data.charCodeAt(11));
  return data.length - 2 * records - 2 - optionsLength(data);
}

/** The options stored at the end of Entry.data, as fresh EdnsOptions; null when none. */
function storedOptions(data: string): EdnsOption[] | null {
  const len = optionsLength(data);
  if (len === 0) return null;
  const raw = new Uint8Array(len);
  const start = data.length - 2 - len;
  for (let i = 0; i < len; i++) raw[i] = data.charCodeAt(start + i);
  const out: EdnsOption[] = [];
  for (let p = 0; p + 4 <= len;) {
    const n = (raw[p + 2] << 8) | raw[p + 3];
    out.push({ code: (raw[p] << 8) | raw[p + 1], data: raw.subarray(p + 4, p + 4 + n) });
    p += 4 + n;
  }
  return out;
}

/** Bytes as a one-byte string (every char < 256), chunked to keep argument lists short. */
function bytesToString(b: Uint8Array): string {
  if (b.length <= CHUNK) return String.fromCharCode.apply(null, b as unknown as number[]);
  let s = "";
  for (let i = 0; i < b.length; i += CHUNK) {
    s += String.fromCharCode.apply(null, b.subarray(i, i + CHUNK) as unknown as number[]);
  }
  return s;
}

function u32(b: Uint8Array, p: number): number {
  return b[p] * 0x1000000 + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
}

function ttlValue(ttl: number): number {
  return ttl > MAX_TTL_VALUE ? 0 : ttl;
}

function checkSeconds(name: string, v: number, min = 0): number {
  if (!Number.isInteger(v) || v < min || v > MAX_TTL_VALUE) {
    throw new RangeError(`${name} must be an integer in [${min}, ${MAX_TTL_VALUE}], got ${v}`);
  }
  return v;
}

/**
 * A bounded LRU cache of DNS replies keyed by cacheKey(query). A Map in insertion order is the LRU
 * list (delete + set on every hit), which costs nothing per entry beyond the Map slot.
 */
export class ResponseCache {
  readonly #clock: Clock;
  /** clock.now() at construction; entries keep integer ms since then. */
  readonly #epoch: number;
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #minTtl: number;
  readonly #maxTtl: number;
  readonly #maxNegativeTtl: number;
  readonly #servfailTtl: number;
  readonly #staleMaxAgeMs: number;
  readonly #prefetchMinHits: number;
  readonly #entries = new Map<string, Entry>();
  /** Where LRU eviction goes on from (see #evictOverBudget). */
  #oldest: MapIterator<[string, Entry]> | null = null;
  #bytes = 0;
  #hits = 0;
  #misses = 0;
  #staleHits = 0;
  #evictions = 0;
  #expired = 0;
  #inserts = 0;

  /** Throws RangeError on a negative or non-integer limit, or minTtl above maxTtl. */
  constructor(opts: CacheOptions) {
    this.#clock = opts.clock;
    this.#epoch = opts.clock.now();
    this.#maxEntries = checkSeconds("maxEntries", opts.maxEntries ?? 100_000);
    const maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new RangeError(`maxBytes must be a non-negative integer, got ${maxBytes}`);
    }
    this.#maxBytes = maxBytes;
    this.#minTtl = checkSeconds("minTtl", opts.minTtl ?? 0);
    this.#maxTtl = checkSeconds("maxTtl", opts.maxTtl ?? 86400);
    if (this.#minTtl > this.#maxTtl) {
      throw new RangeError(`minTtl ${this.#minTtl} is above maxTtl ${this.#maxTtl}`);
    }
    this.#maxNegativeTtl = checkSeconds("maxNegativeTtl", opts.maxNegativeTtl ?? 3600);
    this.#servfailTtl = checkSeconds("servfailTtl", opts.servfailTtl ?? 5);
    this.#staleMaxAgeMs = checkSeconds("staleMaxAge", opts.staleMaxAge ?? 86400) * 1000;
    this.#prefetchMinHits = checkSeconds("prefetchMinHits", opts.prefetchMinHits ?? 2);
  }

  /**
   * Stores an upstream reply (`msg` = its decoded form) under `key`, replacing any entry there.
   * Positive: smallest answer TTL, clamped to [minTtl, maxTtl]. Negative (NXDOMAIN, or NOERROR
   * without answers): min(SOA TTL, SOA MINIMUM) of the authority SOA, at most maxNegativeTtl;
   * never without an SOA. SERVFAIL: servfailTtl, and it never displaces an answer that is still
   * fresh or servable stale (a failed refresh must not destroy what serve-stale would send).
   * Never: TC, other rcodes, zone transfers, responses without a question or whose question does
   * not match `key`, a TTL of 0 from upstream, or an entry larger than maxBytes. The upstream OPT
   * is not stored, only `options` from it (the ones the client should get too, see
   * relayedOptions), given back with every hit. `tag` is the route it was fetched under (see
   * lookup). `stripped` is `withoutOpt(reply, msg)` when the caller already made it (the
   * pipeline needs it for the client too). Returns whether the reply was stored.
   */
  store(
    key: string,
    reply: Uint8Array,
    msg: Message,
    options?: readonly EdnsOption[] | null,
    tag = 0,
    stripped?: Stripped | null,
  ): boolean {
    const q = msg.question;
    // The reply's question must be the key's (the flag bits and client subnet, which replies do
    // not echo, taken as given).
    if (q === null || key === "" || !key.startsWith(keyFor(q, keyBits(key, q.name.length)))) {
      return false;
    }
    if (q.qtype === AXFR || q.qtype === IXFR || this.#maxEntries === 0) return false;
    const flags = msg.header.flags;
    if ((flags & Flag.QR) === 0 || (flags & Flag.TC) !== 0) return false;
    if (opcodeOf(flags) !== Opcode.QUERY) return false;
    const kindAndLifetime = this.#classify(reply, msg);
    if (kindAndLifetime < 0) return false;
    const kind = kindAndLifetime % 4;
    const lifetime = (kindAndLifetime - kind) / 4;
    const old = this.#entries.get(key);
    const now = this.#clock.now() - this.#epoch;
    if (kind === SERVFAIL && old !== undefined && this.#servable(old, now)) return false;
    const cut = stripped === undefined ? withoutOpt(reply, msg) : stripped;
    if (cut === null) return false;
    const { bytes, ttlOffsets } = cut;
    const msgLen = bytes.length;
    let optLen = 0;
    for (const o of options ?? []) optLen += 4 + o.data.length;
    if (optLen > 0xffff) return false;
    // One flat string in one call: appending the offsets would leave a chain of cons strings.
    const packed = new Uint8Array(msgLen + 2 * ttlOffsets.length + optLen + 2);
    packed.set(bytes);
    let p = msgLen;
    for (let i = 0; i < ttlOffsets.length; i++, p += 2) {
      packed[p] = ttlOffsets[i] >>> 8;
      packed[p + 1] = ttlOffsets[i];
    }
    for (const o of options ?? []) {
      packed[p] = o.code >>> 8;
      packed[p + 1] = o.code;
      packed[p + 2] = o.data.length >>> 8;
      packed[p + 3] = o.data.length;
      packed.set(o.data, p + 4);
      p += 4 + o.data.length;
    }
    packed[p] = optLen >>> 8;
    packed[p + 1] = optLen;
    const data = bytesToString(packed);
    const size = packed.length + key.length + CACHE_ENTRY_OVERHEAD;
    if (size > this.#maxBytes) return false;
    if (old !== undefined) this.#remove(key, old);
    this.#entries.set(key, new Entry(data, key, Math.floor(now), lifetime, kind, tag));
    this.#bytes += size;
    this.#inserts++;
    this.#evictOverBudget();
    return true;
  }

  /**
   * The cached answer for `key` as a new buffer with `clientId`, the client's spelling of the
   * question name (`clientName`, 0x20) and every TTL = max(0, clamp(TTL) − whole seconds of age).
   * Expired entries give null unless `opts.stale` and within staleMaxAge of expiry (not for
   * SERVFAIL): then `stale` and every TTL 30. `prefetch` is set once per stored entry, on a fresh
   * hit in the last 10% of its lifetime once it has had prefetchMinHits hits. An entry stored
   * under another route `tag` than the one given is a miss (it stays until replaced or evicted).
   */
  lookup(
    key: string,
    clientId: number,
    clientName: Uint8Array,
    opts?: { stale?: boolean },
    tag = 0,
  ): CacheHit | null {
    const e = this.#entries.get(key);
    if (e === undefined || e.tag !== tag) {
      this.#misses++;
      return null;
    }
    const ageMs = this.#clock.now() - this.#epoch - e.storedAt;
    const lifeMs = e.lifetime * 1000;
    if (ageMs >= lifeMs) {
      if (!this.#staleEligible(e, ageMs - lifeMs)) {
        this.#remove(key, e);
        this.#expired++;
        this.#misses++;
        return null;
      }
      if (opts?.stale !== true) {
        this.#misses++;
        return null;
      }
      this.#staleHits++;
      this.#touch(e);
      const bytes = this.#render(e, clientId, clientName, -1);
      return { bytes, stale: true, prefetch: false, options: storedOptions(e.data) };
    }
    this.#hits++;
    this.#touch(e);
    let meta = e.meta;
    if (meta < MAX_COUNTED_HITS * META_HIT) meta += META_HIT;
    let prefetch = false;
    if (
      (meta & PREFETCHED) === 0 && Math.floor(meta / META_HIT) >= this.#prefetchMinHits &&
      (lifeMs - ageMs) * 10 <= lifeMs
    ) {
      meta |= PREFETCHED;
      prefetch = true;
    }
    e.meta = meta;
    const bytes = this.#render(e, clientId, clientName, Math.floor(ageMs / 1000));
    return { bytes, stale: false, prefetch, options: storedOptions(e.data) };
  }

  /**
   * True when `key` has an expired entry that could still be served stale: lets the caller arm
   * the RFC 8767 answer timer only when there is something to answer with. Counts nothing.
   */
  hasStale(key: string, tag = 0): boolean {
    const e = this.#entries.get(key);
    if (e === undefined || e.tag !== tag) return false;
    const pastMs = this.#clock.now() - this.#epoch - e.storedAt - e.lifetime * 1000;
    return pastMs >= 0 && this.#staleEligible(e, pastMs);
  }

  /** Drops the entry for `key`, if any; returns whether there was one. */
  delete(key: string): boolean {
    const e = this.#entries.get(key);
    if (e === undefined) return false;
    this.#remove(key, e);
    return true;
  }

  /** Current size and cumulative counters. */
  stats(): CacheStats {
    return {
      entries: this.#entries.size,
      bytes: this.#bytes,
      hits: this.#hits,
      misses: this.#misses,
      staleHits: this.#staleHits,
      evictions: this.#evictions,
      expired: this.#expired,
      inserts: this.#inserts,
    };
  }

  /** Whether `e`, expired for `pastMs` ms, may still be served stale (never a SERVFAIL). */
  #staleEligible(e: Entry, pastMs: number): boolean {
    return (e.meta & KIND_MASK) !== SERVFAIL && this.#staleMaxAgeMs > 0 &&
      pastMs <= this.#staleMaxAgeMs;
  }

  /** Whether `e` could still answer, fresh or stale, at `now` ms since the epoch. */
  #servable(e: Entry, now: number): boolean {
    const pastMs = now - e.storedAt - e.lifetime * 1000;
    return pastMs < 0 || this.#staleEligible(e, pastMs);
  }

  /**
   * Kind and lifetime of a reply as `lifetime * 4 + kind`, or -1 when it must not be cached.
   * One number, so store() allocates nothing to learn it.
   */
  #classify(reply: Uint8Array, msg: Message): number {
    const rcode = msg.rcode;
    if (rcode === Rcode.SERVFAIL) {
      return this.#servfailTtl > 0 ? this.#servfailTtl * 4 + SERVFAIL : -1;
    }
    if (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN) return -1;
    let answerTtl = Infinity;
    let soaTtl = -1;
    for (const r of msg.records) {
      if (r.section === 1) {
        answerTtl = Math.min(answerTtl, ttlValue(r.ttl));
      } else if (
        r.section === 2 && r.type === RRType.SOA && soaTtl < 0 && r.rdataLength >= MIN_SOA_RDATA
      ) {
        // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM); MINIMUM ends the rdata.
        soaTtl = Math.min(ttlValue(r.ttl), ttlValue(u32(reply, r.rdataOffset + r.rdataLength - 4)));
      }
    }
    if (rcode === Rcode.NOERROR && answerTtl !== Infinity) {
      // RFC 1035 §3.2.1: TTL 0 means "use for this transaction only", whatever minTtl says.
      const ttl = Math.min(Math.max(answerTtl, this.#minTtl), this.#maxTtl);
      return answerTtl > 0 && ttl > 0 ? ttl * 4 + POSITIVE : -1;
    }
    if (soaTtl < 0) return -1;
    const ttl = Math.min(soaTtl, answerTtl, this.#maxNegativeTtl);
    return ttl > 0 ? ttl * 4 + NEGATIVE : -1;
  }

  /** Copies the entry's reply with the client's ID and spelling; TTLs aged, or STALE_TTL if age < 0. */
  #render(e: Entry, clientId: number, clientName: Uint8Array, age: number): Uint8Array {
    const data = e.data;
    const msgLen = replyLength(data);
    const out = new Uint8Array(msgLen);
    for (let i = 0; i < msgLen; i++) out[i] = data.charCodeAt(i);
    out[0] = clientId >>> 8;
    out[1] = clientId;
    restoreQuestionCase(out, clientName);
    const kind = e.meta & KIND_MASK;
    const floor = kind === POSITIVE ? this.#minTtl : 0;
    const cap = kind === POSITIVE ? this.#maxTtl : e.lifetime;
    const offsetsEnd = data.length - 2 - optionsLength(data);
    for (let p = msgLen; p < offsetsEnd; p += 2) {
      const at = (data.charCodeAt(p) << 8) | data.charCodeAt(p + 1);
      let ttl = STALE_TTL;
      if (age >= 0) {
        ttl = Math.min(Math.max(ttlValue(u32(out, at)), floor), cap) - age;
        if (ttl < 0) ttl = 0;
      }
      out[at] = ttl >>> 24;
      out[at + 1] = ttl >>> 16;
      out[at + 2] = ttl >>> 8;
      out[at + 3] = ttl;
    }
    return out;
  }

  #touch(e: Entry): void {
    this.#entries.delete(e.key);
    this.#entries.set(e.key, e);
  }

  #remove(key: string, e: Entry): void {
    this.#entries.delete(key);
    this.#bytes -= e.data.length + key.length + CACHE_ENTRY_OVERHEAD;
  }

  /**
   * Drops least recently used entries (the Map's oldest) until both budgets hold. The iterator is
   * kept from one eviction to the next: everything before its position has been evicted or moved
   * to the end (a touch re-inserts), so it always stands at the oldest entry. A fresh iterator
   * per eviction would first step over every slot freed since the Map last compacted itself
   * (V8 keeps deleted slots until a rehash), tens of thousands at every store once the cache is
   * full: 5 % of the miss path's CPU.
   */
  #evictOverBudget(): void {
    while (this.#entries.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      let next = this.#oldest?.next();
      if (next === undefined || next.done) {
        this.#oldest = this.#entries.entries();
        next = this.#oldest.next();
        if (next.done) return;
      }
      const [key, e] = next.value;
      this.#remove(key, e);
      this.#evictions++;
    }
  }
}
