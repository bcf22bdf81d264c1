import assert from "node:assert/strict";
import { ipKey, isIPv4, isIPv6 } from "../../lib/config/ip.ts";
import { type EndpointRules, parseEndpoint } from "../../lib/config/url.ts";

const ipCases: { text: string; v4: boolean; v6: boolean }[] = [
  { text: "127.0.0.1", v4: true, v6: false },
  { text: "0.0.0.0", v4: true, v6: false },
  { text: "255.255.255.255", v4: true, v6: false },
  { text: "256.1.1.1", v4: false, v6: false },
  { text: "1.1.1", v4: false, v6: false },
  { text: "1.1.1.1.1", v4: false, v6: false },
  { text: "01.1.1.1", v4: false, v6: false },
  { text: "1.1.1.", v4: false, v6: false },
  { text: "1..1.1", v4: false, v6: false },
  { text: "a.b.c.d", v4: false, v6: false },
  { text: " 1.1.1.1", v4: false, v6: false },
  { text: "::", v4: false, v6: true },
  { text: "::1", v4: false, v6: true },
  { text: "1::", v4: false, v6: true },
  { text: "2606:4700:4700::1111", v4: false, v6: true },
  { text: "2001:db8:0:0:0:0:0:1", v4: false, v6: true },
  { text: "1:2:3:4:5:6:7::", v4: false, v6: true },
  { text: "::2:3:4:5:6:7:8", v4: false, v6: true },
  { text: "FE80::ABCD", v4: false, v6: true },
  { text: "::ffff:192.0.2.1", v4: false, v6: true },
  { text: "64:ff9b::192.0.2.1", v4: false, v6: true },
  { text: "1:2:3:4:5:6:1.2.3.4", v4: false, v6: true },
  { text: "1:2:3:4:5:6:7:1.2.3.4", v4: false, v6: false },
  { text: "1.2.3.4::", v4: false, v6: false },
  { text: "::ffff:1.2.3", v4: false, v6: false },
  { text: "1:2:3:4:5:6:7:8:9", v4: false, v6: false },
  { text: "1:2:3:4:5:6:7", v4: false, v6: false },
  { text: "1:2:3:4:5:6:7:8::", v4: false, v6: false },
  { text: ":::", v4: false, v6: false },
  { text: "::1::", v4: false, v6: false },
  { text: ":1::2", v4: false, v6: false },
  { text: "1::2:", v4: false, v6: false },
  { text: "12345::", v4: false, v6: false },
  { text: "g::1", v4: false, v6: false },
  { text: "fe80::1%eth0", v4: false, v6: false },
  { text: "[::1]", v4: false, v6: false },
  { text: "", v4: false, v6: false },
];

for (const c of ipCases) {
  Deno.test(`IP literal ${JSON.stringify(c.text)}: v4=${c.v4} v6=${c.v6}`, () => {
    assert.equal(isIPv4(c.text), c.v4);
    assert.equal(isIPv6(c.text), c.v6);
  });
}

const sameAddress: [string, string][] = [
  ["::1", "0:0:0:0:0:0:0:1"],
  ["2606:4700::1111", "2606:4700:0:0:0:0:0:1111"],
  ["::ffff:1.2.3.4", "::ffff:102:304"],
  ["FE80::1", "fe80::0001"],
];

for (const [a, b] of sameAddress) {
  Deno.test(`ipKey treats ${a} and ${b} as one address`, () => {
    assert.equal(ipKey(a), ipKey(b));
  });
}

const upstreamRules: EndpointRules = {
  schemes: ["tls"],
  moreSchemesLater: true,
  defaultPort: 853,
  example: "tls://1.1.1.1:853",
  hostnameHint: "use an IP",
};

const urlCases: { url: string; want: string }[] = [
  { url: "tls://1.1.1.1", want: "tls 1.1.1.1 853" },
  { url: "TLS://1.1.1.1:1", want: "tls 1.1.1.1 1" },
  { url: "tls://[::1]", want: "tls ::1 853" },
  { url: "tls://[::1]:65535", want: "tls ::1 65535" },
  { url: "tls://1.1.1.1:00853", want: "tls 1.1.1.1 853" },
  { url: "tls://1.1.1.1:65536", want: "port must be 1-65535" },
  { url: "tls://1.1.1.1:-1", want: `port "-1" is not a number` },
  { url: "tls://1.1.1.1:8 53", want: `port "8 53" is not a number` },
  { url: "tls://", want: "missing IP address" },
  { url: "tls://:853", want: "missing IP address" },
  { url: "tls://[::1", want: `missing "]"` },
  { url: "tls://[::1]853", want: `unexpected "853" after "]"` },
  { url: "tls://[1.1.1.1]", want: `"1.1.1.1" is not a valid IPv6 address` },
  { url: "tls://[::1]/", want: `not allowed (found "/")` },
  { url: "tls://1.1.1.1#frag", want: `not allowed (found "#frag")` },
  { url: "tls://user:pw@[::1]:853", want: "user info" },
  { url: "tls://one.one.one.one", want: `"one.one.one.one" is a hostname; use an IP` },
  { url: "tls://1.1.1.1.1", want: "is not a valid IPv4 address" },
  { url: "tls://1.1 .1.1", want: "is not a valid IP address" },
  { url: "tls:1.1.1.1", want: `expected a URL like "tls://1.1.1.1:853"` },
  { url: "dot://1.1.1.1", want: `scheme "dot" is not supported yet; supported: tls` },
  { url: "tls://fe80::1:853", want: `e.g. "tls://[fe80::1]:853"` },
];

for (const c of urlCases) {
  Deno.test(`parseEndpoint(${JSON.stringify(c.url)})`, () => {
    const r = parseEndpoint(c.url, upstreamRules);
    const got = r.ok ? `${r.endpoint.scheme} ${r.endpoint.hostname} ${r.endpoint.port}` : r.message;
    assert.ok(got.includes(c.want), got);
  });
}
