import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  type Config,
  type ConfigError,
  configWarnings,
  formatConfigError,
  isConfigError,
  KNOWN_KEYS,
  loadConfig,
  parseConfig,
} from "../../lib/config/load.ts";
import {
  DEFAULT_ACCESS,
  DEFAULT_CACHE,
  DEFAULT_FORWARDING,
  DEFAULT_LIMITS,
  DEFAULT_LOG,
  DEFAULT_POLICY,
  DEFAULT_QUERY_LOG,
  DEFAULT_RATE_LIMIT,
  DEFAULT_SERVER,
  type ListenerConfig,
  type UpstreamConfig,
} from "../../lib/config/schema.ts";
import { DEFAULT_ALLOW, parseCidr } from "../../lib/policy/acl.ts";
import {
  BASE_DIR,
  CONFIG_PATH,
  fakeFiles,
  fixture,
  KEY,
  LISTENER,
  MINIMAL,
  PEM,
  TLS_FILES,
  TLS_LISTENER,
  UPSTREAM,
} from "./helpers.ts";

interface ValidCase {
  name: string;
  toml: string;
  files?: Record<string, string>;
  check: (c: Config) => void;
}

const upstream = (fields: Partial<UpstreamConfig>): UpstreamConfig =>
  ({
    url: "tls://1.1.1.1",
    protocol: "tls",
    hostname: "1.1.1.1",
    hostnameIsIp: true,
    port: 853,
    tlsName: "cloudflare-dns.com",
    caCerts: [],
    group: "default",
    spkiPins: [],
    ...fields,
  }) as UpstreamConfig;

/** A prefix that must parse (test fixtures). */
const cidr = (text: string) => {
  const c = parseCidr(text);
  if (typeof c === "string") throw new Error(c);
  return c;
};

