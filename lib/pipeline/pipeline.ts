/**
 * The one core every listener feeds: bytes from a client in, bytes to send back (or nothing) out.
 * Listeners own framing and transport limits; everything about DNS semantics happens here —
 * access control, rate limiting, policy, load shedding, the cache, EDNS per hop — and this is the
 * single place where decode and upstream failures become rcodes.
 */
import { cacheKey } from "../cache/key.ts";
import type { ResponseCache } from "../cache/cache.ts";
import { Coalescer } from "../cache/coalesce.ts";
import { clientAnswer } from "../dns/edns.ts";
import {
  decodeHeader,
  decodeMessage,
  decodeQuery,
  Flag,
  isResponse,
  type Message,
  Opcode,
  opcodeOf,
  Rcode,
  RRType,
} from "../dns/message.ts";
import {
  appendOpt,
  errorReply,
  formErrFromHeader,
  minimalAnyReply,
  restoreQuestionCase,
  setId,
} from "../dns/reply.ts";
import { nameToString } from "../dns/wire.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { QueryLog } from "../metrics/query_log.ts";
import type { Acl } from "../policy/acl.ts";
import { Admission, type RateLimiter } from "../policy/rate_limit.ts";
import type { Clock } from "../sys/clock.ts";
import { logger } from "../sys/log.ts";
import type { Upstream, UpstreamErrorKind } from "../upstream/upstream.ts";

/** The transports a query can arrive over; UDP alone imposes a size limit on the answer. */
export type Transport = "udp" | "tcp" | "tls" | "https";

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

/** Who may use a listener: set per listener (each may override the global [access]). */
export interface ListenerPolicy {
  acl: Acl;
  /** "refuse" answers REFUSED to clients outside the ACL, "drop" stays silent. */
  aclAction: "refuse" | "drop";
}

/** Collaborators and limits of the pipeline; the optional parts are off when null. */
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
  cache?: ResponseCache | null;
  /** RFC 8767: answer from an expired entry when upstreams fail or are slower than this. */
  serveStale?: { answerAfterMs: number } | null;
  /** Refresh popular entries in the last 10% of their TTL. */
  prefetch?: boolean;
  /**
   * Per-client rate limit; UDP and stream queries have separate allowances (see RateLimiter).
   * Over UDP only every `slip`-th query over the limit (counted per prefix) gets the action's
   * answer (TC=1 or REFUSED), the rest are dropped; `slip` 1 (the default) answers all, 0 none.
   */
  rateLimit?: {
    limiter: RateLimiter;
    action: "drop" | "truncate" | "refuse";
    slip?: number;
  } | null;
  /**
   * Budget per client prefix for error answers made here (FORMERR, NOTIMP, BADVERS, REFUSED) over
   * UDP; beyond it they are dropped. Null: unlimited.
   */
  errorLimit?: RateLimiter | null;
  /** ANY queries: RFC 8482 minimal answer, REFUSED, or forwarded as they are. */
  anyQueries?: "rfc8482" | "refuse" | "forward";
  metrics?: Metrics | null;
  queryLog?: QueryLog | null;
}

/** Classic DNS without EDNS allows 512 bytes over UDP (RFC 1035 4.2.1). */
const CLASSIC_UDP_SIZE = 512;
const EDNS_VERSION = 0;
/** RFC 6895: types 128-255 are meta-types and QTYPEs (TKEY, TSIG, IXFR, AXFR, MAILB, MAILA, ANY). */
const META_TYPES_FIRST = 128;

const log = logger("query");

/** Maps an upstream failure to what the client is told. */
export function rcodeForUpstreamError(kind: UpstreamErrorKind): number {
  return kind === "overloaded" ? Rcode.REFUSED : Rcode.SERVFAIL;
}

/** Rcodes by which an upstream says it could not resolve the name (so "ask someone else"). */
function isFailureRcode(rcode: number): boolean {
  return rcode === Rcode.SERVFAIL || rcode === Rcode.REFUSED;
}

/** An upstream reply shared by every client waiting for the same key. */
type Forwarded =
  | { ok: true; reply: Uint8Array; msg: Message; upstream: string }
  | { ok: false; kind: UpstreamErrorKind; message: string };

/** A query that must go upstream, with what was learned deciding so. */
interface Miss {
  miss: true;
  msg: Message;
  key: string;
  maxUdpSize: number;
}

