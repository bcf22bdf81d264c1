/**
 * Loading and validating dotproxy's TOML configuration. User mistakes come back as ConfigError
 * values naming the key, the value and the fix; only bugs throw. File access goes through an
 * injected FileReader so every rule is testable without a disk.
 */

import { parse, TomlError } from "smol-toml";
import { dirname, isAbsolute, join } from "node:path";
import { type Cidr, parseCidr } from "../policy/acl.ts";
import { closest, formatConfigError, keyPath } from "./errors.ts";
import { formatDuration, isBareNumber, parseDuration } from "./duration.ts";
import { ipKey, isIP } from "./ip.ts";
import { formatSize, parseSize, sizeHint } from "./size.ts";
import { type EndpointRules, parseEndpoint, parseHostPort } from "./url.ts";
import {
  ACCESS_ACTIONS,
  type AccessConfig,
  type AdminConfig,
  ANY_QUERY_ACTIONS,
  type BootstrapServer,
  type CacheConfig,
  type Config,
  type ConfigError,
  DEFAULT_ACCESS,
  DEFAULT_BOOTSTRAP_PORT,
  DEFAULT_CACHE,
  DEFAULT_CLIENT_HEADER,
  DEFAULT_DOH_PATH,
  DEFAULT_FORWARDING,
  DEFAULT_LIMITS,
  DEFAULT_LOG,
  DEFAULT_POLICY,
  DEFAULT_QUERY_LOG,
  DEFAULT_RATE_LIMIT,
  DEFAULT_SERVER,
  DEFAULT_SYSLOG_PORT,
  DEFAULT_UPSTREAM_PORTS,
  ECS_ACTIONS,
  FORWARDING_STRATEGIES,
  type ForwardingConfig,
  LIMITS,
  type ListenerConfig,
  LOG_FORMATS,
  LOG_LEVELS,
  OVERLOAD_ACTIONS,
  QUERY_LOG_FORMATS,
  QUERY_LOG_SINKS,
  type QueryLogConfig,
  RATE_LIMIT_ACTIONS,
  type RateLimitConfig,
  type UpstreamConfig,
} from "./schema.ts";

export type * from "./schema.ts";
export { configWarnings } from "./warnings.ts";
export { formatConfigError, parseDuration };

/** Reads a text file; throws on unreadable files (the error message is shown as the OS reason). */
export type FileReader = (path: string) => Promise<string>;

/** Options for parseConfig. */
export interface ParseOptions {
  /** The config file path, used in messages. */
  path: string;
  /** Where relative paths (ca_file, cert_file, key_file, query_log.path) resolve from. */
  baseDir: string;
  /** How ca_file, cert_file and key_file contents are read. */
  readFile: FileReader;
}

/** Tells a loaded config from an error without inspecting fields by hand. */
export function isConfigError(x: Config | ConfigError): x is ConfigError {
  return !("listeners" in x) && "key" in x && "message" in x;
}

/** Reads `path` with Deno.readTextFile (the only Deno call, default reader) then parseConfig. */
export async function loadConfig(
  path: string,
  readFile: FileReader = (p) => Deno.readTextFile(p),
): Promise<Config | ConfigError> {
  let text: string;
  try {
    text = await readFile(path);
  } catch (e) {
    return { key: "config", value: undefined, message: `cannot read: ${osReason(e)}`, path };
  }
  return parseConfig(text, { path, baseDir: dirname(path), readFile });
}

/** Parses and validates TOML text; relative file paths resolve against baseDir. */
export async function parseConfig(
  text: string,
  opts: ParseOptions,
): Promise<Config | ConfigError> {
  try {
    return await validate(text, opts);
  } catch (e) {
    if (e instanceof Invalid) {
      return { key: e.key, value: e.value, message: e.message, path: opts.path };
    }
    throw e;
  }
}

/** A user mistake found deep in validation; converted to a ConfigError in parseConfig. */
class Invalid {
  constructor(readonly key: string, readonly value: unknown, readonly message: string) {}
}

type Table = Record<string, unknown>;

/** Known keys per section; "" is the top level. [listeners.access] uses the keys of [access]. */
const SECTIONS = {
  "": [
    "server",
    "listeners",
    "upstreams",
    "forwarding",
    "limits",
    "log",
    "cache",
    "access",
    "rate_limit",
    "policy",
    "admin",
    "query_log",
  ],
  server: ["query_timeout", "udp_max_size", "tcp_idle_timeout", "shutdown_grace"],
  listeners: ["url", "cert_file", "key_file", "trusted_proxies", "client_header", "access"],
  upstreams: ["url", "tls_name", "ca_file"],
  forwarding: [
    "attempt_timeout",
    "connect_timeout",
    "idle_timeout",
    "connections_per_upstream",
    "max_in_flight_per_connection",
    "failure_backoff",
    "max_failure_backoff",
    "strategy",
    "bootstrap",
    "padding",
    "ecs",
  ],
  limits: [
    "max_in_flight",
    "overload",
    "tcp_max_connections",
    "tcp_max_connections_per_client",
    "tcp_max_pipelined",
    "tcp_read_timeout",
  ],
  log: ["level", "format"],
  cache: [
    "enabled",
    "max_entries",
    "max_memory",
    "min_ttl",
    "max_ttl",
    "max_negative_ttl",
    "servfail_ttl",
    "serve_stale",
    "stale_max_age",
    "stale_answer_after",
    "prefetch",
  ],
  access: ["allow", "deny", "action"],
  rate_limit: [
    "qps",
    "burst",
    "ipv4_prefix",
    "ipv6_prefix",
    "action",
    "max_buckets",
    "slip",
    "errors_qps",
  ],
  policy: ["any_queries"],
  admin: ["address"],
  query_log: ["enabled", "sink", "path", "syslog_address", "format"],
} as const;
type Section = keyof typeof SECTIONS;

