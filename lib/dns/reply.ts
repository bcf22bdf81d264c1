/**
 * Building and adjusting messages from raw bytes: a forwarder relays upstream replies almost
 * verbatim (new ID, client's question case, truncation for UDP) and only synthesises small error
 * replies and queries itself. Nothing here re-encodes a decoded message.
 * Inputs that come from our own code are checked and throw RangeError on programmer error.
 */

import {
  CLASS_IN,
  decodeMessage,
  type EdnsOption,
  Flag,
  type Header,
  HEADER_SIZE,
  type Message,
  opcodeOf,
  type Question,
  Rcode,
  RRType,
} from "./message.ts";
import { MAX_NAME_LENGTH, nameFromString, namesEqual } from "./wire.ts";

/** Default advertised EDNS UDP size: the DNS Flag Day 2020 value that avoids IP fragmentation. */
export const DEFAULT_EDNS_UDP_SIZE = 1232;

/** The opcode bits of the flags word, copied from query to reply. */
const OPCODE_MASK = 0x7800;

/** Bytes of an OPT RR with no options: root owner, type, class, TTL, rdlength. */
const OPT_FIXED_SIZE = 11;

function checkU16(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw new RangeError(`${what} must be an integer in [0, 65535], got ${v}`);
  }
}

function putU16(out: Uint8Array, p: number, v: number): void {
  out[p] = v >>> 8;
  out[p + 1] = v;
}

function writeHeader(
  out: Uint8Array,
  id: number,
  flags: number,
  qd: number,
  an: number,
  ns: number,
  ar: number,
): void {
  putU16(out, 0, id);
  putU16(out, 2, flags);
  putU16(out, 4, qd);
  putU16(out, 6, an);
  putU16(out, 8, ns);
  putU16(out, 10, ar);
}

/** Writes name + type + class at `p`; returns the offset after it. */
function writeQuestion(
  out: Uint8Array,
  p: number,
  name: Uint8Array,
  qtype: number,
  qclass: number,
) {
  out.set(name, p);
  p += name.length;
  putU16(out, p, qtype);
  putU16(out, p + 2, qclass);
  return p + 4;
}

function optSize(options: readonly EdnsOption[]): number {
  let n = OPT_FIXED_SIZE;
  for (const o of options) n += 4 + o.data.length;
  return n;
}

/** Writes an OPT RR at `p` (size from optSize); returns the offset after it. */
function writeOpt(
  out: Uint8Array,
  p: number,
  udpSize: number,
  extendedRcode: number,
  dnssecOk: boolean,
  options: readonly EdnsOption[],
): number {
  out[p] = 0; // root owner
  putU16(out, p + 1, RRType.OPT);
  putU16(out, p + 3, udpSize);
  out[p + 5] = extendedRcode;
  out[p + 6] = 0; // version
  putU16(out, p + 7, dnssecOk ? 0x8000 : 0);
  putU16(out, p + 9, optSize(options) - OPT_FIXED_SIZE);
  p += OPT_FIXED_SIZE;
  for (const o of options) {
    putU16(out, p, o.code);
    putU16(out, p + 2, o.data.length);
    out.set(o.data, p + 4);
    p += 4 + o.data.length;
  }
  return p;
}

/** In-place ID write, for buffers we own (e.g. a query copy about to go upstream). */
export function setId(msg: Uint8Array, id: number): void {
  checkU16(id, "id");
  if (msg.length < 2) throw new RangeError("message too short to hold an ID");
  putU16(msg, 0, id);
}

/** Copy of `msg` with a new ID: replies are mapped back to the client's ID without touching the cache. */
export function withId(msg: Uint8Array, id: number): Uint8Array {
  const copy = msg.slice();
  setId(copy, id);
  return copy;
}

/**
 * An error reply to a decoded query, so the proxy can answer without upstream: same ID, QR=1,
 * opcode/RD/CD copied, RA=1, `rcode` (low 4 bits in the header, the rest in the OPT extended-rcode),
 * the question echoed, and an OPT RR when the query had EDNS (udpSize = `opts.udpSize`, default
 * 1232; DO copied; no options). The question is rebuilt from the decoded `query`, so
 * `_queryBytes` is not read (kept so callers may pass the bytes they decoded).
 * Throws RangeError if rcode is not in [0, 4095], or is above 15 for a query without EDNS.
 */
export function errorReply(
  query: Message,
  _queryBytes: Uint8Array,
  rcode: number,
  opts?: { udpSize?: number },
): Uint8Array {
  if (!Number.isInteger(rcode) || rcode < 0 || rcode > 0xfff) {
    throw new RangeError(`rcode must be an integer in [0, 4095], got ${rcode}`);
  }
  const { edns, question } = query;
  if (rcode > 0xf && !edns) throw new RangeError(`rcode ${rcode} needs EDNS, the query has none`);
  const udpSize = opts?.udpSize ?? DEFAULT_EDNS_UDP_SIZE;
  checkU16(udpSize, "udpSize");
  const qflags = query.header.flags;
  const flags = Flag.QR | (qflags & (OPCODE_MASK | Flag.RD | Flag.CD)) | Flag.RA | (rcode & 0xf);
  const size = HEADER_SIZE + (question ? question.name.length + 4 : 0) +
    (edns ? OPT_FIXED_SIZE : 0);
  const out = new Uint8Array(size);
  writeHeader(out, query.header.id, flags, question ? 1 : 0, 0, 0, edns ? 1 : 0);
  let p = HEADER_SIZE;
  if (question) p = writeQuestion(out, p, question.name, question.qtype, question.qclass);
  if (edns) writeOpt(out, p, udpSize, rcode >> 4, edns.dnssecOk, []);
  return out;
}

