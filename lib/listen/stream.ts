/**
 * DNS over a byte stream, server side (RFC 7766): length-prefixed messages, many queries
 * pipelined on one connection and answered as each completes, in any order. Shared by the TCP
 * listener and, with a TLS handshake in `prepare`, by DNS-over-TLS.
 *
 * It defends itself, so that what a client can make it hold is bounded even when the client
 * never reads:
 * - a cap on connections in total and per client; when full, the connection that has gone
 *   longest without progress (idle, closing, or stuck writing to a peer that does not read) is
 *   dropped at once to make room, its slot freed on the spot; when none qualifies the newcomer
 *   is refused;
 * - a cap on queries per connection counting both those in flight and those whose answers wait
 *   to be written, and a pause at half the output bound: reading pauses until answers go out;
 * - a bound on the answers waiting to be written (bytes and count): when answers still in
 *   flight would take a connection over it, the connection is dropped at once;
 * - a write deadline: a write the peer does not take within the read timeout drops the
 *   connection at once;
 * - a deadline for a message once its first byte arrived (slowloris), and an idle timeout.
 * Dropping a connection aborts it: the socket is closed without waiting to flush, and the
 * queued answers are discarded. Only the end of input (a client that half-closes still gets its
 * pending answers), the idle timeout and shutdown close gracefully, and a graceful flush is still
 * bounded by the write deadline. A handler that throws costs its query only (SERVFAIL).
 *
 * Longer than the ~500 lines we aim for: the listener's caps and eviction and the session's
 * bounds are one policy (eviction reads every session's state), and this file is being changed on
 * parallel branches. Its seam, for the split once those land: StreamSession (one connection) in
 * a module of its own, the listener (accept, admit, evict) here.
 */
import { type ClientAddress, PrefixedConn, type ProxyGate } from "../identity/proxy_gate.ts";
import type { Answer } from "../pipeline/pipeline.ts";
import type { Transport } from "../dns/transport.ts";
import type { Cancel, Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import { LogThrottle } from "../sys/log_throttle.ts";
import { servfailFor } from "./guard.ts";
import { FramedWriter, FrameReader, MAX_FRAMED_MESSAGE } from "../dns/framing.ts";
import { type ConnectionState, connectionState, type Handler, type Listener } from "./listener.ts";
import type { TransportConn } from "./node_conn.ts";
import type { IdentityRefusals, IdentityState } from "./refusals.ts";

const log = logger("listen", "stream");

/**
 * Default bound on answer bytes waiting to be written on one connection (beyond what the kernel
 * took: up to ~4 MB per socket on Linux). Reading pauses at half of it, and answers given at once
 * (cache hits) are counted before the next query is read, so a client that reads is not cut
 * off by it; the other half is room for answers still in flight (two of the largest size).
 * 1,000 connections (the tcp_max_connections default) stuck at once hold at most ~256 MB, and
 * only until the write deadline; 32 from one address (the per-client default) 8 MiB.
 */
export const DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024;

/**
 * Default bound on answers waiting to be written on one connection: it bounds the per-answer
 * overhead when many small answers queue. Reading pauses at half of it (and at
 * tcp_max_pipelined, default 100, counting queries in flight too).
 */
export const DEFAULT_MAX_QUEUED_ANSWERS = 128;

/** The smallest output bound: one answer of the largest size a 2-byte length can frame. */
export const MIN_OUTPUT_BYTES = MAX_FRAMED_MESSAGE + 2;

/** At most one warning per this long about handlers that threw (the rest are counted). */
const FAULT_LOG_INTERVAL_MS = 60_000;

/** Limits that keep one client, or many, from exhausting the server. */
export interface StreamLimits {
  /** Close a connection with nothing pending after this long without a message. */
  idleTimeoutMs: number;
  /**
   * A message (or a TLS handshake) must complete this long after it started, and a write must
   * be taken by the peer within as long (else the connection is dropped).
   */
  readTimeoutMs: number;
  /** Connections open at once on this listener. */
  maxConnections: number;
  /** Connections open at once from one client address. */
  maxConnectionsPerClient: number;
  /**
   * Queries on one connection that are in flight or whose answers are not yet written, before
   * reading pauses.
   */
  maxPipelined: number;
  /**
   * Answer bytes (with their 2-byte length prefixes) that may wait to be written on one
   * connection; an answer that would go over drops the connection. Reading pauses at half of it.
   * Default DEFAULT_MAX_OUTPUT_BYTES; never below 65,537 (an answer of the largest size fits).
   */
  maxOutputBytes?: number;
  /**
   * Answers that may wait to be written on one connection; one more drops the connection.
   * Reading pauses at half of it. Default DEFAULT_MAX_QUEUED_ANSWERS; at least 2.
   */
  maxQueuedAnswers?: number;
}

/**
 * The least a session needs of the stream it speaks DNS on. A `Deno.Conn` is one; so is the
 * node:tls adapter DNS-over-TLS uses (lib/listen/node_conn.ts), which is why this is not
 * `Deno.Conn`. `close` may be asynchronous (a TLS close_notify to flush); the session waits,
 * within the write deadline. `abort`, when present, drops the connection at once without
 * flushing anything; without it `close` must do that.
 */
export interface StreamConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void | Promise<void>;
  abort?(): void;
  /** The client's name when the stream proved one (a client certificate), else absent/null. */
  clientName?: string | null;
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
   * must then reject (or resolve; the stream it returns is closed at once). `client` is who the
   * connection is from (behind a trusted proxy, the client its PROXY header names).
   */
  prepare?: (conn: TransportConn, client: ClientAddress) => Promise<StreamConn>;
  /**
   * PROXY protocol: who must send a header, whose header is believed. A connection reads its
   * header (if any) first, under the read deadline; a refused one is closed and counted in
   * `refusals`. Connections from a trusted proxy count against the per-client cap of the client
   * their header names, not the proxy's address.
   */
  proxy?: ProxyGate | null;
  /** Counts and logs refusals (PROXY gate, client credentials); needed with `proxy`. */
  refusals?: IdentityRefusals | null;
}

