/**
 * One plain-DNS server over UDP (`udp://IP:port`, and the bootstrap servers). Queries go out on a
 * socket bound to a random source port chosen by the OS, with an ID random among those in flight
 * on that socket; a reply is accepted only from the server's address and port, with a matching ID
 * and question. Sockets are replaced after a number of queries (or when busy), so the source port
 * keeps changing and an off-path spoofer has to guess it as well as the ID. A reply with TC=1 is
 * retried over TCP to the same server (RFC 7766 §5).
 */
import type { Message, Question } from "../dns/message.ts";
import { Flag } from "../dns/message.ts";
import { withId } from "../dns/reply.ts";
import type { HopEdns } from "../dns/edns.ts";
import { ipKey, isIPv6 } from "../net/ip.ts";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import type { Random } from "../sys/random.ts";
import type { Health, HealthPolicy } from "./health.ts";
import { HealthMonitor, PROBE, PROBE_QUESTION } from "./monitor.ts";
import { type ConnectionResult, ID_SPACE, PendingQueries, totalDiscards } from "./pending.ts";
import {
  type Exchange,
  failure,
  forHop,
  type Upstream,
  type UpstreamErrorKind,
  type UpstreamStats,
} from "./upstream.ts";

/** Where one UDP server is, limits, collaborators. */
export interface UdpUpstreamOptions {
  /** A stable label for logs and metrics, normally the URL as configured. */
  name: string;
  /** The server's IP literal (no hostname: a UDP upstream is how names get resolved). */
  hostname: string;
  port: number;
  clock: Clock;
  random: Random;
  failureBackoffMs: number;
  maxFailureBackoffMs: number;
  /** How long a health probe waits for its answer. */
  probeTimeoutMs: number;
  /**
   * Where TC=1 replies are retried: a TCP upstream to the same server (owned and closed by this
   * one). Without it a truncated reply is returned as it is.
   */
  tcp?: Upstream;
  /** EDNS for this hop; no padding (cleartext) and no keepalive (RFC 7828: never over UDP). */
  edns?: Omit<HopEdns, "pad" | "keepalive">;
  /** Queries outstanding on one socket before another is opened. Default 256. */
  maxInFlightPerSocket?: number;
  /** Queries sent from one source port before it is replaced. Default 1024. */
  queriesPerSocket?: number;
  /** Sockets open at once (the current one and those still draining). Default 16. */
  maxSockets?: number;
  /**
   * Local address to bind: default the wildcard of the server's family, or loopback when the
   * server is on loopback (tests, local resolvers).
   */
  bindAddress?: string;
  /** The health policy's tuning (see health.ts); its defaults without. */
  health?: Partial<HealthPolicy>;
}

const log = logger("upstream");

/** One socket with its own source port and its own in-flight IDs. */
class UdpChannel {
  sent = 0;
  /** Datagrams from any address other than the server's. */
  wrongSource = 0;
  retired = false;
  #pending: PendingQueries;
  #socket: Deno.DatagramConn;
  #closed = false;
  #loop: Promise<void>;
  #serverKey: string;

  constructor(
    bindAddress: string,
    private readonly server: { hostname: string; port: number },
    clock: Clock,
    random: Random,
    private readonly onClose: (c: UdpChannel) => void,
  ) {
    this.#serverKey = ipKey(server.hostname);
    this.#socket = Deno.listenDatagram({ transport: "udp", hostname: bindAddress, port: 0 });
    this.#pending = new PendingQueries({ clock, random });
    this.#loop = this.#receive();
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  get discarded(): number {
    return totalDiscards(this.#pending.discarded) + this.wrongSource;
  }

  /** The local port queries leave from (random, chosen by the OS). */
  get localPort(): number {
    return (this.#socket.addr as Deno.NetAddr).port;
  }

  async exchange(
    query: Uint8Array,
    question: Question,
    deadline: number,
  ): Promise<ConnectionResult> {
    const { id, result } = this.#pending.add(question, deadline);
    this.sent++;
    try {
      await this.#socket.send(withId(query, id), { transport: "udp", ...this.server });
    } catch (err) {
      this.#pending.abort(id, `send failed: ${errText(err)}`);
    }
    const r = await result;
    if (this.retired && this.#pending.size === 0) this.close();
    return r;
  }

  /** No new queries; closes once the outstanding ones are settled. */
  retire(): void {
    this.retired = true;
    if (this.#pending.size === 0) this.close();
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#socket.close();
      } catch { /* already closed */ }
      this.#pending.closeAll("socket closed");
      this.onClose(this);
    }
    return this.#loop;
  }

  async #receive(): Promise<void> {
    // A reused buffer (receive() alone allocates 64 KiB a datagram); delivered replies are copies.
    const buffer = new Uint8Array(65535);
    try {
      for (;;) {
        const [data, from] = await this.#socket.receive(buffer);
        const f = from as Deno.NetAddr;
        if (f.port !== this.server.port || ipKey(f.hostname) !== this.#serverKey) {
          this.wrongSource++;
          continue;
        }
        this.#pending.deliver(data.slice());
      }
    } catch {
      // socket closed
    }
  }
}

/** A plain-DNS-over-UDP client for one server, with failure backoff and TC=1 → TCP. */
export class UdpUpstream implements Upstream {
  readonly name: string;
  #active: UdpChannel | null = null;
  #channels = new Set<UdpChannel>();
  #discarded = 0;
  #closing = false;
  #monitor: HealthMonitor;
  #bindAddress: string;
  #maxInFlight: number;
  #queriesPerSocket: number;
  #maxSockets: number;
  #edns: HopEdns | undefined;

  constructor(private readonly opts: UdpUpstreamOptions) {
    this.name = opts.name;
    this.#edns = opts.edns && { ...opts.edns, pad: false };
    this.#bindAddress = opts.bindAddress ?? defaultBind(opts.hostname);
    this.#maxInFlight = Math.min(opts.maxInFlightPerSocket ?? 256, ID_SPACE / 2);
    this.#queriesPerSocket = opts.queriesPerSocket ?? 1024;
    this.#maxSockets = opts.maxSockets ?? 16;
    this.#monitor = new HealthMonitor({
      name: opts.name,
      clock: opts.clock,
      random: opts.random,
      backoff: { baseMs: opts.failureBackoffMs, maxMs: opts.maxFailureBackoffMs },
      probe: (deadline) => this.#send(forHop(PROBE, this.#edns), PROBE_QUESTION, deadline),
      probeBudgetMs: opts.probeTimeoutMs,
      policy: opts.health,
    });
  }

