/**
 * The PROXY protocol policy of one listener: who must, who may and who must not send a header,
 * and the client address that ACL, rate limiting, logs and metrics then see.
 *
 * - A peer in `trustedProxies` (a load balancer) MUST start every connection / datagram with a
 *   header; without one the connection is closed or the datagram dropped.
 * - A peer outside it MUST NOT send one: a header from an untrusted peer is refused, never parsed
 *   as DNS and never believed (anyone could claim any address).
 * - A peer outside it without a header speaks DNS directly, as without PROXY support, unless
 *   `allowDirect` is false (every client must come through a trusted proxy). This is dnsdist's
 *   `setProxyProtocolACL` model: a header is expected only from the listed peers.
 *
 * Deciding whether an untrusted peer's bytes are a header takes at most 12 bytes and never
 * confuses DNS for a header: a DNS message starting with "PROXY " would have opcode 9 (datagram)
 * or 11 (stream, after the length), both unassigned, and the v2 signature, read as DNS over TCP,
 * would be a query with 2641 questions.
 *
 * Outcomes are values, each refusal a reason from one list (for counters), never a throw.
 */
import { Acl, type Cidr } from "../policy/acl.ts";
import type { Clock } from "../sys/clock.ts";
import {
  DEFAULT_MAX_PROXY_HEADER_BYTES,
  matchProxySignature,
  MAX_MAX_PROXY_HEADER_BYTES,
  MIN_MAX_PROXY_HEADER_BYTES,
  parseProxyDatagram,
  parseProxyHeader,
  type ProxyErrorKind,
  type ProxyHeader,
  type ProxyParseResult,
} from "./proxy_protocol.ts";

/** Why a connection or datagram was refused; one list, for counters and logs. */
export const PROXY_REJECT_REASONS = [
  "untrusted_header", // a header from a peer outside trusted_proxies
  "missing_header", // a trusted proxy sent something that is not a header
  "malformed_header", // a header that does not parse (see `detail`)
  "header_timeout", // a stream header not complete before the deadline
  "closed", // a trusted proxy closed the stream before its header was complete
  "direct_refused", // a peer outside trusted_proxies where direct clients are not allowed
] as const;

/** Why a connection or datagram was refused. */
export type ProxyRejectReason = typeof PROXY_REJECT_REASONS[number];

/**
 * The default time a stream has to deliver its header: the header comes from a load balancer in
 * the same network, in the first segment, so a slow one is a misbehaving peer.
 */
export const DEFAULT_PROXY_HEADER_TIMEOUT_MS = 5_000;

/** A client address as the pipeline's Query carries it. */
export interface ClientAddress {
  hostname: string;
  port: number;
}

/** A refusal, for counting (`reason`) and logging (`message`). */
export interface ProxyRejection {
  ok: false;
  reason: ProxyRejectReason;
  /** The parser's error kind when `reason` is "malformed_header". */
  detail?: ProxyErrorKind;
  message: string;
}

/** What a datagram carries once its header, if any, is accepted. */
export type DatagramOutcome =
  | { ok: true; client: ClientAddress; header: ProxyHeader | null; payload: Uint8Array }
  | ProxyRejection;

/** What a stream starts with once its header, if any, is accepted. */
export type StreamOutcome =
  | {
    ok: true;
    client: ClientAddress;
    header: ProxyHeader | null;
    /** Bytes read past the header: the start of the DNS (or TLS) stream, to be read first. */
    rest: Uint8Array;
  }
  | ProxyRejection;

/** The least the stream reader needs: Deno.Conn is one. */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** Settings of a listener's PROXY policy. */
export interface ProxyGateOptions {
  /** Peers that must send a header (and whose header is believed). */
  trustedProxies: readonly Cidr[];
  /** Whether peers outside `trustedProxies` may send DNS directly. Default true. */
  allowDirect?: boolean;
  /** The longest header accepted (default {@link DEFAULT_MAX_PROXY_HEADER_BYTES}). */
  maxHeaderBytes?: number;
}

