import assert from "node:assert/strict";
import {
  CLASS_IN,
  decodeHeader,
  decodeMessage,
  decodeQuery,
  Flag,
  HEADER_SIZE,
  isResponse,
  type Message,
  Opcode,
  opcodeOf,
  Rcode,
  rcodeOf,
  RRType,
} from "../../lib/dns/message.ts";
import {
  type DecodeErrorKind,
  nameFromString,
  nameToString,
  readName,
} from "../../lib/dns/wire.ts";
import { encodeQuery } from "../../lib/dns/reply.ts";

type Part = number | number[] | Uint8Array;

/** Concatenates bytes, arrays and wire names into one message. */
function bytes(...parts: Part[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === "number") out.push(p);
    else out.push(...p);
  }
  return Uint8Array.from(out);
}

const u16 = (v: number) => [v >> 8, v & 0xff];
const u32 = (v: number) => [...u16(Math.floor(v / 65536)), ...u16(v & 0xffff)];

function header(
  flags: number,
  qd: number,
  an: number,
  ns: number,
  ar: number,
  id = 0x1234,
): number[] {
  return [...u16(id), ...u16(flags), ...u16(qd), ...u16(an), ...u16(ns), ...u16(ar)];
}

/** Fixed RR fields after the owner name. */
function rr(type: number, klass: number, ttl: number, rdata: number[]): number[] {
  return [...u16(type), ...u16(klass), ...u32(ttl), ...u16(rdata.length), ...rdata];
}

/** OPT RR with root owner. */
function opt(udp: number, ext: number, ver: number, flags: number, rdata: number[] = []): number[] {
  return [
    0,
    ...u16(RRType.OPT),
    ...u16(udp),
    ext,
    ver,
    ...u16(flags),
    ...u16(rdata.length),
    ...rdata,
  ];
}

const QNAME = nameFromString("Www.Example.com");
const question = [...QNAME, ...u16(RRType.A), ...u16(CLASS_IN)];

function decoded(buf: Uint8Array): Message {
  const r = decodeMessage(buf);
  if (!r.ok) assert.fail(`unexpected ${r.error.kind} at ${r.error.offset}: ${r.error.message}`);
  return r.value;
}

function errorOf(buf: Uint8Array): { kind: DecodeErrorKind; offset: number } {
  const r = decodeMessage(buf);
  if (r.ok) assert.fail("expected a decode error");
  return r.error;
}

/** A response with compressed owners: www.example.com A, example.com NS, glue, OPT. */
function sampleResponse(): Uint8Array {
  const ns = nameFromString("ns1.example.com");
  return bytes(
    header(Flag.QR | Flag.RD | Flag.RA | Rcode.NXDOMAIN, 1, 2, 1, 2),
    question, // www at 12, example at 16
    0xc0,
    12,
    rr(RRType.A, CLASS_IN, 300, [192, 0, 2, 1]),
    0xc0,
    12,
    rr(RRType.CNAME, CLASS_IN, 0xfffffffe, [3, 0x61, 0x62, 0x63, 0xc0, 16]),
    0xc0,
    16,
    rr(RRType.NS, CLASS_IN, 86400, [...ns]),
    opt(1232, 1, 0, 0x8000, [0, 10, 0, 2, 0xab, 0xcd, 0, 12, 0, 0]),
    3,
    0x6e,
    0x73,
    0x31,
    0xc0,
    16,
    rr(RRType.AAAA, CLASS_IN, 60, new Array(16).fill(1)),
  );
}

Deno.test("decodeHeader reads all six fields", () => {
  const r = decodeHeader(Uint8Array.from(header(0x8583, 1, 2, 3, 4, 0xbeef)));
  assert.ok(r.ok);
  assert.deepEqual(r.value, {
    id: 0xbeef,
    flags: 0x8583,
    qdcount: 1,
    ancount: 2,
    nscount: 3,
    arcount: 4,
  });
});

Deno.test("isResponse is true only for a full header with QR set", () => {
  const response = Uint8Array.from(header(Flag.QR | Rcode.NXDOMAIN, 1, 0, 0, 0, 7));
  const query = Uint8Array.from(header(Flag.RD, 1, 0, 0, 0, 7));
  assert.equal(isResponse(response), true);
  assert.equal(isResponse(query), false);
  assert.equal(isResponse(response.subarray(0, HEADER_SIZE - 1)), false, "no full header");
  assert.equal(isResponse(new Uint8Array(0)), false);
});

Deno.test("opcodeOf and rcodeOf extract their bit fields", () => {
  const flags = Flag.QR | (Opcode.NOTIFY << 11) | Flag.AA | Rcode.REFUSED;
  assert.equal(opcodeOf(flags), Opcode.NOTIFY);
  assert.equal(rcodeOf(flags), Rcode.REFUSED);
  assert.equal(opcodeOf(0x7800), 15);
});

