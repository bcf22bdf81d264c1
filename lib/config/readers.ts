/**
 * Generic value readers for configuration keys. Each reader takes a value that is present in the
 * TOML (never undefined: absent keys get the table's default) and its key path, and returns the
 * typed value or throws Invalid with the one line that tells the operator what to write instead.
 */

import { type Cidr, parseCidr } from "../policy/acl.ts";
import { closest, keyPath } from "./errors.ts";
import { formatDuration, isBareNumber, parseDuration } from "./duration.ts";
import { formatSize, parseSize, sizeHint } from "./size.ts";

/** A parsed TOML table. */
export type Table = Record<string, unknown>;

/** A user mistake found during validation; load.ts turns it into a ConfigError. */
export class Invalid {
  constructor(readonly key: string, readonly value: unknown, readonly message: string) {}
}

/**
 * Turns a present TOML value into a typed setting, or throws Invalid. `path` is the full key path
 * (`cache.max_ttl`, `listeners[0].trusted_proxies`) and `key` its last part, for hints.
 */
export type Reader<T> = (value: unknown, path: string, key: string) => T;

/** Inclusive bounds of a numeric setting. */
export interface Range {
  min: number;
  max: number;
}

/** Largest TTL-like value in seconds (RFC 2181 §8: 2^31 - 1). */
export const MAX_TTL_SECONDS = 2_147_483_647;
/** Longest duration a host timer can hold (2^31 - 1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 2_147_483_647;

/** True for a TOML table (not an array, date or scalar). */
export function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** "a string", "an integer", ... for "expected X, got Y" messages. */
export function describe(v: unknown): string {
  if (typeof v === "string") return "a string";
  if (typeof v === "number") return Number.isInteger(v) ? "an integer" : "a float";
  if (typeof v === "boolean") return "a boolean";
  if (v instanceof Date) return "a date";
  if (Array.isArray(v)) return "an array";
  if (isTable(v)) return "a table";
  return typeof v;
}

/** How a duration key is read. */
export interface DurationOptions {
  /** Accept "0s" (otherwise it must be greater than zero). */
  allowZero?: boolean;
  /** Return whole seconds instead of milliseconds (TTL-like settings). */
  seconds?: boolean;
  /** Largest value in ms; default: the timer limit (ms) or RFC 2181's TTL limit (seconds). */
  maxMs?: number;
  /** Why maxMs is the limit, shown in parentheses. */
  maxWhy?: string;
  /** Added to "must be greater than zero" when zero is not allowed. */
  zeroHint?: string;
}

/** A duration ("250ms", "1.5s") in milliseconds, or whole seconds with `seconds`. */
export function duration(opts: DurationOptions = {}): Reader<number> {
  return (v, path) => {
    if (typeof v === "number" && Number.isFinite(v)) {
      throw new Invalid(
        path,
        v,
        `durations need a unit; write a string such as "${v}s" or "${v}ms"`,
      );
    }
    if (typeof v !== "string") {
      throw new Invalid(path, v, `expected a duration such as "5s", got ${describe(v)}`);
    }
    const ms = parseDuration(v);
    if (ms === null) {
      const hint = isBareNumber(v)
        ? `missing unit; write "${v.trim()}s" or "${v.trim()}ms"`
        : `not a duration; use a number with a unit ms, s, m, h or d, e.g. "250ms", "1.5s", "2m"`;
      throw new Invalid(path, v, hint);
    }
    if (opts.allowZero ? ms < 0 : ms <= 0) {
      const zero = opts.zeroHint ? `; ${opts.zeroHint}` : "";
      throw new Invalid(
        path,
        v,
        opts.allowZero ? "must not be negative" : `must be greater than zero${zero}`,
      );
    }
    if (opts.seconds) {
      if (ms % 1000 !== 0) throw new Invalid(path, v, "must be a whole number of seconds");
      const max = opts.maxMs ?? MAX_TTL_SECONDS * 1000;
      if (ms > max) {
        const why = opts.maxWhy ?? "RFC 2181 §8";
        throw new Invalid(path, v, `must be at most ${formatDuration(max)} (${why})`);
      }
      return ms / 1000;
    }
    if (!Number.isInteger(ms)) {
      throw new Invalid(path, v, "must be a whole number of milliseconds");
    }
    const max = opts.maxMs ?? MAX_TIMER_MS;
    if (ms > max) {
      const why = opts.maxWhy ?? "about 24 days";
      const limit = max === MAX_TIMER_MS ? `${max}ms` : formatDuration(max);
      throw new Invalid(path, v, `must be at most ${limit} (${why})`);
    }
    return ms;
  };
}

