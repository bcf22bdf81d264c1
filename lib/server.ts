/**
 * Assembles a running proxy from a validated Config: upstream group → pipeline → listeners. It is
 * the only place that knows how the parts fit; main.ts only handles the command line and signals.
 */
import type { Config } from "./config/schema.ts";
import type { Listener } from "./listen/listener.ts";
import { listenTcp } from "./listen/tcp.ts";
import { listenUdp } from "./listen/udp.ts";
import { Pipeline } from "./pipeline/pipeline.ts";
import type { Clock } from "./sys/clock.ts";
import { errText } from "./sys/errors.ts";
import { logger } from "./sys/log.ts";
import type { Random } from "./sys/random.ts";
import { DotUpstream } from "./upstream/dot_upstream.ts";
import { UpstreamGroup } from "./upstream/group.ts";
import type { Dialer } from "./upstream/dial.ts";

/** The injected clock and randomness, plus an optional dialer for tests. */
export interface ServerDeps {
  clock: Clock;
  random: Random;
  dial?: Dialer;
}

/** A running proxy. */
export interface Server {
  /** Bound addresses, in the order of `config.listeners`. */
  readonly listeners: readonly Listener[];
  readonly pipeline: Pipeline;
  readonly upstreams: readonly DotUpstream[];
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

/** Builds and starts everything; throws BindError (after closing what was opened) if a bind fails. */
export function startServer(config: Config, deps: ServerDeps): Server {
  const { clock, random } = deps;
  const f = config.forwarding;
  const upstreams = config.upstreams.map((u) =>
    new DotUpstream({
      name: u.url,
      target: { hostname: u.hostname, port: u.port, tlsName: u.tlsName, caCerts: u.caCerts },
      clock,
      random,
      connectTimeoutMs: f.connectTimeoutMs,
      idleTimeoutMs: f.idleTimeoutMs,
      maxConnections: f.connectionsPerUpstream,
      maxInFlightPerConnection: f.maxInFlightPerConnection,
      failureBackoffMs: f.failureBackoffMs,
      maxFailureBackoffMs: f.maxFailureBackoffMs,
      probeTimeoutMs: f.attemptTimeoutMs,
      dial: deps.dial,
    })
  );
  const group = new UpstreamGroup(upstreams, { clock, attemptTimeoutMs: f.attemptTimeoutMs });
  const pipeline = new Pipeline({
    upstream: group,
    clock,
    queryTimeoutMs: config.server.queryTimeoutMs,
    udpMaxSize: config.server.udpMaxSize,
    maxInFlight: config.limits.maxInFlight,
    overload: config.limits.overload,
  });
  const streamLimits = {
    idleTimeoutMs: config.server.tcpIdleTimeoutMs,
    readTimeoutMs: config.limits.tcpReadTimeoutMs,
    maxConnections: config.limits.tcpMaxConnections,
    maxConnectionsPerClient: config.limits.tcpMaxConnectionsPerClient,
    maxPipelined: config.limits.tcpMaxPipelined,
  };
  const handle = (q: Parameters<Pipeline["handle"]>[0]) => pipeline.handle(q);

  const listeners: Listener[] = [];
  try {
    for (const l of config.listeners) {
      const common = { url: l.url, hostname: l.hostname, port: l.port, handle };
      listeners.push(
        l.protocol === "udp"
          ? listenUdp(common)
          : listenTcp({ ...common, clock, limits: streamLimits }),
      );
      log.info("listening on {url}", { url: describe(listeners[listeners.length - 1]) });
    }
  } catch (err) {
    for (const l of listeners) l.close();
    group.close();
    const url = config.listeners[listeners.length].url;
    const inUse = err instanceof Deno.errors.AddrInUse;
    throw new BindError(url, inUse ? "address already in use" : errText(err), inUse);
  }

  let stopping: Promise<void> | null = null;
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
      await group.close();
      await Promise.all(listeners.map((l) => l.close()));
    })();
  return { listeners, pipeline, upstreams, stop };
}

function describe(l: Listener): string {
  const scheme = l.url.slice(0, l.url.indexOf(":"));
  const host = l.addr.hostname.includes(":") ? `[${l.addr.hostname}]` : l.addr.hostname;
  return `${scheme}://${host}:${l.addr.port}`;
}