/** How an answer came about, for metrics and the query log. */
interface Outcome {
  bytes: Uint8Array;
  cacheHit: boolean;
  upstream: string | null;
}

/** The transport-independent query handler, tracking what is in flight for graceful shutdown. */
export class Pipeline {
  #inFlight = 0;
  #drainWaiters: (() => void)[] = [];
  #coalescer = new Coalescer<Forwarded>();
  /** Queries shed because max_in_flight was reached. */
  shed = 0;

  constructor(private opts: PipelineOptions) {}

  /** Swaps collaborators and limits (a reload); queries in flight finish with the old ones. */
  reconfigure(opts: PipelineOptions): void {
    this.opts = opts;
  }

  /** Queries accepted and not yet answered. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Resolves when nothing is in flight (used on shutdown). */
  drained(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Answers one query; null means send nothing (unparseable, a response, or policy says drop).
   * Everything that needs no upstream — refusals, local answers, cache hits — is decided and
   * returned synchronously (no promise, so a listener can reply in the same turn); only a miss
   * becomes asynchronous work, counted in `inFlight`.
   */
  handle(query: Query, policy?: ListenerPolicy): Answer | null | Promise<Answer | null> {
    const started = this.opts.clock.now();
    const now = this.#decide(query, policy, started);
    if (now === null || !("miss" in now)) return now;
    this.#inFlight++;
    return this.#resolve(query, now, started).finally(() => {
      if (--this.#inFlight === 0) { for (const wake of this.#drainWaiters.splice(0)) wake(); }
    });
  }

  /** The synchronous part: policy, decoding, local answers and the cache. */
  #decide(query: Query, policy: ListenerPolicy | undefined, started: number): Answer | Miss | null {
    const { bytes, transport } = query;
    const { metrics, udpMaxSize } = this.opts;
    // Who is asking comes first: a client outside the ACL or over its rate gets nothing that
    // costs us work (or a FORMERR reflected at a spoofed source).
    const client = query.client.hostname;
    let turnedAway: "refuse" | "drop" | "truncate" | null = null;
    // Over the rate limit (its answers are thinned by slip), as opposed to outside the ACL.
    let limited = false;
    const rateLimit = this.opts.rateLimit;
    if (policy && !policy.acl.allows(client)) {
      metrics?.aclRefused(transport);
      turnedAway = policy.aclAction;
    } else if (rateLimit) {
      // Streams draw from their own allowance: a client sent TC=1 over UDP gets its TCP retry.
      const stream = transport !== "udp";
      const admitted = rateLimit.limiter.admit(client, stream, rateLimit.slip ?? 1);
      if (admitted !== Admission.ALLOWED) {
        metrics?.rateLimited(transport);
        turnedAway = rateLimit.action;
        limited = true;
        // A TC=1 answer only makes sense over UDP: over a stream the client cannot retry elsewhere.
        if (stream && turnedAway === "truncate") turnedAway = "drop";
        if (admitted === Admission.SILENT) turnedAway = "drop";
      }
    }
    if (turnedAway === "drop") {
      metrics?.dropped(transport, "policy");
      return null;
    }

