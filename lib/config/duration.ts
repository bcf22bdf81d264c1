/**
 * Durations are written with units ("250ms", "5s", "1.5s", "2m", "1m30s", "1d") so a reader never
 * has to guess whether `5` means seconds or milliseconds.
 */

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
const TERM = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)/y;

/**
 * Milliseconds for a duration string, or null when it is not one; bare numbers ("5") are null
 * because their unit is ambiguous. A leading "-" is kept so callers can say "must be positive"
 * rather than "unparsable". Sub-millisecond results are returned as fractions.
 */
export function parseDuration(text: string): number | null {
  let s = text.trim();
  let sign = 1;
  if (s.startsWith("-")) [sign, s] = [-1, s.slice(1)];
  if (s === "") return null;
  let total = 0;
  TERM.lastIndex = 0;
  while (TERM.lastIndex < s.length) {
    const m = TERM.exec(s);
    if (!m) return null;
    total += Number(m[1]) * UNIT_MS[m[2]];
  }
  // 1.1 * 1000 is 1100.0000000000002 in floating point; settle at nanosecond precision.
  return sign * (Math.round(total * 1e6) / 1e6);
}

/** True when `text` is a plain number, i.e. a duration that only lacks its unit. */
export function isBareNumber(text: string): boolean {
  return /^[+-]?[0-9]+(\.[0-9]+)?$/.test(text.trim());
}

/** A millisecond count written back the way an operator would ("5s", "250ms", "1.5s", "1d"). */
export function formatDuration(ms: number): string {
  if (ms >= 86_400_000 && ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1_000) return `${ms / 1_000}s`;
  return `${ms}ms`;
}
