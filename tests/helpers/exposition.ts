/**
 * A strict, independent parser of the Prometheus text exposition format (0.0.4), written from the
 * format's specification and sharing no code with lib/metrics: it throws on anything a Prometheus
 * server would reject or misread (bad names, bad escapes, a sample before its family's TYPE, a
 * family split in two, a duplicate series) and checks each histogram the way PromQL relies on it
 * (increasing `le`, cumulative buckets, a `+Inf` bucket equal to `_count`, a `_sum`).
 */

/** One sample line, its labels unescaped. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One metric family: its HELP (unescaped), TYPE and samples in order. */
export interface Family {
  name: string;
  help: string | undefined;
  type: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const SUFFIXES: Record<string, readonly string[]> = {
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["_sum", "_count"],
};

/** Parses `text`, throwing an Error that names the line on the first violation. */
export function parseExposition(text: string): Map<string, Family> {
  if (text !== "" && !text.endsWith("\n")) throw new Error("the exposition must end with \\n");
  const families = new Map<string, Family>();
  const series = new Set<string>();
  const typed = new Set<string>();
  let current: Family | null = null;
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    const fail = (why: string): never => {
      throw new Error(`line ${n + 1}: ${why}: ${JSON.stringify(line)}`);
    };
    if (line === "") continue;
    if (line.startsWith("#")) {
      const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!meta) continue; // a plain comment
      const [, kind, name, rest = ""] = meta;
      if (!METRIC_NAME.test(name)) fail("invalid metric name");
      let family = families.get(name);
      if (family && family !== current) fail("the family was already closed");
      if (!family) {
        family = { name, help: undefined, type: "untyped", samples: [] };
        families.set(name, family);
        current = family;
      }
      if (family.samples.length > 0) fail(`${kind} after the family's samples`);
      if (kind === "HELP") {
        if (family.help !== undefined) fail("a second HELP");
        family.help = unescape(rest, false, fail);
      } else {
        if (!TYPES.has(rest)) fail("unknown TYPE");
        if (typed.has(name)) fail("a second TYPE");
        typed.add(name);
        family.type = rest;
      }
      continue;
    }
    const sample = parseSample(line, fail);
    const family = current && belongsTo(sample.name, current) ? current : null;
    if (!family) {
      fail(
        families.has(sample.name) ? "the family was already closed" : "a sample before its TYPE",
      );
    }
    const key = `${sample.name}{${
      Object.entries(sample.labels).sort().map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    }}`;
    if (series.has(key)) fail("a duplicate series");
    series.add(key);
    family!.samples.push(sample);
  }
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

function belongsTo(name: string, f: Family): boolean {
  if (name === f.name && f.type !== "histogram") return true;
  return (SUFFIXES[f.type] ?? []).some((s) => name === f.name + s);
}

function parseSample(line: string, fail: (why: string) => never): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? ([^ ]+)(?: (-?[0-9]+))?$/.exec(line);
  if (!m) fail("not a sample line");
  const [, name, braced, valueText] = m!;
  const labels: Record<string, string> = {};
  if (braced) {
    let rest = braced.slice(1, -1);
    while (rest !== "") {
      const pair = /^([^=]*)="((?:[^"\\]|\\.)*)"(,?)/.exec(rest);
      if (!pair) fail("malformed labels");
      const [whole, label, raw, comma] = pair!;
      if (!LABEL_NAME.test(label)) fail(`invalid label name ${JSON.stringify(label)}`);
      if (label in labels) fail(`label ${label} twice`);
      labels[label] = unescape(raw, true, fail);
      rest = rest.slice(whole.length);
      if (comma === "" && rest !== "") fail("labels not separated by commas");
    }
  }
  return { name, labels, value: parseValue(valueText, fail) };
}

/** Go's ParseFloat as Prometheus applies it: decimal or exponent forms, ±Inf, NaN. */
function parseValue(text: string, fail: (why: string) => never): number {
  if (/^[+-]?Inf$/i.test(text)) return text.startsWith("-") ? -Infinity : Infinity;
  if (/^NaN$/i.test(text)) return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) fail(`invalid value ${text}`);
  return Number(text);
}

/** Undoes \\, \n and (in label values) \" escapes; any other backslash is an error. */
function unescape(text: string, quoted: boolean, fail: (why: string) => never): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\n") fail("a raw line feed");
    if (quoted && c === '"') fail("an unescaped quote");
    if (c !== "\\") {
      out += c;
      continue;
    }
    const next = text[++i];
    if (next === "\\") out += "\\";
    else if (next === "n") out += "\n";
    else if (next === '"' && quoted) out += '"';
    else fail(`an invalid escape \\${next ?? ""}`);
  }
  return out;
}

/** Checks every series of a histogram family as PromQL's histogram_quantile relies on it. */
function checkHistogram(f: Family): void {
  const bySeries = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let entry = bySeries.get(key);
    if (!entry) bySeries.set(key, entry = { buckets: [] });
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
      entry.buckets.push([
        parseValue(le, (why) => {
          throw new Error(`${f.name}: le ${why}`);
        }),
        s.value,
      ]);
    } else if (le !== undefined) {
      throw new Error(`${s.name}: le on a sample other than a bucket`);
    } else if (s.name === `${f.name}_sum`) entry.sum = s.value;
    else entry.count = s.value;
  }
  for (const [key, e] of bySeries) {
    const where = `${f.name}${key}`;
    if (e.buckets.length === 0) throw new Error(`${where}: no buckets`);
    for (let i = 1; i < e.buckets.length; i++) {
      if (!(e.buckets[i][0] > e.buckets[i - 1][0])) throw new Error(`${where}: le not increasing`);
      if (e.buckets[i][1] < e.buckets[i - 1][1]) {
        throw new Error(`${where}: buckets not cumulative`);
      }
    }
    const [topLe, topCount] = e.buckets[e.buckets.length - 1];
    if (topLe !== Infinity) throw new Error(`${where}: no +Inf bucket`);
    if (e.count !== topCount) throw new Error(`${where}: _count is not the +Inf bucket`);
    if (e.sum === undefined) throw new Error(`${where}: no _sum`);
  }
}
