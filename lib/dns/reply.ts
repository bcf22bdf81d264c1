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
  Opcode,
  opcodeOf,
  type Question,
  Rcode,
  RRType,
} from "./message.ts";
import { putU16 } from "./bytes.ts";
import { rdataNameOffsets } from "./rdata_names.ts";
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

/** The size of an OPT RR carrying `options` (for callers that build a message in one buffer). */
export function optSize(options: readonly EdnsOption[]): number {
  let n = OPT_FIXED_SIZE;
  for (const o of options) n += 4 + o.data.length;
  return n;
}

/**
 * Writes an OPT RR at `p` into a buffer with room for it (size from optSize); returns the offset
 * after it. The caller has checked the values (udpSize and option codes and lengths are u16,
 * extendedRcode a byte), as appendOpt does.
 */
export function writeOpt(
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
 * An error answer to a decoded query, without OPT (the caller adds the per-hop one, see
 * lib/dns/edns.ts forClient): same ID, QR=1, opcode and RD copied, the rcode's low 4 bits, the
 * question echoed. RA and CD are set (RA) and copied (CD) only for opcode QUERY: they are defined
 * for QUERY alone (RFC 1035, RFC 4035), and a resolver's NOTIMP to another opcode says nothing
 * about recursion (genreport's `opcode` check).
 * Throws RangeError if rcode is not in [0, 4095], or is above 15 for a query without EDNS.
 */
export function errorAnswer(query: Message, rcode: number): Uint8Array {
  if (!Number.isInteger(rcode) || rcode < 0 || rcode > 0xfff) {
    throw new RangeError(`rcode must be an integer in [0, 4095], got ${rcode}`);
  }
  const { edns, question } = query;
  if (rcode > 0xf && !edns) throw new RangeError(`rcode ${rcode} needs EDNS, the query has none`);
  const qflags = query.header.flags;
  const isQuery = opcodeOf(qflags) === Opcode.QUERY;
  const flags = Flag.QR | (qflags & (OPCODE_MASK | Flag.RD)) | (rcode & 0xf) |
    (isQuery ? Flag.RA | (qflags & Flag.CD) : 0);
  const out = new Uint8Array(HEADER_SIZE + (question ? question.name.length + 4 : 0));
  writeHeader(out, query.header.id, flags, question ? 1 : 0, 0, 0, 0);
  if (question) writeQuestion(out, HEADER_SIZE, question.name, question.qtype, question.qclass);
  return out;
}

/**
 * A complete error reply in one call (tests, tools): {@link errorAnswer} plus an OPT when the
 * query had EDNS (udpSize = `opts.udpSize`, default 1232; DO copied; the rcode's high bits in
 * the extended rcode; no options). The question is rebuilt from the decoded `query`, so
 * `_queryBytes` is not read (kept so callers may pass the bytes they decoded).
 */
export function errorReply(
  query: Message,
  _queryBytes: Uint8Array,
  rcode: number,
  opts?: { udpSize?: number },
): Uint8Array {
  const out = errorAnswer(query, rcode);
  if (!query.edns) return out;
  const udpSize = opts?.udpSize ?? DEFAULT_EDNS_UDP_SIZE;
  return appendOpt(out, { udpSize, dnssecOk: query.edns.dnssecOk, extendedRcode: rcode >> 4 });
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

/**
 * Walks the name at `p` in `buf` (not past `limit`) and rewrites each compression pointer whose
 * target lies at or after `cutEnd` to point `cutLen` bytes earlier. Returns the offset after the
 * name, or -1 if the name is malformed or points into the removed range [cutEnd - cutLen, cutEnd).
 */
function shiftNamePointers(
  buf: Uint8Array,
  p: number,
  limit: number,
  cutEnd: number,
  cutLen: number,
): number {
  for (let labels = 0; p < limit && labels < 128; labels++) {
    const b = buf[p];
    if (b === 0) return p + 1;
    if (b < 0x40) {
      p += 1 + b;
      continue;
    }
    if (b < 0xc0 || p + 2 > limit) return -1;
    const target = ((b & 0x3f) << 8) | buf[p + 1];
    if (target >= cutEnd) putU16(buf, p, 0xc000 | (target - cutLen));
    else if (target >= cutEnd - cutLen) return -1;
    return p + 2;
  }
  return -1;
}

/**
 * The reply minus its OPT RR (OPT is hop-by-hop, RFC 6891 §6.1.1: a cache must not replay the
 * upstream's), cut out by byte slicing and ARCOUNT decremented; always a fresh compact copy, so it
 * can outlive the (possibly large) receive buffer. `ttlOffsets` are the TTL positions of every
 * record in the new bytes. Records after the OPT move up: their offsets shift, and compression
 * pointers between them (owner names, and rdata names of the RFC 1035-style types) are rewritten.
 * Returns null when that cannot be done safely (a pointer into the OPT, a malformed name).
 */
export function withoutOpt(
  reply: Uint8Array,
  msg: Message,
): { bytes: Uint8Array; ttlOffsets: number[] } | null {
  const { edns, records } = msg;
  const ttlOffsets = new Array<number>(records.length);
  if (!edns) {
    for (let i = 0; i < records.length; i++) ttlOffsets[i] = records[i].ttlOffset;
    return { bytes: reply.slice(0, msg.end), ttlOffsets };
  }
  const cutLen = edns.end - edns.start;
  const bytes = new Uint8Array(msg.end - cutLen);
  bytes.set(reply.subarray(0, edns.start));
  bytes.set(reply.subarray(edns.end, msg.end), edns.start);
  putU16(bytes, 10, msg.header.arcount - 1);
  let ownerStart = edns.start; // where the next moved record begins, in the new bytes
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const moved = r.ttlOffset > edns.start;
    const shift = moved ? cutLen : 0;
    const ttl = r.ttlOffset - shift;
    const rdata = r.rdataOffset - shift;
    const rdataEnd = rdata + r.rdataLength;
    ttlOffsets[i] = ttl;
    // Owner name ends where type + class (4 bytes) before the TTL begin. Owners before the OPT
    // can only point backwards (the decoder checks), so only moved ones can need a change.
    if (moved) {
      if (shiftNamePointers(bytes, ownerStart, ttl - 4, edns.end, cutLen) !== ttl - 4) return null;
      ownerStart = rdataEnd;
    }
    // Rdata names are kept raw by the decoder and may point forwards, past the OPT, from a
    // record before it too (issue 11 item 11).
    if (!shiftRdataNames(bytes, r.type, rdata, rdataEnd, edns.end, cutLen)) return null;
  }
  return { bytes, ttlOffsets };
}

/** Moves the pointers in the compressible rdata names of one record; false if malformed. */
function shiftRdataNames(
  bytes: Uint8Array,
  type: number,
  rdata: number,
  rdataEnd: number,
  cutEnd: number,
  cutLen: number,
): boolean {
  const layout = rdataNameOffsets(type);
  if (!layout) return true;
  let p = rdata;
  for (const skip of layout) {
    p = shiftNamePointers(bytes, p + skip, rdataEnd, cutEnd, cutLen);
    if (p < 0) return false;
  }
  return true;
}

/**
 * Appends an OPT RR and increments ARCOUNT, for answers that did not get their OPT from upstream
 * (cache hits, or replies whose upstream OPT was dropped): EDNS is per hop, so the proxy states
 * its own UDP size, echoes DO and puts rcode bits above 15 in the extended rcode. `msg` must not
 * already carry an OPT. Returns a new buffer. Throws RangeError on a message without a header, an
 * ARCOUNT already at 65535, or an out-of-range size, rcode or option.
 */
export function appendOpt(
  msg: Uint8Array,
  opt: {
    udpSize: number;
    dnssecOk: boolean;
    extendedRcode?: number;
    options?: readonly EdnsOption[];
  },
): Uint8Array {
  if (msg.length < HEADER_SIZE) throw new RangeError("message too short to hold a header");
  const arcount = (msg[10] << 8) | msg[11];
  if (arcount === 0xffff) throw new RangeError("ARCOUNT is already 65535");
  checkU16(opt.udpSize, "udpSize");
  const extendedRcode = opt.extendedRcode ?? 0;
  if (!Number.isInteger(extendedRcode) || extendedRcode < 0 || extendedRcode > 0xff) {
    throw new RangeError(`extendedRcode must be an integer in [0, 255], got ${extendedRcode}`);
  }
  const options = opt.options ?? [];
  for (const o of options) {
    checkU16(o.code, "option code");
    checkU16(o.data.length, "option length");
  }
  const size = optSize(options);
  checkU16(size - OPT_FIXED_SIZE, "OPT rdata length");
  const out = new Uint8Array(msg.length + size);
  out.set(msg);
  putU16(out, 10, arcount + 1);
  writeOpt(out, msg.length, opt.udpSize, extendedRcode, opt.dnssecOk, options);
  return out;
}

/** RRtype HINFO (RFC 1035), used by RFC 8482's minimal answer to ANY. */
const TYPE_HINFO = 13;
/** TTL of the synthesized HINFO; RFC 8482 leaves it to the responder. */
const ANY_ANSWER_TTL = 3600;
const RFC8482_CPU = new TextEncoder().encode("RFC8482");

/**
 * RFC 8482's minimal answer to an ANY query: one synthesized HINFO ("RFC8482", "") at the query
 * name, so ANY cannot be used to pull large answers (amplification) through the proxy. No OPT:
 * the caller adds its own per hop. Returns null for a query without a question.
 */
export function minimalAnyReply(query: Message): Uint8Array | null {
  const q = query.question;
  if (!q) return null;
  const rdata = 1 + RFC8482_CPU.length + 1;
  const out = new Uint8Array(HEADER_SIZE + q.name.length + 4 + 2 + 10 + rdata);
  const flags = Flag.QR | (query.header.flags & (OPCODE_MASK | Flag.RD | Flag.CD)) | Flag.RA;
  writeHeader(out, query.header.id, flags, 1, 1, 0, 0);
  let p = writeQuestion(out, HEADER_SIZE, q.name, q.qtype, q.qclass);
  putU16(out, p, 0xc000 | HEADER_SIZE); // owner: a pointer to the question name
  putU16(out, p + 2, TYPE_HINFO);
  putU16(out, p + 4, q.qclass);
  putU16(out, p + 6, ANY_ANSWER_TTL >>> 16);
  putU16(out, p + 8, ANY_ANSWER_TTL & 0xffff);
  putU16(out, p + 10, rdata);
  p += 12;
  out[p] = RFC8482_CPU.length;
  out.set(RFC8482_CPU, p + 1);
  out[p + 1 + RFC8482_CPU.length] = 0; // OS: the empty string
  return out;
}

/** Longest character-string in TXT rdata (RFC 1035 §3.3: one length byte). */
const MAX_CHARACTER_STRING = 255;

/**
 * An answer holding one TXT record with `text` at the query name, in the query's class, TTL 0:
 * for data dotproxy serves itself, such as its identity for `id.server` / `hostname.bind` in
 * class CH (RFC 4892). AA set (it is ours), RA set, RD and CD copied, no OPT (the caller adds
 * the per-hop one). `text` longer than 255 bytes is split into several character-strings.
 * Returns null for a query without a question.
 */
export function txtAnswer(query: Message, text: Uint8Array): Uint8Array | null {
  const q = query.question;
  if (!q) return null;
  const strings = Math.max(1, Math.ceil(text.length / MAX_CHARACTER_STRING));
  const rdata = text.length + strings;
  checkU16(rdata, "TXT rdata length");
  const out = new Uint8Array(HEADER_SIZE + q.name.length + 4 + 12 + rdata);
  const flags = Flag.QR | Flag.AA | Flag.RA |
    (query.header.flags & (OPCODE_MASK | Flag.RD | Flag.CD));
  writeHeader(out, query.header.id, flags, 1, 1, 0, 0);
  let p = writeQuestion(out, HEADER_SIZE, q.name, q.qtype, q.qclass);
  putU16(out, p, 0xc000 | HEADER_SIZE); // owner: a pointer to the question name
  putU16(out, p + 2, RRType.TXT);
  putU16(out, p + 4, q.qclass);
  putU16(out, p + 10, rdata); // TTL 0 (bytes 6-9): never cached downstream
  p += 12;
  for (let i = 0; i < strings; i++) {
    const chunk = text.subarray(i * MAX_CHARACTER_STRING, (i + 1) * MAX_CHARACTER_STRING);
    out[p] = chunk.length;
    out.set(chunk, p + 1);
    p += 1 + chunk.length;
  }
  return out;
}
