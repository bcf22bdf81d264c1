/**
 * Flood run: can a well-behaved client still get answers while another client floods dotproxy?
 * dotproxy runs as a real process (pinned to CPU 0 when there are two or more) in front of real
 * unbound over DNS-over-TLS; everything else runs on CPU 1.
 *
 * In every phase a good client sends valid queries at a steady rate from 127.0.0.3 and up (each
 * address below the limit) while 127.0.0.2 floods. Phases 1a and 1b run with `[rate_limit]
 * qps = 50, burst = 100, ipv4_prefix = 32, action = "truncate"`: in 1a dnsperf floods valid
 * queries (closed loop, many outstanding) with `slip = 1`, so that every query over the limit is
 * answered TC=1 (with the default slip 2 half get no answer and dnsperf's closed loop stalls on
 * timeouts: about 110 queries/s, no flood); in 1b an open-loop Deno sender (a child process) floods
 * half valid queries, half garbage as fast as it can, with the default slip. Phase 2 runs without
 * rate limiting and the Deno sender floods garbage only. Phase 3 (no rate limit) is no flood: 300/s well-formed queries
 * whose QTYPE is a meta-type. Forwarded, unbound answers them FORMERR, but only 100 error answers
 * a second; beyond that it drops them and so closes the DoT connection (dotproxy answers them
 * itself since 3eb80a7; this phase checks that they cost other clients nothing). (dnsperf and the
 * open-loop sender are not combined: the sender overflows dotproxy's socket, and dnsperf then
 * spends its slots waiting out timeouts.)
 * Loopback only; bounded; every process started is stopped.
 *
 *   deno run -A bench/flood.ts [--seconds 30] [--good-qps 200] [--good-clients 5]
 *     [--flood-pps 0] [--outstanding 200] [--phases 1a,1b,2,3] [--quiet-wait 300]
 *
 * Narrower, from the project root (one --allow-net host per good client address):
 *
 *   deno run --allow-net=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7 \
 *     --allow-read=. --allow-write=/tmp \
 *     --allow-run="$(readlink -f "$(command -v deno)")",unbound,sh,dnsperf,taskset bench/flood.ts
 *
 * The good client uses several addresses because one /32 is allowed 50 qps: 200 qps from one
 * address would be mostly truncated by design. --flood-pps caps the Deno sender (0: as fast as
 * it can); --outstanding is dnsperf's -q. Exit code: 0 pass, 1 the good client got fewer than
 * 99% of its queries answered in a phase (or dotproxy crashed), 2 usage. See ROBUSTNESS.md.
 */
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { findTool } from "../tests/helpers/tools.ts";
import { freePort, startUnbound, type Unbound } from "../tests/helpers/unbound.ts";
import { numArg, sleep, startWatchdog } from "./lib/cli.ts";
import { drain, newRec, type Rec, receiveEach, UdpDns } from "./lib/clients.ts";
import { garbage, GARBAGE_KINDS, metaQuery } from "./lib/garbage.ts";
import { Pacer, type Tally, tally } from "./lib/load.ts";
import {
  cpuLine,
  CpuMeter,
  loopbackKey,
  procSnapshot,
  udpDrops,
  waitForQuiet,
} from "./lib/procfs.ts";
import { type Child, pin, type Proxy, ROOT, spawnChild, startProxy } from "./lib/process.ts";
import { ms, n, pct, quantile, summarizeLog } from "./lib/report.ts";
import { lines, type Sample, scrape, total } from "./lib/scrape.ts";

const FLOODER = "127.0.0.2";
const GOOD_BASE = 3; // good clients are 127.0.0.3, 127.0.0.4, ...
const RATE_LIMIT_TOML =
  '[rate_limit]\nqps = 50\nburst = 100\nipv4_prefix = 32\naction = "truncate"\n';
const RATE_LIMIT_SLIP_1_TOML = `${RATE_LIMIT_TOML}slip = 1\n`;

// ---------------------------------------------------------------------------------------------
// The open-loop sender (run as a child process: `flood.ts --sender ...`)

/** What a sender child reports on its last stdout line. */
interface SenderReport {
  sent: number;
  seconds: number;
  replies: number;
  tc: number;
  rcodes: Record<string, number>;
  sendErrors: number;
}

