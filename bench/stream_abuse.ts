/**
 * Stream abuse run (issue 10 item 1): clients that send many queries for a large answer and
 * never read what comes back. dotproxy runs as a real process (`deno run --allow-net
 * --allow-read=<root>,<tmp> main.ts`) with TCP and DoT listeners, forwarding over plain TCP to a
 * fake upstream in this process that answers every query with a ~25 KB TXT RRset (cached after
 * the first). Reports dotproxy's RSS (baseline, peak, end) and how many of the abusive
 * connections dotproxy still holds at the end, and whether a new connection from the same
 * address is still answered.
 *
 * Scenarios (each against a fresh dotproxy):
 * - one: 1 TCP connection sends 2,000 queries, never reads (hold 5 s).
 * - many: 40 TCP connections from 127.0.0.1 send 250 queries each, never read (hold 20 s; the
 *   per-client cap is 32 and the idle timeout 10 s).
 * - dot: 3 DoT connections send 1,000 queries each, never read (hold 5 s).
 *
 *   deno run -A bench/stream_abuse.ts [--scenarios one,many,dot] [--hold-scale 1] [--rounds 1]
 *
 * With --rounds N each scenario is repeated N times against the same dotproxy (the abusive
 * connections closed between rounds): RSS that keeps growing round after round is retained,
 * RSS that stays at the first round's level is allocation churn the allocator keeps.
 *
 * Loopback only; bounded; every process and socket opened is closed. Linux only (reads /proc).
 */
import dnsPacket from "dns-packet";
import { buildQuery, frame, TcpDnsClient } from "../tests/helpers/dns_client.ts";
import { startFakePlain } from "../tests/helpers/fake_plain.ts";
import type { RunningProxy } from "../tests/helpers/process.ts";
import { freePort } from "../tests/helpers/unbound.ts";
import { numArg, sleep } from "./lib/cli.ts";
import { procSnapshot } from "./lib/procfs.ts";
import { CA, ROOT, spawnProxy } from "./lib/process.ts";

const NAME = "big.abuse.test";
/** 100 TXT records of 240 characters: about 25 KB on the wire. */
const TXT_RECORDS = 100;

interface Scenario {
  name: string;
  tls: boolean;
  connections: number;
  queriesEach: number;
  holdMs: number;
}

const SCENARIOS: Record<string, Scenario> = {
  one: { name: "one", tls: false, connections: 1, queriesEach: 2000, holdMs: 5000 },
  many: { name: "many", tls: false, connections: 40, queriesEach: 250, holdMs: 20000 },
  dot: { name: "dot", tls: true, connections: 3, queriesEach: 1000, holdMs: 5000 },
};

function bigTxt(q: dnsPacket.Packet): Partial<dnsPacket.Packet> {
  const name = q.questions?.[0]?.name ?? NAME;
  return {
    answers: Array.from({ length: TXT_RECORDS }, (_, i) => ({
      type: "TXT" as const,
      name,
      ttl: 300,
      data: `r${String(i).padStart(3, "0")} ${"x".repeat(235)}`,
    })),
  };
}

interface Proxy {
  cli: RunningProxy;
  tcpPort: number;
  tlsPort: number;
  stop(): Promise<number>;
}

/** dotproxy with TCP and DoT listeners forwarding over TCP to `upstreamPort`, once it answers. */
async function startProxy(upstreamPort: number): Promise<Proxy> {
  const tcpPort = freePort();
  const tlsPort = freePort();
  const fixtures = `${ROOT}tests/fixtures`;
  const toml = [
    "[[listeners]]",
    `url = "tcp://127.0.0.1:${tcpPort}"`,
    "[[listeners]]",
    `url = "tls://127.0.0.1:${tlsPort}"`,
    `cert_file = "${fixtures}/server.pem"`,
    `key_file = "${fixtures}/server-key.pem"`,
    "[[upstreams]]",
    `url = "tcp://127.0.0.1:${upstreamPort}"`,
    "[log]",
    'level = "warning"',
    "",
  ].join("\n");
  const { cli, stop } = await spawnProxy(toml, "dotproxy-abuse-");
  for (let i = 0; i < 100; i++) {
    try {
      if (await answered({ hostname: "127.0.0.1", port: tcpPort })) {
        return { cli, tcpPort, tlsPort, stop };
      }
    } catch { /* not up yet */ }
    await sleep(200);
  }
  await stop();
  throw new Error(`dotproxy did not answer within 20 s:\n${cli.output()}`);
}

