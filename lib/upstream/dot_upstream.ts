/**
 * One DNS-over-TLS server: a small pool of persistent, pipelined connections. Queries share
 * connections instead of checking them out; a new connection is dialled only when none has room.
 * A query whose connection dies under it is retried once on a fresh connection, so a server
 * closing an idle connection at the wrong moment never costs a client its answer.
 */
import { decodeQuery, type Question, RRType } from "../dns/message.ts";
import { encodeQuery } from "../dns/reply.ts";
import { logger } from "../sys/log.ts";
import type { Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";
import { type Dial, type Dialer, type DialTarget, dialTls } from "./dial.ts";
import { DotConnection } from "./dot_connection.ts";
import { errText } from "../sys/errors.ts";
import { Health } from "./health.ts";
import { type Exchange, failure, type Upstream, type UpstreamErrorKind } from "./upstream.ts";

/** Everything one DoT upstream needs: where it is, limits, and the injected clock and randomness. */
export interface DotUpstreamOptions {
  name: string;
  target: DialTarget;
  clock: Clock;
  random: Random;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  maxInFlightPerConnection: number;
  failureBackoffMs: number;
  maxFailureBackoffMs: number;
  /** How long a health probe waits for its answer once connected. */
  probeTimeoutMs: number;
  dial?: Dialer;
}

type Acquired = { ok: true; conn: DotConnection } | {
  ok: false;
  kind: UpstreamErrorKind;
  message: string;
};

const log = logger("upstream");

/** The probe sent to a failing upstream: ". NS", which every recursive resolver can answer. */
const PROBE = encodeQuery({ id: 0, name: ".", qtype: RRType.NS });
const PROBE_QUESTION = (() => {
  const d = decodeQuery(PROBE);
  if (!d.ok || !d.value.question) throw new Error("probe query does not decode");
  return d.value.question;
})();

/** A pooled, pipelined DoT client for one server, with failure backoff. */
export class DotUpstream implements Upstream {
  readonly name: string;
  readonly health: Health;
  /** Replies discarded by closed connections (live ones are added in `stats`). */
  #discarded = 0;
  #connections: DotConnection[] = [];
  #dialing: Promise<Acquired> | null = null;
  #activeDial: Dial | null = null;
  #reconnects = 0;
  #closing = false;
  #cancelProbe: (() => void) | null = null;

  constructor(private readonly opts: DotUpstreamOptions) {
    this.name = opts.name;
    this.health = new Health(opts.clock, opts.random, {
      baseMs: opts.failureBackoffMs,
      maxMs: opts.maxFailureBackoffMs,
    });
  }

  /** Numbers for logs and metrics. */
  stats(): { openConnections: number; inFlight: number; reconnects: number; discarded: number } {
    let inFlight = 0;
    let discarded = this.#discarded;
    for (const c of this.#connections) {
      inFlight += c.inFlight;
      discarded += sumDiscards(c);
    }
    return {
      openConnections: this.#connections.length,
      inFlight,
      reconnects: this.#reconnects,
      discarded,
    };
  }

  async exchange(query: Uint8Array, question: Question, deadline: number): Promise<Exchange> {
    let result = await this.#attempt(query, question, deadline);
    // The connection died with our query on it (typically a server closing an idle connection
    // as we wrote): one retry on a fresh connection, if time allows.
    if (!result.ok && result.error.kind === "closed" && this.opts.clock.now() < deadline) {
      result = await this.#attempt(query, question, deadline);
    }
    this.#record(result);
    return result;
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#cancelProbe?.();
    this.#activeDial?.abort();
    for (const c of [...this.#connections]) c.close("shutting down");
    await this.#dialing;
  }

  async #attempt(
    query: Uint8Array,
    question: Question,
    deadline: number,
    probing = false,
  ): Promise<Exchange> {
    const acquired = await this.#acquire(deadline, probing);
    if (!acquired.ok) return failure(acquired.kind, this.name, acquired.message);
    const r = await acquired.conn.exchange(query, question, deadline);
    return r.ok
      ? { ok: true, reply: r.reply, upstream: this.name }
      : failure(r.kind, this.name, r.message);
  }

  /**
   * The least-loaded open connection with room, else a new one (one dial at a time). While the
   * upstream is failing only probes dial; queries use a connection that is still open, if any.
   */
  #acquire(deadline: number, probing: boolean): Promise<Acquired> | Acquired {
    if (this.#closing) return { ok: false, kind: "closed", message: "upstream is shutting down" };
    let best: DotConnection | null = null;
    for (const c of this.#connections) {
      if (c.hasCapacity && (!best || c.inFlight < best.inFlight)) best = c;
    }
    // Reuse a connection that is idle-ish; dial another only when all are busy and room remains.
    if (best && (best.inFlight === 0 || this.#connections.length >= this.opts.maxConnections)) {
      return { ok: true, conn: best };
    }
    if (this.#connections.length >= this.opts.maxConnections) {
      return { ok: false, kind: "overloaded", message: "every connection is at its in-flight cap" };
    }
    if (!this.#dialing) {
      if (!this.health.available() && !best && !probing) {
        return { ok: false, kind: "down", message: "backing off after failures" };
      }
      this.#dialing = this.#dial().finally(() => (this.#dialing = null));
    }
    if (best) return { ok: true, conn: best }; // don't make a query wait for a dial when one has room
    return this.#waitUntil(this.#dialing, deadline);
  }

  #waitUntil(p: Promise<Acquired>, deadline: number): Promise<Acquired> {
    const { clock } = this.opts;
    return new Promise((resolve) => {
      const cancel = clock.schedule(
        deadline - clock.now(),
        () =>
          resolve({
            ok: false,
            kind: "timeout",
            message: "connection not ready before the deadline",
          }),
      );
      p.then((r) => {
        cancel();
        resolve(r);
      });
    });
  }

  async #dial(): Promise<Acquired> {
    const { clock, target } = this.opts;
    const started = clock.now();
    const dial = (this.opts.dial ?? dialTls)(target);
    this.#activeDial = dial;
    let timedOut = false;
    const cancel = clock.schedule(this.opts.connectTimeoutMs, () => {
      timedOut = true;
      dial.abort();
    });
    try {
      const stream = await dial.done;
      if (this.#closing) {
        stream.close();
        return { ok: false, kind: "closed", message: "upstream is shutting down" };
      }
      const conn = new DotConnection(stream, {
        clock,
        random: this.opts.random,
        maxInFlight: this.opts.maxInFlightPerConnection,
        idleTimeoutMs: this.opts.idleTimeoutMs,
        onClose: (c, reason) => this.#forget(c, reason),
      });
      this.#connections.push(conn);
      if (this.#connections.length > 1 || this.#reconnects > 0) this.#reconnects++;
      log.info("connected to upstream {upstream} ({tlsName}) in {ms} ms", {
        upstream: this.name,
        tlsName: target.tlsName,
        ms: Math.round(clock.now() - started),
      });
      return { ok: true, conn };
    } catch (err) {
      const stage = dial.stage();
      const kind: UpstreamErrorKind = timedOut ? "timeout" : stage;
      const message = timedOut
        ? `${
          stage === "tls" ? "TLS handshake" : "TCP connect"
        } timed out after ${this.opts.connectTimeoutMs} ms`
        : `${stage === "tls" ? "TLS" : "connect"} failed: ${errText(err)}`;
      if (this.#closing) return { ok: false, kind: "closed", message };
      this.#noteFailure(kind, message);
      return { ok: false, kind, message };
    } finally {
      cancel();
      this.#activeDial = null;
    }
  }

  #forget(conn: DotConnection, reason: string): void {
    this.#connections = this.#connections.filter((c) => c !== conn);
    this.#discarded += sumDiscards(conn);
    const level = reason === "idle" || this.#closing ? "debug" : "info";
    log[level]("closed connection to upstream {upstream}: {reason}", {
      upstream: this.name,
      reason,
    });
  }

  #record(result: Exchange): void {
    if (result.ok) {
      if (this.health.succeed()) log.info("upstream {upstream} recovered", { upstream: this.name });
      return;
    }
    const { kind, message } = result.error;
    // Dial failures were recorded where they happened; `down` and `overloaded` are not new faults.
    if (kind === "timeout" || kind === "closed") this.#noteFailure(kind, message);
  }

  #noteFailure(kind: UpstreamErrorKind, message: string): void {
    const firstOfEpisode = this.health.fail();
    const fields = { upstream: this.name, kind, reason: message, failures: this.health.failures };
    if (firstOfEpisode) log.warn("upstream {upstream} failing: {reason}", fields);
    else log.debug("upstream {upstream} still failing: {reason}", fields);
    this.#scheduleProbe();
  }

  /** One probe at a time, due when the backoff ends; it reschedules itself while failing. */
  #scheduleProbe(): void {
    if (this.#cancelProbe || this.#closing) return;
    const { clock } = this.opts;
    this.#cancelProbe = clock.schedule(this.health.retryAt - clock.now(), async () => {
      this.#cancelProbe = null; // a failure during this probe schedules the next one
      const deadline = clock.now() + this.opts.connectTimeoutMs + this.opts.probeTimeoutMs;
      const result = await this.#attempt(PROBE, PROBE_QUESTION, deadline, true);
      if (this.#closing) return;
      log.debug("probe of {upstream}: {outcome}", {
        upstream: this.name,
        outcome: result.ok ? "answered" : result.error.message,
      });
      this.#record(result);
    });
  }
}

function sumDiscards(c: DotConnection): number {
  return c.discarded.unknownId + c.discarded.mismatched + c.discarded.malformed;
}
