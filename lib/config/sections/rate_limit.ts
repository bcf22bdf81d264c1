/** [rate_limit]: token buckets per client prefix. */

import { RATE_LIMIT_ACTIONS } from "../enums.ts";
import { integer, number, oneOf, type Table } from "../readers.ts";
import { defineSection, readSection, type SectionValue, setting } from "../table.ts";

const QPS = { min: 0, max: 1_000_000 };

/** The [rate_limit] keys: off; when on, per /24 (IPv4) and /56 (IPv6). */
export const RATE_LIMIT = defineSection("rate_limit", "rateLimit", {
  qps: setting("qps", number(QPS), {
    default: 0,
    doc: "sustained queries per second per client prefix; 0 turns limiting off",
    reloadable: true,
  }),
  burst: setting("burst", integer({ min: 1, max: 10_000_000 }), {
    default: 0,
    defaultDoc: "twice qps (at least 1); 0 while qps is 0",
    doc: "bucket size: queries a client prefix may send at once after being quiet",
    reloadable: true,
  }),
  ipv4_prefix: setting("ipv4Prefix", integer({ min: 8, max: 32 }), {
    default: 24,
    doc: "IPv4 clients sharing this many leading bits share a bucket",
    reloadable: true,
  }),
  ipv6_prefix: setting("ipv6Prefix", integer({ min: 16, max: 128 }), {
    default: 56,
    doc: "IPv6 clients sharing this many leading bits share a bucket",
    reloadable: true,
  }),
  action: setting("action", oneOf(RATE_LIMIT_ACTIONS), {
    default: "truncate",
    doc: `over the limit: "truncate" (TC=1 over UDP, drop over TCP), "drop" or "refuse"`,
    reloadable: true,
  }),
  max_buckets: setting("maxBuckets", integer({ min: 1, max: 10_000_000 }), {
    default: 100_000,
    doc: "client prefixes tracked; the least recently seen are forgotten",
    reloadable: true,
  }),
  slip: setting("slip", integer({ min: 0, max: 10 }), {
    default: 2,
    doc: "with truncate or refuse, only every slip-th query over the limit is answered",
    reloadable: true,
  }),
  errors_qps: setting("errorsQps", number(QPS), {
    default: 10,
    doc: "error answers made here over UDP per second per client prefix; 0 = unlimited",
    reloadable: true,
  }),
});

/** [rate_limit] settings. */
export type RateLimitConfig = SectionValue<typeof RATE_LIMIT.rows>;

/** [rate_limit] defaults. */
export const DEFAULT_RATE_LIMIT: Readonly<RateLimitConfig> = RATE_LIMIT.defaults;

/** Reads [rate_limit] `r`: burst defaults to twice qps when limiting is on. */
export function readRateLimit(r: Table): RateLimitConfig {
  const rateLimit = readSection(RATE_LIMIT, r, "rate_limit");
  if (r.burst === undefined && rateLimit.qps > 0) {
    rateLimit.burst = Math.max(1, Math.ceil(2 * rateLimit.qps));
  }
  return rateLimit;
}