Deno.test("decodeMessage walks a compressed response: sections, TTL positions, OPT", () => {
  const buf = sampleResponse();
  const m = decoded(buf);
  assert.equal(m.header.id, 0x1234);
  assert.ok(m.question);
  assert.equal(nameToString(m.question.name), "Www.Example.com.");
  assert.equal(m.question.qtype, RRType.A);
  assert.equal(m.question.qclass, CLASS_IN);
  assert.equal(m.question.start, HEADER_SIZE);
  assert.equal(m.question.end, HEADER_SIZE + QNAME.length + 4);
  assert.equal(m.answerStart, m.question.end);
  assert.deepEqual(m.records.map((r) => [r.section, r.type, r.ttl]), [
    [1, RRType.A, 300],
    [1, RRType.CNAME, 0xfffffffe],
    [2, RRType.NS, 86400],
    [3, RRType.AAAA, 60],
  ]);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const r of m.records) {
    assert.equal(view.getUint32(r.ttlOffset), r.ttl);
    assert.equal(view.getUint16(r.rdataOffset - 2), r.rdataLength);
    assert.equal(r.class, CLASS_IN);
  }
  assert.deepEqual([...buf.subarray(m.records[0].rdataOffset, m.records[0].rdataOffset + 4)], [
    192,
    0,
    2,
    1,
  ]);
  // The NS owner is a 2-byte pointer, then type and class precede the TTL.
  assert.equal(m.authorityStart, m.records[2].ttlOffset - 6);
  assert.equal(m.additionalStart, m.records[2].rdataOffset + m.records[2].rdataLength);
  assert.ok(m.edns);
  assert.equal(m.edns.start, m.additionalStart);
  assert.equal(m.edns.udpSize, 1232);
  assert.equal(m.edns.extendedRcode, 1);
  assert.equal(m.edns.version, 0);
  assert.equal(m.edns.flags, 0x8000);
  assert.equal(m.edns.dnssecOk, true);
  assert.deepEqual(m.edns.options.map((o) => [o.code, [...o.data]]), [[10, [0xab, 0xcd]], [
    12,
    [],
  ]]);
  assert.equal(m.rcode, (1 << 4) | Rcode.NXDOMAIN);
  assert.equal(m.end, buf.length);
});

Deno.test("decodeMessage puts empty sections where the previous one ended", () => {
  const buf = bytes(header(Flag.QR, 1, 0, 0, 1), question, opt(512, 0, 0, 0));
  const m = decoded(buf);
  assert.equal(m.answerStart, HEADER_SIZE + question.length);
  assert.equal(m.authorityStart, m.answerStart);
  assert.equal(m.additionalStart, m.answerStart);
  assert.equal(m.records.length, 0);
  assert.ok(m.edns);
  assert.equal(m.edns.dnssecOk, false);
  assert.equal(m.rcode, 0);
});

Deno.test("decodeMessage accepts a message without a question", () => {
  const m = decoded(Uint8Array.from(header(Flag.QR | Rcode.FORMERR, 0, 0, 0, 0)));
  assert.equal(m.question, null);
  assert.equal(m.edns, null);
  assert.equal(m.rcode, Rcode.FORMERR);
  assert.equal(m.end, HEADER_SIZE);
});

Deno.test("decodeQuery reads an encoded query with EDNS", () => {
  const q = encodeQuery({
    id: 7,
    name: "Example.ORG",
    qtype: RRType.AAAA,
    cd: true,
    edns: { udpSize: 4096, dnssecOk: true },
  });
  const r = decodeQuery(q);
  assert.ok(r.ok);
  const m = r.value;
  assert.equal(m.header.id, 7);
  assert.equal(m.header.flags, Flag.RD | Flag.CD);
  assert.equal(nameToString(m.question!.name), "Example.ORG.");
  assert.equal(m.question!.qtype, RRType.AAAA);
  assert.equal(m.edns!.udpSize, 4096);
  assert.equal(m.edns!.dnssecOk, true);
  assert.deepEqual(m.records, []);
});

Deno.test("short_header: fewer than 12 bytes", () => {
  const e = errorOf(new Uint8Array(11));
  assert.equal(e.kind, "short_header");
  assert.equal(decodeHeader(new Uint8Array(0)).ok, false);
});

Deno.test("multiple_questions: qdcount 2", () => {
  assert.equal(
    errorOf(bytes(header(0, 2, 0, 0, 0), question, question)).kind,
    "multiple_questions",
  );
});

Deno.test("truncated: counts claiming more RRs than there are bytes", () => {
  assert.equal(errorOf(bytes(header(0, 1, 0, 0, 0))).kind, "truncated");
  assert.equal(errorOf(bytes(header(0, 1, 0, 0, 0), QNAME, 0, 1)).kind, "truncated");
  assert.equal(errorOf(bytes(header(Flag.QR, 1, 0xffff, 0, 0), question)).kind, "truncated");
  assert.equal(errorOf(bytes(header(Flag.QR, 0, 0, 0, 2), opt(512, 0, 0, 0))).kind, "truncated");
  // rdlength past the end
  const e = errorOf(
    bytes(header(Flag.QR, 1, 1, 0, 0), question, 0xc0, 12, rr(1, 1, 5, [1, 2, 3, 4]).slice(0, -1)),
  );
  assert.equal(e.kind, "truncated");
});

