/**
 * Soak run: dotproxy as a real process (tests/helpers/process.ts) in front of real unbound over
 * DNS-over-TLS (tests/helpers/unbound.ts), under steady valid load (UDP and long-lived TCP),
 * garbage (UDP datagrams and junk TCP connections), with the upstream killed and restarted twice.
 * Checks that nothing is lost outside the upstream's down windows and that memory stays flat.
 * Loopback only; bounded in time; every process it starts is stopped. See bench/ROBUSTNESS.md.
 *
 *   deno run -A bench/soak.ts [--seconds 60] [--udp-qps 1500] [--tcp-qps 200]
 *     [--garbage-pps 1000] [--quiet-wait 120] [--proxy-output FILE]
 *     [--burst-ticks 3 | --catch-up] [--stall T:MS[,T:MS...]]
 *
 * Narrower, from the project root (Deno 2 lets only -A read /proc, so RSS and CPU are then read
 * through `sh -c cat`; `--allow-run=sh` is as strong as -A anyway):
 *
 *   deno run --allow-net=127.0.0.1 --allow-read=. --allow-write=/tmp \
 *     --allow-run="$(readlink -f "$(command -v deno)")",unbound,sh bench/soak.ts
 *
 * --quiet-wait: first wait up to this many seconds for other processes to go quiet.
 * --proxy-output: write dotproxy's whole stdout+stderr there (e.g. with DENO_V8_FLAGS=--trace-gc).
 * --burst-ticks: the load is sent in 10 ms ticks; a late tick (this script's own GC or JIT, its
 *   samplers, a busy machine) sends at most this many ticks' worth of each stream and skips the
 *   rest of the backlog, counted as "skipped: generator late" (default 3).
 * --catch-up: the old pacing: a late tick sends the whole backlog at once (one burst on
 *   dotproxy's UDP socket, whose default receive buffer holds only ~256 small datagrams).
 * --stall: block this script's event loop for MS ms at T s into the load (a synthetic generator
 *   stall, to see what a late tick does with and without --catch-up).
 *
 * Exit code: 0 pass, 1 a check failed (lost queries outside the down windows, RSS peak growth above
 * 20% after warm-up in runs of 30 s or more, dotproxy crashed or did not stop cleanly), 2 usage.
 *
 * The pieces live in bench/lib/ (shared with bench/flood.ts); the report in
 * bench/lib/soak_report.ts.
 */
import { freePort, startUnbound, type Unbound } from "../tests/helpers/unbound.ts";
import { numArg, sleep, startWatchdog } from "./lib/cli.ts";
import { drain, newRec, type Rec, TcpStream, UdpDns } from "./lib/clients.ts";
import { GarbageSender, JunkTcp } from "./lib/garbage.ts";
import { Pacer, TICK_MS } from "./lib/load.ts";
import {
  CpuMeter,
  loopbackKey,
  MachineSeries,
  procSnapshot,
  udpDrops,
  udpRcvbufErrors,
  waitForQuiet,
} from "./lib/procfs.ts";
import { type Proxy, restartUnbound, startProxy } from "./lib/process.ts";
import { n } from "./lib/report.ts";
import { type Sample, scrape, total } from "./lib/scrape.ts";
import { printSoakReport, type SoakRun, type SoakShape, stopAndReport } from "./lib/soak_report.ts";

/**
 * A small cache (full after a few seconds, so later memory growth is not the cache filling) whose
 * entries expire every 10 s, so repeated names go through prefetch and, while the upstream is
 * down, serve-stale.
 */
const CACHE_TOML = '[cache]\nmax_entries = 5000\nmax_ttl = "10s"\n';

/** The soak run's shape: rates from the command line, the rest fixed. */
interface SoakOptions extends SoakShape {
  tcpQps: number;
  tcpConns: number;
  udpSockets: number;
  repeatNames: number;
  junkTcpPerSec: number;
  maxJunkTcp: number;
  /** Upstream down windows, [from, to] in seconds into the load. */
  downs: number[][];
  /** Makes this run's unique names unique across runs. */
  tag: string;
  /** Synthetic generator stalls: [at ms, for ms], sorted. */
  stalls: [number, number][];
  quietWait: number;
  /** Where to write dotproxy's whole output (--proxy-output), or null. */
  proxyOutput: string | null;
}

