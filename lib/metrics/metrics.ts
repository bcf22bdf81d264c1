/**
 * Prometheus metrics for the proxy, in a Registry of their own (never prom-client's global one).
 *
 * The query path only bumps numbers in typed arrays: one `recordQuery` costs a few tens of
 * nanoseconds, where prom-client's own `inc`/`observe` hash their labels on every call (hundreds
 * of ns). prom-client is used for what it is good at — naming, help, types and the text format —
 * and reads the arrays at scrape time through `collect` hooks. Numbers other parts already keep
 * (cache stats, upstream connection counts, in-flight) are read from sources at scrape time too,
 * so they cost the query path nothing.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { EDE_LABELS, type EdeCode } from "../dns/ede.ts";
import { PROXY_REJECT_REASONS } from "../identity/proxy_gate.ts";
import { CONNECTION_DROP_REASONS, type ConnectionState } from "../listen/listener.ts";
import { CLIENT_AUTH_REFUSALS, type IdentityState } from "../listen/refusals.ts";
import type { UpstreamErrorKind } from "../upstream/upstream.ts";
import { QTYPE_LABELS, qtypeIndex, RCODE_LABELS, rcodeIndex } from "./dns_names.ts";

/** Protocols a client query can arrive over; the `protocol` label of the query metrics. */
export const LISTENER_PROTOCOLS = ["udp", "tcp", "tls", "https"] as const;
/** One of LISTENER_PROTOCOLS. */
export type ListenerProtocol = typeof LISTENER_PROTOCOLS[number];

/**
 * Upstream failure kinds whose series are written even at zero, in this order. A kind not listed
 * (a newer UpstreamErrorKind) is still counted, under its own name, once it occurs.
 */
export const UPSTREAM_ERROR_KINDS: readonly string[] = [
  "timeout",
  "connect",
  "tls",
  "closed",
  "down",
  "overloaded",
  "protocol",
];

/**
 * Why a query got no answer at all: unreadable bytes, a response (QR=1) sent to us, an error
 * answer over UDP beyond the client's `errors_qps` budget, the ACL or rate limit saying "drop"
 * (or slip thinning the answers), or shedding with `overload = "drop"`. With these, every query
 * read is either answered or counted here, so the two add up to what the listener received.
 */
export type DropReason = "malformed" | "response" | "error_limit" | "policy" | "overload";

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

/** One upstream's connection state, read at scrape time (`DotUpstream.stats()` + health). */
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
  protocols?: readonly ListenerProtocol[];
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

const NP = LISTENER_PROTOCOLS.length;
const NQ = QTYPE_LABELS.length;
const NR = RCODE_LABELS.length;
/** Columns of the per-protocol policy counters. */
const REFUSED = 0, RATE_LIMITED = 1, DROP_MALFORMED = 2, DROP_RESPONSE = 3, DROP_ERROR_LIMIT = 4;
const DROP_POLICY = 5, DROP_OVERLOAD = 6;
const NPOL = 7;
const DROP_COLUMNS: Record<DropReason, number> = {
  malformed: DROP_MALFORMED,
  response: DROP_RESPONSE,
  error_limit: DROP_ERROR_LIMIT,
  policy: DROP_POLICY,
  overload: DROP_OVERLOAD,
};

function protocolIndex(p: ListenerProtocol): number {
  switch (p) {
    case "udp":
      return 0;
    case "tcp":
      return 1;
    case "tls":
      return 2;
    default:
      return 3;
  }
}

/** Histogram rows in flat arrays: per series, one count per bucket plus one above the top. */
class BucketCounts {
  readonly counts: Float64Array;
  readonly sums: Float64Array;
  /** A typed copy: indexing a frozen JS array here costs 4x as much (measured). */
  readonly #bounds: Float64Array;
  readonly #width: number;