  /** Failure backoff state; the group orders members by it. */
  get health(): Health {
    return this.#monitor.health;
  }

  /** Numbers for logs and metrics: `openConnections` counts sockets. */
  stats(): UpstreamStats {
    let inFlight = 0;
    let discarded = this.#discarded;
    for (const c of this.#channels) {
      inFlight += c.inFlight;
      discarded += c.discarded;
    }
    return { openConnections: this.#channels.size, inFlight, reconnects: 0, discarded };
  }

  /** Local ports of the open sockets, for tests and diagnostics. */
  get localPorts(): number[] {
    return [...this.#channels].map((c) => c.localPort);
  }

  /**
   * Unlike a stream upstream this never answers `down`: a UDP query costs nothing to try, and the
   * group already puts a failing member last, so it is asked only when nothing better is left.
   */
  async exchange(
    query: Uint8Array,
    question: Question,
    deadline: number,
    decoded?: Message,
  ): Promise<Exchange> {
    const answeredAtSend = this.health.answered;
    const result = await this.#send(forHop(query, this.#edns, decoded), question, deadline);
    this.#monitor.record(result, answeredAtSend);
    if (!result.ok || !(result.reply[2] & (Flag.TC >> 8)) || !this.opts.tcp) return result;
    // Truncated: the whole answer only fits over TCP, to the same server (RFC 7766 §5).
    const viaTcp = await this.opts.tcp.exchange(query, question, deadline, decoded);
    if (viaTcp.ok) return { ...viaTcp, upstream: this.name };
    return failure(viaTcp.error.kind, this.name, `TCP retry after TC=1: ${viaTcp.error.message}`);
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#monitor.close();
    await Promise.all([...this.#channels].map((c) => c.close()));
    await this.opts.tcp?.close();
  }

  async #send(query: Uint8Array, question: Question, deadline: number): Promise<Exchange> {
    const channel = this.#channel();
    if ("kind" in channel) return failure(channel.kind, this.name, channel.message);
    const r = await channel.exchange(query, question, deadline);
    return r.ok
      ? { ok: true, reply: r.reply, msg: r.msg, upstream: this.name }
      : failure(r.kind, this.name, r.message);
  }

  /** The socket to send on: the current one, or a fresh one when it is used up or busy. */
  #channel(): UdpChannel | { kind: UpstreamErrorKind; message: string } {
    if (this.#closing) return { kind: "closed", message: "upstream is shutting down" };
    const a = this.#active;
    if (a && a.sent < this.#queriesPerSocket && a.inFlight < this.#maxInFlight) return a;
    if (this.#channels.size >= this.#maxSockets) {
      return { kind: "overloaded", message: "every socket is at its in-flight cap" };
    }
    let fresh: UdpChannel;
    try {
      fresh = new UdpChannel(
        this.#bindAddress,
        { hostname: this.opts.hostname, port: this.opts.port },
        this.opts.clock,
        this.opts.random,
        (c) => {
          this.#channels.delete(c);
          this.#discarded += c.discarded;
          if (this.#active === c) this.#active = null;
        },
      );
    } catch (err) {
      const message = `cannot open a UDP socket on ${this.#bindAddress}: ${errText(err)}`;
      log.warn("upstream {upstream}: {reason}", { upstream: this.name, reason: message });
      return { kind: "connect", message };
    }
    a?.retire();
    this.#channels.add(fresh);
    this.#active = fresh;
    return fresh;
  }
}

function defaultBind(server: string): string {
  const v6 = isIPv6(server);
  const key = ipKey(server);
  if (v6) return key === ipKey("::1") ? "::1" : "::";
  return server.startsWith("127.") ? "127.0.0.1" : "0.0.0.0";
}
