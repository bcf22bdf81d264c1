/**
 * One stream server — DNS-over-TLS (`tls://`) or plain TCP (`tcp://`, and UDP's TC=1 retries) —
 * as a small pool of persistent, pipelined connections. Queries share connections instead of
 * checking them out; a new connection is dialled only when none has room. A query whose
 * connection dies under it is retried once on a fresh connection, so a server closing an idle
 * connection at the wrong moment never costs a client its answer. The two kinds differ only in the
 * dialer (and whether queries are padded), so they share all of this.
 */
import type { Message, Question } from "../dns/message.ts";
import type { HopEdns } from "../dns/edns.ts";
import { isIP } from "../net/ip.ts";
import { logger } from "../sys/log.ts";
import type { Clock } from "../sys/clock.ts";
import type { Random } from "../sys/random.ts";
import { errText } from "../sys/errors.ts";
import type { AddressResolver } from "./resolver.ts";
import { type Dial, type Dialer, type DialTarget, dialTls } from "./dial.ts";
import type { Health, HealthPolicy } from "./health.ts";
import { HealthMonitor, PROBE, PROBE_QUESTION } from "./monitor.ts";
import { totalDiscards } from "./pending.ts";
import { StreamConnection } from "./stream_connection.ts";
import {
  type Exchange,
  failure,
  forHop,
  type Upstream,
  type UpstreamErrorKind,
  type UpstreamStats,
} from "./upstream.ts";

/** Everything one stream upstream needs: where it is, limits, and the injected clock and random. */
export interface StreamUpstreamOptions {
  /** A stable label for logs and metrics, normally the URL as configured. */
  name: string;
  /**
   * Where to connect. `hostname` may be a name (e.g. "dns.quad9.net") when `resolver` is set: it
   * is then resolved (bootstrap) before each dial, and `tlsName` should be that name.
   */
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
  /** `dialTls` (the default: DoT) or `dialTcp` (plain TCP); tests inject their own. */
  dial?: Dialer;
  /**
   * EDNS for this hop (see `upstreamQuery`); the edns-tcp-keepalive option is always requested.
   * Without it queries go upstream exactly as the client sent them.
   */
  edns?: Omit<HopEdns, "keepalive">;
  /** Resolves a hostname target to addresses (never through dotproxy itself). */
  resolver?: AddressResolver;
  /** The health policy's tuning (see health.ts); its defaults without. */
  health?: Partial<HealthPolicy>;
}

type Acquired = { ok: true; conn: StreamConnection } | {
  ok: false;
  kind: UpstreamErrorKind;
  message: string;
};

const log = logger("upstream");

/** A pooled, pipelined stream client for one server, with failure backoff. */
export class StreamUpstream implements Upstream {
  readonly name: string;
  /** Replies discarded by closed connections (live ones are added in `stats`). */
  #discarded = 0;
  #connections: StreamConnection[] = [];
  #dialing: Promise<Acquired> | null = null;
  #activeDial: Dial | null = null;
  #reconnects = 0;
  #closing = false;
  #signalClosed = () => {};
  /** Settles on close(), so a dial waiting on bootstrap resolution does not hold shutdown up. */
  #closed = new Promise<null>((resolve) => (this.#signalClosed = () => resolve(null)));
  #monitor: HealthMonitor;
  #edns: HopEdns | undefined;
  /** Which resolved address to dial next; moves on after a failed dial. */
  #addressIndex = 0;

