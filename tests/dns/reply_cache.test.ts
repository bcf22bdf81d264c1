import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import { decodeMessage, HEADER_SIZE, type Message, RRType } from "../../lib/dns/message.ts";
import { appendOpt, withoutOpt } from "../../lib/dns/reply.ts";
import { seededRandom } from "../helpers/fake_clock.ts";

function decoded(buf: Uint8Array): Message {
  const r = decodeMessage(buf);
  if (!r.ok) assert.fail(`unexpected ${r.error.kind} at ${r.error.offset}: ${r.error.message}`);
  return r.value;
}

function bytesOf(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

type Rec = Record<string, unknown>;

function opt(dnssecOk: boolean, udp = 1232, options: Rec[] = []): Rec {
  return {
    type: "OPT",
    name: ".",
    udpPayloadSize: udp,
    flags: dnssecOk ? dnsPacket.DNSSEC_OK : 0,
    options,
  };
}

function encodeReply(additionals: Rec[]): Uint8Array {
  return bytesOf(dnsPacket.encode({
    id: 0x1234,
    type: "response",
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: "A", name: "www.example.com" }],
    answers: [{ type: "A", name: "www.example.com", ttl: 300, data: "192.0.2.1" }],
    authorities: [{ type: "NS", name: "example.com", ttl: 900, data: "ns.example.com" }],
    additionals,
  } as dnsPacket.Packet));
}

/** TTL stored at each offset, read back from the bytes. */
function ttlsAt(bytes: Uint8Array, offsets: number[]): number[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return offsets.map((o) => v.getUint32(o));
}

Deno.test("withoutOpt of a reply without OPT is an exact copy with the same TTL offsets", () => {
  const reply = encodeReply([{ type: "A", name: "ns.example.com", ttl: 60, data: "192.0.2.53" }]);
  const msg = decoded(reply);
  const out = withoutOpt(reply, msg);
  assert.ok(out);
  assert.deepEqual(out.bytes, reply);
  assert.notEqual(out.bytes.buffer, reply.buffer, "a copy, not a view");
  assert.deepEqual(out.ttlOffsets, msg.records.map((r) => r.ttlOffset));
});

Deno.test("withoutOpt cuts the OPT bytes and decrements ARCOUNT", () => {
  const reply = encodeReply([opt(true, 4096, [{ code: 10, data: Buffer.alloc(16, 1) }])]);
  const msg = decoded(reply);
  const out = withoutOpt(reply, msg);
  assert.ok(out && msg.edns);
  assert.equal(out.bytes.length, reply.length - (msg.edns.end - msg.edns.start));
  assert.deepEqual(
    out.bytes,
    reply.subarray(0, msg.edns.start).map((b, i) => i === 11 ? b - 1 : b),
  );
  const m = decoded(out.bytes);
  assert.equal(m.edns, null);
  assert.equal(m.header.arcount, 0);
  assert.deepEqual(ttlsAt(out.bytes, out.ttlOffsets), [300, 900]);
});

Deno.test("records after the OPT keep working, their TTL offsets shifted", () => {
  const reply = encodeReply([
    { type: "A", name: "ns.example.com", ttl: 60, data: "192.0.2.53" },
    opt(false, 1232, [{ code: 10, data: Buffer.alloc(8, 7) }]),
    { type: "AAAA", name: "ns.example.com", ttl: 70, data: "2001:db8::53" },
    { type: "TXT", name: "ns.example.com", ttl: 80, data: "after the OPT" },
  ]);
  const out = withoutOpt(reply, decoded(reply));
  assert.ok(out);
  const m = decoded(out.bytes);
  assert.deepEqual(out.ttlOffsets, m.records.map((r) => r.ttlOffset));
  assert.deepEqual(ttlsAt(out.bytes, out.ttlOffsets), [300, 900, 60, 70, 80]);
  const p = dnsPacket.decode(Buffer.from(out.bytes));
  assert.deepEqual(
    (p.additionals ?? []).map((r: dnsPacket.Answer) => [r.type, r.name, r.ttl]),
    [["A", "ns.example.com", 60], ["AAAA", "ns.example.com", 70], ["TXT", "ns.example.com", 80]],
  );
});

/**
 * A reply with compression pointers among the records after its OPT (dns-packet never compresses,
 * so it is written by hand): question example.com A; additional: A (before the OPT), OPT with a
 * 12-byte cookie option, A ns1.example.com, CNAME with owner and target pointing at ns1's owner,
 * MX whose exchange points there too. `pointAt` replaces the CNAME owner pointer target.
 */