/** `--stall T:MS[,T:MS...]`: [at ms, for ms], sorted. Exits 2 if malformed. */
function stallArg(args: string[]): [number, number][] {
  const i = args.indexOf("--stall");
  if (i < 0) return [];
  const out = (args[i + 1] ?? "").split(",").map((x) => x.split(":").map(Number));
  if (!out.every((x) => x.length === 2 && x.every((v) => Number.isFinite(v) && v >= 0))) {
    console.error("--stall needs T:MS[,T:MS...] (seconds into the load, milliseconds)");
    Deno.exit(2);
  }
  return out.map(([t, d]) => [t * 1000, d] as [number, number]).sort((a, b) => a[0] - b[0]);
}

/** Reads the command line (exits 2 on a bad value). */
function soakOptions(args: string[]): SoakOptions {
  const seconds = numArg(args, "seconds", 60);
  const keep = args.indexOf("--proxy-output");
  return {
    seconds,
    udpQps: numArg(args, "udp-qps", 1500),
    tcpQps: numArg(args, "tcp-qps", 200),
    garbagePps: numArg(args, "garbage-pps", 1000),
    tcpConns: 4,
    udpSockets: 4,
    repeatNames: 200,
    junkTcpPerSec: 5,
    maxJunkTcp: 12, // with the 4 valid connections, below tcp_max_connections_per_client 32
    queryTimeoutMs: 5000, // dotproxy's default [server] query_timeout
    warmupS: Math.min(10, seconds / 6),
    // Down windows at 25-33% and 58-67% of the run: 15-20 s and 35-40 s of 60 s.
    downs: [[0.25, 1 / 3], [7 / 12, 2 / 3]].map(([a, b]) => [a * seconds, b * seconds]),
    tag: Math.random().toString(36).slice(2, 8),
    catchUp: args.includes("--catch-up"),
    burstTicks: Math.max(1, numArg(args, "burst-ticks", 3)),
    stalls: stallArg(args),
    quietWait: numArg(args, "quiet-wait", 120),
    proxyOutput: keep >= 0 ? args[keep + 1] : null,
  };
}

