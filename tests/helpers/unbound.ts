/**
 * Real unbound as a local DNS-over-TLS upstream (tests gate on it with tools.ts's `toolTest`).
 *
 * The instance serves DoT only (TCP+TLS, no plain UDP) on 127.0.0.1 with fixtures/server.pem
 * and answers from local data alone:
 * - every name under `test.`: A 192.0.2.53 and AAAA 2001:db8::53 (TTL 300);
 * - `large.test.`: 12 TXT records, ~3000 bytes in all (no A/AAAA: NOERROR, no answers);
 * - anything else: REFUSED. It never queries the internet.
 */

import { findTool } from "./tools.ts";

export interface Unbound {
  port: number;
  hostname: string;
  /** Everything unbound wrote to stderr so far (its log). */
  log(): string;
  /** Terminates unbound, waits for it to exit and removes its temp directory. */
  stop(): Promise<void>;
}

export const UNBOUND_A = "192.0.2.53";
export const UNBOUND_AAAA = "2001:db8::53";
export const UNBOUND_LARGE_TXT_RECORDS = 12;

/** A TCP port that was free a moment ago on `hostname` (bind 0, read it, close). */
export function freePort(hostname = "127.0.0.1"): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function fixturePath(name: string): string {
  return decodeURIComponent(new URL(`../fixtures/${name}`, import.meta.url).pathname);
}

/** What an unbound.conf built by {@link unboundConf} serves besides its fixed settings. */
export interface UnboundConfOptions {
  /** Serve DNS-over-TLS (fixtures/server.pem) on the port instead of plain UDP and TCP. */
  tls?: boolean;
  /** Log every query unbound gets (to check what it was asked). */
  logQueries?: boolean;
  /** More `server:` lines (two-space indented): local zones and data, limits. */
  server?: string[];
}

/**
 * The one unbound.conf builder: a foreground instance on 127.0.0.1:`port` (IPv4 only, loopback
 * clients) with working directory `dir`, serving plain DNS over UDP and TCP, or DoT alone, and
 * answering from the `server` lines given.
 */
export function unboundConf(port: number, dir: string, opts: UnboundConfOptions = {}): string {
  const transport = opts.tls
    ? [
      `  tls-port: ${port}`,
      `  tls-service-key: "${fixturePath("server-key.pem")}"`,
      `  tls-service-pem: "${fixturePath("server.pem")}"`,
    ]
    : [];
  return [
    "server:",
    "  verbosity: 1",
    ...(opts.logQueries ? ["  log-queries: yes"] : []),
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    "  do-daemonize: no",
    "  use-syslog: no",
    '  logfile: ""',
    '  pidfile: ""',
    "  num-threads: 1",
    "  so-reuseport: no",
    `  interface: 127.0.0.1@${port}`,
    `  port: ${port}`,
    ...transport,
    "  do-ip4: yes",
    "  do-ip6: no",
    `  do-udp: ${opts.tls ? "no" : "yes"}`,
    "  do-tcp: yes",
    "  access-control: 127.0.0.0/8 allow",
    "  do-not-query-localhost: yes",
    '  module-config: "iterator"',
    ...(opts.server ?? []),
    "remote-control:",
    "  control-enable: no",
    "",
  ].join("\n");
}

/** The unbound.conf for the DoT instance described at the top, on `port` with directory `dir`. */
export function unboundConfig(port: number, dir: string, logQueries = false): string {
  const large: string[] = [];
  for (let i = 0; i < UNBOUND_LARGE_TXT_RECORDS; i++) {
    const text = `record-${String(i).padStart(2, "0")} ${"x".repeat(240)}`;
    large.push(`  local-data: 'large.test. 300 IN TXT "${text}"'`);
  }
  return unboundConf(port, dir, {
    tls: true,
    logQueries,
    server: [
      "  outgoing-range: 16",
      "  num-queries-per-thread: 64",
      "  incoming-num-tcp: 64",
      // Everything outside test. is refused, so nothing is ever looked up on the internet.
      '  local-zone: "." refuse',
      '  local-zone: "test." redirect',
      `  local-data: "test. 300 IN A ${UNBOUND_A}"`,
      `  local-data: "test. 300 IN AAAA ${UNBOUND_AAAA}"`,
      '  local-zone: "large.test." static',
      ...large,
    ],
  });
}

