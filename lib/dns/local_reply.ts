/**
 * Building authoritative answers from local data (lib/route: local zones, records, hosts files,
 * blocked names): header, the client's question, answer and authority RRs, and the RDATA of the
 * types local data holds. Pure byte assembly; no OPT (the pipeline adds its own per hop, with
 * any Extended DNS Error) and never cached.
 */
import { putU16, putU32 } from "./bytes.ts";
import { CLASS_IN, Flag, HEADER_SIZE, type Message } from "./message.ts";
import { namesEqual } from "./wire.ts";

/** One resource record of local data, already in wire form. */
export interface LocalRR {
  /** Owner name, uncompressed wire form (lower case as configured). */
  readonly owner: Uint8Array;
  readonly type: number;
  readonly ttl: number;
  /** RDATA exactly as sent: names in it are written uncompressed. */
  readonly rdata: Uint8Array;
}

/** Opcode bits of the flags word, copied from query to reply. */
const OPCODE_MASK = 0x7800;
/** Largest TTL a record may carry (RFC 2181 §8). */
export const MAX_TTL = 0x7fffffff;

/** Bytes one RR takes when written by `writeRR` for a question name `qname`. */
function rrSize(rr: LocalRR, qname: Uint8Array): number {
  const owner = namesEqual(rr.owner, qname) ? 2 : rr.owner.length;
  return owner + 10 + rr.rdata.length;
}

/** Writes `rr` at `p`, its owner as a pointer to the question when it is the question name. */
function writeRR(out: Uint8Array, p: number, rr: LocalRR, qname: Uint8Array): number {
  if (namesEqual(rr.owner, qname)) {
    putU16(out, p, 0xc000 | HEADER_SIZE);
    p += 2;
  } else {
    out.set(rr.owner, p);
    p += rr.owner.length;
  }
  putU16(out, p, rr.type);
  putU16(out, p + 2, CLASS_IN);
  putU32(out, p + 4, rr.ttl);
  putU16(out, p + 8, rr.rdata.length);
  out.set(rr.rdata, p + 10);
  return p + 10 + rr.rdata.length;
}

/**
 * An answer to `query` from local data: QR, AA (unless `authoritative` is false), RA, opcode, RD
 * and CD copied, `rcode` (0..15), the question as the client spelled it, then `answer` and
 * `authority`. No OPT and no additional section. Returns null for a query without a question.
 */
export function localReply(
  query: Message,
  rcode: number,
  answer: readonly LocalRR[],
  authority: readonly LocalRR[],
  authoritative = true,
): Uint8Array | null {
  const q = query.question;
  if (!q) return null;
  if (!Number.isInteger(rcode) || rcode < 0 || rcode > 0xf) {
    throw new RangeError(`rcode must be an integer in [0, 15], got ${rcode}`);
  }
  let size = HEADER_SIZE + q.name.length + 4;
  for (const rr of answer) size += rrSize(rr, q.name);
  for (const rr of authority) size += rrSize(rr, q.name);
  const out = new Uint8Array(size);
  const flags = Flag.QR | (query.header.flags & (OPCODE_MASK | Flag.RD | Flag.CD)) | Flag.RA |
    (authoritative ? Flag.AA : 0) | rcode;
  putU16(out, 0, query.header.id);
  putU16(out, 2, flags);
  putU16(out, 4, 1);
  putU16(out, 6, answer.length);
  putU16(out, 8, authority.length);
  putU16(out, 10, 0);
  out.set(q.name, HEADER_SIZE);
  let p = HEADER_SIZE + q.name.length;
  putU16(out, p, q.qtype);
  putU16(out, p + 2, q.qclass);
  p += 4;
  for (const rr of answer) p = writeRR(out, p, rr, q.name);
  for (const rr of authority) p = writeRR(out, p, rr, q.name);
  return out;
}

/** The five 32-bit numbers of an SOA record after its names (RFC 1035 §3.3.13). */
export interface SoaTimers {
  readonly serial: number;
  readonly refresh: number;
  readonly retry: number;
  readonly expire: number;
  /** Negative-caching TTL (RFC 2308 §5). */
  readonly minimum: number;
}

/** RDATA of an SOA record (RFC 1035 §3.3.13); names uncompressed. */
export function soaRdata(mname: Uint8Array, rname: Uint8Array, timers: SoaTimers): Uint8Array {
  const out = new Uint8Array(mname.length + rname.length + 20);
  out.set(mname, 0);
  out.set(rname, mname.length);
  let p = mname.length + rname.length;
  for (const v of [timers.serial, timers.refresh, timers.retry, timers.expire, timers.minimum]) {
    putU32(out, p, v);
    p += 4;
  }
  return out;
}

/** RDATA of a record whose data is a 16-bit number then a name (MX: RFC 1035 §3.3.9). */
export function u16NameRdata(n: number, name: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + name.length);
  putU16(out, 0, n);
  out.set(name, 2);
  return out;
}

/** RDATA of an SRV record (RFC 2782): priority, weight, port, target (never compressed). */
export function srvRdata(priority: number, weight: number, port: number, target: Uint8Array) {
  const out = new Uint8Array(6 + target.length);
  putU16(out, 0, priority);
  putU16(out, 2, weight);
  putU16(out, 4, port);
  out.set(target, 6);
  return out;
}

/** RDATA of an A record from an unsigned 32-bit address. */
export function aRdata(v4: number): Uint8Array {
  const out = new Uint8Array(4);
  putU32(out, 0, v4);
  return out;
}

/** RDATA of an AAAA record from four 32-bit words, most significant first. */
export function aaaaRdata(words: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(16);
  for (let k = 0; k < 4; k++) putU32(out, 4 * k, words[k]);
  return out;
}