/** What a sender sends: see `sender`. */
type Mix = "mixed" | "garbage" | "meta";

/**
 * Sends datagrams from `bind` to 127.0.0.1:`port` for `seconds`, up to 64 sends in flight, at
 * most `pps` per second (0: unlimited): with `mix` "mixed", a pool of valid queries and garbage;
 * "garbage", garbage only; "meta", meta-type queries (metaQuery). Counts what comes back and
 * prints a SenderReport as JSON.
 */
async function sender(args: string[]): Promise<number> {
  const val = (name: string) => args[args.indexOf(`--${name}`) + 1];
  const bind = val("bind");
  const port = Number(val("port"));
  const seconds = Number(val("seconds"));
  const pps = Number(val("pps"));
  const mix = val("mix");
  if (!/^127\./.test(bind)) throw new Error("the sender binds to loopback only");
  const pool: Uint8Array[] = [];
  for (let i = 0; i < 4096; i++) {
    if (mix === "mixed" && i % 2 === 0) {
      pool.push(buildQuery(`f${i % 1000}.flood.test.`, "A", (i * 7919) & 0xffff));
    } else pool.push(garbage(GARBAGE_KINDS[i % GARBAGE_KINDS.length]));
  }
  const tag = Math.random().toString(36).slice(2, 8);
  const next = mix === "meta" ? (i: number) => metaQuery(i, tag) : (i: number) => pool[i & 4095];
  const batch = pps > 0 ? Math.max(1, Math.min(64, Math.ceil(pps / 1000))) : 64;
  const sock = Deno.listenDatagram({ transport: "udp", hostname: bind, port: 0 });
  const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  const r: SenderReport = { sent: 0, seconds: 0, replies: 0, tc: 0, rcodes: {}, sendErrors: 0 };
  const receiving = receiveEach(sock, (d) => {
    r.replies++;
    if (d.length >= 4) {
      if (d[2] & 0x02) r.tc++;
      const rc = String(d[3] & 0x0f);
      r.rcodes[rc] = (r.rcodes[rc] ?? 0) + 1;
    }
  });
  const onErr = () => r.sendErrors++;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const window: Promise<unknown>[] = new Array(batch);
  for (let now = t0; now < end; now = performance.now()) {
    if (pps > 0 && r.sent >= (pps * (now - t0)) / 1000) {
      await sleep(1);
      continue;
    }
    for (let k = 0; k < batch; k++) window[k] = sock.send(next(r.sent++), to).catch(onErr);
    await Promise.all(window);
  }
  r.seconds = (performance.now() - t0) / 1000;
  await sleep(300); // the last replies
  sock.close();
  await receiving;
  console.log(JSON.stringify(r));
  return 0;
}

/** Starts a sender child on CPU 1 (inherited); its report comes when it ends. */
function spawnSender(port: number, seconds: number, pps: number, mix: Mix): Child<SenderReport> {
  const args = [
    "run",
    `--allow-net=127.0.0.1,${FLOODER}`,
    new URL(import.meta.url).pathname,
    "--sender",
    ...["--bind", FLOODER, "--port", String(port), "--seconds", String(seconds)],
    ...["--pps", String(pps), "--mix", mix],
  ];
  return spawnChild(Deno.execPath(), args, (stdout, stderr) => {
    try {
      return JSON.parse(stdout.trim().split("\n").pop() ?? "") as SenderReport;
    } catch {
      throw new Error(`sender failed: ${stderr}`);
    }
  }, ROOT);
}

// ---------------------------------------------------------------------------------------------
// dnsperf

interface DnsperfReport {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  rcodes: string;
}

/** Runs dnsperf from FLOODER for `seconds` over `names`; its statistics come when it ends. */
function spawnDnsperf(
  bin: string,
  port: number,
  names: string,
  seconds: number,
  outstanding: number,
): Child<DnsperfReport> {
  const args = [
    ...["-s", "127.0.0.1", "-p", String(port), "-a", FLOODER, "-d", names],
    ...["-c", "20", "-q", String(outstanding), "-l", String(seconds), "-t", "5"],
  ];
  return spawnChild(bin, args, (text, stderr) => {
    const num = (re: RegExp) => Number(text.match(re)?.[1] ?? NaN);
    const r = {
      sent: num(/Queries sent:\s+(\d+)/),
      completed: num(/Queries completed:\s+(\d+)/),
      lost: num(/Queries lost:\s+(\d+)/),
      qps: num(/Queries per second:\s+([\d.]+)/),
      rcodes: text.match(/Response codes:\s+(.*)/)?.[1] ?? "",
    };
    if (Number.isNaN(r.sent)) throw new Error(`dnsperf failed: ${text}${stderr}`);
    return r;
  });
}

