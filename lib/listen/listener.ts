/**
 * What the server needs of any listener: where it is bound, and a two-step stop so that queries
 * already accepted are still answered before sockets close.
 */
import type { Answer, Query } from "../pipeline/pipeline.ts";

/**
 * The pipeline's entry point as seen by a listener: answers it can give at once come back as
 * values, those that wait on an upstream as a promise.
 */
export type Handler = (query: Query) => Answer | null | Promise<Answer | null>;

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
}
