/**
 * The contract between the query pipeline and whatever answers upstream. Failures come back as
 * typed values (never thrown), so one place — the pipeline — turns them into rcodes.
 */
import { decodeQuery, type Message, type Question } from "../dns/message.ts";
import { type HopEdns, upstreamQuery } from "../dns/edns.ts";

/**
 * Why an exchange can fail, declared once (metrics write a series for each, in this order).
 * `timeout`: no matching reply in time; `connect`: the connection could
 * not be established (refused, unreachable, not within connect_timeout); `tls`: handshake
 * (including its timeout) or certificate failure (never retried in cleartext); `closed`: the
 * connection went away with the query outstanding, or a datagram could not be sent; `down`: the
 * upstream is backing off after failures and has no usable connection; `overloaded`: every connection is at its in-flight cap;
 * `protocol`: the server answered, but not with a usable DNS message (DoH: an HTTP status other
 * than 200, a wrong content type, a body that does not decode or answers another question).
 * How much each says about the upstream's health is declared once, in health.ts.
 */
export const UPSTREAM_ERROR_KINDS = [
  "timeout",
  "connect",
  "tls",
  "closed",
  "down",
  "overloaded",
  "protocol",
] as const;

/** One of UPSTREAM_ERROR_KINDS. */
export type UpstreamErrorKind = typeof UPSTREAM_ERROR_KINDS[number];

/** A failed exchange, naming the upstream so logs and metrics can say which one. */
export interface UpstreamError {
  kind: UpstreamErrorKind;
  upstream: string;
  message: string;
}

/**
 * The outcome of one exchange: the reply bytes (ID still the upstream's) and their decoded form
 * (every upstream decodes a reply to match it to the question, so nobody decodes twice); or why
 * not. A reply that does not decode is a `protocol` failure, never an `ok`.
 */
export type Exchange = { ok: true; reply: Uint8Array; msg: Message; upstream: string } | {
  ok: false;
  error: UpstreamError;
};

/** Something that answers DNS queries: one server, or a group of them. */
export interface Upstream {
  /** A stable label for logs, e.g. `tls://1.1.1.1:853`. */
  readonly name: string;
  /**
   * Sends `query` (any ID; the upstream assigns its own) and waits for the reply whose ID and
   * question match, until `deadline` on the injected clock. `decoded`, when the caller already
   * decoded `query` (the pipeline did), spares the upstream decoding it again for its hop.
   */
  exchange(
    query: Uint8Array,
    question: Question,
    deadline: number,
    decoded?: Message,
  ): Promise<Exchange>;
  /** Closes every connection; pending exchanges resolve as `closed`. */
  close(): Promise<void>;
}

/** Shorthand for building a failed Exchange. */
export function failure(kind: UpstreamErrorKind, upstream: string, message: string): Exchange {
  return { ok: false, error: { kind, upstream, message } };
}

/** Numbers every upstream kind reports for logs and metrics. */
export interface UpstreamStats {
  /** Connections (stream, or sockets for UDP) open now; DoH pools are opaque and report 0. */
  openConnections: number;
  /** Queries outstanding now. */
  inFlight: number;
  /** Connections dialled after the first, cumulative. */
  reconnects: number;
  /** Replies thrown away (unknown ID, wrong question or source, malformed), cumulative. */
  discarded: number;
}

/**
 * The query as this hop should see it: with `edns`, rewritten by `upstreamQuery` (fresh OPT, the
 * client's hop-by-hop options dropped, padding on encrypted transports); without, unchanged.
 * Every upstream kind calls this, so the rule lives in one place. `decoded` is `query` already
 * decoded (the pipeline's view), so the miss path decodes each query once.
 */
export function forHop(
  query: Uint8Array,
  edns: HopEdns | undefined,
  decoded?: Message,
): Uint8Array {
  if (!edns) return query;
  if (decoded) return upstreamQuery(query, decoded, edns);
  const fresh = decodeQuery(query);
  return fresh.ok ? upstreamQuery(query, fresh.value, edns) : query;
}
