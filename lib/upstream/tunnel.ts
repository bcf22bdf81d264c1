/**
 * How a DoH upstream given by hostname reaches the address the bootstrap servers gave for it.
 * Deno's `fetch` resolves hostnames through the system resolver — possibly dotproxy itself — and
 * has no hook to connect elsewhere while still verifying TLS for the hostname (its `tcp` proxy
 * transport speaks cleartext). Its HTTP CONNECT proxy support does exactly that, though: TLS (SNI,
 * certificate check, ALPN/HTTP/2) runs end to end inside the tunnel. So each such upstream gets a
 * tiny CONNECT proxy of its own on loopback that accepts only `CONNECT <its host>:<its port>`,
 * resolves the host through the bootstrap resolver and splices bytes. Only the first request on
 * each connection is interpreted; after that it is an opaque TLS stream.
 */
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import { writeAll } from "../dns/framing.ts";
import type { AddressResolver } from "./resolver.ts";
import { dialTcp } from "./dial.ts";

/** What a tunnel may connect to and how. */
export interface TunnelOptions {
  /** The only authority it tunnels to: the DoH URL's hostname and port. */
  host: string;
  port: number;
  resolver: AddressResolver;
  clock: Clock;
  /** Request head plus resolution plus TCP connect must finish within this. */
  connectTimeoutMs: number;
}

const MAX_HEAD = 8192;
const COPY_BUFFER = 16384;
const encoder = new TextEncoder();

const log = logger("upstream", "tunnel");

/** A loopback CONNECT proxy for one DoH upstream; see the module comment. */
export class ConnectTunnel {
  /** The proxy URL to give `Deno.createHttpClient({ proxy: { url } })`. */
  readonly proxyUrl: string;
  /** Tunnels opened so far (connections fetch made), for tests and logs. */
  opened = 0;
  #listener: Deno.Listener;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #accepting: Promise<void>;
  #authority: string;
  /** Which resolved address the next tunnel dials; moves on after a failed connect. */
  #addressIndex = 0;

  constructor(private readonly opts: TunnelOptions) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.proxyUrl = `http://127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
    this.#authority = `${opts.host.toLowerCase()}:${opts.port}`;
    this.#accepting = this.#accept();
  }

  /** Stops accepting and closes every tunnel. */
  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const c of this.#conns) closeQuietly(c);
    await this.#accepting;
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  async #accept(): Promise<void> {
    try {
      for (;;) {
        const conn = await this.#listener.accept();
        this.#track(conn);
        const task = this.#serve(conn).finally(() => this.#tasks.delete(task));
        this.#tasks.add(task);
      }
    } catch {
      // listener closed
    }
  }

  async #serve(client: Deno.Conn): Promise<void> {
    const { clock } = this.opts;
    let upstream: Deno.Conn | null = null;
    let expired = false;
    const cancel = clock.schedule(this.opts.connectTimeoutMs, () => {
      expired = true;
      closeQuietly(client);
    });
    try {
      const head = await readHead(client);
      if (!head) return;
      const m = /^CONNECT (\S+) HTTP\/1\.[01]\r\n/.exec(head.text);
      if (!m || m[1].toLowerCase() !== this.#authority) {
        await reply(client, "403 Forbidden");
        return;
      }
      upstream = await this.#connect();
      if (!upstream || expired) {
        if (!expired) await reply(client, "502 Bad Gateway");
        return;
      }
      this.#track(upstream);
      await reply(client, "200 Connection Established");
      cancel();
      this.opened++;
      if (head.rest.length > 0) await writeAll(upstream, head.rest);
      const up = splice(client, upstream);
      const down = splice(upstream, client);
      await Promise.race([up, down]);
      // One side ended: end the other too, and wait for its copy loop to notice.
      closeQuietly(client);
      closeQuietly(upstream);
      await Promise.all([up, down]);
    } catch {
      // either side went away
    } finally {
      cancel();
      this.#untrack(client);
      if (upstream) this.#untrack(upstream);
    }
  }

  /** A TCP connection to one of the host's bootstrap-resolved addresses, or null. */
  async #connect(): Promise<Deno.Conn | null> {
    const found = await this.opts.resolver.lookup(this.opts.host);
    if (!found.ok) {
      log.warn("cannot resolve {host}: {reason}", { host: this.opts.host, reason: found.message });
      return null;
    }
    const hostname = found.addresses[this.#addressIndex % found.addresses.length];
    const dial = dialTcp({ hostname, port: this.opts.port });
    const cancel = this.opts.clock.schedule(this.opts.connectTimeoutMs, () => dial.abort());
    try {
      return await dial.done;
    } catch (err) {
      this.#addressIndex++;
      log.warn("cannot connect to {host} at {address}: {reason}", {
        host: this.opts.host,
        address: hostname,
        reason: errText(err),
      });
      return null;
    } finally {
      cancel();
    }
  }

  #track(c: Deno.Conn): void {
    this.#conns.add(c);
  }

  #untrack(c: Deno.Conn): void {
    closeQuietly(c);
    this.#conns.delete(c);
  }
}

/** Reads up to the end of the request head; null if the peer closes or sends too much first. */
async function readHead(c: Deno.Conn): Promise<{ text: string; rest: Uint8Array } | null> {
  const buf = new Uint8Array(MAX_HEAD);
  let n = 0;
  while (n < MAX_HEAD) {
    const got = await c.read(buf.subarray(n));
    if (got === null) return null;
    n += got;
    for (let i = 3; i < n; i++) {
      if (buf[i - 3] === 13 && buf[i - 2] === 10 && buf[i - 1] === 13 && buf[i] === 10) {
        return {
          text: new TextDecoder().decode(buf.subarray(0, i + 1)),
          rest: buf.slice(i + 1, n),
        };
      }
    }
  }
  return null;
}

function reply(c: Deno.Conn, status: string): Promise<void> {
  return writeAll(c, encoder.encode(`HTTP/1.1 ${status}\r\n\r\n`));
}

/** Copies `from` to `to` until `from` ends or either side fails. */
async function splice(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(COPY_BUFFER);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) return;
      await writeAll(to, buf.subarray(0, n));
    }
  } catch {
    // closed
  }
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* already closed */ }
}
