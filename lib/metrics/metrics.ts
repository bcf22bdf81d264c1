/**
 * Prometheus metrics for the proxy, in a Registry of their own (never prom-client's global one).
 *
 * The query path only bumps numbers in typed arrays: one `recordQuery` costs a few tens of
 * nanoseconds, where prom-client's own `inc`/`observe` hash their labels on every call (hundreds
 * of ns). Counters and gauges are prom-client's, filled from the arrays at scrape time through
 * their documented `collect` callbacks; the two latency histograms, which prom-client cannot be
 * handed as counts, are written by histogram.ts. Numbers other parts already keep (cache stats,
 * upstream connection counts, in-flight) are read from sources at scrape time too, so they cost
 * the query path nothing. Label values come from the enumerations' own arrays (transports,
 * rcodes and types, drop reasons, upstream error kinds, rebinding actions).
 *
 * Longer than the ~500 lines we aim for: the recording methods and the family declarations that
 * read them share the private arrays, and both grow together with each new metric (other
 * branches are adding some). The seam, if it keeps growing: the family declarations (#define)
 * in a module of their own, handed read access to the arrays.
 */
import { Counter, Gauge, Registry } from "prom-client";
import { EDE_LABELS, type EdeCode } from "../dns/ede.ts";
import { type Transport, TRANSPORTS } from "../dns/transport.ts";
import { PROXY_REJECT_REASONS } from "../identity/proxy_gate.ts";
import { CONNECTION_DROP_REASONS, type ConnectionState } from "../listen/listener.ts";
import { CLIENT_AUTH_REFUSALS, type IdentityState } from "../listen/refusals.ts";
import { REBINDING_ACTIONS, type RebindingAction } from "../route/rebinding.ts";
import { UPSTREAM_ERROR_KINDS, type UpstreamErrorKind } from "../upstream/upstream.ts";
import { QTYPE_LABELS, qtypeIndex, RCODE_LABELS, rcodeIndex } from "./dns_labels.ts";
import {
  BucketCounts,
  checkHistogramFamily,
  type HistogramRow,
  histogramText,
} from "./histogram.ts";

/**
 * Why a query got no answer at all: unreadable bytes, a response (QR=1) sent to us, an error
 * answer over UDP beyond the client's `errors_qps` budget, the ACL or rate limit saying "drop"
 * (or slip thinning the answers), or shedding with `overload = "drop"`. With these, every query
 * read is either answered or counted here, so the two add up to what the listener received.
 * The `reason` label of dotproxy_dropped_queries_total, in this order.
 */
export const DROP_REASONS = ["malformed", "response", "error_limit", "policy", "overload"] as const;
/** One of DROP_REASONS. */
export type DropReason = typeof DROP_REASONS[number];

/**
 * Latency bucket upper bounds in seconds: 0.1 ms (a cache hit) to 5 s (the default
 * query_timeout), roughly 1-2.5-5 per decade.
 */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
]);

/** Cumulative cache numbers, read at scrape time; `ResponseCache.stats()` fits as is. */
export interface CacheTotals {
  /** Entries held now. */
  entries: number;
  /** Accounted bytes held now, if the cache tracks them. */
  bytes?: number;
  /** Fresh answers served. */
  hits: number;
  /** Lookups that served nothing. */
  misses: number;
  /** Expired answers served under serve-stale (RFC 8767). */
  staleHits: number;
  /** Entries pushed out by the size limits. */
  evictions: number;
}

/** One upstream's connection state, read at scrape time (`UpstreamStats` + health). */
export interface UpstreamState {
  /** The same name the recorder uses (the upstream URL). */
  name: string;
  openConnections: number;
  /** Connections dialled after the first, cumulative. */
  reconnects: number;
  /** Queries outstanding on its connections now. */
  inFlight?: number;
  /** False while the upstream is backing off after failures. */
  up: boolean;
}

/**
 * Functions the metrics call at scrape time for numbers other parts already keep. Every one is
 * optional; a missing source reads as zero (or no series, for per-upstream state).
 */
export interface MetricSources {
  /** Queries accepted and not yet answered (`Pipeline.inFlight`). */
  inFlight?: () => number;
  /** Response cache totals (`ResponseCache.stats()`). */
  cache?: () => CacheTotals;
  /** Connection state of every upstream. */
  upstreams?: () => Iterable<UpstreamState>;
  /** Queries shed because the in-flight limit was reached (`Pipeline.shed`), cumulative. */
  shed?: () => number;
  /** Query-log records dropped because the sink was slow or failing (`QueryLog.dropped`). */
  queryLogDropped?: () => number;
  /** Client connections of each connection listener (TCP, DoT, DoH), by listener URL. */
  connections?: () => Iterable<{ listener: string; state: ConnectionState }>;
  /** Identity refusals (PROXY gate, client credentials) of each listener that checks them. */
  identity?: () => Iterable<{ listener: string; state: IdentityState }>;
}