function printPlan(o: SoakOptions): void {
  console.log(
    `soak: ${o.seconds} s; UDP ${o.udpQps} qps on ${o.udpSockets} sockets (half over ` +
      `${o.repeatNames} repeated names, half unique), TCP ${o.tcpQps} qps on ${o.tcpConns} ` +
      `connections, UDP garbage ${o.garbagePps}/s, junk TCP ${o.junkTcpPerSec}/s (at most ` +
      `${o.maxJunkTcp} open); upstream down at ${
        o.downs.map(([a, b]) => `${a.toFixed(0)}-${b.toFixed(0)} s`).join(", ")
      }`,
  );
  console.log(
    `  pacing: ${TICK_MS} ms ticks, ${
      o.catchUp
        ? "--catch-up (a late tick sends the whole backlog)"
        : `a late tick sends at most ${o.burstTicks} ticks' worth, the rest is skipped`
    }${
      o.stalls.length
        ? `; synthetic stalls ${o.stalls.map(([t, d]) => `${d} ms at ${t / 1000} s`).join(", ")}`
        : ""
    }`,
  );
}

/** The upstream unbound, replaced when the schedule restarts it (null while it is down). */
interface Upstream {
  port: number;
  current: Unbound | null;
}

/** The clients of one run: valid UDP and TCP, UDP garbage, junk TCP. */
interface Clients {
  udp: UdpDns[];
  tcp: TcpStream[];
  junk: GarbageSender;
  junkTcp: JunkTcp;
}

async function soak(args: string[]): Promise<number> {
  const o = soakOptions(args);
  printPlan(o);
  const waited = await waitForQuiet(o.quietWait);
  console.log(`  waited ${waited.toFixed(0)} s for other processes to be quiet`);
  const upstreamPort = freePort();
  const upstream: Upstream = {
    port: upstreamPort,
    current: await startUnbound({ port: upstreamPort }),
  };
  let proxy: Proxy | null = null;
  const cleanups: (() => unknown)[] = [];
  let failed = false;
  const fail = (why: string) => {
    failed = true;
    console.log(`FAIL: ${why}`);
  };
  const cancelWatchdog = startWatchdog("soak", o.seconds + 90, async () => {
    for (const c of cleanups) await Promise.resolve().then(c).catch(() => {});
    await proxy?.stop();
    await upstream.current?.stop();
  });

  try {
    const spawnAt = performance.now();
    proxy = await startProxy(upstreamPort, CACHE_TOML);
    const run = await runLoad(o, proxy, upstream, spawnAt, cleanups, fail);
    printSoakReport(o, run, fail);
    await stopAndReport(proxy, run.crashed(), o.proxyOutput, fail);
    proxy = null;
  } finally {
    for (const c of cleanups) await Promise.resolve().then(c).catch(() => {});
    if (proxy) {
      const out = proxy.cli.output();
      await proxy.stop();
      if (out.trim()) console.log(`dotproxy output:\n${out.slice(-4000)}`);
    }
    await upstream.current?.stop();
    cancelWatchdog();
  }
  console.log(failed ? "\nsoak: FAIL" : "\nsoak: PASS");
  return failed ? 1 : 0;
}

/**
 * The load, from dotproxy ready to the last answer: valid queries, garbage and junk connections
 * at their rates, the upstream's outages, and samplers of RSS, CPU, kernel drops and /metrics.
 */
async function runLoad(
  o: SoakOptions,
  proxy: Proxy,
  upstream: Upstream,
  spawnAt: number,
  cleanups: (() => unknown)[],
  fail: (why: string) => void,
): Promise<SoakRun> {
  const pid = proxy.pid;
  const target = proxy.dns;
  // Warm up what the progress line uses before the load: the first toLocaleString loads ICU
  // data (12-14 ms here), which stalled the load's ticks at the first progress line (5 s).
  n(0);
  await scrape(proxy.adminPort).catch(() => {});
  const rcvbuf0 = await udpRcvbufErrors();
  const proxyKey = `127.0.0.1:${target.port}`;
  const proxyDrops0 = (await udpDrops()).get(proxyKey) ?? NaN;
  const snap0 = await procSnapshot(pid);
  const cpu = new CpuMeter(snap0);
  const t0 = performance.now();
  console.log(
    `  load starts ${(t0 - spawnAt).toFixed(0)} ms after dotproxy was spawned (times below ` +
      `are from the load's start)`,
  );
  const now = () => performance.now() - t0;
  let crashed: number | null = null;
  proxy.cli.child.status.then((s) => crashed = s.code);

  const recs: Rec[] = [];
  const clients: Clients = {
    udp: Array.from({ length: o.udpSockets }, () => new UdpDns("127.0.0.1", target)),
    tcp: Array.from({ length: o.tcpConns }, () => new TcpStream(target)),
    junk: new GarbageSender("127.0.0.1", target),
    junkTcp: new JunkTcp(target),
  };
  const { udp, tcp, junk, junkTcp } = clients;
  cleanups.push(() => udp.forEach((u) => u.close()), () => tcp.forEach((c) => c.close()));
  cleanups.push(() => junk.close(), () => junkTcp.closeAll());
  for (const c of tcp) c.send("warm.test.", newRec(t0, "warm")); // connect now

  // RSS every second, metrics every 5 s with a progress line.
  const rss: { t: number; kib: number }[] = [{ t: 0, kib: snap0.rssKiB }];
  const sample = async () => {
    const t = now() / 1000;
    const snap = await procSnapshot(pid);
    cpu.sample(snap);
    rss.push({ t, kib: snap.rssKiB });
  };
  const sampler = setInterval(sample, 1000);
  cleanups.push(() => clearInterval(sampler));
  const progress = setInterval(() => printProgress(proxy, now, rss, recs), 5000);
  cleanups.push(() => clearInterval(progress));

  const outages = scheduleOutages(o, upstream, now);

  // Kernel drops at dotproxy's UDP socket and at this client's, the machine's CPU (busy,
  // steal) and dotproxy's main thread, every 100 ms (with -A, where /proc is a cheap
  // synchronous read; through `sh -c cat` only every second).
  const clientKeys = [...udp.map((u) => u.sock), junk.sock].map(loopbackKey);
  const machine = new MachineSeries(pid, proxyKey, clientKeys, now);
  await machine.sample(true);
  const machineSampler = setInterval(() => machine.sample().catch(() => {}), 100);
  cleanups.push(() => clearInterval(machineSampler));

  const paced = await runTicks(o, clients, recs, t0, now, () => crashed !== null, cleanups);
  const sendEnd = now();
  clearInterval(sampler);
  clearInterval(machineSampler);
  await machine.sample(true);
  await sample(); // CPU over the load only, RSS at its end
  await outages.done.catch((err) => fail(`restarting unbound: ${err}`));

  // Wait for the last answers (or the lost verdict).
  await drain([...udp, ...tcp], 500);
  const metrics = await scrape(proxy.adminPort).catch(() => [] as Sample[]);
  const drops = await udpDrops();
  const rcvbuf = (await udpRcvbufErrors()) - rcvbuf0;
  const proxyDrops = drops.get(proxyKey) ?? NaN;
  const clientDrops = clientKeys.reduce((a, k) => a + (drops.get(k) ?? 0), 0);
  for (const c of cleanups.splice(0)) await c();
  await Promise.all(udp.map((u) => u.closed()));
  return {
    recs,
    events: outages.events,
    ...paced,
    machine: machine.samples,
    rss,
    cpuUse: cpu.report({ [pid]: "dotproxy" }),
    metrics,
    proxyDrops0,
    proxyDrops,
    clientDrops,
    rcvbuf,
    ...clients,
    sendEnd,
    crashed: () => crashed,
  };
}

