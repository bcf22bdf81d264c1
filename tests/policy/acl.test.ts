import assert from "node:assert/strict";
import {
  Acl,
  type Cidr,
  DEFAULT_ALLOW,
  DEFAULT_ALLOW_TEXT,
  formatCidr,
  isPublicAddress,
  parseCidr,
  parseCidrList,
} from "../../lib/policy/acl.ts";

function cidr(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c === "string") throw new Error(c);
  return c;
}

const validCidrs: { text: string; want: Cidr }[] = [
  { text: "10.0.0.0/8", want: { family: 4, address: 0x0a000000, prefix: 8 } },
  { text: "0.0.0.0/0", want: { family: 4, address: 0, prefix: 0 } },
  { text: "192.0.2.1", want: { family: 4, address: 0xc0000201, prefix: 32 } },
  { text: "192.0.2.1/32", want: { family: 4, address: 0xc0000201, prefix: 32 } },
  { text: "255.255.255.255/32", want: { family: 4, address: 0xffffffff, prefix: 32 } },
  { text: "128.0.0.0/1", want: { family: 4, address: 0x80000000, prefix: 1 } },
  { text: "172.16.0.0/12", want: { family: 4, address: 0xac100000, prefix: 12 } },
  { text: "::/0", want: { family: 6, address: [0, 0, 0, 0], prefix: 0 } },
  { text: "::1", want: { family: 6, address: [0, 0, 0, 1], prefix: 128 } },
  { text: "::1/128", want: { family: 6, address: [0, 0, 0, 1], prefix: 128 } },
  { text: "2001:db8::/32", want: { family: 6, address: [0x20010db8, 0, 0, 0], prefix: 32 } },
  { text: "FC00::/7", want: { family: 6, address: [0xfc000000, 0, 0, 0], prefix: 7 } },
  { text: "fe80::/10", want: { family: 6, address: [0xfe800000, 0, 0, 0], prefix: 10 } },
  {
    text: "2001:db8:0:ff00::/56",
    want: { family: 6, address: [0x20010db8, 0x0000ff00, 0, 0], prefix: 56 },
  },
  {
    text: "2001:0db8:0000:0000:0000:0000:0000:0001/128",
    want: { family: 6, address: [0x20010db8, 0, 0, 1], prefix: 128 },
  },
  { text: "8000::/1", want: { family: 6, address: [0x80000000, 0, 0, 0], prefix: 1 } },
  {
    text: "64:ff9b::192.0.2.0/120",
    want: { family: 6, address: [0x0064ff9b, 0, 0, 0xc0000200], prefix: 120 },
  },
  // IPv4-mapped prefixes become IPv4: that is how mapped clients are matched.
  { text: "::ffff:10.0.0.0/104", want: { family: 4, address: 0x0a000000, prefix: 8 } },
  { text: "::ffff:192.0.2.1", want: { family: 4, address: 0xc0000201, prefix: 32 } },
  { text: "::ffff:0:0/96", want: { family: 4, address: 0, prefix: 0 } },
  { text: "::ffff:0.0.0.0/96", want: { family: 4, address: 0, prefix: 0 } },
  // ...but a shorter prefix that merely contains mapped space stays IPv6.
  { text: "::/80", want: { family: 6, address: [0, 0, 0, 0], prefix: 80 } },
];

for (const c of validCidrs) {
  Deno.test(`parseCidr accepts ${JSON.stringify(c.text)}`, () => {
    assert.deepEqual(parseCidr(c.text), c.want);
  });
}