/** Every key the configuration knows, per section ("" is the top level), for doc tests. */
export const KNOWN_KEYS: Readonly<Record<Section, readonly string[]>> = SECTIONS;

const LISTENER_URL: EndpointRules = {
  schemes: ["udp", "tcp", "tls", "https", "http"],
  moreSchemesLater: false,
  pathSchemes: ["https", "http"],
  example: "udp://127.0.0.1:5053",
  hostnameHint: "listeners must bind an IP address, e.g. 127.0.0.1 or ::1",
};

const UPSTREAM_URL: EndpointRules = {
  schemes: ["tls", "https", "udp", "tcp"],
  moreSchemesLater: true,
  defaultPorts: DEFAULT_UPSTREAM_PORTS,
  pathSchemes: ["https"],
  nameSchemes: ["tls", "https"],
  example: "tls://1.1.1.1:853",
  hostnameHint: "udp:// and tcp:// upstreams need an IP address (only tls:// and https:// " +
    "upstreams may be named, resolved through [forwarding] bootstrap)",
};

const SYSLOG_URL: EndpointRules = {
  schemes: ["udp", "tcp"],
  moreSchemesLater: false,
  defaultPort: DEFAULT_SYSLOG_PORT,
  example: "udp://192.0.2.10:514",
  hostnameHint: "use the collector's IP address: a name would be looked up through the " +
    "system resolver, which may be this proxy",
};

const BOOTSTRAP_EXAMPLE = `bootstrap = ["9.9.9.9", "[2620:fe::fe]:53"]`;

async function validate(text: string, opts: ParseOptions): Promise<Config> {
  const root = parseToml(text);
  checkKeys(root, "", "");
  const files: FileJob[] = [];

  const access = accessRules(section(root, "access"), "access", DEFAULT_ACCESS);
  const listeners = entries(root, "listeners").map(([t, at]) =>
    listener(t, at, opts.baseDir, access, files)
  );
  checkListenerAddresses(listeners);
  const upstreams = entries(root, "upstreams").map(([t, at]) =>
    upstream(t, at, opts.baseDir, files)
  );

  const s = section(root, "server");
  const queryTimeoutMs = duration(s, "server", "query_timeout", DEFAULT_SERVER.queryTimeoutMs);
  const server = {
    udpMaxSize: integer(s, "server", "udp_max_size", DEFAULT_SERVER.udpMaxSize, LIMITS.udpMaxSize),
    tcpIdleTimeoutMs: duration(s, "server", "tcp_idle_timeout", DEFAULT_SERVER.tcpIdleTimeoutMs),
    shutdownGraceMs: duration(s, "server", "shutdown_grace", DEFAULT_SERVER.shutdownGraceMs),
    queryTimeoutMs,
  };

  const forwarding = forwardingSection(section(root, "forwarding"), s, queryTimeoutMs);
  if (forwarding.bootstrap.length === 0) {
    const i = upstreams.findIndex((u) => !u.hostnameIsIp);
    if (i >= 0) {
      throw new Invalid(
        `upstreams[${i}].url`,
        upstreams[i].url,
        `a hostname upstream needs [forwarding] bootstrap servers to look up its address, ` +
          `e.g. ${BOOTSTRAP_EXAMPLE}; or write an IP address and set tls_name`,
      );
    }
  }

  const m = section(root, "limits");
  const L = DEFAULT_LIMITS;
  const limits = {
    maxInFlight: integer(m, "limits", "max_in_flight", L.maxInFlight, LIMITS.maxInFlight),
    overload: oneOf(m, "limits", "overload", L.overload, OVERLOAD_ACTIONS),
    tcpMaxConnections: integer(
      m,
      "limits",
      "tcp_max_connections",
      L.tcpMaxConnections,
      LIMITS.tcpMaxConnections,
    ),
    tcpMaxConnectionsPerClient: integer(
      m,
      "limits",
      "tcp_max_connections_per_client",
      L.tcpMaxConnectionsPerClient,
      LIMITS.tcpMaxConnectionsPerClient,
    ),
    tcpMaxPipelined: integer(
      m,
      "limits",
      "tcp_max_pipelined",
      L.tcpMaxPipelined,
      LIMITS.tcpMaxPipelined,
    ),
    tcpReadTimeoutMs: duration(m, "limits", "tcp_read_timeout", L.tcpReadTimeoutMs),
  };

  const l = section(root, "log");
  const log = {
    level: oneOf(l, "log", "level", DEFAULT_LOG.level, LOG_LEVELS),
    format: oneOf(l, "log", "format", DEFAULT_LOG.format, LOG_FORMATS),
  };

  const cache = cacheSection(section(root, "cache"), s, queryTimeoutMs);
  const rateLimit = rateLimitSection(section(root, "rate_limit"));
  const p = section(root, "policy");
  const policy = {
    anyQueries: oneOf(p, "policy", "any_queries", DEFAULT_POLICY.anyQueries, ANY_QUERY_ACTIONS),
  };
  const admin = adminSection(root, listeners);
  const queryLog = queryLogSection(section(root, "query_log"), opts.baseDir);

  await readFiles(files, opts.readFile);
  return {
    listeners,
    upstreams,
    server,
    forwarding,
    limits,
    log,
    cache,
    access,
    rateLimit,
    policy,
    admin,
    queryLog,
    path: opts.path,
  };
}

