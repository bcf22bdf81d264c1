/**
 * One generation of split DNS from its settings: the Router (routes, local zones, `[[records]]`
 * and hosts-file data merged) and the rebinding filter. Configuration validation (`--check`) and
 * the running server build it with this same function, so both reject the same things; the
 * server rebuilds it on SIGHUP and whenever a hosts file changes, keeping the running one when
 * the new one has a problem.
 */
import { type RebindingAction, type RebindingError, RebindingFilter } from "./rebinding.ts";
import {
  isRecordError,
  LocalData,
  type LocalRecord,
  parseRecord,
  type RecordError,
  type RecordRow,
} from "./records.ts";
import { type RouteError, Router, type RouteRule } from "./router.ts";

/** Everything split DNS is built from, besides hosts-file data. */
export interface RoutingSettings {
  routes: readonly RouteRule[];
  records: readonly RecordRow[];
  /** Serve the built-in local zones. */
  localZones: boolean;
  /** The groups that have upstreams. */
  groups: ReadonlySet<string>;
  rebinding: {
    enabled: boolean;
    action: RebindingAction;
    allow: readonly string[];
  };
}

/** Why a generation could not be built, with what it concerns (for key paths and logs). */
export type RoutingProblem =
  | { where: "routes"; error: RouteError }
  | { where: "records"; index: number; error: RecordError }
  | { where: "hosts"; message: string }
  | { where: "rebinding"; error: RebindingError };

/** A built generation. */
export interface Routing {
  readonly router: Router;
  /** Null when rebinding protection is off. */
  readonly rebinding: RebindingFilter | null;
}

/** Tells a built generation from a problem. */
export function isRoutingProblem(r: Routing | RoutingProblem): r is RoutingProblem {
  return "where" in r;
}

/**
 * Builds a generation from `s` and the records read from hosts files; the first problem found
 * otherwise (a record that does not parse, a CNAME beside other data, a bad route or allow
 * domain). Hosts data merges with `[[records]]` at the same name.
 */
export function buildRouting(
  s: RoutingSettings,
  hosts: readonly LocalRecord[] = [],
): Routing | RoutingProblem {
  const data = new LocalData();
  for (const [index, row] of s.records.entries()) {
    const rec = parseRecord(row);
    if (isRecordError(rec)) return { where: "records", index, error: rec };
    const conflict = data.add(rec);
    if (conflict) {
      return {
        where: "records",
        index,
        error: { field: "name", value: row.name, message: conflict },
      };
    }
  }
  for (const rec of hosts) {
    const conflict = data.add(rec);
    if (conflict) return { where: "hosts", message: `${conflict} ([[records]] and a hosts file)` };
  }
  let rebinding: RebindingFilter | null = null;
  if (s.rebinding.enabled) {
    const built = RebindingFilter.build({ allow: s.rebinding.allow, action: s.rebinding.action });
    if (Array.isArray(built)) return { where: "rebinding", error: built[0] };
    rebinding = built;
  }
  const router = Router.build({
    routes: s.routes,
    localZones: s.localZones,
    data,
    groups: s.groups,
    cacheSalt: s.rebinding.enabled
      ? JSON.stringify([s.rebinding.action, [...s.rebinding.allow].sort()])
      : "",
  });
  if (Array.isArray(router)) return { where: "routes", error: router[0] };
  return { router, rebinding };
}
