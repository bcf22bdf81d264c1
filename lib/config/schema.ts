/**
 * The validated shape of dotproxy's configuration, and its defaults. Everything downstream
 * reads these types only, so TOML spelling (snake_case, duration strings, URLs) stays inside
 * `lib/config`.
 */

import { type Cidr, DEFAULT_ALLOW } from "../policy/acl.ts";

export type { Cidr };

/** Listener URL schemes: plain DNS (udp, tcp), DNS-over-TLS (tls), DNS-over-HTTPS (https, http). */
export const LISTENER_PROTOCOLS = ["udp", "tcp", "tls", "https", "http"] as const;

/**
 * A socket we accept client queries on. `http` is plain-HTTP DoH, for running behind a
 * TLS-terminating load balancer.
 */
export interface ListenerConfig {
  /** The URL as written, for messages. */
  url: string;
  protocol: typeof LISTENER_PROTOCOLS[number];
  /** IP literal without brackets ("127.0.0.1", "::1", "0.0.0.0", "::"). */
  hostname: string;
  port: number;
  /** https/http only: the one URL path served, from the url; default "/dns-query". */
  path?: string;
  /** tls/https only (required there): resolved cert_file path, for messages. */
  certFile?: string;
  /** tls/https only (required there): resolved key_file path, for messages. */
  keyFile?: string;
  /** tls/https only: the CERTIFICATE blocks of cert_file (chain, leaf first), PEM text. */
  cert?: string;
  /** tls/https only: the PRIVATE KEY block of key_file, PEM text. */
  key?: string;
  /** https/http only: peers whose clientHeader is believed (trusted_proxies); default []. */
  trustedProxies?: Cidr[];
  /** https/http only: lower-case header naming the client (client_header); "x-forwarded-for". */
  clientHeader?: string;
  /**
   * [listeners.access]: this listener's access rules, keys not set there taken from [access];
   * absent when the listener has no such table (then the global `Config.access` applies).
   */
  access?: AccessConfig;
}

/** Upstream URL schemes: DNS-over-TLS, DNS-over-HTTPS, plain DNS. */
export const UPSTREAM_PROTOCOLS = ["tls", "https", "udp", "tcp"] as const;

/** A server we forward queries to. */
export interface UpstreamConfig {
  /** The URL as written, for messages. */
  url: string;
  protocol: typeof UPSTREAM_PROTOCOLS[number];
  /**
   * IP literal without brackets, or (tls/https only) a lower-case DNS name without a trailing
   * dot, resolved through [forwarding] bootstrap.
   */
  hostname: string;
  /** False when `hostname` is a DNS name. */
  hostnameIsIp: boolean;
  /** From the url; defaults: tls 853, https 443, udp/tcp 53 (DEFAULT_UPSTREAM_PORTS). */
  port: number;
  /** https only: the URL path, default "/dns-query". */
  path?: string;
  /**
   * Certificate name to verify (tls_name). tls/https: required when the host is an IP,
   * otherwise defaults to the hostname. udp/tcp: always "" (the key is rejected).
   */
  tlsName: string;
  /** tls/https: PEM certificates read from ca_file, one block per entry (empty when unset). */
  caCerts: string[];
  /** tls/https: resolved ca_file path, for messages. */
  caFile?: string;
}

/** How a group of upstreams shares the queries. */
export const FORWARDING_STRATEGIES = ["failover", "round_robin", "fastest", "parallel"] as const;
/** What happens to a client's EDNS Client Subnet option (RFC 7871). */
export const ECS_ACTIONS = ["strip", "keep"] as const;

/** A plain-DNS server, by IP, used to resolve upstream hostnames. */
export interface BootstrapServer {
  /** IP literal without brackets. */
  hostname: string;
  /** Default 53. */
  port: number;
}