/** FORMERR when only the header could be read: header only, same ID and opcode, QR=1, counts 0. */
export function formErrFromHeader(header: Header): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  const flags = Flag.QR | (opcodeOf(header.flags) << 11) | Rcode.FORMERR;
  writeHeader(out, header.id, flags, 0, 0, 0, 0);
  return out;
}

/**
 * RFC 1035/2181 truncation for UDP: header + question + the reply's OPT RR (if any) with TC=1,
 * answer/authority counts 0 and arcount 1 if the OPT was kept, else 0. A reply that already fits
 * in `maxSize` is returned unchanged. Never returns more than maxSize bytes when maxSize >= 512:
 * the OPT is dropped if it would not fit (header + question is at most 271 bytes). A reply that
 * does not decode is cut to its header (TC=1, counts 0).
 */
export function truncateReply(reply: Uint8Array, maxSize: number): Uint8Array {
  if (reply.length <= maxSize || reply.length < HEADER_SIZE) return reply;
  const d = decodeMessage(reply);
  const q = d.ok ? d.value.question : null;
  const opt = d.ok ? d.value.edns : null;
  const qSize = q ? q.name.length + 4 : 0;
  const optLen = opt ? opt.end - opt.start : 0;
  const keepOpt = opt !== null && HEADER_SIZE + qSize + optLen <= maxSize;
  const out = new Uint8Array(HEADER_SIZE + qSize + (keepOpt ? optLen : 0));
  const flags = ((reply[2] << 8) | reply[3]) | Flag.TC;
  writeHeader(out, (reply[0] << 8) | reply[1], flags, q ? 1 : 0, 0, 0, keepOpt ? 1 : 0);
  let p = HEADER_SIZE;
  // The question is written uncompressed: a pointer copied verbatim could aim at changed bytes.
  if (q) p = writeQuestion(out, p, q.name, q.qtype, q.qclass);
  if (keepOpt) out.set(reply.subarray(opt.start, opt.end), p);
  return out;
}

/**
 * Writes the client's own spelling of the question name into the reply (0x20 case randomisation
 * by stub resolvers expects it echoed back): only when the reply has a question whose name at
 * offset 12 is uncompressed, has the same length and compares equal case-insensitively.
 * Returns whether it wrote.
 */
export function restoreQuestionCase(reply: Uint8Array, clientName: Uint8Array): boolean {
  const n = clientName.length;
  if (n === 0 || reply.length < HEADER_SIZE + n || ((reply[4] << 8) | reply[5]) === 0) {
    return false;
  }
  if (!namesEqual(reply.subarray(HEADER_SIZE, HEADER_SIZE + n), clientName)) return false;
  reply.set(clientName, HEADER_SIZE);
  return true;
}

/**
 * Encodes a query, for tests and health probes. RD defaults to true (probes go to recursive
 * resolvers), qclass to IN. With `edns`, an OPT RR is added (udpSize default 1232, version 0).
 * Throws RangeError on an invalid name, ID, type, class, size or option.
 */
export function encodeQuery(q: {
  id: number;
  name: Uint8Array | string;
  qtype: number;
  qclass?: number;
  rd?: boolean;
  cd?: boolean;
  edns?: { udpSize?: number; dnssecOk?: boolean; options?: EdnsOption[] };
}): Uint8Array {
  const name = typeof q.name === "string" ? nameFromString(q.name) : q.name;
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || name[name.length - 1] !== 0) {
    throw new RangeError("query name must be an uncompressed wire name ending in the root byte");
  }
  const qclass = q.qclass ?? CLASS_IN;
  checkU16(q.id, "id");
  checkU16(q.qtype, "qtype");
  checkU16(qclass, "qclass");
  const flags = (q.rd ?? true ? Flag.RD : 0) | (q.cd ? Flag.CD : 0);
  const options = q.edns?.options ?? [];
  const udpSize = q.edns?.udpSize ?? DEFAULT_EDNS_UDP_SIZE;
  if (q.edns) {
    checkU16(udpSize, "udpSize");
    for (const o of options) {
      checkU16(o.code, "option code");
      checkU16(o.data.length, "option length");
    }
    checkU16(optSize(options) - OPT_FIXED_SIZE, "OPT rdata length");
  }
  const size = HEADER_SIZE + name.length + 4 + (q.edns ? optSize(options) : 0);
  const out = new Uint8Array(size);
  writeHeader(out, q.id, flags, 1, 0, 0, q.edns ? 1 : 0);
  const p = writeQuestion(out, HEADER_SIZE, name, q.qtype, qclass);
  if (q.edns) writeOpt(out, p, udpSize, 0, q.edns.dnssecOk ?? false, options);
  return out;
}

/**
 * True when a reply's question equals the query's (name case-insensitively, type, class): the
 * anti-spoofing match. Two absent questions match; one absent does not.
 */
export function questionMatches(a: Question | null, b: Question | null): boolean {
  if (a === null || b === null) return a === b;
  return a.qtype === b.qtype && a.qclass === b.qclass && namesEqual(a.name, b.name);
}
