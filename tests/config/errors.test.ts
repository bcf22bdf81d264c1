import {
  assertRejected,
  fixture,
  KEY,
  LISTENER,
  MINIMAL,
  PEM,
  type RejectedCase,
  TLS_FILES,
  TLS_LISTENER,
  UPSTREAM,
} from "./helpers.ts";

const missing = null;

const cases: RejectedCase[] = [
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
    message: `unknown key; the address and port (and an https path) go in url, ` +
      `e.g. url = "udp://127.0.0.1:5053"`,
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
    name: "listener with an unknown scheme",
    toml: `[[listeners]]\nurl = "quic://127.0.0.1:853"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `scheme "quic" is not supported; supported: udp, tcp, tls, https, http`,
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
    message: `scheme "udp+tls" is not supported yet; supported: tls, https, udp, tcp`,
  },
  {
    name: "upstream dns-over-quic scheme",
    toml: LISTENER + `[[upstreams]]\nurl = "quic://1.1.1.1"\ntls_name = "a.example"\n`,
    key: "upstreams[0].url",
    message: `scheme "quic" is not supported yet`,
  },
  {
    name: "upstream port too large",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://1.1.1.1:99999"\ntls_name = "a.example"\n`,
    key: "upstreams[0].url",
    value: "tls://1.1.1.1:99999",
    message: "port must be 1-65535",
  },
  {
    name: "hostname upstream without bootstrap",
    toml: LISTENER + UPSTREAM + `[[upstreams]]\nurl = "tls://dns.quad9.net"\n`,
    key: "upstreams[1].url",
    value: "tls://dns.quad9.net",
    message: "a hostname upstream needs [forwarding] bootstrap servers to look up its address, " +
      `e.g. bootstrap = ["9.9.9.9", "[2620:fe::fe]:53"]; or write an IP address and set tls_name`,
  },
  {
    name: "https hostname upstream with an empty bootstrap list",
    toml: LISTENER + `[[upstreams]]\nurl = "https://cloudflare-dns.com/dns-query"\n` +
      `[forwarding]\nbootstrap = []\n`,
    key: "upstreams[0].url",
    message: "a hostname upstream needs [forwarding] bootstrap",
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
    message: "not a duration; use a number with a unit ms, s, m, h or d",
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

  // --- new listener protocols ---
  {
    name: "tls listener without cert_file",
    toml: `[[listeners]]\nurl = "tls://127.0.0.1:853"\nkey_file = "key.pem"\n` + UPSTREAM,
    key: "listeners[0].cert_file",
    value: missing,
    message: "required for tls:// listeners: the PEM certificate chain to present",
  },
  {
    name: "https listener without key_file",
    toml: `[[listeners]]\nurl = "https://127.0.0.1:443"\ncert_file = "cert.pem"\n` + UPSTREAM,
    key: "listeners[0].key_file",
    message: "required for https:// listeners: the PEM private key of cert_file",
  },
  {
    name: "cert_file on a udp listener",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:53"\ncert_file = "cert.pem"\n` + UPSTREAM,
    key: "listeners[0].cert_file",
    value: "cert.pem",
    message: "not used by udp:// listeners; only tls:// and https:// listeners present a " +
      "certificate",
  },
  {
    name: "key_file on an http listener points to https",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80"\nkey_file = "key.pem"\n` + UPSTREAM,
    key: "listeners[0].key_file",
    message: "not used by http:// listeners; http:// is plain HTTP behind a TLS-terminating " +
      "proxy; use https:// to serve TLS here",
  },
  {
    name: "cert_file that is not a string",
    toml: `[[listeners]]\nurl = "tls://127.0.0.1:853"\ncert_file = true\nkey_file = "k"\n` +
      UPSTREAM,
    key: "listeners[0].cert_file",
    message: "expected a file path string, got a boolean",
  },
  {
    name: "empty key_file",
    toml: `[[listeners]]\nurl = "tls://127.0.0.1:853"\ncert_file = "c"\nkey_file = " "\n` +
      UPSTREAM,
    key: "listeners[0].key_file",
    message: "must not be empty",
  },
  {
    name: "cert_file missing on disk",
    toml: TLS_LISTENER + UPSTREAM,
    files: { "/etc/dotproxy/key.pem": KEY },
    key: "listeners[0].cert_file",
    value: "cert.pem",
    message: "cannot read /etc/dotproxy/cert.pem: No such file or directory (os error 2)",
  },
  {
    name: "cert_file holding only a key",
    toml: TLS_LISTENER + UPSTREAM,
    files: { "/etc/dotproxy/cert.pem": KEY, "/etc/dotproxy/key.pem": KEY },
    key: "listeners[0].cert_file",
    message: `/etc/dotproxy/cert.pem contains no PEM certificate (no "-----BEGIN CERTIFICATE-----"`,
  },
  {
    name: "key_file holding only a certificate",
    toml: TLS_LISTENER + UPSTREAM,
    files: { "/etc/dotproxy/cert.pem": PEM, "/etc/dotproxy/key.pem": PEM },
    key: "listeners[0].key_file",
    value: "key.pem",
    message: `/etc/dotproxy/key.pem contains no PEM private key (no "-----BEGIN PRIVATE KEY-----"`,
  },
  {
    name: "key_file with two keys",
    toml: TLS_LISTENER + UPSTREAM,
    files: { "/etc/dotproxy/cert.pem": PEM, "/etc/dotproxy/key.pem": `${KEY}\n${KEY}\n` },
    key: "listeners[0].key_file",
    message: "contains 2 private keys; keep only the key of cert_file",
  },
  {
    name: "encrypted key_file",
    toml: TLS_LISTENER + UPSTREAM,
    files: {
      "/etc/dotproxy/cert.pem": PEM,
      "/etc/dotproxy/key.pem": KEY.replaceAll("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
    },
    key: "listeners[0].key_file",
    message: "holds an encrypted private key, which cannot be used without a passphrase; " +
      `decrypt it with "openssl pkey -in /etc/dotproxy/key.pem -out <new file>"`,
  },
  {
    name: "malformed private key",
    toml: TLS_LISTENER + UPSTREAM,
    files: {
      "/etc/dotproxy/cert.pem": PEM,
      "/etc/dotproxy/key.pem":
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----",
    },
    key: "listeners[0].key_file",
    message: "malformed PEM private key (body is not base64)",
  },
  {
    name: "malformed certificate in cert_file",
    toml: TLS_LISTENER + UPSTREAM,
    files: {
      "/etc/dotproxy/cert.pem": "-----BEGIN CERTIFICATE-----\n***\n-----END CERTIFICATE-----",
      "/etc/dotproxy/key.pem": KEY,
    },
    key: "listeners[0].cert_file",
    message: "malformed PEM certificate",
  },
  {
    name: "key_file that is another certificate's key (start-up would refuse it)",
    toml: TLS_LISTENER + UPSTREAM,
    files: {
      "/etc/dotproxy/cert.pem": PEM,
      "/etc/dotproxy/key.pem": fixture("wrong-name-key.pem"),
    },
    key: "listeners[0].key_file",
    value: "key.pem",
    message: "/etc/dotproxy/key.pem cannot serve /etc/dotproxy/cert.pem: key does not belong " +
      "to the certificate for CN=dns.test",
  },
  {
    name: "https listener whose key_file is another certificate's key",
    toml: `[[listeners]]\nurl = "https://127.0.0.1:8443"\ncert_file = "cert.pem"\n` +
      `key_file = "/keys/other.pem"\n` + UPSTREAM,
    files: { "/etc/dotproxy/cert.pem": PEM, "/keys/other.pem": fixture("rsa-key.pem") },
    key: "listeners[0].key_file",
    value: "/keys/other.pem",
    message: "key does not belong to the certificate for CN=dns.test",
  },
  {
    name: "key_file whose block does not parse as its label says",
    toml: TLS_LISTENER + UPSTREAM,
    files: {
      "/etc/dotproxy/cert.pem": PEM,
      "/etc/dotproxy/key.pem": KEY.replaceAll("PRIVATE KEY", "RSA PRIVATE KEY"),
    },
    key: "listeners[0].key_file",
    message: "key is not a PEM private key",
  },
  {
    name: "cert_file whose base64 is not a certificate",
    toml: TLS_LISTENER + UPSTREAM,
    files: {
      "/etc/dotproxy/cert.pem": "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n" +
        "-----END CERTIFICATE-----",
      "/etc/dotproxy/key.pem": KEY,
    },
    key: "listeners[0].cert_file",
    message: "/etc/dotproxy/cert.pem contains a PEM certificate that does not parse (block 1)",
  },
  {
    name: "ca_file whose second certificate does not parse",
    toml: LISTENER + UPSTREAM + `ca_file = "ca.pem"\n`,
    files: {
      "/etc/dotproxy/ca.pem":
        `${PEM}\n-----BEGIN CERTIFICATE-----\nZm9vYmFy\n-----END CERTIFICATE-----\n`,
    },
    key: "upstreams[0].ca_file",
    message: "contains a PEM certificate that does not parse (block 2)",
  },
  {
    name: "https listener without a port",
    toml: `[[listeners]]\nurl = "https://127.0.0.1/dns-query"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: "port is required",
  },
  {
    name: "https listener with a query",
    toml: `[[listeners]]\nurl = "https://127.0.0.1:443/dns-query?dns=x"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `queries and fragments are not allowed, only a path (found "?dns=x")`,
  },
  {
    name: "http listener with a query and no path",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80?x"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `queries and fragments are not allowed, only a path (found "?x")`,
  },
  {
    name: "http listener with a fragment",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80/q#top"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `(found "#top")`,
  },
  {
    name: "http listener path with a space",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80/dns query"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `path "/dns query" contains " "; percent-encode it`,
  },
  {
    name: "http listener path with a broken percent-escape",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80/dns%2"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `has a "%" that is not followed by two hex digits`,
  },
  {
    name: "tls listener with a path",
    toml: `[[listeners]]\nurl = "tls://127.0.0.1:853/dns-query"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `paths, queries and fragments are not allowed (found "/dns-query")`,
  },
  {
    name: "https listener bound to a hostname",
    toml: `[[listeners]]\nurl = "https://dns.example.com:443/dns-query"\n` + UPSTREAM,
    key: "listeners[0].url",
    message: `"dns.example.com" is a hostname; listeners must bind an IP address`,
  },
  {
    name: "tls listener on the port of a tcp listener",
    toml: `[[listeners]]\nurl = "tcp://127.0.0.1:853"\n` + TLS_LISTENER + UPSTREAM,
    files: TLS_FILES,
    key: "listeners[1].url",
    value: "tls://127.0.0.1:853",
    message: `listeners[0] (tcp://127.0.0.1:853) already uses TCP port 853 on this address; ` +
      `tcp, tls, https and http listeners each need their own port`,
  },
  {
    name: "http and https listeners on one port",
    toml:
      `[[listeners]]\nurl = "http://[::1]:8080/a"\n[[listeners]]\nurl = "https://[0::1]:8080/b"\n` +
      `cert_file = "cert.pem"\nkey_file = "key.pem"\n` + UPSTREAM,
    key: "listeners[1].url",
    message: "listeners[0] (http://[::1]:8080/a) already uses TCP port 8080",
  },
  {
    name: "trusted_proxies on a tcp listener",
    toml: `[[listeners]]\nurl = "tcp://127.0.0.1:53"\ntrusted_proxies = ["10.0.0.0/8"]\n` +
      UPSTREAM,
    key: "listeners[0].trusted_proxies",
    value: ["10.0.0.0/8"],
    message:
      "on tcp:// listeners trusted proxies send a PROXY protocol header: set proxy_protocol = true",
  },
  {
    name: "client_header on a tls listener",
    toml: TLS_LISTENER + `client_header = "x-real-ip"\n` + UPSTREAM,
    key: "listeners[0].client_header",
    message: "not used by tls:// listeners",
  },
  {
    name: "trusted_proxies as a string",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80"\ntrusted_proxies = "10.0.0.0/8"\n` +
      UPSTREAM,
    key: "listeners[0].trusted_proxies",
    message: `expected an array of address prefixes, e.g. trusted_proxies = ["10.0.0.0/8"]`,
  },
  {
    name: "trusted_proxies entry that is a hostname",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80"\ntrusted_proxies = ["lb.internal"]\n` +
      UPSTREAM,
    key: "listeners[0].trusted_proxies[0]",
    value: "lb.internal",
    message: `"lb.internal" is not an IPv4 or IPv6 address`,
  },
  {
    name: "client_header with a colon",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80"\nclient_header = "X-Forwarded-For:"\n` +
      UPSTREAM,
    key: "listeners[0].client_header",
    message: `write the header name without ":"`,
  },
  {
    name: "client_header with a space",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80"\nclient_header = "x forwarded"\n` +
      UPSTREAM,
    key: "listeners[0].client_header",
    message: "not an HTTP header name",
  },
  {
    name: "empty client_header",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80"\nclient_header = ""\n` + UPSTREAM,
    key: "listeners[0].client_header",
    message: "must not be empty",
  },
  {
    name: "near miss of cert_file",
    toml: `[[listeners]]\nurl = "tls://127.0.0.1:853"\ncert = "c.pem"\n` + UPSTREAM,
    key: "listeners[0].cert",
    message: `unknown key; did you mean "cert_file"?`,
  },
  {
    name: "listener path key points to url",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80"\npath = "/dns-query"\n` + UPSTREAM,
    key: "listeners[0].path",
    message: "unknown key; the address and port (and an https path) go in url",
  },
  {
    name: "trusted_proxy suggests trusted_proxies",
    toml: `[[listeners]]\nurl = "http://127.0.0.1:80"\ntrusted_proxy = []\n` + UPSTREAM,
    key: "listeners[0].trusted_proxy",
    message: `did you mean "trusted_proxies"?`,
  },

  // --- per-listener access ---
  {
    name: "listener access that is not a table",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:53"\naccess = ["10.0.0.0/8"]\n` + UPSTREAM,
    key: "listeners[0].access",
    message: "expected a table ([listeners.access]), got an array",
  },
  {
    name: "unknown key in [listeners.access]",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:53"\n[listeners.access]\nallowed = []\n` +
      UPSTREAM,
    key: "listeners[0].access.allowed",
    message: `did you mean "allow"?`,
  },
  {
    name: "unrelated key in [listeners.access] lists its keys",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:53"\n[listeners.access]\nzone = 1\n` + UPSTREAM,
    key: "listeners[0].access.zone",
    message: "known keys in [listeners.access]: allow, deny, allow_clients, deny_clients, action",
  },
  {
    name: "bad prefix in [listeners.access] deny",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:53"\n[listeners.access]\n` +
      `deny = ["10.0.0.0/8", "10.1.2.3/16"]\n` + UPSTREAM,
    key: "listeners[0].access.deny[1]",
    value: "10.1.2.3/16",
    message: "host bits are set after /16; did you mean 10.1.0.0/16?",
  },
  {
    name: "bad action in [listeners.access]",
    toml: `[[listeners]]\nurl = "udp://127.0.0.1:53"\n[listeners.access]\naction = "deny"\n` +
      UPSTREAM,
    key: "listeners[0].access.action",
    message: `must be one of "refuse", "drop"`,
  },

  // --- new upstream protocols ---
  {
    name: "tls_name on a udp upstream",
    toml: LISTENER + `[[upstreams]]\nurl = "udp://192.168.1.1"\ntls_name = "router.lan"\n`,
    key: "upstreams[0].tls_name",
    value: "router.lan",
    message: "not used by udp:// upstreams: plain DNS has no certificate to verify",
  },
  {
    name: "ca_file on a tcp upstream",
    toml: LISTENER + `[[upstreams]]\nurl = "tcp://192.168.1.1"\nca_file = "ca.pem"\n`,
    key: "upstreams[0].ca_file",
    message: "not used by tcp:// upstreams",
  },
  {
    name: "udp upstream by hostname",
    toml: LISTENER + `[[upstreams]]\nurl = "udp://router.lan.example"\n` +
      `[forwarding]\nbootstrap = ["9.9.9.9"]\n`,
    key: "upstreams[0].url",
    message: `"router.lan.example" is a hostname; udp:// and tcp:// upstreams need an IP address`,
  },
  {
    name: "https upstream by IP without tls_name",
    toml: LISTENER + `[[upstreams]]\nurl = "https://1.1.1.1/dns-query"\n`,
    key: "upstreams[0].tls_name",
    value: missing,
    message: "required; the name to verify on the upstream's certificate",
  },
  {
    name: "https upstream written as an RFC 8484 URI template",
    toml: LISTENER + `[[upstreams]]\nurl = "https://1.1.1.1/dns-query{?dns}"\n` +
      `tls_name = "one.one.one.one"\n`,
    key: "upstreams[0].url",
    message: `"{?dns}" is a URI template; write the URL without it, ` +
      `e.g. "https://1.1.1.1/dns-query"`,
  },
  {
    name: "https upstream with a query string",
    toml: LISTENER + `[[upstreams]]\nurl = "https://dns.google/resolve?name=x"\n`,
    key: "upstreams[0].url",
    message: `queries and fragments are not allowed, only a path (found "?name=x")`,
  },
  {
    name: "tls upstream with a path",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://1.1.1.1/dns-query"\ntls_name = "a.example"\n`,
    key: "upstreams[0].url",
    message: `paths, queries and fragments are not allowed (found "/dns-query")`,
  },
  {
    name: "single-label upstream hostname",
    toml: LISTENER +
      `[[upstreams]]\nurl = "tls://resolver"\n[forwarding]\nbootstrap = ["9.9.9.9"]\n`,
    key: "upstreams[0].url",
    message: `"resolver" is not a valid host name: a single-label name cannot be looked up`,
  },
  {
    name: "upstream hostname with an underscore",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://dns_1.example.com"\n` +
      `[forwarding]\nbootstrap = ["9.9.9.9"]\n`,
    key: "upstreams[0].url",
    message: `label "dns_1" has characters other than a-z, 0-9, -`,
  },
  {
    name: "upstream hostname with a leading hyphen",
    toml: LISTENER + `[[upstreams]]\nurl = "https://-dns.example.com"\n` +
      `[forwarding]\nbootstrap = ["9.9.9.9"]\n`,
    key: "upstreams[0].url",
    message: `label "-dns" starts or ends with "-"`,
  },
  {
    name: "upstream hostname with an empty label",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://dns..example"\n` +
      `[forwarding]\nbootstrap = ["9.9.9.9"]\n`,
    key: "upstreams[0].url",
    message: "empty label",
  },
  {
    name: "upstream hostname with a numeric top-level label",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://dns.example.123"\n` +
      `[forwarding]\nbootstrap = ["9.9.9.9"]\n`,
    key: "upstreams[0].url",
    message: "the last label is all digits",
  },
  {
    name: "upstream hostname with a bad tls_name",
    toml: LISTENER + `[[upstreams]]\nurl = "tls://dns.quad9.net"\ntls_name = "a b"\n` +
      `[forwarding]\nbootstrap = ["9.9.9.9"]\n`,
    key: "upstreams[0].tls_name",
    message: "not a valid DNS name",
  },
  {
    name: "upstream port key points to url",
    toml: LISTENER + UPSTREAM + `port = 853\n`,
    key: "upstreams[0].port",
    message: `the address and port (and an https path) go in url, e.g. url = "tls://1.1.1.1:853"`,
  },
  {
    name: "bootstrap inside an upstream says where it belongs",
    toml: LISTENER + UPSTREAM + `bootstrap = ["9.9.9.9"]\n`,
    key: "upstreams[0].bootstrap",
    message: "unknown key; bootstrap belongs in [forwarding]",
  },

  // --- [forwarding] additions ---
  {
    name: "strategy outside enum suggests near miss",
    toml: MINIMAL + `[forwarding]\nstrategy = "round-robin"\n`,
    key: "forwarding.strategy",
    value: "round-robin",
    message: `must be one of "failover", "round_robin", "fastest", "parallel"; ` +
      `did you mean "round_robin"?`,
  },
  {
    name: "ecs outside enum",
    toml: MINIMAL + `[forwarding]\necs = "forward"\n`,
    key: "forwarding.ecs",
    message: `must be one of "strip", "keep"`,
  },
  {
    name: "padding as a string",
    toml: MINIMAL + `[forwarding]\npadding = "false"\n`,
    key: "forwarding.padding",
    value: "false",
    message: "expected true or false, got a string; remove the quotes",
  },
  {
    name: "padding as a number",
    toml: MINIMAL + `[forwarding]\npadding = 1\n`,
    key: "forwarding.padding",
    message: "expected true or false, got an integer",
  },
  {
    name: "bootstrap as a string",
    toml: MINIMAL + `[forwarding]\nbootstrap = "9.9.9.9"\n`,
    key: "forwarding.bootstrap",
    value: "9.9.9.9",
    message: `expected an array of addresses, e.g. bootstrap = ["9.9.9.9"]`,
  },
  {
    name: "bootstrap as a table",
    toml: MINIMAL + `[forwarding]\nbootstrap = { a = 1 }\n`,
    key: "forwarding.bootstrap",
    message: "expected an array of addresses, got a table",
  },
  {
    name: "bootstrap entry that is a number",
    toml: MINIMAL + `[forwarding]\nbootstrap = ["9.9.9.9", 53]\n`,
    key: "forwarding.bootstrap[1]",
    value: 53,
    message: `expected an address string such as "9.9.9.9", got an integer`,
  },
  {
    name: "bootstrap by hostname",
    toml: MINIMAL + `[forwarding]\nbootstrap = ["dns.quad9.net"]\n`,
    key: "forwarding.bootstrap[0]",
    message: `"dns.quad9.net" is a hostname; bootstrap servers must be IP addresses`,
  },
  {
    name: "bootstrap written as a URL",
    toml: MINIMAL + `[forwarding]\nbootstrap = ["udp://9.9.9.9"]\n`,
    key: "forwarding.bootstrap[0]",
    message: `write the address without a scheme, e.g. "9.9.9.9"`,
  },
  {
    name: "bootstrap IPv6 without brackets",
    toml: MINIMAL + `[forwarding]\nbootstrap = ["2620:fe::fe"]\n`,
    key: "forwarding.bootstrap[0]",
    message: `IPv6 addresses must be in brackets, e.g. "[2620:fe::fe]"`,
  },
  {
    name: "bootstrap IPv6 with port, without brackets",
    toml: MINIMAL + `[forwarding]\nbootstrap = ["::1:5353"]\n`,
    key: "forwarding.bootstrap[0]",
    message: `e.g. "[::1]:5353"`,
  },
  {
    name: "bootstrap port out of range",
    toml: MINIMAL + `[forwarding]\nbootstrap = ["9.9.9.9:0"]\n`,
    key: "forwarding.bootstrap[0]",
    message: "port must be 1-65535",
  },
  {
    name: "duplicate bootstrap server, default port written out",
    toml: MINIMAL + `[forwarding]\nbootstrap = ["9.9.9.9", "149.112.112.112", "9.9.9.9:53"]\n`,
    key: "forwarding.bootstrap[2]",
    value: "9.9.9.9:53",
    message: "duplicate of forwarding.bootstrap[0]",
  },

  // --- [cache] ---
  {
    name: "unknown cache key suggests a near miss",
    toml: MINIMAL + `[cache]\nmax_entires = 10\n`,
    key: "cache.max_entires",
    message: `did you mean "max_entries"?`,
  },
  {
    name: "key shared by two sections names both",
    toml: MINIMAL + `[log]\nenabled = true\n`,
    key: "log.enabled",
    message: "unknown key; enabled belongs in [cache] or [query_log]",
  },
  {
    name: "cache that is not a table",
    toml: `cache = false\n` + MINIMAL,
    key: "cache",
    message: "expected a table ([cache]), got a boolean",
  },
  {
    name: "enabled as a string",
    toml: MINIMAL + `[cache]\nenabled = "true"\n`,
    key: "cache.enabled",
    message: "expected true or false, got a string; remove the quotes",
  },
  {
    name: "max_entries above 50 million",
    toml: MINIMAL + `[cache]\nmax_entries = 50_000_001\n`,
    key: "cache.max_entries",
    message: "must be 0-50000000",
  },
  {
    name: "negative max_entries",
    toml: MINIMAL + `[cache]\nmax_entries = -1\n`,
    key: "cache.max_entries",
    message: "must be 0-50000000",
  },
  {
    name: "max_memory as a bare number",
    toml: MINIMAL + `[cache]\nmax_memory = 256\n`,
    key: "cache.max_memory",
    value: 256,
    message: `sizes need a unit; write a string such as "256MiB"`,
  },
  {
    name: "max_memory without a unit",
    toml: MINIMAL + `[cache]\nmax_memory = "268435456"\n`,
    key: "cache.max_memory",
    message: `missing unit; write "268435456MiB" or another unit KiB, MiB, GiB`,
  },
  {
    name: "max_memory with a decimal unit",
    toml: MINIMAL + `[cache]\nmax_memory = "256MB"\n`,
    key: "cache.max_memory",
    message: `unknown unit "MB"; did you mean "256MiB"?`,
  },
  {
    name: "max_memory with a fraction",
    toml: MINIMAL + `[cache]\nmax_memory = "1.5GiB"\n`,
    key: "cache.max_memory",
    message: `must be a whole number; write "1536MiB"`,
  },
  {
    name: "max_memory below 1MiB",
    toml: MINIMAL + `[cache]\nmax_memory = "512KiB"\n`,
    key: "cache.max_memory",
    message: "must be 1MiB-64GiB",
  },
  {
    name: "max_memory above 64GiB",
    toml: MINIMAL + `[cache]\nmax_memory = "65GiB"\n`,
    key: "cache.max_memory",
    message: "must be 1MiB-64GiB",
  },
  {
    name: "max_memory that is a boolean",
    toml: MINIMAL + `[cache]\nmax_memory = true\n`,
    key: "cache.max_memory",
    message: `expected a size such as "256MiB", got a boolean`,
  },
  {
    name: "max_ttl of zero points to enabled",
    toml: MINIMAL + `[cache]\nmax_ttl = "0s"\n`,
    key: "cache.max_ttl",
    message: "must be greater than zero; to turn the cache off set enabled = false",
  },
  {
    name: "negative min_ttl",
    toml: MINIMAL + `[cache]\nmin_ttl = "-1s"\n`,
    key: "cache.min_ttl",
    message: "must not be negative",
  },
  {
    name: "min_ttl with milliseconds",
    toml: MINIMAL + `[cache]\nmin_ttl = "1500ms"\n`,
    key: "cache.min_ttl",
    value: "1500ms",
    message: "must be a whole number of seconds",
  },
  {
    name: "ttl as a bare number",
    toml: MINIMAL + `[cache]\nmax_ttl = 86400\n`,
    key: "cache.max_ttl",
    message: `durations need a unit; write a string such as "86400s"`,
  },
  {
    name: "min_ttl above max_ttl",
    toml: MINIMAL + `[cache]\nmin_ttl = "2h"\nmax_ttl = "1h"\n`,
    key: "cache.min_ttl",
    value: "2h",
    message: "must not exceed cache.max_ttl (1h), the ceiling for positive TTLs",
  },
  {
    name: "min_ttl above the default max_ttl",
    toml: MINIMAL + `[cache]\nmin_ttl = "2d"\n`,
    key: "cache.min_ttl",
    message: "must not exceed cache.max_ttl (1d, the default)",
  },
  {
    name: "max_ttl beyond RFC 2181",
    toml: MINIMAL + `[cache]\nmax_ttl = "30000d"\n`,
    key: "cache.max_ttl",
    message: "must be at most 2147483647s (RFC 2181 §8)",
  },
  {
    name: "servfail_ttl above five minutes",
    toml: MINIMAL + `[cache]\nservfail_ttl = "301s"\n`,
    key: "cache.servfail_ttl",
    value: "301s",
    message: "must be at most 5m (RFC 2308 §7.1)",
  },
  {
    name: "stale_max_age of zero points to serve_stale",
    toml: MINIMAL + `[cache]\nstale_max_age = "0s"\n`,
    key: "cache.stale_max_age",
    message: "must be greater than zero; to stop serving stale answers set serve_stale = false",
  },
  {
    name: "stale_answer_after at query_timeout",
    toml: MINIMAL + `[server]\nquery_timeout = "3s"\n[cache]\nstale_answer_after = "3s"\n`,
    key: "cache.stale_answer_after",
    value: "3s",
    message: "must be less than server.query_timeout (3s), or a stale answer could never beat " +
      "the timeout",
  },
  {
    name: "stale_answer_after above the default query_timeout",
    toml: MINIMAL + `[cache]\nstale_answer_after = "10s"\n`,
    key: "cache.stale_answer_after",
    message: "must be less than server.query_timeout (5s, the default)",
  },
  {
    name: "stale_answer_after below a millisecond",
    toml: MINIMAL + `[cache]\nstale_answer_after = "0.5ms"\n`,
    key: "cache.stale_answer_after",
    message: "must be a whole number of milliseconds",
  },
  {
    name: "prefetch as a number",
    toml: MINIMAL + `[cache]\nprefetch = 0\n`,
    key: "cache.prefetch",
    message: "expected true or false, got an integer",
  },
  {
    name: "serve_stale as a string",
    toml: MINIMAL + `[cache]\nserve_stale = "yes"\n`,
    key: "cache.serve_stale",
    message: "expected true or false, got a string",
  },

  // --- [access] ---
  {
    name: "allow as a string",
    toml: MINIMAL + `[access]\nallow = "10.0.0.0/8"\n`,
    key: "access.allow",
    value: "10.0.0.0/8",
    message: `expected an array of address prefixes, e.g. allow = ["10.0.0.0/8"]`,
  },
  {
    name: "deny as a number",
    toml: MINIMAL + `[access]\ndeny = 10\n`,
    key: "access.deny",
    message: `expected an array of address prefixes such as ["10.0.0.0/8"], got an integer`,
  },
  {
    name: "empty allow list",
    toml: MINIMAL + `[access]\nallow = []\n`,
    key: "access.allow",
    value: [],
    message: "must not be empty: an empty allow list refuses every client",
  },
  {
    name: "allow entry that is a number",
    toml: MINIMAL + `[access]\nallow = ["10.0.0.0/8", 192]\n`,
    key: "access.allow[1]",
    value: 192,
    message: `expected a prefix string such as "10.0.0.0/8", got an integer`,
  },
  {
    name: "allow entry with host bits set",
    toml: MINIMAL + `[access]\nallow = ["192.168.1.1/24"]\n`,
    key: "access.allow[0]",
    value: "192.168.1.1/24",
    message: "host bits are set after /24; did you mean 192.168.1.0/24?",
  },
  {
    name: "allow entry with a prefix too long",
    toml: MINIMAL + `[access]\nallow = ["10.0.0.0/33"]\n`,
    key: "access.allow[0]",
    message: "prefix length 33 is out of range 0-32 for IPv4",
  },
  {
    name: "IPv6 allow entry with host bits",
    toml: MINIMAL + `[access]\nallow = ["2001:db8::1/32"]\n`,
    key: "access.allow[0]",
    message: "did you mean 2001:db8::/32?",
  },
  {
    name: "allow entry that is a hostname",
    toml: MINIMAL + `[access]\nallow = ["localhost"]\n`,
    key: "access.allow[0]",
    message: `"localhost" is not an IPv4 or IPv6 address`,
  },
  {
    name: "empty allow entry",
    toml: MINIMAL + `[access]\nallow = [""]\n`,
    key: "access.allow[0]",
    message: `"" is not an IP address or prefix`,
  },
  {
    name: "access action outside enum",
    toml: MINIMAL + `[access]\naction = "REFUSE"\n`,
    key: "access.action",
    message: `did you mean "refuse"?`,
  },
  {
    name: "top-level allow says where it belongs",
    toml: `allow = ["10.0.0.0/8"]\n` + MINIMAL,
    key: "allow",
    message: "allow belongs in [access]",
  },

  // --- [rate_limit] ---
  {
    name: "negative qps",
    toml: MINIMAL + `[rate_limit]\nqps = -1\n`,
    key: "rate_limit.qps",
    value: -1,
    message: "must be 0-1000000",
  },
  {
    name: "qps as a string",
    toml: MINIMAL + `[rate_limit]\nqps = "0.5"\n`,
    key: "rate_limit.qps",
    message: "expected a number, got a string; remove the quotes",
  },
  {
    name: "qps infinite",
    toml: MINIMAL + `[rate_limit]\nqps = inf\n`,
    key: "rate_limit.qps",
    message: "must be 0-1000000",
  },
  {
    name: "qps not a number",
    toml: MINIMAL + `[rate_limit]\nqps = nan\n`,
    key: "rate_limit.qps",
    message: "must be 0-1000000",
  },
  {
    name: "burst of zero",
    toml: MINIMAL + `[rate_limit]\nqps = 10\nburst = 0\n`,
    key: "rate_limit.burst",
    value: 0,
    message: "must be 1-10000000",
  },
  {
    name: "fractional burst",
    toml: MINIMAL + `[rate_limit]\nqps = 10\nburst = 2.5\n`,
    key: "rate_limit.burst",
    message: "must be a whole number",
  },
  {
    name: "ipv4_prefix below 8",
    toml: MINIMAL + `[rate_limit]\nipv4_prefix = 7\n`,
    key: "rate_limit.ipv4_prefix",
    message: "must be 8-32",
  },
  {
    name: "ipv4_prefix above 32",
    toml: MINIMAL + `[rate_limit]\nipv4_prefix = 33\n`,
    key: "rate_limit.ipv4_prefix",
    message: "must be 8-32",
  },
  {
    name: "ipv6_prefix below 16",
    toml: MINIMAL + `[rate_limit]\nipv6_prefix = 8\n`,
    key: "rate_limit.ipv6_prefix",
    message: "must be 16-128",
  },
  {
    name: "ipv6_prefix above 128",
    toml: MINIMAL + `[rate_limit]\nipv6_prefix = 129\n`,
    key: "rate_limit.ipv6_prefix",
    message: "must be 16-128",
  },
  {
    name: "rate limit action outside enum",
    toml: MINIMAL + `[rate_limit]\naction = "truncated"\n`,
    key: "rate_limit.action",
    message: `must be one of "drop", "truncate", "refuse"; did you mean "truncate"?`,
  },
  {
    name: "max_buckets of zero",
    toml: MINIMAL + `[rate_limit]\nmax_buckets = 0\n`,
    key: "rate_limit.max_buckets",
    message: "must be 1-10000000",
  },
  {
    name: "slip above 10",
    toml: MINIMAL + `[rate_limit]\nslip = 11\n`,
    key: "rate_limit.slip",
    message: "must be 0-10",
  },
  {
    name: "negative errors_qps",
    toml: MINIMAL + `[rate_limit]\nerrors_qps = -1\n`,
    key: "rate_limit.errors_qps",
    message: "must be 0-1000000",
  },
  {
    name: "rate limit near miss",
    toml: MINIMAL + `[rate_limit]\nbrust = 10\n`,
    key: "rate_limit.brust",
    message: `did you mean "burst"?`,
  },
  {
    name: "ratelimit section suggests rate_limit",
    toml: MINIMAL + `[ratelimit]\nqps = 1\n`,
    key: "ratelimit",
    message: `did you mean "rate_limit"?`,
  },

  // --- [policy] ---
  {
    name: "any_queries outside enum",
    toml: MINIMAL + `[policy]\nany_queries = "rfc-8482"\n`,
    key: "policy.any_queries",
    value: "rfc-8482",
    message: `must be one of "rfc8482", "refuse", "forward"; did you mean "rfc8482"?`,
  },
  {
    name: "any_queries as a boolean",
    toml: MINIMAL + `[policy]\nany_queries = false\n`,
    key: "policy.any_queries",
    message: "expected a string, got a boolean",
  },
  {
    name: "non_recursive outside enum",
    toml: MINIMAL + `[policy]\nnon_recursive = "allow"\n`,
    key: "policy.non_recursive",
    value: "allow",
    message: `must be one of "refuse", "forward"`,
  },
  {
    name: "chaos_identity with a control character",
    toml: MINIMAL + `[policy]\nchaos_identity = "a\\nb"\n`,
    key: "policy.chaos_identity",
    value: "a\nb",
    message: "must be printable ASCII (no control or non-ASCII characters)",
  },
  {
    name: "chaos_identity longer than a TXT string",
    toml: MINIMAL + `[policy]\nchaos_identity = "${"x".repeat(256)}"\n`,
    key: "policy.chaos_identity",
    message: "must be at most 255 characters, got 256",
  },

  // --- [admin] ---
  {
    name: "admin without address",
    toml: MINIMAL + `[admin]\n`,
    key: "admin.address",
    value: missing,
    message: `required; e.g. address = "127.0.0.1:9153"`,
  },
  {
    name: "admin address without port",
    toml: MINIMAL + `[admin]\naddress = "127.0.0.1"\n`,
    key: "admin.address",
    message: `port is required, e.g. "127.0.0.1:9153"`,
  },
  {
    name: "admin address as a URL",
    toml: MINIMAL + `[admin]\naddress = "http://127.0.0.1:9153"\n`,
    key: "admin.address",
    message: `write the address without a scheme, e.g. "127.0.0.1:9153"`,
  },
  {
    name: "admin address by hostname",
    toml: MINIMAL + `[admin]\naddress = "localhost:9153"\n`,
    key: "admin.address",
    message: `"localhost" is a hostname; the admin endpoint must bind an IP address`,
  },
  {
    name: "admin IPv6 address without brackets",
    toml: MINIMAL + `[admin]\naddress = "::1:9153"\n`,
    key: "admin.address",
    message: `IPv6 addresses must be in brackets, e.g. "[::1]:9153"`,
  },
  {
    name: "admin port as a number",
    toml: MINIMAL + `[admin]\naddress = 9153\n`,
    key: "admin.address",
    message: "expected a string, got an integer",
  },
  {
    name: "admin on the address of a tcp listener",
    toml: MINIMAL +
      `[[listeners]]\nurl = "tcp://127.0.0.1:9153"\n[admin]\naddress = "127.0.0.1:9153"\n`,
    key: "admin.address",
    value: "127.0.0.1:9153",
    message: "listeners[1] (tcp://127.0.0.1:9153) already uses this TCP address and port",
  },
  {
    name: "admin port key suggests address",
    toml: MINIMAL + `[admin]\nport = 9153\n`,
    key: "admin.port",
    message: "known keys in [admin]: address",
  },
  {
    name: "admin as a string",
    toml: `admin = "127.0.0.1:9153"\n` + MINIMAL,
    key: "admin",
    message: "expected a table ([admin]), got a string",
  },

  // --- [query_log] ---
  {
    name: "query log sink outside enum",
    toml: MINIMAL + `[query_log]\nsink = "StdOut"\n`,
    key: "query_log.sink",
    message: `must be one of "stdout", "file", "syslog"; did you mean "stdout"?`,
  },
  {
    name: "query log sink that is no near miss",
    toml: MINIMAL + `[query_log]\nsink = "stderr"\n`,
    key: "query_log.sink",
    message: `must be one of "stdout", "file", "syslog"`,
  },
  {
    name: "query log format outside enum",
    toml: MINIMAL + `[query_log]\nformat = "csv"\n`,
    key: "query_log.format",
    message: `must be one of "json", "text"`,
  },
  {
    name: "query log enabled as a string",
    toml: MINIMAL + `[query_log]\nenabled = "false"\n`,
    key: "query_log.enabled",
    message: "remove the quotes",
  },
  {
    name: "file sink without path",
    toml: MINIMAL + `[query_log]\nenabled = true\nsink = "file"\n`,
    key: "query_log.path",
    value: missing,
    message: `required with sink = "file", e.g. path = "/var/log/dotproxy/queries.log"`,
  },
  {
    name: "file sink with an empty path",
    toml: MINIMAL + `[query_log]\nsink = "file"\npath = ""\n`,
    key: "query_log.path",
    message: "must not be empty",
  },
  {
    name: "path without the file sink",
    toml: MINIMAL + `[query_log]\npath = "q.log"\n`,
    key: "query_log.path",
    value: "q.log",
    message: `only used with sink = "file" (sink is "stdout")`,
  },
  {
    name: "syslog sink without address",
    toml: MINIMAL + `[query_log]\nsink = "syslog"\n`,
    key: "query_log.syslog_address",
    value: missing,
    message:
      `required; required with sink = "syslog", e.g. syslog_address = "udp://192.0.2.10:514"`,
  },
  {
    name: "syslog_address without the syslog sink",
    toml: MINIMAL +
      `[query_log]\nsink = "file"\npath = "q.log"\nsyslog_address = "udp://192.0.2.1"\n`,
    key: "query_log.syslog_address",
    message: `only used with sink = "syslog" (sink is "file")`,
  },
  {
    name: "syslog_address without scheme",
    toml: MINIMAL + `[query_log]\nsink = "syslog"\nsyslog_address = "192.0.2.10:514"\n`,
    key: "query_log.syslog_address",
    message: `expected a URL like "udp://192.0.2.10:514"`,
  },
  {
    name: "syslog_address with tls scheme",
    toml: MINIMAL + `[query_log]\nsink = "syslog"\nsyslog_address = "tls://192.0.2.10"\n`,
    key: "query_log.syslog_address",
    message: `scheme "tls" is not supported; supported: udp, tcp`,
  },
  {
    name: "syslog_address by hostname",
    toml: MINIMAL + `[query_log]\nsink = "syslog"\nsyslog_address = "udp://logs.example.com"\n`,
    key: "query_log.syslog_address",
    message: `"logs.example.com" is a hostname; use the collector's IP address`,
  },
  {
    name: "syslog near miss",
    toml: MINIMAL + `[query_log]\nsink = "syslog"\nsyslog_addr = "udp://192.0.2.10"\n`,
    key: "query_log.syslog_addr",
    message: `did you mean "syslog_address"?`,
  },

  // --- durations: days ---
  {
    name: "duration in days beyond timer range",
    toml: MINIMAL + `[forwarding]\nmax_failure_backoff = "25d"\n`,
    key: "forwarding.max_failure_backoff",
    message: "must be at most 2147483647ms (about 24 days)",
  },
];

for (const c of cases) {
  Deno.test(`parseConfig rejects: ${c.name}`, () => assertRejected(c));
}
