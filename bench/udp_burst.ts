/**
 * UDP burst run: 1,000 identical queries sent as fast as possible (200 in flight from 50 sockets,
 * closed loop: each answer lets its socket send the next query) against a real dotproxy process
 * in front of a fake DoT upstream. The first query of a round is a miss that the rest coalesce on
 * (their answers all leave together when the upstream answers), the later ones are cache hits.
 * Per round it reports answers, losses and the kernel's view: the machine-wide
 * Udp RcvbufErrors (/proc/net/snmp) and the drops of dotproxy's own socket (/proc/net/udp).
 * dotproxy is pinned to CPU 0 and this process to CPU 1 when there are two CPUs and taskset.
 * Loopback only; bounded (every query is given up after --timeout ms); the process is stopped.
 *
 *   deno run --allow-net=127.0.0.1 --allow-read=. --allow-write=/tmp \
 *     --allow-run="$(readlink -f "$(command -v deno)")",taskset,sh bench/udp_burst.ts \
 *     [--rounds 10] [--queries 1000] [--sockets 50] [--in-flight 200] [--timeout 2000]
 *     [--same-name]
 *
 * Each round asks a new name (burst-N.test.) so that every round begins with a coalesced miss;
 * --same-name asks one name throughout (all but the first round are cache hits only).
 * The receive buffer is the kernel's net.core.rmem_default (dotproxy cannot set SO_RCVBUF from
 * Deno); the run prints it. Exit code: 0 (it measures, it does not judge), 2 usage.
 */
import { startFakeDot } from "../tests/helpers/fake_dot.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { numArg, pin, type Proxy, startProxy, udpDrops, udpRcvbufErrors } from "./soak.ts";

/** Per-round outcome. */
interface Round {
  answered: number;
  lost: number;
  ms: number;
  rcvbufErrors: number;
  socketDrops: number;
}

/** One client socket keeping its share of the in-flight window full. */
class Sender {
  readonly #sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  /** Outstanding query IDs → when they were sent. */
  readonly outstanding = new Map<number, number>();
  #loop: Promise<void>;

  constructor(private readonly to: Deno.NetAddr, private readonly onAnswer: (s: Sender) => void) {
    this.#loop = this.#receive();
  }

  send(query: Uint8Array, id: number): void {
    query[0] = id >> 8;
    query[1] = id & 0xff;
    this.outstanding.set(id, performance.now());
    this.#sock.send(query, this.to).catch(() => {});
  }

  async #receive(): Promise<void> {
    const buf = new Uint8Array(4096);
    for (;;) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await this.#sock.receive(buf);
      } catch {
        return;
      }
      const id = (got[0][0] << 8) | got[0][1];
      if (this.outstanding.delete(id)) this.onAnswer(this);
    }
  }

  async close(): Promise<void> {
    this.#sock.close();
    await this.#loop;
  }
}

async function round(
  target: Deno.NetAddr,
  name: string,
  opts: { queries: number; sockets: number; inFlight: number; timeoutMs: number },
): Promise<Omit<Round, "rcvbufErrors" | "socketDrops">> {
  const query = buildQuery(name, "A", 0);
  let sent = 0;
  let answered = 0;
  let lost = 0;
  let nextId = 1;
  let finish = () => {};
  const finished = new Promise<void>((resolve) => finish = resolve);
  const settle = () => {
    if (answered + lost === opts.queries) finish();
  };
  const sendNext = (s: Sender) => {
    if (sent >= opts.queries) return;
    sent++;
    s.send(query.slice(), nextId++ & 0xffff);
  };
  const senders = Array.from(
    { length: opts.sockets },
    () =>
      new Sender(target, (s) => {
        answered++;
        sendNext(s);
        settle();
      }),
  );
  const t0 = performance.now();
  // The window: inFlight queries spread over the sockets, all sent at once.
  for (let i = 0; i < opts.inFlight; i++) sendNext(senders[i % senders.length]);
  // A query unanswered after timeoutMs is lost; its slot sends the next one.
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const s of senders) {
      for (const [id, at] of s.outstanding) {
        if (now - at < opts.timeoutMs) continue;
        s.outstanding.delete(id);
        lost++;
        sendNext(s);
      }
    }
    settle();
  }, 50);
  await finished;
  const ms = performance.now() - t0;
  clearInterval(sweep);
  await Promise.all(senders.map((s) => s.close()));
  return { answered, lost, ms };
}

