/**
 * DNS over a byte stream, server side (RFC 7766): length-prefixed messages, many queries
 * pipelined on one connection and answered as each completes, in any order. Shared by the TCP
 * listener and, with a TLS handshake in `prepare`, by DNS-over-TLS.
 *
 * It defends itself: a cap on connections in total and per client (when full, the longest-idle
 * connection is closed to make room), a cap on queries in flight per connection (reading pauses
 * until answers go out), a deadline for a message once its first byte arrived (slowloris), and
 * an idle timeout. A client that half-closes still gets its pending answers.
 */
import type { Transport } from "../pipeline/pipeline.ts";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import { FramedWriter, FrameReader } from "./framing.ts";
import type { Handler, Listener } from "./listener.ts";

const log = logger("listen", "stream");

/** Limits that keep one client, or many, from exhausting the server. */
export interface StreamLimits {
  /** Close a connection with nothing pending after this long without a message. */
  idleTimeoutMs: number;
  /** A message (or a TLS handshake) must complete this long after it started. */
  readTimeoutMs: number;
  /** Connections open at once on this listener. */
  maxConnections: number;
  /** Connections open at once from one client address. */
  maxConnectionsPerClient: number;
  /** Queries in flight on one connection before reading pauses. */
  maxPipelined: number;
}

/**
 * The least a session needs of the stream it speaks DNS on. A `Deno.Conn` is one; so is the
 * node:tls adapter DNS-over-TLS uses (lib/listen/node_conn.ts), which is why this is not
 * `Deno.Conn`. `close` may be asynchronous (a TLS close_notify to flush); the session waits.
 */
export interface StreamConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void | Promise<void>;
}

/** What a stream listener needs besides its socket. */
export interface StreamOptions {
  url: string;
  transport: Transport;
  handle: Handler;
  clock: Clock;
  limits: StreamLimits;
  /**
   * Turns an accepted connection into the stream to speak DNS on (e.g. a TLS handshake). It runs
   * under the read deadline: when that expires the accepted connection is closed, and `prepare`
   * must then reject (or resolve; the stream it returns is closed at once).
   */
  prepare?: (conn: Deno.TcpConn) => Promise<StreamConn>;
}

/** Counters for metrics and tests. */
export interface StreamStats {
  open: number;
  rejected: number;
  evictedIdle: number;
  timedOut: number;
}

/** Serves DNS on every connection a listener accepts. */
export class StreamListener implements Listener {
  readonly url: string;
  readonly addr: Deno.NetAddr;
  readonly stats: StreamStats = { open: 0, rejected: 0, evictedIdle: 0, timedOut: 0 };
  #sessions = new Set<StreamSession>();
  #perClient = new Map<string, number>();
  #accepting = true;
  #loop: Promise<void>;

  constructor(private readonly listener: Deno.TcpListener, private readonly opts: StreamOptions) {
    this.url = opts.url;
    this.addr = listener.addr;
    this.#loop = this.#accept();
  }