function parseToml(text: string): Table {
  try {
    return parse(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const reason = e.message.split("\n")[0].replace(/^Invalid TOML document:\s*/, "");
      throw new Invalid(
        "config",
        undefined,
        `TOML syntax error at line ${e.line}, column ${e.column}: ${reason}`,
      );
    }
    throw e;
  }
}

// ---- structure ----

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** "a string", "an integer", ... for "expected X, got Y" messages. */
function describe(v: unknown): string {
  if (typeof v === "string") return "a string";
  if (typeof v === "number") return Number.isInteger(v) ? "an integer" : "a float";
  if (typeof v === "boolean") return "a boolean";
  if (v instanceof Date) return "a date";
  if (Array.isArray(v)) return "an array";
  if (isTable(v)) return "a table";
  return typeof v;
}

/** How a section is written: `[server]`, `[[listeners]]`, `[listeners.access]`. */
function sectionLabel(s: Section, at = s as string): string {
  if (s === "") return "the top level";
  if (s === "listeners" || s === "upstreams") return `[[${s}]]`;
  return at.startsWith("listeners[") ? `[listeners.${s}]` : `[${s}]`;
}

/** Rejects keys the section does not know, with the most useful hint we can find. */
function checkKeys(table: Table, s: Section, at: string): void {
  const known: readonly string[] = SECTIONS[s];
  for (const [key, value] of Object.entries(table)) {
    if (known.includes(key)) continue;
    throw new Invalid(keyPath(at, key), value, `unknown key; ${unknownKeyHint(key, s, at)}`);
  }
}

function unknownKeyHint(key: string, s: Section, at: string): string {
  const known: readonly string[] = SECTIONS[s];
  const near = closest(key, known);
  if (near) return `did you mean "${near}"?`;
  if (
    (s === "listeners" || s === "upstreams") &&
    /^(host(name)?|address|addr|ip|port|path|scheme|protocol)$/.test(key)
  ) {
    const example = s === "listeners" ? LISTENER_URL.example : UPSTREAM_URL.example;
    return `the address and port (and an https path) go in url, e.g. url = ${
      JSON.stringify(example)
    }`;
  }
  const homes = (Object.entries(SECTIONS) as [Section, readonly string[]][])
    .filter(([other, keys]) => other !== "" && other !== s && keys.includes(key))
    .map(([other]) => sectionLabel(other));
  if (homes.length > 0) return `${key} belongs in ${homes.join(" or ")}`;
  return `known keys in ${sectionLabel(s, at)}: ${known.join(", ")}`;
}

/** A [section] table; absent sections are empty so defaults apply. */
function section(root: Table, name: Exclude<Section, "" | "listeners" | "upstreams">): Table {
  return subTable(root[name], name, name);
}

/** A table value at `at` (absent: empty), its keys checked against section `s`. */
function subTable(
  v: unknown,
  s: Exclude<Section, "" | "listeners" | "upstreams">,
  at: string,
): Table {
  if (v === undefined) return {};
  if (!isTable(v)) {
    throw new Invalid(at, v, `expected a table (${sectionLabel(s, at)}), got ${describe(v)}`);
  }
  checkKeys(v, s, at);
  return v;
}

/** The entries of an [[array of tables]], each with its key path; at least one is required. */
function entries(root: Table, name: "listeners" | "upstreams"): [Table, string][] {
  const v = root[name];
  const required = `at least one [[${name}]] entry is required`;
  if (v === undefined) throw new Invalid(name, v, required);
  if (!Array.isArray(v)) {
    const hint = isTable(v) ? `; write [[${name}]] with double brackets` : "";
    throw new Invalid(name, v, `expected an array of tables, got ${describe(v)}${hint}`);
  }
  if (v.length === 0) throw new Invalid(name, v, required);
  return v.map((item, i) => {
    const at = keyPath(name, i);
    if (!isTable(item)) {
      throw new Invalid(at, item, `expected a table with a url key, got ${describe(item)}`);
    }
    checkKeys(item, name, at);
    return [item, at];
  });
}

// ---- listeners ----

function listener(
  t: Table,
  at: string,
  baseDir: string,
  globalAccess: AccessConfig,
  files: FileJob[],
): ListenerConfig {
  const url = requiredString(t, at, "url", `e.g. ${JSON.stringify(LISTENER_URL.example)}`);
  const r = parseEndpoint(url, LISTENER_URL);
  if (!r.ok) throw new Invalid(keyPath(at, "url"), url, r.message);
  const { scheme, hostname, port, path } = r.endpoint;
  const protocol = scheme as ListenerConfig["protocol"];
  const out: ListenerConfig = { url, protocol, hostname, port };
  const web = protocol === "https" || protocol === "http";
  const secure = protocol === "tls" || protocol === "https";

  if (web) out.path = path ?? DEFAULT_DOH_PATH;

  const what = `${protocol}:// listeners`;
  if (secure) {
    const certFile = filePath(
      t,
      at,
      "cert_file",
      baseDir,
      `required for ${what}: ` +
        `the PEM certificate chain to present, e.g. cert_file = "/etc/dotproxy/cert.pem"`,
    );
    const keyFile = filePath(
      t,
      at,
      "key_file",
      baseDir,
      `required for ${what}: ` +
        `the PEM private key of cert_file, e.g. key_file = "/etc/dotproxy/key.pem"`,
    );
    out.certFile = certFile;
    out.keyFile = keyFile;
    files.push({
      key: keyPath(at, "cert_file"),
      value: t.cert_file,
      path: certFile,
      extract: pemCertificates,
      apply: (blocks) => out.cert = blocks.join(""),
    });
    files.push({
      key: keyPath(at, "key_file"),
      value: t.key_file,
      path: keyFile,
      extract: pemPrivateKey,
      apply: (blocks) => out.key = blocks.join(""),
    });
  } else {
    const why = protocol === "http"
      ? "http:// is plain HTTP behind a TLS-terminating proxy; use https:// to serve TLS here"
      : `only tls:// and https:// listeners present a certificate`;
    notAllowed(t, at, "cert_file", `not used by ${what}; ${why}`);
    notAllowed(t, at, "key_file", `not used by ${what}; ${why}`);
  }

  if (web) {
    out.trustedProxies = t.trusted_proxies === undefined
      ? []
      : cidrList(t, at, "trusted_proxies", false);
    out.clientHeader = t.client_header === undefined
      ? DEFAULT_CLIENT_HEADER
      : headerName(t, at, "client_header");
  } else {
    const why = `not used by ${what}; only https:// and http:// listeners see HTTP headers`;
    notAllowed(t, at, "trusted_proxies", why);
    notAllowed(t, at, "client_header", why);
  }

  if (t.access !== undefined) {
    const a = keyPath(at, "access");
    out.access = accessRules(subTable(t.access, "access", a), a, globalAccess);
  }
  return out;
}

