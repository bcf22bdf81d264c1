/**
 * Assembles a running proxy from a validated Config: upstreams → group → cache → pipeline →
 * listeners, plus metrics and the admin listener. It is the only place that knows how the parts
 * fit; main.ts only handles the command line, signals and reload.
 *
 * Slightly over the ~500 lines we aim for while client identity is being wired through it on a
 * parallel branch. Its seam, for the split once that lands: the functions that turn config
 * sections into the parts' options (pipelineOptions, streamLimits, listenerPolicy, clientsOf,
 * dohAuth, proxyGate, wildcardOptions) in a module of their own; start, reload and stop here.
 */
import { ResponseCache } from "./cache/cache.ts";
import {
  type Config,
  DEFAULT_GROUP,
  forwardingOf,
  type ListenerConfig,
  listenerTransport,
} from "./config/schema.ts";
import { routingSettings } from "./config/sections/routing.ts";
import { restartNeeded } from "./config/reload.ts";
import { type AdminServer, startAdmin } from "./admin/server.ts";
import { listenHttps } from "./listen/https.ts";
import { QueryGuard } from "./listen/guard.ts";
import type { Listener } from "./listen/listener.ts";
import type { StreamLimits } from "./listen/stream.ts";
import { listenTcp } from "./listen/tcp.ts";
import { type ClientAuthSettings, listenTls } from "./listen/tls.ts";
import { listenUdp, type WildcardOptions } from "./listen/udp.ts";
import { Metrics } from "./metrics/metrics.ts";
import type { QueryLog } from "./metrics/query_log.ts";
import {
  type ListenerPolicy,
  Pipeline,
  type PipelineClients,
  type PipelineOptions,
  type PipelineRouting,
  type Query,
} from "./pipeline/pipeline.ts";
import type { HostsFs } from "./route/hosts_watch.ts";
import { LiveRouting } from "./route/live.ts";
import type { Routing } from "./route/routing.ts";
import { ClientDirectory, ClientLabels } from "./identity/clients.ts";
import { DohAuthenticator } from "./identity/doh_auth.ts";
import { FailureLimiter } from "./identity/failure_limiter.ts";
import { TokenStore } from "./identity/tokens.ts";
import { ANONYMOUS_LABEL } from "./identity/names.ts";
import { ProxyGate } from "./identity/proxy_gate.ts";
import { Acl } from "./policy/acl.ts";
import { RateLimiter } from "./policy/rate_limit.ts";
import type { Clock } from "./sys/clock.ts";
import { errText } from "./sys/errors.ts";
import { logger } from "./sys/log.ts";
import type { Random } from "./sys/random.ts";
import { Bootstrap } from "./upstream/bootstrap.ts";
import { createUpstream, type ManagedUpstream } from "./upstream/create.ts";
import type { Dialer } from "./upstream/dial.ts";
import { UpstreamGroup } from "./upstream/group.ts";

/** The injected clock and randomness, plus optional collaborators main or tests provide. */
export interface ServerDeps {
  clock: Clock;
  random: Random;
  dial?: Dialer;
  queryLog?: QueryLog | null;
  version?: string;
  /** Hosts-file access for split DNS (default: the real file system); tests pass a fake. */
  hostsFs?: HostsFs;
}

/** A running proxy. */
export interface Server {
  /** Bound DNS listeners, in the order of `config.listeners`. */
  readonly listeners: readonly Listener[];
  readonly pipeline: Pipeline;
  /** The current upstreams (replaced by `reload`). */
  readonly upstreams: readonly ManagedUpstream[];
  readonly cache: ResponseCache | null;
  readonly metrics: Metrics;
  readonly admin: AdminServer | null;
  /** Split DNS: the running generation (router, rebinding filter) and its hosts watcher. */
  readonly routing: LiveRouting;
  /**
   * Applies a new configuration without dropping listeners or the cache: upstreams, ACL, rate
   * limits, limits, policy, log settings and certificates. Keys whose table row is not
   * `reloadable` (listener addresses, connection limits, the admin address, the query log, cache
   * sizing) need a restart; returns those that changed (lib/config/reload.ts), and certificates
   * that could not be loaded.
   */
  reload(next: Config): Promise<string[]>;
  /** Stop accepting, answer in-flight queries (up to the grace period), close everything. */
  stop(): Promise<void>;
}