  stopAccepting(): void {
    if (!this.#accepting) return;
    this.#accepting = false;
    this.listener.close();
    for (const s of this.#sessions) s.stopReading();
  }

  async close(): Promise<void> {
    this.stopAccepting();
    await this.#loop;
    await Promise.all([...this.#sessions].map((s) => s.close()));
  }

  async #accept(): Promise<void> {
    while (this.#accepting) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.listener.accept();
      } catch (err) {
        if (!this.#accepting) return;
        log.warn("accept failed on {url}: {err}", { url: this.url, err: errText(err) });
        continue;
      }
      conn.setNoDelay(true);
      const client = conn.remoteAddr.hostname;
      if (!this.#admit(client)) {
        this.stats.rejected++;
        closeQuietly(conn);
        continue;
      }
      this.#perClient.set(client, (this.#perClient.get(client) ?? 0) + 1);
      this.stats.open++;
      const session: StreamSession = new StreamSession(conn, this.opts, this.stats, () => {
        this.#sessions.delete(session);
        this.stats.open--;
        const n = (this.#perClient.get(client) ?? 1) - 1;
        if (n === 0) this.#perClient.delete(client);
        else this.#perClient.set(client, n);
      });
      this.#sessions.add(session);
    }
  }

  /** Makes room for a new connection from `client` by closing an idle one, if it must. */
  #admit(client: string): boolean {
    const { maxConnections, maxConnectionsPerClient } = this.opts.limits;
    if ((this.#perClient.get(client) ?? 0) >= maxConnectionsPerClient) {
      return this.#evictIdle((s) => s.client === client);
    }
    if (this.#sessions.size >= maxConnections) return this.#evictIdle(() => true);
    return true;
  }

  #evictIdle(match: (s: StreamSession) => boolean): boolean {
    let victim: StreamSession | null = null;
    for (const s of this.#sessions) {
      if (s.idle && match(s) && (!victim || s.lastActivity < victim.lastActivity)) victim = s;
    }
    if (!victim) return false;
    this.stats.evictedIdle++;
    victim.close();
    return true;
  }
}

class StreamSession {
  readonly client: string;
  #writer: FramedWriter | null = null;
  #reader = new FrameReader();
  #pending = 0;
  #readDone = false;
  #closed = false;
  #lastActivity: number;
  #partialSince: number | null;
  #cancelTimer: () => void = () => {};
  #resume: (() => void) | null = null;
  #paused = false;
  #stream: StreamConn;
  #finishing: Promise<void> | null = null;
  #loop: Promise<void>;

  constructor(
    private readonly conn: Deno.TcpConn,
    private readonly opts: StreamOptions,
    private readonly stats: StreamStats,
    private readonly onClose: () => void,
  ) {
    this.client = conn.remoteAddr.hostname;
    this.#stream = conn;
    this.#lastActivity = opts.clock.now();
    // Until the first message (or handshake) completes, the read deadline applies.
    this.#partialSince = opts.prepare ? this.#lastActivity : null;
    this.#armTimer();
    this.#loop = this.#run();
  }

  /** True when nothing is pending: a candidate for eviction when the listener is full. */
  get idle(): boolean {
    return this.#pending === 0;
  }

  get lastActivity(): number {
    return this.#lastActivity;
  }

  /** Used on shutdown: take no more queries, finish the pending ones. */
  stopReading(): void {
    this.#readDone = true;
    this.#resume?.();
    if (this.#pending === 0) this.#finish();
  }

  async close(): Promise<void> {
    const finished = this.#finish();
    await this.#loop;
    await finished;
  }

  async #run(): Promise<void> {
    try {
      if (this.opts.prepare) {
        const stream = await this.opts.prepare(this.conn);
        if (this.#closed) {
          // The deadline fired as the handshake completed: this stream was never ours to use.
          await closeQuietly(stream);
          return;
        }
        this.#stream = stream;
        this.#partialSince = null;
      }
      this.#writer = new FramedWriter(this.#stream, () => this.#finish());
      await this.#read();
    } catch (err) {
      if (!this.#closed) {
        log.debug("{transport} connection from {client} failed: {err}", {
          transport: this.opts.transport,
          client: this.client,
          err: errText(err),
        });
      }
    }
    // End of input (possibly a half-close): answer what is pending, then close.
    this.#readDone = true;
    if (this.#pending === 0) this.#finish();
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(65536);
    const { maxPipelined } = this.opts.limits;
    const client = this.conn.remoteAddr;
    while (!this.#readDone) {
      const n = await this.#stream.read(buf);
      if (n === null) return;
      const now = this.opts.clock.now();
      this.#lastActivity = now;
      this.#reader.push(buf.subarray(0, n));
      let completed = false;
      for (let m = this.#reader.next(); m && !this.#readDone; m = this.#reader.next()) {
        completed = true;
        if (m.length < 12) {
          // Not even a header: no ID to answer with, and the framing is suspect.
          log.debug("closing {client}: {n}-byte message", { client: this.client, n: m.length });
          this.#finish();
          return;
        }
        this.#dispatch(m, client);
        // Backpressure: stop reading while this client has too many queries in flight. Time
        // spent paused does not count against the client's partial message.
        if (this.#pending >= maxPipelined) {
          this.#paused = true;
          while (this.#pending >= maxPipelined && !this.#readDone) {
            await new Promise<void>((resolve) => (this.#resume = resolve));
          }
          this.#paused = false;
          completed = true;
        }
      }
      const wasPartial = this.#partialSince !== null;
      // The deadline runs from the first byte of the message still incomplete: if a message was
      // completed in this read, the remainder started in this read.
      this.#partialSince = this.#reader.pendingBytes === 0
        ? null
        : completed || this.#partialSince === null
        ? now
        : this.#partialSince;
      if (!wasPartial && this.#partialSince !== null) {
        // A message has started: its deadline may come before the idle timer.
        this.#cancelTimer();
        this.#armTimer();
      }
    }
  }

  async #dispatch(bytes: Uint8Array, client: Deno.NetAddr): Promise<void> {
    this.#pending++;
    const answer = await this.opts.handle({ bytes, client, transport: this.opts.transport });
    this.#pending--;
    if (answer && !this.#closed) this.#writer?.send(answer.bytes);
    this.#lastActivity = this.opts.clock.now();
    const resume = this.#resume;
    this.#resume = null;
    resume?.();
    if (this.#readDone && this.#pending === 0) this.#finish();
  }

  /** One timer per connection, re-armed lazily: idle expiry and the partial-message deadline. */
  #armTimer(): void {
    const { idleTimeoutMs, readTimeoutMs } = this.opts.limits;
    const { clock } = this.opts;
    const due = Math.min(
      this.#lastActivity + idleTimeoutMs,
      this.#partialSince === null ? Infinity : this.#partialSince + readTimeoutMs,
    );
    this.#cancelTimer = clock.schedule(due - clock.now(), () => {
      if (this.#closed) return;
      const now = clock.now();
      if (
        this.#partialSince !== null && !this.#paused && now - this.#partialSince >= readTimeoutMs
      ) {
        this.stats.timedOut++;
        log.debug("closing {client}: message not completed in time", { client: this.client });
        this.#finish();
      } else if (this.#pending === 0 && now - this.#lastActivity >= idleTimeoutMs) {
        this.#finish();
      } else {
        this.#armTimer();
      }
    });
  }

  /** Flushes queued answers, then closes the socket (once; later calls share the first). */
  #finish(): Promise<void> {
    return this.#finishing ??= this.#flushAndClose();
  }

  async #flushAndClose(): Promise<void> {
    this.#closed = true;
    this.#readDone = true;
    this.#cancelTimer();
    this.#resume?.();
    await this.#writer?.flushed();
    await closeQuietly(this.#stream);
    this.onClose();
  }
}

async function closeQuietly(c: StreamConn): Promise<void> {
  try {
    await c.close();
  } catch { /* already closed */ }
}
