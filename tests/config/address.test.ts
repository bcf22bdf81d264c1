import assert from "node:assert/strict";
import { ipKey, isIPv4, isIPv6 } from "../../lib/net/ip.ts";
import {
  type EndpointRules,
  hostnameProblem,
  parseEndpoint,
  parseHostPort,
} from "../../lib/config/url.ts";

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

const webRules: EndpointRules = {
  schemes: ["tls", "https", "udp"],
  moreSchemesLater: false,
  defaultPorts: { tls: 853, https: 443, udp: 53 },
  pathSchemes: ["https"],
  nameSchemes: ["tls", "https"],
  example: "https://dns.example/dns-query",
  hostnameHint: "udp needs an IP",
};

const webCases: { url: string; want: string }[] = [
  { url: "https://dns.example", want: "https dns.example name 443 -" },
  { url: "https://DNS.Example.:8443/q", want: "https dns.example name 8443 /q" },
  { url: "https://[2606:4700::1111]/dns-query", want: "https 2606:4700::1111 ip 443 /dns-query" },
  { url: "https://1.1.1.1/", want: "https 1.1.1.1 ip 443 /" },
  { url: "https://x.example/a/b%2Fc;v=1", want: "https x.example name 443 /a/b%2Fc;v=1" },
  { url: "tls://dns.quad9.net", want: "tls dns.quad9.net name 853 -" },
  { url: "udp://192.0.2.1", want: "udp 192.0.2.1 ip 53 -" },
  { url: "udp://resolver.example", want: `"resolver.example" is a hostname; udp needs an IP` },
  { url: "tls://dns.quad9.net/x", want: `paths, queries and fragments are not allowed` },
  { url: "https://x.example/q?a", want: `only a path (found "?a")` },
  { url: "https://x.example?a", want: `only a path (found "?a")` },
  { url: "https://x.example/q#f", want: `only a path (found "#f")` },
  { url: "https://x.example/a b", want: `contains " "` },
  { url: "https://x.example/%zz", want: `"%" that is not followed by two hex digits` },
  { url: "https://x.example/dns-query{?dns}", want: `"{?dns}" is a URI template` },
  { url: "https://", want: "missing host name or IP address" },
  { url: "https://x_y.example", want: `label "x_y"` },
  { url: "https://a..b", want: "empty label" },
];

for (const c of webCases) {
  Deno.test(`parseEndpoint with paths and names (${JSON.stringify(c.url)})`, () => {
    const r = parseEndpoint(c.url, webRules);
    const got = r.ok
      ? [
        r.endpoint.scheme,
        r.endpoint.hostname,
        r.endpoint.hostnameIsIp ? "ip" : "name",
        r.endpoint.port,
        r.endpoint.path ?? "-",
      ].join(" ")
      : r.message;
    assert.ok(got.includes(c.want), got);
  });
}

const hostPortCases: { text: string; want: string }[] = [
  { text: "9.9.9.9", want: "9.9.9.9 53" },
  { text: "9.9.9.9:5353", want: "9.9.9.9 5353" },
  { text: "[2620:fe::fe]", want: "2620:fe::fe 53" },
  { text: "[2620:fe::fe]:853", want: "2620:fe::fe 853" },
  { text: "2620:fe::fe", want: `IPv6 addresses must be in brackets, e.g. "[2620:fe::fe]"` },
  { text: "::1:53", want: `e.g. "[::1]:53"` },
  { text: "dns.quad9.net", want: `"dns.quad9.net" is a hostname; IPs only` },
  { text: "udp://9.9.9.9", want: `write the address without a scheme, e.g. "9.9.9.9:53"` },
  { text: "9.9.9.9:", want: `port is missing after ":"` },
  { text: "9.9.9.9:65536", want: "port must be 1-65535" },
  { text: "", want: "missing IP address" },
];

for (const c of hostPortCases) {
  Deno.test(`parseHostPort(${JSON.stringify(c.text)})`, () => {
    const r = parseHostPort(c.text, {
      defaultPort: 53,
      example: "9.9.9.9:53",
      hostnameHint: "IPs only",
    });
    const got = r.ok ? `${r.address.hostname} ${r.address.port}` : r.message;
    assert.ok(got.includes(c.want), got);
  });
}

Deno.test("parseHostPort without a default port requires one", () => {
  const r = parseHostPort("127.0.0.1", { example: "127.0.0.1:9153", hostnameHint: "" });
  assert.deepEqual(r, { ok: false, message: `port is required, e.g. "127.0.0.1:9153"` });
});

const names: { name: string; problem: string | null }[] = [
  { name: "dns.quad9.net", problem: null },
  { name: "dns.quad9.net.", problem: null },
  { name: "xn--bcher-kva.example", problem: null },
  { name: "a-b.c0", problem: null },
  { name: "localhost", problem: "a single-label name cannot be looked up" },
  { name: "a..b", problem: "empty label" },
  { name: ".a.b", problem: "empty label" },
  { name: "a.b..", problem: "empty label" },
  { name: "-a.b", problem: `label "-a" starts or ends with "-"` },
  { name: "a-.b", problem: `label "a-" starts or ends with "-"` },
  { name: "a_b.c", problem: `label "a_b" has characters other than` },
  { name: "a.123", problem: "the last label is all digits" },
  { name: `${"a".repeat(64)}.b`, problem: "longer than 63 characters" },
  { name: `${"a.".repeat(127)}bc`, problem: "longer than 253 characters" },
];

for (const c of names) {
  Deno.test(`hostnameProblem(${JSON.stringify(c.name.slice(0, 30))})`, () => {
    const got = hostnameProblem(c.name);
    if (c.problem === null) assert.equal(got, null);
    else assert.ok(got?.includes(c.problem), String(got));
  });
}
