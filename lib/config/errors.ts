/**
 * Turning ConfigErrors into the one line an operator reads, plus the "did you mean" helper used
 * for unknown keys and enum values.
 */

import type { ConfigError } from "./schema.ts";

const MAX_VALUE_CHARS = 80;

/**
 * One line: `<path>: <key> = <value>: <message>`, the value written as a TOML-ish literal. When
 * the value is missing (undefined) the ` = <value>` part is left out.
 */
export function formatConfigError(e: ConfigError): string {
  const message = e.message.replace(/\s*[\r\n]+\s*/g, " ");
  const value = e.value === undefined ? "" : ` = ${formatValue(e.value)}`;
  return `${e.path}: ${e.key}${value}: ${message}`;
}

/** A value as it would be written in TOML, shortened to keep messages on one line. */
export function formatValue(value: unknown): string {
  const text = literal(value);
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 1)}…` : text;
}

function literal(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "nan";
    if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
    return String(v);
  }
  if (typeof v === "bigint" || typeof v === "boolean") return String(v);
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return `[${v.map(literal).join(", ")}]`;
  if (typeof v === "object" && v !== null) {
    const entries = Object.entries(v).map(([k, x]) => `${keyName(k)} = ${literal(x)}`);
    return entries.length === 0 ? "{}" : `{ ${entries.join(", ")} }`;
  }
  return String(v);
}

/** A TOML key as it must be written: bare when possible, quoted otherwise. */
export function keyName(key: string): string {
  return /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
}

/** Joins a key path the way TOML users read it: `server.foo`, `listeners[0].url`. */
export function keyPath(parent: string, key: string | number): string {
  if (typeof key === "number") return `${parent}[${key}]`;
  return parent === "" ? keyName(key) : `${parent}.${keyName(key)}`;
}

/**
 * The candidate `name` was most likely meant to be, if it is a near miss: same letters ignoring
 * case, `_`, `-` and a plural ending (tlsName, tls-name, trusted_proxy), a prefix either way
 * (warn, upstream), or one edit (two for words of six letters or more).
 */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  // Case, "_" and "-" do not count, nor a plural ending (trusted_proxy, trusted_proxies).
  const norm = (s: string) => s.toLowerCase().replace(/[_-]/g, "").replace(/(ies|s)$/, "");
  const n = norm(name);
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const m = norm(c);
    const short = Math.min(n.length, m.length);
    const prefix = short >= 3 && (m.startsWith(n) || n.startsWith(m));
    const d = n === m ? 0 : prefix ? 1 : editDistance(n, m);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  const allowed = Math.max(1, Math.min(2, Math.floor(n.length / 3)));
  return bestDistance <= allowed ? best : undefined;
}

/** Levenshtein distance with adjacent transpositions counted as one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d.push([i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}
