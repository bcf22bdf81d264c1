/**
 * Opening a DNS-over-TLS connection: TCP to the configured address, no-delay, then TLS verified
 * for `tlsName`. Kept apart so the connection logic can be driven with any stream in tests.
 */

/** Where and how to reach one DoT server. */
export interface DialTarget {
  hostname: string;
  port: number;
  tlsName: string;
  caCerts: string[];
}

/** A dial in progress: `abort` closes whatever socket exists and makes `done` reject. */
export interface Dial {
  done: Promise<Deno.Conn>;
  /** Which stage the dial is in, so a failure or timeout can be classified. */
  stage(): "connect" | "tls";
  abort(): void;
}

/** Opens a verified TLS connection. There is no cleartext fallback on any failure. */
export type Dialer = (target: DialTarget) => Dial;

/** The real dialer: `Deno.connect` + `setNoDelay` + `Deno.startTls` + explicit handshake. */
export const dialTls: Dialer = (target) => {
  let aborted = false;
  let stage: "connect" | "tls" = "connect";
  let socket: Deno.Conn | null = null;
  const closeQuietly = (c: Deno.Conn | null) => {
    try {
      c?.close();
    } catch { /* already closed */ }
  };
  const done = (async () => {
    const tcp = await Deno.connect({ hostname: target.hostname, port: target.port });
    if (aborted) {
      closeQuietly(tcp);
      throw new Error("dial aborted");
    }
    tcp.setNoDelay(true);
    stage = "tls";
    const tls = await Deno.startTls(tcp, {
      hostname: target.tlsName,
      caCerts: target.caCerts.length > 0 ? target.caCerts : undefined,
    });
    socket = tls;
    if (aborted) {
      closeQuietly(tls);
      throw new Error("dial aborted");
    }
    await tls.handshake();
    return tls;
  })();
  done.catch(() => {}); // the owner observes failures; never an unhandled rejection
  return {
    done,
    stage: () => stage,
    abort() {
      aborted = true;
      closeQuietly(socket);
    },
  };
};
