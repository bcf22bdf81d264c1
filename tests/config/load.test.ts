import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  type Config,
  type ConfigError,
  formatConfigError,
  isConfigError,
  loadConfig,
  parseConfig,
} from "../../lib/config/load.ts";
import {
  DEFAULT_FORWARDING,
  DEFAULT_LOG,
  DEFAULT_SERVER,
  type ListenerConfig,
  type UpstreamConfig,
} from "../../lib/config/schema.ts";
import { BASE_DIR, CONFIG_PATH, fakeFiles, LISTENER, MINIMAL, PEM, UPSTREAM } from "./helpers.ts";

interface ValidCase {
  name: string;
  toml: string;
  files?: Record<string, string>;
  check: (c: Config) => void;
}

const upstream = (fields: Partial<UpstreamConfig>): UpstreamConfig => ({
  url: "tls://1.1.1.1",
  protocol: "tls",
  hostname: "1.1.1.1",
  port: 853,
  tlsName: "cloudflare-dns.com",
  caCerts: [],
  ...fields,
});

const valid: ValidCase[] = [
  {
    name: "minimal config gets every default",
    toml: MINIMAL,
    check: (c) => {
      assert.deepEqual(c.listeners, [
        { url: "udp://127.0.0.1:5053", protocol: "udp", hostname: "127.0.0.1", port: 5053 },
      ]);
      assert.deepEqual(c.upstreams, [upstream({})]);
      assert.deepEqual(c.server, DEFAULT_SERVER);
      assert.deepEqual(c.forwarding, DEFAULT_FORWARDING);
      assert.deepEqual(c.log, DEFAULT_LOG);
      assert.equal(c.path, CONFIG_PATH);
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
[forwarding]
attempt_timeout = "1.5s"
connect_timeout = "750ms"
idle_timeout = "1m30s"
connections_per_upstream = 64
max_in_flight_per_connection = 65535
failure_backoff = "250ms"
max_failure_backoff = "1h"
[log]
level = "debug"
format = "json"
`,
    check: (c) => {
      assert.deepEqual(c.server, {
        udpMaxSize: 4096,
        tcpIdleTimeoutMs: 60_000,
        shutdownGraceMs: 500,
        queryTimeoutMs: 10_000,
      });
      assert.deepEqual(c.forwarding, {
        queryTimeoutMs: 10_000,
        attemptTimeoutMs: 1_500,
        connectTimeoutMs: 750,
        idleTimeoutMs: 90_000,
        connectionsPerUpstream: 64,
        maxInFlightPerConnection: 65535,
        failureBackoffMs: 250,
        maxFailureBackoffMs: 3_600_000,
      });
      assert.deepEqual(c.log, { level: "debug", format: "json" });
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
    toml: MINIMAL + `[server]\n[forwarding]\n[log]\n`,
    check: (c) => {
      assert.deepEqual(c.server, DEFAULT_SERVER);
      assert.deepEqual(c.forwarding, DEFAULT_FORWARDING);
    },
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
  assert.deepEqual(result.log, DEFAULT_LOG);
});

Deno.test("loadConfig: the shipped config.toml mentions every known key", async () => {
  const text = await Deno.readTextFile(new URL("../../config.toml", import.meta.url));
  const keys = [
    "query_timeout",
    "udp_max_size",
    "tcp_idle_timeout",
    "shutdown_grace",
    "url",
    "tls_name",
    "ca_file",
    "attempt_timeout",
    "connect_timeout",
    "idle_timeout",
    "connections_per_upstream",
    "max_in_flight_per_connection",
    "failure_backoff",
    "max_failure_backoff",
    "level",
    "format",
  ];
  for (const key of keys) assert.match(text, new RegExp(`^#? ?${key} = `, "m"), key);
});
