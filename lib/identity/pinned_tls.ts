/**
 * A client TLS handshake through node:tls with SPKI pins checked afterwards: what a pinned DoT
 * upstream (and a pinned DoH upstream, with node:http2 on top) needs, because `Deno.startTls`
 * does not expose the peer's certificates (its handshake() reports only the ALPN protocol).
 *
 * The normal checks stay: node:tls verifies the chain against `ca` (or the system roots) and the
 * name. Then, on every connection, after `secureConnect` and before the socket is handed out, the
 * chain node:tls reports is checked against the pins: no verification callback is involved, so a
 * resumed session cannot skip it, and a session that reports no chain fails (an empty chain never
 * matches). Deno 2.9.6's node:tls client does not resume sessions at all (checked in
 * tests/identity/spki.test.ts); should that change, this check still runs.
 *
 * For a private resolver with a self-signed certificate, give that certificate as `ca` (node:tls
 * accepts a self-signed leaf as its own trust anchor) and pin its key: the pin adds to the CA and
 * name checks, it never replaces them.
 */
import type { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { connect, type TLSSocket } from "node:tls";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { peerChain, type PinCheck, type PinSet } from "./spki.ts";

/** Where and how to connect. */
export interface PinnedTlsOptions {
  /** An established transport (e.g. a Deno TCP connection as a Duplex); else host/port. */
  socket?: Duplex;
  host: string;
  port: number;
  /** SNI and the name the certificate must carry. */
  servername: string;
  /** PEM trust anchors replacing the system roots; undefined: the system roots. */
  ca?: string | string[];
  alpn?: string[];
  /** A session to offer for resumption (node:tls's `session`); the pins are checked anyway. */
  session?: Buffer;
  pins: PinSet;
  clock: Clock;
  /** The handshake must complete within this. */
  timeoutMs: number;
}

/** Why a pinned handshake failed; one list, for counters. */
export const PINNED_TLS_FAILURES = ["tls", "pin_mismatch", "timeout"] as const;
export type PinnedTlsFailure = typeof PINNED_TLS_FAILURES[number];

/** A verified, pinned socket, or why there is none (the socket is destroyed then). */
export type PinnedTlsResult =
  | { ok: true; socket: TLSSocket; pin: string }
  | { ok: false; reason: PinnedTlsFailure; message: string; presented?: string[] };

/** Connects and checks; never rejects. */
export function pinnedTlsConnect(opts: PinnedTlsOptions): Promise<PinnedTlsResult> {
  const where = `${opts.host}:${opts.port} (${opts.servername})`;
  return new Promise<PinnedTlsResult>((resolve) => {
    const socket = connect({
      socket: opts.socket,
      host: opts.socket ? undefined : opts.host,
      port: opts.socket ? undefined : opts.port,
      servername: opts.servername,
      ca: opts.ca,
      ALPNProtocols: opts.alpn,
      session: opts.session,
      rejectUnauthorized: true,
    });
    let settled = false;
    const finish = (r: PinnedTlsResult) => {
      if (settled) return;
      settled = true;
      cancel();
      if (!r.ok) socket.destroy();
      resolve(r);
    };
    const cancel = opts.clock.schedule(opts.timeoutMs, () =>
      finish({
        ok: false,
        reason: "timeout",
        message: `${where}: no TLS handshake within ${opts.timeoutMs} ms`,
      }));
    socket.once(
      "error",
      (err) => finish({ ok: false, reason: "tls", message: `${where}: ${errText(err)}` }),
    );
    socket.once("secureConnect", () => {
      let check: PinCheck;
      try {
        check = opts.pins.check(peerChain(socket));
      } catch (err) {
        return finish({ ok: false, reason: "tls", message: `${where}: ${errText(err)}` });
      }
      if (check.ok) return finish({ ok: true, socket, pin: check.pin });
      finish({
        ok: false,
        reason: "pin_mismatch",
        message: check.reason === "no_chain"
          ? `${where}: the server presented no certificate to check against spki_pins`
          : `${where}: no certificate in the chain matches spki_pins (chain: ${
            check.presented.join(", ")
          })`,
        presented: check.presented,
      });
    });
  });
}
