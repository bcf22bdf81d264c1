/**
 * The UDP adapter: datagram in → pipeline → datagram out. It owns only the UDP size rule: an
 * answer larger than the client can take is truncated with TC=1 so the client retries over TCP.
 */
import { truncateReply } from "../dns/reply.ts";
import { logger } from "../sys/log.ts";
import type { Answer } from "../pipeline/pipeline.ts";
import type { Handler, Listener } from "./listener.ts";

const log = logger("listen", "udp");

/** The largest UDP payload over IPv4 or IPv6 without jumbograms. */
const MAX_DATAGRAM = 65535;

/** Binds a UDP socket; throws the OS error (e.g. AddrInUse) for the server to report. */
export function listenUdp(
  opts: { url: string; hostname: string; port: number; handle: Handler },
): Listener {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: opts.hostname,
    port: opts.port,
  });
  return new UdpListener(opts.url, socket, opts.handle);
}

/** Applies the client's UDP size limit to an answer. */
export function fitUdp(answer: Answer): Uint8Array {
  return answer.bytes.length > answer.maxUdpSize
    ? truncateReply(answer.bytes, answer.maxUdpSize)
    : answer.bytes;
}

class UdpListener implements Listener {
  readonly addr: Deno.NetAddr;
  #accepting = true;
  #closed = false;
  #loop: Promise<void>;

  constructor(
    readonly url: string,
    private readonly socket: Deno.DatagramConn,
    private readonly handle: Handler,
  ) {
    this.addr = socket.addr as Deno.NetAddr;
    this.#loop = this.#receive();
  }

  stopAccepting(): void {
    this.#accepting = false;
  }

  async close(): Promise<void> {
    this.#accepting = false;
    if (!this.#closed) {
      this.#closed = true;
      this.socket.close();
    }
    await this.#loop;
  }

  async #receive(): Promise<void> {
    // One buffer, reused: receive() without one allocates 64 KiB per datagram, and the garbage
    // collector then dominates. Each datagram is copied out (the pipeline keeps it).
    const buffer = new Uint8Array(MAX_DATAGRAM);
    for (;;) {
      let datagram: [Uint8Array, Deno.Addr];
      try {
        datagram = await this.socket.receive(buffer);
      } catch (err) {
        if (this.#closed) return;
        // ICMP errors and the like surface here on some systems; they concern one peer only.
        log.debug("UDP receive error on {url}: {err}", { url: this.url, err: String(err) });
        continue;
      }
      if (!this.#accepting) continue;
      const [view, addr] = datagram;
      const client = addr as Deno.NetAddr;
      // The server's handler is guarded (lib/listen/guard.ts); this catch keeps the loop alive
      // whatever handler it is given.
      try {
        const answer = this.handle({ bytes: view.slice(), client, transport: "udp" });
        // Refusals, errors and cache hits are sent in this turn; misses when their answer comes.
        if (answer instanceof Promise) {
          answer.then((a) => this.#reply(a, client), (err) => this.#failed(client, err));
        } else this.#reply(answer, client);
      } catch (err) {
        this.#failed(client, err);
      }
    }
  }

  #failed(client: Deno.NetAddr, err: unknown): void {
    log.error("query from {client} on {url} failed: {err}", {
      client: client.hostname,
      url: this.url,
      err: err instanceof Error ? (err.stack ?? err.message) : String(err),
    });
  }

  #reply(answer: Answer | null, client: Deno.NetAddr): void {
    if (!answer || this.#closed) return;
    this.socket.send(fitUdp(answer), client).catch((err) =>
      log.debug("UDP send to {client} failed: {err}", {
        client: client.hostname,
        err: String(err),
      })
    );
  }
}