/** Connects once; true if something accepts TCP on the port. */
async function canConnect(hostname: string, port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname, port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

const READY = "start of service";

/**
 * Starts `unbound -d -c <tmp conf>` serving DoT on 127.0.0.1 (on `opts.port`, or a free port,
 * retrying with another if that one was taken meanwhile). Resolves once unbound has logged
 * "start of service" and accepts TCP connections. `opts.config` replaces the configuration
 * (it must listen on TCP at 127.0.0.1 on the port it is given).
 */
export async function startUnbound(
  opts: { port?: number; config?: (port: number, dir: string) => string } = {},
): Promise<Unbound> {
  const bin = await findTool("unbound");
  if (!bin) throw new Error("unbound is not installed");
  const attempts = opts.port === undefined ? 5 : 1;
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await startOnce(bin, opts.port ?? freePort(), opts.config ?? unboundConfig);
    } catch (err) {
      lastErr = err;
    }
  }
  throw lastErr;
}

async function startOnce(
  bin: string,
  port: number,
  config: (port: number, dir: string) => string,
): Promise<Unbound> {
  const hostname = "127.0.0.1";
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "dotproxy-unbound-" });
  const conf = `${dir}/unbound.conf`;
  await Deno.writeTextFile(conf, config(port, dir));

  const child = new Deno.Command(bin, {
    args: ["-d", "-c", conf],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();

  // Drain stderr for the whole life of the process (so unbound never blocks on a full pipe)
  // and resolve `ready` when the start-up line appears, or reject it if unbound exits first.
  let log = "";
  let ready = false;
  let onReady = () => {};
  let onExit = (_: Error) => {};
  const readyP = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    onExit = reject;
  });
  const drain = (async () => {
    const dec = new TextDecoder();
    try {
      for await (const chunk of child.stderr) {
        log += dec.decode(chunk, { stream: true });
        if (log.length > 1_000_000) log = log.slice(-500_000);
        if (!ready && log.includes(READY)) {
          ready = true;
          onReady();
        }
      }
    } catch { /* process gone */ }
  })();
  const status = child.status.then((s) => {
    if (!ready) onExit(new Error(`unbound exited (code ${s.code}) before starting:\n${log}`));
    return s;
  });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    await status;
    await drain;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  try {
    await readyP;
    // The log line comes after the sockets are bound; confirm with real connections.
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      ok = await canConnect(hostname, port);
      if (!ok) await new Promise((r) => setTimeout(r, 10 * (i + 1)));
    }
    if (!ok) throw new Error(`unbound on port ${port} does not accept connections:\n${log}`);
  } catch (err) {
    await stop();
    throw err;
  }

  return { port, hostname, log: () => log, stop };
}

/** The internal zone `internalUnboundConfig` serves, with its names and addresses. */
export const CORP_ZONE = {
  zone: "corp.test",
  www: "10.1.2.3",
  db: "10.1.2.4",
  /** A name inside the zone with a public address. */
  pub: "198.51.100.7",
} as const;

/**
 * unbound.conf for an internal plain-DNS resolver (UDP and TCP, no TLS) on `port`: it serves
 * `corp.test` (www, db, pub A records, an SOA) and the reverse name of www under
 * 10.in-addr.arpa, logs every query it gets (`log-queries`), and refuses everything else.
 */
export function internalUnboundConfig(port: number, dir: string): string {
  const z = CORP_ZONE.zone;
  return unboundConf(port, dir, {
    logQueries: true,
    server: [
      '  local-zone: "." refuse',
      `  local-zone: "${z}." static`,
      `  local-data: "${z}. 300 IN SOA ns.${z}. admin.${z}. 1 3600 600 86400 300"`,
      `  local-data: "www.${z}. 300 IN A ${CORP_ZONE.www}"`,
      `  local-data: "db.${z}. 300 IN A ${CORP_ZONE.db}"`,
      `  local-data: "pub.${z}. 300 IN A ${CORP_ZONE.pub}"`,
      '  local-zone: "10.in-addr.arpa." static',
      `  local-data-ptr: "${CORP_ZONE.www} www.${z}"`,
    ],
  });
}

/** The [[upstreams]] entry of the "corp" group: the internal resolver on 127.0.0.1:`port`. */
export function corpUpstreamToml(port: number): string {
  return `[[upstreams]]\nurl = "udp://127.0.0.1:${port}"\ngroup = "corp"\n`;
}

/** The [[routes]] entry sending `CORP_ZONE` and its reverse zone to the "corp" group. */
export const CORP_ROUTE_TOML =
  `[[routes]]\ndomains = ["${CORP_ZONE.zone}", "10.in-addr.arpa"]\ngroup = "corp"\n`;

/** The unbound.conf of `unboundConfig` with every query logged (to check what it was asked). */
export function loggingUnboundConfig(port: number, dir: string): string {
  return unboundConfig(port, dir, true);
}
