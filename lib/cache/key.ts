/**
 * Cache keys: what makes two queries interchangeable for a cached answer. Built as one short flat
 * string so a JS Map can hash it; every character is below 256, so V8 keeps it one byte per char.
 */

import type { ClientSubnet } from "../dns/edns.ts";
import { Flag, type Message, type Question } from "../dns/message.ts";
import { MAX_NAME_LENGTH } from "../dns/wire.ts";

/** Key bit for DO (RFC 3225): DNSSEC records are only in answers to DO queries. */
const KEY_DO = 1;
/** Key bit for CD (RFC 4035 §3.2.2): a CD answer may hold data that failed validation. */
const KEY_CD = 2;
/**
 * Key bit for RD: an RD=0 query (forwarded with `non_recursive = "forward"`) is answered from
 * the upstream's cache only, often with a referral or REFUSED: never an answer for RD=1.
 */
const KEY_RD = 4;

// Reused char codes: String.fromCharCode.apply on a plain array builds the key in one call.
const codes: number[] = [];

/**
 * The key of `q` with `bits` (KEY_DO | KEY_CD | KEY_RD) as the char after qtype and qclass: the
 * name case-folded exactly as wire.ts nameKey does, then qtype and qclass as two chars each,
 * then, for a query whose EDNS Client Subnet is kept, the subnet as sent (family, source prefix
 * length, address bytes), so tailored answers are cached and coalesced per client subnet.
 * Not nameKey + suffix: that makes a cons string, which Map.get must flatten on every lookup
 * and which #touch would then store (measured: 0.25 µs more per lookup).
 */
export function keyFor(q: Question, bits: number, ecs?: ClientSubnet | null): string {
  const name = q.name;
  const n = Math.min(name.length, MAX_NAME_LENGTH);
  const extra = ecs ? 2 + ecs.address.length : 0;
  codes.length = n + 5 + extra;
  for (let i = 0; i < n; i++) {
    const b = name[i];
    codes[i] = b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
  }
  codes[n] = q.qtype >> 8;
  codes[n + 1] = q.qtype & 0xff;
  codes[n + 2] = q.qclass >> 8;
  codes[n + 3] = q.qclass & 0xff;
  codes[n + 4] = bits & 0xff;
  if (ecs) {
    codes[n + 5] = ecs.family;
    codes[n + 6] = ecs.sourcePrefix;
    for (let i = 0; i < ecs.address.length; i++) codes[n + 7 + i] = ecs.address[i];
  }
  return String.fromCharCode.apply(null, codes);
}

/** The flag bits of a key built by keyFor for a question whose wire name has `nameLength` bytes. */
export function keyBits(key: string, nameLength: number): number {
  return key.charCodeAt(Math.min(nameLength, MAX_NAME_LENGTH) + 4);
}

/**
 * The cache key of a query: question name case-insensitively (RFC 4343), qtype, qclass, DO, CD
 * and RD, so 0x20 spellings share an entry while DNSSEC and non-DNSSEC, CD and validated, or
 * recursive and non-recursive answers never do; and `ecs`, the client's subnet when ECS is kept
 * (see keyFor). "" for a query without a question, which is never cached. On the hot path of
 * every query: one pass over the name, one string.
 */
export function cacheKey(query: Message, ecs?: ClientSubnet | null): string {
  const q = query.question;
  if (q === null) return "";
  const flags = query.header.flags;
  const bits = (query.edns !== null && query.edns.dnssecOk ? KEY_DO : 0) |
    ((flags & Flag.CD) !== 0 ? KEY_CD : 0) | ((flags & Flag.RD) !== 0 ? KEY_RD : 0);
  return keyFor(q, bits, ecs);
}
