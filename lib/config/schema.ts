/**
 * The validated shape of dotproxy's configuration, and its defaults. Everything downstream
 * reads these types only, so TOML spelling (snake_case, duration strings, URLs) stays inside
 * `lib/config`.
 */

/** A plain-DNS socket we accept client queries on. */
export interface ListenerConfig {
  /** The URL as written, for messages. */
  url: string;
  protocol: "udp" | "tcp";
  /** IP literal without brackets ("127.0.0.1", "::1", "0.0.0.0", "::"). */
  hostname: string;
  port: number;
}

/** A DNS-over-TLS server we forward to. */
export interface UpstreamConfig {
  /** The URL as written, for messages. */
  url: string;
  protocol: "tls";
  /** IP literal without brackets. */
  hostname: string;
  /** Defaults to 853. */
  port: number;
  /** Certificate name to verify; required because an IP-only URL cannot be verified otherwise. */
  tlsName: string;
  /** PEM certificates read from ca_file, one block per entry (empty when ca_file is not set). */
  caCerts: string[];
  /** Resolved ca_file path, for messages. */
  caFile?: string;
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

/** A complete, validated configuration. */
export interface Config {
  listeners: ListenerConfig[];
  upstreams: UpstreamConfig[];
  server: ServerConfig;
  forwarding: ForwardingConfig;
  limits: LimitsConfig;
  log: LogConfig;
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

/** Port used when an upstream URL has none (RFC 7858). */
export const DEFAULT_UPSTREAM_PORT = 853;

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

/** Inclusive bounds for integer settings. */
export const LIMITS = Object.freeze({
  udpMaxSize: { min: 512, max: 65535 },
  connectionsPerUpstream: { min: 1, max: 64 },
  maxInFlightPerConnection: { min: 1, max: 65535 },
  maxInFlight: { min: 1, max: 1_000_000 },
  tcpMaxConnections: { min: 1, max: 1_000_000 },
  tcpMaxConnectionsPerClient: { min: 1, max: 1_000_000 },
  tcpMaxPipelined: { min: 1, max: 65535 },
  /** Longest duration a host timer can hold (2^31 - 1 ms, about 24.8 days). */
  maxDurationMs: 2_147_483_647,
});