const invalidCidrs: { text: string; message: string }[] = [
  { text: "", message: '"" is not an IP address or prefix' },
  { text: "10.0.0.1/8", message: "host bits are set after /8; did you mean 10.0.0.0/8?" },
  { text: "192.168.1.1/16", message: "did you mean 192.168.0.0/16?" },
  { text: "2001:db8::1/32", message: "did you mean 2001:db8::/32?" },
  { text: "fe80::1/10", message: "did you mean fe80::/10?" },
  { text: "::ffff:10.0.0.1/104", message: "did you mean ::ffff:10.0.0.0/104?" },
  { text: "10.0.0.0/33", message: "prefix length 33 is out of range 0-32 for IPv4" },
  { text: "::/129", message: "prefix length 129 is out of range 0-128 for IPv6" },
  { text: "10.0.0.0/1000", message: "prefix length 1000 is out of range 0-32 for IPv4" },
  { text: "10.0.0.0/", message: "the prefix length after '/' is missing" },
  { text: "10.0.0.0/x", message: 'prefix length "x" is not a number' },
  { text: "10.0.0.0/-1", message: 'prefix length "-1" is not a number' },
  { text: "10.0.0.0/ 8", message: 'prefix length " 8" is not a number' },
  { text: "10.0.0.0/8/8", message: 'prefix length "8/8" is not a number' },
  { text: "10.0.0.0/08", message: 'prefix length "08" has a leading zero' },
  { text: "256.0.0.0/8", message: '"256.0.0.0" is not an IPv4 or IPv6 address' },
  { text: "10.0.0/8", message: '"10.0.0" is not an IPv4 or IPv6 address' },
  { text: "010.0.0.0/8", message: '"010.0.0.0" is not an IPv4 or IPv6 address' },
  { text: " 10.0.0.0/8", message: '" 10.0.0.0" is not an IPv4 or IPv6 address' },
  { text: "/8", message: '"" is not an IPv4 or IPv6 address' },
  { text: "example.com", message: '"example.com" is not an IPv4 or IPv6 address' },
  { text: "[::1]/128", message: '"[::1]" is not an IPv4 or IPv6 address' },
  { text: ":::/0", message: '":::" is not an IPv4 or IPv6 address' },
  { text: "1::2::/64", message: '"1::2::" is not an IPv4 or IPv6 address' },
  { text: "1:2:3:4:5:6:7:8:9/128", message: "is not an IPv4 or IPv6 address" },
  { text: "12345::/16", message: '"12345::" is not an IPv4 or IPv6 address' },
  { text: "::ffff:1.2.3/128", message: "is not an IPv4 or IPv6 address" },
  { text: "::ffff:0:0/95", message: "did you mean ::fffe:0:0/95?" },
  { text: "fe80::1%eth0/64", message: "zone ids (%...) are not allowed" },
];

for (const c of invalidCidrs) {
  Deno.test(`parseCidr rejects ${JSON.stringify(c.text)} naming the value and the problem`, () => {
    const got = parseCidr(c.text);
    assert.equal(typeof got, "string", `accepted: ${JSON.stringify(got)}`);
    assert.ok((got as string).startsWith(JSON.stringify(c.text)), `does not name value: ${got}`);
    assert.ok((got as string).includes(c.message), `${got} lacks ${c.message}`);
  });
}

Deno.test("parseCidrList returns every prefix, or the first error", () => {
  assert.deepEqual(parseCidrList(["10.0.0.0/8", "::1"]), [cidr("10.0.0.0/8"), cidr("::1")]);
  assert.deepEqual(parseCidrList([]), []);
  assert.match(parseCidrList(["10.0.0.0/8", "10.0.0.1/8", "x"]) as string, /^"10\.0\.0\.1\/8"/);
});

for (
  const text of [
    "10.0.0.0/8",
    "0.0.0.0/0",
    "192.0.2.1/32",
    "::/0",
    "::1/128",
    "2001:db8::/32",
    "fe80::/10",
    "2001:0:0:1::/64",
    "2001:db8:0:1:1:1:1:1/128",
    "1::1:0:0:0/128",
    "::fffe:0:0/95",
  ]
) {
  Deno.test(`formatCidr writes ${text} back in canonical form`, () => {
    assert.equal(formatCidr(cidr(text)), text);
  });
}

Deno.test("formatCidr writes IPv4-mapped prefixes as IPv4", () => {
  assert.equal(formatCidr(cidr("::ffff:10.0.0.0/104")), "10.0.0.0/8");
});