  constructor(series: number, bounds: readonly number[]) {
    this.#bounds = new Float64Array(bounds);
    this.#width = bounds.length + 1;
    this.counts = new Float64Array(series * this.#width);
    this.sums = new Float64Array(series);
  }

  observe(series: number, value: number): void {
    // NaN, negative and infinite values would poison the sum forever: count them as 0.
    const v = value >= 0 && value < Infinity ? value : 0;
    const b = this.#bounds;
    const n = b.length;
    let i = 0;
    while (i < n && v > b[i]) i++;
    this.counts[series * this.#width + i]++;
    this.sums[series] += v;
  }

  row(series: number): HistogramRow["counts"] {
    return this.counts.subarray(series * this.#width, (series + 1) * this.#width);
  }
}

/** One labelled histogram series: non-cumulative bucket counts (last = above top) and sum. */
interface HistogramRow {
  labels: Labels;
  counts: Float64Array;
  sum: number;
}

type HistogramData = Awaited<ReturnType<Histogram<string>["get"]>>;

/**
 * A prom-client Histogram whose data comes from BucketCounts rather than `observe`: it keeps
 * prom-client's name and label validation and text format, without its per-call label hashing.
 */
class ArrayHistogram extends Histogram<string> {
  readonly #rows: () => Iterable<HistogramRow>;
  readonly #bounds: readonly number[];
  readonly #name: string;
  readonly #help: string;

  constructor(
    config: { name: string; help: string; labelNames: string[]; registers: Registry[] },
    bounds: readonly number[],
    rows: () => Iterable<HistogramRow>,
  ) {
    super({ ...config, buckets: [...bounds] });
    this.#rows = rows;
    this.#bounds = bounds;
    this.#name = config.name;
    this.#help = config.help;
  }

  override get(): Promise<HistogramData> {
    return Promise.resolve(this.#data());
  }

  /** The Registry prefers this over get() when formatting text. */
  getForPromString(): Promise<HistogramData> {
    return Promise.resolve(this.#data());
  }

  #data(): HistogramData {
    const values: HistogramData["values"] = [];
    const bucket = `${this.#name}_bucket`;
    const n = this.#bounds.length;
    for (const { labels, counts, sum } of this.#rows()) {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        acc += counts[i];
        values.push({
          metricName: bucket,
          labels: { ...labels, le: String(this.#bounds[i]) },
          value: acc,
        });
      }
      acc += counts[n];
      values.push({ metricName: bucket, labels: { ...labels, le: "+Inf" }, value: acc });
      values.push({ metricName: `${this.#name}_sum`, labels, value: sum });
      values.push({ metricName: `${this.#name}_count`, labels, value: acc });
    }
    return {
      name: this.#name,
      help: this.#help,
      // prom-client declares `type` as an enum that does not exist at run time; the Registry
      // prints this string.
      type: "histogram" as unknown as HistogramData["type"],
      values,
      aggregator: "sum",
      // Part of prom-client's declared shape; the Registry never calls it.
      collect: () => {},
    };
  }
}

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
  /** The private registry; prefer `render()`, which also runs registered collectors. */
  readonly registry: Registry = new Registry();
  /** The Content-Type of `render()`'s text (Prometheus exposition format 0.0.4). */
  readonly contentType: string = this.registry.contentType;

  /** [protocol][qtype][rcode] query counts. */
  readonly #queries = new Float64Array(NP * NQ * NR);
  /** Series = protocol * 2 + (cache hit ? 1 : 0). */
  readonly #latency = new BucketCounts(NP * 2, LATENCY_BUCKETS);
  /** [protocol][REFUSED | RATE_LIMITED | DROP_MALFORMED | DROP_RESPONSE | DROP_ERROR_LIMIT]. */
  readonly #policy = new Float64Array(NP * NPOL);
  readonly #alwaysShown: boolean[];
  #prefetches = 0;
  /** Extended DNS Errors sent, by code (a small table: lib/dns/ede.ts). */
  readonly #edes = new Map<EdeCode, number>();
  /** Split DNS: queries by route label (a group, local, blocked, refused); see `routed`. */
  readonly #routes = new Map<string, number>();
  /** Rebinding protection: answers filtered, [remove, refuse]. */
  readonly #rebinding = [0, 0];
  /** Queries received by client label (declared names and "anonymous": lib/identity/clients.ts). */
  readonly #clients = new Map<string, number>();
  /** Queries lost to an unexpected error in the query path, by protocol. */
  readonly #internalErrors = new Float64Array(NP);
  readonly #upstreams = new Map<string, Recorder>();
  #sources: MetricSources = {};
  readonly #collectors: (() => void | Promise<void>)[] = [];

  constructor(opts: MetricsOptions = {}) {
    const shown = new Set(opts.protocols ?? LISTENER_PROTOCOLS);
    this.#alwaysShown = LISTENER_PROTOCOLS.map((p) => shown.has(p));
    for (const name of opts.upstreams ?? []) this.upstream(name);
    this.#define(opts.version);
  }

  /**
   * Counts one answered query (any rcode, including REFUSED from the ACL) and its latency from
   * receipt to answer. Queries that get no answer go to `dropped` instead.
   */
  recordQuery(
    protocol: ListenerProtocol,
    qtype: number,
    rcode: number,
    seconds: number,
    cacheHit: boolean,
  ): void {
    const p = protocolIndex(protocol);
    this.#queries[(p * NQ + qtypeIndex(qtype)) * NR + rcodeIndex(rcode)]++;
    this.#latency.observe(p * 2 + (cacheHit ? 1 : 0), seconds);
  }

  /** A query that got no answer: unreadable (`malformed`) or a response sent to us (`response`). */
  dropped(protocol: ListenerProtocol, reason: DropReason): void {
    this
      .#policy[
        protocolIndex(protocol) * NPOL + DROP_COLUMNS[reason]
      ]++;
  }

  /** A query refused because the client is not in the ACL. */
  aclRefused(protocol: ListenerProtocol): void {
    this.#policy[protocolIndex(protocol) * NPOL + REFUSED]++;
  }

  /** A query turned away by the per-client rate limit. */
  rateLimited(protocol: ListenerProtocol): void {
    this.#policy[protocolIndex(protocol) * NPOL + RATE_LIMITED]++;
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
  rebindingFiltered(action: "remove" | "refuse"): void {
    this.#rebinding[action === "remove" ? 0 : 1]++;
  }

  /** A query whose handling threw (a bug): answered SERVFAIL if readable, by the query guard. */
  internalError(protocol: ListenerProtocol): void {
    this.#internalErrors[protocolIndex(protocol)]++;
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
    return await this.registry.metrics();
  }

  #define(version: string | undefined): void {
    const reg = this.registry;
    const registers = [reg];
    const counter = (name: string, help: string, labelNames: string[], fill: (e: Emit) => void) =>
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
    const gauge = (name: string, help: string, labelNames: string[], fill: (e: Emit) => void) =>
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
            { protocol: LISTENER_PROTOCOLS[p], qtype: QTYPE_LABELS[t], rcode: RCODE_LABELS[r] },
            q[i],
          );
        }
      },
    );
    new ArrayHistogram(
      {
        name: "dotproxy_query_duration_seconds",
        help:
          "Time from receiving a query to having its answer, by protocol and cache hit or miss.",
        labelNames: ["protocol", "cache"],
        registers,
      },
      LATENCY_BUCKETS,
      () => this.#latencyRows(),
    );
    const perProtocol = (col: number) => (emit: Emit) => {
      for (let p = 0; p < NP; p++) {
        const v = this.#policy[p * NPOL + col];
        if (v !== 0 || this.#alwaysShown[p]) emit({ protocol: LISTENER_PROTOCOLS[p] }, v);
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
      (emit) => {
        emit({ action: "remove" }, this.#rebinding[0]);
        emit({ action: "refuse" }, this.#rebinding[1]);
      },
    );
    counter(
      "dotproxy_dropped_queries_total",
      "Queries given no answer: malformed (unreadable), response (QR=1, never answered), " +
        "error_limit (an error answer over UDP beyond the client's errors_qps), policy (turned " +
        "away by the ACL or rate limit with action drop, or thinned by slip) or overload " +
        "(max_in_flight reached with overload = drop).",
      ["protocol", "reason"],
      (emit) => {
        for (const reason of Object.keys(DROP_COLUMNS) as DropReason[]) {
          for (let p = 0; p < NP; p++) {
            const v = this.#policy[p * NPOL + DROP_COLUMNS[reason]];
            if (v !== 0 || this.#alwaysShown[p]) {
              emit({ protocol: LISTENER_PROTOCOLS[p], reason }, v);
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
          if (v !== 0 || this.#alwaysShown[p]) emit({ protocol: LISTENER_PROTOCOLS[p] }, v);
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
          for (const kind of UPSTREAM_ERROR_KINDS) {
            emit({ upstream: r.name, kind }, r.errors.get(kind) ?? 0);
          }
          for (const [kind, n] of r.errors) {
            if (!UPSTREAM_ERROR_KINDS.includes(kind)) emit({ upstream: r.name, kind }, n);
          }
        }
      },
    );
    new ArrayHistogram(
      {
        name: "dotproxy_upstream_duration_seconds",
        help: "Time for an upstream to answer an exchange (answered exchanges only).",
        labelNames: ["upstream"],
        registers,
      },
      LATENCY_BUCKETS,
      () =>
        [...this.#upstreams.values()].map((r) => ({
          labels: r.labels,
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
      "Open DoT connections to each upstream.",
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
        const counts = this.#latency.row(series);
        if (!this.#alwaysShown[p] && counts.every((c) => c === 0)) continue;
        yield {
          labels: { protocol: LISTENER_PROTOCOLS[p], cache: hit ? "hit" : "miss" },
          counts,
          sum: this.#latency.sums[series],
        };
      }
    }
  }
}
