/**
 * Opening an upstream stream: TCP to the given address, no-delay, then (for DNS-over-TLS) TLS
 * verified for `tlsName`. Kept apart so the connection logic can be driven with any stream in
 * tests, and so plain TCP and DoT share one pool that differs only in its dialer.
 */

/** Where and how to reach one stream server. */
export interface DialTarget {
  /** An IP literal (hostnames are resolved before dialling, see bootstrap.ts). */
  hostname: string;
  port: number;
  /** The name the TLS certificate must carry; unused by {@link dialTcp}. */
  tlsName?: string;
  /** Extra PEM trust anchors for TLS. */
  caCerts?: string[];
}

/**
 * What a dial hands out: the stream an upstream connection reads and writes. A `Deno.Conn` is
 * one; so is the node:tls socket of a pinned DoT dial (lib/identity/pinned_dial.ts), which must
 * see the server's certificates.
 */
export interface UpstreamStream {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** A dial in progress: `abort` closes whatever socket exists and makes `done` reject. */
export interface Dial<S extends UpstreamStream = UpstreamStream> {
  done: Promise<S>;
  /** Which stage the dial is in, so a failure or timeout can be classified. */
  stage(): "connect" | "tls";
  abort(): void;
}

/** Opens a connection. A TLS dialer never falls back to cleartext on any failure. */
export type Dialer = (target: DialTarget) => Dial;

/** The DoT dialer: `Deno.connect` + `setNoDelay` + `Deno.startTls` + explicit handshake. */
export const dialTls: (target: DialTarget) => Dial<Deno.Conn> = (target) =>
  dialStream(target, true);

/** The plain-TCP dialer (`tcp://` upstreams, and UDP's TC=1 retries): connect + no-delay. */
export const dialTcp: (target: DialTarget) => Dial<Deno.Conn> = (target) =>
  dialStream(target, false);

function dialStream(target: DialTarget, tls: boolean): Dial<Deno.Conn> {
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
    if (!tls) return tcp;
    stage = "tls";
    const conn = await Deno.startTls(tcp, {
      hostname: target.tlsName ?? target.hostname,
      caCerts: target.caCerts?.length ? target.caCerts : undefined,
    });
    socket = conn;
    if (aborted) {
      closeQuietly(conn);
      throw new Error("dial aborted");
    }
    await conn.handshake();
    return conn;
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
}