const matching: { name: string; allow: string[]; deny?: string[]; ip: string; want: boolean }[] = [
  { name: "/0 admits any IPv4", allow: ["0.0.0.0/0"], ip: "8.8.8.8", want: true },
  { name: "/0 admits the top address", allow: ["0.0.0.0/0"], ip: "255.255.255.255", want: true },
  { name: "IPv4 /0 does not admit IPv6", allow: ["0.0.0.0/0"], ip: "2001:db8::1", want: false },
  { name: "::/0 admits any IPv6", allow: ["::/0"], ip: "2001:db8::1", want: true },
  { name: "::/0 does not admit IPv4", allow: ["::/0"], ip: "8.8.8.8", want: false },
  { name: "::/0 does not admit mapped IPv4", allow: ["::/0"], ip: "::ffff:8.8.8.8", want: false },
  { name: "/32 admits its address", allow: ["192.0.2.1/32"], ip: "192.0.2.1", want: true },
  { name: "/32 refuses its neighbour", allow: ["192.0.2.1/32"], ip: "192.0.2.2", want: false },
  { name: "/32 refuses the network", allow: ["192.0.2.1"], ip: "192.0.2.0", want: false },
  { name: "/128 admits its address", allow: ["2001:db8::1"], ip: "2001:db8::1", want: true },
  {
    name: "/128 admits its address in another spelling",
    allow: ["2001:db8::1/128"],
    ip: "2001:DB8:0:0:0:0:0:1",
    want: true,
  },
  { name: "/128 refuses its neighbour", allow: ["2001:db8::1"], ip: "2001:db8::2", want: false },
  { name: "/12 lower edge", allow: ["172.16.0.0/12"], ip: "172.16.0.0", want: true },
  { name: "/12 upper edge", allow: ["172.16.0.0/12"], ip: "172.31.255.255", want: true },
  { name: "/12 just below", allow: ["172.16.0.0/12"], ip: "172.15.255.255", want: false },
  { name: "/12 just above", allow: ["172.16.0.0/12"], ip: "172.32.0.0", want: false },
  { name: "/1 upper half", allow: ["128.0.0.0/1"], ip: "200.1.2.3", want: true },
  { name: "/1 lower half", allow: ["128.0.0.0/1"], ip: "127.255.255.255", want: false },
  { name: "IPv6 /1 upper half", allow: ["8000::/1"], ip: "ffff::1", want: true },
  { name: "IPv6 /1 lower half", allow: ["8000::/1"], ip: "7fff::1", want: false },
  {
    name: "/56 inside",
    allow: ["2001:db8:0:ff00::/56"],
    ip: "2001:db8:0:ffff:1::1",
    want: true,
  },
  { name: "/56 outside", allow: ["2001:db8:0:ff00::/56"], ip: "2001:db8:0:fe00::", want: false },
  { name: "/33 crosses a word", allow: ["2001:db8:8000::/33"], ip: "2001:db8:8001::", want: true },
  { name: "/33 other half", allow: ["2001:db8:8000::/33"], ip: "2001:db8:7fff::", want: false },
  { name: "mapped client as IPv4", allow: ["10.0.0.0/8"], ip: "::ffff:10.1.2.3", want: true },
  { name: "mapped client in hex form", allow: ["10.0.0.0/8"], ip: "::ffff:a01:203", want: true },
  { name: "mapped client outside", allow: ["10.0.0.0/8"], ip: "::ffff:11.1.2.3", want: false },
  {
    name: "mapped prefix, plain client",
    allow: ["::ffff:10.0.0.0/104"],
    ip: "10.9.9.9",
    want: true,
  },
  {
    name: "mapped prefix, mapped client",
    allow: ["::ffff:10.0.0.0/104"],
    ip: "::ffff:10.9.9.9",
    want: true,
  },
  {
    name: "deny wins over a broader allow",
    allow: ["10.0.0.0/8"],
    deny: ["10.1.0.0/16"],
    ip: "10.1.2.3",
    want: false,
  },
  {
    name: "deny leaves the rest of the allow",
    allow: ["10.0.0.0/8"],
    deny: ["10.1.0.0/16"],
    ip: "10.2.0.1",
    want: true,
  },
  {
    name: "deny wins over an exact allow",
    allow: ["127.0.0.1"],
    deny: ["0.0.0.0/0"],
    ip: "127.0.0.1",
    want: false,
  },
  {
    name: "IPv4 deny applies to mapped clients",
    allow: ["0.0.0.0/0"],
    deny: ["192.0.2.0/24"],
    ip: "::ffff:192.0.2.7",
    want: false,
  },
  {
    name: "IPv6 deny wins",
    allow: ["::/0"],
    deny: ["2001:db8::/32"],
    ip: "2001:db8:1::1",
    want: false,
  },
  { name: "empty allow list refuses all", allow: [], ip: "127.0.0.1", want: false },
  { name: "zone suffix ignored", allow: ["fe80::/10"], ip: "fe80::1%eth0", want: true },
  { name: "garbage refused", allow: ["0.0.0.0/0", "::/0"], ip: "not-an-ip", want: false },
  { name: "empty refused", allow: ["0.0.0.0/0", "::/0"], ip: "", want: false },
  { name: "address:port refused", allow: ["0.0.0.0/0", "::/0"], ip: "1.2.3.4:53", want: false },
  { name: "bracketed refused", allow: ["0.0.0.0/0", "::/0"], ip: "[::1]", want: false },
];