function compressedReply(pointAt?: number): { bytes: Uint8Array; optStart: number; ns1: number } {
  const b: number[] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 5];
  b.push(7, ...new TextEncoder().encode("example"), 3, ...new TextEncoder().encode("com"), 0);
  b.push(0, 1, 0, 1);
  b.push(0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 100, 0, 4, 192, 0, 2, 1); // A example.com 100
  const optStart = b.length;
  b.push(0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8);
  const ns1 = b.length;
  b.push(3, 0x6e, 0x73, 0x31, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 200, 0, 4, 192, 0, 2, 53); // A 200
  const owner = pointAt ?? ns1;
  b.push(0xc0 | (owner >> 8), owner & 0xff, 0, 5, 0, 1, 0, 0, 1, 44, 0, 6); // CNAME 300
  b.push(3, 0x77, 0x77, 0x77, 0xc0, ns1); // www.ns1.example.com
  b.push(0xc0, 12, 0, 15, 0, 1, 0, 0, 1, 144, 0, 4, 0, 10, 0xc0, ns1); // MX 400 10 ns1
  return { bytes: new Uint8Array(b), optStart, ns1 };
}

Deno.test("compression pointers between records after the OPT are moved with them", () => {
  const { bytes } = compressedReply();
  const msg = decoded(bytes);
  assert.ok(msg.edns);
  const before = dnsPacket.decode(Buffer.from(bytes));
  const out = withoutOpt(bytes, msg);
  assert.ok(out);
  const m = decoded(out.bytes);
  assert.equal(m.edns, null);
  assert.deepEqual(ttlsAt(out.bytes, out.ttlOffsets), [100, 200, 300, 400]);
  const after = dnsPacket.decode(Buffer.from(out.bytes));
  const show = (p: dnsPacket.Packet) =>
    (p.additionals ?? []).filter((r: dnsPacket.Answer) => r.type !== "OPT").map((
      r: dnsPacket.Answer,
    ) => [r.type, r.name, r.ttl, r.data]);
  assert.deepEqual(show(after), show(before));
  assert.deepEqual(show(after), [
    ["A", "example.com", 100, "192.0.2.1"],
    ["A", "ns1.example.com", 200, "192.0.2.53"],
    ["CNAME", "ns1.example.com", 300, "www.ns1.example.com"],
    ["MX", "example.com", 400, { preference: 10, exchange: "ns1.example.com" }],
  ]);
});

Deno.test("withoutOpt refuses a reply whose later names point into the OPT", () => {
  const { bytes, optStart } = compressedReply(undefined);
  const intoOpt = compressedReply(optStart).bytes; // the OPT's root owner byte: a valid root name
  assert.ok(withoutOpt(bytes, decoded(bytes)));
  assert.equal(withoutOpt(intoOpt, decoded(intoOpt)), null);
});

Deno.test("appendOpt adds an OPT at the end and increments ARCOUNT", () => {
  const reply = encodeReply([{ type: "A", name: "ns.example.com", ttl: 60, data: "192.0.2.53" }]);
  const out = appendOpt(reply, {
    udpSize: 1232,
    dnssecOk: true,
    extendedRcode: 1,
    options: [{ code: 15, data: new Uint8Array([0, 23]) }],
  });
  assert.deepEqual(out.subarray(HEADER_SIZE, reply.length), reply.subarray(HEADER_SIZE));
  const m = decoded(out);
  assert.equal(m.header.arcount, 2);
  assert.ok(m.edns);
  assert.equal(m.edns.start, reply.length);
  assert.equal(m.edns.end, out.length);
  assert.deepEqual(
    [m.edns.udpSize, m.edns.dnssecOk, m.edns.extendedRcode, m.edns.version],
    [1232, true, 1, 0],
  );
  assert.deepEqual(m.edns.options.map((o) => [o.code, [...o.data]]), [[15, [0, 23]]]);
  assert.equal(m.rcode, 16);
  const p = dnsPacket.decode(Buffer.from(out));
  const o = (p.additionals ?? []).find((r: dnsPacket.Answer) => r.type === "OPT");
  assert.equal(o?.udpPayloadSize, 1232);
});

Deno.test("appendOpt after withoutOpt gives back a reply whose OPT was last", () => {
  const reply = encodeReply([opt(true)]);
  const out = withoutOpt(reply, decoded(reply));
  assert.ok(out);
  assert.deepEqual(appendOpt(out.bytes, { udpSize: 1232, dnssecOk: true }), reply);
  const plain = decoded(appendOpt(out.bytes, { udpSize: 512, dnssecOk: false }));
  assert.deepEqual([plain.edns?.udpSize, plain.edns?.dnssecOk, plain.edns?.options], [
    512,
    false,
    [],
  ]);
  assert.equal(plain.records.length, 2);
  assert.equal(plain.records[0].type, RRType.A);
});

Deno.test("appendOpt rejects programmer errors with RangeError", () => {
  const reply = encodeReply([]);
  assert.throws(() => appendOpt(new Uint8Array(5), { udpSize: 1232, dnssecOk: false }), RangeError);
  assert.throws(() => appendOpt(reply, { udpSize: 70000, dnssecOk: false }), RangeError);
  assert.throws(
    () => appendOpt(reply, { udpSize: 1232, dnssecOk: false, extendedRcode: 256 }),
    RangeError,
  );
  assert.throws(
    () =>
      appendOpt(reply, {
        udpSize: 1232,
        dnssecOk: false,
        options: [{ code: 1, data: new Uint8Array(65536) }],
      }),
    RangeError,
  );
  const full = reply.slice();
  full[10] = 0xff;
  full[11] = 0xff;
  assert.throws(() => appendOpt(full, { udpSize: 1232, dnssecOk: false }), RangeError);
});

