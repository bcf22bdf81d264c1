/**
 * Locally served zones: names that must never leave the host, answered here as an authoritative
 * server would (RFC 6761 special-use names, RFC 6303 private and special reverse zones, RFC 8375
 * home.arpa, RFC 6762 .local, RFC 7686 .onion). Like Unbound's default local zones: a name under
 * one answers NXDOMAIN with the zone's SOA in the authority section (so clients cache the
 * negative answer), the apex answers its SOA and NS and NODATA + SOA for other types, and the
 * few names with data (localhost, the loopback reverse names) answer it.
 *
 * The same LocalZone serves operator-declared zones (a route with `action = "local"`), whose
 * names come from local data.
 */
import { CLASS_IN, type Message, Rcode, RRType } from "../dns/message.ts";
import { nameFromString, namesEqual, nameToString } from "../dns/wire.ts";
import { localReply, type LocalRR, soaRdata } from "../dns/local_reply.ts";
import { isRecordError, LocalData, parseRecord, type RecordRow } from "./records.ts";

/** One built-in zone: its apex, where it is specified, and any data it holds. */
export interface BuiltinZoneSpec {
  readonly name: string;
  readonly rfc: string;
  /** Every name at or below the apex resolves to the loopback addresses (RFC 6761 §6.3). */
  readonly loopback?: boolean;
  /** Records inside the zone (owner names absolute). */
  readonly records?: readonly RecordRow[];
}

const ptrLocalhost = (name: string): RecordRow => ({ name, type: "PTR", data: "localhost." });
/** 32 nibbles of zero, for the reverse names of :: and ::1. */
const ZERO_NIBBLES_31 = "0.".repeat(31);

/**
 * The zones served locally by default (`local_zones = true`), declared once; the docs' list is
 * this table. `test` (RFC 6761 §6.2) is deliberately absent: operators run test zones on their
 * own resolvers and expect those names forwarded — route it with `action = "nxdomain"` to stop
 * it. A route for one of these names (or a parent, other than the root) replaces the zone.
 */
export const BUILTIN_LOCAL_ZONES: readonly BuiltinZoneSpec[] = Object.freeze([
  {
    name: "localhost",
    rfc: "RFC 6761 §6.3",
    loopback: true,
  },
  { name: "invalid", rfc: "RFC 6761 §6.4" },
  { name: "local", rfc: "RFC 6762 §3 (mDNS names never go to unicast DNS)" },
  { name: "onion", rfc: "RFC 7686 §2" },
  { name: "home.arpa", rfc: "RFC 8375" },
  // RFC 6303 §4.1: RFC 1918 space.
  { name: "10.in-addr.arpa", rfc: "RFC 6303 §4.1" },
  ...Array.from({ length: 16 }, (_, i) => ({
    name: `${16 + i}.172.in-addr.arpa`,
    rfc: "RFC 6303 §4.1",
  })),
  { name: "168.192.in-addr.arpa", rfc: "RFC 6303 §4.1" },
  // RFC 6303 §4.2: RFC 5735 / RFC 5737 special IPv4 space.
  { name: "0.in-addr.arpa", rfc: "RFC 6303 §4.2" },
  {
    name: "127.in-addr.arpa",
    rfc: "RFC 6303 §4.2",
    records: [ptrLocalhost("1.0.0.127.in-addr.arpa")],
  },
  { name: "254.169.in-addr.arpa", rfc: "RFC 6303 §4.2" },
  { name: "2.0.192.in-addr.arpa", rfc: "RFC 6303 §4.2" },
  { name: "100.51.198.in-addr.arpa", rfc: "RFC 6303 §4.2" },
  { name: "113.0.203.in-addr.arpa", rfc: "RFC 6303 §4.2" },
  { name: "255.255.255.255.in-addr.arpa", rfc: "RFC 6303 §4.2" },
  // RFC 7793: 100.64.0.0/10 shared address space.
  ...Array.from({ length: 64 }, (_, i) => ({
    name: `${64 + i}.100.in-addr.arpa`,
    rfc: "RFC 7793",
  })),
  // RFC 6303 §4.3: the unspecified and loopback IPv6 addresses.
  { name: `0.${ZERO_NIBBLES_31}ip6.arpa`, rfc: "RFC 6303 §4.3" },
  {
    name: `1.${ZERO_NIBBLES_31}ip6.arpa`,
    rfc: "RFC 6303 §4.3",
    records: [ptrLocalhost(`1.${ZERO_NIBBLES_31}ip6.arpa`)],
  },
  // RFC 6303 §4.4: locally assigned unique local addresses (fd00::/8).
  { name: "d.f.ip6.arpa", rfc: "RFC 6303 §4.4" },
  // RFC 6303 §4.5: link-local fe80::/10.
  { name: "8.e.f.ip6.arpa", rfc: "RFC 6303 §4.5" },
  { name: "9.e.f.ip6.arpa", rfc: "RFC 6303 §4.5" },
  { name: "a.e.f.ip6.arpa", rfc: "RFC 6303 §4.5" },
  { name: "b.e.f.ip6.arpa", rfc: "RFC 6303 §4.5" },
  // RFC 6303 §4.6: the IPv6 documentation prefix 2001:db8::/32.
  { name: "8.b.d.0.1.0.0.2.ip6.arpa", rfc: "RFC 6303 §4.6" },
]);

