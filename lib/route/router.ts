/**
 * The route decision: for each question name, exactly one of
 * - forward to an upstream group (never another one: an internal name must not leak),
 * - answer locally (local records, a locally served zone), or
 * - block (NXDOMAIN with an SOA, or REFUSED), nothing forwarded.
 *
 * Order, decided once per query on the hot path (see `route`):
 * 1. Local data at exactly the name (`[[records]]`, hosts files) answers, whatever route covers
 *    the name: an operator overriding one name expects it to win.
 * 2. Otherwise the longest matching suffix among routes (`[[routes]]`: group, or action
 *    `nxdomain` | `refuse` | `local`) and the built-in local zones decides. At the same suffix an
 *    explicit route wins; a route also replaces every built-in zone at or below its suffix (a
 *    route for `in-addr.arpa` sends `10.in-addr.arpa` there too), except a route for the root,
 *    which only replaces the default.
 * 3. No suffix matches: the default group (`"default"`), as if the root were routed there.
 *
 * Decisions are preallocated objects: `route` allocates nothing. Local and block decisions build
 * their answer with `answer(query)`, only for the queries that get one.
 */
import { CLASS_IN, type Message, Rcode, RRType } from "../dns/message.ts";
import { nameToString } from "../dns/wire.ts";
import { localReply } from "../dns/local_reply.ts";
import { builtinZones, LocalZone, synthesizedSoa } from "./local_zones.ts";
import { LocalData, parseDomainName } from "./records.ts";
import { SuffixTable } from "./suffix_table.ts";

/** The group names without a `group` key belong to, and unrouted names go to. */
export const DEFAULT_GROUP = "default";
/** Actions a route may take instead of a group, declared once (config and docs derive). */
export const ROUTE_ACTIONS = ["nxdomain", "refuse", "local"] as const;
/** One of ROUTE_ACTIONS. */
export type RouteAction = (typeof ROUTE_ACTIONS)[number];
/**
 * TTL and negative-caching TTL of blocked (`nxdomain`) answers: short, so unblocking a name
 * takes effect at clients soon (AdGuard Home uses 10 s too).
 */
export const BLOCKED_TTL = 10;

/** A `[[routes]]` row: domains and either a group or an action. */
export interface RouteRule {
  domains: readonly string[];
  group?: string;
  action?: string;
}

/** A rejected route, with where and why, for `--check` and start-up messages. */
export interface RouteError {
  /** Index of the rule in `routes`. */
  route: number;
  field: "domains" | "group" | "action";
  value: string;
  message: string;
}

/** Send the query to `group`'s upstreams. */
export interface ForwardDecision {
  readonly kind: "forward";
  readonly group: string;
  /** The matched suffix in presentation form ("." for the default route). */
  readonly suffix: string;
  /**
   * True when an explicit route sends the name to a group other than the default: the operator
   * declared it internal, so rebinding protection leaves private addresses in its answers.
   */
  readonly allowPrivate: boolean;
  /** Stable identity of what this decision does, for cache validity across reloads. */
  readonly key: string;
  /**
   * A small integer standing for `key` and the settings that shape cached answers (the
   * rebinding filter: RouterOptions.cacheSalt). Cache entries carry the tag of the decision they
   * were fetched under; a hit whose tag differs (a reload moved the name) counts as a miss.
   * Never 0, which stands for "no router".
   */
  readonly cacheTag: number;
}

/** Answered here from local data or a locally served zone. */
export interface LocalDecision {
  readonly kind: "local";
  readonly suffix: string;
  readonly key: string;
  /** The authoritative answer for `query` (no OPT); null for a query without a question. */
  answer(query: Message): Uint8Array | null;
}

/** Refused or answered NXDOMAIN by policy; nothing forwarded. */
export interface BlockDecision {
  readonly kind: "block";
  readonly action: "nxdomain" | "refuse";
  readonly suffix: string;
  readonly key: string;
  answer(query: Message): Uint8Array | null;
}

