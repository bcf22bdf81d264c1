/**
 * Loading and validating dotproxy's TOML configuration. User mistakes come back as ConfigError
 * values naming the key, the value and the fix; only bugs throw. File access goes through an
 * injected FileReader so every rule is testable without a disk.
 */

import { parse, TomlError } from "smol-toml";
import { dirname, isAbsolute, join } from "node:path";
import { closest, formatConfigError, keyPath } from "./errors.ts";
import { formatDuration, isBareNumber, parseDuration } from "./duration.ts";
import { ipKey, isIP } from "./ip.ts";
import { type EndpointRules, parseEndpoint } from "./url.ts";
import {
  type Config,
  type ConfigError,
  DEFAULT_FORWARDING,
  DEFAULT_LIMITS,
  DEFAULT_LOG,
  DEFAULT_SERVER,
  DEFAULT_UPSTREAM_PORT,
  LIMITS,
  type ListenerConfig,
  LOG_FORMATS,
  LOG_LEVELS,
  OVERLOAD_ACTIONS,
  type UpstreamConfig,
} from "./schema.ts";

export type * from "./schema.ts";
export { formatConfigError, parseDuration };

/** Reads a text file; throws on unreadable files (the error message is shown as the OS reason). */
export type FileReader = (path: string) => Promise<string>;

