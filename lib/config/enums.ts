/**
 * The enumerations the configuration accepts, each declared once as a const array with its type
 * derived from it; readers, messages and other modules (metrics labels, listeners) derive from
 * these. Re-exported by schema.ts. Enumerations owned by the code that implements them are
 * declared there and imported by their section: transports (lib/dns/transport.ts, shared with
 * the listeners, the pipeline and the metrics), strategies (lib/upstream/group.ts), route and
 * rebinding actions (lib/route/).
 */

import {
  ENCRYPTED_TRANSPORTS,
  PLAIN_TRANSPORTS,
  type Transport,
  TRANSPORTS,
} from "../dns/transport.ts";

/**
 * Listener URL schemes: every transport (lib/dns/transport.ts), plus http:// for DNS-over-HTTPS
 * behind a TLS-terminating front (its queries count as transport https).
 */
export const LISTENER_PROTOCOLS = [...TRANSPORTS, "http"] as const;
/** A listener URL scheme. */
export type ListenerProtocol = typeof LISTENER_PROTOCOLS[number];

/** Upstream URL schemes: every transport, the encrypted ones first (as messages suggest them). */
export const UPSTREAM_PROTOCOLS = [...ENCRYPTED_TRANSPORTS, ...PLAIN_TRANSPORTS] as const;
/** An upstream URL scheme. */
export type UpstreamProtocol = typeof UPSTREAM_PROTOCOLS[number];

/** The transport a listener's queries arrive over: http:// serves DNS-over-HTTPS too. */
export function listenerTransport(protocol: ListenerProtocol): Transport {
  return protocol === "http" ? "https" : protocol;
}

/** What happens to a client's EDNS Client Subnet option (RFC 7871). */
export const ECS_ACTIONS = ["strip", "keep"] as const;
/** A [forwarding] ecs action. */
export type EcsAction = typeof ECS_ACTIONS[number];

/** What to do with a query that arrives when too many are in flight already. */
export const OVERLOAD_ACTIONS = ["refuse", "drop"] as const;
/** A [limits] overload action. */
export type OverloadAction = typeof OVERLOAD_ACTIONS[number];

/** Log verbosity levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
/** A [log] level. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Log output formats. */
export const LOG_FORMATS = ["text", "json"] as const;
/** A [log] format. */
export type LogFormat = typeof LOG_FORMATS[number];

/** What happens to a query whose client the access rules refuse. */
export const ACCESS_ACTIONS = ["refuse", "drop"] as const;
/** An [access] action. */
export type AccessAction = typeof ACCESS_ACTIONS[number];

/** What happens to a query over its client's rate limit. */
export const RATE_LIMIT_ACTIONS = ["drop", "truncate", "refuse"] as const;
/** A [rate_limit] action. */
export type RateLimitAction = typeof RATE_LIMIT_ACTIONS[number];

/** How ANY queries are answered. */
export const ANY_QUERY_ACTIONS = ["rfc8482", "refuse", "forward"] as const;
/** A [policy] any_queries action. */
export type AnyQueryAction = typeof ANY_QUERY_ACTIONS[number];

/** How queries without RD (non-recursive) are answered. */
export const NON_RECURSIVE_ACTIONS = ["refuse", "forward"] as const;
/** A [policy] non_recursive action. */
export type NonRecursiveAction = typeof NON_RECURSIVE_ACTIONS[number];

/** Where the query log goes. */
export const QUERY_LOG_SINKS = ["stdout", "file", "syslog"] as const;
/** A [query_log] sink. */
export type QueryLogSink = typeof QUERY_LOG_SINKS[number];

/** Query log line formats. */
export const QUERY_LOG_FORMATS = ["json", "text"] as const;
/** A [query_log] format. */
export type QueryLogFormat = typeof QUERY_LOG_FORMATS[number];
