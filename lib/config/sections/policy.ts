/** [policy]: what kinds of queries are answered and how. */

import { ANY_QUERY_ACTIONS, NON_RECURSIVE_ACTIONS } from "../enums.ts";
import { oneOf, printableString } from "../readers.ts";
import { defineSection, type SectionValue, setting } from "../table.ts";

/** The [policy] keys. */
export const POLICY = defineSection("policy", "policy", {
  any_queries: setting("anyQueries", oneOf(ANY_QUERY_ACTIONS), {
    default: "rfc8482",
    doc: `ANY queries: "rfc8482" (a small HINFO answer), "refuse", or "forward" like any type`,
    reloadable: true,
  }),
  non_recursive: setting("nonRecursive", oneOf(NON_RECURSIVE_ACTIONS), {
    default: "refuse",
    doc: `queries with RD=0: "refuse" (REFUSED, EDE 20) or "forward" (cached apart from RD=1)`,
    reloadable: true,
  }),
  chaos_identity: setting("chaosIdentity", printableString(255), {
    default: "",
    doc: `answer to id.server and hostname.bind TXT CH; "" refuses them`,
    reloadable: true,
  }),
});

/** [policy] settings. */
export type PolicyConfig = SectionValue<typeof POLICY.rows>;

/** [policy] defaults. */
export const DEFAULT_POLICY: Readonly<PolicyConfig> = POLICY.defaults;