/** What to do with a query name; see the module comment. */
export type RouteDecision = ForwardDecision | LocalDecision | BlockDecision;

/** Everything a router is built from (one generation of config). */
export interface RouterOptions {
  routes?: readonly RouteRule[];
  /** Serve BUILTIN_LOCAL_ZONES (default true). */
  localZones?: boolean;
  /** Records from `[[records]]` and hosts files, merged. */
  data?: LocalData;
  /** The groups that exist; when given, a route naming another is an error. */
  groups?: ReadonlySet<string>;
  /** Where unrouted names go (default DEFAULT_GROUP). */
  defaultGroup?: string;
  /**
   * Settings other than the route that change what a forwarded answer looks like once cached
   * (the rebinding filter's), folded into every ForwardDecision.cacheTag: changing them makes
   * entries fetched before a miss.
   */
  cacheSalt?: string;
}

/** The label a decision is counted under in metrics and shown in the query log. */
export function routeLabel(d: RouteDecision): string {
  if (d.kind === "forward") return d.group;
  return d.kind === "local" ? "local" : d.action === "nxdomain" ? "blocked" : "refused";
}

/** Cache tags by key and salt: the same decision gets the same tag in every generation. */
const cacheTags = new Map<string, number>();

function cacheTagOf(key: string, salt: string): number {
  const id = `${key}\n${salt}`;
  let tag = cacheTags.get(id);
  if (tag === undefined) cacheTags.set(id, tag = cacheTags.size + 1);
  return tag;
}

function forward(
  group: string,
  suffix: string,
  allowPrivate: boolean,
  salt: string,
): ForwardDecision {
  const key = `forward:${group}:${allowPrivate}`;
  return { kind: "forward", group, suffix, allowPrivate, key, cacheTag: cacheTagOf(key, salt) };
}

function block(action: "nxdomain" | "refuse", apex: Uint8Array): BlockDecision {
  const suffix = nameToString(apex);
  const soa = synthesizedSoa(apex, BLOCKED_TTL);
  return {
    kind: "block",
    action,
    suffix,
    key: `block:${action}`,
    answer: (query) =>
      action === "refuse"
        ? localReply(query, Rcode.REFUSED, [], [], false)
        : localReply(query, Rcode.NXDOMAIN, [], [soa]),
  };
}

/** A route table built from one generation of config; see the module comment. */
export class Router {
  readonly #table: SuffixTable<RouteDecision>;
  readonly #data: LocalData;
  readonly #hasData: boolean;
  readonly #default: ForwardDecision;
  readonly #records: LocalDecision;
  /** Zones by decision, to find the SOA for NODATA at a record name inside a zone. */
  readonly #zones = new Map<RouteDecision, LocalZone>();

