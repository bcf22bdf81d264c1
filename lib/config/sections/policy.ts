/** [policy]: what kinds of queries are answered and how. */

import { ANY_QUERY_ACTIONS } from "../enums.ts";
import { oneOf } from "../readers.ts";
import { defineSection, type SectionValue, setting } from "../table.ts";

/** The [policy] keys. */
export const POLICY = defineSection("policy", "policy", {
  any_queries: setting("anyQueries", oneOf(ANY_QUERY_ACTIONS), {
    default: "rfc8482",
    doc: `ANY queries: "rfc8482" (a small HINFO answer), "refuse", or "forward" like any type`,
    reloadable: true,
  }),
});

/** [policy] settings. */
export type PolicyConfig = SectionValue<typeof POLICY.rows>;

/** [policy] defaults. */
export const DEFAULT_POLICY: Readonly<PolicyConfig> = POLICY.defaults;