/** A memory size ("256MiB") in bytes, within `range`. */
export function size(range: Range): Reader<number> {
  return (v, path) => {
    if (typeof v === "number" && Number.isFinite(v)) {
      throw new Invalid(path, v, `sizes need a unit; write a string such as "${v}MiB"`);
    }
    if (typeof v !== "string") {
      throw new Invalid(path, v, `expected a size such as "256MiB", got ${describe(v)}`);
    }
    const bytes = parseSize(v);
    if (bytes === null) throw new Invalid(path, v, sizeHint(v));
    if (bytes < range.min || bytes > range.max) {
      throw new Invalid(path, v, `must be ${formatSize(range.min)}-${formatSize(range.max)}`);
    }
    return bytes;
  };
}

/** A whole number within `range`. */
export function integer(range: Range): Reader<number> {
  return numeric(range, true);
}

/** A number, whole or not (qps = 0.5), within `range`. */
export function number(range: Range): Reader<number> {
  return numeric(range, false);
}

function numeric(range: Range, whole: boolean): Reader<number> {
  return (v, path) => {
    if (typeof v !== "number") {
      const digits = whole ? /^\s*-?[0-9]+\s*$/ : /^\s*-?[0-9]+(\.[0-9]+)?\s*$/;
      const quoted = typeof v === "string" && digits.test(v) ? "; remove the quotes" : "";
      const what = whole ? "an integer" : "a number";
      throw new Invalid(path, v, `expected ${what}, got ${describe(v)}${quoted}`);
    }
    if (whole && !Number.isInteger(v)) throw new Invalid(path, v, "must be a whole number");
    if (!(v >= range.min && v <= range.max)) {
      throw new Invalid(path, v, `must be ${range.min}-${range.max}`);
    }
    return v;
  };
}

/** true or false. */
export const bool: Reader<boolean> = (v, path) => {
  if (typeof v === "boolean") return v;
  const quoted = v === "true" || v === "false" ? "; remove the quotes" : "";
  throw new Invalid(path, v, `expected true or false, got ${describe(v)}${quoted}`);
};

/** One of the strings of an enumeration (a const array from schema.ts). */
export function oneOf<T extends string>(allowed: readonly T[]): Reader<T> {
  return (v, path) => {
    if (typeof v !== "string") {
      throw new Invalid(path, v, `expected a string, got ${describe(v)}`);
    }
    if ((allowed as readonly string[]).includes(v)) return v as T;
    const near = closest(v, allowed);
    const list = allowed.map((a) => JSON.stringify(a)).join(", ");
    throw new Invalid(
      path,
      v,
      `must be one of ${list}${near ? `; did you mean "${near}"?` : ""}`,
    );
  };
}

/** A string of printable ASCII of at most `maxLength` bytes (e.g. a TXT character-string). */
export function printableString(maxLength: number): Reader<string> {
  return (v, path) => {
    if (typeof v !== "string") throw new Invalid(path, v, `expected a string, got ${describe(v)}`);
    if (!/^[\x20-\x7e]*$/.test(v)) {
      throw new Invalid(path, v, "must be printable ASCII (no control or non-ASCII characters)");
    }
    if (v.length > maxLength) {
      throw new Invalid(path, v, `must be at most ${maxLength} characters, got ${v.length}`);
    }
    return v;
  };
}

/** A non-empty string; `hint` (an example) is shown when it is empty. */
export function nonEmptyString(hint: string): Reader<string> {
  return (v, path) => {
    if (typeof v !== "string") throw new Invalid(path, v, `expected a string, got ${describe(v)}`);
    if (v === "") throw new Invalid(path, v, `must not be empty; ${hint}`);
    return v;
  };
}

/** `t[key]` read by `read`; a missing key is an error whose fix is `hint`. */
export function required<T>(t: Table, at: string, key: string, read: Reader<T>, hint: string): T {
  const path = keyPath(at, key);
  if (t[key] === undefined) throw new Invalid(path, undefined, `required; ${hint}`);
  return read(t[key], path, key);
}

