import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { decodeMessage, type Message } from "../../lib/dns/message.ts";
import {
  DEFAULT_PRIVATE_RANGES,
  RebindingFilter,
  type RebindingOptions,
} from "../../lib/route/rebinding.ts";
import { lines, read } from "./helpers.ts";

function filter(opts: RebindingOptions = {}): RebindingFilter {
  const f = RebindingFilter.build(opts);
  if (!(f instanceof RebindingFilter)) throw new Error(JSON.stringify(f));
  return f;
}

function decode(bytes: Uint8Array): Message {
  const d = decodeMessage(bytes);
  if (!d.ok) throw new Error(d.error.message);
  return d.value;
}

type Rec = { name: string; type: string; ttl?: number; data: unknown };

/** An upstream reply encoded by dns-packet (uncompressed), with an OPT record. */
function reply(
  qname: string,
  qtype: string,
  answers: Rec[],
  extra: Partial<dnsPacket.Packet> = {},
) {
  return new Uint8Array(dnsPacket.encode({
    type: "response",
    id: 7,
    flags: 0x8180,
    questions: [{ name: qname, type: qtype, class: "IN" }],
    answers: answers.map((a) => ({ ttl: 60, class: "IN", ...a })),
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as dnsPacket.Answer],
    ...extra,
  } as dnsPacket.Packet));
}

/**
 * A reply written by hand with compression pointers, the way servers write them:
 *   www.rebind.test A, answers: www CNAME x.rebind.test (target compressed),
 *   x.rebind.test A 192.168.0.1 (owner pointer into the CNAME rdata),
 *   h.rebind.test A 10.1.1.1 (owner in full), h.rebind.test A 198.51.100.7 (owner pointer into
 *   the previous, private, record), then an authority NS with a compressed target.
 */
function compressedReply(): Uint8Array {
  const b: number[] = [];
  const u16 = (v: number) => b.push(v >> 8, v & 0xff);
  const label = (s: string) => b.push(s.length, ...new TextEncoder().encode(s));
  u16(7);
  u16(0x8180);
  u16(1);
  u16(4);
  u16(1);
  u16(0);
  // Question at 12: www(12) rebind(16) test(23) root(28)
  label("www");
  label("rebind");
  label("test");
  b.push(0);
  u16(1);
  u16(1);
  // Answer 1: www.rebind.test CNAME x.rebind.test
  u16(0xc000 | 12);
  u16(5);
  u16(1);
  u16(0);
  u16(300);
  u16(4);
  const xAt = b.length;
  label("x");
  u16(0xc000 | 16);
  // Answer 2: x.rebind.test A 192.168.0.1 (owner points into the CNAME rdata)
  u16(0xc000 | xAt);
  u16(1);
  u16(1);
  u16(0);
  u16(300);
  u16(4);
  b.push(192, 168, 0, 1);
  // Answer 3: h.rebind.test A 10.1.1.1
  const hAt = b.length;
  label("h");
  u16(0xc000 | 16);
  u16(1);
  u16(1);
  u16(0);
  u16(300);
  u16(4);
  b.push(10, 1, 1, 1);
  // Answer 4: h.rebind.test A 198.51.100.7, owner pointing into answer 3 (removed)
  u16(0xc000 | hAt);
  u16(1);
  u16(1);
  u16(0);
  u16(300);
  u16(4);
  b.push(198, 51, 100, 7);
  // Authority: rebind.test NS ns.rebind.test (compressed)
  u16(0xc000 | 16);
  u16(2);
  u16(1);
  u16(0);
  u16(300);
  u16(5);
  label("ns");
  u16(0xc000 | 16);
  return new Uint8Array(b);
}

Deno.test("a reply without private addresses is left alone", () => {
  const bytes = reply("www.example.com", "A", [
    { name: "www.example.com", type: "A", data: "93.184.216.34" },
  ]);
  assert.deepEqual(filter().apply(bytes, decode(bytes), false), { kind: "clean" });
});

Deno.test("private addresses are removed RR by RR; names survive decompression", () => {
  const bytes = compressedReply();
  const out = filter().apply(bytes, decode(bytes), false);
  assert.equal(out.kind, "filtered");
  if (out.kind !== "filtered") return;
  assert.equal(out.removed, 2);
  decode(out.bytes); // our codec reads it back
  const p = read(out.bytes);
  assert.equal(p.id, 7);
  assert.equal(p.rcode, "NOERROR");
  assert.deepEqual(lines(p.answers), [
    "www.rebind.test 300 CNAME x.rebind.test",
    "h.rebind.test 300 A 198.51.100.7",
  ]);
  assert.deepEqual(p.authorities, [], "the authority section is dropped");
});

Deno.test("an answer left without addresses is NODATA, and its OPT is kept", () => {
  const bytes = reply("evil.example", "A", [
    { name: "evil.example", type: "A", data: "127.0.0.1" },
    { name: "evil.example", type: "A", data: "10.0.0.1" },
  ], {
    authorities: [{ name: "example", type: "NS", ttl: 60, class: "IN", data: "ns.example" }],
  });
  const out = filter().apply(bytes, decode(bytes), false);
  assert.equal(out.kind, "filtered");
  if (out.kind !== "filtered") return;
  const msg = decode(out.bytes);
  assert.equal(msg.rcode, 0);
  assert.equal(msg.records.length, 0);
  assert.ok(msg.edns, "OPT kept");
  assert.equal(msg.header.arcount, 1);
  assert.equal(msg.question?.qtype, 1);
});

