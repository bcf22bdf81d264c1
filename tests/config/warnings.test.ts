import assert from "node:assert/strict";
import {
  configWarnings,
  formatConfigError,
  isConfigError,
  parseConfig,
} from "../../lib/config/load.ts";
import {
  BASE_DIR,
  CONFIG_PATH,
  fakeFiles,
  LISTENER,
  MINIMAL,
  TLS_FILES,
  UPSTREAM,
} from "./helpers.ts";

interface Case {
  name: string;
  toml: string;
  /** One entry per expected warning, in order: a substring of that line. */
  want: string[];
}

const OPEN = `[access]\nallow = ["0.0.0.0/0", "::/0"]\n`;
const listen = (url: string, extra = "") => `[[listeners]]\nurl = "${url}"\n${extra}`;
const CERT = `cert_file = "cert.pem"\nkey_file = "key.pem"\n`;

const cases: Case[] = [
  { name: "minimal config", toml: MINIMAL, want: [] },
  {
    name: "loopback listener with an open ACL is fine",
    toml: MINIMAL + OPEN,
    want: [],
  },
  {
    name: "private-address listener with an open ACL is fine",
    toml: listen("udp://192.168.1.2:53") + listen("tcp://[fd00::2]:53") + UPSTREAM + OPEN,
    want: [],
  },
  {
    name: "wildcard listener with the default ACL is fine",
    toml: listen("udp://0.0.0.0:53") + listen("udp://[::]:53") + UPSTREAM,
    want: [],
  },
  {
    name: "wildcard IPv4 listener, open ACL, no rate limit",
    toml: listen("udp://0.0.0.0:53") + UPSTREAM + OPEN,
    want: [
      `listeners[0].url = "udp://0.0.0.0:53": open resolver: it listens on every interface and ` +
      `access.allow admits everyone (0.0.0.0/0, ::/0), so anyone on the internet can use it`,
      `listeners[0].url = "udp://0.0.0.0:53": rate limiting is off (rate_limit.qps = 0) on an ` +
      `open resolver; set [rate_limit] qps`,
    ],
  },
  {
    name: "open resolver with rate limiting on warns once",
    toml: listen("udp://[::]:53") + UPSTREAM + `[access]\nallow = ["::/0"]\n` +
      `[rate_limit]\nqps = 20\n`,
    want: [`listeners[0].url = "udp://[::]:53": open resolver: it listens on every interface`],
  },
  {
    name: "unspecified IPv6 written longhand",
    toml: listen("tcp://[0:0:0:0:0:0:0:0]:53") + UPSTREAM + `[access]\nallow = ["0.0.0.0/0"]\n` +
      `[rate_limit]\nqps = 1\n`,
    want: ["every interface and access.allow admits everyone (0.0.0.0/0)"],
  },
  {
    name: "public address listener, open ACL",
    toml: listen("udp://203.0.113.5:53") + UPSTREAM + OPEN,
    want: ["open resolver: it listens on a public address", "rate limiting is off"],
  },
  {
    name: "public IPv6 listener, open ACL",
    toml: listen("tcp://[2001:db8::53]:53") + UPSTREAM + OPEN + `[rate_limit]\nqps = 5\n`,
    want: [`listeners[0].url = "tcp://[2001:db8::53]:53": open resolver: it listens on a public`],
  },
  {
    name: "public listener with a restricted ACL is fine",
    toml: listen("udp://203.0.113.5:53") + UPSTREAM + `[access]\nallow = ["198.51.100.0/24"]\n`,
    want: [],
  },
  {
    name: "a /0 that is also denied is not open",
    toml: listen("udp://0.0.0.0:53") + UPSTREAM +
      `[access]\nallow = ["0.0.0.0/0", "10.0.0.0/8"]\ndeny = ["0.0.0.0/0"]\n`,
    want: [],
  },
  {
    name: "per-listener access opens one listener only",
    toml: listen("udp://0.0.0.0:53") +
      listen("udp://0.0.0.0:5353", `[listeners.access]\nallow = ["0.0.0.0/0"]\n`) + UPSTREAM,
    want: [
      `listeners[1].url = "udp://0.0.0.0:5353": open resolver: it listens on every interface ` +
      `and listeners[1].access.allow admits everyone (0.0.0.0/0)`,
      `listeners[1].url = "udp://0.0.0.0:5353": rate limiting is off`,
    ],
  },
  {
    name: "per-listener access closes what [access] opens",
    toml: listen("udp://0.0.0.0:53", `[listeners.access]\nallow = ["10.0.0.0/8"]\n`) +
      UPSTREAM + OPEN,
    want: [],
  },
  {
    name: "padding off with encrypted upstreams",
    toml: LISTENER + UPSTREAM + `[[upstreams]]\nurl = "udp://192.168.1.1"\n` +
      `[[upstreams]]\nurl = "https://1.0.0.1/dns-query"\ntls_name = "cloudflare-dns.com"\n` +
      `[forwarding]\npadding = false\n`,
    want: [
      `forwarding.padding = false: queries to encrypted upstreams (tls://1.1.1.1, ` +
      `https://1.0.0.1/dns-query) are not padded, so their sizes can reveal the names looked ` +
      `up (RFC 8467)`,
    ],
  },
  {
    name: "padding off with plain-DNS upstreams only is fine",
    toml: LISTENER + `[[upstreams]]\nurl = "udp://192.168.1.1"\n[forwarding]\npadding = false\n`,
    want: [],
  },
  {
    name: "plain-HTTP DoH on every interface without trusted proxies",
    toml: listen("http://0.0.0.0:8080/dns-query") + UPSTREAM,
    want: [
      `listeners[0].url = "http://0.0.0.0:8080/dns-query": plain-HTTP DoH on every interface: ` +
      `queries and answers cross the network unencrypted`,
      `listeners[0].url = "http://0.0.0.0:8080/dns-query": no trusted_proxies, so every query ` +
      `seems to come from the load balancer`,
    ],
  },
  {
    name: "plain-HTTP DoH on loopback behind a trusted proxy is fine",
    toml: listen("http://127.0.0.1:8080", `trusted_proxies = ["127.0.0.1"]\n`) + UPSTREAM,
    want: [],
  },
  {
    name: "https without trusted proxies is fine",
    toml: listen("https://127.0.0.1:443", CERT) + UPSTREAM,
    want: [],
  },
  {
    name: "trusted_proxies that trust everyone",
    toml: listen(
      "https://127.0.0.1:443",
      CERT + `trusted_proxies = ["10.0.0.0/8", "::/0"]\n` +
        `client_header = "X-Real-IP"\n`,
    ) + UPSTREAM,
    want: [
      `listeners[0].trusted_proxies includes ::/0: any client may claim any address in ` +
      `x-real-ip, escaping access rules and rate limits`,
    ],
  },
  {
    name: "admin on every interface",
    toml: MINIMAL + `[admin]\naddress = "0.0.0.0:9153"\n`,
    want: [
      `admin.address = "0.0.0.0:9153": the admin endpoint (metrics, health) listens on every ` +
      `interface`,
    ],
  },
  {
    name: "admin on a public IPv6 address",
    toml: MINIMAL + `[admin]\naddress = "[2001:db8::1]:9153"\n`,
    want: [
      `admin.address = "[2001:db8::1]:9153": the admin endpoint (metrics, health) listens on ` +
      `a public address`,
    ],
  },
  {
    name: "admin on loopback or a private network is fine",
    toml: MINIMAL + `[admin]\naddress = "10.1.2.3:9153"\n`,
    want: [],
  },
  {
    name: "a name in allow_clients that nothing can give a client",
    toml: MINIMAL + `[access]\nallow_clients = ["alice", "office"]\n` +
      `[[clients]]\nname = "office"\nnetworks = ["10.1.0.0/16"]\n`,
    want: [
      `access.allow_clients names "alice", but no [[clients]] entry has that name and no ` +
      `listener asks for client certificates, so it never matches`,
    ],
  },
  {
    name: "names from client certificates may be anything",
    toml: `[[listeners]]\nurl = "tls://127.0.0.1:853"\ncert_file = "cert.pem"\n` +
      `key_file = "key.pem"\nclient_auth = "optional"\nclient_ca_file = "cert.pem"\n` +
      `[listeners.access]\ndeny_clients = ["mallory"]\n` + UPSTREAM,
    want: [],
  },
  {
    name: "trusted_proxies of everyone on a PROXY protocol listener",
    toml: `[[listeners]]\nurl = "tcp://127.0.0.1:53"\nproxy_protocol = true\n` +
      `trusted_proxies = ["0.0.0.0/0"]\n` + UPSTREAM,
    want: [
      `listeners[0].trusted_proxies includes 0.0.0.0/0: any client may claim any address in ` +
      `its PROXY protocol header`,
    ],
  },
  {
    name: "warnings come in config order",
    toml: listen("udp://0.0.0.0:53") + listen("udp://127.0.0.1:53") +
      listen("tcp://198.51.100.1:53") + UPSTREAM + OPEN +
      `[forwarding]\npadding = false\n[admin]\naddress = "[::]:9153"\n`,
    want: [
      "listeners[0].url",
      "listeners[0].url",
      "listeners[2].url",
      "listeners[2].url",
      "forwarding.padding",
      "admin.address",
    ],
  },
];

for (const c of cases) {
  Deno.test(`configWarnings: ${c.name}`, async () => {
    const config = await parseConfig(c.toml, {
      path: CONFIG_PATH,
      baseDir: BASE_DIR,
      readFile: fakeFiles(TLS_FILES),
    });
    if (isConfigError(config)) assert.fail(formatConfigError(config));
    const got = configWarnings(config);
    assert.equal(got.length, c.want.length, got.join("\n"));
    got.forEach((line, i) => {
      assert.ok(line.includes(c.want[i]), `${line}\n  lacks: ${c.want[i]}`);
      assert.ok(!line.includes("\n"), line);
    });
  });
}