/** The progress line, every 5 s: RSS, queries sent and answered, a few gauges of /metrics. */
async function printProgress(
  proxy: Proxy,
  now: () => number,
  rss: { kib: number }[],
  recs: Rec[],
): Promise<void> {
  try {
    const m = await scrape(proxy.adminPort);
    const answered = recs.filter((r) => r.ms >= 0).length;
    console.log(
      `  t=${(now() / 1000).toFixed(0)}s rss=${(rss[rss.length - 1].kib / 1024).toFixed(1)}MiB ` +
        `sent=${n(recs.length)} answered=${n(answered)} ` +
        `in_flight=${total(m, "dotproxy_in_flight_queries")} ` +
        `cache=${total(m, "dotproxy_cache_entries")} ` +
        `upstream_up=${total(m, "dotproxy_upstream_up")} ` +
        `up_conns=${total(m, "dotproxy_upstream_open_connections")}`,
    );
  } catch (err) {
    console.log(`  t=${(now() / 1000).toFixed(0)}s metrics scrape failed: ${err}`);
  }
}

/**
 * Kills unbound at the start of each down window and starts it again at its end; `events`
 * fills in as it goes, `done` resolves after the last restart.
 */
function scheduleOutages(
  o: SoakOptions,
  upstream: Upstream,
  now: () => number,
): { events: SoakRun["events"]; done: Promise<void> } {
  const events: SoakRun["events"] = [];
  const done = (async () => {
    for (const [a, b] of o.downs) {
      await sleep(a * 1000 - now());
      const kill = now();
      await upstream.current!.stop();
      upstream.current = null;
      const down = now();
      await sleep(b * 1000 - now());
      const restart = now();
      upstream.current = await restartUnbound(upstream.port);
      events.push({ kill, down, restart, ready: now() });
      console.log(
        `  upstream killed at ${(kill / 1000).toFixed(1)} s (gone at ` +
          `${(down / 1000).toFixed(1)} s), restarted at ${(restart / 1000).toFixed(1)} s, ` +
          `serving at ${(now() / 1000).toFixed(1)} s`,
      );
    }
  })();
  return { events, done };
}

