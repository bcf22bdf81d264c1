import assert from "node:assert/strict";
import { nameFromString, nameToString } from "../../lib/dns/wire.ts";
import { parseHosts, reverseNameV4, reverseNameV6 } from "../../lib/route/hosts.ts";
import { LocalData } from "../../lib/route/records.ts";
import { Router } from "../../lib/route/router.ts";
import { lines, query, read } from "./helpers.ts";

const DEBIAN = `# /etc/hosts
127.0.0.1	localhost
127.0.1.1	box.example.org	box

# The following lines are desirable for IPv6 capable hosts
::1     localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
192.168.1.10 nas.home.arpa nas   # the NAS
192.168.1.10 files.home.arpa
fd00::10 nas.home.arpa
0.0.0.0 ads.example
`;

function summary(text: string): string[] {
  return parseHosts(text).records.map((r) => {
    const data = r.type === 12
      ? nameToString(r.rdata)
      : r.type === 1
      ? Array.from(r.rdata).join(".")
      : "v6";
    return `${nameToString(r.owner)} ${r.typeName} ${data}`;
  });
}

Deno.test("each name gets an address record and each address one PTR to its first name", () => {
  const got = summary(DEBIAN);
  assert.ok(got.includes("localhost. A 127.0.0.1"));
  assert.ok(got.includes("1.0.0.127.in-addr.arpa. PTR localhost."));
  assert.ok(got.includes("box.example.org. A 127.0.1.1"));
  assert.ok(got.includes("box. A 127.0.1.1"));
  assert.ok(got.includes("1.1.0.127.in-addr.arpa. PTR box.example.org."));
  assert.ok(got.includes("ip6-loopback. AAAA v6"));
  assert.ok(got.includes("nas.home.arpa. A 192.168.1.10"));
  assert.ok(got.includes("files.home.arpa. A 192.168.1.10"));
  assert.ok(got.includes("nas. A 192.168.1.10"));
  assert.ok(got.includes("nas.home.arpa. AAAA v6"));
  // The second line for 192.168.1.10 adds names, not a second PTR.
  assert.deepEqual(got.filter((l) => l.startsWith("10.1.168.192.in-addr.arpa.")), [
    "10.1.168.192.in-addr.arpa. PTR nas.home.arpa.",
  ]);
  const fd00_10 = `0.1.0.0.${"0.".repeat(24)}0.0.d.f.ip6.arpa.`;
  assert.ok(got.includes(`${fd00_10} PTR nas.home.arpa.`));
  // A blocklist line gets its A record but no PTR for 0.0.0.0.
  assert.ok(got.includes("ads.example. A 0.0.0.0"));
  assert.ok(!got.some((l) => l.startsWith("0.0.0.0.in-addr.arpa")));
  const parsed = parseHosts(DEBIAN);
  assert.deepEqual(parsed.errors, []);
  assert.deepEqual(parsed.warnings, []);
});

Deno.test("reverse names follow RFC 1035 and RFC 3596", () => {
  assert.equal(nameToString(reverseNameV4(0xc0a8010a)), "10.1.168.192.in-addr.arpa.");
  assert.equal(
    nameToString(reverseNameV6([0x20010db8, 0, 0, 0x567])),
    "7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
  );
});

Deno.test("bad lines are errors with their line number; zoned addresses are skipped with a warning", () => {
  const text = [
    "10.0.0.1 good", // 1
    "10.0.0.300 bad-address", // 2
    "10.0.0.2", // 3
    "fe80::1%lo0 localhost", // 4
    "10.0.0.3 ok bad..name", // 5
    "   # only a comment", // 6
    "nonsense", // 7
    "10.0.0.4\tt1 t2\t t3", // 8
  ].join("\n");
  const r = parseHosts(text);
  assert.deepEqual(r.errors.map((e) => e.line), [2, 3, 5, 7]);
  assert.match(r.errors[0].message, /"10\.0\.0\.300" is not an IPv4 or IPv6 address/);
  assert.match(r.errors[1].message, /no host name after the address 10\.0\.0\.2/);
  assert.match(r.errors[2].message, /host name "bad\.\.name" is not a valid domain name/);
  assert.deepEqual(r.warnings.map((w) => w.line), [4]);
  assert.match(r.warnings[0].message, /zone/);
  // A line with an error contributes nothing; good lines still do.
  const names = r.records.filter((x) => x.type === 1).map((x) => nameToString(x.owner));
  assert.deepEqual(names, ["good.", "t1.", "t2.", "t3."]);
});

Deno.test("hosts records answer through the router, forward and reverse, CRLF tolerated", () => {
  const data = new LocalData();
  for (const rec of parseHosts("192.168.1.10 NAS.home.arpa nas\r\n::1 localhost\r\n").records) {
    assert.equal(data.add(rec), null);
  }
  const router = Router.build({ data });
  assert.ok(router instanceof Router);
  const ask = (name: string, qtype: Parameters<typeof query>[1]) => {
    const msg = query(name, qtype);
    const d = router.route(msg.question!.name);
    assert.equal(d.kind, "local");
    return read(d.kind === "local" ? d.answer(msg) : null);
  };
  assert.deepEqual(lines(ask("nas.home.arpa", "A").answers), ["nas.home.arpa 300 A 192.168.1.10"]);
  assert.deepEqual(lines(ask("10.1.168.192.in-addr.arpa", "PTR").answers), [
    "10.1.168.192.in-addr.arpa 300 PTR nas.home.arpa",
  ]);
  assert.deepEqual(lines(ask("localhost", "AAAA").answers), ["localhost 300 AAAA ::1"]);
  assert.deepEqual(data.get(nameFromString("nas"))?.rrsets.size, 1);
});
