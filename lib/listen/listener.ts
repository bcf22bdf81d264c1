/**
 * What the server needs of any listener: where it is bound, and a two-step stop so that queries
 * already accepted are still answered before sockets close.
 */
import type { Answer, Query } from "../pipeline/pipeline.ts";
import type { IdentityState } from "./refusals.ts";

/**
 * The pipeline's entry point as seen by a listener: answers it can give at once come back as
 * values, those that wait on an upstream as a promise.
 */
export type Handler = (query: Query) => Answer | null | Promise<Answer | null>;

/**
 * Why a client connection was refused or closed before its client was done with it: the bounds of
 * the stream listeners (TCP, DoT, DoH) at work. One list, so metrics labels stay bounded.
 */
export const CONNECTION_DROP_REASONS = [
  "rejected",
  "evicted_idle",
  "evicted_stuck",
  "read_timeout",
  "output_full",
  "write_timeout",
] as const;
/** One of {@link CONNECTION_DROP_REASONS}. */
export type ConnectionDropReason = typeof CONNECTION_DROP_REASONS[number];

/** A connection-oriented listener's state, read at scrape time. */
export interface ConnectionState {
  /** Connections holding a slot now. */
  open: number;
  /** Connections dropped by each bound, cumulative. */
  drops: Readonly<Record<ConnectionDropReason, number>>;
  /** Answer bytes waiting to be written on all its connections, where the listener tracks them. */
  queuedOutputBytes?: number;
}

/** The counters a connection listener keeps (bounds it does not have are absent). */
export interface ConnectionCounters {
  open: number;
  rejected: number;
  evictedIdle: number;
  evictedStuck?: number;
  timedOut: number;
  outputFull?: number;
  writeTimedOut: number;
}

/** A listener's counters as metrics read them, by {@link ConnectionDropReason}. */
export function connectionState(
  c: ConnectionCounters,
  queuedOutputBytes?: number,
): ConnectionState {
  return {
    open: c.open,
    drops: {
      rejected: c.rejected,
      evicted_idle: c.evictedIdle,
      evicted_stuck: c.evictedStuck ?? 0,
      read_timeout: c.timedOut,
      output_full: c.outputFull ?? 0,
      write_timeout: c.writeTimedOut,
    },
    queuedOutputBytes,
  };
}

/** A bound listener. */
export interface Listener {
  /** The configured URL, for logs. */
  readonly url: string;
  /** The address actually bound (the real port when 0 was asked for). */
  readonly addr: Deno.NetAddr;
  /** Stop taking new queries; answers for accepted ones can still be sent. */
  stopAccepting(): void;
  /** Close every socket; call after in-flight queries are answered or the grace period ends. */
  close(): Promise<void>;
  /**
   * Re-reads the local addresses a wildcard listener serves one by one (UDP): called on reload
   * (SIGHUP), so an address added to the host is served without waiting for the periodic rescan.
   */
  rescan?(): Promise<void>;
  /** Connection listeners (TCP, DoT, DoH): open connections, drops by bound, queued output. */
  connections?(): ConnectionState;
  /** Listeners that check who their peers are (PROXY protocol, client credentials). */
  identity?(): IdentityState | undefined;
}
