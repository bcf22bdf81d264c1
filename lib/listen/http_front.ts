/**
 * The socket side of the DoH listener: accepts client connections itself (node:net), terminates
 * TLS (node:tls, ALPN h2 and http/1.1), and relays each connection's plaintext to a `Deno.serve`
 * HTTP server on a loopback port, which speaks HTTP/1.1 and HTTP/2.
 *
 * Why: `Deno.serve` offers no cap on connections and no handshake, header or idle timeout, and
 * it cannot be handed connections accepted elsewhere (Deno 2.9); `node:http2` could be, but a
 * client's GOAWAY can abort the process there (denoland/deno#36788); and a `Deno.listenTls`
 * connection cannot be closed while its handshake is pending (the socket stays open until the
 * client finishes or leaves), so a partial ClientHello would still hold a descriptor. Owning
 * the accept loop gives the DoH listener the defences of the stream listeners
 * (lib/listen/stream.ts):
 * - connections capped in total and per client address; at a cap the longest-idle connection
 *   (nothing in flight) is closed to admit the newcomer, else the newcomer is refused;
 * - the TLS handshake must complete within the read timeout of the accept;
 * - a request head (or, over HTTP/2, any frame) must complete within the read timeout of its
 *   first byte (lib/listen/request_heads.ts);
 * - a client that does not read what it is sent for the read timeout is closed;
 * - a connection with no request in flight is closed after the idle timeout, counted from its
 *   last request (HTTP/2 PINGs and other control frames do not keep it open).
 * Every timer runs on the injected Clock, one per connection. Client sockets get TCP_NODELAY.
 *
 * Cost: each client connection holds three descriptors (client socket, relay socket, and the
 * inner server's end) and its bytes cross loopback once more. Measured against `Deno.serve`
 * serving TLS itself (h2load, one core, cache-hit answers): about 25% fewer requests per second
 * at saturation over HTTP/2 (20 connections x 10 streams), and a lone request takes some 80 µs
 * longer. node:tls over a Deno socket bridged in JavaScript (as lib/listen/node_conn.ts does for
 * DoT) cost twice as much; node:tls on a node:net socket runs natively.
 *
 * The inner server learns which client a request came from through `connection(port)`: the
 * relay socket's local port. A local process can connect to the inner port directly; its
 * requests are refused (`connection` returns undefined), but its connections are not counted.
 */
import net from "node:net";
import { type SecureContext, TLSSocket } from "node:tls";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import { ConnectionTable, type Tracked } from "./conn_table.ts";
import { RequestHeadTracker } from "./request_heads.ts";
import type { StreamLimits } from "./stream.ts";

const log = logger("listen", "https");

/** ALPN protocols offered, preferred first. */
export const DOH_ALPN = ["h2", "http/1.1"];
/** The inner HTTP server's address: loopback only, reached through the relay. */
export const INNER_HOST = "127.0.0.1";

/** Connection counters, for metrics and tests. */
export interface FrontStats {
  open: number;
  rejected: number;
  evictedIdle: number;
  /** Closed for a handshake or request head that did not complete in time. */
  timedOut: number;
  /** Closed because the client did not take what was written to it in time. */
  writeTimedOut: number;
  /** Closed after the idle timeout. */
  idleClosed: number;
}

/** Where to listen, where to relay, how to guard it. */
export interface FrontOptions {
  url: string;
  hostname: string;
  port: number;
  /** The loopback port of the inner HTTP server. */
  innerPort: number;
  /** TLS for new connections, or null for plain HTTP (h2c by prior knowledge, or HTTP/1.1). */
  context: SecureContext | null;
  clock: Clock;
  limits: StreamLimits;
}

/** One client connection as the inner server's handler sees it. */
export interface FrontConnectionView {
  /** The client's socket address. */
  readonly peer: Deno.NetAddr;
  /** Requests being answered on this connection now. */
  readonly inFlight: number;
  /** Marks a request as dispatched on this connection; call the result when it is answered. */
  beginRequest(): () => void;
}