/** Counters for metrics and tests. */
export interface StreamStats {
  /** Connections holding a slot now. */
  open: number;
  /** Connections refused because the caps were reached and none could be evicted. */
  rejected: number;
  /** Idle connections closed to admit a new one. */
  evictedIdle: number;
  /** Connections stuck writing to a peer that does not read (or closing) dropped to admit one. */
  evictedStuck: number;
  /** Connections dropped because a message or TLS handshake did not complete in time. */
  timedOut: number;
  /** Connections dropped because their unwritten answers hit maxOutputBytes/maxQueuedAnswers. */
  outputFull: number;
  /** Connections dropped because the peer did not take a write within the read timeout. */
  writeTimedOut: number;
  /** Queries whose handler threw or rejected (answered SERVFAIL when the query decodes). */
  handlerErrors: number;
}

/** Serves DNS on every connection a listener accepts. */
export class StreamListener implements Listener {
  readonly url: string;
  readonly addr: Deno.NetAddr;
  readonly stats: StreamStats = {
    open: 0,
    rejected: 0,
    evictedIdle: 0,
    evictedStuck: 0,
    timedOut: 0,
    outputFull: 0,
    writeTimedOut: 0,
    handlerErrors: 0,
  };
  #sessions = new Set<StreamSession>();
  #perClient = new Map<string, number>();
  #accepting = true;
  #loop: Promise<void>;
  readonly #faultLog: LogThrottle;

  constructor(private readonly listener: Deno.TcpListener, private readonly opts: StreamOptions) {
    this.url = opts.url;
    this.addr = listener.addr;
    this.#faultLog = new LogThrottle(opts.clock, FAULT_LOG_INTERVAL_MS);
    this.#loop = this.#accept();
  }

  /** Answer bytes waiting to be written on all connections (memory the clients hold here). */
  connections(): ConnectionState {
    return connectionState(this.stats, this.queuedOutputBytes);
  }

  /** Refusals by the PROXY gate and for credentials (zero when neither is configured). */
  identity(): IdentityState | undefined {
    return this.opts.refusals?.state();
  }