const valid: ValidCase[] = [
  {
    name: "minimal config gets every default",
    toml: MINIMAL,
    check: (c) => {
      assert.deepEqual(c.listeners, [
        {
          url: "udp://127.0.0.1:5053",
          protocol: "udp",
          hostname: "127.0.0.1",
          port: 5053,
          proxyProtocol: false,
          trustedProxies: [],
        },
      ]);
      assert.deepEqual(c.upstreams, [upstream({})]);
      assert.deepEqual(c.server, DEFAULT_SERVER);
      assert.deepEqual(c.forwarding, DEFAULT_FORWARDING);
      assert.deepEqual(c.limits, DEFAULT_LIMITS);
      assert.deepEqual(c.log, DEFAULT_LOG);
      assert.deepEqual(c.cache, DEFAULT_CACHE);
      assert.deepEqual(c.access, DEFAULT_ACCESS);
      assert.deepEqual(c.access.allow, [...DEFAULT_ALLOW]);
      assert.deepEqual(c.rateLimit, DEFAULT_RATE_LIMIT);
      assert.deepEqual(c.policy, DEFAULT_POLICY);
      assert.equal(c.admin, null);
      assert.deepEqual(c.queryLog, DEFAULT_QUERY_LOG);
      assert.equal(c.path, CONFIG_PATH);
    },
  },
  {
    name: "defaults are fresh copies, never the frozen constants",
    toml: MINIMAL,
    check: (c) => {
      c.access.allow.push(cidr("192.0.2.0/24"));
      c.access.deny.push(cidr("192.0.2.1"));
      c.forwarding.bootstrap.push({ hostname: "192.0.2.53", port: 53 });
      assert.equal(DEFAULT_ACCESS.allow.length, DEFAULT_ALLOW.length);
      assert.equal(DEFAULT_ACCESS.deny.length, 0);
      assert.equal(DEFAULT_FORWARDING.bootstrap.length, 0);
    },
  },
  {
    name: "every key set",
    toml: MINIMAL + `
[server]
query_timeout = "10s"
udp_max_size = 4096
tcp_idle_timeout = "1m"
shutdown_grace = "500ms"
udp_rescan_interval = "0s"
[forwarding]
attempt_timeout = "1.5s"
connect_timeout = "750ms"
idle_timeout = "1m30s"
connections_per_upstream = 64
max_in_flight_per_connection = 65535
failure_backoff = "250ms"
max_failure_backoff = "1h"
failure_threshold = 5
strategy = "round_robin"
bootstrap = ["9.9.9.9", "[2620:fe::fe]:5353", "[::ffff:192.0.2.1]"]
padding = false
ecs = "keep"
[log]
level = "debug"
format = "json"
[cache]
enabled = true
max_entries = 50_000_000
max_memory = "2GiB"
min_ttl = "30s"
max_ttl = "1d12h"
max_negative_ttl = "0s"
servfail_ttl = "5m"
serve_stale = false
stale_max_age = "3d"
stale_answer_after = "0s"
prefetch = false
[access]
allow = ["192.0.2.0/24", "2001:db8::/32"]
deny = ["192.0.2.128/25"]
allow_clients = ["alice", "Bob Smith"]
deny_clients = ["mallory"]
action = "drop"
[rate_limit]
qps = 20
burst = 100
ipv4_prefix = 32
ipv6_prefix = 128
action = "refuse"
max_buckets = 1_000
slip = 3
errors_qps = 5
[policy]
any_queries = "forward"
non_recursive = "forward"
chaos_identity = "dns1.example"
[admin]
address = "127.0.0.1:9153"
[query_log]
enabled = true
sink = "file"
path = "log/queries.log"
format = "text"
[[clients]]
name = "office"
networks = ["192.0.2.0/24", "2001:db8:1::/48"]
qps = 2.5
burst = 7
[[clients]]
name = "alice"
`,
    check: (c) => {
      assert.deepEqual(c.clients, [
        { name: "office", networks: ["192.0.2.0/24", "2001:db8:1::/48"], qps: 2.5, burst: 7 },
        { name: "alice", networks: [], qps: 0, burst: 0 },
      ]);
      assert.deepEqual(c.server, {
        udpMaxSize: 4096,
        tcpIdleTimeoutMs: 60_000,
        shutdownGraceMs: 500,
        queryTimeoutMs: 10_000,
        udpRescanIntervalMs: 0,
      });
      assert.deepEqual(c.forwarding, {
        queryTimeoutMs: 10_000,
        attemptTimeoutMs: 1_500,
        connectTimeoutMs: 750,
        idleTimeoutMs: 90_000,
        connectionsPerUpstream: 64,
        maxInFlightPerConnection: 65535,
        failureBackoffMs: 250,
        failureThreshold: 5,
        maxFailureBackoffMs: 3_600_000,
        strategy: "round_robin",
        bootstrap: [
          { hostname: "9.9.9.9", port: 53 },
          { hostname: "2620:fe::fe", port: 5353 },
          { hostname: "::ffff:192.0.2.1", port: 53 },
        ],
        padding: false,
        ecs: "keep",
      });
      assert.deepEqual(c.log, { level: "debug", format: "json" });
      assert.deepEqual(c.cache, {
        enabled: true,
        maxEntries: 50_000_000,
        maxBytes: 2 * 1024 ** 3,
        minTtl: 30,
        maxTtl: 129_600,
        maxNegativeTtl: 0,
        servfailTtl: 300,
        serveStale: false,
        staleMaxAge: 259_200,
        staleAnswerAfterMs: 0,
        prefetch: false,
      });
      assert.deepEqual(c.access, {
        allow: [cidr("192.0.2.0/24"), cidr("2001:db8::/32")],
        deny: [cidr("192.0.2.128/25")],
        allowClients: ["alice", "Bob Smith"],
        denyClients: ["mallory"],
        action: "drop",
      });
      assert.deepEqual(c.rateLimit, {
        qps: 20,
        burst: 100,
        ipv4Prefix: 32,
        ipv6Prefix: 128,
        action: "refuse",
        maxBuckets: 1_000,
        slip: 3,
        errorsQps: 5,
      });
      assert.deepEqual(c.policy, {
        anyQueries: "forward",
        nonRecursive: "forward",
        chaosIdentity: "dns1.example",
      });
      assert.deepEqual(c.admin, { hostname: "127.0.0.1", port: 9153 });
      assert.deepEqual(c.queryLog, {
        enabled: true,
        sink: "file",
        path: "/etc/dotproxy/log/queries.log",
        format: "text",
      });
    },
  },
  {
    name: "range minimums are accepted",
    toml: MINIMAL +
      `[server]\nudp_max_size = 512\n[forwarding]\nconnections_per_upstream = 1\n` +
      `max_in_flight_per_connection = 1\nattempt_timeout = "5s"\n`,
    check: (c) => {
      assert.equal(c.server.udpMaxSize, 512);
      assert.equal(c.forwarding.connectionsPerUpstream, 1);
      assert.equal(c.forwarding.maxInFlightPerConnection, 1);
      assert.equal(c.forwarding.attemptTimeoutMs, c.forwarding.queryTimeoutMs);
    },
  },
  {
    name: "IPv6 and wildcard listeners, same address on udp and tcp",
    toml: `
[[listeners]]
url = "udp://[::1]:53"
[[listeners]]
url = "tcp://[::1]:53"
[[listeners]]
url = "udp://0.0.0.0:5353"
[[listeners]]
url = "UDP://[::]:65535"
` + UPSTREAM,
    check: (c) => {
      const brief = (l: ListenerConfig) => `${l.protocol} ${l.hostname} ${l.port}`;
      assert.deepEqual(c.listeners.map(brief), [
        "udp ::1 53",
        "tcp ::1 53",
        "udp 0.0.0.0 5353",
        "udp :: 65535",
      ]);
    },
  },
  {
    name: "upstream forms: default port, explicit port, IPv6, embedded IPv4, IP tls_name",
    toml: LISTENER + `
[[upstreams]]
url = "tls://1.1.1.1"
tls_name = "cloudflare-dns.com"
[[upstreams]]
url = "tls://9.9.9.9:8853"
tls_name = "dns.quad9.net"
[[upstreams]]
url = "tls://[2606:4700:4700::1111]"
tls_name = "cloudflare-dns.com"
[[upstreams]]
url = "tls://[::ffff:1.0.0.1]:853"
tls_name = "1.0.0.1"
`,
    check: (c) => {
      assert.deepEqual(c.upstreams, [
        upstream({}),
        upstream({
          url: "tls://9.9.9.9:8853",
          hostname: "9.9.9.9",
          port: 8853,
          tlsName: "dns.quad9.net",
        }),
        upstream({ url: "tls://[2606:4700:4700::1111]", hostname: "2606:4700:4700::1111" }),
        upstream({
          url: "tls://[::ffff:1.0.0.1]:853",
          hostname: "::ffff:1.0.0.1",
          tlsName: "1.0.0.1",
        }),
      ]);
    },
  },
  {
    name: "ca_file relative to baseDir, split into certificates",
    toml: LISTENER + UPSTREAM + `ca_file = "certs/private-ca.pem"\n`,
    files: { "/etc/dotproxy/certs/private-ca.pem": `# two roots\n${PEM}\n\n${PEM}\r\n` },
    check: (c) => {
      assert.equal(c.upstreams[0].caFile, "/etc/dotproxy/certs/private-ca.pem");
      assert.deepEqual(c.upstreams[0].caCerts, [`${PEM}\n`, `${PEM}\n`]);
    },
  },
  {
    name: "absolute ca_file kept, shared file used by two upstreams",
    toml: LISTENER + UPSTREAM + `ca_file = "/srv/ca.pem"\n` + UPSTREAM +
      `ca_file = "/srv/ca.pem"\n`,
    files: { "/srv/ca.pem": PEM },
    check: (c) => {
      assert.deepEqual(c.upstreams.map((u) => u.caFile), ["/srv/ca.pem", "/srv/ca.pem"]);
      assert.deepEqual(c.upstreams.map((u) => u.caCerts.length), [1, 1]);
    },
  },
  {
    name: "inline tables and arrays work like [[tables]]",
    toml: `listeners = [{ url = "tcp://127.0.0.1:53" }]\n` +
      `upstreams = [{ url = "tls://1.1.1.1", tls_name = "cloudflare-dns.com" }]\n` +
      `log = { level = "error" }\n`,
    check: (c) => {
      assert.equal(c.listeners[0].protocol, "tcp");
      assert.equal(c.upstreams.length, 1);
      assert.equal(c.log.level, "error");
    },
  },
  {
    name: "empty sections keep defaults",
    toml: MINIMAL +
      `[server]\n[forwarding]\n[log]\n[cache]\n[access]\n[rate_limit]\n[policy]\n[query_log]\n`,
    check: (c) => {
      assert.deepEqual(c.server, DEFAULT_SERVER);
      assert.deepEqual(c.forwarding, DEFAULT_FORWARDING);
      assert.deepEqual(c.cache, DEFAULT_CACHE);
      assert.deepEqual(c.access, DEFAULT_ACCESS);
      assert.deepEqual(c.rateLimit, DEFAULT_RATE_LIMIT);
      assert.deepEqual(c.policy, DEFAULT_POLICY);
      assert.deepEqual(c.queryLog, DEFAULT_QUERY_LOG);
      assert.equal(c.admin, null);
    },
  },

  // --- listeners: every protocol ---
  {
    name: "tls listener reads cert_file and key_file relative to the config",
    toml: `[[listeners]]\nurl = "tls://127.0.0.1:8853"\ncert_file = "cert.pem"\n` +
      `key_file = "/keys/key.pem"\n` + UPSTREAM,
    files: { "/etc/dotproxy/cert.pem": `${PEM}\n${PEM}\n`, "/keys/key.pem": `# key\n${KEY}\n` },
    check: (c) => {
      assert.deepEqual(c.listeners[0], {
        url: "tls://127.0.0.1:8853",
        protocol: "tls",
        hostname: "127.0.0.1",
        port: 8853,
        certFile: "/etc/dotproxy/cert.pem",
        keyFile: "/keys/key.pem",
        cert: `${PEM}\n${PEM}\n`,
        key: `${KEY}\n`,
        proxyProtocol: false,
        trustedProxies: [],
        clientAuth: "none",
        clientCa: null,
      });
    },
  },
  {
    name: "one PEM file holding both certificate and key serves as cert_file and key_file",
    toml: `[[listeners]]\nurl = "tls://[::1]:853"\ncert_file = "both.pem"\n` +
      `key_file = "both.pem"\n` + UPSTREAM,
    files: { "/etc/dotproxy/both.pem": `${KEY}\r\n${PEM}\r\n` },
    check: (c) => {
      assert.equal(c.listeners[0].cert, `${PEM}\n`);
      assert.equal(c.listeners[0].key, `${KEY}\n`);
    },
  },
  {
    name: "RSA and EC private key blocks are accepted",
    toml: `[[listeners]]\nurl = "tls://127.0.0.1:853"\ncert_file = "rsa-cert.pem"\n` +
      `key_file = "rsa.pem"\n[[listeners]]\nurl = "tls://127.0.0.1:854"\n` +
      `cert_file = "cert.pem"\nkey_file = "ec.pem"\n` + UPSTREAM,
    files: {
      "/etc/dotproxy/cert.pem": PEM,
      "/etc/dotproxy/rsa-cert.pem": fixture("rsa.pem"),
      "/etc/dotproxy/rsa.pem": fixture("rsa-key.pem"),
      "/etc/dotproxy/ec.pem": "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n" +
        "-----END EC PARAMETERS-----\n" + fixture("server-key-sec1.pem"),
    },
    check: (c) => {
      assert.match(c.listeners[0].key ?? "", /^-----BEGIN RSA PRIVATE KEY-----\n/);
      assert.match(c.listeners[1].key ?? "", /^-----BEGIN EC PRIVATE KEY-----\n/);
    },
  },
  {
    name: "https listener: path from url, defaults for trusted_proxies and client_header",
    toml: `[[listeners]]\nurl = "https://127.0.0.1:8443/dns-query"\ncert_file = "cert.pem"\n` +
      `key_file = "key.pem"\n[[listeners]]\nurl = "https://127.0.0.1:9443"\n` +
      `cert_file = "cert.pem"\nkey_file = "key.pem"\n` + UPSTREAM,
    files: TLS_FILES,
    check: (c) => {
      const [a, b] = c.listeners;
      assert.equal(a.protocol, "https");
      assert.equal(a.path, "/dns-query");
      assert.deepEqual(a.trustedProxies, []);
      assert.equal(a.clientHeader, "x-forwarded-for");
      assert.equal(a.cert, `${PEM}\n`);
      assert.equal(b.path, "/dns-query");
      assert.equal(b.port, 9443);
    },
  },
  {
    name: "http listener behind a proxy: no certificate, trusted_proxies, header lower-cased",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:8080/resolve/v1"\n` +
      `trusted_proxies = ["10.0.0.0/8", "fd00::1"]\nclient_header = "X-Real-IP"\n` + UPSTREAM,
    check: (c) => {
      assert.deepEqual(c.listeners[0], {
        url: "http://127.0.0.1:8080/resolve/v1",
        protocol: "http",
        hostname: "127.0.0.1",
        port: 8080,
        path: "/resolve/v1",
        trustedProxies: [cidr("10.0.0.0/8"), cidr("fd00::1/128")],
        clientHeader: "x-real-ip",
        clientAuth: "none",
        tokens: [],
        authMaxFailures: 10,
        authFailuresPerMinute: 6,
        authBlockMs: 60_000,
      });
    },
  },
  {
    name: "udp, tcp, tls, https and http listeners side by side; udp and tcp share a port",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:53"\n[[listeners]]\nurl = "tcp://127.0.0.1:53"\n` +
      TLS_LISTENER +
      `[[listeners]]\nurl = "https://127.0.0.1:443"\n` +
      `cert_file = "cert.pem"\nkey_file = "key.pem"\n` +
      `[[listeners]]\nurl = "http://127.0.0.1:80"\n[[listeners]]\nurl = "tcp://127.0.0.2:853"\n` +
      UPSTREAM,
    files: TLS_FILES,
    check: (c) => {
      assert.deepEqual(c.listeners.map((l) => `${l.protocol} ${l.port}`), [
        "udp 53",
        "tcp 53",
        "tls 853",
        "https 443",
        "http 80",
        "tcp 853",
      ]);
      assert.equal(c.listeners[0].path, undefined);
      assert.equal(c.listeners[0].clientHeader, undefined);
      assert.deepEqual(c.listeners[2].trustedProxies, [], "no PROXY protocol on tls");
      assert.equal(c.listeners[3].proxyProtocol, undefined);
    },
  },

  // --- access ---
  {
    name: "per-listener access overrides the keys it sets and inherits the others from [access]",
    toml: `[access]\nallow = ["10.0.0.0/8"]\ndeny = ["10.0.0.1"]\naction = "drop"\n` +
      `[[listeners]]\nurl = "udp://127.0.0.1:53"\n` +
      `[[listeners]]\nurl = "udp://0.0.0.0:53"\n[listeners.access]\nallow = ["0.0.0.0/0"]\n` +
      `[[listeners]]\nurl = "tcp://0.0.0.0:53"\naccess = { action = "refuse", deny = [] }\n` +
      UPSTREAM,
    check: (c) => {
      const global = {
        allow: [cidr("10.0.0.0/8")],
        deny: [cidr("10.0.0.1/32")],
        allowClients: [],
        denyClients: [],
        action: "drop" as const,
      };
      assert.deepEqual(c.access, global);
      assert.equal(c.listeners[0].access, undefined);
      assert.deepEqual(c.listeners[1].access, { ...global, allow: [cidr("0.0.0.0/0")] });
      assert.deepEqual(c.listeners[2].access, { ...global, deny: [], action: "refuse" });
    },
  },
  {
    name: "[listeners.access] without [access] inherits the built-in defaults",
    toml:
      `[[listeners]]\nurl = "udp://127.0.0.1:53"\n[listeners.access]\ndeny = ["10.9.0.0/16"]\n` +
      UPSTREAM,
    check: (c) => {
      assert.deepEqual(c.listeners[0].access, {
        allow: [...DEFAULT_ALLOW],
        deny: [cidr("10.9.0.0/16")],
        allowClients: [],
        denyClients: [],
        action: "refuse",
      });
    },
  },
  {
    name: "access prefixes: bare addresses, IPv6, IPv4-mapped, /0",
    toml: MINIMAL +
      `[access]\nallow = ["192.0.2.1", "::/0", "::ffff:10.0.0.0/104", "0.0.0.0/0"]\ndeny = []\n`,
    check: (c) => {
      assert.deepEqual(c.access.allow, [
        cidr("192.0.2.1/32"),
        cidr("::/0"),
        cidr("10.0.0.0/8"),
        cidr("0.0.0.0/0"),
      ]);
      assert.deepEqual(c.access.deny, []);
    },
  },

  // --- upstreams: every protocol ---
  {
    name: "upstream defaults per protocol; tls_name from the hostname; https path",
    toml: LISTENER + `
[forwarding]
bootstrap = ["9.9.9.9"]
[[upstreams]]
url = "https://cloudflare-dns.com/dns-query"
[[upstreams]]
url = "tls://dns.quad9.net"
[[upstreams]]
url = "udp://192.168.1.1:53"
[[upstreams]]
url = "tcp://[fd00::53]"
[[upstreams]]
url = "https://Dns.Google."
[[upstreams]]
url = "https://1.1.1.1:8443/custom/path"
tls_name = "cloudflare-dns.com"
[[upstreams]]
url = "tls://dns.example.net:8853"
tls_name = "other.example.net"
`,
    check: (c) => {
      assert.ok(c.upstreams.every((u) => u.group === "default"));
      assert.ok(c.upstreams.every((u) => u.spkiPins.length === 0), "not pinned by default");
      assert.deepEqual(c.upstreams.map(({ group: _, spkiPins: _p, ...u }) => u), [
        {
          url: "https://cloudflare-dns.com/dns-query",
          protocol: "https",
          hostname: "cloudflare-dns.com",
          hostnameIsIp: false,
          port: 443,
          path: "/dns-query",
          tlsName: "cloudflare-dns.com",
          caCerts: [],
        },
        {
          url: "tls://dns.quad9.net",
          protocol: "tls",
          hostname: "dns.quad9.net",
          hostnameIsIp: false,
          port: 853,
          tlsName: "dns.quad9.net",
          caCerts: [],
        },
        {
          url: "udp://192.168.1.1:53",
          protocol: "udp",
          hostname: "192.168.1.1",
          hostnameIsIp: true,
          port: 53,
          tlsName: "",
          caCerts: [],
        },
        {
          url: "tcp://[fd00::53]",
          protocol: "tcp",
          hostname: "fd00::53",
          hostnameIsIp: true,
          port: 53,
          tlsName: "",
          caCerts: [],
        },
        {
          url: "https://Dns.Google.",
          protocol: "https",
          hostname: "dns.google",
          hostnameIsIp: false,
          port: 443,
          path: "/dns-query",
          tlsName: "dns.google",
          caCerts: [],
        },
        {
          url: "https://1.1.1.1:8443/custom/path",
          protocol: "https",
          hostname: "1.1.1.1",
          hostnameIsIp: true,
          port: 8443,
          path: "/custom/path",
          tlsName: "cloudflare-dns.com",
          caCerts: [],
        },
        {
          url: "tls://dns.example.net:8853",
          protocol: "tls",
          hostname: "dns.example.net",
          hostnameIsIp: false,
          port: 8853,
          tlsName: "other.example.net",
          caCerts: [],
        },
      ]);
    },
  },
  {
    name: "https upstream with ca_file",
    toml: LISTENER + `[[upstreams]]\nurl = "https://10.0.0.53/dns-query"\n` +
      `tls_name = "resolver.internal"\nca_file = "ca.pem"\n`,
    files: { "/etc/dotproxy/ca.pem": PEM },
    check: (c) => {
      assert.equal(c.upstreams[0].caFile, "/etc/dotproxy/ca.pem");
      assert.deepEqual(c.upstreams[0].caCerts, [`${PEM}\n`]);
    },
  },
  {
    name: "bootstrap without hostname upstreams is accepted",
    toml: MINIMAL + `[forwarding]\nbootstrap = []\n`,
    check: (c) => assert.deepEqual(c.forwarding.bootstrap, []),
  },

  // --- cache ---
  {
    name: "max_entries = 0 turns the cache off",
    toml: MINIMAL + `[cache]\nmax_entries = 0\n`,
    check: (c) => {
      assert.equal(c.cache.enabled, false);
      assert.equal(c.cache.maxEntries, 0);
    },
  },
  {
    name: "enabled = false keeps the other cache settings",
    toml: MINIMAL + `[cache]\nenabled = false\nmax_memory = "64MiB"\n`,
    check: (c) => {
      assert.equal(c.cache.enabled, false);
      assert.equal(c.cache.maxEntries, DEFAULT_CACHE.maxEntries);
      assert.equal(c.cache.maxBytes, 64 * 1024 ** 2);
    },
  },
  {
    name: "cache bounds: min_ttl = max_ttl, servfail_ttl 0, sizes at their limits",
    toml: MINIMAL + `[cache]\nmin_ttl = "1h"\nmax_ttl = "60m"\nservfail_ttl = "0s"\n` +
      `max_memory = "1024KiB"\n[server]\nquery_timeout = "2s"\n`,
    check: (c) => {
      assert.equal(c.cache.minTtl, 3600);
      assert.equal(c.cache.maxTtl, 3600);
      assert.equal(c.cache.servfailTtl, 0);
      assert.equal(c.cache.maxBytes, 1024 * 1024);
    },
  },
  {
    name: "64GiB is the largest max_memory",
    toml: MINIMAL + `[cache]\nmax_memory = "64GiB"\n`,
    check: (c) => assert.equal(c.cache.maxBytes, 64 * 1024 ** 3),
  },
  {
    name: "stale_answer_after just below query_timeout",
    toml: MINIMAL + `[cache]\nstale_answer_after = "4999ms"\n`,
    check: (c) => assert.equal(c.cache.staleAnswerAfterMs, 4999),
  },
  {
    name: "default stale_answer_after is not checked against a short query_timeout",
    toml: MINIMAL + `[server]\nquery_timeout = "1s"\n[forwarding]\nattempt_timeout = "500ms"\n`,
    check: (c) => assert.equal(c.cache.staleAnswerAfterMs, DEFAULT_CACHE.staleAnswerAfterMs),
  },

  // --- rate limit ---
  {
    name: "burst defaults to twice qps",
    toml: MINIMAL + `[rate_limit]\nqps = 50\n`,
    check: (c) => {
      assert.equal(c.rateLimit.qps, 50);
      assert.equal(c.rateLimit.burst, 100);
    },
  },
  {
    name: "fractional qps, burst at least 1",
    toml: MINIMAL + `[rate_limit]\nqps = 0.2\n`,
    check: (c) => {
      assert.equal(c.rateLimit.qps, 0.2);
      assert.equal(c.rateLimit.burst, 1);
    },
  },
  {
    name: "prefix lengths at their minimums",
    toml: MINIMAL + `[rate_limit]\nqps = 1\nipv4_prefix = 8\nipv6_prefix = 16\n`,
    check: (c) => {
      assert.equal(c.rateLimit.ipv4Prefix, 8);
      assert.equal(c.rateLimit.ipv6Prefix, 16);
    },
  },

  {
    name: "error answers are limited by default; slip 0 answers none over the limit",
    toml: MINIMAL + `[rate_limit]\nslip = 0\n`,
    check: (c) => {
      assert.equal(c.rateLimit.slip, 0);
      assert.equal(c.rateLimit.errorsQps, 10);
    },
  },
  {
    name: "errors_qps 0 lifts the error budget; slip defaults to 2",
    toml: MINIMAL + `[rate_limit]\nerrors_qps = 0\n`,
    check: (c) => {
      assert.equal(c.rateLimit.errorsQps, 0);
      assert.equal(c.rateLimit.slip, 2);
    },
  },

  // --- admin, query log ---
  {
    name: "admin on IPv6 and on the port of a udp listener",
    toml: `[[listeners]]\nurl = "udp://[::1]:9153"\n` + UPSTREAM +
      `[admin]\naddress = "[::1]:9153"\n`,
    check: (c) => assert.deepEqual(c.admin, { hostname: "::1", port: 9153 }),
  },
  {
    name: "query log to syslog, default port",
    toml: MINIMAL + `[query_log]\nenabled = true\nsink = "syslog"\n` +
      `syslog_address = "udp://192.0.2.10"\n`,
    check: (c) => {
      assert.deepEqual(c.queryLog, {
        enabled: true,
        sink: "syslog",
        format: "json",
        syslog: { transport: "udp", hostname: "192.0.2.10", port: 514 },
      });
    },
  },
  {
    name: "query log to syslog over TCP on IPv6, absolute file path kept",
    toml: MINIMAL + `[query_log]\nsink = "syslog"\nsyslog_address = "TCP://[2001:db8::10]:6514"\n`,
    check: (c) => {
      assert.deepEqual(c.queryLog.syslog, {
        transport: "tcp",
        hostname: "2001:db8::10",
        port: 6514,
      });
      assert.equal(c.queryLog.path, undefined);
    },
  },
  {
    name: "query log file with an absolute path",
    toml: MINIMAL + `[query_log]\nsink = "file"\npath = "/var/log/dotproxy/q.log"\n`,
    check: (c) => assert.equal(c.queryLog.path, "/var/log/dotproxy/q.log"),
  },
];

