/**
 * The report of bench/soak.ts: what a run measured (a {@link SoakRun}) as Markdown tables and
 * lines, each section a function, and the checks that fail the run (lost queries outside the
 * upstream's down windows, mismatched answers, RSS growth, dotproxy crashing or not stopping
 * cleanly).
 */
import type { Rec, TcpStream, UdpDns } from "./clients.ts";
import type { GarbageSender, JunkTcp } from "./garbage.ts";
import { type Pacer, tally, TICK_MS } from "./load.ts";
import { cpuLine, type MachineSample, procReadsViaShell } from "./procfs.ts";
import type { Proxy } from "./process.ts";
import { ms, n, pct, quantile, summarizeLog, TALLY_HEADER, tallyRow } from "./report.ts";
import { lines, type Sample } from "./scrape.ts";

/** What one soak run measured. Times are ms since the load's start. */
export interface SoakRun {
  /** Every valid query sent (and the TCP warm-up queries, class "warm"). */
  recs: Rec[];
  /** The upstream's outages: killed, gone, restarted, serving again. */
  events: { kill: number; down: number; restart: number; ready: number }[];
  /** Per generator tick: when it ran, the gap since the previous one, datagrams it sent. */
  ticks: { t: number[]; gap: number[]; burst: number[] };
  /** The streams' pacers (sent and skipped). */
  pace: { udp: Pacer; tcp: Pacer; garbage: Pacer; junk: Pacer };
  /** Kernel drops, machine CPU and dotproxy's main thread, sampled during the load. */
  machine: MachineSample[];
  /** dotproxy's VmRSS every second (t in seconds). */
  rss: { t: number; kib: number }[];
  /** CPU per process group over the load (CpuMeter report). */
  cpuUse: Map<string, number>;
  /** /metrics after the load (empty if the scrape failed). */
  metrics: Sample[];
  /** Kernel drops at dotproxy's UDP socket before the load, and in all; at the clients'. */
  proxyDrops0: number;
  proxyDrops: number;
  clientDrops: number;
  /** Machine-wide RcvbufErrors during the run. */
  rcvbuf: number;
  udp: UdpDns[];
  tcp: TcpStream[];
  junk: GarbageSender;
  junkTcp: JunkTcp;
  /** When the load stopped sending. */
  sendEnd: number;
  /** dotproxy's exit code if it exited, else null. */
  crashed(): number | null;
}

/** What the report needs to know of the run's shape (bench/soak.ts's options). */
export interface SoakShape {
  seconds: number;
  udpQps: number;
  garbagePps: number;
  /** dotproxy's [server] query_timeout: the down windows extend this far past a restart. */
  queryTimeoutMs: number;
  /** RSS growth is judged from here (seconds into the load). */
  warmupS: number;
  catchUp: boolean;
  burstTicks: number;
}

type Fail = (why: string) => void;

/** The valid queries split by the down windows (kill → serving again + query_timeout). */
interface Windows {
  windows: number[][];
  inWindow: (r: Rec) => boolean;
  valid: Rec[];
  out: Rec[];
  inside: Rec[];
}

const sec = (t: number) => (t / 1000).toFixed(2);

