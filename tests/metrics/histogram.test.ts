import assert from "node:assert/strict";
import { Histogram, Registry } from "prom-client";
import {
  BucketCounts,
  checkHistogramFamily,
  type HistogramFamily,
  histogramText,
} from "../../lib/metrics/histogram.ts";
import { LATENCY_BUCKETS, Metrics } from "../../lib/metrics/metrics.ts";
import { type Family, parseExposition } from "../helpers/exposition.ts";
import { Rng } from "../helpers/rng.ts";

const FAMILY: HistogramFamily = {
  name: "test_duration_seconds",
  help: "A test histogram.",
  labelNames: ["where", "kind"],
  bounds: [0.01, 0.1, 1],
};

/** The samples of a family as `name{sorted labels}` → value, independent of label order. */
function samples(f: Family | undefined): Map<string, number> {
  assert.ok(f, "family missing");
  return new Map(f.samples.map((s) => [
    `${s.name}{${
      Object.entries(s.labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) =>
        `${k}=${JSON.stringify(v)}`
      ).join(",")
    }}`,
    s.value,
  ]));
}

Deno.test("a histogram written from bucket counts parses strictly, cumulative, with sum and count", () => {
  const counts = new BucketCounts(2, FAMILY.bounds);
  for (const v of [0.005, 0.01, 0.05, 0.5, 3]) counts.observe(0, v);
  counts.observe(1, 0.2);
  const text = histogramText(FAMILY, [
    { labels: ["a", "x"], counts: counts.row(0), sum: counts.sums[0] },
    { labels: ["b", "y"], counts: counts.row(1), sum: counts.sums[1] },
  ]) + "\n";
  const f = parseExposition(text).get(FAMILY.name);
  assert.equal(f?.type, "histogram");
  assert.equal(f?.help, "A test histogram.");
  const s = samples(f);
  const b = (where: string, kind: string, le: string) =>
    s.get(`test_duration_seconds_bucket{kind="${kind}",le="${le}",where="${where}"}`);
  // le is inclusive: 0.01 counts in the 0.01 bucket.
  assert.deepEqual(["0.01", "0.1", "1", "+Inf"].map((le) => b("a", "x", le)), [2, 3, 4, 5]);
  assert.deepEqual(["0.01", "0.1", "1", "+Inf"].map((le) => b("b", "y", le)), [0, 0, 1, 1]);
  assert.equal(s.get('test_duration_seconds_count{kind="x",where="a"}'), 5);
  assert.equal(s.get('test_duration_seconds_sum{kind="x",where="a"}'), 3.565);
  assert.equal(s.get('test_duration_seconds_sum{kind="y",where="b"}'), 0.2);
});

Deno.test("label values and help with quotes, backslashes and line feeds survive a strict parse", () => {
  const family = { ...FAMILY, help: 'line one\nback\\slash "quoted"' };
  const odd = 'a"b\\c\nd';
  const counts = new BucketCounts(1, family.bounds);
  counts.observe(0, 0.5);
  const text = histogramText(family, [{ labels: [odd, "k"], counts: counts.row(0), sum: 0.5 }]);
  const f = parseExposition(text + "\n").get(family.name);
  assert.equal(f?.help, family.help);
  assert.ok(f?.samples.every((x) => x.labels.where === odd));
  assert.equal(text.split("\n").length, 2 + 4 + 2, "no raw line feed inside a line");
});

Deno.test("a histogram without labels has bare _sum and _count and only le on buckets", () => {
  const family = { ...FAMILY, labelNames: [] };
  const counts = new BucketCounts(1, family.bounds);
  counts.observe(0, 2);
  const text = histogramText(family, [{ labels: [], counts: counts.row(0), sum: 2 }]) + "\n";
  assert.match(text, /^test_duration_seconds_bucket\{le="\+Inf"\} 1$/m);
  assert.match(text, /^test_duration_seconds_sum 2$/m);
  assert.match(text, /^test_duration_seconds_count 1$/m);
  parseExposition(text);
});

Deno.test("the written histogram has the samples prom-client's own Histogram has for the same values", async () => {
  const rng = new Rng(0x5eed);
  const values = Array.from({ length: 500 }, () => rng.int(2_000_000) / 1_000_000);
  const registry = new Registry();
  const reference = new Histogram({
    name: FAMILY.name,
    help: FAMILY.help,
    labelNames: [...FAMILY.labelNames],
    buckets: [...FAMILY.bounds],
    registers: [registry],
  });
  const counts = new BucketCounts(1, FAMILY.bounds);
  for (const v of values) {
    reference.observe({ where: "w", kind: "k" }, v);
    counts.observe(0, v);
  }
  const ours = histogramText(FAMILY, [{
    labels: ["w", "k"],
    counts: counts.row(0),
    sum: counts.sums[0],
  }]);
  const theirs = samples(parseExposition(await registry.metrics()).get(FAMILY.name));
  const mine = samples(parseExposition(ours + "\n").get(FAMILY.name));
  assert.deepEqual([...mine.keys()].sort(), [...theirs.keys()].sort());
  for (const [key, v] of theirs) assert.ok(Math.abs(mine.get(key)! - v) < 1e-9, key);
});

