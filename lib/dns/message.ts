/**
 * DNS messages (RFC 1035 §4.1) as a forwarder sees them: header, at most one question, EDNS (OPT,
 * RFC 6891) and the *positions* of every other RR. Record data stays raw bytes in the original
 * buffer; the positions are enough to rewrite IDs, read and adjust TTLs, and truncate.
 */

import { type Decoded, fail, readName, skipName } from "./wire.ts";

/** Fixed header length; every message starts with it. */
export const HEADER_SIZE = 12;

/** Header flag bits within the 16-bit flags word, for testing and setting without shifts. */
export const Flag = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;

/** Opcodes (flags bits 11..14) the proxy has to tell apart. */
export const Opcode = { QUERY: 0, IQUERY: 1, STATUS: 2, NOTIFY: 4, UPDATE: 5 } as const;

/**
 * Registered rcodes by mnemonic (IANA "DNS RCODEs"), the one table of them: code, the query log
 * and the metrics labels derive from it. Above 15 they need EDNS (16 is BADVERS there).
 */
export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  YXDOMAIN: 6,
  YXRRSET: 7,
  NXRRSET: 8,
  NOTAUTH: 9,
  NOTZONE: 10,
  DSOTYPENI: 11,
  BADVERS: 16,
  BADKEY: 17,
  BADTIME: 18,
  BADMODE: 19,
  BADNAME: 20,
  BADALG: 21,
  BADTRUNC: 22,
  BADCOOKIE: 23,
} as const;

/**
 * Registered RR types by mnemonic (IANA "Resource Record (RR) TYPEs"), the one table of them:
 * code, the query log and the metrics labels derive from it; other types are just numbers.
 */
export const RRType = {
  A: 1,
  NS: 2,
  MD: 3,
  MF: 4,
  CNAME: 5,
  SOA: 6,
  MB: 7,
  MG: 8,
  MR: 9,
  NULL: 10,
  WKS: 11,
  PTR: 12,
  HINFO: 13,
  MINFO: 14,
  MX: 15,
  TXT: 16,
  RP: 17,
  AFSDB: 18,
  X25: 19,
  ISDN: 20,
  RT: 21,
  NSAP: 22,
  "NSAP-PTR": 23,
  SIG: 24,
  KEY: 25,
  PX: 26,
  GPOS: 27,
  AAAA: 28,
  LOC: 29,
  NXT: 30,
  SRV: 33,
  NAPTR: 35,
  KX: 36,
  CERT: 37,
  A6: 38,
  DNAME: 39,
  OPT: 41,
  APL: 42,
  DS: 43,
  SSHFP: 44,
  IPSECKEY: 45,
  RRSIG: 46,
  NSEC: 47,
  DNSKEY: 48,
  DHCID: 49,
  NSEC3: 50,
  NSEC3PARAM: 51,
  TLSA: 52,
  SMIMEA: 53,
  HIP: 55,
  CDS: 59,
  CDNSKEY: 60,
  OPENPGPKEY: 61,
  CSYNC: 62,
  ZONEMD: 63,
  SVCB: 64,
  HTTPS: 65,
  SPF: 99,
  NID: 104,
  L32: 105,
  L64: 106,
  LP: 107,
  EUI48: 108,
  EUI64: 109,
  TKEY: 249,
  TSIG: 250,
  IXFR: 251,
  AXFR: 252,
  MAILB: 253,
  MAILA: 254,
  ANY: 255,
  URI: 256,
  CAA: 257,
  AVC: 258,
  DOA: 259,
  AMTRELAY: 260,
  RESINFO: 261,
  TA: 32768,
  DLV: 32769,
} as const;

/** The Internet class, the only one the proxy builds queries for. */
export const CLASS_IN = 1;

/** A registered RR type mnemonic: a key of RRType. */
export type RRTypeName = keyof typeof RRType;
/** A registered rcode mnemonic: a key of Rcode. */
export type RcodeName = keyof typeof Rcode;

/** RRType reversed, for presentation. */
const TYPE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(RRType).map(([name, value]) => [value, name]),
);
/** Rcode reversed, for presentation. */
const RCODE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(Rcode).map(([name, value]) => [value, name]),
);

