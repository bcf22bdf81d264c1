/**
 * Starts dotproxy in-process for integration tests: listeners on 127.0.0.1 with OS-chosen ports,
 * the given upstreams trusted through the test CA, and a fake clock unless told otherwise.
 */
import { type FileReader, isConfigError, parseConfig } from "../../lib/config/load.ts";
import type { QueryLog } from "../../lib/metrics/query_log.ts";
import type { HostsFs } from "../../lib/route/hosts_watch.ts";
import type { Config } from "../../lib/config/schema.ts";
import { type Server, startServer } from "../../lib/server.ts";
import type { Clock } from "../../lib/sys/clock.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import type { Addr } from "./dns_client.ts";
import { FakeClock } from "./fake_clock.ts";

const CA = new URL("../fixtures/ca.pem", import.meta.url).pathname;

/** An upstream for the proxy to use: any address serving DoT with a test-CA certificate. */
export interface UpstreamAddr {
  hostname: string;
  port: number;
  tlsName?: string;
}

/** A running in-process proxy. */
export interface TestProxy {
  server: Server;
  config: Config;
  clock: FakeClock;
  udp: Addr;
  tcp: Addr;
  stop(): Promise<void>;
}

/** Builds a Config from extra TOML (sections other than listeners/upstreams) and upstreams. */
export async function testConfig(
  upstreams: UpstreamAddr[],
  extraToml = "",
  listenOn = "127.0.0.1",
  readFile: FileReader = (p) => Deno.readTextFile(p),
): Promise<Config> {
  const bracket = (h: string) => (h.includes(":") ? `[${h}]` : h);
  const toml = [
    `[[listeners]]\nurl = "udp://${bracket(listenOn)}:5053"`,
    `[[listeners]]\nurl = "tcp://${bracket(listenOn)}:5053"`,
    ...upstreams.map((u) =>
      `[[upstreams]]\nurl = "tls://${bracket(u.hostname)}:${u.port}"\n` +
      `tls_name = "${u.tlsName ?? "dns.test"}"\nca_file = "${CA}"`
    ),
    extraToml,
  ].join("\n\n");
  const config = await parseConfig(toml, {
    path: "test.toml",
    baseDir: "/",
    readFile,
  });
  if (isConfigError(config)) throw new Error(`test config invalid: ${config.message}`);
  for (const l of config.listeners) l.port = 0; // let the OS choose
  if (config.admin) config.admin.port = 0;
  return config;
}

/** Starts the proxy; `clock` defaults to a FakeClock that only moves when the test advances it. */
export async function startProxy(
  upstreams: UpstreamAddr[],
  opts: {
    extraToml?: string;
    clock?: Clock;
    listenOn?: string;
    /** Reads files the config names (hosts files); default: the real file system. */
    readFile?: FileReader;
    /** Hosts-file access of the running server (split DNS); default: the real file system. */
    hostsFs?: HostsFs;
    queryLog?: QueryLog;
  } = {},
): Promise<TestProxy> {
  const config = await testConfig(upstreams, opts.extraToml, opts.listenOn, opts.readFile);
  const clock = (opts.clock ?? new FakeClock()) as FakeClock;
  const server = await startServer(config, {
    clock,
    random: cryptoRandom(),
    hostsFs: opts.hostsFs,
    queryLog: opts.queryLog,
  });
  const [udp, tcp] = server.listeners.map((l) => ({
    hostname: l.addr.hostname,
    port: l.addr.port,
  }));
  return { server, config, clock, udp, tcp, stop: () => server.stop() };
}