Deno.test("impossible values count as 0 and never poison the sum", () => {
  const counts = new BucketCounts(1, FAMILY.bounds);
  for (const v of [-1, NaN, Infinity, -Infinity]) counts.observe(0, v);
  assert.deepEqual([...counts.row(0)], [4, 0, 0, 0]);
  assert.equal(counts.sums[0], 0);
  assert.equal(counts.empty(0), false);
  assert.equal(new BucketCounts(1, FAMILY.bounds).empty(0), true);
});

Deno.test("a family that could not be exposed is refused when declared", () => {
  assert.throws(() => checkHistogramFamily({ ...FAMILY, name: "bad-name" }), /metric name/);
  assert.throws(() => checkHistogramFamily({ ...FAMILY, labelNames: ["le"] }), /label name/);
  assert.throws(() => checkHistogramFamily({ ...FAMILY, labelNames: ["__x"] }), /label name/);
  assert.throws(() => checkHistogramFamily({ ...FAMILY, bounds: [1, 1] }), /increase/);
  checkHistogramFamily(FAMILY);
});

Deno.test("a row that does not match its family is a programming error, not bad text", () => {
  const counts = new BucketCounts(1, FAMILY.bounds);
  assert.throws(() =>
    histogramText(FAMILY, [{ labels: ["only one"], counts: counts.row(0), sum: 0 }])
  );
  assert.throws(() => histogramText(FAMILY, [{ labels: ["a", "b"], counts: [1, 2], sum: 0 }]));
});

Deno.test("the whole /metrics exposition, every family in use, passes the strict parser", async () => {
  const m = new Metrics({ version: "1.0", upstreams: ["tls://192.0.2.1:853"] });
  const rng = new Rng(0xabc);
  for (let i = 0; i < 2000; i++) {
    m.recordQuery(
      rng.pick(["udp", "tcp", "tls", "https"] as const),
      rng.int(70000),
      rng.int(30),
      rng.int(10_000) / 1000,
      rng.chance(0.5),
    );
  }
  for (const reason of ["malformed", "response", "error_limit", "policy", "overload"] as const) {
    m.dropped("udp", reason);
  }
  m.aclRefused("tcp");
  m.rateLimited("tls");
  m.extendedError(18);
  m.routed("corp");
  m.rebindingFiltered("refuse");
  m.internalError("https");
  m.prefetched();
  m.upstream("tls://192.0.2.1:853").result(null, 0.02);
  m.upstream('odd"\\\nname').result("timeout", 1);
  m.setSources({
    inFlight: () => 1,
    shed: () => 2,
    queryLogDropped: () => 3,
    cache: () => ({ entries: 4, bytes: 5, hits: 6, misses: 7, staleHits: 8, evictions: 9 }),
    upstreams: () => [{ name: "tls://192.0.2.1:853", openConnections: 1, reconnects: 0, up: true }],
  });
  const families = parseExposition(await m.render());
  const histograms = [...families.values()].filter((f) => f.type === "histogram");
  assert.deepEqual(histograms.map((f) => f.name).sort(), [
    "dotproxy_query_duration_seconds",
    "dotproxy_upstream_duration_seconds",
  ]);
  const q = samples(families.get("dotproxy_query_duration_seconds"));
  let total = 0;
  for (const [key, v] of q) if (key.startsWith("dotproxy_query_duration_seconds_count")) total += v;
  assert.equal(total, 2000);
  assert.equal(
    families.get("dotproxy_query_duration_seconds")!.samples
      .filter((s) =>
        s.name.endsWith("_bucket") && s.labels.protocol === "udp" &&
        s.labels.cache === "miss"
      ).length,
    LATENCY_BUCKETS.length + 1,
  );
  for (const f of families.values()) assert.ok(f.help, `${f.name} has help`);
});

Deno.test("the strict parser itself rejects what Prometheus would reject", () => {
  const bad = [
    "x 1\n", // no TYPE
    '# TYPE x counter\nx{a="1"} 1\nx{a="1"} 2\n', // duplicate series
    '# TYPE x counter\nx{a="\\q"} 1\n', // invalid escape
    '# TYPE x counter\nx{1a="v"} 1\n', // invalid label name
    "# TYPE x counter\nx one\n", // invalid value
    "# TYPE x counter\nx 1\n# TYPE y gauge\ny 1\nx 2\n", // family split
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', // no +Inf
    '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n', // count != +Inf
    "# TYPE x counter\nx 1", // no final line feed
  ];
  for (const text of bad) assert.throws(() => parseExposition(text), Error, text);
  parseExposition('# HELP x a \\\\ b\n# TYPE x counter\nx{a="q\\""} 1\n');
});
