/**
 * The socket side of the DoH listener: accepts TCP connections itself, terminates TLS (ALPN h2
 * and http/1.1, through node:tls as DNS-over-TLS does), and relays each connection's plaintext
 * to a `Deno.serve` HTTP server on a loopback port that speaks HTTP/1.1 and HTTP/2.
 *
 * Why: `Deno.serve` offers no cap on connections and no handshake, header or idle timeout, and
 * it cannot be handed connections accepted elsewhere (Deno 2.9); `node:http2` could be, but a
 * client's GOAWAY can abort the process there (denoland/deno#36788). Owning the accept loop
 * gives the DoH listener the same defences as the stream listeners (lib/listen/stream.ts):
 * - connections capped in total and per client address; at a cap the longest-idle connection
 *   (nothing in flight) is closed to admit the newcomer, else the newcomer is refused;
 * - the TLS handshake must complete within the read timeout of the accept;
 * - a request head (or, over HTTP/2, any frame) must complete within the read timeout of its
 *   first byte (lib/listen/request_heads.ts);
 * - a client that does not read what it is sent for the read timeout is closed;
 * - a connection with no request in flight is closed after the idle timeout, counted from its
 *   last request (HTTP/2 PINGs and other control frames do not keep it open).
 * Every timer runs on the injected Clock, one per connection. It also sets TCP_NODELAY on
 * client sockets, which `Deno.serve` cannot.
 *
 * Cost: each client connection holds three descriptors (client socket, relay socket, and the
 * inner server's end) and its bytes cross loopback once more. The inner server learns which
 * client a request came from through `connection(port)`: the relay socket's local port.
 * A local process can connect to the inner port directly; such requests are refused
 * (`connection` returns undefined), but its connections are not counted here.
 */
import type { SecureContext } from "node:tls";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import { ConnectionTable, type Tracked } from "./conn_table.ts";
import { writeAll } from "./framing.ts";
import { serverHandshake } from "./node_conn.ts";
import { RequestHeadTracker } from "./request_heads.ts";
import type { StreamConn, StreamLimits } from "./stream.ts";

const log = logger("listen", "https");

/** ALPN protocols offered, preferred first. */
export const DOH_ALPN = ["h2", "http/1.1"];
const RELAY_CHUNK = 16 * 1024;
/** After an accept error (e.g. EMFILE), wait this long before accepting again. */
const ACCEPT_BACKOFF_MS = 100;

/** Connection counters, for metrics and tests. */
export interface FrontStats {
  open: number;
  rejected: number;
  evictedIdle: number;
  /** Closed for a handshake, request head, or unread output that did not complete in time. */
  timedOut: number;
  /** Closed after the idle timeout. */
  idleClosed: number;
}

/** Where to listen, where to relay, how to guard it. */
export interface FrontOptions {
  url: string;
  listener: Deno.TcpListener;
  /** The loopback port of the inner HTTP server. */
  innerPort: number;
  /** The TLS context, or null for plain HTTP (h2c by prior knowledge, or HTTP/1.1). */
  context: SecureContext | null;
  clock: Clock;
  limits: StreamLimits;
}

/** One client connection as the inner server's handler sees it. */
export interface FrontConnectionView {
  /** The client's socket address. */
  readonly peer: Deno.NetAddr;
  /** Marks a request as dispatched on this connection; call the result when it is answered. */
  beginRequest(): () => void;
  /** Requests being answered on this connection now. */
  readonly inFlight: number;
}

/** Accepts, guards and relays client connections to the inner HTTP server. */
export class HttpFront {
  readonly addr: Deno.NetAddr;
  readonly stats: FrontStats;
  readonly #table: ConnectionTable<FrontConnection>;
  readonly #byRelayPort = new Map<number, FrontConnection>();
  #context: SecureContext | null;
  #accepting = true;
  #loop: Promise<void>;

