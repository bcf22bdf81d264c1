import assert from "node:assert/strict";
import { nameFromString } from "../../lib/dns/wire.ts";
import { BUILTIN_LOCAL_ZONES, builtinZones, LocalZone } from "../../lib/route/local_zones.ts";
import { isRecordError, LocalData, parseRecord } from "../../lib/route/records.ts";
import { flagsOf, lines, query, read } from "./helpers.ts";

const SOA = (zone: string) => `${zone} 10800 SOA localhost nobody.invalid`;

function zone(name: string): LocalZone {
  const z = builtinZones().find((z) => z.name === `${name}.`);
  assert.ok(z, `built-in zone ${name}`);
  return z;
}

Deno.test("a name under a local zone is NXDOMAIN with the zone's SOA, AA set", () => {
  const r = read(zone("10.in-addr.arpa").answer(query("4.3.2.10.in-addr.arpa", "PTR")));
  assert.equal(r.rcode, "NXDOMAIN");
  assert.equal(flagsOf(r), "qr aa rd ra");
  assert.deepEqual(r.answers, []);
  assert.deepEqual(lines(r.authorities), [SOA("10.in-addr.arpa")]);
  const inv = read(zone("invalid").answer(query("anything.INVALID", "A")));
  assert.equal(inv.rcode, "NXDOMAIN");
  assert.deepEqual(lines(inv.authorities), [SOA("invalid")]);
});

Deno.test("a zone apex answers SOA and NS, and NODATA with the SOA for other types", () => {
  const z = zone("home.arpa");
  assert.deepEqual(lines(read(z.answer(query("home.arpa", "SOA"))).answers), [SOA("home.arpa")]);
  assert.deepEqual(lines(read(z.answer(query("home.arpa", "NS"))).answers), [
    "home.arpa 10800 NS localhost",
  ]);
  const a = read(z.answer(query("Home.Arpa", "A")));
  assert.equal(a.rcode, "NOERROR");
  assert.deepEqual(a.answers, []);
  // Owners equal to the question name point at it, so they take the client's spelling.
  assert.deepEqual(lines(a.authorities), [SOA("Home.Arpa")]);
});

Deno.test("localhost and every name below it resolve to loopback; other types are NODATA", () => {
  const z = zone("localhost");
  assert.deepEqual(lines(read(z.answer(query("localhost", "A"))).answers), [
    "localhost 10800 A 127.0.0.1",
  ]);
  assert.deepEqual(lines(read(z.answer(query("foo.localhost", "AAAA"))).answers), [
    "foo.localhost 10800 AAAA ::1",
  ]);
  const mx = read(z.answer(query("foo.localhost", "MX")));
  assert.equal(mx.rcode, "NOERROR");
  assert.deepEqual(mx.answers, []);
  assert.deepEqual(lines(mx.authorities), [SOA("localhost")]);
  assert.deepEqual(lines(read(z.answer(query("localhost", "SOA"))).answers), [SOA("localhost")]);
});

Deno.test("the loopback reverse names answer PTR localhost; the rest of 127/8 is NXDOMAIN", () => {
  const r = read(zone("127.in-addr.arpa").answer(query("1.0.0.127.in-addr.arpa", "PTR")));
  assert.deepEqual(lines(r.answers), ["1.0.0.127.in-addr.arpa 10800 PTR localhost"]);
  const other = read(zone("127.in-addr.arpa").answer(query("2.0.0.127.in-addr.arpa", "PTR")));
  assert.equal(other.rcode, "NXDOMAIN");
  const v6 = `1.${"0.".repeat(31)}ip6.arpa`;
  const six = zone(v6);
  assert.deepEqual(lines(read(six.answer(query(v6, "PTR"))).answers), [
    `${v6} 10800 PTR localhost`,
  ]);
  assert.deepEqual(lines(read(six.answer(query(v6, "SOA"))).answers), [SOA(v6)]);
});

Deno.test("an empty non-terminal of operator data is NODATA, not NXDOMAIN", () => {
  const data = new LocalData();
  const rec = parseRecord({ name: "a.b.home.arpa", type: "A", data: "192.168.1.11" });
  assert.ok(!isRecordError(rec));
  assert.equal(data.add(rec), null);
  const z = zone("home.arpa");
  const ent = read(z.answer(query("b.home.arpa", "A"), data));
  assert.equal(ent.rcode, "NOERROR");
  assert.deepEqual(lines(ent.authorities), [SOA("home.arpa")]);
  assert.equal(read(z.answer(query("c.home.arpa", "A"), data)).rcode, "NXDOMAIN");
});

Deno.test("classes other than IN are refused without AA", () => {
  const r = read(zone("localhost").answer(query("localhost", "A", { qclass: 3 })));
  assert.equal(r.rcode, "REFUSED");
  assert.equal(flagsOf(r), "qr rd ra");
});

Deno.test("the built-in table covers the RFC 6303, 6761, 6762, 7686, 7793 and 8375 zones", () => {
  const names = new Set(BUILTIN_LOCAL_ZONES.map((z) => z.name));
  const expected = [
    "localhost",
    "invalid",
    "local",
    "onion",
    "home.arpa",
    "10.in-addr.arpa",
    "16.172.in-addr.arpa",
    "31.172.in-addr.arpa",
    "168.192.in-addr.arpa",
    "0.in-addr.arpa",
    "127.in-addr.arpa",
    "254.169.in-addr.arpa",
    "2.0.192.in-addr.arpa",
    "100.51.198.in-addr.arpa",
    "113.0.203.in-addr.arpa",
    "255.255.255.255.in-addr.arpa",
    "64.100.in-addr.arpa",
    "127.100.in-addr.arpa",
    `0.${"0.".repeat(31)}ip6.arpa`,
    `1.${"0.".repeat(31)}ip6.arpa`,
    "d.f.ip6.arpa",
    "8.e.f.ip6.arpa",
    "9.e.f.ip6.arpa",
    "a.e.f.ip6.arpa",
    "b.e.f.ip6.arpa",
    "8.b.d.0.1.0.0.2.ip6.arpa",
  ];
  for (const n of expected) assert.ok(names.has(n), n);
  assert.ok(!names.has("15.172.in-addr.arpa") && !names.has("32.172.in-addr.arpa"));
  assert.ok(!names.has("63.100.in-addr.arpa") && !names.has("128.100.in-addr.arpa"));
  assert.ok(!names.has("test"), "test names are forwarded by default");
  assert.equal(names.size, BUILTIN_LOCAL_ZONES.length, "no zone listed twice");
  // Every entry parses (builtinZones throws on a bad one).
  assert.equal(builtinZones().length, BUILTIN_LOCAL_ZONES.length);
});

Deno.test("an operator zone from a string apex is lower-cased", () => {
  const z = new LocalZone("LAN");
  assert.deepEqual(z.apex, nameFromString("lan"));
  assert.equal(z.name, "lan.");
  assert.equal(read(z.answer(query("x.lan", "A"))).rcode, "NXDOMAIN");
});
