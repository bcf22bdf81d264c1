/** dotproxy's `/metrics` as the bench scripts read it: scraped, parsed, summed and printed. */

/** One Prometheus sample: name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Scrapes `/metrics` of the admin listener and parses the text format (no HELP/TYPE). */
export async function scrape(adminPort: number): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  const text = await res.text();
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples named `name` whose labels include `match`. */
export function total(
  samples: Sample[],
  name: string,
  match: Record<string, string> = {},
): number {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

/** `name{labels} value` lines for the samples named `name` (non-zero ones unless `all`). */
export function lines(samples: Sample[], name: string, all = false): string[] {
  return samples
    .filter((s) => s.name === name && (all || s.value !== 0))
    .map((s) => {
      const l = Object.entries(s.labels).map(([k, v]) => `${k}="${v}"`).join(",");
      return `  ${name}${l ? `{${l}}` : ""} ${s.value}`;
    });
}
