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
