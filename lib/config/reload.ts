/**
 * Which changes a reload cannot apply, derived from the `reloadable` flag of each row: a change
 * to a key that is not reloadable (a listener's address, the cache's size, the query log) needs a
 * restart, and the running server reports it instead of silently ignoring it.
 */

import type { Config } from "./schema.ts";
import { SECTIONS } from "./sections/all.ts";
import { keyPath } from "./errors.ts";
import type { Row, Section } from "./table.ts";

/**
 * The keys whose change from `running` to `next` a reload does not apply, as key paths
 * (`listeners[0].url`, `cache.max_entries`, `admin`); empty when a reload applies everything.
 */
export function restartNeeded(running: Config, next: Config): string[] {
  const out: string[] = [];
  for (const section of SECTIONS) {
    const a: unknown = running[section.configField];
    const b: unknown = next[section.configField];
    if (Array.isArray(a) && Array.isArray(b)) {
      for (let i = 0; i < Math.max(a.length, b.length); i++) {
        const at = keyPath(section.name, i);
        // An entry added or removed needs a restart only where some key does (listeners).
        if (i >= a.length || i >= b.length) {
          if (Object.values(section.rows).some((row) => !row.reloadable)) out.push(at);
        } else out.push(...changed(section, a[i], b[i], at));
      }
    } else if (a === null || b === null) {
      if (a !== b) out.push(section.name);
    } else {
      out.push(...changed(section, a, b, section.name));
    }
  }
  return out;
}

/** The non-reloadable keys of `section` whose values differ between `a` and `b`. */
function changed(section: Section, a: unknown, b: unknown, at: string): string[] {
  return Object.entries(section.rows)
    .filter(([, row]) => !row.reloadable && !same(pick(row, a), pick(row, b)))
    .map(([name]) => keyPath(at, name));
}

/** The parsed value(s) of a row, for comparison. */
function pick(row: Row<unknown>, parsed: unknown): unknown {
  const fields = typeof row.field === "string" ? [row.field] : row.field ?? [];
  if (fields.length === 0) {
    throw new Error(`bug: a row that is not reloadable names no field`);
  }
  const p = parsed as Record<string, unknown>;
  return fields.map((f) => p[f]);
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
