/** [cache]: the answer cache. TTL-like settings are in seconds, other durations in ms. */

import { formatDuration } from "../duration.ts";
import {
  bool,
  duration,
  type DurationOptions,
  integer,
  Invalid,
  notAbove,
  type Reader,
  size,
  type Table,
} from "../readers.ts";
import { defineSection, readSection, type SectionValue, setting } from "../table.ts";

const MIB = 1024 * 1024;
const seconds = (opts: DurationOptions = {}): Reader<number> =>
  duration({ seconds: true, ...opts });

/** The [cache] keys: sizes from bench/cache_memory.ts, stale timing from RFC 8767. */
export const CACHE = defineSection("cache", "cache", {
  enabled: setting("enabled", bool, {
    default: true,
    doc: "false turns the cache off (so does max_entries = 0)",
    reloadable: false,
  }),
  max_entries: setting("maxEntries", integer({ min: 0, max: 50_000_000 }), {
    default: 100_000,
    doc: "answers kept at most, least recently used first out; 0 turns the cache off",
    reloadable: false,
  }),
  max_memory: setting("maxBytes", size({ min: MIB, max: 64 * 1024 * MIB }), {
    default: 256 * MIB,
    doc: "memory budget for cached answers, in bytes",
    reloadable: false,
  }),
  min_ttl: setting("minTtl", seconds({ allowZero: true }), {
    default: 0,
    doc: "floor for positive TTLs, seconds",
    reloadable: false,
  }),
  max_ttl: setting("maxTtl", seconds({ zeroHint: "to turn the cache off set enabled = false" }), {
    default: 86_400,
    doc: "ceiling for positive TTLs, seconds; at least min_ttl",
    reloadable: false,
  }),
  max_negative_ttl: setting("maxNegativeTtl", seconds({ allowZero: true }), {
    default: 3_600,
    doc: "ceiling for NXDOMAIN/NODATA TTLs, seconds",
    reloadable: false,
  }),
  servfail_ttl: setting(
    "servfailTtl",
    seconds({ allowZero: true, maxMs: 300_000, maxWhy: "RFC 2308 §7.1" }),
    { default: 5, doc: "how long a SERVFAIL is kept, seconds; 0 = never", reloadable: false },
  ),
  serve_stale: setting("serveStale", bool, {
    default: true,
    doc: "answer from expired entries when upstreams fail or are slow (RFC 8767)",
    reloadable: false,
  }),
  stale_max_age: setting(
    "staleMaxAge",
    seconds({ zeroHint: "to stop serving stale answers set serve_stale = false" }),
    {
      default: 86_400,
      doc: "how long past expiry an entry may be served stale, seconds",
      reloadable: false,
    },
  ),
  stale_answer_after: setting("staleAnswerAfterMs", duration({ allowZero: true }), {
    default: 1_800,
    doc: "RFC 8767's client response timer: a stale answer is sent when no fresh one came by then",
    reloadable: true,
  }),
  prefetch: setting("prefetch", bool, {
    default: true,
    doc: "refresh popular entries shortly before they expire",
    reloadable: true,
  }),
});

/** [cache] settings; `enabled` is false when max_entries = 0. */
export type CacheConfig = SectionValue<typeof CACHE.rows>;

/** [cache] defaults. */
export const DEFAULT_CACHE: Readonly<CacheConfig> = CACHE.defaults;

/** Reads [cache] `c`; `s` is the [server] table, for messages about query_timeout. */
export function readCache(c: Table, s: Table, queryTimeoutMs: number): CacheConfig {
  const cache = readSection(CACHE, c, "cache");
  cache.enabled &&= cache.maxEntries > 0;
  notAbove(
    [c, "cache", "min_ttl", cache.minTtl * 1000],
    [c, "cache", "max_ttl", cache.maxTtl * 1000],
    ["the ceiling for positive TTLs", "the floor for positive TTLs"],
  );
  if (c.stale_answer_after !== undefined && cache.staleAnswerAfterMs >= queryTimeoutMs) {
    const was = s.query_timeout === undefined ? ", the default" : "";
    throw new Invalid(
      "cache.stale_answer_after",
      c.stale_answer_after,
      `must be less than server.query_timeout (${formatDuration(queryTimeoutMs)}${was}), ` +
        `or a stale answer could never beat the timeout`,
    );
  }
  return cache;
}
