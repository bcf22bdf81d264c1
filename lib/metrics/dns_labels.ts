/**
 * The qtype and rcode label values of the query metrics: a small fixed subset of the registries
 * in lib/dns/message.ts (RRType, Rcode), named by their mnemonics, with "other" for the rest, so
 * a client sending random types cannot create unbounded series. The indexes are derived from
 * the registries; the query log names every type and rcode instead (typeName, rcodeName).
 */
import { Rcode, type RcodeName, RRType, type RRTypeName } from "../dns/message.ts";

/** The qtype label values, in index order; anything else is "other" (last). */
export const QTYPE_LABELS = [
  "A",
  "NS",
  "CNAME",
  "SOA",
  "PTR",
  "MX",
  "TXT",
  "AAAA",
  "SRV",
  "NAPTR",
  "DS",
  "RRSIG",
  "DNSKEY",
  "SVCB",
  "HTTPS",
  "CAA",
  "ANY",
  "other",
] as const satisfies readonly (RRTypeName | "other")[];

const OTHER_QTYPE = QTYPE_LABELS.length - 1;
/** Types below 256 → label index; one typed-array load on the hot path. */
const QTYPE_INDEX = new Uint8Array(256).fill(OTHER_QTYPE);
/** The few labelled types from 256 up (CAA). */
const HIGH_QTYPE_INDEX = new Map<number, number>();
for (let i = 0; i < OTHER_QTYPE; i++) {
  const code: number = RRType[QTYPE_LABELS[i] as RRTypeName];
  if (code < 256) QTYPE_INDEX[code] = i;
  else HIGH_QTYPE_INDEX.set(code, i);
}

/** Index into QTYPE_LABELS for a qtype (common types by name, the rest "other"). */
export function qtypeIndex(qtype: number): number {
  if (qtype >= 0 && qtype < 256) return QTYPE_INDEX[qtype];
  return HIGH_QTYPE_INDEX.get(qtype) ?? OTHER_QTYPE;
}

/** The rcode label values, in index order; "other" (last) for the rest. */
export const RCODE_LABELS = [
  "NOERROR",
  "FORMERR",
  "SERVFAIL",
  "NXDOMAIN",
  "NOTIMP",
  "REFUSED",
  "YXDOMAIN",
  "YXRRSET",
  "NXRRSET",
  "NOTAUTH",
  "NOTZONE",
  "BADVERS",
  "other",
] as const satisfies readonly (RcodeName | "other")[];

const OTHER_RCODE = RCODE_LABELS.length - 1;
/** Every 12-bit (extended) rcode → label index. */
const RCODE_INDEX = new Uint8Array(4096).fill(OTHER_RCODE);
for (let i = 0; i < OTHER_RCODE; i++) RCODE_INDEX[Rcode[RCODE_LABELS[i] as RcodeName]] = i;

/** Index into RCODE_LABELS for a (possibly extended) rcode. */
export function rcodeIndex(rcode: number): number {
  return rcode >= 0 && rcode < 4096 ? RCODE_INDEX[rcode | 0] : OTHER_RCODE;
}