/** A required non-empty string key. */
export function requiredString(t: Table, at: string, key: string, hint: string): string {
  return required(t, at, key, nonEmptyString(hint), hint);
}

/** Rejects `key` when it is set: it means nothing here (`why` says so and what to do). */
export function notAllowed(t: Table, at: string, key: string, why: string): void {
  if (t[key] !== undefined) throw new Invalid(keyPath(at, key), t[key], why);
}

/**
 * The array a list key must hold, with the errors every list key gives: a lone string (the usual
 * slip: `key = "x"` for `key = ["x"]`) and anything else that is not an array. `example`, when
 * given, shows the form in the second message.
 */
export function arrayOf(
  v: unknown,
  path: string,
  key: string,
  noun: string,
  example?: string,
): unknown[] {
  if (typeof v === "string") {
    throw new Invalid(path, v, `expected an array of ${noun}, e.g. ${key} = ["${v}"]`);
  }
  if (!Array.isArray(v)) {
    const such = example ? ` such as ${example}` : "";
    throw new Invalid(path, v, `expected an array of ${noun}${such}, got ${describe(v)}`);
  }
  return v;
}

/** One item of a list that must be a string: `noun` such as `example` otherwise. */
export function stringItem(item: unknown, at: string, noun: string, example: string): string {
  if (typeof item === "string") return item;
  throw new Invalid(at, item, `expected ${noun} such as "${example}", got ${describe(item)}`);
}

/** An array of address prefixes ("10.0.0.0/8", "::1"), parsed by lib/policy/acl.ts. */
export function cidrList(nonEmpty: boolean): Reader<Cidr[]> {
  return (v, path, key) => {
    const list = arrayOf(v, path, key, "address prefixes", '["10.0.0.0/8"]');
    if (nonEmpty && list.length === 0) {
      throw new Invalid(
        path,
        v,
        `must not be empty: an empty allow list refuses every client; list the networks to serve`,
      );
    }
    return list.map((entry, i) => {
      const itemPath = keyPath(path, i);
      const item = stringItem(entry, itemPath, "a prefix string", "10.0.0.0/8");
      const c = parseCidr(item);
      if (typeof c === "string") {
        const quoted = `${JSON.stringify(item)}: `;
        throw new Invalid(itemPath, item, c.startsWith(quoted) ? c.slice(quoted.length) : c);
      }
      return c;
    });
  };
}

/** A setting that must not exceed another: [table, key path of its section, key, value in ms]. */
export type Bound = [table: Table, section: string, key: string, ms: number];

/**
 * Requires low.ms <= high.ms. Blames the key the operator actually wrote: the lower one when it
 * is set, otherwise the upper one (which then undercuts the lower one's default). `why` explains
 * the upper setting, then the lower one.
 */
export function notAbove(low: Bound, high: Bound, why: [high: string, low: string]): void {
  const [lt, ls, lk, lms] = low;
  const [ht, hs, hk, hms] = high;
  if (lms <= hms) return;
  if (lt[lk] !== undefined || ht[hk] === undefined) {
    const was = ht[hk] === undefined ? ", the default" : "";
    throw new Invalid(
      keyPath(ls, lk),
      lt[lk] ?? formatDuration(lms),
      `must not exceed ${keyPath(hs, hk)} (${formatDuration(hms)}${was}), ${why[0]}`,
    );
  }
  throw new Invalid(
    keyPath(hs, hk),
    ht[hk],
    `must be at least ${keyPath(ls, lk)} (${formatDuration(lms)}, the default), ${why[1]}`,
  );
}

/** An array of non-empty strings; `example` (a TOML array) is shown in messages. */
export function stringList(example: string): Reader<string[]> {
  return (v, path, key) => {
    if (typeof v === "string") {
      throw new Invalid(path, v, `expected an array, e.g. ${key} = ${JSON.stringify([v])}`);
    }
    if (!Array.isArray(v)) {
      throw new Invalid(path, v, `expected an array such as ${example}, got ${describe(v)}`);
    }
    return v.map((item, i) => {
      if (typeof item !== "string" || item.trim() === "") {
        throw new Invalid(
          keyPath(path, i),
          item,
          `expected a non-empty string, got ${
            typeof item === "string" ? "an empty one" : describe(item)
          }`,
        );
      }
      return item;
    });
  };
}