/**
 * Two listeners on one address and port cannot both bind. udp listeners bind UDP sockets; tcp,
 * tls, https and http listeners all bind TCP sockets, so they need distinct ports.
 */
function checkListenerAddresses(listeners: ListenerConfig[]): void {
  const seen = new Map<string, number>();
  listeners.forEach((l, i) => {
    const transport = l.protocol === "udp" ? "UDP" : "TCP";
    const id = `${transport} ${ipKey(l.hostname)} ${l.port}`;
    const first = seen.get(id);
    if (first !== undefined) {
      const other = listeners[first];
      const message = other.protocol === l.protocol
        ? `duplicate of listeners[${first}]`
        : `listeners[${first}] (${other.url}) already uses TCP port ${l.port} on this address; ` +
          `tcp, tls, https and http listeners each need their own port`;
      throw new Invalid(`listeners[${i}].url`, l.url, message);
    }
    seen.set(id, i);
  });
}

/** An HTTP header name (RFC 9110 token), lower-cased. */
function headerName(t: Table, at: string, key: string): string {
  const v = requiredString(t, at, key, `an HTTP header name, e.g. "${DEFAULT_CLIENT_HEADER}"`);
  if (v.endsWith(":")) {
    throw new Invalid(keyPath(at, key), v, `write the header name without ":"`);
  }
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(v)) {
    throw new Invalid(
      keyPath(at, key),
      v,
      `not an HTTP header name (letters, digits and - only), e.g. "${DEFAULT_CLIENT_HEADER}"`,
    );
  }
  return v.toLowerCase();
}

// ---- upstreams ----

function upstream(t: Table, at: string, baseDir: string, files: FileJob[]): UpstreamConfig {
  const url = requiredString(t, at, "url", `e.g. ${JSON.stringify(UPSTREAM_URL.example)}`);
  const r = parseEndpoint(url, UPSTREAM_URL);
  if (!r.ok) throw new Invalid(keyPath(at, "url"), url, r.message);
  const { scheme, hostname, hostnameIsIp, port, path } = r.endpoint;
  const protocol = scheme as UpstreamConfig["protocol"];
  const out: UpstreamConfig = {
    url,
    protocol,
    hostname,
    hostnameIsIp,
    port,
    tlsName: "",
    caCerts: [],
  };
  if (protocol === "https") out.path = path ?? DEFAULT_DOH_PATH;

  if (protocol === "udp" || protocol === "tcp") {
    const why = `not used by ${protocol}:// upstreams: plain DNS has no certificate to verify`;
    notAllowed(t, at, "tls_name", why);
    notAllowed(t, at, "ca_file", why);
    return out;
  }

  if (t.tls_name === undefined && !hostnameIsIp) {
    out.tlsName = hostname;
  } else {
    out.tlsName = requiredString(
      t,
      at,
      "tls_name",
      `the name to verify on the upstream's certificate, e.g. "cloudflare-dns.com"`,
    );
    checkTlsName(out.tlsName, keyPath(at, "tls_name"));
  }

  if (t.ca_file !== undefined) {
    const caFile = filePath(t, at, "ca_file", baseDir, "");
    out.caFile = caFile;
    files.push({
      key: keyPath(at, "ca_file"),
      value: t.ca_file,
      path: caFile,
      extract: pemCertificates,
      apply: (blocks) => out.caCerts = [...blocks],
    });
  }
  return out;
}

/** tls_name is matched against the certificate, so it must be a DNS name or an IP literal. */
function checkTlsName(name: string, key: string): void {
  if (name.includes("://")) {
    throw new Invalid(key, name, `must be a bare name, not a URL, e.g. "cloudflare-dns.com"`);
  }
  if (isIP(name)) return;
  const label = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
  if (name.length > 253 || !name.split(".").every((l) => label.test(l))) {
    throw new Invalid(key, name, `not a valid DNS name, e.g. "cloudflare-dns.com"`);
  }
}

// ---- sections ----

