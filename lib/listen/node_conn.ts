/**
 * Server-side TLS on a socket we accepted ourselves, through node:tls.
 *
 * Why: connections accepted by `Deno.listenTls` never get TCP_NODELAY and `Deno.TlsConn` has no
 * `setNoDelay`, so on a new TLS 1.3 connection the first answer waits behind the unacknowledged
 * session tickets for the client's delayed ACK (~40 ms) and pipelined answers suffer Nagle.
 * Deno has no server-side `startTls`; node:tls does (`new TLSSocket(socket, { isServer })`). So
 * we accept with `Deno.listen`, set no-delay, and run node:tls over the Deno connection: this
 * module bridges the two stream models in both directions.
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import { createServer, type SecureContext, TLSSocket } from "node:tls";
import type { ClientCertSource } from "../identity/client_cert.ts";
import type { Clock } from "../sys/clock.ts";
import { writeAll } from "../dns/framing.ts";
import type { StreamConn } from "./stream.ts";

/**
 * The transport a server handshake runs on: a Deno connection, or one whose first bytes were
 * already read (a PROXY header's remainder: lib/identity/proxy_gate.ts PrefixedConn).
 */
export interface TransportConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void | Promise<void>;
  closeWrite?(): Promise<void>;
}

const READ_CHUNK = 16 * 1024;
/** Decrypted bytes buffered before the TLS socket is paused (backpressure to the client). */
const MAX_BUFFERED = 64 * 1024;

/**
 * A Deno connection as a node Duplex: the transport under a node `TLSSocket`. Destroying the
 * duplex closes the connection; ending it half-closes (after the TLS close_notify is written).
 */
export function duplexOf(conn: TransportConn): Duplex {
  let pumping = false;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  return new Duplex({
    allowHalfOpen: true,
    read() {
      if (pumping) return;
      pumping = true;
      (async () => {
        try {
          for (;;) {
            const buf = new Uint8Array(READ_CHUNK);
            const n = await conn.read(buf);
            if (n === null) {
              this.push(null);
              return;
            }
            if (!this.push(Buffer.from(buf.buffer, 0, n))) return;
          }
        } catch (err) {
          if (!closed) this.destroy(err as Error);
        } finally {
          pumping = false;
        }
      })();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writeAll(conn, chunk).then(() => callback(), (err) => callback(err));
    },
    final(callback) {
      (conn.closeWrite?.() ?? Promise.resolve()).then(() => callback(), (err) => callback(err));
    },
    destroy(err, callback) {
      close();
      callback(err);
    },
  });
}

/** The result of a server handshake: the stream to speak on and what was negotiated. */
export interface TlsServerStream {
  conn: NodeTlsConn;
  /** The ALPN protocol agreed on, or null when the client offered none. */
  alpnProtocol: string | null;
  /** The client's certificate and its verdict (lib/identity/client_cert.ts reads it). */
  peer: ClientCertSource;
}

/**
 * Mutual TLS: the node:tls server options that ask for a client certificate. `ca` (PEM) is what
 * a client certificate must chain to; with `rejectUnauthorized` node:tls refuses a connection
 * without a valid one before handing it over.
 */
export interface ClientCertRequest {
  cert: string;
  key: string;
  ca: string;
  rejectUnauthorized: boolean;
}

/** Why a handshake that asked for a client certificate was refused by node:tls. */
export class ClientCertRefused extends Error {
  constructor(
    readonly reason: "no_certificate" | "invalid_certificate",
    message: string,
  ) {
    super(message);
  }
}

/** What a server handshake needs. */
export interface ServerHandshakeOptions {
  context: SecureContext;
  alpnProtocols: string[];
  clock: Clock;
  lingerMs: number;
  /** Ask for a client certificate (mutual TLS); absent: none is asked for. */
  clientCerts?: ClientCertRequest | null;
}

/**
 * Runs the server side of a TLS handshake on an accepted connection. Rejects if the handshake
 * fails or the connection closes first (which is how a handshake deadline takes effect: close
 * `conn`). `lingerMs` bounds how long a graceful close may wait to deliver its close_notify.
 *
 * With `clientCerts`, the handshake goes through a node:tls Server made for this connection
 * (`server.emit("connection", ...)`): in Deno 2.9.6 only the Server's connection path verifies a
 * client certificate against its `ca` (a bare server TLSSocket reports every client as
 * unauthorized). A Server costs about 0.5 ms to make (it parses the PEM), on connections of
 * mTLS listeners only. A refusal by node:tls rejects with {@link ClientCertRefused}.
 */
