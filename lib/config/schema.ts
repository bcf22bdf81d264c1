/**
 * The validated shape of dotproxy's configuration, its defaults and enumerations, in one import.
 * Everything downstream reads these types only, so TOML spelling (snake_case, duration strings,
 * URLs) stays inside `lib/config`. Each section's keys, defaults and limits are declared once, in
 * its table under `lib/config/sections/`; this module only gathers them.
 */

import type { AccessConfig } from "./sections/access.ts";
import type { AdminConfig } from "./sections/admin.ts";
import type { CacheConfig } from "./sections/cache.ts";
import type { ClientConfig } from "./sections/clients.ts";
import type { ForwardingConfig } from "./sections/forwarding.ts";
import type { GroupConfig } from "./sections/groups.ts";
import type { LimitsConfig } from "./sections/limits.ts";
import type { ListenerConfig } from "./sections/listeners.ts";
import type { LogConfig } from "./sections/log.ts";
import type { PolicyConfig } from "./sections/policy.ts";
import type { QueryLogConfig } from "./sections/query_log.ts";
import type { RateLimitConfig } from "./sections/rate_limit.ts";
import type { RecordConfig, RouteConfig, RoutingConfig } from "./sections/routing.ts";
import type { ServerConfig } from "./sections/server.ts";
import type { UpstreamConfig } from "./sections/upstreams.ts";

export type { Cidr } from "../policy/acl.ts";
export * from "./enums.ts";
export { type AccessConfig, DEFAULT_ACCESS } from "./sections/access.ts";
export type { AdminConfig } from "./sections/admin.ts";
export { type CacheConfig, DEFAULT_CACHE } from "./sections/cache.ts";
export type { ClientConfig } from "./sections/clients.ts";
export {
  type BootstrapServer,
  DEFAULT_BOOTSTRAP_PORT,
  DEFAULT_FORWARDING,
  type ForwardingConfig,
} from "./sections/forwarding.ts";
export { DEFAULT_LIMITS, type LimitsConfig } from "./sections/limits.ts";
export {
  DEFAULT_CLIENT_HEADER,
  DEFAULT_DOH_PATH,
  type HttpListenerConfig,
  type HttpsListenerConfig,
  type ListenerConfig,
  type PlainListenerConfig,
  type TlsListenerConfig,
} from "./sections/listeners.ts";
export { DEFAULT_LOG, type LogConfig } from "./sections/log.ts";
export { DEFAULT_POLICY, type PolicyConfig } from "./sections/policy.ts";
export {
  DEFAULT_QUERY_LOG,
  DEFAULT_SYSLOG_PORT,
  type FileQueryLogConfig,
  type QueryLogConfig,
  type StdoutQueryLogConfig,
  type SyslogAddress,
  type SyslogQueryLogConfig,
} from "./sections/query_log.ts";
export { DEFAULT_RATE_LIMIT, type RateLimitConfig } from "./sections/rate_limit.ts";
export { DEFAULT_GROUP, forwardingOf, type GroupConfig } from "./sections/groups.ts";
export {
  DEFAULT_ROUTING,
  type RecordConfig,
  type RouteConfig,
  type RoutingConfig,
} from "./sections/routing.ts";
export { DEFAULT_SERVER, type ServerConfig } from "./sections/server.ts";
export {
  DEFAULT_UPSTREAM_PORT,
  DEFAULT_UPSTREAM_PORTS,
  type UpstreamConfig,
} from "./sections/upstreams.ts";

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
  /** [[groups]]: upstream groups with their own [forwarding] settings (others use [forwarding]). */
  groups: GroupConfig[];
  /** [[routes]], in config order. */
  routes: RouteConfig[];
  /** [[records]], in config order. */
  records: RecordConfig[];
  routing: RoutingConfig;
  /** [[clients]]: named clients, in config order. */
  clients: ClientConfig[];
  /** Lines a hosts file had that were skipped (file:line: why), for warnings. */
  hostsWarnings: string[];
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