for (const c of valid) {
  Deno.test(`parseConfig accepts: ${c.name}`, async () => {
    const result = await parseConfig(c.toml, {
      path: CONFIG_PATH,
      baseDir: BASE_DIR,
      readFile: fakeFiles(c.files ?? {}),
    });
    if (isConfigError(result)) assert.fail(formatConfigError(result));
    c.check(result);
  });
}

interface LoadCase {
  name: string;
  path: string;
  files: Record<string, string>;
  check: (r: Config | ConfigError, reads: string[]) => void;
}

function asError(r: Config | ConfigError): ConfigError {
  assert.ok(isConfigError(r), "expected a ConfigError");
  return r;
}

const loads: LoadCase[] = [
  {
    name: "missing config file is a ConfigError keyed config",
    path: "/nowhere/dotproxy.toml",
    files: {},
    check: (r) => {
      const e = asError(r);
      assert.equal(e.key, "config");
      assert.equal(e.path, "/nowhere/dotproxy.toml");
      assert.equal(
        formatConfigError(e),
        "/nowhere/dotproxy.toml: config: cannot read: No such file or directory (os error 2)",
      );
    },
  },
  {
    name: "ca_file resolves against the config file's directory",
    path: "/opt/dp/conf/dotproxy.toml",
    files: {
      "/opt/dp/conf/dotproxy.toml": LISTENER + UPSTREAM + `ca_file = "../ca.pem"\n`,
      "/opt/dp/ca.pem": PEM,
    },
    check: (r, reads) => {
      if (isConfigError(r)) assert.fail(formatConfigError(r));
      assert.equal(r.path, "/opt/dp/conf/dotproxy.toml");
      assert.equal(r.upstreams[0].caFile, "/opt/dp/ca.pem");
      assert.deepEqual(reads, ["/opt/dp/conf/dotproxy.toml", "/opt/dp/ca.pem"]);
    },
  },
  {
    name: "cert_file and key_file resolve against the config file's directory, read once each",
    path: "/opt/dp/conf/dotproxy.toml",
    files: {
      "/opt/dp/conf/dotproxy.toml": `[[listeners]]\nurl = "tls://127.0.0.1:853"\n` +
        `cert_file = "tls/both.pem"\nkey_file = "tls/both.pem"\n` +
        `[[listeners]]\nurl = "https://127.0.0.1:443"\ncert_file = "tls/both.pem"\n` +
        `key_file = "tls/both.pem"\n` + UPSTREAM,
      "/opt/dp/conf/tls/both.pem": PEM + "\n" + KEY,
    },
    check: (r, reads) => {
      if (isConfigError(r)) assert.fail(formatConfigError(r));
      assert.equal(r.listeners[1].certFile, "/opt/dp/conf/tls/both.pem");
      assert.deepEqual(reads, ["/opt/dp/conf/dotproxy.toml", "/opt/dp/conf/tls/both.pem"]);
    },
  },
  {
    name: "a broken config is not followed by cert_file reads",
    path: "/c.toml",
    files: { "/c.toml": TLS_LISTENER + UPSTREAM + `[cache]\nmax_ttl = "0s"\n` },
    check: (r, reads) => {
      assert.equal(asError(r).key, "cache.max_ttl");
      assert.deepEqual(reads, ["/c.toml"]);
    },
  },
  {
    name: "a broken config is not followed by ca_file reads",
    path: "/c.toml",
    files: { "/c.toml": LISTENER + UPSTREAM + `ca_file = "ca.pem"\n[log]\nlevel = "loud"\n` },
    check: (r, reads) => {
      assert.equal(asError(r).key, "log.level");
      assert.deepEqual(reads, ["/c.toml"]);
    },
  },
];

