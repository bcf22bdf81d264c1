/**
 * Where names sit inside the RDATA of the types whose names may be compressed (RFC 1035 types,
 * those RFC 3597 §4 says receivers must decompress, and the few later types that copied them):
 * for each name, the bytes of fixed fields to skip before it. The codec uses it to move
 * compression pointers when it cuts bytes out of a message; the router to rewrite a reply's
 * records with their names uncompressed.
 */
import { type RecordInfo, RRType } from "./message.ts";
import { readName } from "./wire.ts";

/** Fixed bytes before each name in the RDATA of each type with compressible names. */
export const RDATA_NAME_LAYOUT: ReadonlyMap<number, readonly number[]> = new Map([
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

/** Fixed bytes before each name in `type`'s RDATA, or undefined when it holds no such name. */
export function rdataNameOffsets(type: number): readonly number[] | undefined {
  return RDATA_NAME_LAYOUT.get(type);
}

/**
 * The RDATA of `rec` with every name in it written out uncompressed (the types in
 * RDATA_NAME_LAYOUT), or a copy as it is for other types; null when a name does not decode.
 */
export function decompressRdata(reply: Uint8Array, rec: RecordInfo): Uint8Array | null {
  const start = rec.rdataOffset;
  const end = start + rec.rdataLength;
  const layout = rdataNameOffsets(rec.type);
  if (!layout) return reply.slice(start, end);
  const chunks: Uint8Array[] = [];
  let p = start;
  for (const skip of layout) {
    if (p + skip > end) return null;
    chunks.push(reply.subarray(p, p + skip));
    const name = readName(reply, p + skip);
    if (!name.ok || name.value.end > end) return null;
    chunks.push(name.value.wire);
    p = name.value.end;
  }
  chunks.push(reply.subarray(p, end)); // fixed fields after the last name (SOA timers)
  const size = chunks.reduce((n, c) => n + c.length, 0);
  if (size > 0xffff) return null;
  const out = new Uint8Array(size);
  let w = 0;
  for (const c of chunks) {
    out.set(c, w);
    w += c.length;
  }
  return out;
}