for (const c of matching) {
  Deno.test(`Acl: ${c.name} (${c.ip} → ${c.want ? "allowed" : "refused"})`, () => {
    const acl = new Acl(c.allow.map(cidr), (c.deny ?? []).map(cidr));
    assert.equal(acl.allows(c.ip), c.want);
  });
}

const defaults: [string, boolean][] = [
  ["127.0.0.1", true],
  ["127.255.255.254", true],
  ["::1", true],
  ["10.20.30.40", true],
  ["172.16.5.4", true],
  ["172.32.0.1", false],
  ["192.168.1.1", true],
  ["192.169.0.1", false],
  ["100.64.0.1", true],
  ["100.127.255.255", true],
  ["100.128.0.1", false],
  ["169.254.10.10", true],
  ["fc00::1", true],
  ["fd12:3456::1", true],
  ["fe80::1", true],
  ["febf::1", true],
  ["fec0::1", false],
  ["8.8.8.8", false],
  ["1.1.1.1", false],
  ["2606:4700:4700::1111", false],
  ["::ffff:192.168.1.1", true],
  ["::ffff:127.0.0.1", true],
  ["::ffff:8.8.8.8", false],
  ["0.0.0.0", false],
  ["::", false],
];

for (const [ip, want] of defaults) {
  Deno.test(`the default allow list ${want ? "admits" : "refuses"} ${ip}`, () => {
    assert.equal(new Acl(DEFAULT_ALLOW, []).allows(ip), want);
  });
}

Deno.test("the default allow list is the documented set of non-public ranges", () => {
  assert.deepEqual(DEFAULT_ALLOW.map(formatCidr), [...DEFAULT_ALLOW_TEXT]);
  assert.ok(Object.isFrozen(DEFAULT_ALLOW));
  assert.equal(new Acl(DEFAULT_ALLOW, []).allowsEveryone(), false);
});

Deno.test("allowsEveryone flags an allow list with 0.0.0.0/0 or ::/0, whatever is denied", () => {
  assert.equal(new Acl([cidr("0.0.0.0/0")], []).allowsEveryone(), true);
  assert.equal(new Acl([cidr("::/0")], []).allowsEveryone(), true);
  assert.equal(new Acl([cidr("::ffff:0:0/96")], []).allowsEveryone(), true);
  assert.equal(new Acl([cidr("0.0.0.0/0")], [cidr("10.0.0.0/8")]).allowsEveryone(), true);
  assert.equal(new Acl([cidr("0.0.0.0/1"), cidr("128.0.0.0/1")], []).allowsEveryone(), false);
  assert.equal(new Acl([], []).allowsEveryone(), false);
});

Deno.test("an Acl keeps its own copy of the lists it was given", () => {
  const allow = [cidr("10.0.0.0/8")];
  const acl = new Acl(allow, []);
  allow.push(cidr("0.0.0.0/0"));
  assert.equal(acl.allows("8.8.8.8"), false);
  assert.equal(acl.allow.length, 1);
});

const publicCases: [string, boolean][] = [
  ["0.0.0.0", true],
  ["::", true],
  ["::ffff:0.0.0.0", true],
  ["8.8.8.8", true],
  ["203.0.113.5", true],
  ["2606:4700:4700::1111", true],
  ["127.0.0.1", false],
  ["::1", false],
  ["10.0.0.1", false],
  ["192.168.0.1", false],
  ["100.64.1.1", false],
  ["fd00::53", false],
  ["fe80::1", false],
  ["::ffff:127.0.0.1", false],
  ["not-an-ip", false],
];

for (const [ip, want] of publicCases) {
  Deno.test(`isPublicAddress(${JSON.stringify(ip)}) is ${want}`, () => {
    assert.equal(isPublicAddress(ip), want);
  });
}
