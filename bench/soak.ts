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
 * Also a small library for bench/flood.ts (everything exported here).
 */
import { buildQuery, TcpDnsClient } from "../tests/helpers/dns_client.ts";
import { type RunningProxy, spawnCli } from "../tests/helpers/process.ts";
import { findTool, freePort, startUnbound, type Unbound } from "../tests/helpers/unbound.ts";

/** The project root, with a trailing slash. */
export const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
/** The test CA that signed unbound's certificate (for `dns.test`). */
export const CA = `${ROOT}tests/fixtures/ca.pem`;
/** A client waits this long for an answer before counting the query as lost. */
export const LOST_AFTER_MS = 5000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Command line

/** Reads `--name N` (a positive number) from `args`, or returns the default. Exits 2 if bad. */
export function numArg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(args[i + 1]);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${name} needs a non-negative number`);
    Deno.exit(2);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// dotproxy as a process

/** A running dotproxy and where it listens. */
export interface Proxy {
  cli: RunningProxy;
  pid: number;
  dns: { hostname: string; port: number };
  adminPort: number;
  /** SIGTERM, then SIGKILL after 10 s; resolves with the exit code; removes the temp dir. */
  stop(): Promise<number>;
}

/** A UDP port and the same TCP port, both free a moment ago. */
function freeUdpTcpPort(): number {
  for (let i = 0; i < 20; i++) {
    const port = freePort();
    try {
      Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port }).close();
      return port;
    } catch { /* taken for UDP: try another */ }
  }
  throw new Error("no free UDP+TCP port");
}

/**
 * Starts `deno run --allow-net --allow-read=<root>,<tmp> main.ts --config <tmp>/dotproxy.toml`
 * with UDP+TCP listeners on one port of 127.0.0.1, the admin listener, log level warning, one
 * DoT upstream (unbound on `upstreamPort`, tls_name dns.test, the test CA) and `extraToml`.
 * Resolves once a query under `test.` is answered NOERROR.
 */
export async function startProxy(upstreamPort: number, extraToml = ""): Promise<Proxy> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "dotproxy-robust-" });
  const port = freeUdpTcpPort();
  const adminPort = freePort();
  const config = `${dir}/dotproxy.toml`;
  await Deno.writeTextFile(
    config,
    [
      "[[listeners]]",
      `url = "udp://127.0.0.1:${port}"`,
      "[[listeners]]",
      `url = "tcp://127.0.0.1:${port}"`,
      "[[upstreams]]",
      `url = "tls://127.0.0.1:${upstreamPort}"`,
      'tls_name = "dns.test"',
      `ca_file = "${CA}"`,
      "[admin]",
      `address = "127.0.0.1:${adminPort}"`,
      "[log]",
      'level = "warning"',
      extraToml,
      "",
    ].join("\n"),
  );
  let cli: RunningProxy;
  try {
    cli = spawnCli(["--config", config], [dir]);
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
  const dns = { hostname: "127.0.0.1", port };
  let exited = false;
  cli.child.status.then(() => exited = true);
  const stop = async () => {
    const timer = setTimeout(() => {
      try {
        cli.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 10_000);
    const code = await cli.stop("SIGTERM");
    clearTimeout(timer);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return code;
  };
  const probe = new UdpDns("127.0.0.1", dns);
  try {
    for (let i = 0; i < 300; i++) {
      if (exited) throw new Error(`dotproxy exited at start:\n${cli.output()}`);
      const r = await probe.ask(`ready-${i}.test.`, 200);
      if (r.rcode === 0) {
        return { cli, pid: cli.child.pid, dns, adminPort, stop };
      }
    }
    throw new Error(`dotproxy did not answer within 60 s:\n${cli.output()}`);
  } catch (err) {
    await stop();
    throw err;
  } finally {
    probe.close();
  }
}

/** Stops unbound (SIGTERM, as the helper does) and starts it again on the same port. */
export async function restartUnbound(port: number): Promise<Unbound> {
  let last: unknown;
  for (let i = 0; i < 10; i++) {
    try {
      return await startUnbound({ port });
    } catch (err) {
      last = err;
      await sleep(200);
    }
  }
  throw last;
}

// ---------------------------------------------------------------------------------------------
// Measuring

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

/** The p-quantile (0-1) of ascending `sorted`, nearest rank; NaN when empty. */
export function quantile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** Formats milliseconds with 2 decimals ("-" for NaN). */
export const ms = (v: number) => Number.isNaN(v) ? "-" : v.toFixed(2);
/** Formats a count with thousands separators. */
export const n = (v: number) => Math.round(v).toLocaleString("en-US");
/** Formats a ratio as a percentage. */
export const pct = (part: number, whole: number) =>
  whole === 0 ? "-" : `${(100 * part / whole).toFixed(part === whole ? 0 : 2)}%`;

interface ProcTimes {
  ppid: number;
  comm: string;
  ticks: number;
}

/** What /proc says about every process, and about one process in particular. */
export interface ProcSnapshot {
  /** Every process: parent, command name, utime+stime in ticks. */
  procs: Map<number, ProcTimes>;
  /** VmRSS of the process asked about, in KiB (NaN if it is gone). */
  rssKiB: number;
}

let procViaShell = false;

/**
 * Reads /proc/[0-9]*\/stat and /proc/PID/status. Deno 2 lets only --allow-all read /proc, so
 * without it this goes through `sh -c cat` (one process per call).
 */
export async function procSnapshot(pid: number): Promise<ProcSnapshot> {
  let stats: string[];
  let status = "";
  if (!procViaShell) {
    try {
      stats = [];
      for (const e of Deno.readDirSync("/proc")) {
        if (!/^\d+$/.test(e.name)) continue;
        try {
          stats.push(Deno.readTextFileSync(`/proc/${e.name}/stat`));
        } catch (err) {
          if (err instanceof Deno.errors.NotCapable) throw err;
        }
      }
      try {
        status = Deno.readTextFileSync(`/proc/${pid}/status`);
      } catch (err) {
        if (err instanceof Deno.errors.NotCapable) throw err;
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotCapable)) throw err;
      procViaShell = true;
    }
  }
  if (procViaShell) {
    const out = await new Deno.Command("sh", {
      args: ["-c", 'cat /proc/[0-9]*/stat; echo "@@@"; cat "/proc/$1/status"', "sh", String(pid)],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const at = text.indexOf("@@@\n");
    stats = text.slice(0, Math.max(0, at)).split("\n");
    status = at >= 0 ? text.slice(at + 4) : "";
  }
  const procs = new Map<number, ProcTimes>();
  for (const s of stats!) {
    const open = s.indexOf("(");
    const close = s.lastIndexOf(")");
    if (open < 0 || close < 0) continue;
    const f = s.slice(close + 2).split(" ");
    procs.set(Number(s.slice(0, open)), {
      comm: s.slice(open + 1, close),
      ppid: Number(f[1]),
      ticks: Number(f[11]) + Number(f[12]),
    });
  }
  const m = status.match(/^VmRSS:\s+(\d+)\s+kB/m);
  return { procs, rssKiB: m ? Number(m[1]) : NaN };
}

/** Reads a /proc file directly (with -A) or through `sh -c cat` (see procSnapshot). */
async function readProcFile(path: string): Promise<string> {
  if (!procViaShell) {
    try {
      return Deno.readTextFileSync(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotCapable)) throw err;
      procViaShell = true;
    }
  }
  const out = await new Deno.Command("sh", {
    args: ["-c", 'cat "$1"', "sh", path],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout);
}

/**
 * Datagrams the kernel dropped at full receive buffers, per local IPv4 UDP socket (the "drops"
 * column of /proc/net/udp), keyed "address:port".
 */
export async function udpDrops(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await readProcFile("/proc/net/udp")).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 13) continue;
    const [ip, port] = f[1].split(":");
    const a = parseInt(ip, 16);
    const addr = [a & 255, (a >> 8) & 255, (a >> 16) & 255, a >>> 24].join(".");
    const key = `${addr}:${parseInt(port, 16)}`;
    out.set(key, (out.get(key) ?? 0) + Number(f[f.length - 1]));
  }
  return out;
}

/** The machine-wide UDP RcvbufErrors counter (/proc/net/snmp). */
export async function udpRcvbufErrors(): Promise<number> {
  const rows = (await readProcFile("/proc/net/snmp")).split("\n").filter((l) =>
    l.startsWith("Udp:")
  );
  if (rows.length < 2) return NaN;
  const names = rows[0].split(/\s+/);
  return Number(rows[1].split(/\s+/)[names.indexOf("RcvbufErrors")]);
}

/**
 * Machine-wide CPU time from /proc/stat in ticks (1/100 s): busy (user, nice, system, irq,
 * softirq, steal) and steal alone (time the hypervisor gave this VM's vCPUs to someone else).
 */
export async function cpuStat(): Promise<{ busy: number; steal: number }> {
  const line = (await readProcFile("/proc/stat")).split("\n").find((l) => l.startsWith("cpu "));
  const f = (line ?? "").trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 8) return { busy: NaN, steal: NaN };
  const [user, nice, system, , , irq, softirq, steal] = f;
  return { busy: user + nice + system + irq + softirq + steal, steal };
}

/**
 * Waits (up to `maxS` seconds) until the other processes on the machine have used less than
 * 15% of a core for 3 s in a row, so other benchmarks neither disturb this run nor are
 * disturbed by it. Returns the seconds waited.
 */
export async function waitForQuiet(maxS: number): Promise<number> {
  const start = performance.now();
  let quiet = 0;
  while ((performance.now() - start) / 1000 < maxS) {
    const cpu = new CpuMeter(await procSnapshot(Deno.pid));
    await sleep(1000);
    cpu.sample(await procSnapshot(Deno.pid));
    const others = cpu.report().get("other processes") ?? 0;
    quiet = others < 15 ? quiet + 1 : 0;
    if (quiet >= 3) break;
  }
  return (performance.now() - start) / 1000;
}

/**
 * CPU time (utime+stime, all threads, from /proc/PID/stat) of this process's descendants by
 * command name, of this process itself, and of every other process on the machine. Feed it
 * snapshots periodically so processes that exit (a restarted unbound) are still counted.
 */
export class CpuMeter {
  #first = new Map<number, number>();
  #last = new Map<number, { ticks: number; group: string }>();
  #t0 = performance.now();
  #t1 = this.#t0;
  #tick = 100; // USER_HZ on Linux

  constructor(first: ProcSnapshot) {
    this.sample(first);
  }

  /** Adds a snapshot (from procSnapshot). */
  sample({ procs }: ProcSnapshot): void {
    const self = Deno.pid;
    const groupOf = (pid: number): string => {
      if (pid === self) return "bench (this process)";
      let p = procs.get(pid);
      const comm = p?.comm ?? "?";
      for (let hops = 0; p && hops < 10; hops++) {
        if (p.ppid === self) return comm;
        p = procs.get(p.ppid);
      }
      return "other processes";
    };
    const initial = this.#last.size === 0;
    for (const [pid, p] of procs) {
      if (!this.#first.has(pid)) this.#first.set(pid, initial ? p.ticks : 0);
      const prev = this.#last.get(pid);
      this.#last.set(pid, {
        ticks: p.ticks,
        group: prev?.group === "other processes" || !prev ? groupOf(pid) : prev.group,
      });
    }
    this.#t1 = performance.now();
  }

  /** Percent of one core per group over the period measured (named `names[pid]` if given). */
  report(names: Record<number, string> = {}): Map<string, number> {
    const secs = (this.#t1 - this.#t0) / 1000;
    const out = new Map<string, number>();
    for (const [pid, { ticks, group }] of this.#last) {
      const used = ticks - (this.#first.get(pid) ?? 0);
      if (used <= 0) continue;
      const g = names[pid] ?? group;
      out.set(g, (out.get(g) ?? 0) + (100 * used) / this.#tick / secs);
    }
    return out;
  }
}

/** Formats a CpuMeter report as one line: "dotproxy 42%, unbound 5%, ...". */
export function cpuLine(cpu: Map<string, number>): string {
  return [...cpu].sort((a, b) => b[1] - a[1]).filter(([, v]) => v >= 0.5)
    .map(([k, v]) => `${k} ${v.toFixed(0)}%`).join(", ");
}

/** Pins every thread of `pid` to CPU `cpu` with taskset, if there are ≥ 2 CPUs and taskset. */
export async function pin(pid: number, cpu: number): Promise<boolean> {
  if (navigator.hardwareConcurrency < 2) return false;
  const taskset = await findTool("taskset");
  if (!taskset) return false;
  const out = await new Deno.Command(taskset, {
    args: ["-a", "-p", "-c", String(cpu), String(pid)],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}

// ---------------------------------------------------------------------------------------------
// Clients

/** The outcome of one query. `ms` is -1 while unanswered; `lost` once LOST_AFTER_MS passed. */
export interface Rec {
  /** Sent at, ms since the run's start. */
  t: number;
  /** Which stream of queries (for the report). */
  cls: string;
  ms: number;
  rcode: number;
  tc: boolean;
  lost: boolean;
  /** Answered, but after LOST_AFTER_MS. */
  late: boolean;
  /** The answer's question section differed from the query's. */
  mismatch: boolean;
}

/** Question section bytes (from offset 12 to the end of the first question), or null. */
function questionBytes(msg: Uint8Array): Uint8Array | null {
  let i = 12;
  while (i < msg.length) {
    const len = msg[i];
    if (len === 0) {
      i += 1;
      break;
    }
    if (len >= 0xc0) return null;
    i += 1 + len;
  }
  i += 4;
  return i <= msg.length ? msg.subarray(12, i) : null;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Queries in flight on one socket or connection, by DNS ID; answers matched by ID + question. */
class Pending {
  #map = new Map<number, { rec: Rec; q: Uint8Array; at: number }>();
  #late = new Map<number, { rec: Rec; q: Uint8Array; at: number }>();
  #next = Math.floor(Math.random() * 0x10000);
  strays = 0;

  get size(): number {
    return this.#map.size;
  }

  /** A free ID, remembered with `rec`; returns the query bytes to send. */
  add(name: string, rec: Rec): Uint8Array {
    let id = this.#next;
    while (this.#map.has(id) || this.#late.has(id)) id = (id + 1) & 0xffff;
    this.#next = (id + 1) & 0xffff;
    const q = buildQuery(name, "A", id);
    this.#map.set(id, { rec, q: questionBytes(q)!, at: performance.now() });
    return q;
  }

  /** Records the answer `msg`, if it answers a query of ours. */
  answer(msg: Uint8Array): void {
    if (msg.length < 12) {
      this.strays++;
      return;
    }
    const id = (msg[0] << 8) | msg[1];
    let p = this.#map.get(id);
    let late = false;
    if (p) this.#map.delete(id);
    else if ((p = this.#late.get(id))) {
      this.#late.delete(id);
      late = true;
    } else {
      this.strays++;
      return;
    }
    const qb = questionBytes(msg);
    const rec = p.rec;
    rec.mismatch = qb === null ? (msg[5] !== 0 || msg[4] !== 0) : !sameBytes(qb, p.q);
    rec.rcode = msg[3] & 0x0f;
    rec.tc = (msg[2] & 0x02) !== 0;
    rec.ms = performance.now() - p.at;
    rec.late = late;
  }

  /** Marks queries older than LOST_AFTER_MS as lost (a late answer is still recorded). */
  sweep(now = performance.now()): void {
    for (const [id, p] of this.#map) {
      if (now - p.at < LOST_AFTER_MS) continue;
      p.rec.lost = true;
      this.#map.delete(id);
      this.#late.set(id, p);
    }
    for (const [id, p] of this.#late) if (now - p.at > 30_000) this.#late.delete(id);
  }

  /** Marks every query still waiting as lost. */
  abandon(): void {
    for (const p of this.#map.values()) p.rec.lost = true;
    this.#map.clear();
  }
}

/** A new query record for stream `cls`, sent now. */
export function newRec(t0: number, cls: string): Rec {
  return {
    t: performance.now() - t0,
    cls,
    ms: -1,
    rcode: -1,
    tc: false,
    lost: false,
    late: false,
    mismatch: false,
  };
}

/** A UDP client socket bound to `hostname` (port 0), sending to `target`, matching answers. */
export class UdpDns {
  readonly sock: Deno.DatagramConn;
  readonly #pending: Pending;
  readonly #target: Deno.NetAddr;
  readonly #loop: Promise<void>;
  sendErrors = 0;

  constructor(hostname: string, target: { hostname: string; port: number }) {
    const sock = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
    const pending = new Pending();
    this.sock = sock;
    this.#pending = pending;
    this.#target = { transport: "udp", ...target };
    this.#loop = (async () => {
      const buf = new Uint8Array(65536);
      for (;;) {
        let data: Uint8Array;
        try {
          [data] = await sock.receive(buf);
        } catch {
          return; // closed
        }
        pending.answer(data);
      }
    })();
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  get strays(): number {
    return this.#pending.strays;
  }

  /** Sends a query for `name` (type A, RD) recorded in `rec`. */
  send(name: string, rec: Rec): void {
    const q = this.#pending.add(name, rec);
    this.sock.send(q, this.#target).catch(() => this.sendErrors++);
  }

  /** One query, awaited: the answer's rcode (-1 if none within `timeoutMs`). */
  async ask(name: string, timeoutMs: number): Promise<Rec> {
    const rec = newRec(0, "probe");
    this.send(name, rec);
    const until = performance.now() + timeoutMs;
    while (rec.ms < 0 && performance.now() < until) await sleep(5);
    return rec;
  }

  sweep(now?: number): void {
    this.#pending.sweep(now);
  }

  abandon(): void {
    this.#pending.abandon();
  }

  close(): void {
    try {
      this.sock.close();
    } catch { /* closed */ }
  }

  async closed(): Promise<void> {
    this.close();
    await this.#loop;
  }
}

/** A long-lived DNS-over-TCP connection that reconnects when dotproxy closes it. */
class TcpStream {
  #client: TcpDnsClient | null = null;
  #pending: Pending | null = null;
  #writing: Promise<void> = Promise.resolve();
  #closing = false;
  connects = 0;
  closedByPeer = 0;
  errors = 0;

  constructor(private readonly target: { hostname: string; port: number }) {}

  /** Sends a query for `name`, connecting first if needed; false if that is not possible now. */
  send(name: string, rec: Rec): boolean {
    if (!this.#client) {
      if (this.#closing) return false;
      this.#connect();
      return false;
    }
    const q = this.#pending!.add(name, rec);
    const client = this.#client;
    this.#writing = this.#writing.then(() => client.send(q)).catch(() => {
      this.errors++;
    });
    return true;
  }

  #connecting = false;
  #connect(): void {
    if (this.#connecting) return;
    this.#connecting = true;
    TcpDnsClient.connect(this.target).then((client) => {
      this.connects++;
      const pending = new Pending();
      this.#client = client;
      this.#pending = pending;
      this.#connecting = false;
      (async () => {
        try {
          for (;;) {
            const msg = await client.read();
            if (msg === null) break;
            pending.answer(msg);
          }
        } catch {
          this.errors++;
        }
        if (!this.#closing) this.closedByPeer++;
        this.#dead.push(pending);
        if (this.#client === client) this.#client = null;
        client.close();
      })();
    }).catch(() => {
      this.errors++;
      this.#connecting = false;
    });
  }

  #dead: Pending[] = [];

  sweep(now?: number): void {
    this.#pending?.sweep(now);
    for (const p of this.#dead) p.sweep(now);
    this.#dead = this.#dead.filter((p) => p.size > 0);
  }

  get inFlight(): number {
    return (this.#pending?.size ?? 0) + this.#dead.reduce((a, p) => a + p.size, 0);
  }

  close(): void {
    this.#closing = true;
    this.#pending?.abandon();
    for (const p of this.#dead) p.abandon();
    this.#client?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Garbage

const rnd = (k: number) => Math.floor(Math.random() * k);

function randomBytes(len: number): Uint8Array {
  const b = new Uint8Array(len);
  crypto.getRandomValues(b);
  return b;
}

/** Kinds of garbage datagrams, in rotation. */
export const GARBAGE_KINDS = ["random", "mutated", "response"] as const;

/**
 * One garbage datagram of `kind`: random bytes (0-600), a valid query for a name under
 * `garbage.test.` with 1-4 bytes changed, cut short or extended, or a query with QR=1.
 */
export function garbage(kind: (typeof GARBAGE_KINDS)[number]): Uint8Array {
  if (kind === "random") return randomBytes(rnd(601));
  const q = buildQuery(`g${rnd(1e9)}.garbage.test.`, "A", rnd(0x10000));
  if (kind === "response") {
    q[2] |= 0x80;
    return q;
  }
  switch (rnd(4)) {
    case 0: {
      for (let k = 1 + rnd(4); k > 0; k--) q[rnd(q.length)] = rnd(256);
      return q;
    }
    case 1:
      return q.subarray(0, rnd(q.length));
    case 2: {
      const out = new Uint8Array(q.length + 1 + rnd(64));
      out.set(q);
      out.set(randomBytes(out.length - q.length), q.length);
      return out;
    }
    default:
      q[4] = rnd(256); // QDCOUNT, high byte
      q[5] = rnd(256);
      return q;
  }
}

/** Replies seen by a garbage sender, by rcode, and the datagrams it sent. */
export class GarbageSender {
  readonly sock: Deno.DatagramConn;
  sent = 0;
  replies = 0;
  readonly rcodes = new Map<number, number>();
  #target: Deno.NetAddr;
  #loop: Promise<void>;

  constructor(hostname: string, target: { hostname: string; port: number }) {
    const sock = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
    this.sock = sock;
    this.#target = { transport: "udp", ...target };
    this.#loop = (async () => {
      const buf = new Uint8Array(65536);
      for (;;) {
        let data: Uint8Array;
        try {
          [data] = await sock.receive(buf);
        } catch {
          return;
        }
        this.replies++;
        const rc = data.length >= 4 ? data[3] & 0x0f : -1;
        this.rcodes.set(rc, (this.rcodes.get(rc) ?? 0) + 1);
      }
    })();
  }

  send(): void {
    const pkt = garbage(GARBAGE_KINDS[this.sent % GARBAGE_KINDS.length]);
    this.sent++;
    this.sock.send(pkt, this.#target).catch(() => {});
  }

  async close(): Promise<void> {
    try {
      this.sock.close();
    } catch { /* closed */ }
    await this.#loop;
  }
}

const JUNK_TCP_KINDS = ["random", "bad-length", "stall-prefix", "stall-partial", "idle"] as const;

/**
 * Junk TCP connections to dotproxy: random bytes then close; a frame with a garbage body (then
 * read what comes back); a length prefix alone or a partial frame and then nothing (slowloris);
 * connect and say nothing. The stalled and idle ones wait up to 12 s for dotproxy to close them.
 */
class JunkTcp {
  opened = 0;
  failed = 0;
  active = 0;
  /** Per kind: opened, closed by dotproxy, closed by us after waiting. */
  readonly kinds = new Map<string, { opened: number; byProxy: number; byUs: number }>(
    JUNK_TCP_KINDS.map((k) => [k, { opened: 0, byProxy: 0, byUs: 0 }]),
  );
  readonly #live = new Set<Deno.Conn>();

  constructor(private readonly target: { hostname: string; port: number }) {}

  open(): void {
    const kind = JUNK_TCP_KINDS[this.opened % JUNK_TCP_KINDS.length];
    this.opened++;
    this.active++;
    this.kinds.get(kind)!.opened++;
    this.#run(kind).catch(() => this.failed++).finally(() => this.active--);
  }

  async #run(kind: (typeof JUNK_TCP_KINDS)[number]): Promise<void> {
    const conn = await Deno.connect(this.target);
    this.#live.add(conn);
    try {
      let waitMs = 12_000;
      if (kind === "random") {
        await conn.write(randomBytes(1 + rnd(300)));
        waitMs = 500;
      } else if (kind === "bad-length") {
        const body = randomBytes(12 + rnd(100));
        const f = new Uint8Array(body.length + 2);
        f[0] = body.length >> 8;
        f[1] = body.length & 0xff;
        f.set(body, 2);
        await conn.write(f);
        waitMs = 1000;
      } else if (kind === "stall-prefix") {
        await conn.write(new Uint8Array([0x01, 0x00]));
      } else if (kind === "stall-partial") {
        const q = buildQuery(`j${rnd(1e9)}.junk.test.`);
        const f = new Uint8Array(q.length + 2);
        f[1] = q.length;
        f.set(q, 2);
        await conn.write(f.subarray(0, 2 + rnd(q.length)));
      }
      // Read until dotproxy closes or we give up.
      const buf = new Uint8Array(4096);
      const timer = setTimeout(() => {
        this.kinds.get(kind)!.byUs++;
        try {
          conn.close();
        } catch { /* closed */ }
      }, waitMs);
      let closedByPeer = false;
      try {
        while ((await conn.read(buf)) !== null) { /* discard */ }
        closedByPeer = true;
      } catch { /* closed by our timer, or reset */ }
      clearTimeout(timer);
      if (closedByPeer) this.kinds.get(kind)!.byProxy++;
    } finally {
      this.#live.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }

  closeAll(): void {
    for (const c of this.#live) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting

/** Counts over a set of query records. */
export interface Tally {
  sent: number;
  noerror: number;
  servfail: number;
  other: number;
  tc: number;
  lost: number;
  late: number;
  mismatch: number;
  /** Latencies of answers within LOST_AFTER_MS, ascending. */
  lat: number[];
}

/** Tallies `recs`. */
export function tally(recs: Rec[]): Tally {
  const t: Tally = {
    sent: recs.length,
    noerror: 0,
    servfail: 0,
    other: 0,
    tc: 0,
    lost: 0,
    late: 0,
    mismatch: 0,
    lat: [],
  };
  for (const r of recs) {
    if (r.lost || r.ms < 0) {
      t.lost++;
      if (r.late) t.late++;
      continue;
    }
    if (r.mismatch) t.mismatch++;
    if (r.tc) t.tc++;
    if (r.rcode === 0) t.noerror++;
    else if (r.rcode === 2) t.servfail++;
    else t.other++;
    t.lat.push(r.ms);
  }
  t.lat.sort((a, b) => a - b);
  return t;
}

/** A Markdown table row for a tally. */
export function tallyRow(label: string, t: Tally): string {
  return `| ${label} | ${n(t.sent)} | ${n(t.noerror)} | ${n(t.servfail)} | ${n(t.other)} | ` +
    `${n(t.lost)} | ${n(t.late)} | ${ms(quantile(t.lat, 0.5))} | ${ms(quantile(t.lat, 0.99))} |`;
}

/** The header of tallyRow's table. */
export const TALLY_HEADER = [
  "| queries | sent | NOERROR | SERVFAIL | other rcode | lost (>5 s) | of which late | p50 ms | p99 ms |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
];

// ---------------------------------------------------------------------------------------------
// The soak run

/** The load is sent in ticks of this many ms. */
const TICK_MS = 10;

/**
 * One stream of the load at a fixed rate: each tick asks how many are due by now. At most `cap`
 * are sent in one tick; a larger backlog (the tick came late) is skipped and counted, not sent
 * later. `cap` Infinity is the old catch-up pacing.
 */
class Pacer {
  /** Sent or skipped. */
  done = 0;
  skipped = 0;

  constructor(readonly rate: number, readonly cap: number) {}

  /** How many to send now, `s` seconds into the load. */
  due(s: number): number {
    const due = Math.ceil(this.rate * s) - this.done;
    if (due <= 0) return 0;
    const k = Math.min(due, this.cap);
    this.skipped += due - k;
    this.done += due;
    return k;
  }
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

/**
 * A small cache (full after a few seconds, so later memory growth is not the cache filling) whose
 * entries expire every 10 s, so repeated names go through prefetch and, while the upstream is
 * down, serve-stale.
 */
const CACHE_TOML = '[cache]\nmax_entries = 5000\nmax_ttl = "10s"\n';

async function soak(args: string[]): Promise<number> {
  const seconds = numArg(args, "seconds", 60);
  const udpQps = numArg(args, "udp-qps", 1500);
  const tcpQps = numArg(args, "tcp-qps", 200);
  const garbagePps = numArg(args, "garbage-pps", 1000);
  const tcpConns = 4;
  const udpSockets = 4;
  const repeatNames = 200;
  const junkTcpPerSec = 5;
  const maxJunkTcp = 12; // with the 4 valid connections, below tcp_max_connections_per_client 32
  const queryTimeoutMs = 5000; // dotproxy's default [server] query_timeout
  const warmupS = Math.min(10, seconds / 6);
  // Down windows at 25-33% and 58-67% of the run: 15-20 s and 35-40 s of 60 s.
  const downs = [[0.25, 1 / 3], [7 / 12, 2 / 3]].map(([a, b]) => [a * seconds, b * seconds]);
  const tag = Math.random().toString(36).slice(2, 8);
  const catchUp = args.includes("--catch-up");
  const burstTicks = Math.max(1, numArg(args, "burst-ticks", 3));
  const stalls = stallArg(args);

  console.log(
    `soak: ${seconds} s; UDP ${udpQps} qps on ${udpSockets} sockets (half over ` +
      `${repeatNames} repeated names, half unique), TCP ${tcpQps} qps on ${tcpConns} connections, ` +
      `UDP garbage ${garbagePps}/s, junk TCP ${junkTcpPerSec}/s (at most ${maxJunkTcp} open); ` +
      `upstream down at ${downs.map(([a, b]) => `${a.toFixed(0)}-${b.toFixed(0)} s`).join(", ")}`,
  );
  console.log(
    `  pacing: ${TICK_MS} ms ticks, ${
      catchUp
        ? "--catch-up (a late tick sends the whole backlog)"
        : `a late tick sends at most ${burstTicks} ticks' worth, the rest is skipped`
    }${
      stalls.length
        ? `; synthetic stalls ${stalls.map(([t, d]) => `${d} ms at ${t / 1000} s`).join(", ")}`
        : ""
    }`,
  );

  const waited = await waitForQuiet(numArg(args, "quiet-wait", 120));
  console.log(`  waited ${waited.toFixed(0)} s for other processes to be quiet`);
  const upstreamPort = freePort();
  let unbound: Unbound | null = await startUnbound({ port: upstreamPort });
  let proxy: Proxy | null = null;
  const cleanups: (() => unknown)[] = [];
  let failed = false;
  const fail = (why: string) => {
    failed = true;
    console.log(`FAIL: ${why}`);
  };
  // A hard stop in case anything hangs: cleanup and exit 1.
  const watchdog = setTimeout(async () => {
    console.error("soak: watchdog fired, stopping everything");
    for (const c of cleanups) await Promise.resolve().then(c).catch(() => {});
    await proxy?.stop();
    await unbound?.stop();
    Deno.exit(1);
  }, (seconds + 90) * 1000);

  try {
    const spawnAt = performance.now();
    proxy = await startProxy(upstreamPort, CACHE_TOML);
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
    const udp = Array.from({ length: udpSockets }, () => new UdpDns("127.0.0.1", target));
    const tcp = Array.from({ length: tcpConns }, () => new TcpStream(target));
    const junk = new GarbageSender("127.0.0.1", target);
    const junkTcp = new JunkTcp(target);
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
    const progress = setInterval(async () => {
      try {
        const m = await scrape(proxy!.adminPort);
        const answered = recs.filter((r) => r.ms >= 0).length;
        console.log(
          `  t=${(now() / 1000).toFixed(0)}s rss=${
            (rss[rss.length - 1].kib / 1024).toFixed(1)
          }MiB ` +
            `sent=${n(recs.length)} answered=${n(answered)} ` +
            `in_flight=${total(m, "dotproxy_in_flight_queries")} ` +
            `cache=${total(m, "dotproxy_cache_entries")} ` +
            `upstream_up=${total(m, "dotproxy_upstream_up")} ` +
            `up_conns=${total(m, "dotproxy_upstream_open_connections")}`,
        );
      } catch (err) {
        console.log(`  t=${(now() / 1000).toFixed(0)}s metrics scrape failed: ${err}`);
      }
    }, 5000);
    cleanups.push(() => clearInterval(progress));

    // The upstream schedule.
    const events: { kill: number; down: number; restart: number; ready: number }[] = [];
    const schedule = (async () => {
      for (const [a, b] of downs) {
        await sleep(a * 1000 - now());
        const kill = now();
        await unbound!.stop();
        unbound = null;
        const down = now();
        await sleep(b * 1000 - now());
        const restart = now();
        unbound = await restartUnbound(upstreamPort);
        events.push({ kill, down, restart, ready: now() });
        console.log(
          `  upstream killed at ${(kill / 1000).toFixed(1)} s (gone at ` +
            `${(down / 1000).toFixed(1)} s), restarted at ${(restart / 1000).toFixed(1)} s, ` +
            `serving at ${(now() / 1000).toFixed(1)} s`,
        );
      }
    })();

    // Kernel drops at dotproxy's UDP socket and at this client's, and the machine's CPU (busy,
    // steal), every 100 ms (with -A, where /proc is a cheap synchronous read; through `sh -c cat`
    // only every second).
    const clientKeys = [...udp.map((u) => u.sock), junk.sock]
      .map((sock) => `127.0.0.1:${(sock.addr as Deno.NetAddr).port}`);
    // Also dotproxy's main thread (where its JavaScript and its socket I/O run): nanoseconds on a
    // CPU and waiting for one (/proc/PID/task/PID/schedstat).
    const dropSeries: {
      t: number;
      proxy: number;
      client: number;
      busy: number;
      steal: number;
      ran: number;
      waited: number;
    }[] = [];
    const schedstat = async () => {
      const f = (await readProcFile(`/proc/${pid}/task/${pid}/schedstat`)).trim().split(" ");
      return f.length >= 2
        ? { ran: Number(f[0]), waited: Number(f[1]) }
        : { ran: NaN, waited: NaN };
    };
    let lastDropRead = -Infinity;
    const readDrops = async (force = false) => {
      if (procViaShell && !force && now() - lastDropRead < 950) return;
      lastDropRead = now();
      const d = await udpDrops();
      const c = await cpuStat();
      const th = await schedstat().catch(() => ({ ran: NaN, waited: NaN }));
      dropSeries.push({
        t: now(),
        proxy: d.get(proxyKey) ?? 0,
        client: clientKeys.reduce((a, k) => a + (d.get(k) ?? 0), 0),
        ...c,
        ...th,
      });
    };
    await readDrops(true);
    const dropSampler = setInterval(() => readDrops().catch(() => {}), 100);
    cleanups.push(() => clearInterval(dropSampler));

    // The load: every TICK_MS, send what the rates say should have been sent by now, but (unless
    // --catch-up) at most burstTicks ticks' worth per stream: when this script is late, the
    // backlog is skipped and counted, not dumped on dotproxy's UDP socket in one burst.
    const cap = (rate: number) =>
      catchUp ? Infinity : Math.max(1, Math.ceil((rate * TICK_MS * burstTicks) / 1000));
    const udpPace = new Pacer(udpQps, cap(udpQps));
    const tcpPace = new Pacer(tcpQps, cap(tcpQps));
    const garbagePace = new Pacer(garbagePps, cap(garbagePps));
    const junkPace = new Pacer(junkTcpPerSec, cap(junkTcpPerSec));
    // Per tick: when it ran (ms into the run), the gap since the previous one, and how many
    // datagrams it sent to dotproxy's UDP port (valid + garbage).
    const tickT: number[] = [], tickGap: number[] = [], tickBurst: number[] = [];
    let udpSent = 0, tcpSent = 0, uniq = 0, stallNext = 0;
    const endMs = seconds * 1000;
    const loadStart = now();
    await new Promise<void>((resolve) => {
      let last = loadStart;
      const tick = setInterval(() => {
        const t = now();
        if (t >= endMs || crashed !== null) {
          clearInterval(tick);
          resolve();
          return;
        }
        const s = t / 1000;
        let burst = 0;
        for (let k = udpPace.due(s); k > 0; k--, udpSent++, burst++) {
          const repeat = udpSent % 2 === 0;
          const name = repeat
            ? `r${(udpSent >> 1) % repeatNames}.cache.test.`
            : `u${uniq++}-${tag}.soak.test.`;
          const rec = newRec(t0, repeat ? "UDP repeated" : "UDP unique");
          recs.push(rec);
          udp[udpSent % udpSockets].send(name, rec);
        }
        for (let k = tcpPace.due(s); k > 0; k--, tcpSent++) {
          const repeat = tcpSent % 2 === 0;
          const name = repeat
            ? `r${(tcpSent >> 1) % repeatNames}.cache.test.`
            : `u${uniq++}-${tag}.soak.test.`;
          const rec = newRec(t0, repeat ? "TCP repeated" : "TCP unique");
          if (tcp[tcpSent % tcpConns].send(name, rec)) recs.push(rec);
        }
        for (let k = garbagePace.due(s); k > 0; k--, burst++) junk.send();
        for (let k = junkPace.due(s); k > 0; k--) {
          if (junkTcp.active < maxJunkTcp) junkTcp.open();
        }
        tickT.push(t);
        tickGap.push(t - last);
        tickBurst.push(burst);
        last = t;
        if (Math.floor(t / 250) !== Math.floor((t - 10) / 250)) {
          for (const u of udp) u.sweep();
          for (const c of tcp) c.sweep();
        }
        if (stallNext < stalls.length && t >= stalls[stallNext][0]) {
          const until = performance.now() + stalls[stallNext++][1];
          while (performance.now() < until) { /* a synthetic generator stall */ }
        }
      }, TICK_MS);
      cleanups.push(() => clearInterval(tick));
    });
    const sendEnd = now();
    clearInterval(sampler);
    clearInterval(dropSampler);
    await readDrops(true);
    await sample(); // CPU over the load only, RSS at its end
    await schedule.catch((err) => fail(`restarting unbound: ${err}`));

    // Wait for the last answers (or the lost verdict).
    const drainUntil = performance.now() + LOST_AFTER_MS + 500;
    while (performance.now() < drainUntil) {
      if (udp.every((u) => u.inFlight === 0) && tcp.every((c) => c.inFlight === 0)) break;
      await sleep(100);
      for (const u of udp) u.sweep();
      for (const c of tcp) c.sweep();
    }
    for (const u of udp) u.sweep(performance.now() + LOST_AFTER_MS);
    for (const c of tcp) c.sweep(performance.now() + LOST_AFTER_MS);
    const metrics = await scrape(proxy.adminPort).catch(() => [] as Sample[]);
    const drops = await udpDrops();
    const rcvbuf = (await udpRcvbufErrors()) - rcvbuf0;
    const proxyDrops = drops.get(`127.0.0.1:${target.port}`) ?? NaN;
    const clientDrops = [...udp.map((u) => u.sock), junk.sock]
      .reduce(
        (a, sock) => a + (drops.get(`127.0.0.1:${(sock.addr as Deno.NetAddr).port}`) ?? 0),
        0,
      );
    for (const c of cleanups.splice(0)) await c();
    await Promise.all(udp.map((u) => u.closed()));
    const cpuUse = cpu.report({ [pid]: "dotproxy" });

    // ---- Report
    const windows = events.map((e) => [e.kill, e.ready + queryTimeoutMs]);
    const inWindow = (r: Rec) => windows.some(([a, b]) => r.t >= a && r.t <= b);
    const valid = recs.filter((r) => r.cls !== "warm");
    const out = valid.filter((r) => !inWindow(r));
    const inside = valid.filter(inWindow);
    const classes = [...new Set(valid.map((r) => r.cls))];

    console.log(`\n## Soak results (${(sendEnd / 1000).toFixed(1)} s of load)\n`);
    console.log(
      `Upstream down windows (kill → restarted and serving + query_timeout ${
        queryTimeoutMs / 1000
      } s): ${windows.map(([a, b]) => `${(a / 1000).toFixed(1)}-${(b / 1000).toFixed(1)} s`)}\n`,
    );
    console.log(TALLY_HEADER.join("\n"));
    console.log(tallyRow("**outside the down windows**", tally(out)));
    for (const c of classes) tallyRowOut(`  ${c}`, out.filter((r) => r.cls === c));
    console.log(tallyRow("**inside the down windows**", tally(inside)));
    for (const c of classes) tallyRowOut(`  ${c}`, inside.filter((r) => r.cls === c));
    console.log(tallyRow("**all**", tally(valid)));

    const tOut = tally(out);
    console.log(
      `\nUDP datagrams dropped by the kernel at a full receive buffer: dotproxy's socket ` +
        `${n(proxyDrops)} (${n(proxyDrops0)} of them before the load), this client's sockets ` +
        `${n(clientDrops)} (machine-wide RcvbufErrors ` +
        `+${n(rcvbuf)} during the run, other processes included)`,
    );
    const when = (recs: Rec[]) => {
      const buckets = new Map<number, number>();
      for (const r of recs) {
        const b = Math.floor(r.t / 100) / 10;
        buckets.set(b, (buckets.get(b) ?? 0) + 1);
      }
      return [...buckets].map(([b, k]) => `${b.toFixed(1)} s: ${k}`).join(", ");
    };
    if (tOut.lost > 0) {
      fail(`${tOut.lost} valid queries lost outside the down windows`);
      console.log(`  sent at (100 ms buckets): ${when(out.filter((r) => r.lost))}`);
    }

    // Generator pacing: late ticks, bursts, what was skipped, and what was around lost queries.
    const sec = (t: number) => (t / 1000).toFixed(2);
    const argmax = (xs: number[], from = 0, to = xs.length) => {
      let best = from;
      for (let i = from; i < to; i++) if (xs[i] > xs[best]) best = i;
      return best;
    };
    const gi = argmax(tickGap), bi = argmax(tickBurst);
    const onTime = ((udpQps + garbagePps) * TICK_MS) / 1000;
    const lateTicks = (g: number) => n(tickGap.filter((x) => x >= g).length);
    const skippedValid = udpPace.skipped + tcpPace.skipped;
    console.log(
      `\nGenerator pacing (${TICK_MS} ms ticks; ${
        catchUp
          ? "--catch-up: a late tick sends the whole backlog"
          : `a late tick sends at most ${burstTicks} ticks' worth`
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
        ).join(", ")
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
      `Skipped (generator late): ${n(udpPace.skipped)} UDP, ${n(tcpPace.skipped)} TCP, ` +
        `${n(garbagePace.skipped)} garbage, ${n(junkPace.skipped)} junk TCP; ${
          pct(skippedValid, udpPace.done + tcpPace.done)
        } of the valid queries due were not sent`,
    );
    const d0 = dropSeries[0], d1 = dropSeries[dropSeries.length - 1];
    const dropSteps = dropSeries.slice(1).map((d, i) => ({
      t: d.t,
      proxy: d.proxy - dropSeries[i].proxy,
      client: d.client - dropSeries[i].client,
    })).filter((d) => d.proxy > 0 || d.client > 0);
    console.log(
      `Kernel drops during the load (sampled every ${procViaShell ? "1 s" : "100 ms"}): ` +
        `dotproxy's socket +${n(d1.proxy - d0.proxy)}, this client's +${n(d1.client - d0.client)}${
          dropSteps.length
            ? `; by sample (dotproxy/client): ${
              dropSteps.slice(0, 20).map((d) => `${sec(d.t)} s +${d.proxy}/+${d.client}`)
                .join(", ")
            }${dropSteps.length > 20 ? ", …" : ""}`
            : ""
        }`,
    );
    const cores = navigator.hardwareConcurrency;
    const cpuBetween = (a: (typeof dropSeries)[number], b: typeof a) =>
      `machine CPU ${sec(a.t)}-${sec(b.t)} s: busy ${
        (100 * 10 * (b.busy - a.busy) / (b.t - a.t) / cores).toFixed(0)
      }% of ${cores} cores, steal ${10 * (b.steal - a.steal)} ms; dotproxy's main thread ran ${
        ((b.ran - a.ran) / 1e6).toFixed(0)
      } ms, waited for a CPU ${((b.waited - a.waited) / 1e6).toFixed(0)} ms`;
    console.log(`Machine during the load: ${cpuBetween(d0, d1)}`);
    const waits = dropSeries.slice(1).map((d, i) => ({
      t: dropSeries[i].t,
      waited: (d.waited - dropSeries[i].waited) / 1e6,
      ran: (d.ran - dropSeries[i].ran) / 1e6,
      span: d.t - dropSeries[i].t,
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
    // Lost queries in clusters (less than 250 ms apart), each with the ticks and drops around it.
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
      after ? dropSeries.find((d) => d.t >= t) ?? d1 : dropSeries.findLast((d) => d.t <= t) ?? d0;
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
      // Was dotproxy answering meanwhile? The longest silence between answers arriving (to
      // queries of any kind, cache hits included) from 500 ms before the cluster to 500 ms after;
      // a silence not matched by a tick gap above is on dotproxy's side, not this script's.
      const arrivals = valid.filter((r) =>
        r.ms >= 0 && r.t + r.ms >= a - 500 && r.t + r.ms <= b + 500
      )
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
    console.log(
      `Summary: lost outside the down windows ${n(tOut.lost)}; max tick gap ${
        ms(tickGap[gi])
      } ms; max burst ${tickBurst[bi]}; skipped (generator late) ${n(skippedValid)} valid + ` +
        `${n(garbagePace.skipped)} garbage; kernel drops at dotproxy's socket during the load ` +
        `${n(d1.proxy - d0.proxy)}`,
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

    // Recovery: first NOERROR for a unique name sent after each restart.
    for (const [i, e] of events.entries()) {
      const after = valid.filter((r) => r.cls.endsWith("unique") && r.t >= e.ready);
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

    // Memory.
    const at = (s: number) =>
      rss.reduce((best, x) => Math.abs(x.t - s) < Math.abs(best.t - s) ? x : best);
    const start = rss[0], warm = at(warmupS), mid = at(seconds / 2), end = rss[rss.length - 1];
    const mib = (k: number) => `${(k / 1024).toFixed(1)} MiB`;
    // V8's heap grows and shrinks in a sawtooth, so compare peaks: the highest RSS in the first
    // and in the second half of the time after warm-up.
    const split = (warmupS + sendEnd / 1000) / 2;
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
        (sendEnd / 1000).toFixed(0)
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

    console.log(`\nCPU (% of one core over the run): ${cpuLine(cpuUse)}`);

    if (metrics.length) {
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
    } else fail("could not scrape /metrics at the end");

    if (crashed !== null) fail(`dotproxy exited during the run (code ${crashed})`);
    const code = await proxy.stop();
    const output = proxy.cli.output().trim();
    proxy = null;
    const keep = args.indexOf("--proxy-output");
    if (keep >= 0) await Deno.writeTextFile(args[keep + 1], output + "\n");
    if (code !== 0) fail(`dotproxy exited with ${code} on SIGTERM`);
    console.log(`\ndotproxy stopped on SIGTERM with exit code ${code}`);
    const logged = output ? output.split("\n") : [];
    console.log(
      `dotproxy logged ${logged.length} lines (level warning)${logged.length ? ":" : ""}`,
    );
    for (const l of summarizeLog(logged)) console.log(`  ${l}`);
  } finally {
    for (const c of cleanups) await Promise.resolve().then(c).catch(() => {});
    if (proxy) {
      const out = proxy.cli.output();
      await proxy.stop();
      if (out.trim()) console.log(`dotproxy output:\n${out.slice(-4000)}`);
    }
    await unbound?.stop();
    clearTimeout(watchdog);
  }
  console.log(failed ? "\nsoak: FAIL" : "\nsoak: PASS");
  return failed ? 1 : 0;

  function tallyRowOut(label: string, recs: Rec[]) {
    if (recs.length) console.log(tallyRow(label, tally(recs)));
  }
}

/** Log lines grouped by their text with numbers, times and addresses masked: "N× line". */
export function summarizeLog(lines: string[]): string[] {
  const counts = new Map<string, { n: number; example: string }>();
  for (const l of lines) {
    const key = l.replace(/\d+/g, "#");
    const c = counts.get(key);
    if (c) c.n++;
    else counts.set(key, { n: 1, example: l });
  }
  return [...counts.values()].sort((a, b) => b.n - a.n).slice(0, 15)
    .map((c) => `${c.n}× ${c.example.slice(0, 300)}`);
}

if (import.meta.main) {
  Deno.exit(await soak(Deno.args));
}