/**
 * The load: every TICK_MS, send what the rates say should have been sent by now, but (unless
 * --catch-up) at most burstTicks ticks' worth per stream: when this script is late, the backlog
 * is skipped and counted, not dumped on dotproxy's UDP socket in one burst. Resolves when the
 * load's time is up or `stopped()`.
 */
async function runTicks(
  o: SoakOptions,
  { udp, tcp, junk, junkTcp }: Clients,
  recs: Rec[],
  t0: number,
  now: () => number,
  stopped: () => boolean,
  cleanups: (() => unknown)[],
): Promise<Pick<SoakRun, "ticks" | "pace">> {
  const cap = (rate: number) =>
    o.catchUp ? Infinity : Math.max(1, Math.ceil((rate * TICK_MS * o.burstTicks) / 1000));
  const pace = {
    udp: new Pacer(o.udpQps, cap(o.udpQps)),
    tcp: new Pacer(o.tcpQps, cap(o.tcpQps)),
    garbage: new Pacer(o.garbagePps, cap(o.garbagePps)),
    junk: new Pacer(o.junkTcpPerSec, cap(o.junkTcpPerSec)),
  };
  // Per tick: when it ran (ms into the run), the gap since the previous one, and how many
  // datagrams it sent to dotproxy's UDP port (valid + garbage).
  const ticks = { t: [] as number[], gap: [] as number[], burst: [] as number[] };
  let udpSent = 0, tcpSent = 0, uniq = 0, stallNext = 0;
  const name = (i: number, repeat: boolean) =>
    repeat ? `r${(i >> 1) % o.repeatNames}.cache.test.` : `u${uniq++}-${o.tag}.soak.test.`;
  const endMs = o.seconds * 1000;
  await new Promise<void>((resolve) => {
    let last = now();
    const tick = setInterval(() => {
      const t = now();
      if (t >= endMs || stopped()) {
        clearInterval(tick);
        resolve();
        return;
      }
      const s = t / 1000;
      let burst = 0;
      for (let k = pace.udp.due(s); k > 0; k--, udpSent++, burst++) {
        const repeat = udpSent % 2 === 0;
        const rec = newRec(t0, repeat ? "UDP repeated" : "UDP unique");
        recs.push(rec);
        udp[udpSent % o.udpSockets].send(name(udpSent, repeat), rec);
      }
      for (let k = pace.tcp.due(s); k > 0; k--, tcpSent++) {
        const repeat = tcpSent % 2 === 0;
        const rec = newRec(t0, repeat ? "TCP repeated" : "TCP unique");
        if (tcp[tcpSent % o.tcpConns].send(name(tcpSent, repeat), rec)) recs.push(rec);
      }
      for (let k = pace.garbage.due(s); k > 0; k--, burst++) junk.send();
      for (let k = pace.junk.due(s); k > 0; k--) {
        if (junkTcp.active < o.maxJunkTcp) junkTcp.open();
      }
      ticks.t.push(t);
      ticks.gap.push(t - last);
      ticks.burst.push(burst);
      last = t;
      if (Math.floor(t / 250) !== Math.floor((t - 10) / 250)) {
        for (const u of udp) u.sweep();
        for (const c of tcp) c.sweep();
      }
      if (stallNext < o.stalls.length && t >= o.stalls[stallNext][0]) {
        const until = performance.now() + o.stalls[stallNext++][1];
        while (performance.now() < until) { /* a synthetic generator stall */ }
      }
    }, TICK_MS);
    cleanups.push(() => clearInterval(tick));
  });
  return { ticks, pace };
}

if (import.meta.main) {
  Deno.exit(await soak(Deno.args));
}
