/**
 * The one core every listener feeds: bytes from a client in, bytes to send back (or nothing) out.
 * Listeners own framing and transport limits; everything about DNS semantics happens here —
 * access control, rate limiting, policy, load shedding, the cache, EDNS per hop — and this is the
 * single place where decode and upstream failures become rcodes.
 *
 * Longer than the ~500 lines we aim for, for now: the steps of one query (admission, decode,
 * local policy, route, cache, exchange, the answer's hop) read top to bottom in one class, and
 * the file is being changed on parallel branches (client identity). Its seams, for the split
 * once those land: the upstream-failure → rcode/EDE table, the local answers (CH, ANY, no RD),
 * and the client hop (#finish).
 */
import { cacheKey } from "../cache/key.ts";
import type { ResponseCache } from "../cache/cache.ts";
import { Coalescer } from "../cache/coalesce.ts";
import { type Ede, ede, EdeCode } from "../dns/ede.ts";
import {
  type ClientSubnet,
  clientSubnet,
  ecsEcho,
  ecsScope,
  forClient,
  hasOption,
  OptionCode,
  optless,
  relayedOptions,
} from "../dns/edns.ts";
import {
  decodeHeader,
  decodeMessage,
  decodeQuery,
  type EdnsOption,
  Flag,
  isResponse,
  type Message,
  Opcode,
  opcodeOf,
  Rcode,
  RRType,
} from "../dns/message.ts";
import {
  errorAnswer,
  formErrFromHeader,
  minimalAnyReply,
  restoreQuestionCase,
  setId,
  txtAnswer,
  withoutOpt,
} from "../dns/reply.ts";
import { nameFromString, nameKey, nameToString } from "../dns/wire.ts";
import type { AnyQueryAction, NonRecursiveAction } from "../config/enums.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { QueryLog } from "../metrics/query_log.ts";
import type { RebindingFilter } from "../route/rebinding.ts";
import {
  type ForwardDecision,
  type RouteDecision,
  routeLabel,
  type Router,
} from "../route/router.ts";
import type { ClientDirectory, ClientLabels } from "../identity/clients.ts";
import type { Acl } from "../policy/acl.ts";
import { Admission, type RateLimiter } from "../policy/rate_limit.ts";
import type { Clock } from "../sys/clock.ts";
import { logger } from "../sys/log.ts";
import type { Upstream, UpstreamErrorKind } from "../upstream/upstream.ts";
import type { Transport } from "../dns/transport.ts";

/** One query as a listener received it. */
export interface Query {
  bytes: Uint8Array;
  /**
   * Who sent it: the socket's peer, or the client a trusted proxy's PROXY header names (the
   * listener decides); the ACL, rate limiting, the query log and metrics all use this.
   */
  client: { hostname: string; port: number };
  /** How it arrived; UDP alone imposes a size limit on the answer. */
  transport: Transport;
  /**
   * The client's name, when the listener proved one (a client certificate, a DoH token). When
   * absent the pipeline fills it in from the `[[clients]]` networks (null: unnamed), so it is
   * set once the query has been handled.
   */
  clientName?: string | null;
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
   * `limiter` buckets clients by prefix (null: no prefix limit); a named client with its own
   * limiter in `perClient` (a `[[clients]]` qps) draws from that one instead.
   */
  rateLimit?: {
    limiter: RateLimiter | null;
    perClient?: ReadonlyMap<string, RateLimiter>;
    action: "drop" | "truncate" | "refuse";
    slip?: number;
  } | null;
  /** Named clients: `[[clients]]` networks, and the bounded metric labels of names. */
  clients?: PipelineClients | null;
  /**
   * Budget per client prefix for error answers made here (FORMERR, NOTIMP, BADVERS, REFUSED) over
   * UDP; beyond it they are dropped. Null: unlimited.
   */
  errorLimit?: RateLimiter | null;
  /** ANY queries: RFC 8482 minimal answer, REFUSED, or forwarded as they are. */
  anyQueries?: AnyQueryAction;
  /**
   * Queries with RD=0: "refuse" (default {@link DEFAULT_NON_RECURSIVE}, as Unbound's
   * `access-control: allow` does: no snooping of what other clients looked up) answers REFUSED
   * with EDE 20; "forward" sends them upstream with RD=0 and caches them apart from RD=1.
   */
  nonRecursive?: NonRecursiveAction;
  /**
   * The client's EDNS Client Subnet: "strip" (default) never forwards it; "keep" forwards it,
   * caches and coalesces answers per client subnet and echoes the option (RFC 7871 §7.2).
   * Must match the upstreams' `ecs` (lib/upstream/create.ts), which forward it.
   */
  ecs?: "strip" | "keep";
  /**
   * What `id.server` and `hostname.bind` TXT in class CH answer (RFC 4892); null (the default,
   * {@link DEFAULT_CHAOS_IDENTITY}) refuses them. Class CH never goes upstream.
   */
  chaosIdentity?: string | null;
  /**
   * Split DNS (lib/route): each name's route answers it here (local data, local zones, blocked
   * names) or picks the upstream group it goes to; null sends every name to `upstream`.
   */
  routing?: PipelineRouting | null;
  metrics?: Metrics | null;
  queryLog?: QueryLog | null;
}

