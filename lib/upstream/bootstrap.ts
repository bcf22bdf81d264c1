/**
 * Bootstrap resolution: an upstream configured by hostname (`tls://dns.quad9.net`,
 * `https://cloudflare-dns.com/dns-query`) needs addresses before it can be reached, and they must
 * not come from the system resolver — which may well be dotproxy itself, waiting on that very
 * upstream. They come from the configured `bootstrap` servers instead: plain DNS over UDP to IP
 * addresses (with TCP on TC=1), A and AAAA asked together. Answers are cached for their TTL and
 * re-resolved lazily, on the first use after they expire (a dial, not a query: connections are
 * long-lived); when re-resolution fails the old addresses are kept and tried again a little later.
 */
import { CLASS_IN, type Question, Rcode, RRType } from "../dns/message.ts";
import { encodeQuery } from "../dns/reply.ts";
import { nameFromString } from "../dns/wire.ts";
import { isIP } from "../net/ip.ts";
import type { Clock } from "../sys/clock.ts";
import { logger } from "../sys/log.ts";
import type { Random } from "../sys/random.ts";
import { dialTcp } from "./dial.ts";
import { UpstreamGroup } from "./group.ts";
import { StreamUpstream } from "./stream_upstream.ts";
import { UdpUpstream } from "./udp_upstream.ts";
import type { AddressResolver, Lookup } from "./resolver.ts";
import type { Exchange } from "./upstream.ts";

/** One bootstrap server: plain DNS, by IP. */
export interface BootstrapServer {
  hostname: string;
  port: number;
}

/** Bootstrap servers and timing. */
export interface BootstrapOptions {
  /** Asked in order (failover), e.g. `[{ hostname: "9.9.9.9", port: 53 }]`. */
  servers: readonly BootstrapServer[];
  clock: Clock;
  random: Random;
  /** One lookup (both record types, across servers) gives up after this. */
  timeoutMs: number;
  /** Per-server attempt before the next server is asked. Default: timeoutMs / 2. */
  attemptTimeoutMs?: number;
  /** Connect timeout of the TCP retry after TC=1. Default: attemptTimeoutMs. */
  connectTimeoutMs?: number;
  /** Shortest time an answer is kept, whatever its TTL, so a TTL of 0 cannot cause a storm. */
  minTtlMs?: number;
  /** Longest time an answer is kept, whatever its TTL. */
  maxTtlMs?: number;
  /** After a failed re-resolution, how long the old addresses are used before asking again. */
  retryMs?: number;
  failureBackoffMs?: number;
  maxFailureBackoffMs?: number;
}

/** Default floor for cached bootstrap answers. */
export const BOOTSTRAP_MIN_TTL_MS = 30_000;
/** Default ceiling for cached bootstrap answers. */
export const BOOTSTRAP_MAX_TTL_MS = 86_400_000;
/** Default wait before retrying a failed re-resolution (old addresses used meanwhile). */
export const BOOTSTRAP_RETRY_MS = 10_000;

interface Entry {
  addresses: string[];
  expiresAt: number;
  refreshing: Promise<Lookup> | null;
}

const log = logger("upstream", "bootstrap");

/** Resolves upstream hostnames through the bootstrap servers, with a TTL cache. */
export class Bootstrap implements AddressResolver {
  #group: UpstreamGroup;
  #cache = new Map<string, Entry>();
  #min: number;
  #max: number;
  #retry: number;
  /** Lookups sent to the bootstrap servers so far (each asks A and AAAA), for tests and logs. */
  resolutions = 0;

  constructor(private readonly opts: BootstrapOptions) {
    const attemptTimeoutMs = opts.attemptTimeoutMs ?? opts.timeoutMs / 2;
    const backoff = {
      failureBackoffMs: opts.failureBackoffMs ?? 1000,
      maxFailureBackoffMs: opts.maxFailureBackoffMs ?? 10_000,
    };
    const members = opts.servers.map((s) => {
      const hostport = `${s.hostname.includes(":") ? `[${s.hostname}]` : s.hostname}:${s.port}`;
      return new UdpUpstream({
        name: `bootstrap udp://${hostport}`,
        hostname: s.hostname,
        port: s.port,
        clock: opts.clock,
        random: opts.random,
        probeTimeoutMs: attemptTimeoutMs,
        ...backoff,
        tcp: new StreamUpstream({
          name: `bootstrap tcp://${hostport}`,
          target: { hostname: s.hostname, port: s.port },
          dial: dialTcp,
          clock: opts.clock,
          random: opts.random,
          connectTimeoutMs: opts.connectTimeoutMs ?? attemptTimeoutMs,
          idleTimeoutMs: 1000,
          maxConnections: 1,
          maxInFlightPerConnection: 16,
          probeTimeoutMs: attemptTimeoutMs,
          ...backoff,
        }),
      });
    });
    this.#group = new UpstreamGroup(members, { clock: opts.clock, attemptTimeoutMs });
    this.#min = opts.minTtlMs ?? BOOTSTRAP_MIN_TTL_MS;
    this.#max = opts.maxTtlMs ?? BOOTSTRAP_MAX_TTL_MS;
    this.#retry = opts.retryMs ?? BOOTSTRAP_RETRY_MS;
  }

