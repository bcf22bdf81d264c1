/**
 * The TCP adapter (RFC 7766): length-prefixed messages, many queries pipelined on one connection
 * and answered as each completes, in any order. A client that half-closes still gets its pending
 * answers; a connection idle for `idleTimeoutMs` with nothing pending is closed.
 */
import type { Clock } from "../sys/clock.ts";
import { logger } from "../sys/log.ts";
import { FramedWriter, FrameReader } from "./framing.ts";
import type { Handler, Listener } from "./listener.ts";

const log = logger("listen", "tcp");

/** Limits a TCP listener enforces. */
export interface TcpOptions {
  url: string;
  hostname: string;
  port: number;
  handle: Handler;
  clock: Clock;
  idleTimeoutMs: number;
}

/** Binds a TCP listener; throws the OS error (e.g. AddrInUse) for the server to report. */
export function listenTcp(opts: TcpOptions): Listener {
  const listener = Deno.listen({ transport: "tcp", hostname: opts.hostname, port: opts.port });
  return new TcpListener(listener, opts);
}

class TcpListener implements Listener {
  readonly url: string;
  readonly addr: Deno.NetAddr;
  #sessions = new Set<TcpSession>();
  #accepting = true;
  #loop: Promise<void>;

  constructor(private readonly listener: Deno.TcpListener, private readonly opts: TcpOptions) {
    this.url = opts.url;
    this.addr = listener.addr;
    this.#loop = this.#accept();
  }

  stopAccepting(): void {
    if (!this.#accepting) return;
    this.#accepting = false;
    this.listener.close();
    for (const s of this.#sessions) s.stopReading();
  }

  async close(): Promise<void> {
    this.stopAccepting();
    await this.#loop;
    await Promise.all([...this.#sessions].map((s) => s.close()));
  }

  async #accept(): Promise<void> {
    while (this.#accepting) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.listener.accept();
      } catch (err) {
        if (!this.#accepting) return;
        log.warn("accept failed on {url}: {err}", { url: this.url, err: String(err) });
        continue;
      }
      conn.setNoDelay(true);
      const session = new TcpSession(conn, this.opts, () => this.#sessions.delete(session));
      this.#sessions.add(session);
    }
  }
}

class TcpSession {
  #writer: FramedWriter;
  #reader = new FrameReader();
  #pending = 0;
  #readDone = false;
  #closed = false;
  #lastActivity: number;
  #cancelIdle: () => void = () => {};
  #loop: Promise<void>;

  constructor(
    private readonly conn: Deno.TcpConn,
    private readonly opts: TcpOptions,
    private readonly onClose: () => void,
  ) {
    this.#lastActivity = opts.clock.now();
    this.#writer = new FramedWriter(conn, () => this.#finish());
    this.#armIdle(opts.idleTimeoutMs);
    this.#loop = this.#read();
  }

  /** Used on shutdown: take no more queries, finish the pending ones. */
  stopReading(): void {
    this.#readDone = true;
    if (this.#pending === 0) this.#finish();
  }

  async close(): Promise<void> {
    this.#finish();
    await this.#loop;
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(65536);
    const client = this.conn.remoteAddr;
    try {
      while (!this.#readDone) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.#lastActivity = this.opts.clock.now();
        this.#reader.push(buf.subarray(0, n));
        for (let m = this.#reader.next(); m && !this.#readDone; m = this.#reader.next()) {
          this.#dispatch(m, client);
        }
      }
    } catch (err) {
      if (!this.#closed) {
        log.debug("TCP read from {client} failed: {err}", {
          client: client.hostname,
          err: String(err),
        });
      }
    }
    // End of input (possibly a half-close): answer what is pending, then close.
    this.#readDone = true;
    if (this.#pending === 0) this.#finish();
  }

  async #dispatch(bytes: Uint8Array, client: Deno.NetAddr): Promise<void> {
    this.#pending++;
    const answer = await this.opts.handle({ bytes, client, transport: "tcp" });
    this.#pending--;
    if (answer && !this.#closed) this.#writer.send(answer.bytes);
    this.#lastActivity = this.opts.clock.now();
    if (this.#readDone && this.#pending === 0) this.#finish();
  }

  #armIdle(ms: number): void {
    this.#cancelIdle = this.opts.clock.schedule(ms, () => {
      const idleFor = this.opts.clock.now() - this.#lastActivity;
      if (this.#pending === 0 && idleFor >= this.opts.idleTimeoutMs) this.#finish();
      else if (!this.#closed) this.#armIdle(Math.max(1, this.opts.idleTimeoutMs - idleFor));
    });
  }

  /** Flushes queued answers, then closes the socket (once). */
  async #finish(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelIdle();
    await this.#writer.flushed();
    try {
      this.conn.close();
    } catch { /* already closed */ }
    this.onClose();
  }
}
