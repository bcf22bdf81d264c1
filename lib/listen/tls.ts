/**
 * The DNS-over-TLS listener (RFC 7858): TCP framing and pipelining exactly as the TCP listener
 * (lib/listen/stream.ts), inside TLS with ALPN "dot" (RFC 7858 §3.2, IANA "dot").
 *
 * Connections are accepted with `Deno.listen` so that they get TCP_NODELAY, and the TLS server
 * handshake runs through node:tls (lib/listen/node_conn.ts explains why `Deno.listenTls` will
 * not do). The handshake counts as the first message: it must complete within the read timeout
 * (with a PROXY header in front, header and handshake together).
 *
 * Mutual TLS (`client_auth`): "require" has node:tls refuse a client without a certificate
 * chaining to the client CA during the handshake; "optional" admits a client without one as
 * anonymous and refuses one whose certificate does not verify. The certificate's name (subject
 * CN, else its first DNS/email/URI SAN: lib/identity/client_cert.ts) is the client's name for
 * every query on the connection. Refusals are counted by reason and logged (rate-limited).
 */
import { createSecureContext, type SecureContext } from "node:tls";
import { clientCertIdentity } from "../identity/client_cert.ts";
import type { ClientAuthMode } from "../identity/modes.ts";
import type { ClientAddress, ProxyGate } from "../identity/proxy_gate.ts";
import type { Clock } from "../sys/clock.ts";
import { checkCertificate } from "../sys/tls_material.ts";
import type { Handler, Listener } from "./listener.ts";
import { ClientCertRefused, serverHandshake } from "./node_conn.ts";
import { IdentityRefusals } from "./refusals.ts";
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
  /** Mutual TLS; absent or mode "none": no client certificate is asked for. */
  clientAuth?: ClientAuthSettings | null;
  /** PROXY protocol from trusted load balancers, read before the TLS handshake; null: off. */
  proxy?: ProxyGate | null;
}

/** Whether clients must present a certificate, and the CA it must chain to (PEM). */
export interface ClientAuthSettings {
  mode: ClientAuthMode;
  /** Required unless mode is "none". */
  ca: string | null;
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
  /** Applies a new client_auth mode and client CA to connections accepted from now on. */
  reloadClientAuth(clientAuth: ClientAuthSettings | null): void;
}

/**
 * Binds a DoT listener. Throws the OS error (e.g. AddrInUse) for the server to report, or an
 * error from the TLS library if `cert`/`key` are unusable (checked before binding).
 */
export function listenTls(opts: TlsOptions): TlsListener {
  let context = secureContext(opts.cert, opts.key);
  let material = { cert: opts.cert, key: opts.key };
  let clientAuth = checkClientAuth(opts.clientAuth ?? null);
  const refusals = new IdentityRefusals(opts.url, opts.clock);
  const listener = Deno.listen({ transport: "tcp", hostname: opts.hostname, port: opts.port });
  const who = (c: ClientAddress) => c.hostname;
  const stream = new StreamListener(listener, {
    url: opts.url,
    transport: "tls",
    handle: opts.handle,
    clock: opts.clock,
    limits: opts.limits,
    proxy: opts.proxy,
    refusals,
    prepare: async (conn, client) => {
      const auth = clientAuth;
      const mode = auth?.mode ?? "none";
      let hs;
      try {
        hs = await serverHandshake(conn, {
          context,
          alpnProtocols: [DOT_ALPN],
          clock: opts.clock,
          lingerMs: opts.limits.readTimeoutMs,
          clientCerts: auth && mode !== "none"
            ? { ...material, ca: auth.ca!, rejectUnauthorized: mode === "require" }
            : null,
        });
      } catch (err) {
        if (err instanceof ClientCertRefused) refusals.auth(err.reason, who(client), err.message);
        throw err;
      }
      const identity = clientCertIdentity(hs.peer, mode);
      if (!identity.ok) {
        refusals.auth(identity.reason, who(client), identity.message);
        hs.conn.abort();
        throw new Error(identity.message);
      }
      hs.conn.clientName = identity.name;
      return hs.conn;
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
    identity: () => stream.identity(),
    stopAccepting: () => stream.stopAccepting(),
    close: () => stream.close(),
    reloadCertificate(cert: string, key: string): void {
      context = secureContext(cert, key);
      material = { cert, key };
    },
    reloadClientAuth(next: ClientAuthSettings | null): void {
      clientAuth = checkClientAuth(next);
    },
  };
}

/** Throws when a mode that asks for certificates has no CA (config validation catches it first). */
function checkClientAuth(auth: ClientAuthSettings | null): ClientAuthSettings | null {
  if (auth && auth.mode !== "none" && !auth.ca) {
    throw new RangeError(`client_auth "${auth.mode}" needs a client CA (client_ca_file)`);
  }
  return auth;
}

/** A checked certificate and key, parsed once for every handshake that uses them. */
function secureContext(cert: string, key: string): SecureContext {
  checkCertificate(cert, key);
  return createSecureContext({ cert, key });
}