  constructor(private readonly opts: FrontOptions) {
    this.addr = opts.listener.addr;
    this.#context = opts.context;
    this.stats = { open: 0, rejected: 0, evictedIdle: 0, timedOut: 0, idleClosed: 0 };
    this.#table = new ConnectionTable(opts.limits, this.stats);
    this.#loop = this.#accept();
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
    try {
      this.opts.listener.close();
    } catch { /* already closed */ }
  }

  /**
   * Closes every connection: those relaying finish once the inner server has closed its side
   * (so answers already written reach the client), the others at once.
   */
  async close(): Promise<void> {
    this.stopAccepting();
    await this.#loop;
    await Promise.all(this.#table.list().map((c) => c.closeWhenRelayed()));
  }

  async #accept(): Promise<void> {
    while (this.#accepting) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.opts.listener.accept();
      } catch (err) {
        if (!this.#accepting) return;
        log.warn("accept failed on {url}: {err}", { url: this.opts.url, err: errText(err) });
        await new Promise<void>((resolve) => this.opts.clock.schedule(ACCEPT_BACKOFF_MS, resolve));
        continue;
      }
      const peer = conn.remoteAddr;
      if (!this.#table.admit(peer.hostname)) {
        try {
          conn.close();
        } catch { /* already closed */ }
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch { /* closed already: the relay notices */ }
      const c: FrontConnection = new FrontConnection(conn, this.#context, this.opts, this.stats, {
        relaying: (port) => this.#byRelayPort.set(port, c),
        closed: (port) => {
          this.#table.remove(c);
          if (port !== null && this.#byRelayPort.get(port) === c) this.#byRelayPort.delete(port);
        },
      });
      this.#table.add(c);
      c.start();
    }
  }
}

/** How a connection reports back to its front. */
interface FrontHooks {
  relaying(relayPort: number): void;
  closed(relayPort: number | null): void;
}

class FrontConnection implements Tracked, FrontConnectionView {
  readonly client: string;
  readonly peer: Deno.NetAddr;
  #inFlight = 0;
  #lastActivity: number;
  /** When the handshake or the incomplete request head started; null when none is pending. */
  #partialSince: number | null = null;
  /** When the write to the client now pending started; null when none is. */
  #writeSince: number | null = null;
  #tracker = new RequestHeadTracker();
  #cancelTimer: () => void = () => {};
  #stream: StreamConn;
  #relay: Deno.TcpConn | null = null;
  #relayPort: number | null = null;
  #closed = false;
  #ended: Promise<void>;
  #endedResolve: () => void = () => {};

