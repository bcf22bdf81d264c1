/**
 * Formatting shared by the bench scripts' reports: numbers, percentages, quantiles, the Markdown
 * table of a {@link Tally}, and a process's log folded into its distinct lines.
 */
import type { Tally } from "./load.ts";

/** The p-quantile (0-1) of ascending `sorted`, nearest rank; NaN when empty. */
export function quantile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** Formats milliseconds with 2 decimals ("-" for NaN). */
export const ms = (v: number) => Number.isNaN(v) ? "-" : v.toFixed(2);
/** Formats a count with thousands separators. */
export const n = (v: number) => Math.round(v).toLocaleString("en-US");
/** Formats a ratio as a percentage. */
export const pct = (part: number, whole: number) =>
  whole === 0 ? "-" : `${(100 * part / whole).toFixed(part === whole ? 0 : 2)}%`;

/** A Markdown table row for a tally. */
export function tallyRow(label: string, t: Tally): string {
  return `| ${label} | ${n(t.sent)} | ${n(t.noerror)} | ${n(t.servfail)} | ${n(t.other)} | ` +
    `${n(t.lost)} | ${n(t.late)} | ${ms(quantile(t.lat, 0.5))} | ${ms(quantile(t.lat, 0.99))} |`;
}

/** The header of tallyRow's table. */
export const TALLY_HEADER = [
  "| queries | sent | NOERROR | SERVFAIL | other rcode | lost (>5 s) | of which late | p50 ms | p99 ms |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
];

/** Log lines grouped by their text with numbers, times and addresses masked: "N× line". */
export function summarizeLog(lines: string[]): string[] {
  const counts = new Map<string, { n: number; example: string }>();
  for (const l of lines) {
    const key = l.replace(/\d+/g, "#");
    const c = counts.get(key);
    if (c) c.n++;
    else counts.set(key, { n: 1, example: l });
  }
  return [...counts.values()].sort((a, b) => b.n - a.n).slice(0, 15)
    .map((c) => `${c.n}× ${c.example.slice(0, 300)}`);
}
