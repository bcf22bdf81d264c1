/**
 * What the kernel says about the processes and sockets of a bench run (Linux /proc): CPU time per
 * process and of the machine, a process's RSS and its main thread's schedstat, datagrams dropped
 * at full UDP receive buffers. Deno 2 lets only --allow-all read /proc, so without it every read
 * goes through `sh -c cat` (see {@link procReadsViaShell}).
 */
import { sleep } from "./cli.ts";

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

/** Whether /proc is read through `sh -c cat` (no -A), so samplers should sample less often. */
export function procReadsViaShell(): boolean {
  return procViaShell;
}

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

/** The key of {@link udpDrops} for a socket bound on 127.0.0.1. */
export function loopbackKey(sock: Deno.DatagramConn): string {
  return `127.0.0.1:${(sock.addr as Deno.NetAddr).port}`;
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
 * A process's main thread (where a Deno program's JavaScript and socket I/O run): nanoseconds on
 * a CPU and waiting for one (/proc/PID/task/PID/schedstat); NaN when unreadable.
 */
export async function schedstat(pid: number): Promise<{ ran: number; waited: number }> {
  const f = (await readProcFile(`/proc/${pid}/task/${pid}/schedstat`)).trim().split(" ");
  return f.length >= 2 ? { ran: Number(f[0]), waited: Number(f[1]) } : { ran: NaN, waited: NaN };
}

/** One sample of {@link MachineSeries}: counters at `t` ms into the run. */
export interface MachineSample {
  t: number;
  /** Kernel drops at the server's UDP socket so far. */
  proxy: number;
  /** Kernel drops at the client's UDP sockets so far. */
  client: number;
  /** Machine CPU ticks, busy and stolen (cpuStat). */
  busy: number;
  steal: number;
  /** The server's main thread: ns on a CPU, ns waiting for one (schedstat). */
  ran: number;
  waited: number;
}

/**
 * Kernel drops at a server's UDP socket and at its clients', the machine's CPU (busy, steal)
 * and the server's main thread's schedstat, as a series: call `sample` often (through `sh -c
 * cat` it reads at most once a second unless forced).
 */
export class MachineSeries {
  readonly samples: MachineSample[] = [];
  #last = -Infinity;

  constructor(
    private readonly pid: number,
    private readonly proxyKey: string,
    private readonly clientKeys: string[],
    private readonly now: () => number,
  ) {}

  async sample(force = false): Promise<void> {
    if (procViaShell && !force && this.now() - this.#last < 950) return;
    this.#last = this.now();
    const d = await udpDrops();
    const c = await cpuStat();
    const th = await schedstat(this.pid).catch(() => ({ ran: NaN, waited: NaN }));
    this.samples.push({
      t: this.now(),
      proxy: d.get(this.proxyKey) ?? 0,
      client: this.clientKeys.reduce((a, k) => a + (d.get(k) ?? 0), 0),
      ...c,
      ...th,
    });
  }
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