// ---------------------------------------------------------------------------------------------
// A phase

/** One phase: dotproxy's extra config and who floods it. */
interface PhaseSpec {
  id: string;
  title: string;
  toml: string;
  /** dnsperf from FLOODER (closed loop), valid queries. */
  dnsperf: boolean;
  /** The open-loop Deno sender from FLOODER, and what it sends. */
  sender: Mix | null;
  /** The sender's rate in this phase, if not --flood-pps. */
  pps?: number;
}

const PHASES: PhaseSpec[] = [
  {
    id: "1a",
    title:
      "Phase 1a: rate limit (qps 50, burst 100, /32, truncate, slip 1); dnsperf floods valid queries",
    toml: RATE_LIMIT_SLIP_1_TOML,
    dnsperf: true,
    sender: null,
  },
  {
    id: "1b",
    title:
      "Phase 1b: rate limit as in 1a but slip 2; open-loop Deno sender floods ½ valid, ½ garbage",
    toml: RATE_LIMIT_TOML,
    dnsperf: false,
    sender: "mixed",
  },
  {
    id: "2",
    title: "Phase 2: no rate limit; open-loop Deno sender floods garbage",
    toml: "",
    dnsperf: false,
    sender: "garbage",
  },
  {
    id: "3",
    title: "Phase 3: no rate limit; 300/s well-formed queries with a meta QTYPE (41, 128-248)",
    toml: "",
    dnsperf: false,
    sender: "meta",
    pps: 300,
  },
];

/** Settings shared by every phase. */
interface RunOptions {
  upstreamPort: number;
  seconds: number;
  goodQps: number;
  goodClients: number;
  floodPps: number;
  outstanding: number;
  dnsperfBin: string | null;
  pinned: boolean;
  quietWait: number;
  /** Cleanups for the watchdog. */
  cleanups: Set<() => unknown>;
  /** unbound's log so far. */
  upstreamLog: () => string;
}

/** A running flooder: its pid and, when it ends, a row for the report. */
interface Flooder extends Child<{ sent: number; row: string; note: string }> {
  label: string;
}

function startDnsperf(o: RunOptions, port: number, names: string): Flooder {
  const run = spawnDnsperf(o.dnsperfBin!, port, names, o.seconds, o.outstanding);
  return {
    pid: run.pid,
    label: "dnsperf",
    kill: run.kill,
    done: run.done.then((dp) => ({
      sent: dp.sent,
      row: `| dnsperf -c 20 -q ${o.outstanding}, valid queries (closed loop) | ${n(dp.sent)} | ` +
        `${n(dp.qps)} | ${n(dp.completed)} (${n(dp.lost)} lost) |`,
      note: `dnsperf response codes: ${dp.rcodes}`,
    })),
  };
}

function startSender(o: RunOptions, port: number, mix: Mix, pps = o.floodPps): Flooder {
  const run = spawnSender(port, o.seconds, pps, mix);
  const what = mix === "mixed"
    ? "½ valid queries, ½ garbage"
    : mix === "meta"
    ? "meta-type queries (QTYPE 41, 128-248)"
    : "garbage";
  const cap = pps ? `, capped at ${n(pps)}/s` : ", uncapped";
  return {
    pid: run.pid,
    label: "Deno flood sender",
    kill: run.kill,
    done: run.done.then((sr) => ({
      sent: sr.sent,
      row: `| Deno sender, ${what} (open loop${cap}) | ${n(sr.sent)} | ` +
        `${n(sr.sent / sr.seconds)} | ${n(sr.replies)} (TC=1: ${n(sr.tc)}) |`,
      note: `Deno sender reply rcodes: ${
        Object.entries(sr.rcodes).map(([k, v]) => `${k}: ${n(v)}`).join(", ")
      }`,
    })),
  };
}