function forwardingSection(f: Table, s: Table, queryTimeoutMs: number): ForwardingConfig {
  const D = DEFAULT_FORWARDING;
  const forwarding: ForwardingConfig = {
    queryTimeoutMs,
    attemptTimeoutMs: duration(f, "forwarding", "attempt_timeout", D.attemptTimeoutMs),
    connectTimeoutMs: duration(f, "forwarding", "connect_timeout", D.connectTimeoutMs),
    idleTimeoutMs: duration(f, "forwarding", "idle_timeout", D.idleTimeoutMs),
    connectionsPerUpstream: integer(
      f,
      "forwarding",
      "connections_per_upstream",
      D.connectionsPerUpstream,
      LIMITS.connectionsPerUpstream,
    ),
    maxInFlightPerConnection: integer(
      f,
      "forwarding",
      "max_in_flight_per_connection",
      D.maxInFlightPerConnection,
      LIMITS.maxInFlightPerConnection,
    ),
    failureBackoffMs: duration(f, "forwarding", "failure_backoff", D.failureBackoffMs),
    maxFailureBackoffMs: duration(f, "forwarding", "max_failure_backoff", D.maxFailureBackoffMs),
    strategy: oneOf(f, "forwarding", "strategy", D.strategy, FORWARDING_STRATEGIES),
    bootstrap: bootstrapServers(f),
    padding: bool(f, "forwarding", "padding", D.padding),
    ecs: oneOf(f, "forwarding", "ecs", D.ecs, ECS_ACTIONS),
  };
  notAbove(
    [f, "forwarding", "attempt_timeout", forwarding.attemptTimeoutMs],
    [s, "server", "query_timeout", queryTimeoutMs],
    ["the whole budget of a query", "so that one attempt fits in a query's budget"],
  );
  notAbove(
    [f, "forwarding", "failure_backoff", forwarding.failureBackoffMs],
    [f, "forwarding", "max_failure_backoff", forwarding.maxFailureBackoffMs],
    ["the cap of the doubling backoff", "the period the doubling starts from"],
  );
  return forwarding;
}

/** [forwarding] bootstrap: IP[:port] strings, port 53 by default, no duplicates. */
function bootstrapServers(f: Table): BootstrapServer[] {
  const v = f.bootstrap;
  if (v === undefined) return [];
  const path = "forwarding.bootstrap";
  if (typeof v === "string") {
    throw new Invalid(path, v, `expected an array of addresses, e.g. bootstrap = ["${v}"]`);
  }
  if (!Array.isArray(v)) {
    throw new Invalid(path, v, `expected an array of addresses, got ${describe(v)}`);
  }
  const seen = new Map<string, number>();
  return v.map((item, i) => {
    const at = keyPath(path, i);
    if (typeof item !== "string") {
      throw new Invalid(
        at,
        item,
        `expected an address string such as "9.9.9.9", got ${describe(item)}`,
      );
    }
    const r = parseHostPort(item, {
      defaultPort: DEFAULT_BOOTSTRAP_PORT,
      example: "9.9.9.9",
      hostnameHint: "bootstrap servers must be IP addresses, since they are what looks names up",
    });
    if (!r.ok) throw new Invalid(at, item, r.message);
    const { hostname, port } = r.address;
    const id = `${ipKey(hostname)} ${port}`;
    const first = seen.get(id);
    if (first !== undefined) throw new Invalid(at, item, `duplicate of ${path}[${first}]`);
    seen.set(id, i);
    return { hostname, port };
  });
}

function cacheSection(c: Table, s: Table, queryTimeoutMs: number): CacheConfig {
  const D = DEFAULT_CACHE;
  const ttl = (key: string, fallback: number, allowZero: boolean, zeroHint?: string) =>
    duration(c, "cache", key, fallback, { seconds: true, allowZero, zeroHint });
  const maxEntries = integer(c, "cache", "max_entries", D.maxEntries, LIMITS.cacheMaxEntries);
  const cache: CacheConfig = {
    enabled: bool(c, "cache", "enabled", D.enabled) && maxEntries > 0,
    maxEntries,
    maxBytes: size(c, "cache", "max_memory", D.maxBytes, LIMITS.cacheMaxBytes),
    minTtl: ttl("min_ttl", D.minTtl, true),
    maxTtl: ttl("max_ttl", D.maxTtl, false, "to turn the cache off set enabled = false"),
    maxNegativeTtl: ttl("max_negative_ttl", D.maxNegativeTtl, true),
    servfailTtl: duration(c, "cache", "servfail_ttl", D.servfailTtl, {
      seconds: true,
      allowZero: true,
      maxMs: LIMITS.servfailTtlMax * 1000,
      maxWhy: "RFC 2308 §7.1",
    }),
    serveStale: bool(c, "cache", "serve_stale", D.serveStale),
    staleMaxAge: ttl(
      "stale_max_age",
      D.staleMaxAge,
      false,
      "to stop serving stale answers set serve_stale = false",
    ),
    staleAnswerAfterMs: duration(c, "cache", "stale_answer_after", D.staleAnswerAfterMs, {
      allowZero: true,
    }),
    prefetch: bool(c, "cache", "prefetch", D.prefetch),
  };
  notAbove(
    [c, "cache", "min_ttl", cache.minTtl * 1000],
    [c, "cache", "max_ttl", cache.maxTtl * 1000],
    ["the ceiling for positive TTLs", "the floor for positive TTLs"],
  );
  if (c.stale_answer_after !== undefined && cache.staleAnswerAfterMs >= queryTimeoutMs) {
    const was = s.query_timeout === undefined ? ", the default" : "";
    throw new Invalid(
      "cache.stale_answer_after",
      c.stale_answer_after,
      `must be less than server.query_timeout (${formatDuration(queryTimeoutMs)}${was}), ` +
        `or a stale answer could never beat the timeout`,
    );
  }
  return cache;
}

