/**
 * The UDP adapter: datagram in → pipeline → datagram out. It owns the UDP size rule (an answer
 * larger than the client can take is truncated with TC=1 so the client retries over TCP) and the
 * rule that a reply leaves from the address the query was sent to: a wildcard (0.0.0.0, [::]) is
 * served by one socket per local address, re-read periodically and on reload, because a socket
 * bound to a wildcard cannot learn a datagram's destination in Deno (see local_addresses.ts).
 *
 * PROXY protocol (v2, one header per datagram) from trusted proxies: the client the header names
 * is what the pipeline sees; the answer goes back to the proxy (the datagram's source), which
 * relays it. A datagram the gate refuses is dropped, counted and never parsed as DNS.
 */
import { truncateReply } from "../dns/reply.ts";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import type { ClientAddress, ProxyGate } from "../identity/proxy_gate.ts";
import type { Answer } from "../pipeline/pipeline.ts";
import { LogThrottle } from "../sys/log_throttle.ts";
import type { Handler, Listener } from "./listener.ts";
import { IdentityRefusals, type IdentityState } from "./refusals.ts";
import {
  type BindTarget,
  DEFAULT_WILDCARD_LOOPBACK,
  type InterfaceAddress,
  loopbackAddresses,
  MAX_WILDCARD_SOCKETS,
  wildcardOf,
  wildcardTargets,
} from "./local_addresses.ts";

const log = logger("listen", "udp");

/** The largest UDP payload over IPv4 or IPv6 without jumbograms. */
const MAX_DATAGRAM = 65535;

/**
 * Receive buffer of the sockets on configured loopback addresses (there may be hundreds, each
 * with its own buffer). A DNS query is far smaller; a datagram that fills it is dropped as
 * oversized rather than read cut short.
 */
const LOOPBACK_RECEIVE_BUFFER = 4096;

/**
 * Receives kept pending on each socket. With one, a burst of 200 queries from 50 clients lost
 * 5-6 to the socket's receive buffer in most runs (the kernel holds about 190 small datagrams at
 * the default net.core.rmem_default of 208 KiB); with 8, none in 60 runs of 1,000 queries, for
 * about 1 µs more CPU per query at low load (bench/udp_burst.ts). Each costs a 64 KiB buffer.
 */
export const DEFAULT_RECEIVE_CONCURRENCY = 8;

/** How often a wildcard listener looks for local addresses added or removed. */
export const DEFAULT_WILDCARD_RESCAN_MS = 30_000;

/** Tries at binding every address of a wildcard on one OS-chosen port (port 0, in tests). */
const PORT_ZERO_ATTEMPTS = 8;

/** Errors of the query path that reach the listener are logged at most once per this. */
const FAILURE_LOG_INTERVAL_MS = 10_000;

/** How a wildcard listener finds and follows the local addresses. */
export interface WildcardOptions {
  /** Milliseconds between rescans; 0 rescans only on `rescan()` (reload). Default 30 s. */
  rescanIntervalMs?: number;
  /** Loopback addresses or prefixes inside 127/8 bound besides 127.0.0.1. Default 127.0.0.0/24. */
  loopback?: readonly string[];
  /** For "::": also bind the IPv4 addresses, as a dual-stack socket received IPv4. Default true. */
  ipv4?: boolean;
  /** Addresses other listeners bind on the same port (`udp://127.0.0.2:53` beside the wildcard). */
  exclude?: readonly string[];
  /** At most this many sockets. Default MAX_WILDCARD_SOCKETS. */
  maxSockets?: number;
  /** The local addresses; default `Deno.networkInterfaces` (`--allow-sys=networkInterfaces`). */
  interfaces?: () => readonly InterfaceAddress[];
}

/** What listenUdp needs. */
export interface UdpListenOptions {
  url: string;
  hostname: string;
  port: number;
  handle: Handler;
  clock: Clock;
  /** Receives pending per socket (loopback-list sockets keep one). Default 8. */
  receiveConcurrency?: number;
  wildcard?: WildcardOptions;
  /** PROXY protocol from trusted load balancers (lib/identity/proxy_gate.ts); null: off. */
  proxy?: ProxyGate | null;
}

/** A bound UDP listener. */
export interface UdpListener extends Listener {
  /** The local addresses it has a socket on (one unless it serves a wildcard). */
  addresses(): string[];
  /**
   * Re-reads the local addresses: sockets for new ones, closed for gone ones (wildcards only).
   * Resolves once the closed sockets are released (their address and port can be bound again).
   */
  rescan(): Promise<void>;
}

