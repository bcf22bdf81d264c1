/**
 * Process control for the bench scripts: dotproxy as a real process (tests/helpers/process.ts)
 * with a generated config, unbound restarted on its port, CPU pinning, and child processes
 * whose output is parsed into a report when they end. Loopback only.
 */
import { type RunningProxy, spawnCli } from "../../tests/helpers/process.ts";
import { findTool } from "../../tests/helpers/tools.ts";
import { freePort, startUnbound, type Unbound } from "../../tests/helpers/unbound.ts";
import { sleep } from "./cli.ts";
import { UdpDns } from "./clients.ts";

/** The project root, with a trailing slash. */
export const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
/** The test CA that signed unbound's certificate (for `dns.test`). */
export const CA = `${ROOT}tests/fixtures/ca.pem`;

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

/** A dotproxy process running on a config in its own temp directory. */
export interface ProxyProcess {
  cli: RunningProxy;
  /** SIGTERM, then SIGKILL after 10 s; resolves with the exit code; removes the temp dir. */
  stop(): Promise<number>;
}

/**
 * Writes `toml` to <tmp>/dotproxy.toml (tmp a new directory named `prefix`…) and starts
 * `deno run --allow-net --allow-read=<root>,<tmp> main.ts --config <tmp>/dotproxy.toml`.
 * Does not wait for it to serve.
 */
export async function spawnProxy(toml: string, prefix: string): Promise<ProxyProcess> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix });
  const config = `${dir}/dotproxy.toml`;
  let cli: RunningProxy;
  try {
    await Deno.writeTextFile(config, toml);
    cli = spawnCli(["--config", config], [dir]);
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
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
  return { cli, stop };
}

/**
 * Starts dotproxy ({@link spawnProxy}) with UDP+TCP listeners on one port of 127.0.0.1, the
 * admin listener, log level warning, one DoT upstream (unbound on `upstreamPort`, tls_name
 * dns.test, the test CA) and `extraToml`. Resolves once a query under `test.` is answered NOERROR.
 */
export async function startProxy(upstreamPort: number, extraToml = ""): Promise<Proxy> {
  const port = freeUdpTcpPort();
  const adminPort = freePort();
  const toml = [
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
  ].join("\n");
  const { cli, stop } = await spawnProxy(toml, "dotproxy-robust-");
  const dns = { hostname: "127.0.0.1", port };
  let exited = false;
  cli.child.status.then(() => exited = true);
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

/** A child process whose output becomes a report of type `T` when it ends. */
export interface Child<T> {
  pid: number;
  /** The report, or a rejection if the child's output could not be read as one. */
  done: Promise<T>;
  /** SIGKILL (nothing if it has exited). */
  kill(): void;
}

/**
 * Spawns `bin args` (stdin closed, stdout and stderr piped) and parses its output with `read`
 * once it exits; `read` throws (with the output in the message) if the child failed.
 */
export function spawnChild<T>(
  bin: string,
  args: string[],
  read: (stdout: string, stderr: string) => T,
  cwd?: string,
): Child<T> {
  const child = new Deno.Command(bin, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const done = child.output().then((o) =>
    read(new TextDecoder().decode(o.stdout), new TextDecoder().decode(o.stderr))
  );
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  };
  return { pid: child.pid, done, kill };
}