/** Runs one phase and prints its report; true if the good client got ≥ 99% answered. */
async function phase(spec: PhaseSpec, o: RunOptions): Promise<boolean> {
  console.log(`\n## ${spec.title}\n`);
  const waited = await waitForQuiet(o.quietWait);
  console.log(`(waited ${waited.toFixed(0)} s for other processes to be quiet)\n`);
  let proxy: Proxy | null = await startProxy(o.upstreamPort, spec.toml);
  const tmp = await Deno.makeTempDir({ dir: "/tmp", prefix: "dotproxy-flood-" });
  const good: UdpDns[] = [];
  const floods: Flooder[] = [];
  const cleanup = async () => {
    for (const f of floods) f.kill();
    for (const g of good) g.close();
    await proxy?.stop();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  };
  o.cleanups.add(cleanup);
  try {
    const pid = proxy.pid;
    if (o.pinned) await pin(pid, 0);
    let crashed: number | null = null;
    proxy.cli.child.status.then((s) => crashed = s.code);

    // Warm the good client's repeated names (from 127.0.0.1, so no good address's budget).
    const warm = new UdpDns("127.0.0.1", proxy.dns);
    for (let i = 0; i < 100; i++) await warm.ask(`r${i}.good.test.`, 1000);
    warm.close();
    for (let k = 0; k < o.goodClients; k++) {
      good.push(new UdpDns(`127.0.0.${GOOD_BASE + k}`, proxy.dns));
    }
    const before = await scrape(proxy.adminPort);
    const upstreamLogAt = o.upstreamLog().length;
    const drops0 = await udpDrops();

    if (spec.dnsperf) {
      const names = `${tmp}/names.txt`;
      await Deno.writeTextFile(
        names,
        Array.from({ length: 1000 }, (_, i) => `d${i}.flood.test A\n`).join(""),
      );
      floods.push(startDnsperf(o, proxy.dns.port, names));
    }
    if (spec.sender) floods.push(startSender(o, proxy.dns.port, spec.sender, spec.pps));

    const cpu = new CpuMeter(await procSnapshot(pid));
    const cpuNames: Record<number, string> = { [pid]: o.pinned ? "dotproxy (CPU 0)" : "dotproxy" };
    for (const f of floods) cpuNames[f.pid] = f.label;
    let rssMax = 0;
    const sampler = setInterval(async () => {
      const snap = await procSnapshot(pid);
      cpu.sample(snap);
      rssMax = Math.max(rssMax, snap.rssKiB || 0);
    }, 1000);

    const recs = await runGoodClient(o, good, () => crashed !== null);
    clearInterval(sampler);
    cpu.sample(await procSnapshot(pid));
    const flooded = await Promise.all(floods.map((f) => f.done));
    await drain(good, 200);
    const after = await scrape(proxy.adminPort).catch(() => [] as Sample[]);
    const drops = await udpDrops();
    const dropped = (key: string) => (drops.get(key) ?? 0) - (drops0.get(key) ?? 0);
    const proxyDrops = dropped(`127.0.0.1:${proxy.dns.port}`);
    const goodDrops = good.reduce((a, g) => a + dropped(loopbackKey(g.sock)), 0);

    // ---- Report
    const all = tally(recs);
    printFlood(o, flooded, before, after, all, proxyDrops);
    printGoodClient(o, recs, all);
    console.log(
      `\nUDP datagrams dropped by the kernel at a full receive buffer: dotproxy's socket ` +
        `${n(proxyDrops)}, the good client's sockets ${n(goodDrops)}`,
    );
    console.log(`CPU during the flood (% of one core): ${cpuLine(cpu.report(cpuNames))}`);
    console.log(`dotproxy max RSS: ${(rssMax / 1024).toFixed(1)} MiB`);
    console.log("/metrics at the end:");
    for (
      const name of [
        "dotproxy_rate_limited_total",
        "dotproxy_dropped_queries_total",
        "dotproxy_queries_shed_total",
        "dotproxy_upstream_errors_total",
        "dotproxy_cache_hits_total",
        "dotproxy_cache_misses_total",
      ]
    ) {
      const l = lines(after, name);
      if (l.length) console.log(l.join("\n"));
    }

    let pass = all.noerror / Math.max(1, all.sent) >= 0.99;
    if (!pass) {
      console.log(`FAIL: the good client got ${pct(all.noerror, all.sent)} answered (< 99%)`);
    }
    if (crashed !== null) {
      pass = false;
      console.log(`FAIL: dotproxy exited during the phase (code ${crashed})`);
    }
    const code = await proxy.stop();
    const output = proxy.cli.output().trim();
    proxy = null;
    if (code !== 0) {
      pass = false;
      console.log(`FAIL: dotproxy exited with ${code} on SIGTERM`);
    }
    const logged = output ? output.split("\n") : [];
    console.log(`dotproxy stopped (exit ${code}); logged ${logged.length} lines (level warning)`);
    for (const l of summarizeLog(logged)) console.log(`  ${l}`);
    const upLog = o.upstreamLog().slice(upstreamLogAt).trim();
    const upLines = upLog ? upLog.split("\n") : [];
    console.log(`unbound logged ${upLines.length} lines during the phase`);
    for (const l of summarizeLog(upLines)) console.log(`  ${l}`);
    console.log(`Phase ${spec.id}: ${pass ? "PASS" : "FAIL"}`);
    return pass;
  } finally {
    await cleanup();
    o.cleanups.delete(cleanup);
  }
}

