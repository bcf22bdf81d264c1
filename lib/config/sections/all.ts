/**
 * Every section, in the order of the top level (and of "known keys" messages). A new section is
 * declared in its own module and listed here; load.ts reads it and reload.ts compares it.
 */

import type { Section } from "../table.ts";
import { ACCESS } from "./access.ts";
import { ADMIN } from "./admin.ts";
import { CACHE } from "./cache.ts";
import { CLIENTS } from "./clients.ts";
import { FORWARDING } from "./forwarding.ts";
import { GROUPS } from "./groups.ts";
import { LIMITS } from "./limits.ts";
import { LISTENERS } from "./listeners.ts";
import { LOG } from "./log.ts";
import { POLICY } from "./policy.ts";
import { QUERY_LOG } from "./query_log.ts";
import { RATE_LIMIT } from "./rate_limit.ts";
import { RECORDS, ROUTES, ROUTING } from "./routing.ts";
import { SERVER } from "./server.ts";
import { UPSTREAMS } from "./upstreams.ts";

/** The sections, in top-level order. */
export const SECTIONS: readonly Section[] = Object.freeze([
  SERVER,
  LISTENERS,
  UPSTREAMS,
  FORWARDING,
  LIMITS,
  LOG,
  CACHE,
  ACCESS,
  RATE_LIMIT,
  POLICY,
  ADMIN,
  QUERY_LOG,
  GROUPS,
  ROUTES,
  RECORDS,
  ROUTING,
  CLIENTS,
]);