/** How queries are sent upstream; all durations in milliseconds. */
export interface ForwardingConfig {
  /** [server] query_timeout: total budget per client query before we answer SERVFAIL. */
  queryTimeoutMs: number;
  /** [forwarding] attempt_timeout: one try at one upstream before failing over. */
  attemptTimeoutMs: number;
  /** [forwarding] connect_timeout: TCP connect plus TLS handshake. */
  connectTimeoutMs: number;
  /** [forwarding] idle_timeout: we close idle upstream connections before the server does. */
  idleTimeoutMs: number;
  /** [forwarding] connections_per_upstream, 1..64. */
  connectionsPerUpstream: number;
  /** [forwarding] max_in_flight_per_connection, 1..65535. */
  maxInFlightPerConnection: number;
  /** [forwarding] failure_backoff: first avoidance period after a failure; doubles each time. */
  failureBackoffMs: number;
  /** [forwarding] max_failure_backoff: cap for the doubling backoff. */
  maxFailureBackoffMs: number;
  /** [forwarding] strategy: how queries are spread over the upstreams. Default "failover". */
  strategy: typeof FORWARDING_STRATEGIES[number];
  /**
   * [forwarding] bootstrap: plain-DNS servers (IP[:port], port 53 by default) that resolve
   * upstream hostnames; required when an upstream has one. Default [].
   */
  bootstrap: BootstrapServer[];
  /** [forwarding] padding: EDNS(0) padding (RFC 7830/8467) towards encrypted upstreams. */
  padding: boolean;
  /** [forwarding] ecs: "strip" (default) or "keep" the client's EDNS Client Subnet option. */
  ecs: typeof ECS_ACTIONS[number];
}

/** How we serve clients; all durations in milliseconds. */
export interface ServerConfig {
  /** udp_max_size, 512..65535: largest UDP response before we set TC. */
  udpMaxSize: number;
  /** tcp_idle_timeout: idle client TCP connections are closed after this. */
  tcpIdleTimeoutMs: number;
  /** shutdown_grace: how long in-flight queries may finish on shutdown. */
  shutdownGraceMs: number;
  /** query_timeout: same value as ForwardingConfig.queryTimeoutMs. */
  queryTimeoutMs: number;
}

/** What to do with a query that arrives when too many are in flight already. */
export const OVERLOAD_ACTIONS = ["refuse", "drop"] as const;

/** [limits]: bounds that keep load and abuse from exhausting the proxy. */
export interface LimitsConfig {
  /** max_in_flight: client queries being answered at once, across all listeners. */
  maxInFlight: number;
  /** overload: "refuse" answers REFUSED above max_in_flight, "drop" sends nothing. */
  overload: typeof OVERLOAD_ACTIONS[number];
  /** tcp_max_connections: client connections open at once per stream listener. */
  tcpMaxConnections: number;
  /** tcp_max_connections_per_client: connections open at once from one address. */
  tcpMaxConnectionsPerClient: number;
  /** tcp_max_pipelined: queries in flight on one connection before reading pauses. */
  tcpMaxPipelined: number;
  /** tcp_read_timeout: a message must arrive whole this long after its first byte. */
  tcpReadTimeoutMs: number;
}

/** Log verbosity levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
/** Log output formats. */
export const LOG_FORMATS = ["text", "json"] as const;

/** Logging settings. */
export interface LogConfig {
  level: typeof LOG_LEVELS[number];
  format: typeof LOG_FORMATS[number];
}