/** Construction options. */
export interface MetricsOptions {
  /** Exposed as `dotproxy_build_info{version}`. */
  version?: string;
  /** Upstream names whose series should exist (at zero) before their first query. */
  upstreams?: readonly string[];
  /**
   * Protocols actually listened on: their drop/refuse/rate-limit series are written even at zero,
   * so rate() works from the start. Others appear once non-zero. Default: all.
   */
  protocols?: readonly Transport[];
}

/**
 * The per-upstream handle: resolve it once (`metrics.upstream(name)`) and call `result` per
 * exchange, which skips even the name lookup.
 */
export interface UpstreamRecorder {
  readonly name: string;
  /** One exchange with this upstream: `kind` null when answered, after `seconds`. */
  result(kind: UpstreamErrorKind | null, seconds: number): void;
}

type Labels = Record<string, string>;

const NP = TRANSPORTS.length;
const NQ = QTYPE_LABELS.length;
const NR = RCODE_LABELS.length;
/** Columns of the per-protocol policy counters: refused, rate limited, then DROP_REASONS. */
const REFUSED = 0, RATE_LIMITED = 1, FIRST_DROP = 2;
const NPOL = FIRST_DROP + DROP_REASONS.length;
const DROP_COLUMNS = Object.fromEntries(
  DROP_REASONS.map((reason, i) => [reason, FIRST_DROP + i]),
) as Record<DropReason, number>;
const PROTOCOL_INDEX = Object.fromEntries(TRANSPORTS.map((t, i) => [t, i])) as Record<
  Transport,
  number
>;

class Recorder implements UpstreamRecorder {
  queries = 0;
  /** By kind; a Map, since failures are rare and the set of kinds may grow. */
  readonly errors = new Map<string, number>();
  readonly latency = new BucketCounts(1, LATENCY_BUCKETS);
  readonly labels: Labels;

  constructor(readonly name: string) {
    this.labels = { upstream: name };
  }

  result(kind: UpstreamErrorKind | null, seconds: number): void {
    this.queries++;
    if (kind === null) this.latency.observe(0, seconds);
    else this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
  }
}

type Emit = (labels: Labels, value: number) => void;

/**
 * The proxy's metrics. Create one per process, hand it to the pipeline and upstream group, give
 * it sources with `setSources`, and serve `render()` (with `contentType`) on /metrics.
 */
export class Metrics {
  /** Our own registry (never prom-client's global one): it holds the counters and gauges. */
  readonly #registry: Registry = new Registry();
  /** The Content-Type of `render()`'s text (Prometheus exposition format 0.0.4). */
  readonly contentType: string = this.#registry.contentType;
  /** Every family's text, in declaration order: prom-client's and histogram.ts's. */
  readonly #families: (() => string | Promise<string>)[] = [];
  /** Names of the prom-client families in #families. */
  readonly #exposed = new Set<string>();

  /** [protocol][qtype][rcode] query counts. */
  readonly #queries = new Float64Array(NP * NQ * NR);
  /** Series = protocol * 2 + (cache hit ? 1 : 0). */
  readonly #latency = new BucketCounts(NP * 2, LATENCY_BUCKETS);
  /** [protocol][REFUSED | RATE_LIMITED | one column per DROP_REASONS]. */
  readonly #policy = new Float64Array(NP * NPOL);
  readonly #alwaysShown: boolean[];
  #prefetches = 0;
  /** Extended DNS Errors sent, by code (a small table: lib/dns/ede.ts). */
  readonly #edes = new Map<EdeCode, number>();
  /** Split DNS: queries by route label (a group, local, blocked, refused); see `routed`. */
  readonly #routes = new Map<string, number>();
  /** Rebinding protection: answers filtered, by REBINDING_ACTIONS index. */
  readonly #rebinding = REBINDING_ACTIONS.map(() => 0);
  /** Queries received by client label (declared names and "anonymous": lib/identity/clients.ts). */
  readonly #clients = new Map<string, number>();
  /** Queries lost to an unexpected error in the query path, by protocol. */
  readonly #internalErrors = new Float64Array(NP);
  readonly #upstreams = new Map<string, Recorder>();
  #sources: MetricSources = {};
  readonly #collectors: (() => void | Promise<void>)[] = [];