/**
 * The good client: half repeated names (cache), half unique ones (upstream), at `goodQps` over
 * the good addresses in turn, every 5 ms sending what is due (catch-up pacing), until the
 * phase's time is up or `stopped()`.
 */
async function runGoodClient(o: RunOptions, good: UdpDns[], stopped: () => boolean) {
  const tag = Math.random().toString(36).slice(2, 8);
  const recs: Rec[] = [];
  const pace = new Pacer(o.goodQps, Infinity);
  const t0 = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const t = performance.now() - t0;
      if (t >= o.seconds * 1000 || stopped()) {
        clearInterval(tick);
        resolve();
        return;
      }
      for (let k = pace.due(t / 1000); k > 0; k--, sent++) {
        const repeat = sent % 2 === 0;
        const name = repeat ? `r${(sent >> 1) % 100}.good.test.` : `u${sent}-${tag}.good.test.`;
        const rec = newRec(t0, repeat ? "repeated" : "unique");
        recs.push(rec);
        good[sent % o.goodClients].send(name, rec);
      }
      for (const g of good) g.sweep();
    }, 5);
  });
  return recs;
}

/**
 * The flooders' table and what became of the flood: every datagram dotproxy reads is either
 * answered (dotproxy_queries_total) or dropped (dotproxy_dropped_queries_total); the good
 * client's share (`good`) is taken out of the first.
 */
