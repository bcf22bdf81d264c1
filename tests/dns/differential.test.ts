/**
 * Differential and mutation tests: random messages encoded by dns-packet must decode identically
 * with ours (also when we compress owner names into pointers), our encodeQuery output must decode
 * with dns-packet, and mangled messages must never make decodeMessage throw.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import { decodeMessage, decodeQuery, type Message } from "../../lib/dns/message.ts";
import { encodeQuery } from "../../lib/dns/reply.ts";
import {
  type DecodeErrorKind,
  nameFromString,
  nameToString,
  readName,
} from "../../lib/dns/wire.ts";
import { Rng } from "../helpers/rng.ts";

const LABEL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-";

function randomName(rng: Rng): string {
  if (rng.chance(0.03)) return ".";
  const labels: string[] = [];
  const n = 1 + rng.int(5);
  for (let i = 0; i < n; i++) {
    let l = "";
    const len = 1 + rng.int(rng.chance(0.1) ? 63 : 12);
    for (let j = 0; j < len; j++) l += rng.pick([...LABEL_CHARS]);
    labels.push(l);
  }
  return labels.join(".");
}

/** Same name, letter case re-randomised (what a 0x20 resolver does). */
function recase(rng: Rng, name: string): string {
  let out = "";
  for (const c of name) out += rng.chance(0.5) ? c.toUpperCase() : c.toLowerCase();
  return out;
}

const TYPES: [string, number][] = [
  ["A", 1],
  ["NS", 2],
  ["CNAME", 5],
  ["SOA", 6],
  ["PTR", 12],
  ["MX", 15],
  ["TXT", 16],
  ["AAAA", 28],
  ["SRV", 33],
  ["DS", 43],
  ["DNSKEY", 48],
  ["ANY", 255],
];
const CLASSES: [string, number][] = [["IN", 1], ["IN", 1], ["IN", 1], ["CH", 3], ["HS", 4]];
const QCLASSES: [string, number][] = [...CLASSES, ["ANY", 255]];
/** Option codes dns-packet decodes specially (and may choke on random data): avoided. */
const SPECIAL_OPTION_CODES = new Set([8, 11, 14]);

function randomOptions(rng: Rng): { code: number; data: Uint8Array }[] {
  const opts = [];
  const n = rng.int(4);
  for (let i = 0; i < n; i++) {
    let code = rng.int(65536);
    if (SPECIAL_OPTION_CODES.has(code)) code = 65001;
    opts.push({ code, data: rng.bytes(rng.int(24)) });
  }
  return opts;
}

interface RecordSpec {
  section: 1 | 2 | 3;
  type: number;
  klass: number;
  ttl: number;
  rdataLength: number;
}

interface Generated {
  buf: Uint8Array;
  id: number;
  flags: number;
  question: { name: string; qtype: number; qclass: number } | null;
  edns: {
    udpSize: number;
    ext: number;
    version: number;
    flags: number;
    options: { code: number; data: Uint8Array }[];
  } | null;
  records: RecordSpec[];
  sectionStarts: [number, number, number];
}