export function serverHandshake(
  conn: TransportConn,
  opts: ServerHandshakeOptions,
): Promise<TlsServerStream> {
  const duplex = duplexOf(conn);
  return new Promise((resolve, reject) => {
    let socket: TLSSocket | null = null;
    let settled = false;
    const closeConn = () => {
      try {
        void Promise.resolve(conn.close()).catch(() => {});
      } catch { /* already closed */ }
    };
    const fail = (err?: unknown) => {
      if (settled) return;
      settled = true;
      socket?.destroy();
      duplex.destroy();
      closeConn();
      reject(err ?? new Error("connection closed during the TLS handshake"));
    };
    const done = (s: TLSSocket) => {
      if (settled) return;
      settled = true;
      s.off("error", fail);
      s.off("close", onClose);
      const alpn = s.alpnProtocol;
      resolve({
        conn: new NodeTlsConn(s, conn, opts.clock, opts.lingerMs),
        alpnProtocol: typeof alpn === "string" ? alpn : null,
        peer: s,
      });
    };
    const onClose = () => fail();
    const mtls = opts.clientCerts;
    if (!mtls) {
      const s = socket = new TLSSocket(duplex, {
        isServer: true,
        secureContext: opts.context,
        ALPNProtocols: opts.alpnProtocols,
      });
      s.once("secure", () => done(s));
      s.once("error", fail);
      s.once("close", onClose);
      return;
    }
    const server = createServer({
      cert: mtls.cert,
      key: mtls.key,
      ca: mtls.ca,
      requestCert: true,
      rejectUnauthorized: mtls.rejectUnauthorized,
      ALPNProtocols: opts.alpnProtocols,
    });
    server.once("secureConnection", (s: TLSSocket) => {
      socket = s;
      s.once("error", fail);
      s.once("close", onClose);
      done(s);
    });
    server.once("tlsClientError", (err: Error & { code?: string }, s: TLSSocket) => {
      socket = s;
      // node:tls sets authorizationError before it destroys a connection for its certificate.
      const invalid = typeof s?.authorizationError === "string" ||
        s?.authorizationError instanceof Error;
      fail(
        err?.code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"
          ? new ClientCertRefused("no_certificate", "no client certificate")
          : invalid
          ? new ClientCertRefused(
            "invalid_certificate",
            `client certificate not accepted: ${String(s.authorizationError)}`,
          )
          : err,
      );
    });
    server.emit("connection", duplex);
  });
}

/**
 * A node `TLSSocket` as the minimal connection a stream session reads and writes: `read` into
 * the caller's buffer (null at the end of input), `write` that keeps node:tls's buffer below its
 * high-water mark, `close` that sends close_notify and FIN before releasing the socket,
 * and `abort` that drops it at once.
 */
export class NodeTlsConn implements StreamConn {
  /** The client's name from its certificate (set by the DoT listener), or null. */
  clientName: string | null = null;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: unknown = null;
  #wake: (() => void) | null = null;
  #closing: Promise<void> | null = null;

  constructor(
    private readonly socket: TLSSocket,
    private readonly transport: TransportConn & { remoteAddr?: Deno.Addr },
    private readonly clock: Clock,
    private readonly lingerMs: number,
  ) {
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      if (this.#buffered >= MAX_BUFFERED) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (err: unknown) => {
      this.#error ??= err;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
  }

  /** The peer's address as seen on the TCP connection (undefined behind a PROXY header). */
  get remoteAddr(): Deno.Addr | undefined {
    return this.transport.remoteAddr;
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length, p.length - n);
      p.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#buffered -= n;
    if (this.#buffered < MAX_BUFFERED && this.socket.isPaused()) this.socket.resume();
    return n;
  }

  /**
   * Hands bytes to node:tls without letting its buffer grow past the socket's high-water mark
   * (64 KiB): what does not fit waits for `drain`, so for a peer that does not read the write
   * stays pending (and the session's write deadline applies) instead of node:tls buffering
   * everything. Resolves with the count taken (less than asked only if the socket failed).
   */
  async write(p: Uint8Array): Promise<number> {
    let n = 0;
    for (;;) {
      const failure = this.#error ??
        (this.socket.destroyed || this.socket.writableEnded
          ? new Deno.errors.BrokenPipe("TLS connection is closed")
          : null);
      if (failure) {
        if (n > 0) return n;
        throw failure;
      }
      if (!this.socket.writableNeedDrain) {
        const room = this.socket.writableHighWaterMark - this.socket.writableLength;
        const take = Math.min(p.length - n, Math.max(1, room));
        this.socket.write(p.subarray(n, n + take));
        n += take;
        if (n === p.length) return n;
      }
      await this.#drained();
    }
  }

  /** Resolves once node:tls wants more bytes, or the socket has failed or closed. */
  #drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        this.socket.off("error", done);
        resolve();
      };
      this.socket.once("drain", done);
      this.socket.once("close", done);
      this.socket.once("error", done);
    });
  }

  /**
   * Sends close_notify and FIN, then releases the socket; gives up waiting after `lingerMs` (a
   * peer that never reads must not hold the socket). Resolves once the connection is closed.
   */
  close(): Promise<void> {
    return this.#closing ??= new Promise<void>((resolve) => {
      const release = () => {
        cancel();
        this.socket.destroy();
        try {
          this.transport.close();
        } catch { /* already closed */ }
        resolve();
      };
      const cancel = this.clock.schedule(this.lingerMs, release);
      if (this.socket.destroyed || this.#error) return release();
      this.socket.once("error", release);
      this.socket.once("close", release);
      this.socket.end(release);
    });
  }

  /**
   * Drops the connection at once: no close_notify, whatever node:tls still buffers for the peer
   * is discarded with the socket (for a peer that does not read, or a connection evicted).
   */
  abort(): void {
    this.socket.destroy();
    try {
      this.transport.close();
    } catch { /* already closed */ }
    this.#ended = true;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}