  constructor(private readonly opts: StreamUpstreamOptions) {
    this.name = opts.name;
    this.#edns = opts.edns && { ...opts.edns, keepalive: true };
    this.#monitor = new HealthMonitor({
      name: opts.name,
      clock: opts.clock,
      random: opts.random,
      backoff: { baseMs: opts.failureBackoffMs, maxMs: opts.maxFailureBackoffMs },
      probe: async (deadline) =>
        (await this.#attempt(
          owned(forHop(PROBE, this.#edns), PROBE),
          PROBE_QUESTION,
          deadline,
          true,
        ))
          .result,
      probeBudgetMs: opts.connectTimeoutMs + opts.probeTimeoutMs,
      policy: opts.health,
      // Dial failures are reported at the dial, which a query may not have waited for.
      reportedAtSource: ["connect", "tls"],
    });
  }

  /** Failure backoff state; the group orders members by it. */
  get health(): Health {
    return this.#monitor.health;
  }

  /** Numbers for logs and metrics. */
  stats(): UpstreamStats {
    let inFlight = 0;
    let discarded = this.#discarded;
    for (const c of this.#connections) {
      inFlight += c.inFlight;
      discarded += totalDiscards(c.discarded);
    }
    return {
      openConnections: this.#connections.length,
      inFlight,
      reconnects: this.#reconnects,
      discarded,
    };
  }

  /** The open connections, for tests and diagnostics (e.g. their keepalive-adjusted timeouts). */
  get connections(): readonly StreamConnection[] {
    return this.#connections;
  }

  async exchange(
    query: Uint8Array,
    question: Question,
    deadline: number,
    decoded?: Message,
  ): Promise<Exchange> {
    const answeredAtSend = this.health.answered;
    // A connection writes the ID into the buffer it is given: the hop's query is ours (forHop
    // made it) unless forHop passed the client's through.
    const wire = owned(forHop(query, this.#edns, decoded), query);
    const first = await this.#attempt(wire, question, deadline);
    // The connection died with our query on it (typically a server closing an idle connection
    // as we wrote, or one we gave up on as silent): one retry on a fresh connection, if time
    // allows.
    const result = first.lost && this.opts.clock.now() < deadline
      ? (await this.#attempt(wire.slice(), question, deadline)).result
      : first.result;
    this.#monitor.record(result, answeredAtSend);
    return result;
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#signalClosed();
    this.#monitor.close();
    this.#activeDial?.abort();
    for (const c of [...this.#connections]) c.close("shutting down");
    await this.#dialing;
  }

  /** One try on one connection; `lost` when that connection went away under the query. */
  async #attempt(
    query: Uint8Array,
    question: Question,
    deadline: number,
    probing = false,
  ): Promise<{ result: Exchange; lost: boolean }> {
    // Usually a connection is at hand: no await (and no turn lost) for it then.
    const pending = this.#acquire(deadline, probing);
    const acquired = pending instanceof Promise ? await pending : pending;
    if (!acquired.ok) {
      return { result: failure(acquired.kind, this.name, acquired.message), lost: false };
    }
    const { conn } = acquired;
    const r = await conn.exchange(query, question, deadline);
    if (r.ok) {
      return { result: { ok: true, reply: r.reply, msg: r.msg, upstream: this.name }, lost: false };
    }
    if (r.kind !== "closed") return { result: failure(r.kind, this.name, r.message), lost: false };
    // Dropped with a connection we gave up on as silent: no reply is all this query knows, and
    // the health policy weighs it as such, not as a connection the server broke.
    const result = conn.abandonedAsSilent
      ? failure("timeout", this.name, `no reply; ${r.message}`)
      : failure("closed", this.name, r.message);
    return { result, lost: true };
  }

  /**
   * The least-loaded open connection with room, else a new one (one dial at a time). While the
   * upstream is failing only probes dial; queries use a connection that is still open, if any.
   */
  #acquire(deadline: number, probing: boolean): Promise<Acquired> | Acquired {
    if (this.#closing) return { ok: false, kind: "closed", message: "upstream is shutting down" };
    let best: StreamConnection | null = null;
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

  /** The target with an IP to dial: as configured, or resolved through the bootstrap servers. */
  async #resolve(): Promise<{ ok: true; target: DialTarget } | { ok: false; message: string }> {
    const { target, resolver } = this.opts;
    if (!resolver || isIP(target.hostname)) return { ok: true, target };
    const found = await Promise.race([resolver.lookup(target.hostname), this.#closed]);
    if (!found) return { ok: false, message: "upstream is shutting down" };
    if (!found.ok) {
      return { ok: false, message: `cannot resolve ${target.hostname}: ${found.message}` };
    }
    const address = found.addresses[this.#addressIndex % found.addresses.length];
    return { ok: true, target: { ...target, hostname: address } };
  }

  async #dial(): Promise<Acquired> {
    const { clock } = this.opts;
    const started = clock.now();
    const resolved = await this.#resolve();
    if (this.#closing) return { ok: false, kind: "closed", message: "upstream is shutting down" };
    if (!resolved.ok) {
      this.#monitor.fail("connect", resolved.message);
      return { ok: false, kind: "connect", message: resolved.message };
    }
    const { target } = resolved;
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
      const conn = new StreamConnection(stream, {
        clock,
        random: this.opts.random,
        maxInFlight: this.opts.maxInFlightPerConnection,
        idleTimeoutMs: this.opts.idleTimeoutMs,
        onClose: (c, reason) => this.#forget(c, reason),
      });
      this.#connections.push(conn);
      if (this.#connections.length > 1 || this.#reconnects > 0) this.#reconnects++;
      log.info("connected to upstream {upstream} ({peer}) in {ms} ms", {
        upstream: this.name,
        peer: target.tlsName ?? target.hostname,
        ms: Math.round(clock.now() - started),
      });
      return { ok: true, conn };
    } catch (err) {
      this.#addressIndex++; // the next dial tries the next resolved address, if there are several
      // A connection not made in time is a connection failure like a refusal, of its stage.
      const kind = dial.stage();
      const message = timedOut
        ? `${
          kind === "tls" ? "TLS handshake" : "TCP connect"
        } timed out after ${this.opts.connectTimeoutMs} ms`
        : `${kind === "tls" ? "TLS" : "connect"} failed: ${errText(err)}`;
      if (this.#closing) return { ok: false, kind: "closed", message };
      this.#monitor.fail(kind, message);
      return { ok: false, kind, message };
    } finally {
      cancel();
      this.#activeDial = null;
    }
  }

  #forget(conn: StreamConnection, reason: string): void {
    this.#connections = this.#connections.filter((c) => c !== conn);
    this.#discarded += totalDiscards(conn.discarded);
    const level = reason === "idle" || this.#closing ? "debug" : "info";
    log[level]("closed connection to upstream {upstream}: {reason}", {
      upstream: this.name,
      reason,
    });
  }
}

/** `wire` itself when it is a buffer of our own, else a copy (it is `source`, someone else's). */
function owned(wire: Uint8Array, source: Uint8Array): Uint8Array {
  return wire === source ? wire.slice() : wire;
}