for (const c of loads) {
  Deno.test(`loadConfig: ${c.name}`, async () => {
    const reader = fakeFiles(c.files);
    c.check(await loadConfig(c.path, reader), reader.reads);
  });
}

Deno.test("loadConfig: the shipped config.toml parses to the documented defaults", async () => {
  const path = fileURLToPath(new URL("../../config.toml", import.meta.url));
  const result = await loadConfig(path);
  if (isConfigError(result)) assert.fail(formatConfigError(result));
  assert.deepEqual(
    result.listeners.map((l) => l.url),
    ["udp://127.0.0.1:5053", "tcp://127.0.0.1:5053"],
  );
  assert.deepEqual(
    result.upstreams.map((u) => [u.hostname, u.port, u.tlsName, u.caCerts.length]),
    [["1.1.1.1", 853, "cloudflare-dns.com", 0], ["1.0.0.1", 853, "cloudflare-dns.com", 0]],
  );
  assert.deepEqual(result.server, DEFAULT_SERVER);
  assert.deepEqual(result.forwarding, DEFAULT_FORWARDING);
  assert.deepEqual(result.limits, DEFAULT_LIMITS);
  assert.deepEqual(result.log, DEFAULT_LOG);
  assert.deepEqual(result.cache, DEFAULT_CACHE);
  assert.deepEqual(result.access, DEFAULT_ACCESS);
  assert.deepEqual(result.rateLimit, DEFAULT_RATE_LIMIT);
  assert.deepEqual(result.policy, DEFAULT_POLICY);
  assert.deepEqual(result.queryLog, DEFAULT_QUERY_LOG);
  assert.equal(result.admin, null);
  assert.deepEqual(configWarnings(result), []);
});