  /**
   * Addresses for `hostname`: from the cache while fresh, else asked (concurrent callers share
   * one resolution). An IP literal is returned as it is. After expiry, a failed re-resolution
   * falls back to the previous addresses.
   */
  lookup(hostname: string): Promise<Lookup> {
    if (isIP(hostname)) return Promise.resolve({ ok: true, addresses: [hostname] });
    const key = hostname.toLowerCase().replace(/\.$/, "");
    const entry = this.#cache.get(key);
    const now = this.opts.clock.now();
    if (entry && now < entry.expiresAt) {
      return Promise.resolve({ ok: true, addresses: entry.addresses });
    }
    if (entry?.refreshing) return entry.refreshing;
    const e: Entry = entry ?? { addresses: [], expiresAt: 0, refreshing: null };
    this.#cache.set(key, e);
    e.refreshing = this.#resolve(key).then((r) => {
      e.refreshing = null;
      const at = this.opts.clock.now();
      if (r.ok) {
        e.addresses = r.addresses;
        e.expiresAt = at + Math.min(Math.max(r.ttlMs, this.#min), this.#max);
        log.debug("resolved {host} to {addresses}", { host: key, addresses: r.addresses });
        return { ok: true, addresses: r.addresses };
      }
      if (e.addresses.length > 0) {
        e.expiresAt = at + this.#retry;
        log.warn("cannot re-resolve {host} ({reason}); still using {addresses}", {
          host: key,
          reason: r.message,
          addresses: e.addresses,
        });
        return { ok: true, addresses: e.addresses };
      }
      this.#cache.delete(key);
      log.warn("cannot resolve {host}: {reason}", { host: key, reason: r.message });
      return r;
    });
    return e.refreshing;
  }

  /** Closes the bootstrap sockets and connections. */
  async close(): Promise<void> {
    await this.#group.close();
  }

  async #resolve(
    name: string,
  ): Promise<{ ok: true; addresses: string[]; ttlMs: number } | { ok: false; message: string }> {
    this.resolutions++;
    let wire: Uint8Array;
    try {
      wire = nameFromString(name);
    } catch (err) {
      return { ok: false, message: `not a valid hostname: ${(err as Error).message}` };
    }
    const deadline = this.opts.clock.now() + this.opts.timeoutMs;
    const [a, aaaa] = await Promise.all(
      [RRType.A, RRType.AAAA].map((qtype) => this.#ask(wire, qtype, deadline)),
    );
    const addresses = [...a.addresses, ...aaaa.addresses];
    if (addresses.length === 0) {
      return { ok: false, message: a.error ?? aaaa.error ?? "no address" };
    }
    return { ok: true, addresses, ttlMs: Math.min(a.ttlMs, aaaa.ttlMs) };
  }

  async #ask(
    name: Uint8Array,
    qtype: number,
    deadline: number,
  ): Promise<{ addresses: string[]; ttlMs: number; error?: string }> {
    const query = encodeQuery({ id: 0, name, qtype });
    const question: Question = { name, qtype, qclass: CLASS_IN, start: 12, end: 16 + name.length };
    const r = await this.#group.exchange(query, question, deadline);
    return addressesOf(r, qtype);
  }
}

/**
 * The addresses of type `qtype` in a reply's answer section (a CNAME chain already followed by
 * the recursive resolver), and the smallest TTL among the answer records.
 */
function addressesOf(
  r: Exchange,
  qtype: number,
): { addresses: string[]; ttlMs: number; error?: string } {
  const none = (error: string) => ({ addresses: [], ttlMs: Infinity, error });
  if (!r.ok) return none(r.error.message);
  const msg = r.msg;
  if (msg.rcode !== Rcode.NOERROR) return none(`rcode ${msg.rcode}`);
  const size = qtype === RRType.A ? 4 : 16;
  const addresses: string[] = [];
  let ttl = Infinity;
  for (const rr of msg.records) {
    if (rr.section !== 1) continue;
    ttl = Math.min(ttl, rr.ttl);
    if (rr.type === qtype && rr.class === CLASS_IN && rr.rdataLength === size) {
      addresses.push(formatAddress(r.reply.subarray(rr.rdataOffset, rr.rdataOffset + size)));
    }
  }
  if (addresses.length === 0) return none(`no ${qtype === RRType.A ? "A" : "AAAA"} records`);
  return { addresses, ttlMs: ttl * 1000 };
}

/** Text form of a 4- or 16-byte address (IPv6 as eight uncompressed hex groups). */
function formatAddress(b: Uint8Array): string {
  if (b.length === 4) return b.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] << 8) | b[i + 1]).toString(16));
  return groups.join(":");
}