Deno.test("truncated at every cut of a valid response", () => {
  const buf = sampleResponse();
  for (let cut = HEADER_SIZE; cut < buf.length; cut++) {
    const e = errorOf(buf.subarray(0, cut));
    assert.equal(e.kind, "truncated", `cut at ${cut}`);
  }
});

Deno.test("name errors in the question surface from decodeMessage", () => {
  const cases: [number[], DecodeErrorKind][] = [
    [[64, ...new Array(64).fill(0x61), 0], "label_too_long"],
    [[0x80, 0], "bad_label_type"],
    [[0xc0, 12], "pointer_loop"],
    [[0xc0, 20, 0, 0, 0, 0, 0, 0, 0], "pointer_out_of_range"],
    [
      [63, 63, 63, 62].flatMap((n) => [n, ...new Array(n).fill(0x61)]).concat([0]),
      "name_too_long",
    ],
  ];
  for (const [name, kind] of cases) {
    const buf = bytes(header(0, 1, 0, 0, 0), name, u16(1), u16(1));
    assert.equal(errorOf(buf).kind, kind);
  }
});

Deno.test("name errors in RR owners surface from decodeMessage", () => {
  const buf = bytes(header(Flag.QR, 1, 1, 0, 0), question, 0xc0, 0xff, rr(1, 1, 1, [1, 2, 3, 4]));
  assert.equal(errorOf(buf).kind, "pointer_out_of_range");
  const buf2 = bytes(header(Flag.QR, 1, 1, 0, 0), question, 0x41, 0, rr(1, 1, 1, [1, 2, 3, 4]));
  assert.equal(errorOf(buf2).kind, "label_too_long");
});

Deno.test("too_many_pointers: reported by readName for long pointer chains", () => {
  const b: number[] = [...header(0, 1, 0, 0, 0), 1, 0x61, 0];
  let target = 12;
  for (let i = 0; i < 11; i++) {
    const at = b.length;
    b.push(0xc0, target);
    target = at;
  }
  const r = readName(Uint8Array.from(b), target);
  assert.equal(r.ok ? "" : r.error.kind, "too_many_pointers");
});

Deno.test("opt_not_root: OPT owned by a non-root name", () => {
  const buf = bytes(
    header(0, 1, 0, 0, 1),
    question,
    [1, 0x61, 0],
    opt(512, 0, 0, 0).slice(1),
  );
  assert.equal(errorOf(buf).kind, "opt_not_root");
  // A pointer to a root byte is not accepted either.
  const buf2 = bytes(
    header(0, 1, 0, 0, 1),
    question,
    0xc0,
    12 + QNAME.length - 1,
    opt(512, 0, 0, 0).slice(1),
  );
  assert.equal(errorOf(buf2).kind, "opt_not_root");
});

Deno.test("opt_duplicate: two OPT RRs", () => {
  const buf = bytes(header(0, 1, 0, 0, 2), question, opt(512, 0, 0, 0), opt(512, 0, 0, 0));
  const e = errorOf(buf);
  assert.equal(e.kind, "opt_duplicate");
  assert.equal(e.offset, HEADER_SIZE + question.length + 11);
});

Deno.test("opt_malformed: OPT in the answer or authority section", () => {
  assert.equal(
    errorOf(bytes(header(0, 1, 1, 0, 0), question, opt(512, 0, 0, 0))).kind,
    "opt_malformed",
  );
  assert.equal(
    errorOf(bytes(header(0, 1, 0, 1, 0), question, opt(512, 0, 0, 0))).kind,
    "opt_malformed",
  );
});

Deno.test("opt_malformed: option lengths overrunning the OPT rdata", () => {
  for (const rdata of [[0, 10, 0, 3, 1, 2], [0, 10, 0], [0, 8, 0, 0, 0]]) {
    const buf = bytes(header(0, 1, 0, 0, 1), question, opt(512, 0, 0, 0, rdata));
    assert.equal(errorOf(buf).kind, "opt_malformed", JSON.stringify(rdata));
  }
});

Deno.test("trailing_bytes: a query with bytes after the last RR is malformed", () => {
  const r = decodeQuery(bytes(header(0, 1, 0, 0, 0), question, 0));
  assert.ok(!r.ok);
  assert.equal(r.error.kind, "trailing_bytes");
  assert.equal(r.error.offset, HEADER_SIZE + question.length);
});

Deno.test("a reply with bytes after the last RR is read, and end says where the message ends", () => {
  const reply = sampleResponse();
  const withGarbage = bytes(reply, 0, 0, 0xff, 7);
  const m = decoded(withGarbage);
  assert.equal(m.end, reply.length);
  assert.deepEqual(m, decoded(reply));
});

Deno.test("decodeMessage reads a message that is a view into a larger buffer", () => {
  const inner = sampleResponse();
  const outer = new Uint8Array(inner.length + 7);
  outer.set(inner, 5);
  const view = outer.subarray(5, 5 + inner.length);
  assert.deepEqual(decoded(view), decoded(inner));
});