  get queuedOutputBytes(): number {
    let n = 0;
    for (const s of this.#sessions) n += s.queuedBytes;
    return n;
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
      const peer = conn.remoteAddr.hostname;
      // A trusted proxy carries many clients: its connection counts against the per-client cap
      // once its header names the client (claim), never against the proxy's own address.
      const counted = this.opts.proxy?.isTrusted(peer) ? null : peer;
      if (!this.#admit(counted)) {
        this.stats.rejected++;
        closeQuietly(conn);
        continue;
      }
      if (counted !== null) this.#count(counted, 1);
      this.stats.open++;
      const session: StreamSession = new StreamSession(conn, this.opts, {
        stats: this.stats,
        countedAs: counted,
        claim: (client) => this.#claim(session, client),
        release: () => {
          this.#sessions.delete(session);
          this.stats.open--;
          if (session.countedAs !== null) this.#count(session.countedAs, -1);
        },
        handlerFailed: (query, err) => this.#handlerFailed(query, err),
      });
      this.#sessions.add(session);
    }
  }

  #count(client: string, delta: number): void {
    const n = (this.#perClient.get(client) ?? 0) + delta;
    if (n <= 0) this.#perClient.delete(client);
    else this.#perClient.set(client, n);
  }

  /**
   * A connection from a trusted proxy named its client: count it against that client's cap,
   * dropping that client's longest-idle connection if it must; false (close this one) when none
   * may be dropped.
   */
  #claim(session: StreamSession, client: string): boolean {
    const { maxConnectionsPerClient } = this.opts.limits;
    if (
      (this.#perClient.get(client) ?? 0) >= maxConnectionsPerClient &&
      !this.#evict((s) => s !== session && s.client === client)
    ) {
      this.stats.rejected++;
      return false;
    }
    this.#count(client, 1);
    session.countedAs = client;
    return true;
  }

  /**
   * Makes room for a new connection from `client` if it must, by dropping the connection that
   * has gone longest without progress; false (refuse the newcomer) when none may be dropped.
   * Dropping frees the slot synchronously, so the caps hold at every moment.
   */
  #admit(client: string | null): boolean {
    const { maxConnections, maxConnectionsPerClient } = this.opts.limits;
    if (
      client !== null &&
      (this.#perClient.get(client) ?? 0) >= maxConnectionsPerClient &&
      !this.#evict((s) => s.client === client)
    ) {
      return false;
    }
    return this.#sessions.size < maxConnections || this.#evict(() => true);
  }

  #evict(match: (s: StreamSession) => boolean): boolean {
    let victim: StreamSession | null = null;
    let victimSince = Infinity;
    for (const s of this.#sessions) {
      const since = s.evictableSince;
      if (since !== null && match(s) && (!victim || since < victimSince)) {
        victim = s;
        victimSince = since;
      }
    }
    if (!victim) return false;
    if (victim.idle) this.stats.evictedIdle++;
    else this.stats.evictedStuck++;
    log.debug("dropping a connection from {client} to admit another", { client: victim.client });
    victim.abort();
    return true;
  }

  /** A handler threw: count it, warn (at most once a minute), answer SERVFAIL if possible. */
  #handlerFailed(query: Uint8Array, err: unknown): Uint8Array | null {
    this.stats.handlerErrors++;
    const more = this.#faultLog.take();
    if (more !== null) {
      log.warn("query handler failed on {url} ({more} more not logged): {err}", {
        url: this.url,
        more,
        err: errText(err),
      });
    }
    return servfailFor(query)?.bytes ?? null;
  }
}

/** What a session needs from its listener. */
interface SessionHooks {
  stats: StreamStats;
  /** The address counted against the per-client cap (null: a trusted proxy's, not yet named). */
  countedAs: string | null;
  /** Counts the connection against `client`'s cap; false when it must be closed instead. */
  claim(client: string): boolean;
  /** Frees the connection's slot; called exactly once, as soon as the session stops. */
  release(): void;
  /** The bytes to answer a query whose handler threw with, if any. */
  handlerFailed(query: Uint8Array, err: unknown): Uint8Array | null;
}