    // Never answer a response (no reflection loops), decided before any decoding: half of what
    // a garbage flood costs.
    if (isResponse(bytes)) {
      metrics?.dropped(transport, "response");
      return null;
    }
    const decoded = decodeQuery(bytes);
    if (!decoded.ok) {
      const header = decodeHeader(bytes);
      // Without a readable header there is no ID to answer.
      if (!header.ok || turnedAway) {
        metrics?.dropped(transport, "malformed");
        return null;
      }
      log.debug("malformed query from {client}: {reason}", () => ({
        client,
        reason: decoded.error.message,
      }));
      if (!this.#withinErrorBudget(query)) return null;
      return this.#done(query, started, null, {
        bytes: formErrFromHeader(header.value),
        cacheHit: false,
        upstream: null,
      }, CLASSIC_UDP_SIZE);
    }
    const msg = decoded.value;
    const maxUdpSize = msg.edns
      ? Math.min(Math.max(msg.edns.udpSize, CLASSIC_UDP_SIZE), udpMaxSize)
      : CLASSIC_UDP_SIZE;
    const local = (b: Uint8Array) =>
      this.#done(query, started, msg, { bytes: b, cacheHit: false, upstream: null }, maxUdpSize);
    const refuse = (rcode: number) =>
      limited || this.#withinErrorBudget(query)
        ? local(errorReply(msg, bytes, rcode, { udpSize: udpMaxSize }))
        : null;

    if (turnedAway === "refuse") return refuse(Rcode.REFUSED);
    if (turnedAway === "truncate") {
      // An empty TC=1 answer: a real client retries over TCP, a spoofed one cannot.
      const tc = errorReply(msg, bytes, Rcode.NOERROR, { udpSize: udpMaxSize });
      tc[2] |= Flag.TC >> 8;
      return local(tc);
    }
    if (opcodeOf(msg.header.flags) !== Opcode.QUERY) return refuse(Rcode.NOTIMP);
    if (msg.edns && msg.edns.version > EDNS_VERSION) return refuse(Rcode.BADVERS);
    const question = msg.question;
    if (!question) return refuse(Rcode.FORMERR);
    // Meta-types are not data to look up (RFC 6895): OPT as a question is malformed, and zone
    // transfers, TSIG/TKEY and the unassigned meta range are not ours to forward — an upstream
    // rate-limits its error answers by closing the connection, which would cost every client.
    if (question.qtype === RRType.OPT) return refuse(Rcode.FORMERR);
    if (question.qtype >= META_TYPES_FIRST && question.qtype < RRType.ANY) {
      return refuse(Rcode.REFUSED);
    }
    if (question.qtype === RRType.ANY && this.opts.anyQueries !== "forward") {
      const any = this.opts.anyQueries === "refuse" ? null : minimalAnyReply(msg);
      return any ? local(this.#forClient(any, msg)) : refuse(Rcode.REFUSED);
    }
    const key = cacheKey(msg);
    const cache = this.opts.cache;
    if (cache) {
      const hit = cache.lookup(key, msg.header.id, question.name);
      if (hit) {
        if (hit.prefetch && this.opts.prefetch) this.#prefetch(key, bytes, msg);
        const outcome = { bytes: this.#forClient(hit.bytes, msg), cacheHit: true, upstream: null };
        return this.#done(query, started, msg, outcome, maxUdpSize);
      }
    }
    // Misses wait on upstreams: past max_in_flight they are shed, not queued without bound.
    if (this.#inFlight >= this.opts.maxInFlight) {
      this.shed++;
      if (this.opts.overload === "refuse") return refuse(Rcode.REFUSED);
      metrics?.dropped(transport, "overload");
      return null;
    }
    return { miss: true, msg, key, maxUdpSize };
  }

  /**
   * Over UDP an error answer costs a send and can be reflected at a spoofed source: it is sent
   * only within the client prefix's error budget, else dropped (and counted).
   */
  #withinErrorBudget(query: Query): boolean {
    const limit = this.opts.errorLimit;
    if (!limit || query.transport !== "udp" || limit.allow(query.client.hostname)) return true;
    this.opts.metrics?.dropped("udp", "error_limit");
    return false;
  }

  /** A miss: upstream (coalesced, with serve-stale as the fallback), then SERVFAIL. */
  async #resolve(query: Query, miss: Miss, started: number): Promise<Answer> {
    const { msg, key } = miss;
    const outcome = await this.#upstreamOutcome(query.bytes, msg, key, started);
    return this.#done(query, started, msg, outcome, miss.maxUdpSize);
  }

  async #upstreamOutcome(
    bytes: Uint8Array,
    msg: Message,
    key: string,
    started: number,
  ): Promise<Outcome> {
    const { cache, serveStale, udpMaxSize } = this.opts;
    const id = msg.header.id;
    const name = msg.question!.name;
    const work = this.#coalescer.run(key, () => this.#forward(key, bytes, msg, started));
    const stale = () => cache?.lookup(key, id, name, { stale: true }) ?? null;
    let result: Forwarded | "stale";
    if (cache && serveStale && cache.hasStale(key)) {
      // RFC 8767: if the upstreams are slow and an expired answer exists, answer with it now;
      // the refresh carries on and updates the cache.
      let cancel = () => {};
      const timer = new Promise<"stale">((resolve) => {
        cancel = this.opts.clock.schedule(serveStale.answerAfterMs, () => resolve("stale"));
      });
      result = await Promise.race([work, timer]);
      cancel();
      if (result === "stale") {
        const hit = stale();
        if (hit) return { bytes: this.#forClient(hit.bytes, msg), cacheHit: true, upstream: null };
        result = await work;
      }
    } else {
      result = await work;
    }
    // RFC 8767: SERVFAIL or REFUSED from the upstreams is a failure to resolve, as much as a
    // timeout is (a resolver's usual answer when a zone's servers are down): answer stale.
    if (result.ok && serveStale && isFailureRcode(result.msg.rcode)) {
      const hit = stale();
      if (hit) return { bytes: this.#forClient(hit.bytes, msg), cacheHit: true, upstream: null };
    }
    if (result.ok) {
      const out = clientAnswer(result.reply, result.msg, {
        edns: msg.edns,
        flags: msg.header.flags,
        udpSize: udpMaxSize,
      });
      setId(out, id);
      restoreQuestionCase(out, name);
      return { bytes: out, cacheHit: false, upstream: result.upstream };
    }
    const fallback = serveStale ? stale() : null;
    if (fallback) {
      return { bytes: this.#forClient(fallback.bytes, msg), cacheHit: true, upstream: null };
    }
    const reply = errorReply(msg, bytes, rcodeForUpstreamError(result.kind), {
      udpSize: udpMaxSize,
    });
    return { bytes: reply, cacheHit: false, upstream: null };
  }

  /** One upstream exchange for everyone waiting on `key`; a good reply goes into the cache. */
  async #forward(
    key: string,
    bytes: Uint8Array,
    msg: Message,
    started: number,
  ): Promise<Forwarded> {
    // The upstream rewrites the query for its own hop (fresh OPT, padding: lib/dns/edns.ts).
    const deadline = started + this.opts.queryTimeoutMs;
    const r = await this.opts.upstream.exchange(bytes, msg.question!, deadline);
    if (!r.ok) {
      const { error } = r;
      log.debug("{name} {qtype} failed upstream: {kind} {reason}", () => ({
        name: nameToString(msg.question!.name),
        qtype: msg.question!.qtype,
        kind: error.kind,
        reason: error.message,
      }));
      return { ok: false, kind: error.kind, message: error.message };
    }
    let replyMsg = r.msg;
    if (!replyMsg) {
      const decoded = decodeMessage(r.reply);
      if (!decoded.ok) {
        return {
          ok: false,
          kind: "protocol",
          message: `malformed reply: ${decoded.error.message}`,
        };
      }
      replyMsg = decoded.value;
    }
    this.opts.cache?.store(key, r.reply, replyMsg);
    return { ok: true, reply: r.reply, msg: replyMsg, upstream: r.upstream };
  }

  /** Refreshes a popular entry before it expires; joins a refresh already under way. */
  #prefetch(key: string, bytes: Uint8Array, msg: Message): void {
    this.opts.metrics?.prefetched();
    const copy = bytes.slice(); // the listener may reuse its buffer
    this.#coalescer.run(key, () => this.#forward(key, copy, msg, this.opts.clock.now()))
      .catch(() => {});
  }

  /** A locally built or cached answer (no OPT yet) for this client's hop. */
  #forClient(answer: Uint8Array, msg: Message): Uint8Array {
    const asked = (msg.header.flags & Flag.AD) !== 0 || (msg.edns?.dnssecOk ?? false);
    if (!asked) answer[3] &= ~Flag.AD & 0xff;
    if (!msg.edns) return answer;
    return appendOpt(answer, { udpSize: this.opts.udpMaxSize, dnssecOk: msg.edns.dnssecOk });
  }

  /** Records the answer (metrics, query log) and hands it to the listener. */
  #done(
    query: Query,
    started: number,
    msg: Message | null,
    outcome: Outcome,
    maxUdpSize: number,
  ): Answer {
    const { metrics, queryLog, clock } = this.opts;
    if (metrics || queryLog) {
      const seconds = (clock.now() - started) / 1000;
      const rcode = outcome.bytes[3] & 0x0f;
      const qtype = msg?.question?.qtype ?? 0;
      metrics?.recordQuery(query.transport, qtype, rcode, seconds, outcome.cacheHit);
      queryLog?.log({
        client: query.client.hostname,
        protocol: query.transport,
        name: msg?.question?.name ?? "",
        qtype,
        rcode,
        upstream: outcome.upstream,
        cacheHit: outcome.cacheHit,
        durationMs: seconds * 1000,
      });
    }
    return { bytes: outcome.bytes, maxUdpSize };
  }
}