/** A listener that could not be bound: the URL and the OS reason, for a one-line message. */
export class BindError extends Error {
  constructor(readonly url: string, readonly reason: string, readonly inUse: boolean) {
    super(`cannot listen on ${url}: ${reason}`);
  }
}

const log = logger("server");

/** The parts of the pipeline a reload replaces. */
function pipelineOptions(
  config: Config,
  upstreams: Upstreams,
  routing: Routing,
  clock: Clock,
  cache: ResponseCache | null,
  metrics: Metrics,
  queryLog: QueryLog | null,
): PipelineOptions {
  const rl = config.rateLimit;
  const perPrefix = (qps: number, burst: number) =>
    new RateLimiter({
      clock,
      qps,
      burst,
      ipv4Prefix: rl.ipv4Prefix,
      ipv6Prefix: rl.ipv6Prefix,
      maxBuckets: rl.maxBuckets,
    });
  const pipelineRouting: PipelineRouting = { ...routing, groups: upstreams.groups };
  // A client with its own qps has one bucket for all its addresses (prefix lengths 0).
  const perClient = new Map(
    config.clients.filter((c) => c.qps > 0).map((c) => [
      c.name,
      new RateLimiter({ clock, qps: c.qps, burst: c.burst, ipv4Prefix: 0, ipv6Prefix: 0 }),
    ]),
  );
  return {
    upstream: upstreams.group,
    routing: pipelineRouting,
    clock,
    queryTimeoutMs: config.server.queryTimeoutMs,
    udpMaxSize: config.server.udpMaxSize,
    maxInFlight: config.limits.maxInFlight,
    overload: config.limits.overload,
    cache,
    serveStale: config.cache.serveStale ? { answerAfterMs: config.cache.staleAnswerAfterMs } : null,
    prefetch: config.cache.prefetch,
    rateLimit: rl.qps > 0 || perClient.size > 0
      ? {
        limiter: rl.qps > 0 ? perPrefix(rl.qps, rl.burst) : null,
        perClient,
        action: rl.action,
        slip: rl.slip,
      }
      : null,
    clients: clientsOf(config),
    errorLimit: rl.errorsQps > 0
      ? perPrefix(rl.errorsQps, Math.max(1, Math.ceil(2 * rl.errorsQps)))
      : null,
    anyQueries: config.policy.anyQueries,
    nonRecursive: config.policy.nonRecursive,
    chaosIdentity: config.policy.chaosIdentity || null,
    ecs: config.forwarding.ecs,
    metrics,
    queryLog,
  };
}

/** The names of one config: `[[clients]]` networks and the metric labels of declared names. */
function clientsOf(config: Config): PipelineClients {
  return {
    directory: new ClientDirectory(config.clients),
    labels: new ClientLabels(declaredNames(config)),
  };
}

/**
 * The names a metric label may carry: `[[clients]]` entries and DoH token names (declared in the
 * configuration, so bounded); names from certificates count as anonymous unless declared.
 */
function declaredNames(config: Config): string[] {
  const names = new Set(config.clients.map((c) => c.name));
  for (const l of config.listeners) for (const t of l.tokens ?? []) names.add(t.name);
  return [...names];
}

/** The token check of an https/http listener, or null when it asks for no credentials. */
function dohAuth(l: ListenerConfig, clock: Clock): DohAuthenticator | null {
  if ((l.protocol !== "https" && l.protocol !== "http") || l.clientAuth === "none") return null;
  return new DohAuthenticator({
    mode: l.clientAuth,
    store: new TokenStore(l.tokens),
    limiter: new FailureLimiter({
      clock,
      maxFailures: l.authMaxFailures,
      failuresPerMinute: l.authFailuresPerMinute,
      blockMs: l.authBlockMs,
    }),
    basePath: l.path,
  });
}

/** The upstream side built from one config: what a reload replaces as a whole. */
interface Upstreams {
  /** Every group's members. */
  members: ManagedUpstream[];
  /** The default group (empty when every name is routed elsewhere). */
  group: UpstreamGroup;
  /** One UpstreamGroup per group name, each with its own members, health and strategy. */
  groups: Map<string, UpstreamGroup>;
  bootstrap: Bootstrap | undefined;
  close(): Promise<void>;
}