/** [cache]: the answer cache. TTL-like settings are in seconds, other durations in ms. */
export interface CacheConfig {
  /** enabled: false turns the cache off; also false when max_entries = 0. Default true. */
  enabled: boolean;
  /** max_entries, 0..50_000_000: answers kept; 0 disables the cache. Default 100_000. */
  maxEntries: number;
  /** max_memory ("256MiB"): budget for cached answers in bytes. Default 256 MiB. */
  maxBytes: number;
  /** min_ttl, seconds, zero allowed: floor for positive TTLs. Default 0. */
  minTtl: number;
  /** max_ttl, seconds: ceiling for positive TTLs, at least min_ttl. Default 86400. */
  maxTtl: number;
  /** max_negative_ttl, seconds, zero allowed: ceiling for NXDOMAIN/NODATA. Default 3600. */
  maxNegativeTtl: number;
  /** servfail_ttl, seconds, 0..300 (RFC 2308 §7.1): how long a SERVFAIL is kept; 0 = never. */
  servfailTtl: number;
  /** serve_stale: answer from expired entries when upstreams fail or are slow (RFC 8767). */
  serveStale: boolean;
  /** stale_max_age, seconds: how long past expiry an entry may be served stale. Default 86400. */
  staleMaxAge: number;
  /**
   * stale_answer_after, ms, zero allowed: RFC 8767's client response timer; a stale answer is
   * sent when no fresh one arrived by then. Default 1800.
   */
  staleAnswerAfterMs: number;
  /** prefetch: refresh popular entries shortly before they expire. Default true. */
  prefetch: boolean;
}

/** What happens to a query whose client the access rules refuse. */
export const ACCESS_ACTIONS = ["refuse", "drop"] as const;

/** [access] (and [listeners.access]): who may use the proxy. Deny wins over allow. */
export interface AccessConfig {
  /** allow: prefixes served. Default DEFAULT_ALLOW (loopback and private ranges). */
  allow: Cidr[];
  /** deny: prefixes refused even when allowed. Default []. */
  deny: Cidr[];
  /** action: "refuse" answers REFUSED, "drop" sends nothing. Default "refuse". */
  action: typeof ACCESS_ACTIONS[number];
}

/** What happens to a query over its client's rate limit. */
export const RATE_LIMIT_ACTIONS = ["drop", "truncate", "refuse"] as const;

/** [rate_limit]: token buckets per client prefix. */
export interface RateLimitConfig {
  /** qps: sustained queries per second per client prefix; 0 (default) turns limiting off. */
  qps: number;
  /** burst: bucket size, at least 1 when qps > 0. Default ceil(2 * qps) (0 while off). */
  burst: number;
  /** ipv4_prefix, 8..32: IPv4 clients sharing this many leading bits share a bucket. */
  ipv4Prefix: number;
  /** ipv6_prefix, 16..128: the same for IPv6. */
  ipv6Prefix: number;
  /**
   * action: "truncate" (default) answers TC=1 over UDP, so real clients retry over TCP, and
   * drops over TCP; "drop" sends nothing; "refuse" answers REFUSED.
   */
  action: typeof RATE_LIMIT_ACTIONS[number];
  /** max_buckets: most client prefixes tracked; the least recently seen are forgotten. */
  maxBuckets: number;
  /**
   * slip, 0..10: with "truncate" or "refuse", only every slip-th query over the limit gets that
   * answer and the rest are dropped (BIND's RRL slip): 1 answers all, 0 none. Default 2.
   */
  slip: number;
  /**
   * errors_qps: error answers dotproxy makes itself over UDP (FORMERR, NOTIMP, BADVERS, REFUSED)
   * per second per client prefix, bursts of twice that; beyond it they are dropped. On even when
   * `qps` is 0: a garbage flood then costs reads, not sends, and cannot be reflected at a spoofed
   * source. 0 = unlimited. Default 10.
   */
  errorsQps: number;
}

/** How ANY queries are answered. */
export const ANY_QUERY_ACTIONS = ["rfc8482", "refuse", "forward"] as const;

/** [policy]: what kinds of queries are answered and how. */
export interface PolicyConfig {
  /**
   * any_queries: "rfc8482" (default) answers a small HINFO record (RFC 8482), "refuse" answers
   * REFUSED, "forward" passes ANY upstream like any other type.
   */
  anyQueries: typeof ANY_QUERY_ACTIONS[number];
}

/** [admin]: the HTTP endpoint for /metrics, /healthz and /readyz. */
export interface AdminConfig {
  /** IP literal without brackets, from address = "127.0.0.1:9153". */
  hostname: string;
  port: number;
}