/** Options for parseConfig. */
export interface ParseOptions {
  /** The config file path, used in messages. */
  path: string;
  /** Directory that relative file paths (ca_file) resolve against. */
  baseDir: string;
  /** How ca_file contents are read. */
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

/** Parses and validates TOML text; relative file paths (ca_file) resolve against baseDir. */
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

/** Known keys per section; "" is the top level. */
const SECTIONS = {
  "": ["server", "listeners", "upstreams", "forwarding", "limits", "log"],
  server: ["query_timeout", "udp_max_size", "tcp_idle_timeout", "shutdown_grace"],
  listeners: ["url"],
  upstreams: ["url", "tls_name", "ca_file"],
  forwarding: [
    "attempt_timeout",
    "connect_timeout",
    "idle_timeout",
    "connections_per_upstream",
    "max_in_flight_per_connection",
    "failure_backoff",
    "max_failure_backoff",
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
} as const;
type Section = keyof typeof SECTIONS;

const LISTENER_URL: EndpointRules = {
  schemes: ["udp", "tcp"],
  moreSchemesLater: false,
  example: "udp://127.0.0.1:5053",
  hostnameHint: "listeners must bind an IP address, e.g. 127.0.0.1 or ::1",
};

const UPSTREAM_URL: EndpointRules = {
  schemes: ["tls"],
  moreSchemesLater: true,
  defaultPort: DEFAULT_UPSTREAM_PORT,
  example: "tls://1.1.1.1:853",
  hostnameHint: "hostname upstreams are not supported yet: use an IP address and set tls_name",
};

async function validate(text: string, opts: ParseOptions): Promise<Config> {
  const root = parseToml(text);
  checkKeys(root, "", "");

  const listeners = entries(root, "listeners").map(([t, at]) => listener(t, at));
  const seen = new Map<string, string>();
  listeners.forEach((l, i) => {
    const id = `${l.protocol} ${ipKey(l.hostname)} ${l.port}`;
    const first = seen.get(id);
    if (first !== undefined) {
      throw new Invalid(`listeners[${i}].url`, l.url, `duplicate of ${first}`);
    }
    seen.set(id, `listeners[${i}]`);
  });
  const upstreams = entries(root, "upstreams").map(([t, at]) => upstream(t, at, opts.baseDir));

  const s = section(root, "server");
  const queryTimeoutMs = duration(s, "server", "query_timeout", DEFAULT_SERVER.queryTimeoutMs);
  const server = {
    udpMaxSize: integer(s, "server", "udp_max_size", DEFAULT_SERVER.udpMaxSize, LIMITS.udpMaxSize),
    tcpIdleTimeoutMs: duration(s, "server", "tcp_idle_timeout", DEFAULT_SERVER.tcpIdleTimeoutMs),
    shutdownGraceMs: duration(s, "server", "shutdown_grace", DEFAULT_SERVER.shutdownGraceMs),
    queryTimeoutMs,
  };

  const f = section(root, "forwarding");
  const D = DEFAULT_FORWARDING;
  const forwarding = {
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

  await readCaFiles(root, upstreams, opts.readFile);
  return { listeners, upstreams, server, forwarding, limits, log, path: opts.path };
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

function sectionLabel(s: Section): string {
  if (s === "") return "the top level";
  return s === "listeners" || s === "upstreams" ? `[[${s}]]` : `[${s}]`;
}

/** Rejects keys the section does not know, with the most useful hint we can find. */
function checkKeys(table: Table, s: Section, at: string): void {
  const known: readonly string[] = SECTIONS[s];
  for (const [key, value] of Object.entries(table)) {
    if (known.includes(key)) continue;
    throw new Invalid(keyPath(at, key), value, `unknown key; ${unknownKeyHint(key, s)}`);
  }
}

function unknownKeyHint(key: string, s: Section): string {
  const known: readonly string[] = SECTIONS[s];
  const near = closest(key, known);
  if (near) return `did you mean "${near}"?`;
  for (const [other, keys] of Object.entries(SECTIONS) as [Section, readonly string[]][]) {
    if (other !== "" && other !== s && keys.includes(key)) {
      return `${key} belongs in ${sectionLabel(other)}`;
    }
  }
  if (
    (s === "listeners" || s === "upstreams") && /^(host(name)?|address|addr|ip|port)$/.test(key)
  ) {
    const example = s === "listeners" ? LISTENER_URL.example : UPSTREAM_URL.example;
    return `the address and port go in url, e.g. url = ${JSON.stringify(example)}`;
  }
  return `known keys in ${sectionLabel(s)}: ${known.join(", ")}`;
}

/** A [section] table; absent sections are empty so defaults apply. */
function section(root: Table, name: Exclude<Section, "" | "listeners" | "upstreams">): Table {
  const v = root[name];
  if (v === undefined) return {};
  if (!isTable(v)) {
    throw new Invalid(name, v, `expected a table ([${name}]), got ${describe(v)}`);
  }
  checkKeys(v, name, name);
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

// ---- entries ----

function listener(t: Table, at: string): ListenerConfig {
  const url = requiredString(t, at, "url", `e.g. ${JSON.stringify(LISTENER_URL.example)}`);
  const r = parseEndpoint(url, LISTENER_URL);
  if (!r.ok) throw new Invalid(keyPath(at, "url"), url, r.message);
  const { scheme, hostname, port } = r.endpoint;
  return { url, protocol: scheme as "udp" | "tcp", hostname, port };
}

function upstream(t: Table, at: string, baseDir: string): UpstreamConfig {
  const url = requiredString(t, at, "url", `e.g. ${JSON.stringify(UPSTREAM_URL.example)}`);
  const r = parseEndpoint(url, UPSTREAM_URL);
  if (!r.ok) throw new Invalid(keyPath(at, "url"), url, r.message);
  const tlsName = requiredString(
    t,
    at,
    "tls_name",
    `the name to verify on the upstream's certificate, e.g. "cloudflare-dns.com"`,
  );
  checkTlsName(tlsName, keyPath(at, "tls_name"));
  const out: UpstreamConfig = {
    url,
    protocol: "tls",
    hostname: r.endpoint.hostname,
    port: r.endpoint.port,
    tlsName,
    caCerts: [],
  };
  const caFile = t.ca_file;
  if (caFile !== undefined) {
    const key = keyPath(at, "ca_file");
    if (typeof caFile !== "string") {
      throw new Invalid(key, caFile, `expected a file path string, got ${describe(caFile)}`);
    }
    if (caFile.trim() === "") throw new Invalid(key, caFile, "must not be empty");
    out.caFile = isAbsolute(caFile) ? caFile : join(baseDir, caFile);
  }
  return out;
}

function requiredString(t: Table, at: string, key: string, hint: string): string {
  const v = t[key];
  const path = keyPath(at, key);
  if (v === undefined) throw new Invalid(path, v, `required; ${hint}`);
  if (typeof v !== "string") throw new Invalid(path, v, `expected a string, got ${describe(v)}`);
  if (v === "") throw new Invalid(path, v, `must not be empty; ${hint}`);
  return v;
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

/** Reads each ca_file once and keeps its certificate blocks. */
async function readCaFiles(root: Table, upstreams: UpstreamConfig[], read: FileReader) {
  const cache = new Map<string, string[] | string>();
  const raw = root.upstreams as Table[];
  for (const [i, u] of upstreams.entries()) {
    if (u.caFile === undefined) continue;
    let certs = cache.get(u.caFile);
    if (certs === undefined) {
      try {
        certs = pemCertificates(await read(u.caFile), u.caFile);
      } catch (e) {
        certs = `cannot read ${u.caFile}: ${osReason(e)}`;
      }
      cache.set(u.caFile, certs);
    }
    if (typeof certs === "string") {
      throw new Invalid(`upstreams[${i}].ca_file`, raw[i].ca_file, certs);
    }
    u.caCerts = [...certs];
  }
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
    const body = block.split(/\r?\n/).slice(1, -1).join("");
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
      return `${file} contains a malformed PEM certificate (body is not base64)`;
    }
  }
  return blocks.map((b) => `${b.replace(/\r\n/g, "\n")}\n`);
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

function duration(t: Table, s: string, key: string, fallback: number): number {
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
      : `not a duration; use a number with a unit ms, s, m or h, e.g. "250ms", "1.5s", "2m"`;
    throw new Invalid(path, v, hint);
  }
  if (ms <= 0) throw new Invalid(path, v, "must be greater than zero");
  if (!Number.isInteger(ms)) throw new Invalid(path, v, "must be a whole number of milliseconds");
  if (ms > LIMITS.maxDurationMs) {
    throw new Invalid(path, v, `must be at most ${LIMITS.maxDurationMs}ms (about 24 days)`);
  }
  return ms;
}

function integer(
  t: Table,
  s: string,
  key: string,
  fallback: number,
  range: { min: number; max: number },
): number {
  const v = t[key];
  if (v === undefined) return fallback;
  const path = keyPath(s, key);
  if (typeof v !== "number") {
    const quoted = typeof v === "string" && /^\s*-?[0-9]+\s*$/.test(v) ? "; remove the quotes" : "";
    throw new Invalid(path, v, `expected an integer, got ${describe(v)}${quoted}`);
  }
  if (!Number.isInteger(v)) throw new Invalid(path, v, "must be a whole number");
  if (v < range.min || v > range.max) {
    throw new Invalid(path, v, `must be ${range.min}-${range.max}`);
  }
  return v;
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