/** [access] or [listeners.access]; keys not set come from `base`. */
function accessRules(t: Table, at: string, base: Readonly<AccessConfig>): AccessConfig {
  return {
    allow: t.allow === undefined ? [...base.allow] : cidrList(t, at, "allow", true),
    deny: t.deny === undefined ? [...base.deny] : cidrList(t, at, "deny", false),
    action: oneOf(t, at, "action", base.action, ACCESS_ACTIONS),
  };
}

/** An array of address prefixes ("10.0.0.0/8", "::1"), parsed by lib/policy/acl.ts. */
function cidrList(t: Table, at: string, key: string, nonEmpty: boolean): Cidr[] {
  const v = t[key];
  const path = keyPath(at, key);
  if (typeof v === "string") {
    throw new Invalid(path, v, `expected an array of address prefixes, e.g. ${key} = ["${v}"]`);
  }
  if (!Array.isArray(v)) {
    throw new Invalid(
      path,
      v,
      `expected an array of address prefixes such as ["10.0.0.0/8"], got ${describe(v)}`,
    );
  }
  if (nonEmpty && v.length === 0) {
    throw new Invalid(
      path,
      v,
      `must not be empty: an empty allow list refuses every client; list the networks to serve`,
    );
  }
  return v.map((item, i) => {
    const itemPath = keyPath(path, i);
    if (typeof item !== "string") {
      throw new Invalid(
        itemPath,
        item,
        `expected a prefix string such as "10.0.0.0/8", got ${describe(item)}`,
      );
    }
    const c = parseCidr(item);
    if (typeof c === "string") {
      const quoted = `${JSON.stringify(item)}: `;
      throw new Invalid(itemPath, item, c.startsWith(quoted) ? c.slice(quoted.length) : c);
    }
    return c;
  });
}

function rateLimitSection(r: Table): RateLimitConfig {
  const D = DEFAULT_RATE_LIMIT;
  const qps = number(r, "rate_limit", "qps", D.qps, LIMITS.rateLimitQps);
  const defaultBurst = qps > 0 ? Math.max(1, Math.ceil(2 * qps)) : D.burst;
  return {
    qps,
    burst: integer(r, "rate_limit", "burst", defaultBurst, LIMITS.rateLimitBurst),
    ipv4Prefix: integer(r, "rate_limit", "ipv4_prefix", D.ipv4Prefix, LIMITS.ipv4Prefix),
    ipv6Prefix: integer(r, "rate_limit", "ipv6_prefix", D.ipv6Prefix, LIMITS.ipv6Prefix),
    action: oneOf(r, "rate_limit", "action", D.action, RATE_LIMIT_ACTIONS),
    maxBuckets: integer(r, "rate_limit", "max_buckets", D.maxBuckets, LIMITS.maxBuckets),
    slip: integer(r, "rate_limit", "slip", D.slip, LIMITS.rateLimitSlip),
    errorsQps: number(r, "rate_limit", "errors_qps", D.errorsQps, LIMITS.rateLimitQps),
  };
}

/** [admin]: null when absent; address is IP:port and must not collide with a TCP listener. */
function adminSection(root: Table, listeners: ListenerConfig[]): AdminConfig | null {
  if (root.admin === undefined) return null;
  const a = section(root, "admin");
  const example = "127.0.0.1:9153";
  const address = requiredString(a, "admin", "address", `e.g. address = "${example}"`);
  const r = parseHostPort(address, {
    example,
    hostnameHint: `the admin endpoint must bind an IP address, e.g. "${example}"`,
  });
  if (!r.ok) throw new Invalid("admin.address", address, r.message);
  const { hostname, port } = r.address;
  const i = listeners.findIndex((l) =>
    l.protocol !== "udp" && l.port === port && ipKey(l.hostname) === ipKey(hostname)
  );
  if (i >= 0) {
    throw new Invalid(
      "admin.address",
      address,
      `listeners[${i}] (${listeners[i].url}) already uses this TCP address and port`,
    );
  }
  return { hostname, port };
}

function queryLogSection(q: Table, baseDir: string): QueryLogConfig {
  const D = DEFAULT_QUERY_LOG;
  const out: QueryLogConfig = {
    enabled: bool(q, "query_log", "enabled", D.enabled),
    sink: oneOf(q, "query_log", "sink", D.sink, QUERY_LOG_SINKS),
    format: oneOf(q, "query_log", "format", D.format, QUERY_LOG_FORMATS),
  };
  const only = (sink: string) => `only used with sink = "${sink}" (sink is "${out.sink}")`;
  if (out.sink === "file") {
    out.path = filePath(
      q,
      "query_log",
      "path",
      baseDir,
      `required with sink = "file", e.g. path = "/var/log/dotproxy/queries.log"`,
    );
  } else notAllowed(q, "query_log", "path", only("file"));

  if (out.sink === "syslog") {
    const address = requiredString(
      q,
      "query_log",
      "syslog_address",
      `required with sink = "syslog", e.g. syslog_address = "${SYSLOG_URL.example}"`,
    );
    const r = parseEndpoint(address, SYSLOG_URL);
    if (!r.ok) throw new Invalid("query_log.syslog_address", address, r.message);
    const { scheme, hostname, port } = r.endpoint;
    out.syslog = { transport: scheme as "udp" | "tcp", hostname, port };
  } else notAllowed(q, "query_log", "syslog_address", only("syslog"));
  return out;
}

// ---- files ----

/** A file to read once the whole config is known to be valid, and where its contents go. */
interface FileJob {
  /** Key path and value as written, for messages. */
  key: string;
  value: unknown;
  /** Resolved path. */
  path: string;
  /** The PEM blocks wanted, or a message saying why the file has none. */
  extract: (text: string, file: string) => string[] | string;
  apply: (blocks: string[]) => void;
}

