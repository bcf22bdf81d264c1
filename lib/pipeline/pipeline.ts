/**
 * The one core every listener feeds: bytes from a client in, bytes to send back (or nothing) out.
 * Listeners own framing and transport limits; everything about DNS semantics happens here, and
 * this is the single place where decode and upstream failures become rcodes.
 */
import { decodeHeader, decodeQuery, Flag, Opcode, opcodeOf, Rcode } from "../dns/message.ts";
import type { Message } from "../dns/message.ts";
import { errorReply, formErrFromHeader, restoreQuestionCase, setId } from "../dns/reply.ts";
import { nameToString } from "../dns/wire.ts";
import type { Clock } from "../sys/clock.ts";
import { logger } from "../sys/log.ts";
import type { Upstream, UpstreamErrorKind } from "../upstream/upstream.ts";

/** The transports a query can arrive over; UDP alone imposes a size limit on the answer. */
export type Transport = "udp" | "tcp";

/** One query as a listener received it. */
export interface Query {
  bytes: Uint8Array;
  client: { hostname: string; port: number };
  transport: Transport;
}

/** What to send back; over UDP the listener truncates anything longer than `maxUdpSize`. */
export interface Answer {
  bytes: Uint8Array;
  maxUdpSize: number;
}

/** Collaborators and limits of the pipeline. */
export interface PipelineOptions {
  upstream: Upstream;
  clock: Clock;
  /** Total time for one client query before it is answered SERVFAIL. */
  queryTimeoutMs: number;
  /** The largest UDP answer we send, whatever the client advertises (RFC 9715 suggests 1232). */
  udpMaxSize: number;
  /** Queries answered at once; above it new ones are shed rather than queued without bound. */
  maxInFlight: number;
  /** How to shed: answer REFUSED, or send nothing. */
  overload: "refuse" | "drop";
}

/** Classic DNS without EDNS allows 512 bytes over UDP (RFC 1035 4.2.1). */
const CLASSIC_UDP_SIZE = 512;
const EDNS_VERSION = 0;

const log = logger("query");

/** Maps an upstream failure to what the client is told. */
export function rcodeForUpstreamError(kind: UpstreamErrorKind): number {
  return kind === "overloaded" ? Rcode.REFUSED : Rcode.SERVFAIL;
}

/** The transport-independent query handler, tracking what is in flight for graceful shutdown. */
export class Pipeline {
  #inFlight = 0;
  /** Queries shed because max_in_flight was reached. */
  shed = 0;
  #drainWaiters: (() => void)[] = [];

  constructor(private readonly opts: PipelineOptions) {}

  /** Queries accepted and not yet answered. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Resolves when nothing is in flight (used on shutdown). */
  drained(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Answers one query; null means send nothing (unparseable, or a response sent to us). */
  async handle(query: Query): Promise<Answer | null> {
    this.#inFlight++;
    try {
      return await this.#handle(query);
    } finally {
      if (--this.#inFlight === 0) { for (const wake of this.#drainWaiters.splice(0)) wake(); }
    }
  }

  async #handle(query: Query): Promise<Answer | null> {
    const { bytes } = query;
    const decoded = decodeQuery(bytes);
    if (!decoded.ok) {
      const header = decodeHeader(bytes);
      // Never answer a response (no reflection loops); without a readable header there is no ID.
      if (!header.ok || header.value.flags & Flag.QR) return null;
      log.debug("malformed query from {client}: {reason}", () => ({
        client: query.client.hostname,
        reason: decoded.error.message,
      }));
      return { bytes: formErrFromHeader(header.value), maxUdpSize: CLASSIC_UDP_SIZE };
    }
    const msg = decoded.value;
    if (msg.header.flags & Flag.QR) return null;
    const maxUdpSize = this.#clientUdpSize(msg);
    const refuse = (rcode: number): Answer => ({
      bytes: errorReply(msg, bytes, rcode, { udpSize: this.opts.udpMaxSize }),
      maxUdpSize,
    });
    if (opcodeOf(msg.header.flags) !== Opcode.QUERY) return refuse(Rcode.NOTIMP);
    if (msg.edns && msg.edns.version > EDNS_VERSION) return refuse(Rcode.BADVERS);
    const question = msg.question;
    if (!question) return refuse(Rcode.FORMERR);
    // This query is already counted in #inFlight, hence `>`.
    if (this.#inFlight > this.opts.maxInFlight) {
      this.shed++;
      return this.opts.overload === "drop" ? null : refuse(Rcode.REFUSED);
    }

    const { clock } = this.opts;
    const started = clock.now();
    const result = await this.opts.upstream.exchange(
      bytes,
      question,
      started + this.opts.queryTimeoutMs,
    );
    if (!result.ok) {
      const { error } = result;
      log.debug("{name} {qtype} failed upstream: {kind} {reason}", () => ({
        name: nameToString(question.name),
        qtype: question.qtype,
        kind: error.kind,
        reason: error.message,
      }));
      return refuse(rcodeForUpstreamError(result.error.kind));
    }
    const reply = result.reply;
    setId(reply, msg.header.id);
    restoreQuestionCase(reply, question.name);
    log.debug("{name} {qtype} answered by {upstream} in {ms} ms", () => ({
      name: nameToString(question.name),
      qtype: question.qtype,
      upstream: result.upstream,
      ms: Math.round(clock.now() - started),
    }));
    return { bytes: reply, maxUdpSize };
  }

  /** 512 without EDNS; otherwise the client's advertised size, within [512, udpMaxSize]. */
  #clientUdpSize(msg: Message): number {
    if (!msg.edns) return CLASSIC_UDP_SIZE;
    return Math.min(Math.max(msg.edns.udpSize, CLASSIC_UDP_SIZE), this.opts.udpMaxSize);
  }
}
