/**
 * Split DNS: [[routes]] (which names go to which upstream group, or are answered here),
 * [[records]] (local data) and [routing] (built-in local zones, hosts files, rebinding
 * protection). The rules themselves live in lib/route; this module reads the TOML and turns a
 * problem lib/route finds into the key path, the value and (for hosts files) file:line.
 */

import { REBINDING_ACTIONS } from "../../route/rebinding.ts";
import { DEFAULT_RECORD_TTL, RECORD_TYPES } from "../../route/records.ts";
import { parseHosts } from "../../route/hosts.ts";
import type { LocalRecord } from "../../route/records.ts";
import { DEFAULT_HOSTS_POLL_MS } from "../../route/hosts_watch.ts";
import { ROUTE_ACTIONS, type RouteAction } from "../../route/router.ts";
import { buildRouting, isRoutingProblem } from "../../route/routing.ts";
import { MAX_TTL } from "../../dns/local_reply.ts";
import { isAbsolute, join } from "node:path";
import { keyPath } from "../errors.ts";
import type { FileJobs } from "../files.ts";
import {
  bool,
  duration,
  integer,
  Invalid,
  nonEmptyString,
  oneOf,
  type Reader,
  required,
  stringList,
  type Table,
} from "../readers.ts";
import {
  declareSection,
  defineSection,
  key,
  readRow,
  readSection,
  type SectionValue,
  setting,
} from "../table.ts";
import { groupName } from "./groups.ts";

/** Record types are written in any case ("a", "AAAA"); stored upper-case. */
const recordType: Reader<string> = (v, path, name) =>
  oneOf(RECORD_TYPES)(typeof v === "string" ? v.toUpperCase() : v, path, name);

/** The [[routes]] keys. */
export const ROUTES = declareSection("routes", "routes", "array", {
  domains: key(stringList(`["corp.example", "10.in-addr.arpa"]`), {
    doc: 'the domain suffixes this route takes (each name at or below them); "." is every name',
    reloadable: true,
  }),
  group: key(groupName, {
    doc: "the upstream group that answers these names (exactly one of group and action)",
    reloadable: true,
  }),
  action: key(oneOf(ROUTE_ACTIONS), {
    doc: `answered here instead: "nxdomain", "refuse", or "local" (a zone served from [[records]])`,
    reloadable: true,
  }),
});

/** One [[routes]] entry. */
export interface RouteConfig {
  domains: string[];
  group?: string;
  action?: RouteAction;
}

/** The [[records]] keys. */
export const RECORDS = declareSection("records", "records", "array", {
  name: key(nonEmptyString(`e.g. "nas.home.arpa"`), {
    doc: "the owner name (exactly this name; not its subdomains)",
    reloadable: true,
  }),
  type: key(recordType, {
    doc: `one of ${RECORD_TYPES.join(", ")}`,
    reloadable: true,
  }),
  data: key(nonEmptyString(`e.g. "192.168.1.10"`), {
    doc: 'the record data in zone-file form: an address, a name, "10 mail.example" (MX), ' +
      '"0 5 5060 sip.example" (SRV), text (TXT)',
    reloadable: true,
  }),
  ttl: key(integer({ min: 0, max: MAX_TTL }), {
    default: DEFAULT_RECORD_TTL,
    doc: "TTL in seconds",
    reloadable: true,
  }),
});

/** One [[records]] entry. */
export interface RecordConfig {
  name: string;
  type: string;
  data: string;
  ttl: number;
}

/** The [routing] keys. */
export const ROUTING = defineSection("routing", "routing", {
  local_zones: setting("localZones", bool, {
    default: true,
    doc: "answer localhost, RFC 6303 private reverse zones, home.arpa, local, ... here",
    reloadable: true,
  }),
  hosts_files: setting("hostsFiles", stringList(`["/etc/hosts"]`), {
    default: [],
    doc: "hosts-format files served as local data (paths relative to the config file)",
    reloadable: true,
  }),
  hosts_poll: setting("hostsPollMs", duration({ allowZero: true }), {
    default: DEFAULT_HOSTS_POLL_MS,
    doc: 'how often hosts files are checked for changes; "0s": only on SIGHUP',
    reloadable: true,
  }),
  rebinding_protection: setting("rebindingProtection", bool, {
    default: false,
    doc: "remove private addresses from answers for names not routed to an internal group",
    reloadable: true,
  }),
  rebinding_action: setting("rebindingAction", oneOf(REBINDING_ACTIONS), {
    default: "remove",
    doc: `"remove" the private addresses, or "refuse" the whole answer`,
    reloadable: true,
  }),
  rebinding_allow: setting("rebindingAllow", stringList(`["corp.example"]`), {
    default: [],
    doc: "domains whose answers may hold private addresses anyway",
    reloadable: true,
  }),
});

/** [routing] settings; hosts_files resolved against the config's directory. */
export type RoutingConfig = SectionValue<typeof ROUTING.rows>;

/** [routing] defaults. */
export const DEFAULT_ROUTING: Readonly<RoutingConfig> = ROUTING.defaults;