/** Where the query log goes. */
export const QUERY_LOG_SINKS = ["stdout", "file", "syslog"] as const;
/** Query log line formats. */
export const QUERY_LOG_FORMATS = ["json", "text"] as const;

/** [query_log]: one line per answered query. */
export interface QueryLogConfig {
  /** enabled: default false. */
  enabled: boolean;
  /** sink: "stdout" (default), "file" or "syslog". */
  sink: typeof QUERY_LOG_SINKS[number];
  /** sink = "file" only (required there): the file, resolved against the config's directory. */
  path?: string;
  /** sink = "syslog" only (required there): syslog_address = "udp://192.0.2.10:514". */
  syslog?: { transport: "udp" | "tcp"; hostname: string; port: number };
  /** format: "json" (default) or "text". */
  format: typeof QUERY_LOG_FORMATS[number];
}

/** A complete, validated configuration. */
export interface Config {
  listeners: ListenerConfig[];
  upstreams: UpstreamConfig[];
  server: ServerConfig;
  forwarding: ForwardingConfig;
  limits: LimitsConfig;
  log: LogConfig;
  cache: CacheConfig;
  /** [access]: the rules of every listener without its own [listeners.access]. */
  access: AccessConfig;
  rateLimit: RateLimitConfig;
  policy: PolicyConfig;
  /** null when there is no [admin] section (the admin endpoint is off). */
  admin: AdminConfig | null;
  queryLog: QueryLogConfig;
  /** The config file path, for messages. */
  path: string;
}

/**
 * A user mistake in the configuration, returned as a value (never thrown) so the CLI can print
 * one precise line instead of a stack trace.
 */
export interface ConfigError {
  /** TOML key path, e.g. `upstreams[0].url`; "config" for the file as a whole. */
  key: string;
  /** The offending value as parsed (undefined when missing). */
  value: unknown;
  /** What is wrong and, where possible, how to fix it. */
  message: string;
  /** The config file path. */
  path: string;
}

/** Port used when a tls:// upstream URL has none (RFC 7858). */
export const DEFAULT_UPSTREAM_PORT = 853;

/** Port used when an upstream URL has none, per scheme. */
export const DEFAULT_UPSTREAM_PORTS: Readonly<Record<UpstreamConfig["protocol"], number>> = Object
  .freeze({ tls: DEFAULT_UPSTREAM_PORT, https: 443, udp: 53, tcp: 53 });

/** The DoH path used when an https:// upstream or an https/http listener URL has none. */
export const DEFAULT_DOH_PATH = "/dns-query";

/** The header an http/https listener reads the client address from, behind trusted proxies. */
export const DEFAULT_CLIENT_HEADER = "x-forwarded-for";

/** Port of a bootstrap server written without one. */
export const DEFAULT_BOOTSTRAP_PORT = 53;

/** Port of a syslog_address written without one (RFC 5426). */
export const DEFAULT_SYSLOG_PORT = 514;

/** [server] defaults. 1232 bytes avoids IP fragmentation (DNS flag day 2020). */
export const DEFAULT_SERVER: Readonly<ServerConfig> = Object.freeze({
  udpMaxSize: 1232,
  tcpIdleTimeoutMs: 10_000,
  shutdownGraceMs: 3_000,
  queryTimeoutMs: 5_000,
});

/** [forwarding] defaults. idle_timeout sits below Cloudflare's ~10 s so we close first. */
export const DEFAULT_FORWARDING: Readonly<ForwardingConfig> = Object.freeze({
  queryTimeoutMs: DEFAULT_SERVER.queryTimeoutMs,
  attemptTimeoutMs: 2_000,
  connectTimeoutMs: 2_000,
  idleTimeoutMs: 8_000,
  connectionsPerUpstream: 2,
  maxInFlightPerConnection: 512,
  failureBackoffMs: 1_000,
  maxFailureBackoffMs: 10_000,
  strategy: "failover",
  bootstrap: Object.freeze([]) as unknown as BootstrapServer[],
  padding: true,
  ecs: "strip",
});