/** Deadline settings of {@link ProxyGate.readStream}. */
export interface StreamReadOptions {
  clock: Clock;
  /** The header must be complete this long after reading starts. */
  timeoutMs: number;
}

function reject(
  reason: ProxyRejectReason,
  message: string,
  detail?: ProxyErrorKind,
): ProxyRejection {
  return detail === undefined
    ? { ok: false, reason, message }
    : { ok: false, reason, detail, message };
}

/** A listener's PROXY protocol policy; immutable, shared by all its connections. */
export class ProxyGate {
  readonly #trusted: Acl;
  readonly #allowDirect: boolean;
  readonly #maxHeaderBytes: number;

  /** Throws RangeError for a bound outside what the parser accepts (config validates first). */
  constructor(opts: ProxyGateOptions) {
    const max = opts.maxHeaderBytes ?? DEFAULT_MAX_PROXY_HEADER_BYTES;
    if (
      !Number.isInteger(max) || max < MIN_MAX_PROXY_HEADER_BYTES || max > MAX_MAX_PROXY_HEADER_BYTES
    ) {
      throw new RangeError(
        `PROXY header bound must be an integer in ${MIN_MAX_PROXY_HEADER_BYTES}-` +
          `${MAX_MAX_PROXY_HEADER_BYTES}, got ${max}`,
      );
    }
    this.#trusted = new Acl(opts.trustedProxies, []);
    this.#allowDirect = opts.allowDirect ?? true;
    this.#maxHeaderBytes = max;
  }

  /** True when `peer` (a socket's peer address) is a trusted proxy. */
  isTrusted(peer: string): boolean {
    return this.#trusted.allows(peer);
  }

