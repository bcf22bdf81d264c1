/**
 * [[groups]]: per-group settings of named upstream groups (split DNS). An upstream joins a group
 * with `group = "name"` in [[upstreams]]; a group needs no [[groups]] entry unless it overrides
 * some [forwarding] keys (strategy, timeouts, connection counts, padding). Those keys are the
 * [forwarding] rows themselves, so they are declared once; bootstrap and ecs stay global (the
 * pipeline caches by client subnet for every group alike).
 */

import { DEFAULT_GROUP } from "../../route/router.ts";
import { keyPath } from "../errors.ts";
import { describe, Invalid, type Reader, required, type Table } from "../readers.ts";
import { declareSection, key, type Row, type Rows } from "../table.ts";
import { FORWARDING, type ForwardingConfig } from "./forwarding.ts";

/** Route labels in metrics and the query log that are not groups: no group may be called so. */
export const RESERVED_GROUP_NAMES: readonly string[] = Object.freeze([
  "local",
  "blocked",
  "refused",
]);

const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/**
 * A group name: a short token (it is a metrics label value), not one of the route labels that
 * are not groups.
 */
export const groupName: Reader<string> = (v, path) => {
  if (typeof v !== "string") {
    throw new Invalid(path, v, `expected a group name such as "corp", got ${describe(v)}`);
  }
  if (!GROUP_NAME.test(v)) {
    throw new Invalid(
      path,
      v,
      "a group name is 1-63 letters, digits, '_', '-' or '.', starting with a letter or digit",
    );
  }
  if (RESERVED_GROUP_NAMES.includes(v)) {
    throw new Invalid(
      path,
      v,
      `"${v}" is reserved (metrics and the query log use ${
        RESERVED_GROUP_NAMES.map((n) => `"${n}"`).join(", ")
      } for answers made here)`,
    );
  }
  return v;
};

/** [forwarding] keys a group may override; the rest are global. */
export const GROUP_FORWARDING_KEYS = Object.freeze(
  Object.keys(FORWARDING.rows).filter((k) => k !== "bootstrap" && k !== "ecs"),
) as readonly (keyof typeof FORWARDING.rows)[];

/** A [forwarding] row as a [[groups]] row: same reader and doc, default from [forwarding]. */
function overrideRow(name: keyof typeof FORWARDING.rows): Row<unknown> {
  const row = FORWARDING.rows[name];
  return key(row.read as Reader<unknown>, {
    doc: `overrides [forwarding] ${name}: ${row.doc}`,
    defaultDoc: `[forwarding] ${name}`,
    reloadable: true,
    field: row.field,
  });
}

/** The [[groups]] keys: `name`, then every overridable [forwarding] key. */
export const GROUPS = declareSection("groups", "groups", "array", {
  name: key(groupName, {
    doc: "the group, as upstreams name it with group = ...",
    reloadable: true,
  }),
  ...Object.fromEntries(GROUP_FORWARDING_KEYS.map((k) => [k, overrideRow(k)])) as Rows,
});

/** One [[groups]] entry: its name and its [forwarding] with the overrides applied. */
export interface GroupConfig {
  name: string;
  forwarding: ForwardingConfig;
}

/**
 * Reads one [[groups]] entry `t` at `at` over `forwarding` ([forwarding] as read). An override
 * must keep the same rules [forwarding] has: attempt_timeout within server.query_timeout,
 * failure_backoff at most max_failure_backoff.
 */
export function readGroup(t: Table, at: string, forwarding: ForwardingConfig): GroupConfig {
  const name = required(t, at, "name", GROUPS.rows.name.read as Reader<string>, `e.g. "corp"`);
  const out: Record<string, unknown> = { ...forwarding };
  for (const k of GROUP_FORWARDING_KEYS) {
    if (t[k] === undefined) continue;
    const row = FORWARDING.rows[k];
    out[row.field] = row.read(t[k], keyPath(at, k), k);
  }
  const f = out as ForwardingConfig;
  if (t.attempt_timeout !== undefined && f.attemptTimeoutMs > f.queryTimeoutMs) {
    throw new Invalid(
      keyPath(at, "attempt_timeout"),
      t.attempt_timeout,
      "must not exceed server.query_timeout, so that one attempt fits in a query's budget",
    );
  }
  if (f.failureBackoffMs > f.maxFailureBackoffMs) {
    const blame = t.failure_backoff !== undefined ? "failure_backoff" : "max_failure_backoff";
    throw new Invalid(
      keyPath(at, blame),
      t[blame],
      "failure_backoff must not exceed max_failure_backoff (the cap of the doubling backoff)",
    );
  }
  return { name, forwarding: f };
}

/** The [forwarding] settings of group `name`: its [[groups]] entry's, or [forwarding]'s. */
export function forwardingOf(
  config: { forwarding: ForwardingConfig; groups: readonly GroupConfig[] },
  name: string,
): ForwardingConfig {
  return config.groups.find((g) => g.name === name)?.forwarding ?? config.forwarding;
}

export { DEFAULT_GROUP };