  constructor(opts: MetricsOptions = {}) {
    const shown = new Set(opts.protocols ?? TRANSPORTS);
    this.#alwaysShown = TRANSPORTS.map((p) => shown.has(p));
    for (const name of opts.upstreams ?? []) this.upstream(name);
    this.#define(opts.version);
    // A metric registered any other way would silently be missing from render().
    for (const m of this.#registry.getMetricsAsArray()) {
      if (!this.#exposed.has(m.name)) throw new Error(`${m.name} is not declared through #define`);
    }
  }

  /**
   * Counts one answered query (any rcode, including REFUSED from the ACL) and its latency from
   * receipt to answer. Queries that get no answer go to `dropped` instead.
   */
  recordQuery(
    protocol: Transport,
    qtype: number,
    rcode: number,
    seconds: number,
    cacheHit: boolean,
  ): void {
    const p = PROTOCOL_INDEX[protocol];
    this.#queries[(p * NQ + qtypeIndex(qtype)) * NR + rcodeIndex(rcode)]++;
    this.#latency.observe(p * 2 + (cacheHit ? 1 : 0), seconds);
  }

  /** A query that got no answer: unreadable (`malformed`) or a response sent to us (`response`). */
  dropped(protocol: Transport, reason: DropReason): void {
    this
      .#policy[
        PROTOCOL_INDEX[protocol] * NPOL + DROP_COLUMNS[reason]
      ]++;
  }

  /** A query refused because the client is not in the ACL. */
  aclRefused(protocol: Transport): void {
    this.#policy[PROTOCOL_INDEX[protocol] * NPOL + REFUSED]++;
  }

  /** A query turned away by the per-client rate limit. */
  rateLimited(protocol: Transport): void {
    this.#policy[PROTOCOL_INDEX[protocol] * NPOL + RATE_LIMITED]++;
  }

  /** An answer decided here carried this RFC 8914 Extended DNS Error to an EDNS client. */
  extendedError(code: EdeCode): void {
    this.#edes.set(code, (this.#edes.get(code) ?? 0) + 1);
  }

  /**
   * A query was routed (split DNS): `route` is its group, or local, blocked or refused (lib/route
   * routeLabel). The labels come from the configuration, so the series are bounded.
   */
  routed(route: string): void {
    this.#routes.set(route, (this.#routes.get(route) ?? 0) + 1);
  }

