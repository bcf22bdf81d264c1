/**
 * What a listener refused because of who the peer is: PROXY headers refused by the gate
 * (lib/identity/proxy_gate.ts), and clients refused for their credentials (a client certificate
 * on DoT, a token on DoH). Each refusal is counted by reason (metrics read the counts at scrape
 * time) and logged, at most one line per interval per listener, with the number not logged: a
 * scanner or a misconfigured load balancer refused on every connection cannot flood the log.
 */
import { CLIENT_CERT_REFUSALS } from "../identity/client_cert.ts";
import { DOH_AUTH_REFUSALS } from "../identity/doh_auth.ts";
import {
  PROXY_REJECT_REASONS,
  type ProxyRejection,
  type ProxyRejectReason,
} from "../identity/proxy_gate.ts";
import type { Clock } from "../sys/clock.ts";
import { logger } from "../sys/log.ts";
import { LogThrottle } from "../sys/log_throttle.ts";

const log = logger("listen", "identity");

/** Why a client was refused for its credentials; one list for DoT and DoH, for counters. */
export const CLIENT_AUTH_REFUSALS = [...CLIENT_CERT_REFUSALS, ...DOH_AUTH_REFUSALS] as const;
/** One of {@link CLIENT_AUTH_REFUSALS}. */
export type ClientAuthRefusal = typeof CLIENT_AUTH_REFUSALS[number];

/** A listener's identity refusals, cumulative, read at scrape time. */
export interface IdentityState {
  /** Connections closed and datagrams dropped by the PROXY gate, by reason. */
  proxyRejected: Readonly<Record<ProxyRejectReason, number>>;
  /** Clients refused for their credentials, by reason. */
  authRefused: Readonly<Record<ClientAuthRefusal, number>>;
}

/** At most one log line per this long per listener and kind; the rest are counted. */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

function zeros<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

/** Counts and logs one listener's identity refusals. */
export class IdentityRefusals {
  readonly #proxy = zeros(PROXY_REJECT_REASONS);
  readonly #auth = zeros(CLIENT_AUTH_REFUSALS);
  readonly #proxyLog: LogThrottle;
  readonly #authLog: LogThrottle;

  constructor(readonly url: string, clock: Clock, intervalMs = REFUSAL_LOG_INTERVAL_MS) {
    this.#proxyLog = new LogThrottle(clock, intervalMs);
    this.#authLog = new LogThrottle(clock, intervalMs);
  }

  /** A connection closed or a datagram dropped by the PROXY gate. */
  proxy(r: ProxyRejection): void {
    this.#proxy[r.reason]++;
    const more = this.#proxyLog.take();
    if (more === null) return;
    log.warn("{url}: PROXY protocol: {reason}: {message} ({more} more not logged)", {
      url: this.url,
      reason: r.reason,
      message: r.message,
      more,
    });
  }

  /** A client refused for its credentials (`who`: its address, for the log). */
  auth(reason: ClientAuthRefusal, who: string, message: string): void {
    this.#auth[reason]++;
    const more = this.#authLog.take();
    if (more === null) return;
    log.warn("{url}: client {who} refused ({reason}): {message} ({more} more not logged)", {
      url: this.url,
      who,
      reason,
      message,
      more,
    });
  }

  /** The counts so far. */
  state(): IdentityState {
    return { proxyRejected: { ...this.#proxy }, authRefused: { ...this.#auth } };
  }
}
