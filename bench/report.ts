/**
 * Turns a bench/run.sh results directory (results.tsv + meta.txt) into tables: throughput per
 * workload and server with the dotproxy/peer ratios, latency percentiles at fixed rates, CPU per
 * process with what limited each run, and the targets. Prints them and writes summary.md.
 *
 *   deno run --allow-read=DIR --allow-write=DIR bench/report.ts DIR
 */

interface Row {
  server: string;
  workload: string;
  target: string;
  qps: number;
  lostPct: number;
  rcodes: string;
  avgMs: number;
  p50: string;
  p90: string;
  p99: string;
  p999: string;
  max: string;
  srvCpu: number;
  upCpu: number;
  perfCpu: number;
  otherCpu: number;
  upConns: number;
}

const dir = Deno.args[0];
if (!dir) {
  console.error("usage: report.ts RESULTS_DIR");
  Deno.exit(2);
}

const meta = new Map<string, string>();
for (const line of (await Deno.readTextFile(`${dir}/meta.txt`)).split("\n")) {
  const i = line.indexOf(": ");
  if (i > 0) meta.set(line.slice(0, i), line.slice(i + 2));
}

const [header, ...lines] = (await Deno.readTextFile(`${dir}/results.tsv`)).trim().split("\n");
const cols = header.split("\t");
const rows: Row[] = lines.filter((l) => l.trim()).map((line) => {
  const f = Object.fromEntries(line.split("\t").map((v, i) => [cols[i], v]));
  return {
    server: f.server,
    workload: f.workload,
    target: f.target_qps,
    qps: Number(f.qps),
    lostPct: Number(f.lost_pct),
    rcodes: f.rcodes.replaceAll("_", " "),
    avgMs: Number(f.avg_ms),
    p50: f.p50_ms,
    p90: f.p90_ms,
    p99: f.p99_ms,
    p999: f.p999_ms,
    max: f.max_ms,
    srvCpu: Number(f.srv_cpu),
    upCpu: Number(f.up_cpu),
    perfCpu: Number(f.perf_cpu),
    otherCpu: Number(f.other_cpu),
    upConns: Number(f.up_conns),
  };
});

const find = (server: string, workload: string) =>
  rows.find((r) => r.server === server && r.workload === workload);
const SERVER_ORDER = [
  "dotproxy",
  "dnsdist",
  "unbound",
  "echo",
  "echo-reuse",
  "workers1",
  "workers2",
];
const servers = [...new Set(rows.map((r) => r.server))]
  .filter((s) => !s.endsWith("-profiled"))
  .sort((a, b) => rank(a) - rank(b));
function rank(s: string): number {
  const i = SERVER_ORDER.indexOf(s);
  return i < 0 ? SERVER_ORDER.length : i;
}
const LABEL: Record<string, string> = {
  dotproxy: "dotproxy",
  dnsdist: "dnsdist",
  unbound: "unbound fwd",
  echo: "Deno echo",
  "echo-reuse": "Deno echo, reused buffer",
  workers1: "prototype, 1 Worker",
  workers2: "prototype, 2 Workers",
};
const label = (s: string) => LABEL[s] ?? s;