/** Reads each file once, in config order; the first unreadable or unsuitable file is the error. */
async function readFiles(jobs: FileJob[], read: FileReader): Promise<void> {
  const texts = new Map<string, { text: string } | { error: string }>();
  for (const job of jobs) {
    let got = texts.get(job.path);
    if (got === undefined) {
      try {
        got = { text: await read(job.path) };
      } catch (e) {
        got = { error: `cannot read ${job.path}: ${osReason(e)}` };
      }
      texts.set(job.path, got);
    }
    if ("error" in got) throw new Invalid(job.key, job.value, got.error);
    const blocks = job.extract(got.text, job.path);
    if (typeof blocks === "string") throw new Invalid(job.key, job.value, blocks);
    job.apply(blocks);
  }
}

/** A file path key, resolved against baseDir; `required` is the hint when it is missing. */
function filePath(t: Table, at: string, key: string, baseDir: string, required: string): string {
  const v = t[key];
  const path = keyPath(at, key);
  if (v === undefined) throw new Invalid(path, v, required);
  if (typeof v !== "string") {
    throw new Invalid(path, v, `expected a file path string, got ${describe(v)}`);
  }
  if (v.trim() === "") throw new Invalid(path, v, "must not be empty");
  return isAbsolute(v) ? v : join(baseDir, v);
}

/** The PEM certificate blocks in `text`, or a message (string) saying why there are none. */
function pemCertificates(text: string, file: string): string[] | string {
  const blocks = text.match(
    /-----BEGIN CERTIFICATE-----\r?\n[\s\S]*?\r?\n-----END CERTIFICATE-----/g,
  );
  if (!blocks) {
    return `${file} contains no PEM certificate (no "-----BEGIN CERTIFICATE-----" block)`;
  }
  for (const block of blocks) {
    if (!base64Body(block)) {
      return `${file} contains a malformed PEM certificate (body is not base64)`;
    }
  }
  return blocks.map((b) => `${b.replace(/\r\n/g, "\n")}\n`);
}

/** The one unencrypted PEM private key block in `text`, or a message saying what is wrong. */
function pemPrivateKey(text: string, file: string): string[] | string {
  const blocks = text.match(
    /-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----\r?\n[\s\S]*?\r?\n-----END \1-----/g,
  );
  if (!blocks) {
    return `${file} contains no PEM private key (no "-----BEGIN PRIVATE KEY-----" block)`;
  }
  if (blocks.length > 1) {
    return `${file} contains ${blocks.length} private keys; keep only the key of cert_file`;
  }
  const [block] = blocks;
  if (block.startsWith("-----BEGIN ENCRYPTED")) {
    return `${file} holds an encrypted private key, which cannot be used without a passphrase; ` +
      `decrypt it with "openssl pkey -in ${file} -out <new file>"`;
  }
  if (!base64Body(block)) {
    return `${file} contains a malformed PEM private key (body is not base64)`;
  }
  return [`${block.replace(/\r\n/g, "\n")}\n`];
}

/** True when the lines between a PEM block's BEGIN and END lines are base64. */
function base64Body(block: string): boolean {
  const body = block.split(/\r?\n/).slice(1, -1).join("");
  return /^[A-Za-z0-9+/]+={0,2}$/.test(body);
}

/** The OS's words for a failed read, without Deno's "readfile '<path>'" suffix. */
function osReason(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message.replace(/,?\s*(readfile|open|stat) '.*'$/s, "").replace(/:\s*$/, "") ||
    "unknown error";
}

// ---- values ----

type Setting = [table: Table, section: string, key: string, ms: number];

/**
 * Requires low.ms <= high.ms. Blames the key the operator actually wrote: the lower one when it
 * is set, otherwise the upper one (which then undercuts the lower one's default). `why` explains
 * the upper setting, then the lower one.
 */
function notAbove(low: Setting, high: Setting, why: [high: string, low: string]): void {
  const [lt, ls, lk, lms] = low;
  const [ht, hs, hk, hms] = high;
  if (lms <= hms) return;
  if (lt[lk] !== undefined || ht[hk] === undefined) {
    const was = ht[hk] === undefined ? ", the default" : "";
    throw new Invalid(
      keyPath(ls, lk),
      lt[lk] ?? formatDuration(lms),
      `must not exceed ${keyPath(hs, hk)} (${formatDuration(hms)}${was}), ${why[0]}`,
    );
  }
  throw new Invalid(
    keyPath(hs, hk),
    ht[hk],
    `must be at least ${keyPath(ls, lk)} (${formatDuration(lms)}, the default), ${why[1]}`,
  );
}

/** How a duration key is read. */
interface DurationOptions {
  /** Accept "0s" (otherwise it must be greater than zero). */
  allowZero?: boolean;
  /** Return whole seconds instead of milliseconds (TTL-like settings). */
  seconds?: boolean;
  /** Largest value in ms; default: the timer limit (ms) or RFC 2181's TTL limit (seconds). */
  maxMs?: number;
  /** Why maxMs is the limit, shown in parentheses. */
  maxWhy?: string;
  /** Added to "must be greater than zero" when zero is not allowed. */
  zeroHint?: string;
}