  private constructor(
    table: SuffixTable<RouteDecision>,
    data: LocalData,
    defaultGroup: string,
    salt: string,
  ) {
    this.#table = table;
    this.#data = data;
    this.#hasData = data.size > 0;
    this.#default = forward(defaultGroup, ".", false, salt);
    this.#records = {
      kind: "local",
      suffix: "records",
      key: "local:records",
      answer: (query) => {
        const q = query.question;
        const at = q ? this.#data.get(q.name) : undefined;
        if (!q || !at) return null;
        if (q.qclass !== CLASS_IN && q.qclass !== RRType.ANY) {
          return localReply(query, Rcode.REFUSED, [], [], false);
        }
        const zone = this.#zones.get(this.#table.lookup(q.name)!);
        return this.#data.answer(query, at, zone?.soa ?? null);
      },
    };
  }

  /**
   * Builds a router, or returns every problem found: invalid domains, a domain in two routes,
   * a rule with both or neither of group and action, an unknown action or group.
   */
  static build(opts: RouterOptions = {}): Router | RouteError[] {
    const errors: RouteError[] = [];
    const defaultGroup = opts.defaultGroup ?? DEFAULT_GROUP;
    const salt = opts.cacheSalt ?? "";
    const data = opts.data ?? new LocalData();
    const table = new SuffixTable<RouteDecision>();
    const zones = new Map<RouteDecision, LocalZone>();
    const seen = new SuffixTable<number>();
    /** Apexes of explicit routes other than the root: built-in zones under them are dropped. */
    const routed = new SuffixTable<true>();
    const forwards = new Map<string, ForwardDecision>();

    (opts.routes ?? []).forEach((rule, i) => {
      const err = (field: RouteError["field"], value: string, message: string) =>
        errors.push({ route: i, field, value, message });
      const hasGroup = rule.group !== undefined;
      const hasAction = rule.action !== undefined;
      if (hasGroup === hasAction) {
        err("group", rule.group ?? "", "a route needs exactly one of `group` and `action`");
        return;
      }
      if (hasAction && !(ROUTE_ACTIONS as readonly string[]).includes(rule.action!)) {
        err("action", rule.action!, `action must be one of ${ROUTE_ACTIONS.join(", ")}`);
        return;
      }
      if (hasGroup && (rule.group === "" || (opts.groups && !opts.groups.has(rule.group!)))) {
        err("group", rule.group!, `no upstream has group = ${JSON.stringify(rule.group)}`);
        return;
      }
      if (rule.domains.length === 0) err("domains", "", "a route needs at least one domain");
      for (const domain of rule.domains) {
        const apex = parseDomainName(domain, "domain");
        if (typeof apex === "string") {
          err("domains", domain, apex);
          continue;
        }
        const before = seen.set(apex, i);
        if (before !== undefined) {
          err("domains", domain, `${nameToString(apex)} is already routed by routes[${before}]`);
          continue;
        }
        const suffix = nameToString(apex);
        let decision: RouteDecision;
        if (hasGroup) {
          const allowPrivate = apex.length > 1 && rule.group !== defaultGroup;
          const k = `${rule.group}:${allowPrivate}`;
          let f = forwards.get(k);
          if (!f) forwards.set(k, f = forward(rule.group!, ".", allowPrivate, salt));
          // One object per suffix so logs can show it; key stays per group.
          decision = { ...f, suffix };
        } else if (rule.action === "local") {
          const zone = new LocalZone(apex);
          decision = {
            kind: "local",
            suffix,
            key: "local:zone",
            answer: (query) => zone.answer(query, data),
          };
          zones.set(decision, zone);
        } else {
          decision = block(rule.action as "nxdomain" | "refuse", apex);
        }
        table.set(apex, decision);
        if (apex.length > 1) routed.set(apex, true);
      }
    });
    if (errors.length > 0) return errors;

    if (opts.localZones ?? true) {
      for (const zone of builtinZones()) {
        if (routed.lookup(zone.apex)) continue; // an explicit route at or above replaces it
        const decision: LocalDecision = {
          kind: "local",
          suffix: zone.name,
          key: "local:zone",
          answer: (query) => zone.answer(query, data),
        };
        table.set(zone.apex, decision);
        zones.set(decision, zone);
      }
    }
    const router = new Router(table, data, defaultGroup, salt);
    for (const [d, z] of zones) router.#zones.set(d, z);
    return router;
  }

  /**
   * The decision for a question name (wire form, any case). Allocation-free: one hash walk over
   * the local data (when there is any) and one over the routes, each stopping at the first
   * label with nothing below it.
   */
  route(name: Uint8Array): RouteDecision {
    if (this.#hasData && this.#data.get(name) !== undefined) return this.#records;
    return this.#table.lookup(name) ?? this.#default;
  }

  /** The groups routes send names to (the default included), for `--check` warnings. */
  groups(): Set<string> {
    const out = new Set<string>([this.#default.group]);
    for (const [, d] of this.#table.entries()) if (d.kind === "forward") out.add(d.group);
    return out;
  }
}

/** Groups that have upstreams but receive no names: a `--check` warning, not an error. */
export function unusedGroups(router: Router, groups: Iterable<string>): string[] {
  const used = router.groups();
  return [...groups].filter((g) => !used.has(g));
}
