import assert from "node:assert/strict";
import { formatConfigError, isConfigError, parseConfig } from "../../lib/config/load.ts";
import { BASE_DIR, CONFIG_PATH, fakeFiles, LISTENER, MINIMAL, PEM, UPSTREAM } from "./helpers.ts";

interface Case {
  name: string;
  toml: string;
  files?: Record<string, string>;
  key: string;
  /** Compared with deepEqual when present (use null for "missing", i.e. undefined). */
  value?: unknown;
  /** Substring or pattern the message must match. */
  message: string | RegExp;
}

const missing = null;

const cases: Case[] = [
  // --- TOML syntax ---
  {
    name: "syntax error names line and column",
    toml: MINIMAL + `[server]\nquery_timeout = "5s\n`,
    key: "config",
    value: missing,
    message: /^TOML syntax error at line 7, column \d+: /,
  },
  {
    name: "duplicate key is a syntax error",
    toml: MINIMAL + `[log]\nlevel = "info"\nlevel = "debug"\n`,
    key: "config",
    message: /line 8/,
  },

  // --- unknown keys ---
  {
    name: "unknown key in [server] lists known keys",
    toml: MINIMAL + `[server]\nfoo = 1\n`,
    key: "server.foo",
    value: 1,
    message: "unknown key; known keys in [server]: query_timeout, udp_max_size",
  },
  {
    name: "near miss in [server] is suggested",
    toml: MINIMAL + `[server]\nquery_timout = "5s"\n`,
    key: "server.query_timout",
    message: `unknown key; did you mean "query_timeout"?`,
  },
  {
    name: "camelCase key suggests snake_case",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://1.1.1.1"\ntlsName = "x.example"\n`,
    key: "upstreams[0].tlsName",
    value: "x.example",
    message: `did you mean "tls_name"?`,
  },
  {
    name: "listener hostname key points to url",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:53"\nhostname = "127.0.0.1"\n` + UPSTREAM,
    key: "listeners[0].hostname",
    message: `unknown key; the address and port go in url, e.g. url = "udp://127.0.0.1:5053"`,
  },
  {
    name: "top-level upstream suggests upstreams",
    toml: LISTENER + `[[upstream]]\nurl = "tls://1.1.1.1"\ntls_name = "a.example"\n`,
    key: "upstream",
    message: `did you mean "upstreams"?`,
  },
  {
    name: "key in the wrong section says where it belongs",
    toml: MINIMAL + `[forwarding]\nquery_timeout = "5s"\n`,
    key: "forwarding.query_timeout",
    message: "unknown key; query_timeout belongs in [server]",
  },
  {
    name: "top-level key that belongs in a section",
    toml: `udp_max_size = 1232\n` + MINIMAL,
    key: "udp_max_size",
    message: "belongs in [server]",
  },
  {
    name: "unknown log key",
    toml: MINIMAL + `[log]\nlevl = "info"\n`,
    key: "log.levl",
    message: `did you mean "level"?`,
  },

  // --- wrong types ---
  {
    name: "section that is not a table",
    toml: `server = 5\n` + MINIMAL,
    key: "server",
    value: 5,
    message: "expected a table ([server]), got an integer",
  },
  {
    name: "single-bracket [listeners]",
    toml: `[listeners]\nurl = "udp://127.0.0.1:53"\n` + UPSTREAM,
    key: "listeners",
    message: "expected an array of tables, got a table; write [[listeners]] with double brackets",
  },
  {
    name: "listener entry that is a string",
    toml: `listeners = ["udp://127.0.0.1:53"]\n` + UPSTREAM,
    key: "listeners[0]",
    value: "udp://127.0.0.1:53",
    message: "expected a table with a url key, got a string",
  },
  {
    name: "url that is not a string",
    toml: `[[listeners]]\nurl = 5053\n` + UPSTREAM,
    key: "listeners[0].url",
    value: 5053,
    message: "expected a string, got an integer",
  },
  {
    name: "integer given as a string",
    toml: MINIMAL + `[server]\nudp_max_size = "1232"\n`,
    key: "server.udp_max_size",
    value: "1232",
    message: "expected an integer, got a string; remove the quotes",
  },
  {
    name: "boolean where a duration belongs",
    toml: MINIMAL + `[server]\nshutdown_grace = true\n`,
    key: "server.shutdown_grace",
    value: true,
    message: `expected a duration such as "5s", got a boolean`,
  },
  {
    name: "log level that is not a string",
    toml: MINIMAL + `[log]\nlevel = 1\n`,
    key: "log.level",
    message: "expected a string, got an integer",
  },
  {
    name: "ca_file that is not a string",
    toml: LISTENER + UPSTREAM + `ca_file = ["a.pem"]\n`,
    key: "upstreams[0].ca_file",
    message: "expected a file path string, got an array",
  },

  // --- required entries ---
  {
    name: "no listeners",
    toml: UPSTREAM,
    key: "listeners",
    value: missing,
    message: "at least one [[listeners]] entry is required",
  },
  {
    name: "empty listeners array",
    toml: `listeners = []\n` + UPSTREAM,
    key: "listeners",
    value: [],
    message: "at least one [[listeners]] entry is required",
  },
  {
    name: "no upstreams",
    toml: LISTENER,
    key: "upstreams",
    message: "at least one [[upstreams]] entry is required",
  },
  {
    name: "listener without url",
    toml: `[[listeners]]\n` + UPSTREAM,
    key: "listeners[0].url",
    value: missing,
    message: `required; e.g. "udp://127.0.0.1:5053"`,
  },
  {
    name: "missing tls_name",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://1.1.1.1"\n`,
    key: "upstreams[0].tls_name",
    value: missing,
    message: "required; the name to verify on the upstream's certificate",
  },
  {
    name: "empty tls_name",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://1.1.1.1"\ntls_name = ""\n`,
    key: "upstreams[0].tls_name",
    message: "must not be empty",
  },
  {
    name: "tls_name written as a URL",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://1.1.1.1"\ntls_name = "https://one.one"\n`,
    key: "upstreams[0].tls_name",
    message: "must be a bare name, not a URL",
  },
  {
    name: "tls_name with a space",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://1.1.1.1"\ntls_name = "dns example"\n`,
    key: "upstreams[0].tls_name",
    message: "not a valid DNS name",
  },

  // --- listener URLs ---
  {
    name: "listener without scheme",
    toml: `[[listeners]]\nurl = "127.0.0.1:5053"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `expected a URL like "udp://127.0.0.1:5053"`,
  },
  {
    name: "listener with tls scheme",
    toml: `[[listeners]]\nurl = "tls://127.0.0.1:853"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `scheme "tls" is not supported; supported: udp, tcp`,
  },
  {
    name: "listener missing port",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1"\n` + UPSTREAM,
    key: "listeners[0].url",
    value: "udp://127.0.0.1",
    message: `port is required, e.g. "udp://127.0.0.1:5053"`,
  },
  {
    name: "listener empty port",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `port is missing after ":"`,
  },
  {
    name: "listener port 0",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:0"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: "port must be 1-65535",
  },
  {
    name: "listener port not a number",
    toml: `[[listeners]]\nurl = "tcp://127.0.0.1:dns"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `port "dns" is not a number`,
  },
  {
    name: "listener hostname",
    toml: `[[listeners]]\nurl = "udp://localhost:5053"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `"localhost" is a hostname; listeners must bind an IP address`,
  },
  {
    name: "listener IPv6 without brackets",
    toml: `[[listeners]]\nurl = "udp://::1:5053"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `IPv6 addresses must be in brackets, e.g. "udp://[::1]:5053"`,
  },
  {
    name: "listener with IPv6 zone id",
    toml: `[[listeners]]\nurl = "udp://[fe80::1%eth0]:5053"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: "zone ids",
  },
  {
    name: "listener with bad IPv4",
    toml: `[[listeners]]\nurl = "udp://127.0.0.256:5053"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `"127.0.0.256" is not a valid IPv4 address`,
  },
  {
    name: "listener with bad IPv6",
    toml: `[[listeners]]\nurl = "udp://[::1::2]:5053"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `"::1::2" is not a valid IPv6 address`,
  },
  {
    name: "listener with a path",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:5053/dns"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `paths, queries and fragments are not allowed (found "/dns")`,
  },
  {
    name: "duplicate listener url",
    toml: LISTENER + `[[listeners]]\nurl = "udp://127.0.0.1:5053"\n` + UPSTREAM,
    key: "listeners[1].url",
    message: "duplicate of listeners[0]",
  },
  {
    name: "duplicate listener written differently",
    toml: `[[listeners]]\nurl = "tcp://[::1]:53"\n[[listeners]]\nurl = "TCP://[0:0::0:1]:53"\n` +
      UPSTREAM,
    key: "listeners[1].url",
    value: "TCP://[0:0::0:1]:53",
    message: "duplicate of listeners[0]",
  },

  // --- upstream URLs ---
  {
    name: "upstream udp+tls scheme",
    toml: LISTENER + `[[upstreams]]\nurl = "udp+tls://1.1.1.1"\ntls_name = "a.example"\n`,
    key: "upstreams[0].url",
    message: `scheme "udp+tls" is not supported yet; supported: tls`,
  },
  {
    name: "upstream https scheme",
    toml: LISTENER +
      `[[upstreams]]\nurl = "https://1.1.1.1/dns-query"\ntls_name = "a.example"\n`,
    key: "upstreams[0].url",
    message: `scheme "https" is not supported yet; supported: tls`,
  },
  {
    name: "upstream port too large",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://1.1.1.1:99999"\ntls_name = "a.example"\n`,
    key: "upstreams[0].url",
    value: "tls://1.1.1.1:99999",
    message: "port must be 1-65535",
  },
  {
    name: "upstream hostname",
    toml: LISTENER +
      `[[upstreams]]\nurl = "tls://dns.quad9.net"\ntls_name = "dns.quad9.net"\n`,
    key: "upstreams[0].url",
    message: "hostname upstreams are not supported yet: use an IP address and set tls_name",
  },
  {
    name: "upstream userinfo",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://me@1.1.1.1"\ntls_name = "a.example"\n`,
    key: "upstreams[0].url",
    message: "user info",
  },
  {
    name: "upstream query string",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://1.1.1.1?x=1"\ntls_name = "a.example"\n`,
    key: "upstreams[0].url",
    message: `not allowed (found "?x=1")`,
  },
  {
    name: "upstream IPv6 without brackets",
    toml: LISTENER +
      `[[upstreams]]\nurl = "tls://2606:4700:4700::1111"\ntls_name = "a.example"\n`,
    key: "upstreams[0].url",
    message: `must be in brackets, e.g. "tls://[2606:4700:4700::1111]"`,
  },
  {
    name: "error in second upstream names its index",
    toml: MINIMAL + `[[upstreams]]\nurl = "tls://1.0.0.1:0"\ntls_name = "a.example"\n`,
    key: "upstreams[1].url",
    message: "port must be 1-65535",
  },

  // --- ca_file ---
  {
    name: "ca_file missing names resolved file and OS reason",
    toml: LISTENER + UPSTREAM + `ca_file = "private-ca.pem"\n`,
    key: "upstreams[0].ca_file",
    value: "private-ca.pem",
    message: "cannot read /etc/dotproxy/private-ca.pem: No such file or directory (os error 2)",
  },
  {
    name: "ca_file without a certificate",
    toml: LISTENER + UPSTREAM + `ca_file = "/keys/key.pem"\n`,
    files: { "/keys/key.pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" },
    key: "upstreams[0].ca_file",
    message: "/keys/key.pem contains no PEM certificate",
  },
  {
    name: "ca_file with a malformed certificate",
    toml: LISTENER + UPSTREAM + `ca_file = "bad.pem"\n`,
    files: {
      "/etc/dotproxy/bad.pem":
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    },
    key: "upstreams[0].ca_file",
    message: "malformed PEM certificate",
  },
  {
    name: "empty ca_file",
    toml: LISTENER + UPSTREAM + `ca_file = ""\n`,
    files: { "/etc/dotproxy/ok.pem": PEM },
    key: "upstreams[0].ca_file",
    message: "must not be empty",
  },

  // --- durations ---
  {
    name: "duration without unit (string)",
    toml: MINIMAL + `[server]\nquery_timeout = "5"\n`,
    key: "server.query_timeout",
    value: "5",
    message: `missing unit; write "5s" or "5ms"`,
  },
  {
    name: "duration as bare TOML number",
    toml: MINIMAL + `[forwarding]\nidle_timeout = 8\n`,
    key: "forwarding.idle_timeout",
    value: 8,
    message: `durations need a unit; write a string such as "8s" or "8ms"`,
  },
  {
    name: "unparsable duration",
    toml: MINIMAL + `[forwarding]\nconnect_timeout = "two seconds"\n`,
    key: "forwarding.connect_timeout",
    message: "not a duration; use a number with a unit ms, s, m or h",
  },
  {
    name: "zero duration",
    toml: MINIMAL + `[server]\ntcp_idle_timeout = "0s"\n`,
    key: "server.tcp_idle_timeout",
    message: "must be greater than zero",
  },
  {
    name: "negative duration",
    toml: MINIMAL + `[forwarding]\nfailure_backoff = "-1s"\n`,
    key: "forwarding.failure_backoff",
    message: "must be greater than zero",
  },
  {
    name: "sub-millisecond duration",
    toml: MINIMAL + `[server]\nshutdown_grace = "0.5ms"\n`,
    key: "server.shutdown_grace",
    message: "must be a whole number of milliseconds",
  },
  {
    name: "duration beyond timer range",
    toml: MINIMAL + `[server]\nshutdown_grace = "1000h"\n`,
    key: "server.shutdown_grace",
    message: "must be at most 2147483647ms",
  },
  {
    name: "attempt_timeout above query_timeout",
    toml: MINIMAL + `[server]\nquery_timeout = "5s"\n[forwarding]\nattempt_timeout = "6s"\n`,
    key: "forwarding.attempt_timeout",
    value: "6s",
    message: "must not exceed server.query_timeout (5s), the whole budget of a query",
  },
  {
    name: "attempt_timeout above default query_timeout",
    toml: MINIMAL + `[forwarding]\nattempt_timeout = "10s"\n`,
    key: "forwarding.attempt_timeout",
    message: "must not exceed server.query_timeout (5s, the default)",
  },
  {
    name: "query_timeout below default attempt_timeout",
    toml: MINIMAL + `[server]\nquery_timeout = "1s"\n`,
    key: "server.query_timeout",
    value: "1s",
    message: "must be at least forwarding.attempt_timeout (2s, the default), so that one attempt",
  },
  {
    name: "max_failure_backoff below default failure_backoff",
    toml: MINIMAL + `[forwarding]\nmax_failure_backoff = "500ms"\n`,
    key: "forwarding.max_failure_backoff",
    message: "must be at least forwarding.failure_backoff (1s, the default)",
  },
  {
    name: "failure_backoff above max_failure_backoff",
    toml: MINIMAL + `[forwarding]\nfailure_backoff = "1m"\n`,
    key: "forwarding.failure_backoff",
    message: "must not exceed forwarding.max_failure_backoff (10s, the default)",
  },

  // --- integers ---
  {
    name: "udp_max_size below 512",
    toml: MINIMAL + `[server]\nudp_max_size = 511\n`,
    key: "server.udp_max_size",
    value: 511,
    message: "must be 512-65535",
  },
  {
    name: "udp_max_size above 65535",
    toml: MINIMAL + `[server]\nudp_max_size = 65536\n`,
    key: "server.udp_max_size",
    message: "must be 512-65535",
  },
  {
    name: "connections_per_upstream zero",
    toml: MINIMAL + `[forwarding]\nconnections_per_upstream = 0\n`,
    key: "forwarding.connections_per_upstream",
    message: "must be 1-64",
  },
  {
    name: "connections_per_upstream above 64",
    toml: MINIMAL + `[forwarding]\nconnections_per_upstream = 65\n`,
    key: "forwarding.connections_per_upstream",
    message: "must be 1-64",
  },
  {
    name: "non-integer max_in_flight_per_connection",
    toml: MINIMAL + `[forwarding]\nmax_in_flight_per_connection = 1.5\n`,
    key: "forwarding.max_in_flight_per_connection",
    value: 1.5,
    message: "must be a whole number",
  },
  {
    name: "max_in_flight_per_connection above 65535",
    toml: MINIMAL + `[forwarding]\nmax_in_flight_per_connection = 70000\n`,
    key: "forwarding.max_in_flight_per_connection",
    message: "must be 1-65535",
  },

  // --- enums ---
  {
    name: "log level outside enum suggests near miss",
    toml: MINIMAL + `[log]\nlevel = "warn"\n`,
    key: "log.level",
    value: "warn",
    message: `must be one of "debug", "info", "warning", "error"; did you mean "warning"?`,
  },
  {
    name: "log level in upper case",
    toml: MINIMAL + `[log]\nlevel = "INFO"\n`,
    key: "log.level",
    message: `did you mean "info"?`,
  },
  {
    name: "log format outside enum",
    toml: MINIMAL + `[log]\nformat = "yaml"\n`,
    key: "log.format",
    message: `must be one of "text", "json"`,
  },
];

for (const c of cases) {
  Deno.test(`parseConfig rejects: ${c.name}`, async () => {
    const result = await parseConfig(c.toml, {
      path: CONFIG_PATH,
      baseDir: BASE_DIR,
      readFile: fakeFiles(c.files ?? {}),
    });
    assert.ok(isConfigError(result), `expected an error, got ${JSON.stringify(result)}`);
    assert.equal(result.key, c.key);
    assert.equal(result.path, CONFIG_PATH);
    if (c.value !== undefined) assert.deepEqual(result.value, c.value ?? undefined);
    if (typeof c.message === "string") {
      assert.ok(result.message.includes(c.message), result.message);
    } else assert.match(result.message, c.message);
    const line = formatConfigError(result);
    assert.ok(line.startsWith(`${CONFIG_PATH}: ${c.key}`), line);
    assert.ok(!line.includes("\n"), line);
  });
}