Deno.test("loadConfig: the shipped config.toml mentions every known key and section", async () => {
  const text = await Deno.readTextFile(new URL("../../config.toml", import.meta.url));
  for (const [section, keys] of Object.entries(KNOWN_KEYS)) {
    for (const key of keys) {
      if (section === "") {
        assert.match(text, new RegExp(`^(# )?\\[\\[?${key}\\]\\]?$`, "m"), `[${key}]`);
      } else if (key !== "access" || section !== "listeners") {
        assert.match(text, new RegExp(`^(# )?${key} = `, "m"), `${section}.${key}`);
      }
    }
  }
  assert.match(text, /^# \[listeners\.access\]$/m, "[listeners.access]");
});

/** The commented-out examples in config.toml, each made live on top of the shipped file. */
const EXAMPLES: { name: string; lines: string[]; check: (c: Config) => void }[] = [
  {
    name: "tls, https and http listeners",
    lines: [
      `# [[listeners]]`,
      `# url = "tls://127.0.0.1:8853"`,
      `# client_auth = "none"`,
      `# proxy_protocol = false`,
      `# url = "tls://127.0.0.1:8854"`,
      `# client_auth = "require"`,
      `# client_ca_file = "/etc/dotproxy/clients-ca.pem"`,
      `# url = "tcp://127.0.0.1:5054"`,
      `# proxy_protocol = true`,
      `# trusted_proxies = ["10.0.0.0/24"]`,
      `# url = "https://127.0.0.1:8443/dns-query"`,
      `# url = "https://127.0.0.1:8444/dns-query"`,
      `# tokens = [{ name = "alice", sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }]`,
      `# tokens_file = "/etc/dotproxy/tokens"`,
      `# auth_max_failures = 10`,
      `# auth_failures_per_minute = 6`,
      `# auth_block = "1m"`,
      `# url = "http://127.0.0.1:8080/dns-query"`,
      `# cert_file = "/etc/dotproxy/cert.pem"`,
      `# key_file = "/etc/dotproxy/key.pem"`,
      `# trusted_proxies = ["10.0.0.0/8"]`,
      `# client_header = "x-forwarded-for"`,
      `# [listeners.access]`,
      `# allow = ["0.0.0.0/0", "::/0"]`,
      `# deny = []`,
      `# action = "drop"`,
    ],
    check: (c) => {
      assert.deepEqual(
        c.listeners.map((l) => l.protocol),
        ["udp", "tcp", "tls", "tls", "tcp", "https", "https", "http"],
      );
      assert.equal(c.listeners[7].access?.action, "drop");
      assert.equal(c.listeners[5].access, undefined);
      assert.equal(c.listeners[6].clientAuth, "require");
      assert.deepEqual(c.listeners[6].tokens?.map((t) => t.name), ["alice", "bob"]);
      assert.equal(c.listeners[3].clientAuth, "require");
      assert.equal(c.listeners[3].clientCa, `${PEM}\n`);
      assert.equal(c.listeners[4].proxyProtocol, true);
    },
  },
  {
    name: "hostname, https and udp upstreams with bootstrap",
    lines: [
      `# [[upstreams]]`,
      `# url = "https://cloudflare-dns.com/dns-query"`,
      `# url = "tls://dns.quad9.net"`,
      `# url = "udp://192.168.1.1:53"`,
      `# bootstrap = ["9.9.9.9", "[2620:fe::fe]:53"]`,
      `# ca_file = "private-ca.pem"`,
    ],
    check: (c) => {
      assert.deepEqual(c.upstreams.map((u) => u.url), [
        "tls://1.1.1.1:853",
        "tls://1.0.0.1:853",
        "https://cloudflare-dns.com/dns-query",
        "tls://dns.quad9.net",
        "udp://192.168.1.1:53",
      ]);
      assert.equal(c.forwarding.bootstrap.length, 2);
      assert.equal(c.upstreams[0].caCerts.length, 1);
    },
  },
  {
    name: "admin, access, burst, query log file",
    lines: [
      `# [admin]`,
      `# address = "127.0.0.1:9153"`,
      `# allow = ["192.0.2.0/24", "2001:db8::/32"]`,
      `# burst = 100`,
      `# path = "/var/log/dotproxy/queries.log"`,
    ],
    check: (c) => {
      assert.deepEqual(c.admin, { hostname: "127.0.0.1", port: 9153 });
      assert.equal(c.access.allow.length, 2);
      assert.equal(c.rateLimit.burst, 100);
    },
  },
  {
    name: "named clients",
    lines: [
      `# [[clients]]`,
      `# name = "office"`,
      `# networks = ["192.0.2.0/24", "2001:db8:1::/48"]`,
      `# qps = 0`,
      `# name = "alice"`,
      `# qps = 100`,
      `# burst = 200`,
    ],
    check: (c) => {
      assert.deepEqual(c.clients, [
        { name: "office", networks: ["192.0.2.0/24", "2001:db8:1::/48"], qps: 0, burst: 0 },
        { name: "alice", networks: [], qps: 100, burst: 200 },
      ]);
    },
  },
];

for (const ex of EXAMPLES) {
  Deno.test(`config.toml example works when uncommented: ${ex.name}`, async () => {
    const path = fileURLToPath(new URL("../../config.toml", import.meta.url));
    let text = await Deno.readTextFile(path);
    for (const line of ex.lines) {
      assert.ok(text.includes(`\n${line}\n`), `config.toml lacks ${JSON.stringify(line)}`);
      text = text.replaceAll(`\n${line}\n`, `\n${line.slice(2)}\n`);
    }
    if (ex.name.includes("query log")) text = text.replace(`sink = "stdout"`, `sink = "file"`);
    if (ex.name.includes("bootstrap")) {
      text = text.replace(`\nbootstrap = []\n`, "\n");
    }
    const files = {
      "/etc/dotproxy/config.toml": text,
      "/etc/dotproxy/cert.pem": PEM,
      "/etc/dotproxy/key.pem": KEY,
      "/etc/dotproxy/private-ca.pem": PEM,
      "/etc/dotproxy/clients-ca.pem": PEM,
      "/etc/dotproxy/tokens": `# name sha256\nbob ${"ab".repeat(32)}\n`,
    };
    const result = await loadConfig("/etc/dotproxy/config.toml", fakeFiles(files));
    if (isConfigError(result)) assert.fail(formatConfigError(result));
    ex.check(result);
  });
}