/** Binds a UDP socket (one per local address for a wildcard); throws the OS error (AddrInUse). */
export function listenUdp(opts: UdpListenOptions): UdpListener {
  const wildcard = wildcardOf(opts.hostname);
  if (!wildcard) return new SingleUdpListener(opts, bindUdp(opts.hostname, opts.port));
  let readInterfaces = opts.wildcard?.interfaces ?? listInterfaces;
  let shared = false;
  try {
    readInterfaces();
  } catch (err) {
    // Without --allow-sys=networkInterfaces the host's addresses are unknown: the loopback list
    // still gets sockets of its own (so 127.0.0.2 is answered from 127.0.0.2), and one wildcard
    // socket beside them (SO_REUSEADDR) serves every other address, as before.
    log.warn(
      "{url}: cannot list local addresses ({err}); addresses other than the loopback list are " +
        "served by one wildcard socket, so a reply to a query sent to a secondary address may " +
        "leave from another address and be dropped by the client. Run with " +
        "--allow-sys=networkInterfaces.",
      { url: opts.url, err: errText(err) },
    );
    const family = wildcard === "::" ? "IPv6" : "IPv4";
    readInterfaces = () => [{ family, address: wildcard, scopeid: null }];
    shared = true;
  }
  for (let attempt = 1;; attempt++) {
    try {
      return new WildcardUdpListener(opts, wildcard, readInterfaces, shared);
    } catch (err) {
      if (!(err instanceof PortTaken)) throw err;
      if (attempt >= PORT_ZERO_ATTEMPTS) throw err.cause;
    }
  }
}

/**
 * The host's addresses. Asks whether the permission is granted first: without it Deno would
 * prompt on a terminal (and block the start) instead of failing.
 */
function listInterfaces(): Deno.NetworkInterfaceInfo[] {
  const state = Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" }).state;
  if (state !== "granted") throw new Deno.errors.NotCapable("no --allow-sys=networkInterfaces");
  return Deno.networkInterfaces();
}

/** Applies the client's UDP size limit to an answer. */
export function fitUdp(answer: Answer): Uint8Array {
  return answer.bytes.length > answer.maxUdpSize
    ? truncateReply(answer.bytes, answer.maxUdpSize)
    : answer.bytes;
}

function bindUdp(hostname: string, port: number, reuseAddress = false): Deno.DatagramConn {
  return Deno.listenDatagram({ transport: "udp", hostname, port, reuseAddress });
}

/** A port chosen by the OS for the first address was taken on another: try another port. */
class PortTaken extends Error {}

/**
 * What every socket of a listener shares: the handler, the accepting flag, the PROXY gate and
 * its refusals, failure logging.
 */
class Shared {
  accepting = true;
  readonly #failures: LogThrottle;
  readonly proxy: ProxyGate | null;
  readonly refusals: IdentityRefusals;

  constructor(opts: UdpListenOptions, readonly handle: Handler) {
    this.url = opts.url;
    this.#failures = new LogThrottle(opts.clock, FAILURE_LOG_INTERVAL_MS);
    this.proxy = opts.proxy ?? null;
    this.refusals = new IdentityRefusals(opts.url, opts.clock);
  }

  readonly url: string;

  failed(client: ClientAddress, err: unknown): void {
    const suppressed = this.#failures.take();
    if (suppressed === null) return;
    log.error("query from {client} on {url} failed ({suppressed} more unlogged): {err}", {
      client: client.hostname,
      url: this.url,
      suppressed,
      err: err instanceof Error ? (err.stack ?? err.message) : String(err),
    });
  }
}

/** One bound socket and its receive loop: replies go out of the socket the query came in on. */
class SocketLoop {
  readonly addr: Deno.NetAddr;
  readonly done: Promise<void>;
  #closed = false;

