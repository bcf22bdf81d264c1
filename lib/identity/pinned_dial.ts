/**
 * Dialling a pinned DoT upstream: TCP (no-delay), then a node:tls handshake verified as usual
 * (CA and name) and checked against the upstream's SPKI pins (lib/identity/pinned_tls.ts) after
 * every handshake, resumed or not. A mismatch fails the dial at its "tls" stage, so the upstream
 * counts it as a connection failure (health), and is logged with the pins the server presented,
 * at most once per interval per upstream.
 *
 * The connection it hands out is the node:tls socket adapted to the read/write/close stream the
 * upstream connection code speaks (lib/listen/node_conn.ts NodeTlsConn), because `Deno.startTls`
 * does not expose the peer's certificates.
 */
import { duplexOf, NodeTlsConn } from "../listen/node_conn.ts";
import { LogThrottle } from "../sys/log_throttle.ts";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import { pinnedTlsConnect } from "./pinned_tls.ts";
import type { PinSet } from "./spki.ts";

const log = logger("upstream", "pins");

/** The ALPN protocol of DNS-over-TLS (RFC 7858 §3.2). */
const DOT_ALPN = "dot";

/** At most one pin-mismatch line per upstream per this long; the rest are counted. */
export const PIN_MISMATCH_LOG_INTERVAL_MS = 60_000;

/** Where to dial: an IP, a port, and the name the certificate must carry. */
export interface PinnedDialTarget {
  hostname: string;
  port: number;
  tlsName?: string;
  /** PEM trust anchors replacing the default roots (ca_file); none: the default roots. */
  caCerts?: string[];
}

/** The stream a pinned dial hands out: what the upstream connection reads and writes. */
export interface PinnedStream {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** A dial in progress, shaped like lib/upstream/dial.ts's Dial. */
export interface PinnedDial {
  done: Promise<PinnedStream>;
  stage(): "connect" | "tls";
  abort(): void;
}

/** A refused connection: no certificate of the chain has a pinned key. */
export class PinMismatch extends Error {
  constructor(message: string, readonly presented: readonly string[]) {
    super(message);
  }
}

/** What a pinned dialer needs besides the target. */
export interface PinnedDialOptions {
  pins: PinSet;
  clock: Clock;
  /** Bounds the handshake on its own; the upstream's connect timeout aborts it too. */
  handshakeTimeoutMs: number;
  /** The upstream's name, for the log line. */
  upstream: string;
  /** Called on each mismatch (metrics, tests). */
  onMismatch?: (presented: readonly string[]) => void;
}

/**
 * A dialer for one pinned upstream. Each dial connects, handshakes and checks the pins; nothing
 * is cached between dials (no session reuse can carry a previous verdict over).
 */
export function pinnedDialer(opts: PinnedDialOptions): (target: PinnedDialTarget) => PinnedDial {
  const throttle = new LogThrottle(opts.clock, PIN_MISMATCH_LOG_INTERVAL_MS);
  return (target) => {
    let stage: "connect" | "tls" = "connect";
    let aborted = false;
    let tcp: Deno.TcpConn | null = null;
    const closeTcp = () => {
      try {
        tcp?.close();
      } catch { /* already closed */ }
    };
    const done = (async (): Promise<PinnedStream> => {
      tcp = await Deno.connect({ hostname: target.hostname, port: target.port });
      if (aborted) {
        closeTcp();
        throw new Error("dial aborted");
      }
      tcp.setNoDelay(true);
      stage = "tls";
      const r = await pinnedTlsConnect({
        socket: duplexOf(tcp),
        host: target.hostname,
        port: target.port,
        servername: target.tlsName ?? target.hostname,
        ca: target.caCerts?.length ? target.caCerts : undefined,
        alpn: [DOT_ALPN],
        pins: opts.pins,
        clock: opts.clock,
        timeoutMs: opts.handshakeTimeoutMs,
      });
      if (!r.ok) {
        closeTcp();
        if (r.reason === "pin_mismatch") {
          const presented = r.presented ?? [];
          opts.onMismatch?.(presented);
          const more = throttle.take();
          if (more !== null) {
            log.warn(
              "upstream {upstream}: refused, SPKI pin mismatch: {message} ({more} more not logged)",
              { upstream: opts.upstream, message: r.message, more },
            );
          }
          throw new PinMismatch(r.message, presented);
        }
        throw new Error(r.message);
      }
      if (aborted) {
        r.socket.destroy();
        closeTcp();
        throw new Error("dial aborted");
      }
      const conn = new NodeTlsConn(r.socket, tcp, opts.clock, opts.handshakeTimeoutMs);
      return {
        read: (p) => conn.read(p),
        write: (p) => conn.write(p),
        close: () => conn.abort(),
      };
    })();
    done.catch((err) => {
      if (!(err instanceof PinMismatch)) {
        log.debug("pinned dial failed: {err}", { err: errText(err) });
      }
    });
    return {
      done,
      stage: () => stage,
      abort() {
        aborted = true;
        closeTcp();
      },
    };
  };
}
