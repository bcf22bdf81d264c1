/**
 * Memory sizes are written with binary units ("512KiB", "256MiB", "2GiB") so that "256M" never
 * has to be guessed at (mega or mebi? bytes or bits?).
 */

const UNIT_BYTES: Record<string, number> = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

/** Bytes for a size string such as "256MiB" (a whole number, then KiB, MiB or GiB), else null. */
export function parseSize(text: string): number | null {
  const m = /^([0-9]+)(KiB|MiB|GiB)$/.exec(text.trim());
  return m ? Number(m[1]) * UNIT_BYTES[m[2]] : null;
}

/**
 * Why `text` is not a size, as a hint: a missing unit, a decimal unit ("MB"), a fraction. Called
 * only after parseSize returned null.
 */
export function sizeHint(text: string): string {
  const t = text.trim();
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$/.exec(t);
  const units = `KiB, MiB or GiB, e.g. "256MiB"`;
  if (!m) return `not a size; use a whole number with a unit ${units}`;
  const [, num, unit] = m;
  if (unit === "") return `missing unit; write "${num}MiB" or another unit KiB, MiB, GiB`;
  const binary = Object.keys(UNIT_BYTES).find((u) => u[0].toLowerCase() === unit[0].toLowerCase());
  if (num.includes(".")) {
    const scaled = Number(num) * 1024;
    if (binary && binary !== "KiB" && Number.isInteger(scaled)) {
      return `must be a whole number; write "${scaled}${smaller(binary)}"`;
    }
    return `must be a whole number of ${binary ?? "KiB, MiB or GiB"}`;
  }
  if (binary && unit !== binary) return `unknown unit "${unit}"; did you mean "${num}${binary}"?`;
  return `unknown unit "${unit}"; use ${units}`;
}

function smaller(unit: string): string {
  return unit === "GiB" ? "MiB" : "KiB";
}

/** Bytes written back the way an operator would ("256MiB", "1536KiB", "100B"). */
export function formatSize(bytes: number): string {
  for (const unit of ["GiB", "MiB", "KiB"]) {
    const n = UNIT_BYTES[unit];
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return `${bytes}B`;
}