  constructor(
    private readonly socket: Deno.DatagramConn,
    private readonly shared: Shared,
    private readonly bufferSize: number,
    concurrency: number,
  ) {
    this.addr = socket.addr as Deno.NetAddr;
    // Several receives pending: a burst is read several datagrams per event-loop turn.
    const loops = Array.from({ length: Math.max(1, concurrency) }, () => this.#receive());
    this.done = Promise.all(loops).then(() => {});
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.close();
  }

  async #receive(): Promise<void> {
    // One buffer per receive, reused: receive() without one allocates 64 KiB per datagram, and
    // the garbage collector then dominates. Each datagram is copied out (the pipeline keeps it).
    const buffer = new Uint8Array(this.bufferSize);
    const { shared } = this;
    for (;;) {
      let datagram: [Uint8Array, Deno.Addr];
      try {
        datagram = await this.socket.receive(buffer);
      } catch (err) {
        if (this.#closed) return;
        // ICMP errors and the like surface here on some systems; they concern one peer only.
        log.debug("UDP receive error on {url}: {err}", { url: shared.url, err: String(err) });
        continue;
      }
      if (!shared.accepting) continue;
      const [view, addr] = datagram;
      // A datagram that fills a small buffer may have been cut short: it is no query of ours.
      if (view.length === buffer.length && buffer.length < MAX_DATAGRAM) continue;
      const peer = addr as Deno.NetAddr;
      let bytes: Uint8Array = view;
      let client: ClientAddress = peer;
      if (shared.proxy) {
        const o = shared.proxy.datagram(peer, view);
        if (!o.ok) {
          shared.refusals.proxy(o);
          continue;
        }
        bytes = o.payload;
        client = o.client;
      }
      // The server's handler is guarded (lib/listen/guard.ts); this catch keeps the loop alive
      // whatever handler it is given.
      try {
        const answer = shared.handle({ bytes: bytes.slice(), client, transport: "udp" });
        // Refusals, errors and cache hits are sent in this turn; misses when their answer comes.
        // The answer goes to the datagram's source: behind a proxy, the proxy relays it.
        if (answer instanceof Promise) {
          answer.then((a) => this.#reply(a, peer), (err) => shared.failed(client, err));
        } else this.#reply(answer, peer);
      } catch (err) {
        shared.failed(client, err);
      }
    }
  }

  /** Sends an answer; never throws (it also runs in a promise callback nobody awaits). */
  #reply(answer: Answer | null, client: Deno.NetAddr): void {
    if (!answer || this.#closed) return;
    let bytes: Uint8Array;
    try {
      bytes = fitUdp(answer);
    } catch (err) {
      this.shared.failed(client, err);
      return;
    }
    this.socket.send(bytes, client).catch((err) =>
      log.debug("UDP send to {client} failed: {err}", {
        client: client.hostname,
        err: String(err),
      })
    );
  }
}

/** A listener on one address: one socket. */
class SingleUdpListener implements UdpListener {
  readonly url: string;
  readonly addr: Deno.NetAddr;
  readonly #shared: Shared;
  readonly #loop: SocketLoop;

  constructor(opts: UdpListenOptions, socket: Deno.DatagramConn) {
    this.url = opts.url;
    this.#shared = new Shared(opts, opts.handle);
    this.#loop = new SocketLoop(
      socket,
      this.#shared,
      MAX_DATAGRAM,
      opts.receiveConcurrency ?? DEFAULT_RECEIVE_CONCURRENCY,
    );
    this.addr = this.#loop.addr;
  }

  addresses(): string[] {
    return [this.addr.hostname];
  }

  identity(): IdentityState | undefined {
    return this.#shared.proxy ? this.#shared.refusals.state() : undefined;
  }

  rescan(): Promise<void> {
    return Promise.resolve();
  }

  stopAccepting(): void {
    this.#shared.accepting = false;
  }

  async close(): Promise<void> {
    this.#shared.accepting = false;
    this.#loop.close();
    await this.#loop.done;
  }
}

/**
 * A wildcard served by one socket per local address: interface addresses (and, for IPv4, the
 * configured loopback addresses), all on the same port, followed as addresses come and go.
 */
class WildcardUdpListener implements UdpListener {
  readonly url: string;
  readonly addr: Deno.NetAddr;
  readonly #shared: Shared;
  /** By bound hostname; `loopback` marks those from the configured loopback list. */
  readonly #sockets = new Map<string, { loop: SocketLoop; loopback: boolean }>();
  /** Every loop ever started, until it ends: close() waits for all of them. */
  readonly #loops = new Set<Promise<void>>();
  /** Loops of sockets closed by a rescan that have not ended yet. */
  readonly #closing = new Set<Promise<void>>();
  /** Addresses that could not be bound, so each failure is logged once, not at every rescan. */
  readonly #failing = new Set<string>();
  readonly #loopback: readonly string[];
  readonly #port: number;
  #cancelRescan = () => {};
  #closed = false;
  /** While binding the first time on an OS-chosen port, a taken port is retried, not logged. */
  #starting = true;

