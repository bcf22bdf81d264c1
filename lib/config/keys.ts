/**
 * Unknown-key detection, derived from the section tables: every table the config holds is checked
 * against its section's rows, and an unknown key gets the most useful hint we can find (a near
 * miss, the section it belongs in, a section's own hint, or the list of known keys).
 */

import { closest, keyPath } from "./errors.ts";
import { describe, Invalid, isTable, type Table } from "./readers.ts";
import type { Section } from "./table.ts";

/** Checks tables against the known sections. */
export class KeyChecker {
  /** `sections` in top-level order. */
  constructor(readonly sections: readonly Section[]) {}

  /** The top-level keys: one per section. */
  get topLevel(): string[] {
    return this.sections.map((s) => s.name);
  }

  /** Rejects top-level keys that name no section. */
  checkTop(root: Table): void {
    const known = this.topLevel;
    for (const [key, value] of Object.entries(root)) {
      if (known.includes(key)) continue;
      const hint = closestHint(key, known) ?? this.#homes(key, undefined) ??
        `known keys in the top level: ${known.join(", ")}`;
      throw new Invalid(keyPath("", key), value, `unknown key; ${hint}`);
    }
  }

  /** Rejects keys of `table` (at key path `at`) that `section` does not know. */
  check(table: Table, section: Section, at: string): void {
    const known = Object.keys(section.rows);
    for (const [key, value] of Object.entries(table)) {
      if (known.includes(key)) continue;
      const hint = closestHint(key, known) ?? section.unknownKeyHint?.(key) ??
        this.#homes(key, section) ?? `known keys in ${label(section, at)}: ${known.join(", ")}`;
      throw new Invalid(keyPath(at, key), value, `unknown key; ${hint}`);
    }
  }

  /** A table value at `at` (absent: empty), its keys checked against `section`. */
  table(v: unknown, section: Section, at: string): Table {
    if (v === undefined) return {};
    if (!isTable(v)) {
      throw new Invalid(at, v, `expected a table (${label(section, at)}), got ${describe(v)}`);
    }
    this.check(v, section, at);
    return v;
  }

  /** "x belongs in [a] or [b]" when other sections know the key. */
  #homes(key: string, except: Section | undefined): string | undefined {
    const homes = this.sections
      .filter((s) => s !== except && Object.hasOwn(s.rows, key))
      .map((s) => label(s, s.name));
    return homes.length > 0 ? `${key} belongs in ${homes.join(" or ")}` : undefined;
  }
}

function closestHint(key: string, known: readonly string[]): string | undefined {
  const near = closest(key, known);
  return near ? `did you mean "${near}"?` : undefined;
}

/** How a section is written at key path `at`: `[server]`, `[[listeners]]`, `[listeners.access]`. */
export function label(section: Section, at: string): string {
  if (section.shape === "array") return `[[${section.name}]]`;
  return `[${at.replace(/\[\d+\]/g, "")}]`;
}
