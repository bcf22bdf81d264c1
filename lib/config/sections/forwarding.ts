/** [forwarding]: how queries are sent upstream. */

import { DEFAULT_FAILURE_THRESHOLD } from "../../upstream/health.ts";
import { ECS_ACTIONS } from "../enums.ts";
import { STRATEGIES } from "../../upstream/group.ts";
import { keyPath } from "../errors.ts";
import { ipKey } from "../../net/ip.ts";
import {
  arrayOf,
  bool,
  duration,
  integer,
  Invalid,
  notAbove,
  oneOf,
  type Reader,
  stringItem,
  type Table,
} from "../readers.ts";
import { defineSection, readSection, type SectionValue, setting } from "../table.ts";
import { parseHostPort } from "../url.ts";
import { DEFAULT_SERVER } from "./server.ts";

/** Port of a bootstrap server written without one. */
export const DEFAULT_BOOTSTRAP_PORT = 53;

/** How bootstrap is written, for hints. */
export const BOOTSTRAP_EXAMPLE = `bootstrap = ["9.9.9.9", "[2620:fe::fe]:53"]`;

/** A plain-DNS server, by IP, used to resolve upstream hostnames. */
export interface BootstrapServer {
  /** IP literal without brackets. */
  hostname: string;
  /** Default 53. */
  port: number;
}

/** [forwarding] bootstrap: IP[:port] strings, port 53 by default, no duplicates. */
const bootstrapServers: Reader<BootstrapServer[]> = (v, path, key) => {
  const seen = new Map<string, number>();
  return arrayOf(v, path, key, "addresses").map((entry, i) => {
    const at = keyPath(path, i);
    const item = stringItem(entry, at, "an address string", "9.9.9.9");
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
};

/** The [forwarding] keys. idle_timeout sits below Cloudflare's ~10 s so we close first. */
export const FORWARDING = defineSection("forwarding", "forwarding", {
  attempt_timeout: setting("attemptTimeoutMs", duration(), {
    default: 2_000,
    doc: "one try at one upstream before failing over; at most server.query_timeout",
    reloadable: true,
  }),
  connect_timeout: setting("connectTimeoutMs", duration(), {
    default: 2_000,
    doc: "TCP connect plus TLS handshake to an upstream",
    reloadable: true,
  }),
  idle_timeout: setting("idleTimeoutMs", duration(), {
    default: 8_000,
    doc: "idle upstream connections are closed after this, before the server closes them",
    reloadable: true,
  }),
  connections_per_upstream: setting("connectionsPerUpstream", integer({ min: 1, max: 64 }), {
    default: 2,
    doc: "connections kept open to each upstream",
    reloadable: true,
  }),
  max_in_flight_per_connection: setting(
    "maxInFlightPerConnection",
    integer({ min: 1, max: 65535 }),
    {
      default: 512,
      doc: "queries outstanding at once on one upstream connection (pipelining)",
      reloadable: true,
    },
  ),
  failure_backoff: setting("failureBackoffMs", duration(), {
    default: 1_000,
    doc: "first avoidance period of a failed upstream; doubles on each failed probe",
    reloadable: true,
  }),
  max_failure_backoff: setting("maxFailureBackoffMs", duration(), {
    default: 10_000,
    doc: "cap of the doubling failure backoff",
    reloadable: true,
  }),
  failure_threshold: setting("failureThreshold", integer({ min: 1, max: 1000 }), {
    default: DEFAULT_FAILURE_THRESHOLD,
    doc: "answer failures in a row, with nothing answered meanwhile, before an upstream is down",
    reloadable: true,
  }),
  strategy: setting("strategy", oneOf(STRATEGIES), {
    default: "failover",
    doc: "how queries are spread over the upstreams",
    reloadable: true,
  }),
  bootstrap: setting("bootstrap", bootstrapServers, {
    default: [],
    doc: "plain-DNS servers (IP[:port]) that look up upstream hostnames",
    reloadable: true,
  }),
  padding: setting("padding", bool, {
    default: true,
    doc: "EDNS(0) padding (RFC 7830/8467) of queries to encrypted upstreams",
    reloadable: true,
  }),
  ecs: setting("ecs", oneOf(ECS_ACTIONS), {
    default: "strip",
    doc: `a client's EDNS Client Subnet option: "strip" it or "keep" it`,
    reloadable: true,
  }),
});

/**
 * [forwarding], durations in milliseconds, plus [server] query_timeout (the budget of a query,
 * which the upstream side needs too).
 */
export type ForwardingConfig = SectionValue<typeof FORWARDING.rows> & { queryTimeoutMs: number };

/** [forwarding] defaults. */
export const DEFAULT_FORWARDING: Readonly<ForwardingConfig> = Object.freeze({
  ...FORWARDING.defaults,
  queryTimeoutMs: DEFAULT_SERVER.queryTimeoutMs,
});

/** Reads [forwarding] `f`; `s` is the [server] table, for messages about query_timeout. */
export function readForwarding(f: Table, s: Table, queryTimeoutMs: number): ForwardingConfig {
  const forwarding = { ...readSection(FORWARDING, f, "forwarding"), queryTimeoutMs };
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
