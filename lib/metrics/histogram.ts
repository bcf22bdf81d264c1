/**
 * Histograms kept in typed arrays, and their Prometheus text exposition (format 0.0.4).
 *
 * Recording is one bucket search and two array increments (BucketCounts). prom-client's own
 * Histogram can only be fed one `observe` at a time (hashing its labels on every call), and its
 * public API has no way to hand it counts kept elsewhere, so these families are written here, in
 * the form prom-client writes its own: `# HELP`, `# TYPE`, then per series the cumulative
 * `_bucket` lines (series labels first, then `le`), `_sum` and `_count`. Counters and gauges stay
 * with prom-client (lib/metrics/metrics.ts). tests/metrics/histogram.test.ts checks this text
 * with an independent parser.
 */

/** Valid metric family names (Prometheus data model). */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
/** Valid label names; `__` is reserved, and `le` is the histogram's own. */
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Histogram rows in flat arrays: per series, one count per bucket plus one above the top. */
export class BucketCounts {
  readonly counts: Float64Array;
  readonly sums: Float64Array;
  /** A typed copy: indexing a frozen JS array here costs 4x as much (measured). */
  readonly #bounds: Float64Array;
  readonly #width: number;

  constructor(series: number, bounds: readonly number[]) {
    this.#bounds = new Float64Array(bounds);
    this.#width = bounds.length + 1;
    this.counts = new Float64Array(series * this.#width);
    this.sums = new Float64Array(series);
  }

  /** Counts `value` in `series`; NaN, negative and infinite values count as 0. */
  observe(series: number, value: number): void {
    // Such values would poison the sum forever.
    const v = value >= 0 && value < Infinity ? value : 0;
    const b = this.#bounds;
    const n = b.length;
    let i = 0;
    while (i < n && v > b[i]) i++;
    this.counts[series * this.#width + i]++;
    this.sums[series] += v;
  }

  /** The non-cumulative bucket counts of one series, the last one above the top bound. */
  row(series: number): Float64Array {
    return this.counts.subarray(series * this.#width, (series + 1) * this.#width);
  }

  /** True when nothing was observed in `series`. */
  empty(series: number): boolean {
    return this.row(series).every((c) => c === 0);
  }
}

/** One labelled series at scrape time. */
export interface HistogramRow {
  /** Label values, in the order of the family's `labelNames`. */
  labels: readonly string[];
  /** Non-cumulative bucket counts, one per bound plus one above the top (BucketCounts.row). */
  counts: ArrayLike<number>;
  sum: number;
}

/** What names a histogram family; the rows are read at scrape time. */
export interface HistogramFamily {
  name: string;
  help: string;
  labelNames: readonly string[];
  /** Bucket upper bounds, increasing. */
  bounds: readonly number[];
}

/** Throws (a programming error, at start-up) when the family could not be exposed as declared. */
export function checkHistogramFamily(f: HistogramFamily): void {
  if (!METRIC_NAME.test(f.name)) throw new Error(`invalid metric name ${JSON.stringify(f.name)}`);
  for (const l of f.labelNames) {
    if (!LABEL_NAME.test(l) || l.startsWith("__") || l === "le") {
      throw new Error(`invalid label name ${JSON.stringify(l)} in ${f.name}`);
    }
  }
  for (let i = 1; i < f.bounds.length; i++) {
    if (!(f.bounds[i] > f.bounds[i - 1])) throw new Error(`${f.name}: bounds must increase`);
  }
}

/** The text exposition of one histogram family: HELP, TYPE and every row's samples. */
export function histogramText(f: HistogramFamily, rows: Iterable<HistogramRow>): string {
  const lines = [`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} histogram`];
  const les = f.bounds.map((b) => `le="${formatValue(b)}"`);
  les.push('le="+Inf"');
  for (const { labels, counts, sum } of rows) {
    if (labels.length !== f.labelNames.length || counts.length !== les.length) {
      throw new Error(`${f.name}: a row does not match the family`);
    }
    const pairs = f.labelNames.map((l, i) => `${l}="${escapeLabelValue(labels[i])}"`);
    const head = pairs.join(",");
    const inner = head === "" ? "" : `${head},`;
    const braced = head === "" ? "" : `{${head}}`;
    let acc = 0;
    for (let i = 0; i < les.length; i++) {
      acc += counts[i];
      lines.push(`${f.name}_bucket{${inner}${les[i]}} ${formatValue(acc)}`);
    }
    lines.push(`${f.name}_sum${braced} ${formatValue(sum)}`);
    lines.push(`${f.name}_count${braced} ${formatValue(acc)}`);
  }
  return lines.join("\n");
}

/** HELP text escaping: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Label value escaping: backslash, double quote and line feed. */
function escapeLabelValue(text: string): string {
  return escapeHelp(text).replace(/"/g, '\\"');
}

/** A sample value as the text format writes it (Go's ParseFloat reads all of these). */
function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