function buildUpstreams(config: Config, deps: ServerDeps, metrics: Metrics): Upstreams {
  const { clock, random } = deps;
  const f = config.forwarding;
  const bootstrap = f.bootstrap.length > 0
    ? new Bootstrap({ servers: f.bootstrap, clock, random, timeoutMs: f.connectTimeoutMs })
    : undefined;
  const members: ManagedUpstream[] = [];
  const groups = new Map<string, UpstreamGroup>();
  const makeGroup = (name: string, spec: readonly Config["upstreams"][number][]) => {
    const g = forwardingOf(config, name);
    const own = spec.map((u) =>
      createUpstream(u, { ...g, clock, random, resolver: bootstrap, dial: deps.dial })
    );
    members.push(...own);
    return new UpstreamGroup(own, {
      name,
      clock,
      random,
      attemptTimeoutMs: g.attemptTimeoutMs,
      strategy: g.strategy,
      onResult: (member, kind, ms) => metrics.upstreamResult(member, kind, ms / 1000),
    });
  };
  for (const name of new Set(config.upstreams.map((u) => u.group))) {
    groups.set(name, makeGroup(name, config.upstreams.filter((u) => u.group === name)));
  }
  const group = groups.get(DEFAULT_GROUP) ?? makeGroup(DEFAULT_GROUP, []);
  return {
    members,
    group,
    groups,
    bootstrap,
    async close() {
      await Promise.all([...groups.values()].map((g) => g.close()));
      await bootstrap?.close();
    },
  };
}

function listenerPolicy(config: Config, l: ListenerConfig): ListenerPolicy {
  const access = l.access ?? config.access;
  const names = { allowClients: access.allowClients, denyClients: access.denyClients };
  return { acl: new Acl(access.allow, access.deny, names), aclAction: access.action };
}

function streamLimits(config: Config): StreamLimits {
  return {
    idleTimeoutMs: config.server.tcpIdleTimeoutMs,
    readTimeoutMs: config.limits.tcpReadTimeoutMs,
    maxConnections: config.limits.tcpMaxConnections,
    maxConnectionsPerClient: config.limits.tcpMaxConnectionsPerClient,
    maxPipelined: config.limits.tcpMaxPipelined,
    maxOutputBytes: config.limits.tcpMaxOutputBytes,
    maxQueuedAnswers: config.limits.tcpMaxQueuedAnswers,
  };
}

type Bound = Listener & {
  reloadCertificate?: (cert: string, key: string) => void;
  reloadClientAuth?: (clientAuth: ClientAuthSettings | null) => void;
  reloadAuth?: (auth: DohAuthenticator | null) => void;
};

/** The PROXY protocol gate of a udp/tcp/tls listener, or null when it takes no headers. */
function proxyGate(l: ListenerConfig): ProxyGate | null {
  return l.proxyProtocol ? new ProxyGate({ trustedProxies: l.trustedProxies }) : null;
}

/** The mutual-TLS settings of a tls listener. */
function clientAuthOf(l: ListenerConfig): ClientAuthSettings | null {
  return l.protocol === "tls" ? { mode: l.clientAuth, ca: l.clientCa } : null;
}

/** Binds one listener; may be asynchronous (servers whose bind reports errors by event). */
function bind(
  l: ListenerConfig,
  config: Config,
  clock: Clock,
  handle: (q: Query) => ReturnType<Pipeline["handle"]>,
): Bound | Promise<Bound> {
  const common = { url: l.url, hostname: l.hostname, port: l.port, handle };
  switch (l.protocol) {
    case "udp":
      return listenUdp({
        ...common,
        clock,
        receiveConcurrency: config.limits.udpReceiveConcurrency,
        wildcard: wildcardOptions(l, config),
        proxy: proxyGate(l),
      });
    case "tcp":
      return listenTcp({ ...common, clock, limits: streamLimits(config), proxy: proxyGate(l) });
    case "tls":
      return listenTls({
        ...common,
        clock,
        limits: streamLimits(config),
        cert: l.cert,
        key: l.key,
        proxy: proxyGate(l),
        clientAuth: clientAuthOf(l),
      });
    case "https":
    case "http":
      return listenHttps({
        ...common,
        path: l.path,
        clock,
        cert: l.protocol === "https" ? l.cert : undefined,
        key: l.protocol === "https" ? l.key : undefined,
        trustedProxies: l.trustedProxies,
        clientHeader: l.clientHeader,
        limits: streamLimits(config),
        auth: dohAuth(l, clock),
      });
  }
}

