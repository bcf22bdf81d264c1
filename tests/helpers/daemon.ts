/**
 * Runs an external daemon for interop tests (HAProxy, dnsdist in front of dotproxy or of a
 * test backend): spawned with its output kept (the last 100 kB, for failure messages), ready once
 * a TCP port accepts connections, stopped with SIGTERM.
 */
import { findTool } from "./tools.ts";

/** A running daemon. */
export interface Daemon {
  /** SIGTERM, then wait for it to exit. */
  stop(): Promise<void>;
  /** Its stdout and stderr so far. */
  log(): string;
}

/** Starts `name` with `args`; resolves once `port` on 127.0.0.1 accepts TCP connections. */
export async function startDaemon(name: string, args: string[], port: number): Promise<Daemon> {
  const bin = await findTool(name);
  if (!bin) throw new Error(`${name} is not installed`);
  const child = new Deno.Command(bin, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  let log = "";
  const dec = new TextDecoder();
  const drain = (s: ReadableStream<Uint8Array>) =>
    (async () => {
      for await (const chunk of s) log = (log + dec.decode(chunk)).slice(-100_000);
    })().catch(() => {});
  const drains = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    await status;
    await drains;
  };
  for (let i = 0; i < 60; i++) {
    if (exited) break;
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return { stop, log: () => log };
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 10 * (i + 1)));
  }
  await stop();
  throw new Error(`${name} did not start listening on ${port}:\n${log}`);
}

/**
 * Starts `name` with its configuration `text` written to a temporary directory as `file`; `args`
 * gets that file's path. Stopping the daemon also removes the directory.
 */
async function startConfigured(
  name: string,
  file: string,
  text: string,
  args: (path: string) => string[],
  port: number,
): Promise<Daemon> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: `dotproxy-${name}-` });
  const removeDir = () => Deno.remove(dir, { recursive: true });
  try {
    await Deno.writeTextFile(`${dir}/${file}`, text);
    const daemon = await startDaemon(name, args(`${dir}/${file}`), port);
    return {
      log: daemon.log,
      stop: async () => {
        await daemon.stop();
        await removeDir();
      },
    };
  } catch (err) {
    await removeDir();
    throw err;
  }
}

/** One HAProxy TCP route: 127.0.0.1:`front` to 127.0.0.1:`backend`, with a PROXY header. */
export interface HaproxyRoute {
  front: number;
  backend: number;
  /** HAProxy's server option: "send-proxy-v2" (binary header) or "send-proxy" (v1 text). */
  send: "send-proxy-v2" | "send-proxy";
}

/**
 * HAProxy in TCP mode with one `listen` section per route; ready once the last route's front
 * accepts (that readiness probe reaches its backend as a connection with a header and no data).
 */
export function startHaproxy(routes: HaproxyRoute[]): Promise<Daemon> {
  const lines = [
    "global",
    "  maxconn 100",
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 5s",
    "  timeout server 5s",
    ...routes.flatMap((r, i) => [
      `listen route${i}`,
      `  bind 127.0.0.1:${r.front}`,
      `  server backend 127.0.0.1:${r.backend} ${r.send}`,
    ]),
    "",
  ];
  const ready = routes[routes.length - 1].front;
  return startConfigured("haproxy", "haproxy.cfg", lines.join("\n"), (cfg) => [
    "-f",
    cfg,
    "-db",
  ], ready);
}

/**
 * dnsdist on 127.0.0.1:`front` (UDP and TCP; see {@link freeDualPort}) forwarding to
 * 127.0.0.1:`backend` with a PROXY v2 header. The backend is marked up rather than health
 * checked (the checks would reach it as dnsdist itself), and there is no security polling.
 */
export function startDnsdist(front: number, backend: number): Promise<Daemon> {
  const lines = [
    `setLocal("127.0.0.1:${front}")`,
    `newServer({address="127.0.0.1:${backend}", useProxyProtocol=true})`,
    `getServer(0):setUp()`,
    `setSecurityPollSuffix("")`,
    "",
  ];
  return startConfigured("dnsdist", "dnsdist.conf", lines.join("\n"), (cfg) => [
    "-C",
    cfg,
    "--supervised",
    "--disable-syslog",
  ], front);
}

/** A port free for both UDP and TCP on 127.0.0.1 a moment ago (dnsdist uses both). */
export function freeDualPort(): number {
  for (let i = 0; i < 20; i++) {
    const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (udp.addr as Deno.NetAddr).port;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch {
      /* taken for TCP: try another */
    } finally {
      udp.close();
    }
  }
  throw new Error("no port free for both UDP and TCP");
}
