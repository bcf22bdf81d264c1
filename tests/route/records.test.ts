import assert from "node:assert/strict";
import { nameFromString } from "../../lib/dns/wire.ts";
import { synthesizedSoa } from "../../lib/route/local_zones.ts";
import {
  DEFAULT_RECORD_TTL,
  isRecordError,
  LocalData,
  type LocalRecord,
  MAX_CNAME_CHAIN,
  parseRecord,
  type RecordRow,
} from "../../lib/route/records.ts";
import { flagsOf, lines, query, read } from "./helpers.ts";

function rec(row: RecordRow): LocalRecord {
  const r = parseRecord(row);
  if (isRecordError(r)) throw new Error(r.message);
  return r;
}

function data(...rows: RecordRow[]): LocalData {
  const d = new LocalData();
  for (const row of rows) {
    const err = d.add(rec(row));
    if (err) throw new Error(err);
  }
  return d;
}

function answer(d: LocalData, name: string, qtype: Parameters<typeof query>[1]) {
  const msg = query(name, qtype);
  const at = d.get(msg.question!.name);
  assert.ok(at, `${name} has data`);
  return read(d.answer(msg, at, null));
}

Deno.test("each supported type parses and answers with its data, AA set, the record TTL", () => {
  const d = data(
    { name: "nas.home.arpa", type: "A", data: "192.168.1.10", ttl: 60 },
    { name: "nas.home.arpa", type: "AAAA", data: "fd00::10" },
    { name: "nas.home.arpa", type: "TXT", data: '"first" "second \\"quoted\\""' },
    { name: "nas.home.arpa", type: "MX", data: "10 mail.home.arpa" },
    { name: "_sip._udp.home.arpa", type: "SRV", data: "0 5 5060 sip.home.arpa" },
    { name: "10.1.168.192.in-addr.arpa", type: "PTR", data: "nas.home.arpa." },
  );
  const a = answer(d, "NAS.home.arpa", "A");
  assert.equal(a.rcode, "NOERROR");
  assert.equal(flagsOf(a), "qr aa rd ra");
  assert.deepEqual(lines(a.answers), ["NAS.home.arpa 60 A 192.168.1.10"]);
  assert.deepEqual(lines(answer(d, "nas.home.arpa", "AAAA").answers), [
    `nas.home.arpa ${DEFAULT_RECORD_TTL} AAAA fd00::10`,
  ]);
  assert.deepEqual(lines(answer(d, "nas.home.arpa", "TXT").answers), [
    'nas.home.arpa 300 TXT first|second "quoted"',
  ]);
  assert.deepEqual(lines(answer(d, "nas.home.arpa", "MX").answers), [
    "nas.home.arpa 300 MX 10 mail.home.arpa",
  ]);
  assert.deepEqual(lines(answer(d, "_sip._udp.home.arpa", "SRV").answers), [
    "_sip._udp.home.arpa 300 SRV 0 5 5060 sip.home.arpa",
  ]);
  assert.deepEqual(lines(answer(d, "10.1.168.192.in-addr.arpa", "PTR").answers), [
    "10.1.168.192.in-addr.arpa 300 PTR nas.home.arpa",
  ]);
});

Deno.test("a name with data answers NODATA for other types, with the zone SOA when given", () => {
  const d = data({ name: "nas.home.arpa", type: "A", data: "192.168.1.10" });
  const msg = query("nas.home.arpa", "MX");
  const plain = read(d.answer(msg, d.get(msg.question!.name)!, null));
  assert.equal(plain.rcode, "NOERROR");
  assert.deepEqual(plain.answers, []);
  assert.deepEqual(plain.authorities, []);
  const soa = synthesizedSoa(nameFromString("home.arpa"));
  const withSoa = read(d.answer(msg, d.get(msg.question!.name)!, soa));
  assert.deepEqual(lines(withSoa.authorities), ["home.arpa 10800 SOA localhost nobody.invalid"]);
});

Deno.test("ANY returns every RRset at the name", () => {
  const d = data(
    { name: "h.lan", type: "A", data: "10.0.0.1" },
    { name: "h.lan", type: "A", data: "10.0.0.2" },
    { name: "h.lan", type: "TXT", data: "hello" },
  );
  assert.deepEqual(lines(answer(d, "h.lan", "ANY").answers).sort(), [
    "h.lan 300 A 10.0.0.1",
    "h.lan 300 A 10.0.0.2",
    "h.lan 300 TXT hello",
  ]);
});

Deno.test("a CNAME answers every other type and is followed through local data only", () => {
  const d = data(
    { name: "www.lan", type: "CNAME", data: "web.lan" },
    { name: "web.lan", type: "A", data: "10.0.0.8" },
    { name: "ext.lan", type: "CNAME", data: "www.example.com" },
  );
  assert.deepEqual(lines(answer(d, "www.lan", "A").answers), [
    "www.lan 300 CNAME web.lan",
    "web.lan 300 A 10.0.0.8",
  ]);
  assert.deepEqual(lines(answer(d, "www.lan", "CNAME").answers), ["www.lan 300 CNAME web.lan"]);
  // The target has no AAAA: the chain is the answer, NODATA at its end.
  assert.deepEqual(lines(answer(d, "www.lan", "AAAA").answers), ["www.lan 300 CNAME web.lan"]);
  // A target outside local data is not chased.
  assert.deepEqual(lines(answer(d, "ext.lan", "A").answers), ["ext.lan 300 CNAME www.example.com"]);
});