/** The SOA timers of synthesized zones, as Unbound's built-in local zones use them. */
export const SYNTHESIZED_SOA = {
  serial: 1,
  refresh: 3600,
  retry: 1200,
  expire: 604800,
  /** Negative-caching TTL (RFC 2308 §5) and the SOA record's own TTL. */
  minimum: 10800,
} as const;

const LOCALHOST = nameFromString("localhost");
const NOBODY_INVALID = nameFromString("nobody.invalid");

/**
 * The SOA of a zone answered here (`localhost. nobody.invalid.` and SYNTHESIZED_SOA's timers),
 * with `negativeTtl` as both its own TTL and its negative-caching TTL.
 */
export function synthesizedSoa(
  apex: Uint8Array,
  negativeTtl: number = SYNTHESIZED_SOA.minimum,
): LocalRR {
  const timers = { ...SYNTHESIZED_SOA, minimum: negativeTtl };
  return {
    owner: apex,
    type: RRType.SOA,
    ttl: negativeTtl,
    rdata: soaRdata(LOCALHOST, NOBODY_INVALID, timers),
  };
}
const LOOPBACK_V4 = new Uint8Array([127, 0, 0, 1]);
const LOOPBACK_V6 = Uint8Array.from({ length: 16 }, (_, i) => (i === 15 ? 1 : 0));

/** How a LocalZone is built. */
export interface LocalZoneOptions {
  /** Answer A/AAAA with loopback at every name in the zone (localhost). */
  loopback?: boolean;
  /** Data the zone itself holds (built-in PTRs); operator data is passed to `answer`. */
  data?: LocalData;
}

/** An authoritative zone answered from memory; see the module comment. */
export class LocalZone {
  /** Lower-cased wire form of the apex. */
  readonly apex: Uint8Array;
  /** Presentation form, for logs, metrics and errors. */
  readonly name: string;
  /** The synthesized SOA (`localhost. nobody.invalid. 1 3600 1200 604800 10800`). */
  readonly soa: LocalRR;
  readonly ns: LocalRR;
  readonly #loopback: boolean;
  readonly #data: LocalData | null;

  constructor(apex: Uint8Array | string, opts: LocalZoneOptions = {}) {
    const wire = typeof apex === "string" ? nameFromString(apex) : apex;
    this.apex = wire.map((b) => (b >= 0x41 && b <= 0x5a ? b | 0x20 : b));
    this.name = nameToString(this.apex);
    this.soa = synthesizedSoa(this.apex);
    this.ns = { owner: this.apex, type: RRType.NS, ttl: this.soa.ttl, rdata: LOCALHOST };
    this.#loopback = opts.loopback ?? false;
    this.#data = opts.data ?? null;
  }

  /**
   * The answer for a query whose name lies in this zone and has no operator data of its own
   * (`operator` is consulted only to tell an empty non-terminal from a missing name). Classes
   * other than IN (and ANY) are REFUSED: the zone exists in IN only.
   */
  answer(query: Message, operator: LocalData | null = null): Uint8Array | null {
    const q = query.question;
    if (!q) return null;
    if (q.qclass !== CLASS_IN && q.qclass !== RRType.ANY) {
      return localReply(query, Rcode.REFUSED, [], [], false);
    }
    const apex = namesEqual(q.name, this.apex);
    const own = this.#data?.get(q.name);
    if (own && !(apex && (q.qtype === RRType.SOA || q.qtype === RRType.NS))) {
      return this.#data!.answer(query, own, this.soa);
    }
    const answer: LocalRR[] = [];
    const any = q.qtype === RRType.ANY;
    if (apex && (any || q.qtype === RRType.SOA)) answer.push(this.soa);
    if (apex && (any || q.qtype === RRType.NS)) answer.push(this.ns);
    if (this.#loopback) {
      const ttl = SYNTHESIZED_SOA.minimum;
      if (any || q.qtype === RRType.A) {
        answer.push({ owner: q.name, type: RRType.A, ttl, rdata: LOOPBACK_V4 });
      }
      if (any || q.qtype === RRType.AAAA) {
        answer.push({ owner: q.name, type: RRType.AAAA, ttl, rdata: LOOPBACK_V6 });
      }
    }
    if (answer.length > 0) return localReply(query, Rcode.NOERROR, answer, []);
    const exists = apex || this.#loopback || (this.#data?.covers(q.name) ?? false) ||
      (operator?.covers(q.name) ?? false);
    return localReply(query, exists ? Rcode.NOERROR : Rcode.NXDOMAIN, [], [this.soa]);
  }
}

/** A LocalZone per built-in spec, with its data parsed (the table is checked by tests). */
export function builtinZones(specs: readonly BuiltinZoneSpec[] = BUILTIN_LOCAL_ZONES): LocalZone[] {
  return specs.map((spec) => {
    let data: LocalData | undefined;
    for (const row of spec.records ?? []) {
      const rec = parseRecord(row, SYNTHESIZED_SOA.minimum);
      if (isRecordError(rec)) throw new Error(`built-in zone ${spec.name}: ${rec.message}`);
      data ??= new LocalData();
      const conflict = data.add(rec);
      if (conflict) throw new Error(`built-in zone ${spec.name}: ${conflict}`);
    }
    return new LocalZone(spec.name, { loopback: spec.loopback, data });
  });
}
