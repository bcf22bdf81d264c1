/**
 * The declaration of a configuration section: one row per key, with its reader, default, doc line
 * and whether a SIGHUP reload applies it (as dnsdist generates its settings from one definitions
 * file). Parsing, defaults, unknown-key hints, reload rules and the check against config.toml are
 * all derived from these rows.
 *
 * A new key is one row: `name: setting("fieldName", reader(limits), { default, doc, reloadable })`
 * in its section's table (lib/config/sections/<section>.ts); the field's type is the reader's
 * return type, and config.toml must show it with its default (tests/config/tables.test.ts).
 *
 * A new section is one module: a simple one is `defineSection(name, configField, rows)` read with
 * `readSection`; one with entries or rules between keys ([[routes]]) declares its rows with
 * `declareSection` and writes its builder with `readRow` and the rows' readers. Then list it in
 * sections/all.ts, add its field to `Config` (schema.ts) and its read to load.ts.
 */

import type { Config } from "./schema.ts";
import { keyPath } from "./errors.ts";
import type { Reader, Table } from "./readers.ts";

/** A section's own hint for an unknown key (e.g. "host" in [[listeners]]: it goes in url). */
export type UnknownKeyHint = (key: string) => string | undefined;

/** One key of a section. */
export interface Row<T> {
  /** What the key does, in one line (config.toml carries the long form). */
  doc: string;
  /** Parses a value that is present in the TOML. */
  read: Reader<T>;
  /**
   * The value when the key is absent. Missing for keys that are required, that have no value
   * when unset (ca_file), or whose default depends on the protocol or on another key.
   */
  default?: T;
  /** How config.toml states a default it does not show as `key = <default>` (computed ones). */
  defaultDoc?: string;
  /** Whether a reload applies a change of this key; false means a restart is needed. */
  reloadable: boolean;
  /** The field(s) of the parsed section holding this key's value, compared on reload. */
  field?: string | readonly string[];
}

/** A key of a simple section: it has a default and fills exactly one typed field. */
export interface Setting<F extends string, T> extends Row<T> {
  field: F;
  default: T;
}

/** The parts of a row besides its field name and reader. */
export interface RowSpec<T> {
  doc: string;
  reloadable: boolean;
  default?: NoInfer<T>;
  defaultDoc?: string;
  field?: string | readonly string[];
}

/** A key of a simple section; the field's type is the reader's return type. */
export function setting<F extends string, T>(
  field: F,
  read: Reader<T>,
  spec: RowSpec<T> & { default: NoInfer<T> },
): Setting<F, T> {
  return { ...spec, field, read };
}

/** A row that has a default. */
export type Defaulted<T> = Row<T> & { default: T };

/** A key of a section whose builder is written by hand (listeners, upstreams, admin, query log). */
export function key<T>(read: Reader<T>, spec: RowSpec<T> & { default: NoInfer<T> }): Defaulted<T>;
/** A key without a default: required, or meaning "not set" when absent. */
export function key<T>(read: Reader<T>, spec: RowSpec<T>): Row<T>;
export function key<T>(read: Reader<T>, spec: RowSpec<T>): Row<T> {
  return { ...spec, read };
}

/** Rows by TOML key, in the order they are read and listed in messages. */
// deno-lint-ignore no-explicit-any
export type Rows = Record<string, Row<any>>;
/** The rows of a simple section. */
// deno-lint-ignore no-explicit-any
export type Settings = Record<string, Setting<string, any>>;

/** The parsed value of a simple section: one field per row, typed by its reader. */
export type SectionValue<R extends Settings> = {
  -readonly [K in keyof R as R[K]["field"]]: R[K] extends Setting<string, infer T> ? T : never;
};

/** How a section is written in TOML. */
export type SectionShape = "table" | "array";

/** A section: its TOML name, shape, rows, and where its parsed value lives in Config. */
export interface Section<R extends Rows = Rows> {
  /** TOML name: `server`, `listeners`, `rate_limit`. */
  name: string;
  /** `[name]` or `[[name]]`. */
  shape: SectionShape;
  rows: R;
  /** The Config field holding the parsed section (null when an optional section is absent). */
  configField: Exclude<keyof Config, "path">;
  /** Tried for an unknown key after "did you mean" finds nothing. */
  unknownKeyHint?: UnknownKeyHint;
}

/** A section whose parsing is fully derived from its rows. */
export interface SimpleSection<R extends Settings> extends Section<R> {
  /** Every row's default, frozen (arrays too). */
  defaults: Readonly<SectionValue<R>>;
}

/** Declares a section whose keys all have defaults and map to one field each. */
export function defineSection<R extends Settings>(
  name: string,
  configField: Section["configField"],
  rows: R,
): SimpleSection<R> {
  const defaults: Record<string, unknown> = {};
  for (const row of Object.values(rows)) {
    defaults[row.field] = Array.isArray(row.default)
      ? Object.freeze([...row.default])
      : row.default;
  }
  return {
    name,
    shape: "table",
    configField,
    rows,
    defaults: Object.freeze(defaults) as Readonly<SectionValue<R>>,
  };
}

/** Declares a section whose builder is written by hand; its rows still list its keys. */
export function declareSection<R extends Rows>(
  name: string,
  configField: Section["configField"],
  shape: SectionShape,
  rows: R,
  unknownKeyHint?: UnknownKeyHint,
): Section<R> {
  return { name, shape, configField, rows, unknownKeyHint };
}

/**
 * Reads every row of a simple section from `t` (keys already checked), absent keys taking the
 * value from `defaults` (the rows' own unless given, e.g. [listeners.access] over [access]).
 */
export function readSection<R extends Settings>(
  section: SimpleSection<R>,
  t: Table,
  at: string,
  defaults: Readonly<SectionValue<R>> = section.defaults,
): SectionValue<R> {
  const out: Record<string, unknown> = {};
  const base = defaults as Record<string, unknown>;
  for (const [name, row] of Object.entries(section.rows)) {
    out[row.field] = t[name] === undefined
      ? copy(base[row.field])
      : row.read(t[name], keyPath(at, name), name);
  }
  return out as SectionValue<R>;
}

/** A default as a fresh value, so no parsed config shares (or freezes) another's arrays. */
function copy(v: unknown): unknown {
  return Array.isArray(v) ? [...v] : v;
}

/** Key `name` of `t` read by its row, or the row's default when absent. */
export function readRow<T>(row: Defaulted<T>, t: Table, at: string, name: string): T {
  return t[name] === undefined
    ? copy(row.default) as T
    : row.read(t[name], keyPath(at, name), name);
}