class StreamSession {
  /** Who the connection is from: its peer, or the client a trusted proxy's header names. */
  client: string;
  /** The address this connection counts against in the per-client cap (see SessionHooks). */
  countedAs: string | null;
  #clientAddr: ClientAddress;
  /** Proven by the stream (a client certificate); null: none. */
  #clientName: string | null = null;
  /** Reading a PROXY header: a deadline now refuses it as header_timeout. */
  #awaitingHeader = false;
  #writer: FramedWriter | null = null;
  #reader = new FrameReader();
  /** Queries at the handler. */
  #pending = 0;
  #readDone = false;
  /** No more answers are accepted (graceful close under way, or aborted). */
  #closing = false;
  #aborted = false;
  #released = false;
  #lastActivity: number;
  #partialSince: number | null;
  /** When the write call in progress started (null when none is). */
  #writeSince: number | null = null;
  #cancelTimer: Cancel = () => {};
  #timerDue = Infinity;
  #resume: (() => void) | null = null;
  #paused = false;
  #stream: StreamConn;
  readonly #maxOutput: { bytes: number; messages: number };
  #finishing: Promise<void> | null = null;
  #loop: Promise<void>;

  constructor(
    private readonly conn: Deno.TcpConn,
    private readonly opts: StreamOptions,
    private readonly hooks: SessionHooks,
  ) {
    this.client = conn.remoteAddr.hostname;
    this.#clientAddr = { hostname: conn.remoteAddr.hostname, port: conn.remoteAddr.port };
    this.countedAs = hooks.countedAs;
    this.#stream = conn;
    const { maxOutputBytes, maxQueuedAnswers } = opts.limits;
    this.#maxOutput = {
      bytes: Math.max(MIN_OUTPUT_BYTES, maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES),
      messages: Math.max(2, maxQueuedAnswers ?? DEFAULT_MAX_QUEUED_ANSWERS),
    };
    this.#lastActivity = opts.clock.now();
    // Until the first message (or PROXY header, or handshake) completes, the read deadline applies.
    this.#partialSince = opts.prepare || opts.proxy ? this.#lastActivity : null;
    this.#armTimer();
    this.#loop = this.#run();
  }

  /** Nothing in flight and nothing waiting to be written. */
  get idle(): boolean {
    return this.#pending === 0 && (this.#writer?.queuedMessages ?? 0) === 0;
  }

  get queuedBytes(): number {
    return this.#writer?.queuedBytes ?? 0;
  }

  /**
   * Since when this connection has made no progress, if it may be dropped to admit another:
   * closing ones first, then idle ones (since their last activity) and ones whose peer is not
   * taking a write (since that write started). Null for a connection busy with queries.
   */
  get evictableSince(): number | null {
    if (this.#closing) return -Infinity;
    if (this.#writeSince !== null) return this.#writeSince;
    return this.idle ? this.#lastActivity : null;
  }

  /** Used on shutdown: take no more queries, finish the pending ones. */
  stopReading(): void {
    this.#readDone = true;
    this.#wake();
    if (this.#pending === 0) this.#finish();
  }

  /** Closes gracefully (flushing, within the write deadline) and waits until it is done. */
  async close(): Promise<void> {
    const finished = this.#finish();
    await this.#loop;
    await finished;
  }

  /**
   * Drops the connection at once: the socket is closed without flushing, queued answers and
   * buffered input are discarded, and the slot is released before this returns.
   */
  abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#closing = true;
    this.#readDone = true;
    this.#writeSince = null;
    this.#cancelTimer();
    this.#writer?.abort();
    this.#reader.reset();
    this.#wake();
    abortQuietly(this.#stream);
    if (this.#stream !== this.conn) abortQuietly(this.conn);
    this.#release();
  }

  /**
   * Reads the PROXY header, if the gate wants one: the client it names becomes this connection's
   * client. Returns the transport to go on with, or null when the connection was refused (and
   * closed).
   */
  async #proxyHeader(gate: ProxyGate): Promise<TransportConn | null> {
    this.#awaitingHeader = true;
    const outcome = await gate.readStream(this.conn, this.#clientAddr, {
      clock: this.opts.clock,
      timeoutMs: this.opts.limits.readTimeoutMs,
    });
    this.#awaitingHeader = false;
    if (this.#closing) return null; // dropped meanwhile (deadline, eviction, shutdown)
    if (!outcome.ok) {
      this.opts.refusals?.proxy(outcome);
      this.abort();
      return null;
    }
    this.#clientAddr = outcome.client;
    this.client = outcome.client.hostname;
    if (this.countedAs === null && !this.hooks.claim(this.client)) {
      log.debug("closing a connection for {client}: its connection cap is reached", {
        client: this.client,
      });
      this.abort();
      return null;
    }
    return outcome.rest.length > 0 ? new PrefixedConn(this.conn, outcome.rest) : this.conn;
  }

  async #run(): Promise<void> {
    try {
      let transport: TransportConn = this.conn;
      if (this.opts.proxy) {
        const next = await this.#proxyHeader(this.opts.proxy);
        if (next === null) return;
        transport = next;
        if (!this.opts.prepare) {
          this.#stream = transport;
          this.#partialSince = null;
        }
      }
      if (this.opts.prepare) {
        const stream = await this.opts.prepare(transport, this.#clientAddr);
        if (this.#closing) {
          // The deadline fired as the handshake completed: this stream was never ours to use.
          abortQuietly(stream);
          return;
        }
        this.#stream = stream;
        this.#clientName = stream.clientName ?? null;
        this.#partialSince = null;
      }
      this.#writer = new FramedWriter(this.#stream, () => this.abort(), {
        maxBytes: this.#maxOutput.bytes,
        maxMessages: this.#maxOutput.messages,
        onWriteStart: () => {
          this.#writeSince = this.opts.clock.now();
          this.#rearmIfSooner();
        },
        onWriteDone: () => {
          this.#writeSince = null;
          this.#lastActivity = this.opts.clock.now();
          this.#wake();
        },
      });
      await this.#read();
    } catch (err) {
      if (!this.#closing) {
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

  /**
   * Whether to stop reading for now: too many queries in flight or answered and not yet
   * written, or half the output bound waiting (answers still in flight need the rest).
   */
  get #mustPause(): boolean {
    const w = this.#writer;
    if (!w) return false;
    return this.#pending + w.queuedMessages >= this.opts.limits.maxPipelined ||
      w.queuedBytes >= this.#maxOutput.bytes / 2 ||
      w.queuedMessages >= this.#maxOutput.messages / 2;
  }

  #outputFull(): void {
    this.hooks.stats.outputFull++;
    log.debug("dropping {client}: answers are not being read", { client: this.client });
    this.abort();
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(65536);
    const client = this.#clientAddr;
    while (!this.#readDone) {
      const n = await this.#stream.read(buf);
      if (n === null || this.#readDone) return;
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
        if (this.#readDone) return;
        // Backpressure: stop reading while this client has too many queries in flight or
        // answers unwritten. Time spent paused does not count against a partial message.
        if (this.#mustPause) {
          this.#paused = true;
          while (this.#mustPause && !this.#readDone) {
            await new Promise<void>((resolve) => (this.#resume = resolve));
          }
          this.#paused = false;
          completed = true;
        }
      }
      if (this.#readDone) return;
      const wasPartial = this.#partialSince !== null;
      // The deadline runs from the first byte of the message still incomplete: if a message was
      // completed in this read, the remainder started in this read.
      this.#partialSince = this.#reader.pendingBytes === 0
        ? null
        : completed || this.#partialSince === null
        ? now
        : this.#partialSince;
      // A message has started: its deadline may come before the timer.
      if (!wasPartial && this.#partialSince !== null) this.#rearmIfSooner();
    }
  }

  /**
   * Answers one query. An answer the handler gives at once (a cache hit) is queued before this
   * returns, so the reading loop sees the output it makes and pauses in time. Never throws and
   * leaves no promise to reject: a throwing or rejecting handler costs this query only.
   */
  #dispatch(bytes: Uint8Array, client: ClientAddress): void {
    this.#pending++;
    const failed = (err: unknown) => {
      let reply: Uint8Array | null = null;
      try {
        reply = this.hooks.handlerFailed(bytes, err);
      } catch { /* no SERVFAIL then; the query still counts as answered */ }
      this.#answered(reply);
    };
    let result: Answer | null | Promise<Answer | null>;
    try {
      result = this.opts.handle(
        this.#clientName === null
          ? { bytes, client, transport: this.opts.transport }
          : { bytes, client, transport: this.opts.transport, clientName: this.#clientName },
      );
    } catch (err) {
      return failed(err);
    }
    if (result instanceof Promise) result.then((a) => this.#answered(a?.bytes ?? null), failed);
    else this.#answered(result?.bytes ?? null);
  }

  #answered(answer: Uint8Array | null): void {
    this.#pending--;
    try {
      if (answer && !this.#closing && this.#writer && !this.#writer.send(answer)) {
        return this.#outputFull();
      }
      this.#lastActivity = this.opts.clock.now();
      this.#wake();
      if (this.#readDone && this.#pending === 0) this.#finish();
    } catch (err) {
      // Nothing above should throw; if it does, this connection goes, not the process.
      log.warn("dropping {client}: {err}", { client: this.client, err: errText(err) });
      this.abort();
    }
  }

  #wake(): void {
    const resume = this.#resume;
    this.#resume = null;
    resume?.();
  }

  /** When the timer must next look: write deadline, message deadline, idle expiry. */
  #due(): number {
    const { idleTimeoutMs, readTimeoutMs } = this.opts.limits;
    let due = this.#writeSince === null ? Infinity : this.#writeSince + readTimeoutMs;
    if (!this.#closing) {
      if (this.#partialSince !== null && !this.#paused) {
        due = Math.min(due, this.#partialSince + readTimeoutMs);
      }
      // A busy connection is looked at again later (its activity moves the idle deadline).
      const idleFrom = this.idle ? this.#lastActivity : this.opts.clock.now();
      due = Math.min(due, idleFrom + idleTimeoutMs);
    }
    return due;
  }

  /** One timer per connection, re-armed lazily; re-armed at once only to fire sooner. */
  #armTimer(): void {
    this.#cancelTimer();
    this.#cancelTimer = () => {};
    this.#timerDue = this.#due();
    if (this.#timerDue === Infinity || this.#aborted) return;
    const { clock } = this.opts;
    this.#cancelTimer = clock.schedule(this.#timerDue - clock.now(), () => this.#onTimer());
  }

  #rearmIfSooner(): void {
    if (!this.#aborted && this.#due() < this.#timerDue) this.#armTimer();
  }

  #onTimer(): void {
    this.#timerDue = Infinity;
    if (this.#aborted) return;
    const { idleTimeoutMs, readTimeoutMs } = this.opts.limits;
    const now = this.opts.clock.now();
    if (this.#writeSince !== null && now - this.#writeSince >= readTimeoutMs) {
      this.hooks.stats.writeTimedOut++;
      log.debug("dropping {client}: it does not read its answers", { client: this.client });
      return this.abort();
    }
    if (!this.#closing) {
      if (
        this.#partialSince !== null && !this.#paused && now - this.#partialSince >= readTimeoutMs
      ) {
        if (this.#awaitingHeader) {
          this.opts.refusals?.proxy({
            ok: false,
            reason: "header_timeout",
            message: `${this.client} sent no complete PROXY header within ${readTimeoutMs} ms`,
          });
          return this.abort();
        }
        this.hooks.stats.timedOut++;
        log.debug("dropping {client}: message not completed in time", { client: this.client });
        return this.abort();
      }
      if (this.idle && now - this.#lastActivity >= idleTimeoutMs) {
        this.#finish();
        return;
      }
    }
    this.#armTimer();
  }

  /** Flushes queued answers, then closes the socket (once; later calls share the first). */
  #finish(): Promise<void> {
    return this.#finishing ??= this.#flushAndClose();
  }

  async #flushAndClose(): Promise<void> {
    this.#closing = true;
    this.#readDone = true;
    this.#wake();
    // The write deadline still runs while the rest is flushed; other deadlines no longer do.
    this.#armTimer();
    await this.#writer?.flushed();
    if (!this.#aborted) {
      this.#cancelTimer();
      await closeQuietly(this.#stream);
      if (this.#stream !== this.conn) abortQuietly(this.conn);
    }
    this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.hooks.release();
  }
}

async function closeQuietly(c: StreamConn): Promise<void> {
  try {
    await c.close();
  } catch { /* already closed */ }
}

/** Closes at once, discarding unsent data; never throws. */
function abortQuietly(c: StreamConn): void {
  try {
    if (c.abort) c.abort();
    else void Promise.resolve(c.close()).catch(() => {});
  } catch { /* already closed */ }
}