Deno.test("withoutOpt agrees with dns-packet on generated replies with the OPT anywhere", () => {
  const rnd = seededRandom(0x5eed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd.float() * xs.length)];
  const recordOf = (i: number): Rec => {
    const name = pick(["example.com", "ns1.example.com", "a.b.example.org", "x.test"]);
    const ttl = rnd.uint16() * 7;
    return pick<() => Rec>([
      () => ({ type: "A", name, ttl, data: `192.0.2.${i & 255}` }),
      () => ({ type: "AAAA", name, ttl, data: `2001:db8::${i.toString(16)}` }),
      () => ({ type: "NS", name, ttl, data: `ns${i}.example.net` }),
      () => ({ type: "MX", name, ttl, data: { preference: i, exchange: `mx${i}.example.net` } }),
      () => ({ type: "TXT", name, ttl, data: "t".repeat(i % 40) }),
      () => ({ type: "CNAME", name, ttl, data: `c${i}.example.net` }),
    ])();
  };
  const records = (n: number, base: number) =>
    Array.from({ length: n }, (_, i) => recordOf(base + i));
  for (let round = 0; round < 200; round++) {
    const additionals = records(Math.floor(rnd.float() * 4), 100);
    const optAt = Math.floor(rnd.float() * (additionals.length + 1));
    additionals.splice(optAt, 0, opt(rnd.float() < 0.5, 512 + rnd.uint16() % 4000));
    const reply = bytesOf(dnsPacket.encode({
      id: rnd.uint16(),
      type: "response",
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: "A", name: "q.example.com" }],
      answers: records(Math.floor(rnd.float() * 4), 0),
      authorities: records(Math.floor(rnd.float() * 3), 50),
      additionals,
    } as dnsPacket.Packet));
    const msg = decoded(reply);
    const out = withoutOpt(reply, msg);
    assert.ok(out, `round ${round}`);
    assert.deepEqual(ttlsAt(out.bytes, out.ttlOffsets), msg.records.map((r) => r.ttl));
    const strip = (p: dnsPacket.Packet) => ({
      answers: p.answers,
      authorities: p.authorities,
      additionals: (p.additionals ?? []).filter((r: dnsPacket.Answer) => r.type !== "OPT"),
    });
    assert.deepEqual(
      strip(dnsPacket.decode(Buffer.from(out.bytes))),
      strip(dnsPacket.decode(Buffer.from(reply))),
      `round ${round}`,
    );
  }
});

/**
 * Issue 11 item 11: a record *before* the OPT whose rdata name is a forward pointer to a name
 * after the OPT (the decoder allows forward pointers in rdata, which it keeps raw). Question
 * example.com A; answer: CNAME example.com → pointer to `target`, which is the owner name of an
 * A record after the OPT (ns1.example.com).
 */
function forwardPointerReply(): Uint8Array {
  const b: number[] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 2];
  b.push(7, ...new TextEncoder().encode("example"), 3, ...new TextEncoder().encode("com"), 0);
  b.push(0, 1, 0, 1);
  const cnameRdata = b.length + 12;
  b.push(0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 100, 0, 2, 0, 0); // CNAME 100 → pointer patched below
  b.push(0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8); // OPT
  const target = b.length;
  b.push(3, 0x6e, 0x73, 0x31, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 200, 0, 4, 192, 0, 2, 53); // A 200
  b[cnameRdata] = 0xc0 | (target >> 8);
  b[cnameRdata + 1] = target & 0xff;
  return new Uint8Array(b);
}

/** Reads a name following pointers in either direction (at most 16 hops): dns-packet refuses forward ones. */
function nameAt(buf: Uint8Array, p: number): string {
  const labels: string[] = [];
  for (let hops = 0, steps = 0; hops < 16 && steps < 128; steps++) {
    if (p >= buf.length) throw new Error(`name runs past the end at ${p}`);
    const len = buf[p];
    if (len === 0) return labels.join(".");
    if (len >= 0xc0) {
      p = ((len & 0x3f) << 8) | buf[p + 1];
      hops++;
      continue;
    }
    labels.push(new TextDecoder().decode(buf.subarray(p + 1, p + 1 + len)));
    p += 1 + len;
  }
  throw new Error("pointer chain too long");
}

Deno.test("a forward pointer from a record before the OPT to a name after it is moved too", () => {
  const bytes = forwardPointerReply();
  const msg = decoded(bytes);
  const cname = msg.records[0];
  assert.equal(nameAt(bytes, cname.rdataOffset), "ns1.example.com");
  const out = withoutOpt(bytes, msg);
  assert.ok(out);
  const m = decoded(out.bytes);
  assert.equal(m.edns, null);
  assert.equal(nameAt(out.bytes, m.records[0].rdataOffset), "ns1.example.com");
  assert.deepEqual(ttlsAt(out.bytes, out.ttlOffsets), [100, 200]);
});