/** The index of the largest of `xs[from..to)`. */
function argmax(xs: number[], from = 0, to = xs.length): number {
  let best = from;
  for (let i = from; i < to; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** Counts of `recs` in 100 ms buckets of the time they were sent. */
function when(recs: Rec[]): string {
  const buckets = new Map<number, number>();
  for (const r of recs) {
    const b = Math.floor(r.t / 100) / 10;
    buckets.set(b, (buckets.get(b) ?? 0) + 1);
  }
  return [...buckets].map(([b, k]) => `${b.toFixed(1)} s: ${k}`).join(", ");
}

/** The machine between two samples: CPU busy and stolen, dotproxy's main thread. */
function cpuBetween(a: MachineSample, b: MachineSample): string {
  const cores = navigator.hardwareConcurrency;
  return `machine CPU ${sec(a.t)}-${sec(b.t)} s: busy ${
    (100 * 10 * (b.busy - a.busy) / (b.t - a.t) / cores).toFixed(0)
  }% of ${cores} cores, steal ${10 * (b.steal - a.steal)} ms; dotproxy's main thread ran ${
    ((b.ran - a.ran) / 1e6).toFixed(0)
  } ms, waited for a CPU ${((b.waited - a.waited) / 1e6).toFixed(0)} ms`;
}

/** Prints the whole report but dotproxy's stop; `fail` is called for each failed check. */
export function printSoakReport(o: SoakShape, run: SoakRun, fail: Fail): void {
  const w = splitByWindows(o, run);
  printTallies(o, run, w, fail);
  printPacing(o, run);
  printLossClusters(run, w);
  printSummary(run, w, fail);
  printRecovery(run, w);
  printTraffic(run);
  printMemory(o, run, fail);
  console.log(`\nCPU (% of one core over the run): ${cpuLine(run.cpuUse)}`);
  printMetrics(run.metrics, fail);
}

function splitByWindows(o: SoakShape, run: SoakRun): Windows {
  const windows = run.events.map((e) => [e.kill, e.ready + o.queryTimeoutMs]);
  const inWindow = (r: Rec) => windows.some(([a, b]) => r.t >= a && r.t <= b);
  const valid = run.recs.filter((r) => r.cls !== "warm");
  return {
    windows,
    inWindow,
    valid,
    out: valid.filter((r) => !inWindow(r)),
    inside: valid.filter(inWindow),
  };
}

/** The tables of outcomes outside and inside the down windows, and kernel drops. */
function printTallies(o: SoakShape, run: SoakRun, w: Windows, fail: Fail): void {
  const { windows, valid, out, inside } = w;
  const classes = [...new Set(valid.map((r) => r.cls))];
  const rowIfAny = (label: string, recs: Rec[]) => {
    if (recs.length) console.log(tallyRow(label, tally(recs)));
  };
  console.log(`\n## Soak results (${(run.sendEnd / 1000).toFixed(1)} s of load)\n`);
  console.log(
    `Upstream down windows (kill → restarted and serving + query_timeout ${
      o.queryTimeoutMs / 1000
    } s): ${windows.map(([a, b]) => `${(a / 1000).toFixed(1)}-${(b / 1000).toFixed(1)} s`)}\n`,
  );
  console.log(TALLY_HEADER.join("\n"));
  console.log(tallyRow("**outside the down windows**", tally(out)));
  for (const c of classes) rowIfAny(`  ${c}`, out.filter((r) => r.cls === c));
  console.log(tallyRow("**inside the down windows**", tally(inside)));
  for (const c of classes) rowIfAny(`  ${c}`, inside.filter((r) => r.cls === c));
  console.log(tallyRow("**all**", tally(valid)));

  const tOut = tally(out);
  console.log(
    `\nUDP datagrams dropped by the kernel at a full receive buffer: dotproxy's socket ` +
      `${n(run.proxyDrops)} (${n(run.proxyDrops0)} of them before the load), this client's ` +
      `sockets ${n(run.clientDrops)} (machine-wide RcvbufErrors ` +
      `+${n(run.rcvbuf)} during the run, other processes included)`,
  );
  if (tOut.lost > 0) {
    fail(`${tOut.lost} valid queries lost outside the down windows`);
    console.log(`  sent at (100 ms buckets): ${when(out.filter((r) => r.lost))}`);
  }
}

/** Generator pacing: late ticks, bursts, what was skipped; kernel drops and the machine. */
function printPacing(o: SoakShape, run: SoakRun): void {
  const { t: tickT, gap: tickGap, burst: tickBurst } = run.ticks;
  const { pace, machine } = run;
  const gi = argmax(tickGap), bi = argmax(tickBurst);
  const onTime = ((o.udpQps + o.garbagePps) * TICK_MS) / 1000;
  const lateTicks = (g: number) => n(tickGap.filter((x) => x >= g).length);
  const skippedValid = pace.udp.skipped + pace.tcp.skipped;
  console.log(
    `\nGenerator pacing (${TICK_MS} ms ticks; ${
      o.catchUp
        ? "--catch-up: a late tick sends the whole backlog"
        : `a late tick sends at most ${o.burstTicks} ticks' worth`
    }): ${n(tickGap.length)} ticks; gap p50 ${
      ms(quantile([...tickGap].sort((a, b) => a - b), 0.5))
    } ms, max ${ms(tickGap[gi])} ms (the tick at ${sec(tickT[gi])} s sent ${
      tickBurst[gi]
    }); ticks ≥ 20 / 50 / 100 ms after the previous: ${lateTicks(20)} / ${lateTicks(50)} / ${
      lateTicks(100)
    }`,
  );
  const longest = tickGap.map((_, i) => i).sort((a, b) => tickGap[b] - tickGap[a]).slice(0, 5);
  console.log(
    `  longest gaps: ${
      longest.map((i) =>
        `${tickGap[i].toFixed(0)} ms before ${sec(tickT[i])} s (sent ${tickBurst[i]})`
      )
        .join(", ")
    }`,
  );
  console.log(
    `Largest burst to dotproxy's UDP port: ${tickBurst[bi]} datagrams (valid + garbage) in the ` +
      `tick at ${sec(tickT[bi])} s, ${tickGap[bi].toFixed(0)} ms after the previous (on time: ` +
      `${onTime}); ticks sending more than ${2 * onTime}: ${
        n(tickBurst.filter((b) => b > 2 * onTime).length)
      }`,
  );
  console.log(
    `Skipped (generator late): ${n(pace.udp.skipped)} UDP, ${n(pace.tcp.skipped)} TCP, ` +
      `${n(pace.garbage.skipped)} garbage, ${n(pace.junk.skipped)} junk TCP; ${
        pct(skippedValid, pace.udp.done + pace.tcp.done)
      } of the valid queries due were not sent`,
  );
  const d0 = machine[0], d1 = machine[machine.length - 1];
  const dropSteps = machine.slice(1).map((d, i) => ({
    t: d.t,
    proxy: d.proxy - machine[i].proxy,
    client: d.client - machine[i].client,
  })).filter((d) => d.proxy > 0 || d.client > 0);
  console.log(
    `Kernel drops during the load (sampled every ${procReadsViaShell() ? "1 s" : "100 ms"}): ` +
      `dotproxy's socket +${n(d1.proxy - d0.proxy)}, this client's +${n(d1.client - d0.client)}${
        dropSteps.length
          ? `; by sample (dotproxy/client): ${
            dropSteps.slice(0, 20).map((d) => `${sec(d.t)} s +${d.proxy}/+${d.client}`)
              .join(", ")
          }${dropSteps.length > 20 ? ", …" : ""}`
          : ""
      }`,
  );
  console.log(`Machine during the load: ${cpuBetween(d0, d1)}`);
  const waits = machine.slice(1).map((d, i) => ({
    t: machine[i].t,
    waited: (d.waited - machine[i].waited) / 1e6,
    ran: (d.ran - machine[i].ran) / 1e6,
    span: d.t - machine[i].t,
  })).sort((a, b) => b.waited - a.waited);
  if (waits.length && !Number.isNaN(waits[0].waited)) {
    console.log(
      `  dotproxy's main thread, longest waits for a CPU per sample: ${
        waits.slice(0, 3).map((w) =>
          `${w.waited.toFixed(0)} ms of ${w.span.toFixed(0)} from ${sec(w.t)} s (ran ${
            w.ran.toFixed(0)
          } ms)`
        ).join(", ")
      }`,
    );
  }
}