Deno.test("CNAME loops and over-long chains end the answer", () => {
  const loop = data(
    { name: "a.lan", type: "CNAME", data: "b.lan" },
    { name: "b.lan", type: "CNAME", data: "a.lan" },
  );
  assert.deepEqual(lines(answer(loop, "a.lan", "A").answers), [
    "a.lan 300 CNAME b.lan",
    "b.lan 300 CNAME a.lan",
  ]);
  const rows: RecordRow[] = [];
  for (let i = 0; i < 20; i++) {
    rows.push({ name: `c${i}.lan`, type: "CNAME", data: `c${i + 1}.lan` });
  }
  rows.push({ name: "c20.lan", type: "A", data: "10.0.0.1" });
  const long = answer(data(...rows), "c0.lan", "A");
  assert.equal(long.answers!.length, MAX_CNAME_CHAIN + 1);
  assert.ok(long.answers!.every((a: { type: string }) => a.type === "CNAME"));
});

Deno.test("a CNAME cannot share its name with other data", () => {
  const d = data({ name: "x.lan", type: "A", data: "10.0.0.1" });
  assert.match(d.add(rec({ name: "x.lan", type: "CNAME", data: "y.lan" }))!, /x\.lan\. cannot/);
  const c = data({ name: "c.lan", type: "CNAME", data: "y.lan" });
  assert.match(c.add(rec({ name: "C.lan", type: "TXT", data: "t" }))!, /CNAME and other data/);
  assert.match(c.add(rec({ name: "c.lan", type: "CNAME", data: "z.lan" }))!, /CNAME/);
  assert.equal(c.add(rec({ name: "c.lan", type: "CNAME", data: "Y.lan" })), null, "same target");
});

Deno.test("duplicates are merged and an RRset takes the lowest TTL", () => {
  const d = data(
    { name: "h.lan", type: "A", data: "10.0.0.1", ttl: 600 },
    { name: "h.lan", type: "A", data: "10.0.0.1", ttl: 30 },
    { name: "h.lan", type: "A", data: "10.0.0.2", ttl: 60 },
  );
  assert.deepEqual(lines(answer(d, "h.lan", "A").answers), [
    "h.lan 60 A 10.0.0.1",
    "h.lan 60 A 10.0.0.2",
  ]);
});

Deno.test("long TXT text is split into 255-byte strings", () => {
  const d = data({ name: "t.lan", type: "TXT", data: "x".repeat(600) });
  const txt = answer(d, "t.lan", "TXT").answers![0].data as Uint8Array[];
  assert.deepEqual(txt.map((s) => s.length), [255, 255, 90]);
});

Deno.test("bad rows are rejected with the field, the value and what is expected", () => {
  const cases: [RecordRow, string, RegExp][] = [
    [{ name: "a..b", type: "A", data: "1.2.3.4" }, "name", /not a valid domain name/],
    [{ name: "*.lan", type: "A", data: "1.2.3.4" }, "name", /wildcard/],
    [{ name: ".", type: "A", data: "1.2.3.4" }, "name", /root/],
    [{ name: "a.lan", type: "NS", data: "x" }, "type", /not one of A, AAAA, CNAME/],
    [
      { name: "a.lan", type: "A", data: "1.2.3" },
      "data",
      /A data must be an IPv4 address.*"1\.2\.3"/,
    ],
    [{ name: "a.lan", type: "A", data: "::1" }, "data", /IPv4/],
    [{ name: "a.lan", type: "AAAA", data: "10.0.0.1" }, "data", /AAAA data must be an IPv6/],
    [{ name: "a.lan", type: "MX", data: "mail.lan" }, "data", /MX data must be 'PREFERENCE HOST'/],
    [{ name: "a.lan", type: "MX", data: "70000 mail.lan" }, "data", /PREFERENCE HOST/],
    [{ name: "a.lan", type: "MX", data: "10 bad..host" }, "data", /MX host/],
    [{ name: "a.lan", type: "SRV", data: "0 5 sip.lan" }, "data", /PRIORITY WEIGHT PORT TARGET/],
    [{ name: "a.lan", type: "CNAME", data: "" }, "data", /CNAME target is empty/],
    [{ name: "a.lan", type: "TXT", data: '"open' }, "data", /unterminated/],
    [{ name: "a.lan", type: "A", data: "1.2.3.4", ttl: -1 }, "ttl", /ttl must be an integer/],
    [{ name: "a.lan", type: "A", data: "1.2.3.4", ttl: 1.5 }, "ttl", /ttl/],
  ];
  for (const [row, field, message] of cases) {
    const r = parseRecord(row);
    assert.ok(isRecordError(r), JSON.stringify(row));
    assert.equal(r.field, field, JSON.stringify(row));
    assert.match(r.message, message);
  }
});

Deno.test("types are case-insensitive and names are stored lower-case", () => {
  const r = rec({ name: "NAS.Home.Arpa", type: "aaaa", data: "::1" });
  assert.equal(r.typeName, "AAAA");
  assert.deepEqual(r.owner, nameFromString("nas.home.arpa"));
});

Deno.test("names below a record's name are not covered; its ancestors are empty non-terminals", () => {
  const d = data({ name: "a.b.lan", type: "A", data: "10.0.0.1" });
  assert.equal(d.get(nameFromString("x.a.b.lan")), undefined);
  assert.equal(d.get(nameFromString("b.lan")), undefined);
  assert.equal(d.covers(nameFromString("b.lan")), true);
  assert.equal(d.covers(nameFromString("c.lan")), false);
});