/** [limits] defaults: generous for a busy resolver, small enough to bound memory. */
export const DEFAULT_LIMITS: Readonly<LimitsConfig> = Object.freeze({
  maxInFlight: 10_000,
  overload: "refuse",
  tcpMaxConnections: 1_000,
  tcpMaxConnectionsPerClient: 32,
  tcpMaxPipelined: 100,
  tcpReadTimeoutMs: 5_000,
});

/** [log] defaults. */
export const DEFAULT_LOG: Readonly<LogConfig> = Object.freeze({ level: "info", format: "text" });

/** [cache] defaults: sizes from bench/cache_memory.ts, stale timing from RFC 8767. */
export const DEFAULT_CACHE: Readonly<CacheConfig> = Object.freeze({
  enabled: true,
  maxEntries: 100_000,
  maxBytes: 256 * 1024 * 1024,
  minTtl: 0,
  maxTtl: 86_400,
  maxNegativeTtl: 3_600,
  servfailTtl: 5,
  serveStale: true,
  staleMaxAge: 86_400,
  staleAnswerAfterMs: 1_800,
  prefetch: true,
});

/** [access] defaults: loopback and private ranges only, never the public internet. */
export const DEFAULT_ACCESS: Readonly<AccessConfig> = Object.freeze({
  allow: DEFAULT_ALLOW as Cidr[],
  deny: Object.freeze([]) as unknown as Cidr[],
  action: "refuse",
});

/** [rate_limit] defaults: off; when on, per /24 (IPv4) and /56 (IPv6). */
export const DEFAULT_RATE_LIMIT: Readonly<RateLimitConfig> = Object.freeze({
  qps: 0,
  burst: 0,
  ipv4Prefix: 24,
  ipv6Prefix: 56,
  action: "truncate",
  maxBuckets: 100_000,
  slip: 2,
  errorsQps: 10,
});

/** [policy] defaults. */
export const DEFAULT_POLICY: Readonly<PolicyConfig> = Object.freeze({ anyQueries: "rfc8482" });

/** [query_log] defaults. */
export const DEFAULT_QUERY_LOG: Readonly<QueryLogConfig> = Object.freeze({
  enabled: false,
  sink: "stdout",
  format: "json",
});

/** Inclusive bounds for integer settings. */
export const LIMITS = Object.freeze({
  udpMaxSize: { min: 512, max: 65535 },
  connectionsPerUpstream: { min: 1, max: 64 },
  maxInFlightPerConnection: { min: 1, max: 65535 },
  maxInFlight: { min: 1, max: 1_000_000 },
  tcpMaxConnections: { min: 1, max: 1_000_000 },
  tcpMaxConnectionsPerClient: { min: 1, max: 1_000_000 },
  tcpMaxPipelined: { min: 1, max: 65535 },
  cacheMaxEntries: { min: 0, max: 50_000_000 },
  /** max_memory: 1 MiB .. 64 GiB. */
  cacheMaxBytes: { min: 1024 * 1024, max: 64 * 1024 * 1024 * 1024 },
  /** servfail_ttl: at most 5 minutes (RFC 2308 §7.1). */
  servfailTtlMax: 300,
  /** Largest TTL-like value in seconds (RFC 2181 §8: 2^31 - 1). */
  maxTtlSeconds: 2_147_483_647,
  rateLimitQps: { min: 0, max: 1_000_000 },
  rateLimitBurst: { min: 1, max: 10_000_000 },
  rateLimitSlip: { min: 0, max: 10 },
  ipv4Prefix: { min: 8, max: 32 },
  ipv6Prefix: { min: 16, max: 128 },
  maxBuckets: { min: 1, max: 10_000_000 },
  /** Longest duration a host timer can hold (2^31 - 1 ms, about 24.8 days). */
  maxDurationMs: 2_147_483_647,
});