  constructor(
    private readonly conn: Deno.TcpConn,
    private readonly context: SecureContext | null,
    private readonly opts: FrontOptions,
    private readonly stats: FrontStats,
    private readonly hooks: FrontHooks,
  ) {
    this.peer = conn.remoteAddr;
    this.client = this.peer.hostname;
    this.#stream = conn;
    this.#lastActivity = opts.clock.now();
    // The handshake counts as the first request head: it runs under the read deadline.
    if (context) this.#partialSince = this.#lastActivity;
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

  start(): void {
    this.#armTimer();
    this.#run().catch((err) => this.#abort(`relay failed: ${errText(err)}`));
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
    if (!this.#relay) this.#abort("listener closing");
    return this.#ended;
  }

  async #run(): Promise<void> {
    if (this.context) {
      const { conn } = await serverHandshake(this.conn, {
        context: this.context,
        alpnProtocols: DOH_ALPN,
        clock: this.opts.clock,
        lingerMs: this.opts.limits.readTimeoutMs,
      });
      if (this.#closed) {
        await closeQuietly(conn);
        return;
      }
      this.#stream = conn;
      this.#partialSince = null;
      this.#lastActivity = this.opts.clock.now();
    }
    const relay = await Deno.connect({ hostname: "127.0.0.1", port: this.opts.innerPort });
    if (this.#closed) {
      closeQuietly(relay);
      return;
    }
    relay.setNoDelay(true);
    this.#relay = relay;
    this.#relayPort = (relay.localAddr as Deno.NetAddr).port;
    this.hooks.relaying(this.#relayPort);
    await Promise.all([this.#toServer(relay), this.#toClient(relay)]);
  }

  /** Client → inner server, watching for request heads that do not complete. */
  async #toServer(relay: Deno.TcpConn): Promise<void> {
    const buf = new Uint8Array(RELAY_CHUNK);
    for (;;) {
      let n: number | null;
      try {
        n = await this.#stream.read(buf);
      } catch (err) {
        return this.#abort(`read failed: ${errText(err)}`);
      }
      if (this.#closed) return;
      if (n === null) {
        // The client half-closed: let the server answer what it has, then end.
        await relay.closeWrite().catch(() => {});
        return;
      }
      const chunk = buf.subarray(0, n);
      const completed = this.#tracker.push(chunk, this.#inFlight);
      if (!this.#tracker.partial) {
        this.#partialSince = null;
      } else if (this.#partialSince === null || completed) {
        const first = this.#partialSince === null;
        this.#partialSince = this.opts.clock.now();
        if (first) this.#rearm();
      }
      try {
        await writeAll(relay, chunk);
      } catch (err) {
        return this.#abort(`relay write failed: ${errText(err)}`);
      }
    }
  }

  /** Inner server → client, under the write deadline. */
  async #toClient(relay: Deno.TcpConn): Promise<void> {
    const buf = new Uint8Array(RELAY_CHUNK);
    for (;;) {
      let n: number | null;
      try {
        n = await relay.read(buf);
      } catch (err) {
        return this.#abort(`relay read failed: ${errText(err)}`);
      }
      if (this.#closed) return;
      if (n === null) return this.#finish();
      this.#writeSince = this.opts.clock.now();
      this.#rearm();
      try {
        await writeAll(this.#stream, buf.subarray(0, n));
      } catch (err) {
        return this.#abort(`write failed: ${errText(err)}`);
      }
      this.#writeSince = null;
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
    if (due === Infinity) {
      // Requests in flight, nothing else pending: look again when the idle timeout could be due.
      this.#cancelTimer = clock.schedule(idleTimeoutMs, () => this.#armTimer());
      return;
    }
    // At least 1 ms: a deadline that is due but not acted on must not spin.
    this.#cancelTimer = clock.schedule(Math.max(1, due - clock.now()), () => this.#expire());
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
        this.#stream === this.conn && this.context
          ? "TLS handshake not completed in time"
          : "request head not completed in time",
      );
    }
    if (this.#writeSince !== null && now - this.#writeSince >= readTimeoutMs) {
      this.stats.timedOut++;
      return this.#abort("client not reading");
    }
    const idle = this.#inFlight === 0 && this.#writeSince === null;
    if (idle && now - this.#lastActivity >= idleTimeoutMs) {
      this.stats.idleClosed++;
      return this.#abort("idle");
    }
    this.#armTimer();
  }

  /** The inner server closed its side: close the client's gracefully (TLS close_notify). */
  async #finish(): Promise<void> {
    if (this.#closed) return;
    this.#release();
    closeQuietly(this.#relay);
    await closeQuietly(this.#stream);
    closeQuietly(this.conn);
    this.#endedResolve();
  }

  /** Closes everything at once: the slot and the descriptors are free when this returns. */
  #abort(why: string): void {
    if (this.#closed) return;
    log.debug("closing DoH connection from {client}: {why}", { client: this.client, why });
    this.#release();
    closeQuietly(this.conn);
    closeQuietly(this.#relay);
    if (this.#stream !== this.conn) closeQuietly(this.#stream);
    this.#endedResolve();
  }

  #release(): void {
    this.#closed = true;
    this.#cancelTimer();
    this.hooks.closed(this.#relayPort);
  }
}

async function closeQuietly(c: StreamConn | Deno.Conn | null): Promise<void> {
  try {
    await c?.close();
  } catch { /* already closed */ }
}
