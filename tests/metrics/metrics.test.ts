import assert from "node:assert/strict";
import { register as globalRegistry } from "prom-client";
import { LATENCY_BUCKETS, Metrics } from "../../lib/metrics/metrics.ts";
import type { UpstreamErrorKind } from "../../lib/upstream/upstream.ts";

/** Samples of a Prometheus text exposition, keyed `name{a="x",b="y"}` exactly as printed. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") typed.add(meta[2]);
      continue;
    }
    const m =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$/
        .exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    const family = m[1].replace(/_(bucket|sum|count)$/, "");
    assert.ok(typed.has(m[1]) || typed.has(family), `sample before its TYPE: ${line}`);
    samples.set(m[1] + (m[2] ?? ""), Number(m[3]));
  }
  return samples;
}

async function scrape(m: Metrics): Promise<Map<string, number>> {
  return parse(await m.render());
}

Deno.test("queries are counted by protocol, type name and rcode name", async () => {
  const m = new Metrics();
  m.recordQuery("udp", 1, 0, 0.01, false);
  m.recordQuery("udp", 1, 0, 0.01, false);
  m.recordQuery("tcp", 28, 3, 0.01, false);
  m.recordQuery("tls", 65, 2, 0.01, false);
  m.recordQuery("https", 257, 5, 0.01, true);
  const s = await scrape(m);
  assert.equal(s.get('dotproxy_queries_total{protocol="udp",qtype="A",rcode="NOERROR"}'), 2);
  assert.equal(s.get('dotproxy_queries_total{protocol="tcp",qtype="AAAA",rcode="NXDOMAIN"}'), 1);
  assert.equal(s.get('dotproxy_queries_total{protocol="tls",qtype="HTTPS",rcode="SERVFAIL"}'), 1);
  assert.equal(s.get('dotproxy_queries_total{protocol="https",qtype="CAA",rcode="REFUSED"}'), 1);
});

Deno.test("uncommon qtypes and rcodes share an 'other' label so series stay bounded", async () => {
  const m = new Metrics();
  for (const qtype of [0, 99, 1000, 65535]) m.recordQuery("udp", qtype, 0, 0.001, false);
  m.recordQuery("udp", 1, 16, 0.001, false);
  m.recordQuery("udp", 1, 23, 0.001, false);
  m.recordQuery("udp", 1, 11, 0.001, false);
  const s = await scrape(m);
  assert.equal(s.get('dotproxy_queries_total{protocol="udp",qtype="other",rcode="NOERROR"}'), 4);
  assert.equal(s.get('dotproxy_queries_total{protocol="udp",qtype="A",rcode="BADVERS"}'), 1);
  assert.equal(s.get('dotproxy_queries_total{protocol="udp",qtype="A",rcode="other"}'), 2);
  const series = [...s.keys()].filter((k) => k.startsWith("dotproxy_queries_total{"));
  assert.equal(series.length, 3);
});

Deno.test("the latency histogram has cumulative buckets from 0.1 ms to 5 s, +Inf, sum and count", async () => {
  const m = new Metrics({ protocols: ["udp"] });
  m.recordQuery("udp", 1, 0, 0.00005, true); // <= 0.1 ms
  m.recordQuery("udp", 1, 0, 0.003, false); // <= 5 ms
  m.recordQuery("udp", 1, 0, 0.003, false);
  m.recordQuery("udp", 1, 0, 9, false); // above 5 s
  const s = await scrape(m);
  const b = (cache: string, le: string) =>
    s.get(`dotproxy_query_duration_seconds_bucket{protocol="udp",cache="${cache}",le="${le}"}`);
  assert.equal(LATENCY_BUCKETS[0], 0.0001);
  assert.equal(LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1], 5);
  for (const le of LATENCY_BUCKETS) assert.notEqual(b("miss", String(le)), undefined);
  assert.equal(b("miss", "0.0025"), 0);
  assert.equal(b("miss", "0.005"), 2);
  assert.equal(b("miss", "5"), 2);
  assert.equal(b("miss", "+Inf"), 3);
  assert.equal(b("hit", "0.0001"), 1);
  assert.equal(
    s.get('dotproxy_query_duration_seconds_count{protocol="udp",cache="miss"}'),
    3,
  );
  assert.equal(
    s.get('dotproxy_query_duration_seconds_sum{protocol="udp",cache="miss"}'),
    9.006,
  );
});

Deno.test("impossible latencies (negative, NaN, infinite) count in the lowest bucket as 0", async () => {
  const m = new Metrics({ protocols: ["tcp"] });
  for (const v of [-1, NaN, Infinity]) m.recordQuery("tcp", 1, 0, v, false);
  const s = await scrape(m);
  assert.equal(
    s.get('dotproxy_query_duration_seconds_bucket{protocol="tcp",cache="miss",le="0.0001"}'),
    3,
  );
  assert.equal(s.get('dotproxy_query_duration_seconds_sum{protocol="tcp",cache="miss"}'), 0);
});

Deno.test("protocols listened on show zero series; others appear once used", async () => {
  const m = new Metrics({ protocols: ["udp", "tcp"] });
  let s = await scrape(m);
  assert.equal(s.get('dotproxy_acl_refused_total{protocol="udp"}'), 0);
  assert.equal(s.get('dotproxy_dropped_queries_total{protocol="tcp",reason="response"}'), 0);
  assert.equal(s.has('dotproxy_acl_refused_total{protocol="tls"}'), false);
  assert.equal(
    s.get('dotproxy_query_duration_seconds_count{protocol="tcp",cache="hit"}'),
    0,
  );
  assert.equal(s.has('dotproxy_query_duration_seconds_count{protocol="tls",cache="hit"}'), false);
  m.aclRefused("tls");
  s = await scrape(m);
  assert.equal(s.get('dotproxy_acl_refused_total{protocol="tls"}'), 1);
});

Deno.test("refused, rate-limited, dropped and prefetch counters move independently", async () => {
  const m = new Metrics();
  m.aclRefused("udp");
  m.rateLimited("udp");
  m.rateLimited("udp");
  m.dropped("udp", "malformed");
  m.dropped("tcp", "response");
  m.dropped("tcp", "response");
  m.prefetched();
  const s = await scrape(m);
  assert.equal(s.get('dotproxy_acl_refused_total{protocol="udp"}'), 1);
  assert.equal(s.get('dotproxy_rate_limited_total{protocol="udp"}'), 2);
  assert.equal(s.get('dotproxy_dropped_queries_total{protocol="udp",reason="malformed"}'), 1);
  assert.equal(s.get('dotproxy_dropped_queries_total{protocol="udp",reason="response"}'), 0);
  assert.equal(s.get('dotproxy_dropped_queries_total{protocol="tcp",reason="response"}'), 2);
  assert.equal(s.get("dotproxy_cache_prefetches_total"), 1);
});

Deno.test("upstream results count queries, errors by kind, and latency of answers only", async () => {
  const m = new Metrics({ upstreams: ["tls://192.0.2.1:853", "tls://192.0.2.2:853"] });
  const a = m.upstream("tls://192.0.2.1:853");
  assert.equal(m.upstream("tls://192.0.2.1:853"), a, "the recorder is resolved once and kept");
  a.result(null, 0.02);
  a.result("timeout", 2);
  m.upstreamResult("tls://192.0.2.1:853", "timeout", 2);
  m.upstreamResult("tls://192.0.2.1:853", "tls", 0.1);
  const s = await scrape(m);
  const up = 'upstream="tls://192.0.2.1:853"';
  assert.equal(s.get(`dotproxy_upstream_queries_total{${up}}`), 4);
  assert.equal(s.get(`dotproxy_upstream_errors_total{${up},kind="timeout"}`), 2);
  assert.equal(s.get(`dotproxy_upstream_errors_total{${up},kind="tls"}`), 1);
  assert.equal(s.get(`dotproxy_upstream_errors_total{${up},kind="overloaded"}`), 0);
  assert.equal(s.get(`dotproxy_upstream_errors_total{${up},kind="protocol"}`), 0);
  assert.equal(s.get(`dotproxy_upstream_duration_seconds_count{${up}}`), 1);
  assert.equal(s.get(`dotproxy_upstream_duration_seconds_bucket{${up},le="0.025"}`), 1);
  // Pre-registered upstreams have zero series before their first query.
  const other = 'upstream="tls://192.0.2.2:853"';
  assert.equal(s.get(`dotproxy_upstream_queries_total{${other}}`), 0);
  assert.equal(s.get(`dotproxy_upstream_errors_total{${other},kind="connect"}`), 0);
  assert.equal(s.get(`dotproxy_upstream_duration_seconds_bucket{${other},le="+Inf"}`), 0);
});

Deno.test("an error kind newer than the metrics module is still counted under its own name", async () => {
  const m = new Metrics();
  m.upstreamResult("tls://192.0.2.1:853", "brand-new" as UpstreamErrorKind, 1);
  const s = await scrape(m);
  assert.equal(
    s.get('dotproxy_upstream_errors_total{upstream="tls://192.0.2.1:853",kind="brand-new"}'),
    1,
  );
});

Deno.test("gauges and totals other parts keep are read from sources at scrape time", async () => {
  const m = new Metrics();
  let inFlight = 3;
  let reconnects = 1;
  m.setSources({
    inFlight: () => inFlight,
    cache: () => ({ entries: 10, bytes: 4096, hits: 7, misses: 2, staleHits: 1, evictions: 4 }),
    shed: () => 5,
    queryLogDropped: () => 6,
    upstreams: () => [
      { name: "tls://192.0.2.1:853", openConnections: 2, reconnects, inFlight: 1, up: true },
      { name: "tls://192.0.2.2:853", openConnections: 0, reconnects: 0, up: false },
    ],
  });
  let s = await scrape(m);
  assert.equal(s.get("dotproxy_in_flight_queries"), 3);
  assert.equal(s.get("dotproxy_cache_entries"), 10);
  assert.equal(s.get("dotproxy_cache_bytes"), 4096);
  assert.equal(s.get("dotproxy_cache_hits_total"), 7);
  assert.equal(s.get("dotproxy_cache_misses_total"), 2);
  assert.equal(s.get("dotproxy_cache_stale_answers_total"), 1);
  assert.equal(s.get("dotproxy_cache_evictions_total"), 4);
  assert.equal(s.get("dotproxy_queries_shed_total"), 5);
  assert.equal(s.get("dotproxy_query_log_dropped_total"), 6);
  assert.equal(s.get('dotproxy_upstream_open_connections{upstream="tls://192.0.2.1:853"}'), 2);
  assert.equal(s.get('dotproxy_upstream_in_flight_queries{upstream="tls://192.0.2.1:853"}'), 1);
  assert.equal(s.has('dotproxy_upstream_in_flight_queries{upstream="tls://192.0.2.2:853"}'), false);
  assert.equal(s.get('dotproxy_upstream_up{upstream="tls://192.0.2.1:853"}'), 1);
  assert.equal(s.get('dotproxy_upstream_up{upstream="tls://192.0.2.2:853"}'), 0);
  assert.equal(s.get('dotproxy_upstream_reconnects_total{upstream="tls://192.0.2.1:853"}'), 1);

  inFlight = 0;
  reconnects = 4;
  s = await scrape(m);
  assert.equal(s.get("dotproxy_in_flight_queries"), 0);
  assert.equal(s.get('dotproxy_upstream_reconnects_total{upstream="tls://192.0.2.1:853"}'), 4);
});

Deno.test("without sources the sourced metrics read zero", async () => {
  const s = await scrape(new Metrics());
  assert.equal(s.get("dotproxy_in_flight_queries"), 0);
  assert.equal(s.get("dotproxy_cache_entries"), 0);
  assert.equal(s.get("dotproxy_cache_hits_total"), 0);
  assert.equal([...s.keys()].some((k) => k.startsWith("dotproxy_upstream_up")), false);
});

Deno.test("registered collectors run before every render", async () => {
  const m = new Metrics();
  let entries = 0;
  m.setSources({
    cache: () => ({ entries, hits: 0, misses: 0, staleHits: 0, evictions: 0 }),
  });
  m.registerCollector(() => {
    entries++;
  });
  assert.equal((await scrape(m)).get("dotproxy_cache_entries"), 1);
  assert.equal((await scrape(m)).get("dotproxy_cache_entries"), 2);
});

Deno.test("build info carries the version", async () => {
  const s = await scrape(new Metrics({ version: "1.2.3" }));
  assert.equal(s.get('dotproxy_build_info{version="1.2.3"}'), 1);
});

Deno.test("each Metrics has its own registry and leaves prom-client's global one alone", async () => {
  const before = (await globalRegistry.metrics()).length;
  const a = new Metrics();
  const b = new Metrics();
  a.recordQuery("udp", 1, 0, 0.001, false);
  assert.equal(
    (await scrape(a)).get('dotproxy_queries_total{protocol="udp",qtype="A",rcode="NOERROR"}'),
    1,
  );
  assert.equal(
    (await scrape(b)).has('dotproxy_queries_total{protocol="udp",qtype="A",rcode="NOERROR"}'),
    false,
  );
  assert.equal((await globalRegistry.metrics()).length, before);
});

Deno.test("the content type is the Prometheus text format 0.0.4", () => {
  assert.equal(new Metrics().contentType, "text/plain; version=0.0.4; charset=utf-8");
});

Deno.test("label values with quotes and backslashes are escaped in the exposition", async () => {
  const m = new Metrics();
  m.upstream('odd"name\\x').result(null, 0.001);
  const text = await m.render();
  assert.match(text, /dotproxy_upstream_queries_total\{upstream="odd\\"name\\\\x"\} 1/);
  parse(text);
});

Deno.test("client connections: open, queued output and drops by bound, per listener", async () => {
  const m = new Metrics();
  const drops = {
    rejected: 1,
    evicted_idle: 2,
    evicted_stuck: 3,
    read_timeout: 4,
    output_full: 5,
    write_timeout: 6,
  };
  m.setSources({
    connections: () => [
      { listener: "tcp://127.0.0.1:53", state: { open: 7, drops, queuedOutputBytes: 1024 } },
    ],
  });
  const s = await scrape(m);
  assert.equal(s.get('dotproxy_client_connections{listener="tcp://127.0.0.1:53"}'), 7);
  assert.equal(s.get('dotproxy_client_output_queued_bytes{listener="tcp://127.0.0.1:53"}'), 1024);
  for (const [reason, n] of Object.entries(drops)) {
    const key = `dotproxy_client_connections_dropped_total{listener="tcp://127.0.0.1:53",` +
      `reason="${reason}"}`;
    assert.equal(s.get(key), n);
  }
});