function printFlood(
  o: RunOptions,
  flooded: Awaited<Flooder["done"]>[],
  before: Sample[],
  after: Sample[],
  good: Tally,
  proxyDrops: number,
): void {
  const { seconds } = o;
  const floodSent = flooded.reduce((a, f) => a + f.sent, 0);
  const delta = (name: string, match: Record<string, string> = {}) =>
    total(after, name, match) - total(before, name, match);
  console.log("| flooder (from 127.0.0.2) | sent | rate (/s) | replies it read |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const f of flooded) console.log(f.row);
  const answered = delta("dotproxy_queries_total", { protocol: "udp" }) - good.sent + good.lost;
  const dropName = "dotproxy_dropped_queries_total";
  const droppedByProxy = delta(dropName, { protocol: "udp" });
  const read = answered + droppedByProxy;
  // Each reason dotproxy reports, so a reason added later shows up here without a change.
  const dropReasons = [
    ...new Set(after.filter((x) => x.name === dropName).map((x) => x.labels.reason)),
  ]
    .map((reason) => ({ reason, v: delta(dropName, { protocol: "udp", reason }) }))
    .filter(({ v }) => v !== 0)
    .map(({ reason, v }) => `${reason} ${n(v)}`);
  console.log(
    `\nFlood: ${n(floodSent)} datagrams in ${seconds} s (${n(floodSent / seconds)}/s). ` +
      `dotproxy read ${n(read)} of them (${n(read / seconds)}/s): answered ${n(answered)} ` +
      `(rate limit: ${
        n(delta("dotproxy_rate_limited_total", { protocol: "udp" }))
      } turned away — TC=1 or nothing), dropped ${n(droppedByProxy)} (${
        dropReasons.join(", ") || "none"
      }). No answer at all: ${n(floodSent - answered)} (${
        pct(floodSent - answered, floodSent)
      }). The kernel dropped ${n(proxyDrops)} datagrams at dotproxy's full receive buffer ` +
      `(the good client's included). ${flooded.map((f) => f.note).join("; ")}`,
  );
}

/** The good client's table: all its queries, then repeated and unique names. */
function printGoodClient(o: RunOptions, recs: Rec[], all: Tally): void {
  const { goodQps, goodClients } = o;
  console.log(
    `\n| good client (${goodClients} × ${n(goodQps / goodClients)} qps from ` +
      `127.0.0.${GOOD_BASE}-${GOOD_BASE + goodClients - 1}) | sent | NOERROR | TC=1 | ` +
      "SERVFAIL | other | lost | p50 ms | p99 ms |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const row = (label: string, t: Tally) =>
    console.log(
      `| ${label} | ${n(t.sent)} | ${n(t.noerror)} (${pct(t.noerror, t.sent)}) | ${n(t.tc)} | ` +
        `${n(t.servfail)} | ${n(t.other)} | ${n(t.lost)} | ${ms(quantile(t.lat, 0.5))} | ` +
        `${ms(quantile(t.lat, 0.99))} |`,
    );
  row("all", all);
  for (const cls of ["repeated", "unique"]) row(cls, tally(recs.filter((r) => r.cls === cls)));
}

async function flood(args: string[]): Promise<number> {
  const seconds = numArg(args, "seconds", 30);
  const goodQps = numArg(args, "good-qps", 200);
  const goodClients = Math.max(1, Math.round(numArg(args, "good-clients", 5)));
  const floodPps = numArg(args, "flood-pps", 0);
  const outstanding = numArg(args, "outstanding", 200);
  const quietWait = numArg(args, "quiet-wait", 300);
  const pi = args.indexOf("--phases");
  const wanted = pi >= 0 ? args[pi + 1].split(",") : PHASES.map((p) => p.id);
  const dnsperfBin = await findTool("dnsperf");
  const phases = PHASES.filter((p) => wanted.includes(p.id) && (!p.dnsperf || dnsperfBin));
  if (phases.length === 0) {
    console.error(`--phases: pick from ${PHASES.map((p) => p.id)} (1a needs dnsperf)`);
    return 2;
  }
  if (goodQps / goodClients >= 50) {
    console.log(
      `note: ${goodQps / goodClients} qps per good address is not below the 50 qps limit, so ` +
        "the rate-limited phases truncate the good client too (use more --good-clients)",
    );
  }
  // dotproxy on CPU 0 (pinned after it starts); this process and its other children on CPU 1.
  const pinned = await pin(Deno.pid, 1);
  console.log(
    `flood: ${seconds} s per phase (${phases.map((p) => p.id).join(", ")}); good client ` +
      `${goodQps} qps over ${goodClients} addresses; ${
        pinned ? "dotproxy pinned to CPU 0, everything else to CPU 1" : "no CPU pinning"
      }; ${navigator.hardwareConcurrency} CPUs`,
  );

  const upstreamPort = freePort();
  const unbound: Unbound = await startUnbound({ port: upstreamPort });
  const cleanups = new Set<() => unknown>();
  const budget = phases.length * (seconds + quietWait + 90) + 60;
  const cancelWatchdog = startWatchdog("flood", budget, async () => {
    for (const c of cleanups) await Promise.resolve().then(c).catch(() => {});
    await unbound.stop();
  });
  const o: RunOptions = {
    ...{ upstreamPort, seconds, goodQps, goodClients, floodPps, outstanding, dnsperfBin },
    ...{ pinned, quietWait, cleanups, upstreamLog: () => unbound.log() },
  };
  const results: string[] = [];
  try {
    for (const p of phases) results.push(`${p.id} ${(await phase(p, o)) ? "PASS" : "FAIL"}`);
  } finally {
    await unbound.stop();
    cancelWatchdog();
  }
  const pass = results.every((r) => r.endsWith("PASS"));
  console.log(`\nflood: ${pass ? "PASS" : "FAIL"} (${results.join(", ")})`);
  return pass ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(Deno.args.includes("--sender") ? await sender(Deno.args) : await flood(Deno.args));
}
