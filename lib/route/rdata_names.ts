/**
 * Where names sit inside RDATA of the types whose names may be compressed (RFC 1035 types, and
 * those RFC 3597 §4 says receivers must decompress): for each name, the bytes of fixed fields
 * before it. Needed to rewrite a reply's records with their names uncompressed.
 *
 * lib/dns/reply.ts holds the same table privately (RDATA_NAME_LAYOUT, for withoutOpt); when the
 * codec exports it, this module should re-export that one instead (declare once).
 */
import { RRType } from "../dns/message.ts";

const LAYOUT: ReadonlyMap<number, readonly number[]> = new Map([
  [RRType.NS, [0]],
  [3, [0]], // MD
  [4, [0]], // MF
  [RRType.CNAME, [0]],
  [RRType.SOA, [0, 0]],
  [7, [0]], // MB
  [8, [0]], // MG
  [9, [0]], // MR
  [RRType.PTR, [0]],
  [14, [0, 0]], // MINFO
  [RRType.MX, [2]],
  [17, [0, 0]], // RP
  [18, [2]], // AFSDB
  [21, [2]], // RT
  [26, [2, 0]], // PX
  [RRType.SRV, [6]],
  [36, [2]], // KX
  [39, [0]], // DNAME
]);

/** Fixed bytes before each name in `type`'s RDATA, or undefined when it holds none to expand. */
export function rdataNameOffsets(type: number): readonly number[] | undefined {
  return LAYOUT.get(type);
}