Deno.test("IPv6 loopback, unique-local, link-local, unspecified and mapped private are removed", () => {
  const addrs = ["::1", "fd12::1", "fe80::1", "::", "::ffff:192.168.0.1", "2001:db8::1"];
  const bytes = reply(
    "six.example",
    "AAAA",
    addrs.map((data) => ({ name: "six.example", type: "AAAA", data })),
  );
  const out = filter().apply(bytes, decode(bytes), false);
  assert.equal(out.kind, "filtered");
  if (out.kind !== "filtered") return;
  assert.equal(out.removed, 5);
  assert.deepEqual(lines(read(out.bytes).answers), ["six.example 60 AAAA 2001:db8::1"]);
});

Deno.test("every default range is caught at its edges and nothing next to it is", () => {
  const f = filter();
  const v4 = (s: string) => new Uint8Array(s.split(".").map(Number));
  const inside = ["0.0.0.0", "10.255.255.255", "100.64.0.1", "100.127.255.255", "127.0.0.1"];
  inside.push("169.254.1.1", "172.16.0.0", "172.31.255.255", "192.168.255.255");
  const outside = ["1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0"];
  outside.push("192.167.255.255", "169.253.0.1", "11.0.0.0", "8.8.8.8");
  for (const a of inside) assert.ok(f.isPrivate(v4(a), 0, 4), a);
  for (const a of outside) assert.ok(!f.isPrivate(v4(a), 0, 4), a);
  assert.equal(DEFAULT_PRIVATE_RANGES.length, 11);
});

Deno.test("names routed to an internal group and allow-listed names keep private answers", () => {
  const bytes = reply("nas.corp.example", "A", [
    { name: "nas.corp.example", type: "A", data: "10.0.0.5" },
  ]);
  const f = filter({ allow: ["corp.example"] });
  assert.equal(f.apply(bytes, decode(bytes), true).kind, "clean", "allowPrivate from the route");
  assert.equal(f.apply(bytes, decode(bytes), false).kind, "clean", "allow list");
  const other = reply("nas.xcorp.example", "A", [
    { name: "nas.xcorp.example", type: "A", data: "10.0.0.5" },
  ]);
  assert.equal(f.apply(other, decode(other), false).kind, "filtered", "label boundary");
});

Deno.test("a public name cannot borrow an exemption through a CNAME to an allowed name", () => {
  const bytes = reply("attacker.example", "A", [
    { name: "attacker.example", type: "CNAME", data: "nas.corp.example" },
    { name: "nas.corp.example", type: "A", data: "10.0.0.5" },
  ]);
  const out = filter({ allow: ["corp.example"] }).apply(bytes, decode(bytes), false);
  assert.equal(out.kind, "filtered");
  if (out.kind !== "filtered") return;
  assert.deepEqual(lines(read(out.bytes).answers), [
    "attacker.example 60 CNAME nas.corp.example",
  ]);
});

Deno.test("action refuse turns an answer with private addresses into REFUSED", () => {
  const bytes = reply("evil.example", "A", [
    { name: "evil.example", type: "A", data: "192.168.1.1" },
    { name: "evil.example", type: "A", data: "1.2.3.4" },
  ]);
  assert.deepEqual(filter({ action: "refuse" }).apply(bytes, decode(bytes), false), {
    kind: "refuse",
    removed: 1,
  });
});

Deno.test("custom ranges replace the defaults", () => {
  const f = filter({ ranges: ["203.0.113.0/24"] });
  const bytes = reply("x.example", "A", [
    { name: "x.example", type: "A", data: "203.0.113.9" },
    { name: "x.example", type: "A", data: "10.0.0.1" },
  ]);
  const out = f.apply(bytes, decode(bytes), false);
  assert.equal(out.kind, "filtered");
  if (out.kind === "filtered") {
    assert.deepEqual(lines(read(out.bytes).answers), ["x.example 60 A 10.0.0.1"]);
  }
});

Deno.test("a private address in the additional section drops that section; the answer stays", () => {
  const bytes = reply("mx.example", "MX", [
    { name: "mx.example", type: "MX", data: { preference: 10, exchange: "mail.example" } },
  ], {
    additionals: [
      { name: "mail.example", type: "A", ttl: 60, class: "IN", data: "10.0.0.25" },
      { type: "OPT", name: ".", udpPayloadSize: 1232 } as dnsPacket.Answer,
    ],
  });
  // An additional-section private address makes the reply filtered: the section is dropped.
  const out = filter().apply(bytes, decode(bytes), false);
  assert.equal(out.kind, "filtered");
  if (out.kind === "filtered") {
    const p = read(out.bytes);
    assert.deepEqual(lines(p.answers), ["mx.example 60 MX 10 mail.example"]);
    assert.equal(p.additionals.length, 1, "only the OPT is left");
  }
});

Deno.test("bad settings are reported with the list and the value", () => {
  const errs = RebindingFilter.build({ allow: ["ok.example", "bad..name"], ranges: ["10/8"] });
  assert.ok(Array.isArray(errs));
  assert.deepEqual(errs.map((e) => `${e.field} ${e.value}`), ["allow bad..name", "ranges 10/8"]);
});

Deno.test("a clean answer gets the one shared outcome object, no rebuild", () => {
  const bytes = reply("www.example.com", "A", [
    { name: "www.example.com", type: "A", data: "93.184.216.34" },
    { name: "www.example.com", type: "A", data: "93.184.216.35" },
  ]);
  const msg = decode(bytes);
  const f = filter();
  const first = f.apply(bytes, msg, false);
  for (let i = 0; i < 1000; i++) assert.equal(f.apply(bytes, msg, false), first);
});