/** Reads one [[routes]] entry. */
export function readRoute(t: Table, at: string): RouteConfig {
  const domains = required(t, at, "domains", ROUTES.rows.domains.read, `e.g. ["corp.example"]`);
  if (domains.length === 0) {
    throw new Invalid(keyPath(at, "domains"), domains, `must list at least one domain`);
  }
  const out: RouteConfig = { domains };
  if (t.group !== undefined) {
    out.group = ROUTES.rows.group.read(t.group, keyPath(at, "group"), "group");
  }
  if (t.action !== undefined) {
    out.action = ROUTES.rows.action.read(t.action, keyPath(at, "action"), "action");
  }
  if ((out.group === undefined) === (out.action === undefined)) {
    throw new Invalid(
      at,
      t,
      out.group === undefined
        ? `a route needs group = "..." (an upstream group) or action = ${
          ROUTE_ACTIONS.map((a) => `"${a}"`).join(" | ")
        }`
        : "a route has either group or action, not both",
    );
  }
  return out;
}

/** Reads one [[records]] entry. */
export function readRecord(t: Table, at: string): RecordConfig {
  return {
    name: required(t, at, "name", RECORDS.rows.name.read, `e.g. "nas.home.arpa"`),
    type: required(t, at, "type", RECORDS.rows.type.read, `one of ${RECORD_TYPES.join(", ")}`),
    data: required(t, at, "data", RECORDS.rows.data.read, `e.g. "192.168.1.10"`),
    ttl: readRow(RECORDS.rows.ttl, t, at, "ttl"),
  };
}

/** Reads [routing] `t`; hosts files are queued on `files` to be read and parsed like start-up. */
export function readRouting(
  t: Table,
  ctx: { baseDir: string; files: FileJobs; hosts: LocalRecord[][]; warnings: string[] },
): RoutingConfig {
  const routing = readSection(ROUTING, t, "routing");
  routing.hostsFiles = routing.hostsFiles.map((p) => isAbsolute(p) ? p : join(ctx.baseDir, p));
  routing.hostsFiles.forEach((path, i) => {
    const slot: LocalRecord[] = [];
    ctx.hosts.push(slot);
    ctx.files.read({
      key: keyPath("routing.hosts_files", i),
      value: (t.hosts_files as unknown[])[i],
      path,
      extract: (text, file) => {
        const parsed = parseHosts(text);
        for (const w of parsed.warnings) ctx.warnings.push(`${file}:${w.line}: ${w.message}`);
        if (parsed.errors.length === 0) {
          slot.push(...parsed.records);
          return [];
        }
        const [first] = parsed.errors;
        const more = parsed.errors.length > 1 ? ` (and ${parsed.errors.length - 1} more)` : "";
        return `${file}:${first.line}: ${first.message}${more}`;
      },
      apply: () => {},
    });
  });
  return routing;
}

/** Settings the split-DNS checks need, as parsed. */
export interface SplitDnsParts {
  routes: RouteConfig[];
  records: RecordConfig[];
  routing: RoutingConfig;
  /** Groups that have upstreams. */
  groups: ReadonlySet<string>;
}

/** The lib/route settings of a parsed config. */
export function routingSettings(c: SplitDnsParts) {
  return {
    routes: c.routes,
    records: c.records,
    localZones: c.routing.localZones,
    groups: c.groups,
    rebinding: {
      enabled: c.routing.rebindingProtection,
      action: c.routing.rebindingAction,
      allow: c.routing.rebindingAllow,
    },
  };
}

/**
 * Builds split DNS as the server will, with `hosts` (each hosts file's records), and throws
 * Invalid naming the key and value of the first problem: a route domain that is not a name, a
 * domain routed twice, a group with no upstream, record data that does not parse for its type,
 * a CNAME beside other data, a bad rebinding_allow domain.
 */
export function checkRouting(c: SplitDnsParts, hosts: readonly LocalRecord[][]): void {
  const built = buildRouting(routingSettings(c), hosts.flat());
  if (!isRoutingProblem(built)) return;
  switch (built.where) {
    case "routes": {
      const { route, field, value, message } = built.error;
      const at = keyPath("routes", route);
      if (field === "domains") {
        const j = c.routes[route].domains.lastIndexOf(value);
        throw new Invalid(
          j >= 0 ? keyPath(keyPath(at, "domains"), j) : keyPath(at, field),
          value,
          message,
        );
      }
      const known = [...c.groups].map((g) => `"${g}"`).join(", ");
      throw new Invalid(
        keyPath(at, field),
        value,
        field === "group" ? `${message}; groups with upstreams: ${known}` : message,
      );
    }
    case "records": {
      const { field, value, message } = built.error;
      throw new Invalid(keyPath(keyPath("records", built.index), field), value, message);
    }
    case "hosts":
      throw new Invalid("routing.hosts_files", c.routing.hostsFiles, built.message);
    case "rebinding": {
      const { value, message } = built.error;
      const j = c.routing.rebindingAllow.indexOf(value);
      throw new Invalid(keyPath("routing.rebinding_allow", Math.max(0, j)), value, message);
    }
  }
}