/** Presentation name of an RR type: its mnemonic, else `TYPEnnn` (RFC 3597 §5). */
export function typeName(qtype: number): string {
  return TYPE_NAMES.get(qtype) ?? `TYPE${qtype}`;
}

/** Presentation name of an rcode: its mnemonic, else `RCODEnnn`. */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES.get(rcode) ?? `RCODE${rcode}`;
}

/** The 12-byte header with the flags word kept whole (use Flag, opcodeOf, rcodeOf). */
export interface Header {
  id: number;
  flags: number;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

/** Opcode from a flags word, so callers need not remember the shift. */
export function opcodeOf(flags: number): number {
  return (flags >> 11) & 0xf;
}

/** Header (low 4 bits) rcode from a flags word; see Message.rcode for the full EDNS rcode. */
export function rcodeOf(flags: number): number {
  return flags & 0xf;
}

/**
 * The question: `name` is uncompressed wire form with the case as sent (needed for 0x20 restore);
 * start/end is the byte range of the whole question in the message.
 */
export interface Question {
  name: Uint8Array;
  qtype: number;
  qclass: number;
  start: number;
  end: number;
}

/** One EDNS option; `data` is a view into the decoded buffer (copy it to keep it). */
export interface EdnsOption {
  code: number;
  data: Uint8Array;
}

/** The OPT pseudo-RR, decoded: its fields decide reply sizes, DO and the extended rcode. */
export interface Edns {
  udpSize: number;
  extendedRcode: number;
  version: number;
  flags: number;
  dnssecOk: boolean;
  options: EdnsOption[];
  /** Byte range of the whole OPT RR. */
  start: number;
  end: number;
}

/**
 * Position and fixed fields of one RR (OPT excluded: see Message.edns). Section 1 = answer,
 * 2 = authority, 3 = additional. ttlOffset lets a cache rewrite TTLs in place; rdata stays raw.
 */
export interface RecordInfo {
  section: 1 | 2 | 3;
  type: number;
  class: number;
  ttl: number;
  ttlOffset: number;
  rdataOffset: number;
  rdataLength: number;
}

/** A walked message: everything a forwarder reads, and the offsets of everything else. */
export interface Message {
  header: Header;
  question: Question | null;
  edns: Edns | null;
  records: RecordInfo[];
  /** Full 12-bit rcode: header low 4 bits | (edns.extendedRcode << 4). */
  rcode: number;
  answerStart: number;
  authorityStart: number;
  additionalStart: number;
  end: number;
}

function u16(buf: Uint8Array, p: number): number {
  return (buf[p] << 8) | buf[p + 1];
}

function u32(buf: Uint8Array, p: number): number {
  return buf[p] * 0x1000000 + ((buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3]);
}

/**
 * True for a message with a full header and QR=1: a response, which a server must never answer
 * (no reflection loops). Reads one byte, so a flood of responses costs no decoding.
 */
export function isResponse(buf: Uint8Array): boolean {
  return buf.length >= HEADER_SIZE && (buf[2] & (Flag.QR >> 8)) !== 0;
}

/** Reads the header alone: enough to answer FORMERR when nothing else decodes. */
export function decodeHeader(buf: Uint8Array): Decoded<Header> {
  if (buf.length < HEADER_SIZE) {
    return fail("short_header", buf.length, `message of ${buf.length} bytes has no full header`);
  }
  return {
    ok: true,
    value: {
      id: u16(buf, 0),
      flags: u16(buf, 2),
      qdcount: u16(buf, 4),
      ancount: u16(buf, 6),
      nscount: u16(buf, 8),
      arcount: u16(buf, 10),
    },
  };
}

/** Decodes the OPT RR whose type field is at `p` (owner already checked to be root). */
function decodeOpt(buf: Uint8Array, start: number, p: number, end: number): Decoded<Edns> {
  const options: EdnsOption[] = [];
  let o = p + 10;
  while (o < end) {
    if (o + 4 > end) return fail("opt_malformed", o, "EDNS option header overruns OPT rdata");
    const len = u16(buf, o + 2);
    if (o + 4 + len > end) return fail("opt_malformed", o, "EDNS option data overruns OPT rdata");
    options.push({ code: u16(buf, o), data: buf.subarray(o + 4, o + 4 + len) });
    o += 4 + len;
  }
  const flags = u16(buf, p + 6);
  return {
    ok: true,
    value: {
      udpSize: u16(buf, p + 2),
      extendedRcode: buf[p + 4],
      version: buf[p + 5],
      flags,
      dnssecOk: (flags & 0x8000) !== 0,
      options,
      start,
      end,
    },
  };
}

/**
 * Walks the whole message: header, at most one question, every RR's position; OPT parsed.
 * Errors: qdcount > 1 → multiple_questions; counts claiming more RRs than bytes → truncated;
 * OPT with non-root owner → opt_not_root; two OPTs → opt_duplicate; OPT not in additional section or
 * option lengths overrunning rdata → opt_malformed. Bytes after the last RR are ignored (`end`
 * says where the message ends): a reply with padding garbage after it is still the reply, as
 * other resolvers read it. Allocates the result, the question name, one RecordInfo per RR and the
 * EDNS options only.
 */
export function decodeMessage(buf: Uint8Array): Decoded<Message> {
  return walk(buf, false);
}

/**
 * The decoder for incoming queries: header + question + OPT, by the same walk, but strict about
 * the end: bytes after the last RR → trailing_bytes (FORMERR, as BIND answers). A query is a few
 * dozen bytes with rarely more than the OPT RR, so the full walk costs the same and keeps one
 * set of rules (and `records` is simply empty for an ordinary query).
 */
export function decodeQuery(buf: Uint8Array): Decoded<Message> {
  return walk(buf, true);
}

function walk(buf: Uint8Array, strictEnd: boolean): Decoded<Message> {
  const h = decodeHeader(buf);
  if (!h.ok) return h;
  const header = h.value;
  if (header.qdcount > 1) {
    return fail("multiple_questions", 4, `qdcount ${header.qdcount}; only one is supported`);
  }

  let p = HEADER_SIZE;
  let question: Question | null = null;
  if (header.qdcount === 1) {
    const n = readName(buf, p);
    if (!n.ok) return n;
    const q = n.value.end;
    if (q + 4 > buf.length) return fail("truncated", q, "question type/class past end of message");
    question = {
      name: n.value.wire,
      qtype: u16(buf, q),
      qclass: u16(buf, q + 2),
      start: p,
      end: q + 4,
    };
    p = q + 4;
  }

  const answerStart = p;
  let authorityStart = p;
  let additionalStart = p;
  const records: RecordInfo[] = [];
  let edns: Edns | null = null;
  for (let section = 1; section <= 3; section++) {
    let count = header.ancount;
    if (section === 2) {
      authorityStart = p;
      count = header.nscount;
    } else if (section === 3) {
      additionalStart = p;
      count = header.arcount;
    }
    for (let i = 0; i < count; i++) {
      const start = p;
      const s = skipName(buf, p);
      if (!s.ok) return s;
      p = s.value;
      if (p + 10 > buf.length) return fail("truncated", p, "RR header past end of message");
      const type = u16(buf, p);
      const rdlen = u16(buf, p + 8);
      const end = p + 10 + rdlen;
      if (end > buf.length) return fail("truncated", p + 8, "RR data past end of message");
      if (type === 41) {
        if (section !== 3) {
          return fail("opt_malformed", start, "OPT outside the additional section");
        }
        if (p !== start + 1) return fail("opt_not_root", start, "OPT owner is not the root");
        if (edns) return fail("opt_duplicate", start, "more than one OPT RR");
        const e = decodeOpt(buf, start, p, end);
        if (!e.ok) return e;
        edns = e.value;
      } else {
        records.push({
          section: section as 1 | 2 | 3,
          type,
          class: u16(buf, p + 2),
          ttl: u32(buf, p + 4),
          ttlOffset: p + 4,
          rdataOffset: p + 10,
          rdataLength: rdlen,
        });
      }
      p = end;
    }
  }
  if (strictEnd && p < buf.length) {
    return fail("trailing_bytes", p, `${buf.length - p} bytes after the last RR`);
  }
  return {
    ok: true,
    value: {
      header,
      question,
      edns,
      records,
      rcode: (header.flags & 0xf) | (edns ? edns.extendedRcode << 4 : 0),
      answerStart,
      authorityStart,
      additionalStart,
      end: p,
    },
  };
}