/** A bind failure; `inUse` for EADDRINUSE (the server reports it as such). */
export class FrontBindError extends Error {
  constructor(message: string, readonly inUse: boolean) {
    super(message);
  }
}

/** Binds the front; rejects with FrontBindError if the address cannot be bound. */
export async function startFront(opts: FrontOptions): Promise<HttpFront> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error & { code?: string }) => {
      reject(new FrontBindError(errText(err), err.code === "EADDRINUSE"));
    };
    server.once("error", onError);
    server.listen({ host: opts.hostname, port: opts.port, exclusive: true }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  return new HttpFront(server, opts);
}

/** Accepts, guards and relays client connections to the inner HTTP server. */
export class HttpFront {
  readonly addr: Deno.NetAddr;
  readonly stats: FrontStats = {
    open: 0,
    rejected: 0,
    evictedIdle: 0,
    timedOut: 0,
    writeTimedOut: 0,
    idleClosed: 0,
  };
  readonly #table: ConnectionTable<FrontConnection>;
  readonly #byRelayPort = new Map<number, FrontConnection>();
  #context: SecureContext | null;
  #accepting = true;
  #closed: Promise<void>;

  constructor(private readonly server: net.Server, private readonly opts: FrontOptions) {
    const bound = server.address() as net.AddressInfo;
    this.addr = { transport: "tcp", hostname: bound.address, port: bound.port };
    this.#context = opts.context;
    this.#table = new ConnectionTable(opts.limits, this.stats);
    this.#closed = new Promise((resolve) => server.once("close", () => resolve()));
    server.on("connection", (socket: net.Socket) => this.#accept(socket));
    server.on("error", (err: Error) => {
      log.warn("accept failed on {url}: {err}", { url: opts.url, err: errText(err) });
    });
  }

  /** The connection whose relay socket has local port `relayPort`, if it is one of ours. */
  connection(relayPort: number): FrontConnectionView | undefined {
    return this.#byRelayPort.get(relayPort);
  }

  /** TLS for connections accepted from now on; established ones keep theirs. */
  setContext(context: SecureContext): void {
    this.#context = context;
  }

  /** Stops accepting; open connections carry on. */
  stopAccepting(): void {
    if (!this.#accepting) return;
    this.#accepting = false;
    this.server.close();
  }

  /**
   * Closes every connection: those relaying finish once the inner server has closed its side
   * (so answers already written reach the client), the others at once.
   */
  async close(): Promise<void> {
    this.stopAccepting();
    await Promise.all(this.#table.list().map((c) => c.closeWhenRelayed()));
    await this.#closed;
  }

  #accept(socket: net.Socket): void {
    const hostname = socket.remoteAddress;
    const port = socket.remotePort;
    if (!this.#accepting || hostname === undefined || port === undefined) {
      socket.destroy();
      return;
    }
    if (!this.#table.admit(hostname)) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const peer: Deno.NetAddr = { transport: "tcp", hostname, port };
    const c: FrontConnection = new FrontConnection(socket, peer, this.opts, this.stats, {
      relaying: (relayPort) => this.#byRelayPort.set(relayPort, c),
      closed: (relayPort) => {
        this.#table.remove(c);
        if (relayPort !== null && this.#byRelayPort.get(relayPort) === c) {
          this.#byRelayPort.delete(relayPort);
        }
      },
    });
    this.#table.add(c);
    c.start(this.#context);
  }
}

/** How a connection reports back to its front. */
interface FrontHooks {
  relaying(relayPort: number): void;
  closed(relayPort: number | null): void;
}

class FrontConnection implements Tracked, FrontConnectionView {
  readonly client: string;
  #inFlight = 0;
  #lastActivity: number;
  /** When the handshake or the incomplete request head started; null when none is pending. */
  #partialSince: number | null = null;
  /** Since when output to the client waits for it to read; null when it does not. */
  #writeSince: number | null = null;
  #handshaking = false;
  #tracker = new RequestHeadTracker();
  #cancelTimer: () => void = () => {};
  /** The plaintext side of the client connection: the TLS socket, or the raw one. */
  #client: net.Socket;
  #relay: net.Socket | null = null;
  #relayPort: number | null = null;
  /** Released from the table (no longer counted, no timers); its sockets may still flush. */
  #closed = false;
  #destroyed = false;
  #ended: Promise<void>;
  #endedResolve: () => void = () => {};

  constructor(
    private readonly raw: net.Socket,
    readonly peer: Deno.NetAddr,
    private readonly opts: FrontOptions,
    private readonly stats: FrontStats,
    private readonly hooks: FrontHooks,
  ) {
    this.client = peer.hostname;
    this.#client = raw;
    this.#lastActivity = opts.clock.now();
    this.#ended = new Promise((resolve) => (this.#endedResolve = resolve));
  }

  get idle(): boolean {
    return this.#inFlight === 0;
  }

  get lastActivity(): number {
    return this.#lastActivity;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  start(context: SecureContext | null): void {
    this.raw.on("error", (err: Error) => this.#abort(`socket error: ${errText(err)}`));
    this.raw.on("close", () => this.#abort("closed"));
    if (context) {
      // The handshake counts as the first request head: it runs under the read deadline.
      this.#handshaking = true;
      this.#partialSince = this.#lastActivity;
      const tls = new TLSSocket(this.raw, {
        isServer: true,
        secureContext: context,
        ALPNProtocols: DOH_ALPN,
      });
      this.#client = tls;
      tls.on("error", (err: Error) => this.#abort(`TLS error: ${errText(err)}`));
      tls.on("close", () => this.#abort("closed"));
      tls.once("secure", () => {
        this.#handshaking = false;
        this.#partialSince = null;
        this.#lastActivity = this.opts.clock.now();
        this.#connectRelay();
      });
    } else {
      this.#connectRelay();
    }
    this.#armTimer();
  }

  beginRequest(): () => void {
    this.#inFlight++;
    this.#lastActivity = this.opts.clock.now();
    this.#tracker.dispatched();
    if (!this.#tracker.partial) this.#partialSince = null;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#inFlight--;
      this.#lastActivity = this.opts.clock.now();
    };
  }

  evict(): void {
    this.#abort("evicted to admit a new connection");
  }

  /** Ends once the inner server has closed the relay (answers flushed), or at once without one. */
  closeWhenRelayed(): Promise<void> {
    if (!this.#relay || this.#relayPort === null) this.#abort("listener closing");
    return this.#ended;
  }

  /** Connects to the inner server, then relays both ways. */
  #connectRelay(): void {
    if (this.#closed) return;
    const relay = net.connect({ host: INNER_HOST, port: this.opts.innerPort, allowHalfOpen: true });
    this.#relay = relay;
    relay.on("error", (err: Error) => this.#abort(`relay error: ${errText(err)}`));
    relay.on("close", () => this.#abort("relay closed"));
    relay.once("connect", () => {
      if (this.#closed) return;
      relay.setNoDelay(true);
      this.#relayPort = relay.localPort ?? null;
      if (this.#relayPort === null) return this.#abort("relay has no local port");
      // Registered before any byte reaches the inner server, so every request finds it.
      this.hooks.relaying(this.#relayPort);
      this.#relayBoth(relay);
    });
  }

  #relayBoth(relay: net.Socket): void {
    const client = this.#client;
    // Client → server, watching for request heads that do not complete; backpressure both ways.
    client.on("data", (chunk: Uint8Array) => {
      this.#observe(chunk);
      if (!relay.write(chunk)) client.pause();
    });
    relay.on("drain", () => client.resume());
    client.on("end", () => relay.end());
    // Server → client, under the unread-output deadline.
    relay.on("data", (chunk: Uint8Array) => {
      if (!client.write(chunk)) {
        relay.pause();
        if (this.#writeSince === null) {
          this.#writeSince = this.opts.clock.now();
          this.#rearm();
        }
      }
    });
    client.on("drain", () => {
      this.#writeSince = null;
      relay.resume();
    });
    relay.on("end", () => this.#finish());
  }

  #observe(chunk: Uint8Array): void {
    const completed = this.#tracker.push(chunk, this.#inFlight);
    if (!this.#tracker.partial) {
      this.#partialSince = null;
    } else if (this.#partialSince === null) {
      this.#partialSince = this.opts.clock.now();
      this.#rearm();
    } else if (completed) {
      this.#partialSince = this.opts.clock.now();
    }
  }

  /** One timer per connection: handshake/head deadline, unread-output deadline, idle expiry. */
  #armTimer(): void {
    if (this.#closed) return;
    const { idleTimeoutMs, readTimeoutMs } = this.opts.limits;
    const { clock } = this.opts;
    const idle = this.#inFlight === 0 && this.#writeSince === null;
    const due = Math.min(
      idle ? this.#lastActivity + idleTimeoutMs : Infinity,
      this.#partialSince === null ? Infinity : this.#partialSince + readTimeoutMs,
      this.#writeSince === null ? Infinity : this.#writeSince + readTimeoutMs,
    );
    // Busy with nothing else pending: look again when the idle timeout could be due. Never
    // less than 1 ms: a deadline that is due but not acted on must not spin.
    const wait = due === Infinity ? idleTimeoutMs : Math.max(1, due - clock.now());
    this.#cancelTimer = clock.schedule(wait, () => this.#expire());
  }

  #rearm(): void {
    this.#cancelTimer();
    this.#armTimer();
  }

  #expire(): void {
    if (this.#closed) return;
    const { idleTimeoutMs, readTimeoutMs } = this.opts.limits;
    const now = this.opts.clock.now();
    if (this.#partialSince !== null && now - this.#partialSince >= readTimeoutMs) {
      this.stats.timedOut++;
      return this.#abort(
        this.#handshaking ? "TLS handshake not completed in time" : "request head not completed",
      );
    }
    if (this.#writeSince !== null && now - this.#writeSince >= readTimeoutMs) {
      this.stats.writeTimedOut++;
      return this.#abort("client not reading");
    }
    const idle = this.#inFlight === 0 && this.#writeSince === null;
    if (idle && now - this.#lastActivity >= idleTimeoutMs) {
      this.stats.idleClosed++;
      return this.#abort("idle");
    }
    this.#armTimer();
  }

  /**
   * The inner server closed its side: end the client's once what was relayed is written (TLS
   * close_notify, FIN), then release it; a client that does not read gets the read timeout.
   */
  #finish(): void {
    if (this.#closed) return;
    this.#release();
    const cancel = this.opts.clock.schedule(this.opts.limits.readTimeoutMs, () => this.#destroy());
    const done = () => {
      cancel();
      this.#destroy();
    };
    // Over TLS, the TLS socket's end only hands close_notify down: end the raw socket after it.
    this.#client.end(() => (this.#client === this.raw ? done() : this.raw.end(done)));
  }

  /**
   * Closes everything at once: the slot and the descriptors are free when this returns. Also
   * cuts short a graceful finish (the client left or failed meanwhile).
   */
  #abort(why: string): void {
    if (this.#destroyed) return;
    if (!this.#closed) {
      log.debug("closing DoH connection from {client}: {why}", { client: this.client, why });
      this.#release();
    }
    this.#destroy();
  }

  #release(): void {
    this.#closed = true;
    this.#cancelTimer();
    this.hooks.closed(this.#relayPort);
  }

  #destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#client.destroy();
    this.raw.destroy();
    this.#relay?.destroy();
    this.#endedResolve();
  }
}
