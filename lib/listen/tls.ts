/**
 * The DNS-over-TLS listener (RFC 7858): TCP framing and pipelining exactly as the TCP listener
 * (lib/listen/stream.ts), inside TLS with ALPN "dot" (RFC 7858 §3.2, IANA "dot").
 *
 * Connections are accepted with `Deno.listen` so that they get TCP_NODELAY, and the TLS server
 * handshake runs through node:tls (lib/listen/node_conn.ts explains why `Deno.listenTls` will
 * not do). The handshake counts as the first message: it must complete within the read timeout.
 */
import { createSecureContext, type SecureContext } from "node:tls";
import type { Clock } from "../sys/clock.ts";
import { checkCertificate } from "../sys/tls_material.ts";
import type { Handler, Listener } from "./listener.ts";
import { serverHandshake } from "./node_conn.ts";
import { type StreamLimits, StreamListener, type StreamStats } from "./stream.ts";

/** Re-exported for lib/listen/https.ts; the check itself lives in lib/sys/tls_material.ts. */
export { checkCertificate };

/** The ALPN protocol id of DNS-over-TLS. */
export const DOT_ALPN = "dot";

/** Where to bind, how to guard it, and the certificate to present. */
export interface TlsOptions {
  url: string;
  hostname: string;
  port: number;
  handle: Handler;
  clock: Clock;
  limits: StreamLimits;
  /** PEM certificate chain, leaf first. */
  cert: string;
  /** PEM private key of the leaf certificate. */
  key: string;
}

/** A DoT listener whose certificate can be replaced while it runs. */
export interface TlsListener extends Listener {
  /** Connection counters, as for TCP. */
  readonly stats: StreamStats;
  /** Answer bytes waiting to be written on all connections, as for TCP. */
  readonly queuedOutputBytes: number;
  /**
   * Presents `cert`/`key` to connections accepted from now on; established ones keep theirs.
   * Throws (and keeps the old certificate) if the PEM does not parse or the key does not match.
   */
  reloadCertificate(cert: string, key: string): void;
}

/**
 * Binds a DoT listener. Throws the OS error (e.g. AddrInUse) for the server to report, or an
 * error from the TLS library if `cert`/`key` are unusable (checked before binding).
 */
export function listenTls(opts: TlsOptions): TlsListener {
  let context = secureContext(opts.cert, opts.key);
  const listener = Deno.listen({ transport: "tcp", hostname: opts.hostname, port: opts.port });
  const stream = new StreamListener(listener, {
    url: opts.url,
    transport: "tls",
    handle: opts.handle,
    clock: opts.clock,
    limits: opts.limits,
    prepare: async (conn) => {
      const { conn: tls } = await serverHandshake(conn, {
        context,
        alpnProtocols: [DOT_ALPN],
        clock: opts.clock,
        lingerMs: opts.limits.readTimeoutMs,
      });
      return tls;
    },
  });
  return {
    url: stream.url,
    addr: stream.addr,
    stats: stream.stats,
    get queuedOutputBytes() {
      return stream.queuedOutputBytes;
    },
    connections: () => stream.connections(),
    stopAccepting: () => stream.stopAccepting(),
    close: () => stream.close(),
    reloadCertificate(cert: string, key: string): void {
      context = secureContext(cert, key);
    },
  };
}

/** A checked certificate and key, parsed once for every handshake that uses them. */
function secureContext(cert: string, key: string): SecureContext {
  checkCertificate(cert, key);
  return createSecureContext({ cert, key });
}
