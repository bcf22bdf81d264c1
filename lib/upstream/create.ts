/**
 * One upstream from its configuration, whatever its transport: the single place that knows which
 * class serves which URL scheme, which of them pad (the encrypted ones), and that a UDP upstream
 * retries truncated answers over TCP to the same server. The server wiring calls only this.
 */
import { DEFAULT_EDNS_UDP_SIZE } from "../dns/reply.ts";
import type { Transport } from "../dns/transport.ts";
import { isIP } from "../net/ip.ts";
import { pinnedDialer } from "../identity/pinned_dial.ts";
import { PinSet } from "../identity/spki.ts";
import type { Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";
import { type AddressResolver, fixedAddress } from "./resolver.ts";
import { type Dialer, dialTcp, dialTls } from "./dial.ts";
import { DohUpstream } from "./doh_upstream.ts";
import type { GroupMember } from "./group.ts";
import { DEFAULT_FAILURE_THRESHOLD } from "./health.ts";
import { StreamUpstream } from "./stream_upstream.ts";
import { UdpUpstream } from "./udp_upstream.ts";
import type { UpstreamStats } from "./upstream.ts";

/**
 * One configured upstream. `UpstreamConfig` from lib/config fits as it is; other fields are
 * ignored.
 */
export interface UpstreamSpec {
  /** The URL as written: the upstream's name in logs and metrics. */
  url: string;
  protocol: Transport;
  /** IP literal (no brackets), or for tls/https a hostname resolved through `resolver`. */
  hostname: string;
  port: number;
  /** https: the URL path; default "/dns-query". */
  path?: string;
  /** tls/https: the certificate name; "" or absent means the hostname (or the IP itself). */
  tlsName?: string;
  /** tls/https: extra PEM trust anchors (ca_file). */
  caCerts?: string[];
  /**
   * tls: SPKI pins (lib/identity/spki.ts); a connection is used only if its chain has a pinned
   * key, checked after every handshake, in addition to the CA and name checks. Empty: none.
   */
  spkiPins?: readonly string[];
}

/**
 * Shared tuning and collaborators. The field names match `ForwardingConfig`, so
 * `{ ...config.forwarding, clock, random, resolver }` fits (its `bootstrap` server list and other
 * fields are ignored: the resolver built from them is passed as `resolver`).
 */
export interface UpstreamDeps {
  clock: Clock;
  random: Random;
  attemptTimeoutMs: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  connectionsPerUpstream: number;
  maxInFlightPerConnection: number;
  failureBackoffMs: number;
  maxFailureBackoffMs: number;
  /**
   * Answer failures in a row (timeouts, unusable answers), each with nothing answered since its
   * query was sent, before an upstream is marked down; default {@link DEFAULT_FAILURE_THRESHOLD}.
   * Connection failures mark it down at once. The same for every kind (see health.ts).
   */
  failureThreshold?: number;
  /** EDNS(0) padding on the encrypted upstreams (tls, https). Default true. */
  padding?: boolean;
  /** The client's EDNS Client Subnet option: "strip" (default, RFC 7871 privacy) or "keep". */
  ecs?: "strip" | "keep";
  /** Resolves hostname upstreams (a `Bootstrap`); required for any spec whose host is a name. */
  resolver?: AddressResolver;
  /**
   * Our advertised UDP size towards upstreams (default 1232), or `false` to forward queries
   * unchanged — only for wiring that does not apply `clientAnswer` on the way back.
   */
  edns?: { udpSize?: number } | false;
  /** Replaces the TLS dialer (tests). */
  dial?: Dialer;
}

/** What the server holds per upstream: a group member with numbers for metrics. */
export type ManagedUpstream = GroupMember & { stats(): UpstreamStats };

/**
 * Builds the upstream for `spec`. Throws RangeError for a combination the configuration must
 * have rejected already: a hostname for udp/tcp, or a hostname without `deps.resolver`.
 */
export function createUpstream(spec: UpstreamSpec, deps: UpstreamDeps): ManagedUpstream {
  const byName = !isIP(spec.hostname);
  if (byName && (spec.protocol === "udp" || spec.protocol === "tcp")) {
    throw new RangeError(`${spec.url}: ${spec.protocol} upstreams need an IP address`);
  }
  if (byName && !deps.resolver) {
    throw new RangeError(`${spec.url}: a hostname upstream needs bootstrap servers`);
  }
  const { clock, random } = deps;
  // Backoff and health policy: the same for every kind, including UDP's TCP fallback.
  const failurePolicy = {
    failureBackoffMs: deps.failureBackoffMs,
    maxFailureBackoffMs: deps.maxFailureBackoffMs,
    health: { failureThreshold: deps.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD },
  };
  const edns = (pad: boolean) =>
    deps.edns === false ? undefined : {
      udpSize: deps.edns?.udpSize ?? DEFAULT_EDNS_UDP_SIZE,
      keepEcs: deps.ecs === "keep",
      pad: pad && deps.padding !== false,
    };
  const tlsName = spec.tlsName || (byName ? spec.hostname : undefined);
  const stream = (name: string, dial: Dialer, pad: boolean, tlsName?: string) =>
    new StreamUpstream({
      name,
      target: { hostname: spec.hostname, port: spec.port, tlsName, caCerts: spec.caCerts },
      clock,
      random,
      connectTimeoutMs: deps.connectTimeoutMs,
      idleTimeoutMs: deps.idleTimeoutMs,
      maxConnections: deps.connectionsPerUpstream,
      maxInFlightPerConnection: deps.maxInFlightPerConnection,
      probeTimeoutMs: deps.attemptTimeoutMs,
      ...failurePolicy,
      dial,
      edns: edns(pad),
      resolver: deps.resolver,
    });
  switch (spec.protocol) {
    case "tls": {
      // A pinned upstream dials through node:tls, which reports the chain to check.
      const pinned = spec.spkiPins?.length
        ? pinnedDialer({
          pins: new PinSet(spec.spkiPins),
          clock,
          handshakeTimeoutMs: deps.connectTimeoutMs,
          upstream: spec.url,
        })
        : null;
      return stream(spec.url, deps.dial ?? pinned ?? dialTls, true, tlsName);
    }
    case "tcp":
      return stream(spec.url, dialTcp, false);
    case "udp":
      return new UdpUpstream({
        name: spec.url,
        hostname: spec.hostname,
        port: spec.port,
        clock,
        random,
        probeTimeoutMs: deps.attemptTimeoutMs,
        ...failurePolicy,
        edns: edns(false),
        tcp: stream(`${spec.url} (tcp)`, dialTcp, false),
      });
    case "https":
      return new DohUpstream({
        name: spec.url,
        url: dohUrl(spec, tlsName),
        clock,
        random,
        caCerts: spec.caCerts,
        connectTimeoutMs: deps.connectTimeoutMs,
        idleTimeoutMs: deps.idleTimeoutMs,
        probeTimeoutMs: deps.attemptTimeoutMs,
        ...failurePolicy,
        edns: edns(true),
        resolver: byName ? deps.resolver : fixedAddress(spec.hostname),
      });
  }
}

/**
 * The endpoint fetch is given. fetch verifies the certificate for the URL's host, so the URL
 * carries the name to verify: the hostname, or for an IP upstream its tls_name (then the
 * connection still goes to the configured IP, see {@link fixedAddress}).
 */
function dohUrl(spec: UpstreamSpec, tlsName: string | undefined): string {
  const host = tlsName ?? spec.hostname;
  const authority = `${host.includes(":") ? `[${host}]` : host}:${spec.port}`;
  return `https://${authority}${spec.path ?? "/dns-query"}`;
}