function randomRecord(
  rng: Rng,
  owner: string,
): { packet: Record<string, unknown>; type: number; klass: number; ttl: number } {
  const [cname, klass] = rng.pick(CLASSES);
  const ttl = rng.u32();
  const kind = rng.pick(["A", "AAAA", "TXT", "MX", "CNAME", "SOA", "SRV"]);
  let data: unknown;
  switch (kind) {
    case "A":
      data = [0, 0, 0, 0].map(() => rng.int(256)).join(".");
      break;
    case "AAAA":
      data = new Array(8).fill(0).map(() => rng.int(65536).toString(16)).join(":");
      break;
    case "TXT":
      data = new Array(1 + rng.int(3)).fill(0).map(() => Buffer.from(rng.bytes(rng.int(60))));
      break;
    case "MX":
      data = { preference: rng.int(65536), exchange: randomName(rng) };
      break;
    case "CNAME":
      data = randomName(rng);
      break;
    case "SOA":
      data = {
        mname: randomName(rng),
        rname: randomName(rng),
        serial: rng.u32(),
        refresh: rng.u32(),
        retry: rng.u32(),
        expire: rng.u32(),
        minimum: rng.u32(),
      };
      break;
    case "SRV":
      data = {
        priority: rng.int(65536),
        weight: rng.int(65536),
        port: rng.int(65536),
        target: randomName(rng),
      };
      break;
  }
  const type = TYPES.find(([n]) => n === kind)![1];
  return { packet: { type: kind, class: cname, name: owner, ttl, data }, type, klass, ttl };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * A random message encoded by dns-packet, RR by RR so that we know where each one lands; owner
 * names equal to the question name are sometimes compressed to a pointer to offset 12.
 */
function generate(rng: Rng): Generated {
  const id = rng.int(65536);
  const flags = rng.int(65536);
  const hasQuestion = rng.chance(0.9);
  const qname = randomName(rng);
  const [qtypeName, qtype] = rng.chance(0.8) ? rng.pick(TYPES) : (() => {
    const n = rng.int(65536);
    return [`UNKNOWN_${n}`, n] as [string, number];
  })();
  const [qclassName, qclass] = rng.pick(QCLASSES);
  const head = new Uint8Array(
    dnsPacket.encode({
      id,
      type: flags & 0x8000 ? "response" : "query",
      flags: flags & 0x7fff,
      questions: hasQuestion ? [{ name: qname, type: qtypeName, class: qclassName }] : [],
    }),
  );
  const parts: Uint8Array[] = [head];
  let offset = head.length;
  const records: RecordSpec[] = [];
  const counts = [0, 0, 0];
  const sectionStarts: [number, number, number] = [0, 0, 0];
  let edns: Generated["edns"] = null;
  for (const section of [1, 2, 3] as const) {
    sectionStarts[section - 1] = offset;
    const n = rng.int(section === 3 ? 4 : 5);
    const optAt = section === 3 && rng.chance(0.5) ? rng.int(n + 1) : -1;
    for (let i = 0; i <= n; i++) {
      if (i === optAt) {
        const options = randomOptions(rng);
        edns = {
          udpSize: 1 + rng.int(65535),
          ext: rng.int(256),
          version: rng.chance(0.8) ? 0 : rng.int(256),
          flags: rng.int(65536),
          options,
        };
        const opt = dnsPacket.answer.encode({
          type: "OPT",
          name: ".",
          udpPayloadSize: edns.udpSize,
          extendedRcode: edns.ext,
          ednsVersion: edns.version,
          flags: edns.flags,
          options: options.map((o) => ({ code: o.code, data: Buffer.from(o.data) })),
        });
        parts.push(new Uint8Array(opt));
        offset += opt.length;
        counts[2]++;
      }
      if (i === n) break;
      const sameOwner = hasQuestion && qname !== "." && rng.chance(0.4);
      const owner = sameOwner ? recase(rng, qname) : randomName(rng);
      const r = randomRecord(rng, owner);
      let bytes = new Uint8Array(dnsPacket.answer.encode(r.packet));
      let ownerLen = dnsPacket.name.encodingLength(owner);
      if (sameOwner && rng.chance(0.6)) {
        bytes = concat([Uint8Array.of(0xc0, 12), bytes.subarray(ownerLen)]);
        ownerLen = 2;
      }
      records.push({
        section,
        type: r.type,
        klass: r.klass,
        ttl: r.ttl,
        rdataLength: bytes.length - ownerLen - 10,
      });
      parts.push(bytes);
      offset += bytes.length;
      counts[section - 1]++;
    }
  }
  const buf = concat(parts);
  const view = new DataView(buf.buffer);
  view.setUint16(6, counts[0]);
  view.setUint16(8, counts[1]);
  view.setUint16(10, counts[2]);
  return {
    buf,
    id,
    flags,
    question: hasQuestion ? { name: qname, qtype, qclass } : null,
    edns,
    records,
    sectionStarts,
  };
}

function decodeOk(buf: Uint8Array): Message {
  const r = decodeMessage(buf);
  if (!r.ok) assert.fail(`unexpected ${r.error.kind} at ${r.error.offset}: ${r.error.message}`);
  return r.value;
}

function presentation(name: string): string {
  return name === "." ? "." : name + ".";
}

const SEED = 0x5eed2024;
const MESSAGES = 4000;

Deno.test("differential: dns-packet messages decode to the same fields with ours", () => {
  const rng = new Rng(SEED);
  let compressed = 0;
  let withOpt = 0;
  let totalRecords = 0;
  for (let n = 0; n < MESSAGES; n++) {
    const g = generate(rng);
    const m = decodeOk(g.buf);
    const ctx = `message ${n}`;
    // dns-packet must agree that the (possibly compressed) message is well formed.
    const p = dnsPacket.decode(Buffer.from(g.buf));
    assert.equal(p.id, m.header.id, ctx);

    assert.equal(m.header.id, g.id, ctx);
    assert.equal(m.header.flags, g.flags, ctx);
    assert.equal(m.header.qdcount, g.question ? 1 : 0, ctx);
    assert.equal(
      m.header.ancount + m.header.nscount + m.header.arcount,
      g.records.length + (g.edns ? 1 : 0),
      ctx,
    );
    if (g.question) {
      assert.ok(m.question, ctx);
      assert.equal(nameToString(m.question.name), presentation(g.question.name), ctx);
      assert.equal(m.question.qtype, g.question.qtype, ctx);
      assert.equal(m.question.qclass, g.question.qclass, ctx);
      assert.equal(m.question.start, 12, ctx);
      assert.equal(m.question.end, g.sectionStarts[0], ctx);
    } else {
      assert.equal(m.question, null, ctx);
    }
    assert.deepEqual([m.answerStart, m.authorityStart, m.additionalStart], g.sectionStarts, ctx);
    assert.equal(m.end, g.buf.length, ctx);

    if (g.edns) {
      withOpt++;
      assert.ok(m.edns, ctx);
      assert.equal(m.edns.udpSize, g.edns.udpSize, ctx);
      assert.equal(m.edns.extendedRcode, g.edns.ext, ctx);
      assert.equal(m.edns.version, g.edns.version, ctx);
      assert.equal(m.edns.flags, g.edns.flags, ctx);
      assert.equal(m.edns.dnssecOk, (g.edns.flags & 0x8000) !== 0, ctx);
      assert.deepEqual(
        m.edns.options.map((o) => [o.code, [...o.data]]),
        g.edns.options.map((o) => [o.code, [...o.data]]),
        ctx,
      );
      assert.equal(m.rcode, (g.flags & 0xf) | (g.edns.ext << 4), ctx);
      const popt = p.additionals.find((a: { type: string }) => a.type === "OPT");
      assert.equal(popt.udpPayloadSize, m.edns.udpSize, ctx);
    } else {
      assert.equal(m.edns, null, ctx);
      assert.equal(m.rcode, g.flags & 0xf, ctx);
    }

    assert.equal(m.records.length, g.records.length, ctx);
    const view = new DataView(g.buf.buffer, g.buf.byteOffset, g.buf.byteLength);
    m.records.forEach((r, i) => {
      const want = g.records[i];
      assert.equal(r.section, want.section, ctx);
      assert.equal(r.type, want.type, ctx);
      assert.equal(r.class, want.klass, ctx);
      assert.equal(r.ttl, want.ttl, ctx);
      assert.equal(view.getUint32(r.ttlOffset), want.ttl, ctx);
      assert.equal(r.rdataLength, want.rdataLength, ctx);
      assert.equal(r.rdataOffset, r.ttlOffset + 6, ctx);
      if (g.buf[r.ttlOffset - 6] === 0xc0 && r.ttlOffset - 6 > 12) compressed++;
    });
    totalRecords += m.records.length;
  }
  // The generator must actually exercise what it claims to.
  assert.ok(withOpt > MESSAGES / 4, `only ${withOpt} messages with OPT`);
  assert.ok(compressed > MESSAGES / 10, `only ${compressed} compressed owners`);
  assert.ok(totalRecords > MESSAGES * 3, `only ${totalRecords} records`);
});

Deno.test("differential: encodeQuery output decodes with dns-packet", () => {
  const rng = new Rng(SEED ^ 0xabcdef);
  for (let n = 0; n < 2000; n++) {
    const name = randomName(rng);
    const id = rng.int(65536);
    const [typeName, qtype] = rng.chance(0.7) ? rng.pick(TYPES) : (() => {
      const t = rng.int(65536);
      return [`UNKNOWN_${t}`, t] as [string, number];
    })();
    const [className, qclass] = rng.pick(QCLASSES);
    const rd = rng.chance(0.5);
    const cd = rng.chance(0.5);
    const edns = rng.chance(0.6)
      ? { udpSize: 1 + rng.int(65535), dnssecOk: rng.chance(0.5), options: randomOptions(rng) }
      : undefined;
    const bytes = encodeQuery({
      id,
      name: rng.chance(0.5) ? name : nameFromString(name),
      qtype,
      qclass,
      rd,
      cd,
      edns,
    });
    const p = dnsPacket.decode(Buffer.from(bytes));
    const ctx = `query ${n}`;
    assert.equal(p.id, id, ctx);
    assert.equal(p.type, "query", ctx);
    assert.equal(p.opcode, "QUERY", ctx);
    assert.equal(p.flag_rd, rd, ctx);
    assert.equal(p.flag_cd, cd, ctx);
    assert.equal(p.flag_tc || p.flag_aa || p.flag_ra || p.flag_ad, false, ctx);
    assert.equal(p.questions.length, 1, ctx);
    assert.equal(p.questions[0].name, name, ctx);
    assert.equal(p.questions[0].type, typeName, ctx);
    assert.equal(p.questions[0].class, className, ctx);
    assert.equal(p.answers.length + p.authorities.length, 0, ctx);
    if (edns) {
      assert.equal(p.additionals.length, 1, ctx);
      const o = p.additionals[0];
      assert.equal(o.type, "OPT", ctx);
      assert.equal(o.name, ".", ctx);
      assert.equal(o.udpPayloadSize, edns.udpSize, ctx);
      assert.equal(o.flag_do, edns.dnssecOk, ctx);
      assert.equal(o.extendedRcode, 0, ctx);
      assert.equal(o.ednsVersion, 0, ctx);
      assert.deepEqual(
        o.options.map((x: { code: number; data: Uint8Array }) => [x.code, [...x.data]]),
        edns.options.map((x) => [x.code, [...x.data]]),
        ctx,
      );
    } else {
      assert.equal(p.additionals.length, 0, ctx);
    }
  }
});

const KINDS: ReadonlySet<DecodeErrorKind> = new Set<DecodeErrorKind>([
  "short_header",
  "truncated",
  "label_too_long",
  "name_too_long",
  "pointer_loop",
  "pointer_out_of_range",
  "too_many_pointers",
  "bad_label_type",
  "multiple_questions",
  "opt_not_root",
  "opt_duplicate",
  "opt_malformed",
  "trailing_bytes",
]);

function mutate(rng: Rng, src: Uint8Array): Uint8Array {
  let buf: Uint8Array = src.slice();
  const ops = 1 + rng.int(3);
  for (let k = 0; k < ops; k++) {
    switch (rng.int(6)) {
      case 0: // flip bits of a byte
        if (buf.length) buf[rng.int(buf.length)] ^= 1 << rng.int(8);
        break;
      case 1: // overwrite a byte
        if (buf.length) buf[rng.int(buf.length)] = rng.int(256);
        break;
      case 2: // truncate
        buf = buf.subarray(0, rng.int(buf.length + 1));
        break;
      case 3: // plant a compression pointer
        if (buf.length > 1) {
          const at = rng.int(buf.length - 1);
          buf[at] = 0xc0 | rng.int(rng.chance(0.8) ? 1 : 64);
          buf[at + 1] = rng.int(256);
        }
        break;
      case 4: // mangle a header count
        if (buf.length >= 12) buf[4 + rng.int(8)] = rng.chance(0.5) ? rng.int(4) : rng.int(256);
        break;
      case 5: // append junk
        buf = concat([buf, rng.bytes(1 + rng.int(8))]);
        break;
    }
  }
  return buf;
}

function checkResult(buf: Uint8Array, r: ReturnType<typeof decodeMessage>): string {
  if (!r.ok) {
    assert.ok(KINDS.has(r.error.kind), `unknown kind ${r.error.kind}`);
    assert.ok(r.error.offset >= 0 && r.error.offset <= buf.length, `offset ${r.error.offset}`);
    assert.equal(typeof r.error.message, "string");
    return r.error.kind;
  }
  const m = r.value;
  assert.ok(m.end <= buf.length);
  // The query decoder is the same walk, strict about bytes after the message.
  const q = decodeQuery(buf);
  if (m.end === buf.length) assert.ok(q.ok);
  else assert.ok(!q.ok && q.error.kind === "trailing_bytes" && q.error.offset === m.end);
  if (m.question) {
    assert.ok(m.question.name.length >= 1 && m.question.name.length <= 255);
    assert.equal(m.question.name[m.question.name.length - 1], 0);
    assert.ok(m.question.end <= m.answerStart);
  }
  assert.ok(m.answerStart <= m.authorityStart && m.authorityStart <= m.additionalStart);
  assert.ok(m.additionalStart <= m.end);
  for (const rec of m.records) {
    assert.ok(rec.ttlOffset + 6 === rec.rdataOffset);
    assert.ok(rec.rdataOffset + rec.rdataLength <= buf.length);
  }
  if (m.edns) assert.ok(m.edns.start < m.edns.end && m.edns.end <= buf.length);
  return "ok";
}

Deno.test("mutation: decodeMessage never throws and only returns known error kinds", () => {
  const rng = new Rng(SEED ^ 0x1337);
  const seen = new Map<string, number>();
  let inputs = 0;
  for (let n = 0; n < 2500; n++) {
    const base = generate(rng).buf;
    for (let k = 0; k < 10; k++) {
      const buf = mutate(rng, base);
      const outcome = checkResult(buf, decodeMessage(buf));
      seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
      // Names read at arbitrary offsets must also come back as a value, never an exception.
      const rn = readName(buf, rng.int(buf.length + 1));
      if (rn.ok) {
        assert.ok(rn.value.wire.length <= 255 && rn.value.end <= buf.length);
      } else {
        assert.ok(KINDS.has(rn.error.kind));
      }
      inputs++;
    }
  }
  assert.ok(inputs >= 20000);
  // Mutations must reach both outcomes and a spread of error kinds.
  assert.ok((seen.get("ok") ?? 0) > 100, JSON.stringify([...seen]));
  assert.ok(seen.size >= 8, JSON.stringify([...seen]));
});

Deno.test("mutation: pure random bytes never make decodeMessage throw", () => {
  const rng = new Rng(SEED ^ 0x7777);
  for (let n = 0; n < 5000; n++) {
    const buf = rng.bytes(rng.int(80));
    if (buf.length >= 12 && rng.chance(0.7)) {
      // Plausible small counts get the decoder past the header more often.
      for (let i = 4; i < 12; i += 2) buf[i] = 0, buf[i + 1] = rng.int(3);
    }
    checkResult(buf, decodeMessage(buf));
  }
});