/** Lost queries in clusters (less than 250 ms apart), each with the ticks and drops around it. */
function printLossClusters(run: SoakRun, w: Windows): void {
  const { t: tickT, gap: tickGap, burst: tickBurst } = run.ticks;
  const { machine } = run;
  const { valid, inWindow } = w;
  const d0 = machine[0], d1 = machine[machine.length - 1];
  const clusters: Rec[][] = [];
  for (const r of valid.filter((r) => r.lost).sort((a, b) => a.t - b.t)) {
    const c = clusters[clusters.length - 1];
    if (c && r.t - c[c.length - 1].t < 250) c.push(r);
    else clusters.push([r]);
  }
  const tickAt = (t: number) => {
    let lo = 0, hi = tickT.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (tickT[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const dropsAt = (t: number, after: boolean) =>
    after ? machine.find((d) => d.t >= t) ?? d1 : machine.findLast((d) => d.t <= t) ?? d0;
  console.log(`Lost-query clusters: ${clusters.length || "none"}`);
  for (const c of clusters.slice(0, 20)) {
    const a = c[0].t, b = c[c.length - 1].t;
    const i0 = tickAt(a - 300), i1 = Math.max(i0 + 1, tickAt(b + 30));
    const g = argmax(tickGap, i0, i1), bb = argmax(tickBurst, i0, i1);
    const before = dropsAt(a - 100, false), after = dropsAt(b + 300, true);
    const byCls = [...new Set(c.map((r) => r.cls))]
      .map((k) => `${k} ${c.filter((r) => r.cls === k).length}`).join(", ");
    console.log(
      `  ${c.length} lost, sent ${sec(a)}-${sec(b)} s${
        c.some(inWindow) ? " (in a down window)" : ""
      } (${byCls}); ticks ${sec(Math.max(0, a - 300))}-${sec(b + 30)} s: max gap ${
        ms(tickGap[g])
      } ms before ${sec(tickT[g])} s, max burst ${tickBurst[bb]} at ${sec(tickT[bb])} s, ` +
        `${tickBurst.slice(i0, i1).reduce((x, y) => x + y, 0)} datagrams in all; kernel drops ` +
        `${sec(before.t)}-${sec(after.t)} s: dotproxy's socket +${after.proxy - before.proxy}, ` +
        `this client's +${after.client - before.client}; ${cpuBetween(before, after)}`,
    );
    printAnswersAround(valid, a, b);
  }
}

/**
 * Was dotproxy answering meanwhile? The longest silence between answers arriving (to queries of
 * any kind, cache hits included) from 500 ms before a cluster sent `a`-`b` to 500 ms after; a
 * silence not matched by a tick gap above is on dotproxy's side, not this script's.
 */
function printAnswersAround(valid: Rec[], a: number, b: number): void {
  const arrivals = valid.filter((r) => r.ms >= 0 && r.t + r.ms >= a - 500 && r.t + r.ms <= b + 500)
    .map((r) => r.t + r.ms).sort((x, y) => x - y);
  let quiet = 0, quietAt = a;
  for (let i = 1; i < arrivals.length; i++) {
    if (arrivals[i] - arrivals[i - 1] > quiet) {
      quiet = arrivals[i] - arrivals[i - 1];
      quietAt = arrivals[i - 1];
    }
  }
  const lat = (p: string) => {
    const xs = valid.filter((r) =>
      r.ms >= 0 && r.cls.startsWith(p) && r.t >= a - 300 && r.t <= b + 30
    )
      .map((r) => r.ms).sort((x, y) => x - y);
    return `${p} p50 ${ms(quantile(xs, 0.5))} / max ${ms(xs[xs.length - 1] ?? NaN)} ms`;
  };
  console.log(
    `    answers: longest silence ${ms(quiet)} ms from ${sec(quietAt)} s; queries sent ` +
      `${sec(Math.max(0, a - 300))}-${sec(b + 30)} s answered in ${lat("UDP")}, ${lat("TCP")}`,
  );
}

/** The one-line summary, the slowest answers, SERVFAIL outside the windows, and checks. */
function printSummary(run: SoakRun, w: Windows, fail: Fail): void {
  const { gap: tickGap, burst: tickBurst } = run.ticks;
  const { pace, machine } = run;
  const { valid, out } = w;
  const tOut = tally(out);
  const d0 = machine[0], d1 = machine[machine.length - 1];
  console.log(
    `Summary: lost outside the down windows ${n(tOut.lost)}; max tick gap ${
      ms(tickGap[argmax(tickGap)])
    } ms; max burst ${tickBurst[argmax(tickBurst)]}; skipped (generator late) ${
      n(pace.udp.skipped + pace.tcp.skipped)
    } valid + ${n(pace.garbage.skipped)} garbage; kernel drops at dotproxy's socket during ` +
      `the load ${n(d1.proxy - d0.proxy)}`,
  );
  const slowest = valid.filter((r) => r.ms >= 0).sort((a, b) => b.ms - a.ms).slice(0, 5);
  console.log(
    `Slowest answers: ${
      slowest.map((r) => `${r.ms.toFixed(0)} ms (${r.cls}, sent at ${(r.t / 1000).toFixed(2)} s)`)
        .join(", ")
    }`,
  );
  if (tOut.servfail > 0) {
    console.log(
      `${tOut.servfail} SERVFAIL outside the down windows, sent at: ${
        when(out.filter((r) => r.rcode === 2 && !r.lost))
      }`,
    );
  }
  const mism = tally(valid).mismatch;
  if (mism > 0) fail(`${mism} answers whose question did not match the query`);
  if (tOut.sent === 0) fail("no queries outside the down windows");
}

/** Recovery: the first NOERROR for a unique name sent after each restart. */
function printRecovery(run: SoakRun, w: Windows): void {
  for (const [i, e] of run.events.entries()) {
    const after = w.valid.filter((r) => r.cls.endsWith("unique") && r.t >= e.ready);
    const first = after.find((r) => r.rcode === 0 && !r.lost);
    const between = tally(after.filter((r) => r.t < (first?.t ?? Infinity)));
    console.log(
      `Restart ${i + 1}: unbound serving at ${(e.ready / 1000).toFixed(1)} s; the first ` +
        `unique name answered NOERROR was sent at ${
          first ? `${(first.t / 1000).toFixed(2)} s` : "never"
        } (before it: ${between.sent} unique queries, ${between.servfail} SERVFAIL, ` +
        `${between.lost} lost)`,
    );
  }
}

/** Garbage datagrams, junk TCP connections and the valid clients' connection counters. */
function printTraffic(run: SoakRun): void {
  const { junk, junkTcp, tcp, udp } = run;
  console.log(
    `\nGarbage: ${n(junk.sent)} UDP datagrams (random, mutated, QR=1 in turn), ` +
      `${n(junk.replies)} replies (${
        [...junk.rcodes].sort((a, b) => a[0] - b[0]).map(([k, v]) => `rcode ${k}: ${n(v)}`)
          .join(", ")
      })`,
  );
  console.log(
    `Junk TCP connections (opened / closed by dotproxy / closed by us after waiting): ${
      [...junkTcp.kinds].map(([k, v]) => `${k} ${v.opened}/${v.byProxy}/${v.byUs}`).join(", ")
    }; ${junkTcp.failed} failed to connect or write`,
  );
  const tcpInfo = tcp.map((c) => `${c.connects}/${c.closedByPeer}/${c.errors}`).join(" ");
  console.log(
    `TCP valid connections (connects/closed by dotproxy/errors): ${tcpInfo}; UDP strays ` +
      `${udp.reduce((a, u) => a + u.strays, 0)}, UDP send errors ` +
      `${udp.reduce((a, u) => a + u.sendErrors, 0)}`,
  );
}

/** dotproxy's RSS over the run; fails when the peak grew more than 20% after warm-up. */
function printMemory(o: SoakShape, run: SoakRun, fail: Fail): void {
  const { rss } = run;
  const { warmupS, seconds } = o;
  const at = (s: number) =>
    rss.reduce((best, x) => Math.abs(x.t - s) < Math.abs(best.t - s) ? x : best);
  const start = rss[0], warm = at(warmupS), mid = at(seconds / 2), end = rss[rss.length - 1];
  const mib = (k: number) => `${(k / 1024).toFixed(1)} MiB`;
  // V8's heap grows and shrinks in a sawtooth, so compare peaks: the highest RSS in the first
  // and in the second half of the time after warm-up.
  const split = (warmupS + run.sendEnd / 1000) / 2;
  const peak = (xs: { kib: number }[]) => Math.max(...xs.map((x) => x.kib));
  const peak1 = peak(rss.filter((x) => x.t >= warmupS && x.t < split));
  const peak2 = peak(rss.filter((x) => x.t >= split));
  const growth = (peak2 - peak1) / peak1;
  console.log(
    `\nRSS (VmRSS of dotproxy, sampled every 1 s): start ${mib(start.kib)}, after warm-up ` +
      `(${warm.t.toFixed(0)} s) ${mib(warm.kib)}, middle (${mid.t.toFixed(0)} s) ` +
      `${mib(mid.kib)}, end (${end.t.toFixed(0)} s) ${mib(end.kib)}; end vs warm-up ` +
      `${(100 * (end.kib - warm.kib) / warm.kib).toFixed(1)}%`,
  );
  console.log(
    `  peak ${warmupS.toFixed(0)}-${split.toFixed(0)} s ${mib(peak1)}, peak ${split.toFixed(0)}-${
      (run.sendEnd / 1000).toFixed(0)
    } s ${mib(peak2)}: growth ${(100 * growth).toFixed(1)}%`,
  );
  console.log(
    `  every 5 s: ${
      rss.filter((_, i) => i % 5 === 0).map((x) => (x.kib / 1024).toFixed(0)).join(" ")
    } MiB`,
  );
  if (seconds < 30) console.log("  (runs under 30 s are too short to judge memory growth)");
  else if (growth > 0.2) {
    fail(`RSS peak grew ${(100 * growth).toFixed(1)}% after warm-up (> 20%)`);
  }
}

/** The counters of /metrics a soak run is about; fails when the scrape did not work. */
function printMetrics(metrics: Sample[], fail: Fail): void {
  if (!metrics.length) {
    fail("could not scrape /metrics at the end");
    return;
  }
  console.log("\n/metrics at the end:");
  const show = [
    "dotproxy_dropped_queries_total",
    "dotproxy_upstream_errors_total",
    "dotproxy_upstream_queries_total",
    "dotproxy_upstream_reconnects_total",
    "dotproxy_cache_hits_total",
    "dotproxy_cache_misses_total",
    "dotproxy_cache_stale_answers_total",
    "dotproxy_cache_evictions_total",
    "dotproxy_cache_entries",
    "dotproxy_queries_shed_total",
    "dotproxy_in_flight_queries",
    "dotproxy_upstream_up",
  ];
  for (const name of show) {
    console.log(lines(metrics, name, name !== "dotproxy_upstream_errors_total").join("\n"));
  }
  const rcodes = new Map<string, number>();
  for (const s of metrics.filter((s) => s.name === "dotproxy_queries_total")) {
    const k = `${s.labels.protocol} ${s.labels.rcode}`;
    rcodes.set(k, (rcodes.get(k) ?? 0) + s.value);
  }
  console.log(
    `  dotproxy_queries_total by protocol and rcode: ${
      [...rcodes].map(([k, v]) => `${k} ${n(v)}`).join(", ")
    }`,
  );
}

/**
 * Stops dotproxy (SIGTERM) and reports how: fails if it had crashed during the run or does not
 * exit 0; prints its log folded into distinct lines, and writes it all to `outputFile` if set.
 */
export async function stopAndReport(
  proxy: Proxy,
  crashed: number | null,
  outputFile: string | null,
  fail: Fail,
): Promise<void> {
  if (crashed !== null) fail(`dotproxy exited during the run (code ${crashed})`);
  const code = await proxy.stop();
  const output = proxy.cli.output().trim();
  if (outputFile !== null) await Deno.writeTextFile(outputFile, output + "\n");
  if (code !== 0) fail(`dotproxy exited with ${code} on SIGTERM`);
  console.log(`\ndotproxy stopped on SIGTERM with exit code ${code}`);
  const logged = output ? output.split("\n") : [];
  console.log(
    `dotproxy logged ${logged.length} lines (level warning)${logged.length ? ":" : ""}`,
  );
  for (const l of summarizeLog(logged)) console.log(`  ${l}`);
}
