import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import {
  CLASS_IN,
  decodeMessage,
  Flag,
  HEADER_SIZE,
  type Message,
  Opcode,
  opcodeOf,
  type Question,
  Rcode,
  rcodeOf,
  RRType,
} from "../../lib/dns/message.ts";
import {
  encodeQuery,
  errorReply,
  formErrFromHeader,
  questionMatches,
  restoreQuestionCase,
  setId,
  truncateReply,
  withId,
} from "../../lib/dns/reply.ts";
import { nameFromString, nameToString } from "../../lib/dns/wire.ts";

function decoded(buf: Uint8Array): Message {
  const r = decodeMessage(buf);
  if (!r.ok) assert.fail(`unexpected ${r.error.kind} at ${r.error.offset}: ${r.error.message}`);
  return r.value;
}

/** A big response (many A records) to `name`, optionally with an OPT carrying `optPad` bytes. */
function bigReply(name: string, count: number, opt?: { udp: number; pad: number; rcode?: number }) {
  const answers = [];
  for (let i = 0; i < count; i++) {
    answers.push({ type: "A", name, ttl: 60 + i, data: `10.0.${i >> 8}.${i & 255}` });
  }
  const additionals = opt
    ? [{
      type: "OPT",
      name: ".",
      udpPayloadSize: opt.udp,
      extendedRcode: opt.rcode ?? 0,
      flags: dnsPacket.DNSSEC_OK,
      options: opt.pad ? [{ code: 12, data: Buffer.alloc(opt.pad) }] : [],
    }]
    : [];
  const buf = dnsPacket.encode({
    id: 0x4242,
    type: "response",
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHENTIC_DATA,
    questions: [{ type: "A", name }],
    answers,
    authorities: [{ type: "NS", name, ttl: 5, data: "ns.example." }],
    additionals,
  });
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

Deno.test("withId returns a copy with the new ID and leaves the original alone", () => {
  const q = encodeQuery({ id: 1, name: "a.example", qtype: RRType.A });
  const c = withId(q, 0xfedc);
  assert.notEqual(c, q);
  assert.deepEqual([c[0], c[1]], [0xfe, 0xdc]);
  assert.deepEqual([q[0], q[1]], [0, 1]);
  assert.deepEqual(c.subarray(2), q.subarray(2));
});

Deno.test("setId writes the ID in place and rejects out-of-range IDs", () => {
  const q = encodeQuery({ id: 1, name: "a.example", qtype: RRType.A });
  setId(q, 0x0102);
  assert.equal(decoded(q).header.id, 0x0102);
  assert.throws(() => setId(q, 65536), RangeError);
  assert.throws(() => setId(q, -1), RangeError);
  assert.throws(() => setId(new Uint8Array(1), 0), RangeError);
});

Deno.test("errorReply to an EDNS query: flags, echoed question, OPT with DO", () => {
  const qb = encodeQuery({
    id: 0x3131,
    name: "WwW.ExAmple.com",
    qtype: RRType.AAAA,
    cd: true,
    edns: { udpSize: 4096, dnssecOk: true, options: [{ code: 10, data: new Uint8Array(8) }] },
  });
  const q = decoded(qb);
  const rb = errorReply(q, qb, Rcode.SERVFAIL);
  const r = decoded(rb);
  assert.equal(r.header.id, 0x3131);
  assert.equal(r.header.flags, Flag.QR | Flag.RD | Flag.CD | Flag.RA | Rcode.SERVFAIL);
  assert.deepEqual(
    [r.header.qdcount, r.header.ancount, r.header.nscount, r.header.arcount],
    [1, 0, 0, 1],
  );
  assert.equal(nameToString(r.question!.name), "WwW.ExAmple.com.");
  assert.equal(r.question!.qtype, RRType.AAAA);
  assert.equal(r.question!.qclass, CLASS_IN);
  assert.equal(r.edns!.udpSize, 1232);
  assert.equal(r.edns!.dnssecOk, true);
  assert.equal(r.edns!.version, 0);
  assert.deepEqual(r.edns!.options, []);
  assert.equal(r.rcode, Rcode.SERVFAIL);
  assert.equal(rb.length, HEADER_SIZE + q.question!.name.length + 4 + 11);
});

Deno.test("errorReply honours a configured EDNS UDP size and copies a clear DO", () => {
  const qb = encodeQuery({ id: 9, name: "x.test", qtype: RRType.A, edns: {} });
  const r = decoded(errorReply(decoded(qb), qb, Rcode.REFUSED, { udpSize: 1400 }));
  assert.equal(r.edns!.udpSize, 1400);
  assert.equal(r.edns!.dnssecOk, false);
  assert.equal(r.rcode, Rcode.REFUSED);
});

Deno.test("errorReply puts an rcode above 15 into the OPT extended rcode", () => {
  const qb = encodeQuery({ id: 9, name: "x.test", qtype: RRType.A, edns: { udpSize: 512 } });
  const rb = errorReply(decoded(qb), qb, Rcode.BADVERS);
  const r = decoded(rb);
  assert.equal(rcodeOf(r.header.flags), 0);
  assert.equal(r.edns!.extendedRcode, 1);
  assert.equal(r.rcode, Rcode.BADVERS);
  const p = dnsPacket.decode(Buffer.from(rb));
  assert.equal(p.additionals[0].extendedRcode, 1);
});

Deno.test("errorReply without EDNS has no OPT and rejects rcodes that need one", () => {
  const qb = encodeQuery({ id: 77, name: "x.test", qtype: RRType.MX, rd: false });
  const q = decoded(qb);
  const r = decoded(errorReply(q, qb, Rcode.NOTIMP));
  assert.equal(r.edns, null);
  assert.equal(r.header.arcount, 0);
  assert.equal(r.header.flags, Flag.QR | Flag.RA | Rcode.NOTIMP);
  assert.throws(() => errorReply(q, qb, Rcode.BADVERS), RangeError);
  assert.throws(() => errorReply(q, qb, 4096), RangeError);
});

Deno.test("errorReply copies the opcode and handles a query without a question", () => {
  const qb = new Uint8Array(HEADER_SIZE);
  qb[2] = (Opcode.NOTIFY << 3) | 1; // opcode NOTIFY, RD
  const r = decoded(errorReply(decoded(qb), qb, Rcode.NOTIMP));
  assert.equal(opcodeOf(r.header.flags), Opcode.NOTIFY);
  assert.equal(r.header.flags & Flag.RD, Flag.RD);
  assert.equal(r.question, null);
  assert.equal(r.header.qdcount, 0);
});

Deno.test("errorReply is readable by dns-packet", () => {
  const qb = encodeQuery({
    id: 5,
    name: "Mixed.Case.test",
    qtype: RRType.TXT,
    edns: { dnssecOk: true },
  });
  const p = dnsPacket.decode(Buffer.from(errorReply(decoded(qb), qb, Rcode.SERVFAIL)));
  assert.equal(p.id, 5);
  assert.equal(p.type, "response");
  assert.equal(p.rcode, "SERVFAIL");
  assert.equal(p.questions[0].name, "Mixed.Case.test");
  assert.equal(p.questions[0].type, "TXT");
  assert.equal(p.additionals[0].type, "OPT");
  assert.equal(p.additionals[0].flag_do, true);
});

Deno.test("formErrFromHeader: header only, same ID and opcode, QR set, counts zero", () => {
  const f = formErrFromHeader({
    id: 0xabcd,
    flags: (Opcode.UPDATE << 11) | Flag.RD,
    qdcount: 3,
    ancount: 1,
    nscount: 0,
    arcount: 2,
  });
  assert.equal(f.length, HEADER_SIZE);
  const h = decoded(f).header;
  assert.equal(h.id, 0xabcd);
  assert.equal(opcodeOf(h.flags), Opcode.UPDATE);
  assert.equal(h.flags & Flag.QR, Flag.QR);
  assert.equal(rcodeOf(h.flags), Rcode.FORMERR);
  assert.deepEqual([h.qdcount, h.ancount, h.nscount, h.arcount], [0, 0, 0, 0]);
});

Deno.test("truncateReply returns a reply that fits unchanged", () => {
  const r = bigReply("small.test", 3, { udp: 1232, pad: 0 });
  assert.equal(truncateReply(r, 512), r);
  assert.equal(truncateReply(r, r.length), r);
});

Deno.test("truncateReply keeps header, question and OPT with TC set", () => {
  const r = bigReply("Big.Example.test", 100, { udp: 4096, pad: 20, rcode: 0 });
  assert.ok(r.length > 1232);
  const t = truncateReply(r, 512);
  const m = decoded(t);
  const orig = decoded(r);
  assert.ok(t.length <= 512);
  assert.equal(
    t.length,
    HEADER_SIZE + orig.question!.name.length + 4 + (orig.edns!.end - orig.edns!.start),
  );
  assert.equal(m.header.id, 0x4242);
  assert.equal(m.header.flags, orig.header.flags | Flag.TC);
  assert.deepEqual([m.header.qdcount, m.header.ancount, m.header.nscount, m.header.arcount], [
    1,
    0,
    0,
    1,
  ]);
  assert.equal(nameToString(m.question!.name), "Big.Example.test.");
  assert.deepEqual(
    t.subarray(m.edns!.start, m.edns!.end),
    r.subarray(orig.edns!.start, orig.edns!.end),
  );
  assert.equal(m.records.length, 0);
});

Deno.test("truncateReply without OPT gives header and question only", () => {
  const r = bigReply("noedns.test", 60);
  const t = truncateReply(r, 512);
  const m = decoded(t);
  assert.equal(t.length, HEADER_SIZE + nameFromString("noedns.test").length + 4);
  assert.equal(m.header.flags & Flag.TC, Flag.TC);
  assert.deepEqual([m.header.qdcount, m.header.ancount, m.header.nscount, m.header.arcount], [
    1,
    0,
    0,
    0,
  ]);
  assert.equal(m.edns, null);
});

Deno.test("truncateReply drops an OPT that would not fit and never exceeds maxSize", () => {
  const l63 = "q".repeat(63);
  const name = [l63, l63, l63, "r".repeat(61)].join("."); // 255-byte name
  const r = bigReply(name, 5, { udp: 4096, pad: 300 });
  for (const max of [512, 600, 700, 1000]) {
    const t = truncateReply(r, max);
    assert.ok(t.length <= max, `${t.length} > ${max}`);
    const m = decoded(t);
    const keep = HEADER_SIZE + 255 + 4 + 11 + 4 + 300 <= max;
    assert.equal(m.edns !== null, keep, `max ${max}`);
    assert.equal(m.header.arcount, keep ? 1 : 0);
    assert.equal(m.header.flags & Flag.TC, Flag.TC);
  }
});

Deno.test("truncateReply cuts an undecodable reply to its header", () => {
  const r = new Uint8Array(600);
  r[0] = 0x12;
  r[1] = 0x34;
  r[3] = Rcode.SERVFAIL;
  r[5] = 5; // qdcount 5: not decodable
  const t = truncateReply(r, 512);
  assert.equal(t.length, HEADER_SIZE);
  const m = decoded(t);
  assert.equal(m.header.id, 0x1234);
  assert.equal(m.header.flags, Flag.TC | Rcode.SERVFAIL);
});

Deno.test("restoreQuestionCase writes the client's 0x20 spelling into the reply", () => {
  const client = nameFromString("wWw.eXaMpLe.CoM");
  const reply = bigReply("www.example.com", 2, { udp: 1232, pad: 0 });
  assert.equal(restoreQuestionCase(reply, client), true);
  const m = decoded(reply);
  assert.equal(nameToString(m.question!.name), "wWw.eXaMpLe.CoM.");
  assert.equal(m.records.length, 3);
});

Deno.test("restoreQuestionCase refuses a different name or length", () => {
  const reply = bigReply("www.example.com", 1);
  const before = reply.slice();
  assert.equal(restoreQuestionCase(reply, nameFromString("www.example.org")), false);
  assert.equal(restoreQuestionCase(reply, nameFromString("ww.example.com")), false);
  assert.equal(restoreQuestionCase(reply, nameFromString("www.example.com.x")), false);
  assert.equal(
    restoreQuestionCase(reply.subarray(0, 20), nameFromString("www.example.com")),
    false,
  );
  const noQuestion = reply.slice();
  noQuestion[5] = 0;
  assert.equal(restoreQuestionCase(noQuestion, nameFromString("www.example.com")), false);
  assert.deepEqual(reply, before);
});

Deno.test("encodeQuery defaults: RD set, class IN, no EDNS", () => {
  const q = decoded(encodeQuery({ id: 3, name: nameFromString("a.b"), qtype: RRType.NS }));
  assert.equal(q.header.flags, Flag.RD);
  assert.equal(q.question!.qclass, CLASS_IN);
  assert.equal(q.edns, null);
  assert.equal(q.header.arcount, 0);
});

Deno.test("encodeQuery writes EDNS options, DO and a custom class", () => {
  const data = Uint8Array.of(1, 2, 3);
  const q = decoded(encodeQuery({
    id: 3,
    name: "a.b",
    qtype: RRType.DS,
    qclass: 3,
    rd: false,
    edns: {
      udpSize: 1400,
      dnssecOk: true,
      options: [{ code: 10, data }, { code: 3, data: new Uint8Array(0) }],
    },
  }));
  assert.equal(q.header.flags, 0);
  assert.equal(q.question!.qclass, 3);
  assert.equal(q.edns!.udpSize, 1400);
  assert.equal(q.edns!.dnssecOk, true);
  assert.deepEqual(q.edns!.options.map((o) => [o.code, [...o.data]]), [[10, [1, 2, 3]], [3, []]]);
});

Deno.test("encodeQuery rejects invalid input", () => {
  assert.throws(() => encodeQuery({ id: 70000, name: "a", qtype: 1 }), RangeError);
  assert.throws(() => encodeQuery({ id: 1, name: "a..b", qtype: 1 }), RangeError);
  assert.throws(() => encodeQuery({ id: 1, name: Uint8Array.of(1, 0x61), qtype: 1 }), RangeError);
  assert.throws(() => encodeQuery({ id: 1, name: "a", qtype: -1 }), RangeError);
  assert.throws(
    () =>
      encodeQuery({
        id: 1,
        name: "a",
        qtype: 1,
        edns: { options: [{ code: 1, data: new Uint8Array(70000) }] },
      }),
    RangeError,
  );
});

function question(name: string, qtype: number = RRType.A, qclass = CLASS_IN): Question {
  return { name: nameFromString(name), qtype, qclass, start: 12, end: 0 };
}

Deno.test("questionMatches compares names case-insensitively, type and class exactly", () => {
  assert.ok(questionMatches(question("WWW.example.COM"), question("www.EXAMPLE.com")));
  assert.ok(!questionMatches(question("www.example.com"), question("www.example.net")));
  assert.ok(!questionMatches(question("a.test"), question("a.test", RRType.AAAA)));
  assert.ok(!questionMatches(question("a.test"), question("a.test", RRType.A, 3)));
  assert.ok(!questionMatches(question("a.test"), null));
  assert.ok(!questionMatches(null, question("a.test")));
  assert.ok(questionMatches(null, null));
});