/**
 * How a wildcard UDP listener shares its port with the other UDP listeners of the config: the
 * addresses they bind are left to them, and "::" serves IPv6 only beside a 0.0.0.0 listener.
 */
function wildcardOptions(l: ListenerConfig, config: Config): WildcardOptions {
  const others = config.listeners.filter((o) =>
    o !== l && o.protocol === "udp" && o.port === l.port && o.port !== 0
  );
  return {
    rescanIntervalMs: config.server.udpRescanIntervalMs,
    ipv4: !others.some((o) => o.hostname === "0.0.0.0"),
    exclude: others.map((o) => o.hostname),
  };
}

/** Builds and starts everything; throws BindError (after closing what was opened) if a bind fails. */
export async function startServer(config: Config, deps: ServerDeps): Promise<Server> {
  const { clock } = deps;
  const queryLog = deps.queryLog ?? null;
  const metrics = new Metrics({
    version: deps.version,
    upstreams: config.upstreams.map((u) => u.url),
    protocols: [
      ...new Set(config.listeners.map((l) => listenerTransport(l.protocol))),
    ],
  });
  let upstreams = buildUpstreams(config, deps, metrics);
  const c = config.cache;
  const cache = c.enabled && c.maxEntries > 0
    ? new ResponseCache({
      clock,
      maxEntries: c.maxEntries,
      maxBytes: c.maxBytes,
      minTtl: c.minTtl,
      maxTtl: c.maxTtl,
      maxNegativeTtl: c.maxNegativeTtl,
      servfailTtl: c.servfailTtl,
      staleMaxAge: c.serveStale ? c.staleMaxAge : 0,
    })
    : null;

  const hostsOf = (c: Config) => ({ paths: c.routing.hostsFiles, pollMs: c.routing.hostsPollMs });
  const settingsOf = (c: Config) =>
    routingSettings({ ...c, groups: new Set(c.upstreams.map((u) => u.group)) });
  const showRoutes = (c: Config) => {
    metrics.showRoutes([...new Set(c.upstreams.map((u) => u.group)), "local"]);
    metrics.showClients([...declaredNames(c), ANONYMOUS_LABEL]);
  };
  let routing: LiveRouting;
  try {
    routing = await LiveRouting.start(settingsOf(config), hostsOf(config), {
      clock,
      fs: deps.hostsFs,
      // A hosts file changed: the same configuration with the new local data.
      onUpdate: (r) =>
        pipeline.reconfigure(
          pipelineOptions(config, upstreams, r, clock, cache, metrics, queryLog),
        ),
    });
  } catch (err) {
    await upstreams.close();
    throw err;
  }
  showRoutes(config);
  const pipeline = new Pipeline(
    pipelineOptions(config, upstreams, routing.current, clock, cache, metrics, queryLog),
  );
  let stopping: Promise<void> | null = null;
  metrics.setSources({
    inFlight: () => pipeline.inFlight,
    shed: () => pipeline.shed,
    cache: cache ? () => cache.stats() : undefined,
    upstreams: () =>
      upstreams.members.map((u) => ({ name: u.name, ...u.stats(), up: u.health.available() })),
    queryLogDropped: queryLog ? () => queryLog.dropped : undefined,
    connections: () =>
      listeners.flatMap((l) => l.connections ? [{ listener: l.url, state: l.connections() }] : []),
    identity: () =>
      listeners.flatMap((l) => {
        const state = l.identity?.();
        return state ? [{ listener: l.url, state }] : [];
      }),
  });

  // An unexpected throw in the query path costs that query (SERVFAIL), never a listener.
  const guard = new QueryGuard({
    clock,
    udpSize: config.server.udpMaxSize,
    onFault: (transport) => metrics.internalError(transport),
  });
  const listeners: Bound[] = [];
  const policies: ListenerPolicy[] = [];
  let admin: AdminServer | null = null;
  try {
    for (const l of config.listeners) {
      const i = policies.push(listenerPolicy(config, l)) - 1;
      const bound = await bind(
        l,
        config,
        clock,
        guard.wrap((q) => pipeline.handle(q, policies[i])),
      );
      listeners.push(bound);
      log.info("listening on {url}", { url: describe(bound) });
    }
    if (config.admin) {
      admin = startAdmin({
        hostname: config.admin.hostname,
        port: config.admin.port,
        metrics,
        ready: () =>
          stopping
            ? { ready: false, reason: "shutting down" }
            : upstreams.members.some((m) => m.health.available())
            ? { ready: true }
            : { ready: false, reason: "no upstream is healthy" },
      });
      log.info("admin listening on http://{address}", { address: hostPort(admin.addr) });
    }
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()));
    routing.stop();
    await upstreams.close();
    const url = listeners.length < config.listeners.length
      ? config.listeners[listeners.length].url
      : `admin ${config.admin?.hostname}:${config.admin?.port}`;
    const inUse = err instanceof Deno.errors.AddrInUse ||
      (err instanceof Error && "inUse" in err && err.inUse === true);
    throw new BindError(url, inUse ? "address already in use" : errText(err), inUse);
  }

  const reload = async (next: Config): Promise<string[]> => {
    const skipped = restartNeeded(config, next);
    // New upstreams first, then swap, then close the old ones (their in-flight queries finish).
    const old = upstreams;
    upstreams = buildUpstreams(next, deps, metrics);
    // Routes, records and hosts files: a problem keeps the running ones and is reported.
    for (const problem of await routing.reload(settingsOf(next), hostsOf(next))) {
      log.error("reload: {problem}", { problem });
    }
    showRoutes(next);
    pipeline.reconfigure(
      pipelineOptions(next, upstreams, routing.current, clock, cache, metrics, queryLog),
    );
    next.listeners.forEach((l, i) => {
      if (i >= listeners.length) return;
      policies[i] = listenerPolicy(next, l);
      if (l.cert && l.key && listeners[i].reloadCertificate) {
        try {
          listeners[i].reloadCertificate!(l.cert, l.key);
        } catch (err) {
          skipped.push(`${l.url} certificate (${errText(err)})`);
        }
      }
      if (listeners[i].reloadAuth && (l.protocol === "https" || l.protocol === "http")) {
        listeners[i].reloadAuth!(dohAuth(l, clock));
      }
      if (listeners[i].reloadClientAuth && l.protocol === "tls") {
        try {
          listeners[i].reloadClientAuth!(clientAuthOf(l));
        } catch (err) {
          skipped.push(`${l.url} client_auth (${errText(err)})`);
        }
      }
    });
    config = next;
    // Wildcard UDP listeners pick up addresses added to the host (and drop removed ones).
    await Promise.all(listeners.map((l) => l.rescan?.()));
    await old.close();
    return skipped;
  };

  const stop = () =>
    stopping ??= (async () => {
      for (const l of listeners) l.stopAccepting();
      let graceOver = false;
      let cancelGrace = () => {};
      await Promise.race([
        pipeline.drained(),
        new Promise<void>((resolve) => {
          cancelGrace = clock.schedule(config.server.shutdownGraceMs, () => {
            graceOver = true;
            resolve();
          });
        }),
      ]);
      cancelGrace();
      if (graceOver) {
        log.warn("shutdown grace period over with {n} queries unanswered", {
          n: pipeline.inFlight,
        });
      }
      routing.stop();
      await upstreams.close();
      await Promise.all(listeners.map((l) => l.close()));
      await admin?.close();
    })();
  return {
    listeners,
    pipeline,
    get upstreams() {
      return upstreams.members;
    },
    cache,
    metrics,
    admin,
    routing,
    reload,
    stop,
  };
}

function hostPort(addr: Deno.NetAddr): string {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `${host}:${addr.port}`;
}

function describe(l: Listener): string {
  const scheme = l.url.slice(0, l.url.indexOf(":"));
  return `${scheme}://${hostPort(l.addr)}`;
}