/** A sysctl's value, read through `sh` when this process may not read /proc/sys itself. */
async function readSysctl(path: string): Promise<string> {
  const file = `/proc/sys/${path}`;
  try {
    return (await Deno.readTextFile(file)).trim();
  } catch {
    const out = await new Deno.Command("sh", {
      args: ["-c", 'cat "$1"', "sh", file],
      stdout: "piped",
      stderr: "null",
    }).output().catch(() => null);
    return out?.success ? new TextDecoder().decode(out.stdout).trim() : "unknown";
  }
}

async function main(args: string[]): Promise<number> {
  const rounds = numArg(args, "rounds", 10);
  const opts = {
    queries: numArg(args, "queries", 1000),
    sockets: numArg(args, "sockets", 50),
    inFlight: numArg(args, "in-flight", 200),
    timeoutMs: numArg(args, "timeout", 2000),
  };
  const sameName = args.includes("--same-name");
  if (rounds < 1 || opts.sockets < 1 || opts.inFlight < 1 || opts.queries < 1) {
    console.error("udp_burst: --rounds, --queries, --sockets and --in-flight must be at least 1");
    return 2;
  }
  const rmem = await readSysctl("net/core/rmem_default");
  const upstream = await startFakeDot();
  let proxy: Proxy | null = null;
  try {
    proxy = await startProxy(upstream.port);
    const pinned = await pin(proxy.pid, 0) && await pin(Deno.pid, 1);
    const target: Deno.NetAddr = { transport: "udp", ...proxy.dns };
    const key = `${proxy.dns.hostname}:${proxy.dns.port}`;
    console.log(
      `udp_burst: ${opts.queries} identical queries per round, ${opts.inFlight} in flight from ` +
        `${opts.sockets} sockets; net.core.rmem_default=${rmem}; ` +
        `${pinned ? "dotproxy on CPU 0, clients on CPU 1" : "not pinned"}`,
    );
    console.log("round  answered  lost  RcvbufErrors  socket drops     ms");
    const all: Round[] = [];
    for (let r = 1; r <= rounds; r++) {
      const rcv0 = await udpRcvbufErrors();
      const drops0 = (await udpDrops()).get(key) ?? NaN;
      const res = await round(target, sameName ? "burst.test." : `burst-${r}.test.`, opts);
      const rcvbufErrors = (await udpRcvbufErrors()) - rcv0;
      const socketDrops = ((await udpDrops()).get(key) ?? NaN) - drops0;
      const row = { ...res, rcvbufErrors, socketDrops };
      all.push(row);
      console.log(
        [r, row.answered, row.lost, row.rcvbufErrors, row.socketDrops].map((v, i) =>
          String(v).padStart(i === 0 ? 5 : i === 1 ? 10 : i === 2 ? 6 : 14)
        ).join("") + row.ms.toFixed(0).padStart(7),
      );
    }
    const sum = (f: (r: Round) => number) => all.reduce((a, r) => a + f(r), 0);
    const lostRounds = all.filter((r) => r.lost > 0).length;
    console.log(
      `total: ${sum((r) => r.answered)} answered, ${sum((r) => r.lost)} lost ` +
        `(${lostRounds} of ${rounds} rounds lost any), RcvbufErrors +${
          sum((r) => r.rcvbufErrors)
        }, ` +
        `dotproxy socket drops +${sum((r) => r.socketDrops)}`,
    );
    return 0;
  } finally {
    await proxy?.stop();
    await upstream.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