/** Who the clients are, as the pipeline uses it (rebuilt on reload). */
export interface PipelineClients {
  /** Names by network (`[[clients]]`), for queries whose listener proved no name. */
  directory: ClientDirectory;
  /** Metric label of a name: declared names are their own label, the rest "anonymous". */
  labels: ClientLabels;
}

/** Split DNS as the pipeline uses it: one generation, swapped whole on reload. */
export interface PipelineRouting {
  router: Router;
  /** The upstreams of each group a route can name (the default group included). */
  groups: ReadonlyMap<string, Upstream>;
  /** Rebinding protection, or null when off. */
  rebinding: RebindingFilter | null;
}

/** Default of {@link PipelineOptions.nonRecursive}. */
export const DEFAULT_NON_RECURSIVE = "refuse";
/** Default of {@link PipelineOptions.chaosIdentity}: no identity, CH queries are refused. */
export const DEFAULT_CHAOS_IDENTITY = null;

/** Class CHAOS (RFC 1035 §3.2.4), used only for server identity queries (RFC 4892). */
const CLASS_CH = 3;
/** The CH TXT names that ask for a server's identity (RFC 4892 §2), as nameKey gives them. */
const IDENTITY_NAMES: ReadonlySet<string> = new Set(
  ["id.server", "hostname.bind"].map((n) => nameKey(nameFromString(n))),
);

/** The Extended DNS Errors the pipeline decides (built once; each answer copies the bytes). */
const EDE = {
  acl: ede(EdeCode.PROHIBITED, "not allowed by the access list"),
  rateLimited: ede(EdeCode.PROHIBITED, "rate limited"),
  overloaded: ede(EdeCode.NOT_READY, "overloaded"),
  opcode: ede(EdeCode.NOT_SUPPORTED, "opcode not supported"),
  metaType: ede(EdeCode.NOT_SUPPORTED, "meta-type queries are not served"),
  any: ede(EdeCode.NOT_SUPPORTED, "ANY queries are not served"),
  chaos: ede(EdeCode.NOT_SUPPORTED, "class CH is not served"),
  nonRecursive: ede(EdeCode.NOT_AUTHORITATIVE, "recursion not desired: refused"),
  noQuestion: ede(EdeCode.OTHER, "no question"),
  optQuestion: ede(EdeCode.OTHER, "OPT is not a question type"),
  badEcs: ede(EdeCode.OTHER, "malformed EDNS Client Subnet option"),
  stale: ede(EdeCode.STALE_ANSWER),
  staleNxdomain: ede(EdeCode.STALE_NXDOMAIN_ANSWER),
  cachedError: ede(EdeCode.CACHED_ERROR),
  blocked: ede(EdeCode.BLOCKED, "blocked by a route"),
  rebinding: ede(EdeCode.BLOCKED, "private address for a public name (rebinding protection)"),
  localClass: ede(EdeCode.NOT_SUPPORTED, "local data exists in class IN only"),
} as const;