/** A duration key in milliseconds (or whole seconds with `seconds`); `fallback` in that unit. */
function duration(
  t: Table,
  s: string,
  key: string,
  fallback: number,
  opts: DurationOptions = {},
): number {
  const v = t[key];
  if (v === undefined) return fallback;
  const path = keyPath(s, key);
  if (typeof v === "number" && Number.isFinite(v)) {
    throw new Invalid(
      path,
      v,
      `durations need a unit; write a string such as "${v}s" or "${v}ms"`,
    );
  }
  if (typeof v !== "string") {
    throw new Invalid(path, v, `expected a duration such as "5s", got ${describe(v)}`);
  }
  const ms = parseDuration(v);
  if (ms === null) {
    const hint = isBareNumber(v)
      ? `missing unit; write "${v.trim()}s" or "${v.trim()}ms"`
      : `not a duration; use a number with a unit ms, s, m, h or d, e.g. "250ms", "1.5s", "2m"`;
    throw new Invalid(path, v, hint);
  }
  if (opts.allowZero ? ms < 0 : ms <= 0) {
    const zero = opts.zeroHint ? `; ${opts.zeroHint}` : "";
    throw new Invalid(
      path,
      v,
      opts.allowZero ? "must not be negative" : `must be greater than zero${zero}`,
    );
  }
  if (opts.seconds) {
    if (ms % 1000 !== 0) throw new Invalid(path, v, "must be a whole number of seconds");
    const max = opts.maxMs ?? LIMITS.maxTtlSeconds * 1000;
    if (ms > max) {
      const why = opts.maxWhy ?? "RFC 2181 §8";
      throw new Invalid(path, v, `must be at most ${formatDuration(max)} (${why})`);
    }
    return ms / 1000;
  }
  if (!Number.isInteger(ms)) throw new Invalid(path, v, "must be a whole number of milliseconds");
  const max = opts.maxMs ?? LIMITS.maxDurationMs;
  if (ms > max) {
    const why = opts.maxWhy ?? "about 24 days";
    throw new Invalid(
      path,
      v,
      `must be at most ${max === LIMITS.maxDurationMs ? `${max}ms` : formatDuration(max)} (${why})`,
    );
  }
  return ms;
}

/** A memory size key ("256MiB") in bytes. */
function size(
  t: Table,
  s: string,
  key: string,
  fallback: number,
  range: { min: number; max: number },
): number {
  const v = t[key];
  if (v === undefined) return fallback;
  const path = keyPath(s, key);
  if (typeof v === "number" && Number.isFinite(v)) {
    throw new Invalid(path, v, `sizes need a unit; write a string such as "${v}MiB"`);
  }
  if (typeof v !== "string") {
    throw new Invalid(path, v, `expected a size such as "256MiB", got ${describe(v)}`);
  }
  const bytes = parseSize(v);
  if (bytes === null) throw new Invalid(path, v, sizeHint(v));
  if (bytes < range.min || bytes > range.max) {
    throw new Invalid(path, v, `must be ${formatSize(range.min)}-${formatSize(range.max)}`);
  }
  return bytes;
}

function integer(
  t: Table,
  s: string,
  key: string,
  fallback: number,
  range: { min: number; max: number },
): number {
  return numeric(t, s, key, fallback, range, true);
}

/** A number key, whole or not (qps = 0.5), within `range`. */
function number(
  t: Table,
  s: string,
  key: string,
  fallback: number,
  range: { min: number; max: number },
): number {
  return numeric(t, s, key, fallback, range, false);
}

function numeric(
  t: Table,
  s: string,
  key: string,
  fallback: number,
  range: { min: number; max: number },
  whole: boolean,
): number {
  const v = t[key];
  if (v === undefined) return fallback;
  const path = keyPath(s, key);
  if (typeof v !== "number") {
    const digits = whole ? /^\s*-?[0-9]+\s*$/ : /^\s*-?[0-9]+(\.[0-9]+)?\s*$/;
    const quoted = typeof v === "string" && digits.test(v) ? "; remove the quotes" : "";
    const what = whole ? "an integer" : "a number";
    throw new Invalid(path, v, `expected ${what}, got ${describe(v)}${quoted}`);
  }
  if (whole && !Number.isInteger(v)) throw new Invalid(path, v, "must be a whole number");
  if (!(v >= range.min && v <= range.max)) {
    throw new Invalid(path, v, `must be ${range.min}-${range.max}`);
  }
  return v;
}

function bool(t: Table, s: string, key: string, fallback: boolean): boolean {
  const v = t[key];
  if (v === undefined) return fallback;
  if (typeof v === "boolean") return v;
  const quoted = v === "true" || v === "false" ? "; remove the quotes" : "";
  throw new Invalid(keyPath(s, key), v, `expected true or false, got ${describe(v)}${quoted}`);
}

function oneOf<T extends string>(
  t: Table,
  s: string,
  key: string,
  fallback: T,
  allowed: readonly T[],
): T {
  const v = t[key];
  if (v === undefined) return fallback;
  const path = keyPath(s, key);
  if (typeof v !== "string") throw new Invalid(path, v, `expected a string, got ${describe(v)}`);
  if ((allowed as readonly string[]).includes(v)) return v as T;
  const near = closest(v, allowed);
  const list = allowed.map((a) => JSON.stringify(a)).join(", ");
  throw new Invalid(path, v, `must be one of ${list}${near ? `; did you mean "${near}"?` : ""}`);
}

function requiredString(t: Table, at: string, key: string, hint: string): string {
  const v = t[key];
  const path = keyPath(at, key);
  if (v === undefined) throw new Invalid(path, v, `required; ${hint}`);
  if (typeof v !== "string") throw new Invalid(path, v, `expected a string, got ${describe(v)}`);
  if (v === "") throw new Invalid(path, v, `must not be empty; ${hint}`);
  return v;
}

/** Rejects `key` when it is set: it means nothing here (`why` says so and what to do). */
function notAllowed(t: Table, at: string, key: string, why: string): void {
  if (t[key] !== undefined) throw new Invalid(keyPath(at, key), t[key], why);
}