const fmtQps = (n: number) => Math.round(n).toLocaleString("en-US");
const ratio = (a?: Row, b?: Row) => (a && b && b.qps > 0 ? (a.qps / b.qps).toFixed(2) : "–");
/** A markdown table; the columns in `left` are text (left-aligned), the others numbers. */
function table(head: string[], body: string[][], left: number[] = [0]): string {
  return [
    `| ${head.join(" | ")} |`,
    `| ${head.map((_, i) => (left.includes(i) ? "---" : "---:")).join(" | ")} |`,
    ...body.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** What held a run back, from the CPU samples (percent of one core). */
function limit(r: Row): string {
  const notes: string[] = [];
  if (r.otherCpu >= 15) notes.push(`**contended: other processes ${r.otherCpu}%**`);
  if (r.target !== "-") return [...notes, "fixed rate"].join("; ");
  const saturated: string[] = [];
  if (r.srvCpu >= 90) saturated.push("server CPU (core 0)");
  if (r.upCpu >= 90) saturated.push("upstream unbound (core 1)");
  else if (r.perfCpu >= 90) saturated.push("dnsperf (core 1)");
  else if (r.upCpu + r.perfCpu >= 90) saturated.push("core 1 (dnsperf + upstream)");
  if (!saturated.length) saturated.push("no CPU saturated: latency-bound");
  return [...notes, saturated.join(" and ")].join("; ");
}

/** A number, or a dash when the run did not measure it (h2load runs: no dnsperf). */
const num = (n: number) => (Number.isFinite(n) ? `${n}` : "–");

/** The server's CPU time per query answered, in microseconds. */
function usPerQuery(r: Row): string {
  return r.qps > 0 ? ((r.srvCpu * 10_000) / r.qps).toFixed(1) : "–";
}

const out: string[] = [];
// Without a cache, dotproxy forwards the "hit" workloads: the upstream then works during them.
const dpHits = find("dotproxy", "udp-hits");
const hitNote = dpHits && dpHits.upCpu >= 10
  ? `\n> dotproxy did not answer the hit workloads from a cache (the upstream used ` +
    `${dpHits.upCpu}% of a core during its udp-hits run): its *hit* rows are forwarded queries, ` +
    `every one sent upstream over DoT, unlike dnsdist's and unbound's.\n`
  : "";

out.push(`# dotproxy benchmark — ${meta.get("date") ?? "?"}`);
out.push("");
out.push(
  [
    `- machine: ${meta.get("nproc")} cores, ${meta.get("cpu")}, ${meta.get("kernel")}, ` +
    `${meta.get("os")}`,
    `- versions: ${meta.get("deno")}; dnsperf ${meta.get("dnsperf")}; ${meta.get("dnsdist")}; ` +
    `unbound ${meta.get("unbound")}`,
    `- dotproxy code: ${meta.get("dotproxy_code")}`,
    `- servers on core 0, dnsperf + upstream unbound on core 1; ${meta.get("duration_s")} s per ` +
    `run; throughput runs: dnsperf ${meta.get("dnsperf_throughput")}`,
    `- upstream: unbound ${meta.get("unbound")} on 127.0.0.1 (DoT), TCP_NODELAY: ` +
    `${meta.get("upstream_nodelay") ?? "?"}`,
    `- other processes before the run: ${meta.get("busy_before_run_pct")}% of a core; waited for ` +
    `quiet: ${meta.get("quiet_waited_s") ?? "?"}`,
  ].join("\n"),
);
out.push(hitNote);

// Throughput.
const peers = servers.filter((s) =>
  s !== "dotproxy" && !s.startsWith("echo") && !s.startsWith("workers")
);
const echos = servers.filter((s) => s.startsWith("echo"));
const thrWorkloads = [
  "udp-hits",
  "tcp-hits",
  "udp-misses",
  "tcp-misses",
  "dot-hits",
  "doh-hits",
];
out.push("## Throughput (queries per second)");
out.push("");
out.push(table(
  [
    "workload",
    ...servers.map(label),
    ...peers.map((p) => `dotproxy / ${label(p)}`),
    ...echos.map((e) => `dotproxy / ${label(e)}`),
  ],
  thrWorkloads.filter((w) => rows.some((r) => r.workload === w)).map((w) => {
    const dp = find("dotproxy", w);
    return [
      w,
      ...servers.map((s) => {
        const r = find(s, w);
        if (!r) return "–";
        // (h2load rows count HTTP 2xx answers instead of rcodes.)
        const bad = r.lostPct > 1 ||
          !(/^NOERROR \S+ \(100\.00%\)$/.test(r.rcodes) || /^HTTP 2xx /.test(r.rcodes));
        return fmtQps(r.qps) + (bad ? " ⚠" : "") + (r.otherCpu >= 15 ? " †" : "");
      }),
      ...peers.map((p) => ratio(dp, find(p, w))),
      ...echos.map((e) => (w === "udp-hits" ? ratio(dp, find(e, w)) : "–")),
    ];
  }),
));
out.push("");
out.push(
  "⚠ = more than 1% lost or not all NOERROR (see the CPU table and raw/). " +
    "dnsperf counts the queries still unanswered when the time limit ends as lost; UDP queries " +
    "dropped at a full socket buffer are lost too. † = other processes on the machine used " +
    "≥ 15% of a core during the run: the number is not trustworthy. doh-hits is in HTTP " +
    "requests per second (h2load, HTTP/2 POST, 20 connections × 10 streams).",
);
out.push("");

// Latency.
out.push(
  "## Latency, ms: at a fixed rate (dnsperf -Q, per-query times from dnsperf -v), and at the " +
    "top rate for the encrypted front doors (dot-hits: dnsperf -v; doh-hits: h2load --log-file)",
);
out.push("");
const latWorkloads = ["hit-latency", "miss-latency", "dot-hits", "doh-hits"].filter((w) =>
  rows.some((r) => r.workload === w)
);
out.push(table(
  ["workload", "rate (qps)", "server", "achieved qps", "p50", "p90", "p99", "p99.9", "max", "lost"],
  latWorkloads.flatMap((w) =>
    servers.map((s) => find(s, w)).filter((r): r is Row => r !== undefined && r.p50 !== "-").map((
      r,
    ) => [
      w,
      r.target === "-" ? "top" : r.target,
      label(r.server),
      fmtQps(r.qps),
      r.p50,
      r.p90,
      r.p99,
      r.p999,
      r.max,
      `${r.lostPct}%`,
    ])
  ),
  [0, 2],
));
out.push("");

// CPU.
out.push("## CPU during each run (% of one core) and what limited it");
out.push("");
out.push(table(
  [
    "server",
    "workload",
    "qps",
    "server",
    "server µs/query",
    "upstream unbound",
    "dnsperf",
    "other processes",
    "core 1 (dnsperf + upstream)",
    "upstream conns",
    "limited by",
  ],
  rows.map((r) => [
    label(r.server),
    r.workload,
    fmtQps(r.qps),
    `${r.srvCpu}`,
    usPerQuery(r),
    `${r.upCpu}`,
    num(r.perfCpu),
    `${r.otherCpu}`,
    num(r.perfCpu + r.upCpu),
    num(r.upConns),
    limit(r),
  ]),
  [0, 1, 11],
));
out.push("");
out.push(
  `CPU: utime+stime (all threads, from /proc/PID/stat) over the ${meta.get("duration_s")} s ` +
    "of the run, for the server, the upstream unbound, dnsperf, and every other process on the " +
    "machine together (which may run on either core). Kernel softirq time for loopback " +
    "delivery is not in these numbers. Upstream conns: established TCP connections to the " +
    "upstream at the end of the run. Server µs/query: the server's CPU time divided by the " +
    "queries it answered (at a fixed rate, as in miss-cpu, the least noisy number here).",
);
out.push("");

// Targets from the issue (#15), as ratios of numbers from this run.
const checks: string[] = [];
const check = (name: string, ok: boolean | null, detail: string) =>
  checks.push(`- ${ok === null ? "n/a " : ok ? "PASS" : "FAIL"} ${name}: ${detail}`);
const best = (workload: string, among: string[]) =>
  among.map((s) => find(s, workload)).filter((r): r is Row => !!r).sort((a, b) => b.qps - a.qps)[0];
const atLeast = (name: string, workload: string, among: string[], factor = 1) => {
  const dp = find("dotproxy", workload);
  const peer = best(workload, among);
  if (!dp || !peer) return;
  const r = dp.qps / peer.qps;
  check(
    name,
    r >= factor,
    `${r.toFixed(2)} (${fmtQps(dp.qps)} vs ${label(peer.server)} ${fmtQps(peer.qps)})`,
  );
};
atLeast("UDP misses ≥ 1.0 × unbound as forwarder", "udp-misses", ["unbound"]);
const dpMissLat = find("dotproxy", "miss-latency");
const ubMissLat = find("unbound", "miss-latency");
if (dpMissLat && ubMissLat) {
  const a = Number(dpMissLat.p99), b = Number(ubMissLat.p99);
  check(
    `miss p99 at ${dpMissLat.target} qps ≤ 2 × unbound's`,
    Number.isFinite(a) && Number.isFinite(b) ? a <= 2 * b : null,
    `${dpMissLat.p99} ms vs ${ubMissLat.p99} ms (${(a / b).toFixed(2)} ×)`,
  );
}
atLeast("TCP hits ≥ 1.2 × dnsdist", "tcp-hits", ["dnsdist"], 1.2);
atLeast("UDP hits ≥ the Deno echo with a reused buffer", "udp-hits", ["echo-reuse"]);
atLeast("DoT hits ≥ 1.0 × the best peer", "dot-hits", peers);
atLeast("DoH hits (h2load) ≥ 1.0 × the best peer", "doh-hits", peers);
const cpu = ["miss-cpu", "miss-latency", "udp-misses"].flatMap((w) => {
  const dp = find("dotproxy", w);
  const ub = find("unbound", w);
  return dp && ub ? [`${w} ${usPerQuery(dp)} vs ${usPerQuery(ub)} µs`] : [];
});
if (cpu.length) checks.push(`- info: server CPU per miss, dotproxy vs unbound: ${cpu.join("; ")}`);
if (checks.length) {
  out.push("## Targets from the issue");
  out.push("");
  out.push(checks.join("\n"));
  if (hitNote) out.push("\n(dotproxy's hit rows are forwarded queries until the cache lands.)");
  out.push("");
}

const text = out.join("\n");
console.log(text);
await Deno.writeTextFile(`${dir}/summary.md`, text + "\n");