/** Upstream failure kind → its EDE ("upstream timeout"), built on first use (kinds are few). */
const upstreamEdes = new Map<UpstreamErrorKind, Ede>();

/**
 * The EDE for a failed exchange: 22 No Reachable Authority when no upstream answered in time or
 * every one is down; 14 Not Ready when every connection is at its cap (we are the bottleneck);
 * 23 Network Error for transport failures. The kind goes into EXTRA-TEXT.
 */
export function edeForUpstreamError(kind: UpstreamErrorKind): Ede {
  let e = upstreamEdes.get(kind);
  if (!e) {
    const code = kind === "timeout" || kind === "down"
      ? EdeCode.NO_REACHABLE_AUTHORITY
      : kind === "overloaded"
      ? EdeCode.NOT_READY
      : EdeCode.NETWORK_ERROR;
    upstreamEdes.set(kind, e = ede(code, `upstream ${kind}`));
  }
  return e;
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
  | {
    ok: true;
    reply: Uint8Array;
    msg: Message;
    /** `reply` without its OPT, made once for the cache and every waiting client (copy it). */
    optless: Uint8Array;
    upstream: string;
  }
  | { ok: false; kind: UpstreamErrorKind | typeof REBINDING_REFUSED; message: string };

/** A Forwarded failure kind: rebinding protection refused the upstream's answer. */
const REBINDING_REFUSED = "rebinding";

/** A query that must go upstream, with what was learned deciding so. */
interface Miss {
  miss: true;
  msg: Message;
  key: string;
  maxUdpSize: number;
  /** The client's subnet when ECS is kept and the query carried one. */
  ecs: ClientSubnet | null;
  /** Pad the answer (an encrypted transport and a padded query). */
  pad: boolean;
  /** Split DNS: the route (the upstream group) the name goes to; null without routing. */
  route: ForwardDecision | null;
}

/** What an answer built or relayed here carries besides its bytes. */
interface Extras {
  /** Why (RFC 8914), for EDNS clients; counted in metrics when sent. */
  ede?: Ede | null;
  /** Options from the upstream the client gets too (EDEs, ECS scope). */
  relayed?: readonly EdnsOption[] | null;
  /** Rcode bits above 15. */
  extendedRcode?: number;
  /** Keep AA (our own CHAOS identity). */
  authoritative?: boolean;
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
  #identityText: string | null = null;
  #identityBytes: Uint8Array | null = null;
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
    return this.#resolve(query, now, started).then(
      (answer) => {
        this.#settled();
        return answer;
      },
      (err) => {
        this.#settled();
        throw err;
      },
    );
  }

  /** One miss fewer in flight; wakes `drained` waiters at zero. */
  #settled(): void {
    if (--this.#inFlight === 0) { for (const wake of this.#drainWaiters.splice(0)) wake(); }
  }

  /** The synchronous part: policy, decoding, local answers and the cache. */
  #decide(query: Query, policy: ListenerPolicy | undefined, started: number): Answer | Miss | null {
    const { bytes, transport } = query;
    const { metrics, udpMaxSize } = this.opts;
    // Who is asking comes first: a client outside the ACL or over its rate gets nothing that
    // costs us work (or a FORMERR reflected at a spoofed source).
    const client = query.client.hostname;
    // A name the listener proved (certificate, token) wins over one from the address.
    const clients = this.opts.clients;
    let name = query.clientName ?? null;
    if (name === null && clients) name = query.clientName = clients.directory.lookup(client);
    if (clients) metrics?.clientQuery(clients.labels.label(name));
    let turnedAway: "refuse" | "drop" | "truncate" | null = null;
    // Over the rate limit (its answers are thinned by slip), as opposed to outside the ACL.
    let limited = false;
    const rateLimit = this.opts.rateLimit;
    const limiter = rateLimit &&
      ((name !== null ? rateLimit.perClient?.get(name) : undefined) ?? rateLimit.limiter);
    if (policy && !policy.acl.admits(client, name)) {
      metrics?.aclRefused(transport);
      turnedAway = policy.aclAction;
    } else if (limiter) {
      // Streams draw from their own allowance: a client sent TC=1 over UDP gets its TCP retry.
      const stream = transport !== "udp";
      const admitted = limiter.admit(client, stream, rateLimit.slip ?? 1);
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
    // RFC 7830 §4: a padded query over an encrypted transport gets a padded answer.
    const pad = (transport === "tls" || transport === "https") &&
      hasOption(msg.edns, OptionCode.PADDING);
    const local = (b: Uint8Array, extras: Extras = {}) => {
      const bytes = this.#finish(b, msg, pad, extras);
      return this.#done(
        query,
        started,
        msg,
        { bytes, cacheHit: false, upstream: null },
        maxUdpSize,
      );
    };
    const refuse = (rcode: number, why: Ede | null) =>
      limited || this.#withinErrorBudget(query)
        ? local(errorAnswer(msg, rcode), { ede: why, extendedRcode: rcode >> 4 })
        : null;

    if (turnedAway === "refuse") return refuse(Rcode.REFUSED, limited ? EDE.rateLimited : EDE.acl);
    if (turnedAway === "truncate") {
      // An empty TC=1 answer: a real client retries over TCP, a spoofed one cannot. No EDE: it
      // is not an error, and it goes to whatever source a flood spoofs, so it stays minimal.
      const tc = errorAnswer(msg, Rcode.NOERROR);
      tc[2] |= Flag.TC >> 8;
      return local(tc);
    }
    if (opcodeOf(msg.header.flags) !== Opcode.QUERY) return refuse(Rcode.NOTIMP, EDE.opcode);
    if (msg.edns && msg.edns.version > EDNS_VERSION) return refuse(Rcode.BADVERS, null);
    const question = msg.question;
    if (!question) return refuse(Rcode.FORMERR, EDE.noQuestion);
    // Meta-types are not data to look up (RFC 6895): OPT as a question is malformed, and zone
    // transfers, TSIG/TKEY and the unassigned meta range are not ours to forward — an upstream
    // rate-limits its error answers by closing the connection, which would cost every client.
    if (question.qtype === RRType.OPT) return refuse(Rcode.FORMERR, EDE.optQuestion);
    if (question.qtype >= META_TYPES_FIRST && question.qtype < RRType.ANY) {
      return refuse(Rcode.REFUSED, EDE.metaType);
    }
    // Class CH is about the server, never forwarded: it would tell the upstream's version.
    if (question.qclass === CLASS_CH) {
      const identity = this.#identity;
      if (identity && question.qtype === RRType.TXT && IDENTITY_NAMES.has(nameKey(question.name))) {
        return local(txtAnswer(msg, identity)!, { authoritative: true });
      }
      return refuse(Rcode.REFUSED, EDE.chaos);
    }
    if (question.qtype === RRType.ANY && this.opts.anyQueries !== "forward") {
      const any = this.opts.anyQueries === "refuse" ? null : minimalAnyReply(msg);
      return any ? local(any) : refuse(Rcode.REFUSED, EDE.any);
    }
    // Split DNS: local data, local zones and blocked names are answered here (RD=0 too, as an
    // authoritative server would) and never cached; other names go to their route's group.
    let route: ForwardDecision | null = null;
    const routing = this.opts.routing;
    if (routing) {
      const d = routing.router.route(question.name);
      if (d.kind !== "forward") {
        const answer = d.answer(msg)!;
        const blocked = d.kind === "block";
        if ((answer[3] & 0x0f) === Rcode.REFUSED && !limited && !this.#withinErrorBudget(query)) {
          return null;
        }
        const why = blocked
          ? EDE.blocked
          : (answer[3] & 0x0f) === Rcode.REFUSED
          ? EDE.localClass
          : null;
        const bytes = this.#finish(answer, msg, pad, { ede: why, authoritative: true });
        const outcome = { bytes, cacheHit: false, upstream: null };
        return this.#done(query, started, msg, outcome, maxUdpSize, d);
      }
      route = d;
    }
    // RD=0 is a question about our cache (Unbound answers it from the cache only): refused by
    // default, so no client can snoop what others looked up.
    if ((msg.header.flags & Flag.RD) === 0 && this.opts.nonRecursive !== "forward") {
      return refuse(Rcode.REFUSED, EDE.nonRecursive);
    }
    let ecs: ClientSubnet | null = null;
    if (this.opts.ecs === "keep") {
      const subnet = clientSubnet(msg.edns);
      if (subnet === null) return refuse(Rcode.FORMERR, EDE.badEcs); // RFC 7871 §7.1.1
      if (subnet) ecs = subnet;
    }
    const key = cacheKey(msg, ecs);
    const cache = this.opts.cache;
    if (cache) {
      const hit = cache.lookup(key, msg.header.id, question.name, undefined, route?.cacheTag);
      if (hit) {
        if (hit.prefetch && this.opts.prefetch) this.#prefetch(key, bytes, msg, ecs, route);
        // A remembered SERVFAIL says so (RFC 8914 13 Cached Error).
        const cachedError = (hit.bytes[3] & 0x0f) === Rcode.SERVFAIL ? EDE.cachedError : null;
        const extras = { ede: cachedError, relayed: this.#relayedFor(hit.options, ecs) };
        const outcome = {
          bytes: this.#finish(hit.bytes, msg, pad, extras),
          cacheHit: true,
          upstream: null,
        };
        return this.#done(query, started, msg, outcome, maxUdpSize, route);
      }
    }
    // Misses wait on upstreams: past max_in_flight they are shed, not queued without bound.
    if (this.#inFlight >= this.opts.maxInFlight) {
      this.shed++;
      if (this.opts.overload === "refuse") return refuse(Rcode.REFUSED, EDE.overloaded);
      metrics?.dropped(transport, "overload");
      return null;
    }
    return { miss: true, msg, key, maxUdpSize, ecs, pad, route };
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
    const outcome = await this.#upstreamOutcome(query.bytes, miss, started);
    return this.#done(query, started, miss.msg, outcome, miss.maxUdpSize, miss.route);
  }

  async #upstreamOutcome(bytes: Uint8Array, miss: Miss, started: number): Promise<Outcome> {
    const { cache, serveStale } = this.opts;
    const { msg, key, ecs, pad, route } = miss;
    const id = msg.header.id;
    const name = msg.question!.name;
    const work = this.#coalescer.run(
      key,
      () => this.#forward(key, bytes, msg, ecs, started, route),
    );
    const stale = (): Outcome | null => {
      const hit = cache?.lookup(key, id, name, { stale: true }, route?.cacheTag);
      if (!hit) return null;
      // RFC 8914: say the answer is stale (19 for a stale NXDOMAIN).
      const nx = (hit.bytes[3] & 0x0f) === Rcode.NXDOMAIN;
      const extras = {
        ede: nx ? EDE.staleNxdomain : EDE.stale,
        relayed: this.#relayedFor(hit.options, ecs),
      };
      return { bytes: this.#finish(hit.bytes, msg, pad, extras), cacheHit: true, upstream: null };
    };
    let result: Forwarded | "stale";
    if (cache && serveStale && cache.hasStale(key, route?.cacheTag)) {
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
        if (hit) return hit;
        result = await work;
      }
    } else {
      result = await work;
    }
    // RFC 8767: SERVFAIL or REFUSED from the upstreams is a failure to resolve, as much as a
    // timeout is (a resolver's usual answer when a zone's servers are down): answer stale.
    if (result.ok && serveStale && isFailureRcode(result.msg.rcode)) {
      const hit = stale();
      if (hit) return hit;
    }
    if (result.ok) {
      const relayed = this.#relayedFor(relayedOptions(result.msg.edns, ecs !== null), ecs);
      const out = this.#finish(result.optless.slice(), msg, pad, {
        relayed,
        extendedRcode: result.msg.rcode >> 4,
      });
      setId(out, id);
      restoreQuestionCase(out, name);
      return { bytes: out, cacheHit: false, upstream: result.upstream };
    }
    if (result.kind === REBINDING_REFUSED) {
      const refused = errorAnswer(msg, Rcode.REFUSED);
      return {
        bytes: this.#finish(refused, msg, pad, { ede: EDE.rebinding }),
        cacheHit: false,
        upstream: null,
      };
    }
    const fallback = serveStale ? stale() : null;
    if (fallback) return fallback;
    const rcode = rcodeForUpstreamError(result.kind);
    const reply = this.#finish(errorAnswer(msg, rcode), msg, pad, {
      ede: edeForUpstreamError(result.kind),
    });
    return { bytes: reply, cacheHit: false, upstream: null };
  }

  /** One upstream exchange for everyone waiting on `key`; a good reply goes into the cache. */
  async #forward(
    key: string,
    bytes: Uint8Array,
    msg: Message,
    ecs: ClientSubnet | null,
    started: number,
    route: ForwardDecision | null,
  ): Promise<Forwarded> {
    // The upstream rewrites the query for its own hop (fresh OPT, padding: lib/dns/edns.ts).
    const deadline = started + this.opts.queryTimeoutMs;
    // A routed name goes to its group's upstreams only, never to another group's.
    const upstream = route ? this.opts.routing?.groups.get(route.group) : this.opts.upstream;
    if (!upstream) return { ok: false, kind: "down", message: `no upstream group ${route?.group}` };
    const r = await upstream.exchange(bytes, msg.question!, deadline, msg);
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
    // A query is not an answer (QR=0): whatever sent it, it is not relayed (every upstream kind).
    if (!isResponse(r.reply)) return { ok: false, kind: "protocol", message: "reply has QR=0" };
    let replyMsg = r.msg;
    let reply = r.reply;
    // Rebinding protection, before the cache: what is stored is what clients may see.
    const rebinding = route ? this.opts.routing?.rebinding : null;
    if (rebinding) {
      const filtered = rebinding.apply(reply, replyMsg, route!.allowPrivate);
      if (filtered.kind !== "clean") {
        this.opts.metrics?.rebindingFiltered(filtered.kind === "refuse" ? "refuse" : "remove");
      }
      if (filtered.kind === "refuse") {
        return { ok: false, kind: REBINDING_REFUSED, message: "private address (rebinding)" };
      }
      if (filtered.kind === "filtered") {
        const decoded = decodeMessage(filtered.bytes);
        if (!decoded.ok) return { ok: false, kind: "protocol", message: decoded.error.message };
        reply = filtered.bytes;
        replyMsg = decoded.value;
      }
    }
    const relayed = relayedOptions(replyMsg.edns, ecs !== null);
    // A scope narrower than the client's source prefix (RFC 7871 §7.3.1) would need a finer key
    // than the subnet as sent: such an answer goes to the clients waiting now, and is not cached.
    const stripped = withoutOpt(reply, replyMsg);
    if (!ecs || ecsScope(relayed) <= ecs.sourcePrefix) {
      this.opts.cache?.store(key, reply, replyMsg, relayed, route?.cacheTag, stripped);
    }
    const answer = stripped?.bytes ?? optless(reply, replyMsg);
    return { ok: true, reply, msg: replyMsg, optless: answer, upstream: r.upstream };
  }

  /** Refreshes a popular entry before it expires; joins a refresh already under way. */
  #prefetch(
    key: string,
    bytes: Uint8Array,
    msg: Message,
    ecs: ClientSubnet | null,
    route: ForwardDecision | null,
  ): void {
    this.opts.metrics?.prefetched();
    const copy = bytes.slice(); // the listener may reuse its buffer
    const now = this.opts.clock.now();
    this.#coalescer.run(key, () => this.#forward(key, copy, msg, ecs, now, route)).catch(() => {});
  }

  /**
   * The upstream options for this client: its EDEs as they are, and, for a client whose ECS is
   * kept, the ECS echo (its own subnet, the upstream's scope) instead of the upstream's option.
   */
  #relayedFor(
    options: readonly EdnsOption[] | null,
    ecs: ClientSubnet | null,
  ): readonly EdnsOption[] | null {
    if (!ecs) return options;
    const out: EdnsOption[] = [ecsEcho(ecs, options)];
    for (const o of options ?? []) if (o.code !== OptionCode.ECS) out.push(o);
    return out;
  }

  /**
   * An OPT-less answer (built here, cached or relayed; owned) finished for this client's hop
   * (lib/dns/edns.ts forClient): flags, our OPT with the EDE and relayed options, padding. The
   * EDE is counted when an EDNS client gets it.
   */
  #finish(answer: Uint8Array, msg: Message, pad: boolean, extras: Extras): Uint8Array {
    const edns = msg.edns;
    let options: readonly EdnsOption[] | undefined;
    if (edns) {
      const ede = extras.ede;
      const relayed = extras.relayed;
      if (ede) {
        this.opts.metrics?.extendedError(ede.code);
        options = relayed ? [ede.option, ...relayed] : [ede.option];
      } else if (relayed) {
        options = relayed;
      }
    }
    return forClient(answer, {
      edns,
      flags: msg.header.flags,
      udpSize: this.opts.udpMaxSize,
      extendedRcode: extras.extendedRcode,
      options,
      pad,
      authoritative: extras.authoritative,
    });
  }

  /** The configured CHAOS identity as TXT data, encoded once per configuration. */
  get #identity(): Uint8Array | null {
    const text = this.opts.chaosIdentity ?? DEFAULT_CHAOS_IDENTITY;
    if (!text) return null;
    if (this.#identityText !== text) {
      this.#identityText = text;
      this.#identityBytes = new TextEncoder().encode(text);
    }
    return this.#identityBytes;
  }

  /** Records the answer (metrics, query log) and hands it to the listener. */
  #done(
    query: Query,
    started: number,
    msg: Message | null,
    outcome: Outcome,
    maxUdpSize: number,
    route: RouteDecision | null = null,
  ): Answer {
    const { metrics, queryLog, clock } = this.opts;
    if (metrics || queryLog) {
      const label = route ? routeLabel(route) : null;
      if (label) metrics?.routed(label);
      const seconds = (clock.now() - started) / 1000;
      const rcode = outcome.bytes[3] & 0x0f;
      const qtype = msg?.question?.qtype ?? 0;
      metrics?.recordQuery(query.transport, qtype, rcode, seconds, outcome.cacheHit);
      queryLog?.log({
        client: query.client.hostname,
        clientName: query.clientName ?? null,
        protocol: query.transport,
        name: msg?.question?.name ?? "",
        qtype,
        rcode,
        upstream: outcome.upstream,
        route: label,
        cacheHit: outcome.cacheHit,
        durationMs: seconds * 1000,
      });
    }
    return { bytes: outcome.bytes, maxUdpSize };
  }
}