/** One query for the big name on a new connection; true if a NOERROR answer came back in 5 s. */
async function answered(addr: { hostname: string; port: number }): Promise<boolean> {
  const client = await TcpDnsClient.connect(addr);
  const timer = setTimeout(() => client.close(), 5000);
  try {
    await client.send(buildQuery(NAME, "TXT", 1));
    const reply = await client.read();
    return reply !== null && (reply[3] & 0xf) === 0;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    client.close();
  }
}

/** Established server-side TCP connections on `port` (from /proc/net/tcp). */
async function established(port: number): Promise<number> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let n = 0;
  for (const line of (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 3 && f[1].endsWith(hex) && f[3] === "01") n++;
  }
  return n;
}

async function connectAbuser(p: Proxy, tls: boolean): Promise<Deno.Conn> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: tls ? p.tlsPort : p.tcpPort });
  if (!tls) return tcp;
  const conn = await Deno.startTls(tcp, {
    hostname: "dns.test",
    caCerts: [await Deno.readTextFile(CA)],
  });
  await conn.handshake();
  return conn;
}

/** Writes `count` framed queries; gives up (the server stopped reading) after 5 s. */
async function flood(conn: Deno.Conn, count: number): Promise<number> {
  const burst = new Uint8Array(
    Array.from({ length: count }, (_, i) => [...frame(buildQuery(NAME, "TXT", i & 0xffff))]).flat(),
  );
  let at = 0;
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, 5000);
  try {
    while (at < burst.length) at += await conn.write(burst.subarray(at));
  } catch {
    /* closed by the server or by the timer */
  } finally {
    clearTimeout(timer);
  }
  return at;
}

/** Closes every connection of a round (client side). */
function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns.splice(0)) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

/**
 * Runs `rounds` rounds of the scenario against one dotproxy: each round opens the abusive
 * connections, floods, holds, counts what dotproxy still holds, then closes them client-side.
 * RSS after the first and the last round tells retention (grows per round) from churn (does not).
 */
async function run(s: Scenario, upstreamPort: number, rounds: number): Promise<string> {
  const p = await startProxy(upstreamPort);
  const pid = p.cli.child.pid;
  const conns: Deno.Conn[] = [];
  try {
    await sleep(1000);
    const base = (await procSnapshot(pid)).rssKiB;
    let peak = base;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, (await procSnapshot(pid)).rssKiB);
        await sleep(100);
      }
    })();
    const ends: number[] = [];
    const held: number[] = [];
    let sent = 0;
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < s.connections; i++) {
        try {
          conns.push(await connectAbuser(p, s.tls));
        } catch { /* refused or reset: counts as not held */ }
      }
      const written = await Promise.all(conns.map((c) => flood(c, s.queriesEach)));
      sent += written.reduce((a, b) => a + b, 0);
      await sleep(s.holdMs);
      held.push(await established(s.tls ? p.tlsPort : p.tcpPort));
      ends.push((await procSnapshot(pid)).rssKiB);
      closeAll(conns);
    }
    const served = await answered({ hostname: "127.0.0.1", port: p.tcpPort });
    sampling = false;
    await sampler;
    const mib = (kib: number) => (kib / 1024).toFixed(1);
    return `| ${s.name} | ${s.tls ? "DoT" : "TCP"} | ${s.connections} × ${s.queriesEach} | ` +
      `${rounds} | ${(sent / 1024).toFixed(0)} KiB | ${mib(base)} | ${mib(peak)} | ` +
      `${ends.map(mib).join(" → ")} | ${held.join(", ")} after ${s.holdMs / 1000} s | ` +
      `${served ? "yes" : "NO"} |`;
  } finally {
    closeAll(conns);
    await p.stop();
  }
}

if (import.meta.main) {
  const args = Deno.args;
  const at = args.indexOf("--scenarios");
  const names = ((at >= 0 ? args[at + 1] : undefined) ?? "one,many,dot").split(",");
  const scale = numArg(args, "hold-scale", 1);
  const rounds = numArg(args, "rounds", 1);
  const upstream = startFakePlain({ answerFor: (q) => bigTxt(q) });
  const rows: string[] = [];
  try {
    for (const name of names) {
      const s = SCENARIOS[name];
      if (!s) throw new Error(`unknown scenario ${name} (one, many, dot)`);
      rows.push(await run({ ...s, holdMs: s.holdMs * scale }, upstream.port, rounds));
      console.error(rows.at(-1));
    }
  } finally {
    await upstream.close();
  }
  console.log(
    [
      "| scenario | listener | connections × queries | rounds | queries sent | RSS before MiB | " +
      "peak MiB | end of each round MiB | connections held | new connection answered |",
      "| --- | --- | --- | --: | --: | --: | --: | --- | --- | --- |",
      ...rows,
    ].join("\n"),
  );
}