  /**
   * Decides one datagram from `peer`: from a trusted proxy, strips its v2 header and returns the
   * client it names; from anyone else, passes it through unless it starts with a header.
   */
  datagram(peer: ClientAddress, bytes: Uint8Array): DatagramOutcome {
    if (!this.isTrusted(peer.hostname)) {
      if (!this.#allowDirect) return directRefused(peer);
      const match = matchProxySignature(bytes);
      if (match === "v1" || match === "v2") return untrustedHeader(peer);
      return { ok: true, client: peer, header: null, payload: bytes };
    }
    const r = parseProxyDatagram(bytes, { maxHeaderBytes: this.#maxHeaderBytes });
    if (r.status !== "ok") return fromParseFailure(r, peer);
    return {
      ok: true,
      client: clientOf(r.header, peer),
      header: r.header,
      payload: bytes.subarray(r.length),
    };
  }

  /**
   * Reads the start of a stream from `peer` until its header (trusted proxy) or the absence of
   * one (anyone else) is established; reads at most the header bound, and gives up after
   * `timeoutMs`. On refusal the caller closes the connection (which also ends a pending read).
   * Never throws: a failing read counts as the peer closing.
   */
  async readStream(
    conn: ByteReader,
    peer: ClientAddress,
    opts: StreamReadOptions,
  ): Promise<StreamOutcome> {
    const trusted = this.isTrusted(peer.hostname);
    if (!trusted && !this.#allowDirect) return directRefused(peer);
    const buf = new Uint8Array(this.#maxHeaderBytes);
    let n = 0;
    let expire!: () => void;
    const timeout = new Promise<"timeout">((resolve) => (expire = () => resolve("timeout")));
    const cancel = opts.clock.schedule(opts.timeoutMs, () => expire());
    try {
      // Each round reads at least one byte or ends; the bound caps the rounds as well.
      for (let round = 0; round <= buf.length; round++) {
        const seen = buf.subarray(0, n);
        if (!trusted) {
          const match = matchProxySignature(seen);
          if (match === "v1" || match === "v2") return untrustedHeader(peer);
          if (match === "none") return { ok: true, client: peer, header: null, rest: seen.slice() };
        } else {
          const r = parseProxyHeader(seen, { maxHeaderBytes: this.#maxHeaderBytes });
          if (r.status === "ok") {
            return {
              ok: true,
              client: clientOf(r.header, peer),
              header: r.header,
              rest: buf.slice(r.length, n),
            };
          }
          if (r.status === "error") return fromParseFailure(r, peer);
        }
        const read = conn.read(buf.subarray(n));
        read.catch(() => {}); // after a timeout nobody awaits it; closing the conn settles it
        const got = await Promise.race([read.catch(() => null), timeout]);
        if (got === "timeout") {
          return reject(
            "header_timeout",
            `${peerText(peer)} sent no complete PROXY header within ${opts.timeoutMs} ms`,
          );
        }
        if (got === null) {
          if (!trusted) return { ok: true, client: peer, header: null, rest: seen.slice() };
          return reject("closed", `${peerText(peer)} closed before its PROXY header was complete`);
        }
        n += got;
      }
      return reject("malformed_header", `${peerText(peer)}: PROXY header read made no progress`);
    } finally {
      cancel();
    }
  }
}

function peerText(peer: ClientAddress): string {
  return peer.hostname.includes(":")
    ? `[${peer.hostname}]:${peer.port}`
    : `${peer.hostname}:${peer.port}`;
}

function directRefused(peer: ClientAddress): ProxyRejection {
  return reject(
    "direct_refused",
    `${peerText(peer)} is not a trusted proxy and direct clients are not allowed`,
  );
}

function untrustedHeader(peer: ClientAddress): ProxyRejection {
  return reject(
    "untrusted_header",
    `${peerText(peer)} sent a PROXY header but is not in trusted_proxies`,
  );
}

function fromParseFailure(
  r: Exclude<ProxyParseResult, { status: "ok" }>,
  peer: ClientAddress,
): ProxyRejection {
  if (r.status === "incomplete") {
    return reject("malformed_header", `${peerText(peer)}: PROXY header incomplete`);
  }
  if (r.kind === "not_proxy") {
    return reject("missing_header", `trusted proxy ${peerText(peer)} sent no PROXY header`);
  }
  return reject("malformed_header", `${peerText(peer)}: ${r.message}`, r.kind);
}

/**
 * The client a header names: its source address for PROXY over IPv4/IPv6; the connection's own
 * peer for LOCAL (the proxy's health checks), AF_UNSPEC, v1 UNKNOWN and AF_UNIX (no IP to use).
 */
function clientOf(h: ProxyHeader, peer: ClientAddress): ClientAddress {
  const a = h.addresses;
  if (a.family === "inet" || a.family === "inet6") {
    return { hostname: a.source.address, port: a.source.port };
  }
  return peer;
}

/** A connection that can be read, written and closed: Deno.Conn and StreamConn are. */
export interface DuplexConn extends ByteReader {
  write(p: Uint8Array): Promise<number>;
  close(): void | Promise<void>;
  closeWrite?(): Promise<void>;
}

/**
 * A connection whose first reads return `prefix` (the bytes read past a PROXY header) before
 * reading on from `conn`; writes and closing go straight to `conn`.
 */
export class PrefixedConn implements DuplexConn {
  #prefix: Uint8Array;

  constructor(readonly conn: DuplexConn, prefix: Uint8Array) {
    this.#prefix = prefix;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (this.#prefix.length === 0 || p.length === 0) return this.conn.read(p);
    const n = Math.min(p.length, this.#prefix.length);
    p.set(this.#prefix.subarray(0, n));
    this.#prefix = this.#prefix.subarray(n);
    return Promise.resolve(n);
  }

  write(p: Uint8Array): Promise<number> {
    return this.conn.write(p);
  }

  close(): void | Promise<void> {
    return this.conn.close();
  }

  /** Half-closes when the underlying connection can (Deno.Conn can). */
  closeWrite(): Promise<void> {
    return this.conn.closeWrite ? this.conn.closeWrite() : Promise.resolve();
  }
}