  /** Route labels whose series should exist (at zero) before their first query. */
  showRoutes(routes: Iterable<string>): void {
    for (const r of routes) if (!this.#routes.has(r)) this.#routes.set(r, 0);
  }

  /**
   * A query was received from the client with this label. The caller bounds the labels
   * (ClientLabels: the declared names plus "anonymous"), so the series stay bounded.
   */
  clientQuery(label: string): void {
    this.#clients.set(label, (this.#clients.get(label) ?? 0) + 1);
  }

  /** Client labels whose series should exist (at zero) before their first query. */
  showClients(labels: Iterable<string>): void {
    for (const l of labels) if (!this.#clients.has(l)) this.#clients.set(l, 0);
  }

  /** An upstream answer had private addresses removed, or was refused (rebinding protection). */
  rebindingFiltered(action: RebindingAction): void {
    this.#rebinding[REBINDING_ACTIONS.indexOf(action)]++;
  }

  /** A query whose handling threw (a bug): answered SERVFAIL if readable, by the query guard. */
  internalError(protocol: Transport): void {
    this.#internalErrors[PROTOCOL_INDEX[protocol]]++;
  }

  /** A background refresh of a popular cache entry was started. */
  prefetched(): void {
    this.#prefetches++;
  }

  /** The recorder for one upstream, created on first use; keep it to skip the lookup later. */
  upstream(name: string): UpstreamRecorder {
    let r = this.#upstreams.get(name);
    if (!r) this.#upstreams.set(name, r = new Recorder(name));
    return r;
  }

  /** Shorthand for `upstream(name).result(kind, seconds)`. */
  upstreamResult(name: string, kind: UpstreamErrorKind | null, seconds: number): void {
    this.upstream(name).result(kind, seconds);
  }

  /** Adds or replaces scrape-time sources (later calls override earlier keys). */
  setSources(sources: MetricSources): void {
    this.#sources = { ...this.#sources, ...sources };
  }

  /** Runs `fn` before every render, e.g. to refresh something the sources read. */
  registerCollector(fn: () => void | Promise<void>): void {
    this.#collectors.push(fn);
  }

  /** The Prometheus text exposition of every metric; serve it with `contentType`. */
  async render(): Promise<string> {
    for (const fn of this.#collectors) await fn();
    const texts: string[] = [];
    for (const family of this.#families) texts.push(await family());
    // As prom-client's Registry.metrics() joins its families.
    return `${texts.join("\n\n")}\n`;
  }

  /**
   * Declares every family, in exposition order, through the three helpers below (a metric made
   * any other way would not be rendered). Counters and gauges are prom-client's: their `collect`
   * callback refills them from our arrays and sources at each scrape.
   */
  #define(version: string | undefined): void {
    const reg = this.#registry;
    const registers = [reg];
    const exposed = (name: string) => {
      this.#exposed.add(name);
      this.#families.push(() => reg.getSingleMetricAsString(name));
    };
    const counter = (name: string, help: string, labelNames: string[], fill: (e: Emit) => void) => {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          fill((labels, value) => this.inc(labels, value));
        },
      });
      exposed(name);
    };
    const gauge = (name: string, help: string, labelNames: string[], fill: (e: Emit) => void) => {
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          fill((labels, value) => this.set(labels, value));
        },
      });
      exposed(name);
    };
    const histogram = (
      name: string,
      help: string,
      labelNames: string[],
      rows: () => Iterable<HistogramRow>,
    ) => {
      const family = { name, help, labelNames, bounds: LATENCY_BUCKETS };
      checkHistogramFamily(family);
      this.#families.push(() => histogramText(family, rows()));
    };
    const src = () => this.#sources;

    if (version !== undefined) {
      gauge("dotproxy_build_info", "Always 1; the version label names the running build.", [
        "version",
      ], (emit) => emit({ version }, 1));
    }

    counter(
      "dotproxy_queries_total",
      "Queries answered, by listener protocol, query type and response code.",
      ["protocol", "qtype", "rcode"],
      (emit) => {
        const q = this.#queries;
        for (let i = 0; i < q.length; i++) {
          if (q[i] === 0) continue;
          const r = i % NR;
          const t = ((i - r) / NR) % NQ;
          const p = Math.floor(i / (NQ * NR));
          emit(
            { protocol: TRANSPORTS[p], qtype: QTYPE_LABELS[t], rcode: RCODE_LABELS[r] },
            q[i],
          );
        }
      },
    );
    histogram(
      "dotproxy_query_duration_seconds",
      "Time from receiving a query to having its answer, by protocol and cache hit or miss.",
      ["protocol", "cache"],
      () => this.#latencyRows(),
    );
    const perProtocol = (col: number) => (emit: Emit) => {
      for (let p = 0; p < NP; p++) {
        const v = this.#policy[p * NPOL + col];
        if (v !== 0 || this.#alwaysShown[p]) emit({ protocol: TRANSPORTS[p] }, v);
      }
    };
    counter(
      "dotproxy_acl_refused_total",
      "Queries answered REFUSED because the client address is not allowed.",
      ["protocol"],
      perProtocol(REFUSED),
    );
    counter(
      "dotproxy_rate_limited_total",
      "Queries turned away by the per-client rate limit.",
      ["protocol"],
      perProtocol(RATE_LIMITED),
    );
    counter(
      "dotproxy_extended_errors_total",
      "Extended DNS Errors (RFC 8914) sent with answers decided here, by code and name " +
        "(upstreams' own EDEs, passed through, are not counted).",
      ["code", "name"],
      (emit) => {
        for (const [code, name] of EDE_LABELS) {
          emit({ code: String(code), name }, this.#edes.get(code) ?? 0);
        }
      },
    );
    counter(
      "dotproxy_route_queries_total",
      "Queries by split-DNS route: the upstream group the name is routed to, or local (answered " +
        "from local zones and records), blocked (action nxdomain) or refused (action refuse).",
      ["route"],
      (emit) => {
        for (const [route, n] of this.#routes) emit({ route }, n);
      },
    );
    counter(
      "dotproxy_client_queries_total",
      "Queries received, by client: the name of a declared client ([[clients]] entry or DoH " +
        "token), or anonymous for every other client (names from certificates not declared " +
        "in [[clients]] included), so the series stay bounded.",
      ["client"],
      (emit) => {
        for (const [client, n] of this.#clients) emit({ client }, n);
      },
    );
    counter(
      "dotproxy_rebinding_filtered_total",
      "Upstream answers with private addresses for a public name (rebinding protection): " +
        "remove (the addresses were taken out) or refuse (the answer was refused).",
      ["action"],
      (emit) => REBINDING_ACTIONS.forEach((action, i) => emit({ action }, this.#rebinding[i])),
    );
    counter(
      "dotproxy_dropped_queries_total",
      "Queries given no answer: malformed (unreadable), response (QR=1, never answered), " +
        "error_limit (an error answer over UDP beyond the client's errors_qps), policy (turned " +
        "away by the ACL or rate limit with action drop, or thinned by slip) or overload " +
        "(max_in_flight reached with overload = drop).",
      ["protocol", "reason"],
      (emit) => {
        for (const reason of DROP_REASONS) {
          for (let p = 0; p < NP; p++) {
            const v = this.#policy[p * NPOL + DROP_COLUMNS[reason]];
            if (v !== 0 || this.#alwaysShown[p]) {
              emit({ protocol: TRANSPORTS[p], reason }, v);
            }
          }
        }
      },
    );
    counter(
      "dotproxy_internal_errors_total",
      "Queries whose handling failed with an unexpected error (a bug, logged): answered " +
        "SERVFAIL when their header could be read, else dropped.",
      ["protocol"],
      (emit) => {
        for (let p = 0; p < NP; p++) {
          const v = this.#internalErrors[p];
          if (v !== 0 || this.#alwaysShown[p]) emit({ protocol: TRANSPORTS[p] }, v);
        }
      },
    );
    counter(
      "dotproxy_queries_shed_total",
      "Queries shed because too many were already in flight.",
      [],
      (emit) => emit({}, src().shed?.() ?? 0),
    );
    gauge(
      "dotproxy_in_flight_queries",
      "Queries received and not yet answered.",
      [],
      (emit) => emit({}, src().inFlight?.() ?? 0),
    );

    const cache = (name: string, help: string, pick: (t: CacheTotals) => number | undefined) =>
      counter(name, help, [], (emit) => {
        const totals = src().cache?.();
        emit({}, totals ? pick(totals) ?? 0 : 0);
      });
    cache("dotproxy_cache_hits_total", "Answers served fresh from the cache.", (t) => t.hits);
    cache(
      "dotproxy_cache_misses_total",
      "Cache lookups that found nothing usable.",
      (t) => t.misses,
    );
    cache(
      "dotproxy_cache_stale_answers_total",
      "Expired answers served under serve-stale (RFC 8767).",
      (t) => t.staleHits,
    );
    cache(
      "dotproxy_cache_evictions_total",
      "Cache entries pushed out by the size limits.",
      (t) => t.evictions,
    );
    counter(
      "dotproxy_cache_prefetches_total",
      "Background refreshes of popular entries close to expiry.",
      [],
      (emit) => emit({}, this.#prefetches),
    );
    gauge("dotproxy_cache_entries", "Entries in the response cache.", [], (emit) => {
      emit({}, src().cache?.().entries ?? 0);
    });
    gauge("dotproxy_cache_bytes", "Accounted memory of the response cache.", [], (emit) => {
      emit({}, src().cache?.().bytes ?? 0);
    });

    counter(
      "dotproxy_upstream_queries_total",
      "Exchanges attempted with each upstream (answered or failed).",
      ["upstream"],
      (emit) => {
        for (const r of this.#upstreams.values()) emit(r.labels, r.queries);
      },
    );
    counter(
      "dotproxy_upstream_errors_total",
      "Failed exchanges with each upstream, by kind.",
      ["upstream", "kind"],
      (emit) => {
        for (const r of this.#upstreams.values()) {
          // Every kind is written even at zero; a kind the recorder got that is not in the list
          // (a caller outside the type system) is still counted under its own name.
          for (const kind of UPSTREAM_ERROR_KINDS) {
            emit({ upstream: r.name, kind }, r.errors.get(kind) ?? 0);
          }
          for (const [kind, n] of r.errors) {
            if (!(UPSTREAM_ERROR_KINDS as readonly string[]).includes(kind)) {
              emit({ upstream: r.name, kind }, n);
            }
          }
        }
      },
    );
    histogram(
      "dotproxy_upstream_duration_seconds",
      "Time for an upstream to answer an exchange (answered exchanges only).",
      ["upstream"],
      () =>
        [...this.#upstreams.values()].map((r) => ({
          labels: [r.name],
          counts: r.latency.row(0),
          sum: r.latency.sums[0],
        })),
    );
    const state = (emit: Emit, pick: (s: UpstreamState) => number | undefined) => {
      for (const s of src().upstreams?.() ?? []) {
        const v = pick(s);
        if (v !== undefined) emit({ upstream: s.name }, v);
      }
    };
    gauge(
      "dotproxy_upstream_open_connections",
      "Open connections to each upstream: TLS and TCP streams, UDP sockets (a DoH upstream's " +
        "HTTP connection pool is not visible and reads 0).",
      ["upstream"],
      (emit) => state(emit, (s) => s.openConnections),
    );
    gauge(
      "dotproxy_upstream_in_flight_queries",
      "Queries outstanding on each upstream's connections.",
      ["upstream"],
      (emit) => state(emit, (s) => s.inFlight),
    );
    counter(
      "dotproxy_upstream_reconnects_total",
      "Connections dialled to each upstream after the first.",
      ["upstream"],
      (emit) => state(emit, (s) => s.reconnects),
    );
    gauge(
      "dotproxy_upstream_up",
      "1 while the upstream is usable, 0 while it is backing off after failures.",
      ["upstream"],
      (emit) => state(emit, (s) => (s.up ? 1 : 0)),
    );
    const connections = (emit: Emit, pick: (c: ConnectionState) => number | undefined) => {
      for (const c of src().connections?.() ?? []) {
        const v = pick(c.state);
        if (v !== undefined) emit({ listener: c.listener }, v);
      }
    };
    gauge(
      "dotproxy_client_connections",
      "Client connections open on each TCP, DoT and DoH listener.",
      ["listener"],
      (emit) => connections(emit, (c) => c.open),
    );
    gauge(
      "dotproxy_client_output_queued_bytes",
      "Answer bytes waiting to be written to clients on each connection listener.",
      ["listener"],
      (emit) => connections(emit, (c) => c.queuedOutputBytes),
    );
    counter(
      "dotproxy_client_connections_dropped_total",
      "Client connections refused or closed by a bound: rejected (caps full, none evictable), " +
        "evicted_idle / evicted_stuck (to admit another), read_timeout (message or handshake " +
        "not completed), output_full (unread answers over the bound), write_timeout (peer not " +
        "reading).",
      ["listener", "reason"],
      (emit) => {
        for (const c of src().connections?.() ?? []) {
          for (const reason of CONNECTION_DROP_REASONS) {
            emit({ listener: c.listener, reason }, c.state.drops[reason]);
          }
        }
      },
    );
    counter(
      "dotproxy_proxy_rejected_total",
      "Connections closed and datagrams dropped by the PROXY protocol gate, never read as DNS: " +
        "untrusted_header (a header from a peer outside trusted_proxies), missing_header (a " +
        "trusted proxy sent none), malformed_header, header_timeout, closed (before the header " +
        "was complete), direct_refused.",
      ["listener", "reason"],
      (emit) => {
        for (const c of src().identity?.() ?? []) {
          for (const reason of PROXY_REJECT_REASONS) {
            emit({ listener: c.listener, reason }, c.state.proxyRejected[reason]);
          }
        }
      },
    );
    counter(
      "dotproxy_client_auth_refused_total",
      "Clients refused for their credentials before any DNS work: DoT no_certificate / " +
        "invalid_certificate (client_auth), DoH missing / wrong / malformed token or throttled " +
        "after repeated failures.",
      ["listener", "reason"],
      (emit) => {
        for (const c of src().identity?.() ?? []) {
          for (const reason of CLIENT_AUTH_REFUSALS) {
            emit({ listener: c.listener, reason }, c.state.authRefused[reason]);
          }
        }
      },
    );
    counter(
      "dotproxy_query_log_dropped_total",
      "Query-log records dropped because the log sink was slow or failing.",
      [],
      (emit) => emit({}, src().queryLogDropped?.() ?? 0),
    );
  }

  *#latencyRows(): Iterable<HistogramRow> {
    for (let p = 0; p < NP; p++) {
      for (let hit = 0; hit < 2; hit++) {
        const series = p * 2 + hit;
        if (!this.#alwaysShown[p] && this.#latency.empty(series)) continue;
        yield {
          labels: [TRANSPORTS[p], hit ? "hit" : "miss"],
          counts: this.#latency.row(series),
          sum: this.#latency.sums[series],
        };
      }
    }
  }
}