  constructor(
    private readonly opts: UdpListenOptions,
    private readonly wildcard: "0.0.0.0" | "::",
    private readonly readInterfaces: () => readonly InterfaceAddress[],
    /** Bind with SO_REUSEADDR: the fallback's wildcard socket shares the port with the others. */
    private readonly reuseAddress = false,
  ) {
    this.url = opts.url;
    this.#shared = new Shared(opts, opts.handle);
    const loopback = loopbackAddresses(opts.wildcard?.loopback ?? DEFAULT_WILDCARD_LOOPBACK);
    if (typeof loopback === "string") throw new RangeError(`${opts.url}: ${loopback}`);
    this.#loopback = loopback;
    const targets = this.#targets();
    let port = opts.port;
    let firstError: unknown = null;
    try {
      for (const t of targets) {
        const socket = this.#bind(t, port);
        if (socket instanceof SocketLoop) {
          if (port === 0) port = socket.addr.port;
        } else if (!t.loopback) {
          // Another address took the port the OS gave the first one: start over on a new port.
          if (opts.port === 0 && port !== 0 && socket instanceof Deno.errors.AddrInUse) {
            throw new PortTaken("port taken", { cause: socket });
          }
          firstError ??= socket;
        }
      }
      // Only loopback-list sockets bound: every real address is taken (a second instance?).
      if (![...this.#sockets.values()].some((s) => !s.loopback)) {
        throw firstError ?? new Error("no local address to listen on");
      }
    } catch (err) {
      for (const s of this.#sockets.values()) s.loop.close();
      throw err;
    }
    this.#port = port;
    this.#starting = false;
    this.addr = { transport: "udp", hostname: wildcard, port };
    const own = [...this.#sockets].filter(([, s]) => !s.loopback).map(([a]) => a);
    log.info("{url} answers on {addresses} and {n} loopback addresses, each from its own socket", {
      url: this.url,
      addresses: own.join(", "),
      n: this.#sockets.size - own.length,
    });
    this.#scheduleRescan();
  }

  addresses(): string[] {
    return [...this.#sockets.keys()];
  }

  identity(): IdentityState | undefined {
    return this.#shared.proxy ? this.#shared.refusals.state() : undefined;
  }

  rescan(): Promise<void> {
    this.#rescan();
    return Promise.all(this.#closing).then(() => {});
  }

  #rescan(): void {
    if (this.#closed) return;
    let targets: BindTarget[];
    try {
      targets = this.#targets();
    } catch (err) {
      log.warn("{url}: cannot list local addresses, keeping the current ones: {err}", {
        url: this.url,
        err: errText(err),
      });
      return;
    }
    const wanted = new Set(targets.map((t) => t.hostname));
    for (const [hostname, socket] of this.#sockets) {
      if (wanted.has(hostname)) continue;
      socket.loop.close();
      this.#closing.add(socket.loop.done);
      this.#sockets.delete(hostname);
      log.info("{url}: {address} is gone, its socket is closed", {
        url: this.url,
        address: hostname,
      });
    }
    for (const hostname of this.#failing) if (!wanted.has(hostname)) this.#failing.delete(hostname);
    for (const t of targets) {
      if (this.#sockets.has(t.hostname)) continue;
      if (this.#bind(t, this.#port) instanceof SocketLoop && !t.loopback) {
        log.info("{url}: now answering on {address}", { url: this.url, address: t.hostname });
      }
    }
  }

  stopAccepting(): void {
    this.#shared.accepting = false;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#shared.accepting = false;
    this.#cancelRescan();
    for (const s of this.#sockets.values()) s.loop.close();
    this.#sockets.clear();
    await Promise.all(this.#loops);
  }

  #targets(): BindTarget[] {
    const w = this.opts.wildcard;
    return wildcardTargets(this.wildcard, this.readInterfaces(), {
      loopback: this.#loopback,
      ipv4: w?.ipv4,
      max: w?.maxSockets ?? MAX_WILDCARD_SOCKETS,
      exclude: w?.exclude,
    });
  }

  /** Binds one address; returns the socket, or the error (logged once per address). */
  #bind(t: BindTarget, port: number): SocketLoop | unknown {
    let socket: Deno.DatagramConn;
    try {
      socket = bindUdp(t.hostname, port, this.reuseAddress);
    } catch (err) {
      const retried = this.#starting && this.opts.port === 0 && !t.loopback &&
        err instanceof Deno.errors.AddrInUse;
      if (!retried && !this.#failing.has(t.hostname)) {
        this.#failing.add(t.hostname);
        // A configured loopback address may well belong to another service (127.0.0.53).
        const level = t.loopback ? "debug" : "warn";
        log[level]("{url}: cannot listen on {address}, will retry at the next rescan: {err}", {
          url: this.url,
          address: t.hostname,
          err: errText(err),
        });
      }
      return err;
    }
    this.#failing.delete(t.hostname);
    const loop = t.loopback
      ? new SocketLoop(socket, this.#shared, LOOPBACK_RECEIVE_BUFFER, 1)
      : new SocketLoop(
        socket,
        this.#shared,
        MAX_DATAGRAM,
        this.opts.receiveConcurrency ?? DEFAULT_RECEIVE_CONCURRENCY,
      );
    this.#sockets.set(t.hostname, { loop, loopback: t.loopback });
    this.#loops.add(loop.done);
    loop.done.finally(() => {
      this.#loops.delete(loop.done);
      this.#closing.delete(loop.done);
    });
    return loop;
  }

  #scheduleRescan(): void {
    const every = this.opts.wildcard?.rescanIntervalMs ?? DEFAULT_WILDCARD_RESCAN_MS;
    if (every <= 0 || this.#closed) return;
    this.#cancelRescan = this.opts.clock.schedule(every, () => {
      this.#rescan();
      this.#scheduleRescan();
    });
  }
}
