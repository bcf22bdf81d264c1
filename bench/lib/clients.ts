/**
 * DNS clients of the bench scripts: a UDP socket and a long-lived, reconnecting TCP connection,
 * each matching answers to its queries by ID and question and recording every query's outcome
 * (answered, rcode, TC, latency, lost) in a {@link Rec}, so the scripts can account for every
 * query they sent.
 */
import { buildQuery, TcpDnsClient } from "../../tests/helpers/dns_client.ts";
import { sleep } from "./cli.ts";

/** A client waits this long for an answer before counting the query as lost. */
export const LOST_AFTER_MS = 5000;

/** The outcome of one query. `ms` is -1 while unanswered; `lost` once LOST_AFTER_MS passed. */
export interface Rec {
  /** Sent at, ms since the run's start. */
  t: number;
  /** Which stream of queries (for the report). */
  cls: string;
  ms: number;
  rcode: number;
  tc: boolean;
  lost: boolean;
  /** Answered, but after LOST_AFTER_MS. */
  late: boolean;
  /** The answer's question section differed from the query's. */
  mismatch: boolean;
}

/** A new query record for stream `cls`, sent now. */
export function newRec(t0: number, cls: string): Rec {
  return {
    t: performance.now() - t0,
    cls,
    ms: -1,
    rcode: -1,
    tc: false,
    lost: false,
    late: false,
    mismatch: false,
  };
}

/**
 * Calls `onDatagram` with every datagram `sock` receives until it is closed; the promise
 * resolves then. The buffer is reused: `onDatagram` must not keep the bytes.
 */
export async function receiveEach(
  sock: Deno.DatagramConn,
  onDatagram: (data: Uint8Array) => void,
): Promise<void> {
  const buf = new Uint8Array(65536);
  for (;;) {
    let data: Uint8Array;
    try {
      [data] = await sock.receive(buf);
    } catch {
      return; // closed
    }
    onDatagram(data);
  }
}

/** Question section bytes (from offset 12 to the end of the first question), or null. */
function questionBytes(msg: Uint8Array): Uint8Array | null {
  let i = 12;
  while (i < msg.length) {
    const len = msg[i];
    if (len === 0) {
      i += 1;
      break;
    }
    if (len >= 0xc0) return null;
    i += 1 + len;
  }
  i += 4;
  return i <= msg.length ? msg.subarray(12, i) : null;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Queries in flight on one socket or connection, by DNS ID; answers matched by ID + question. */
class Pending {
  #map = new Map<number, { rec: Rec; q: Uint8Array; at: number }>();
  #late = new Map<number, { rec: Rec; q: Uint8Array; at: number }>();
  #next = Math.floor(Math.random() * 0x10000);
  strays = 0;

  get size(): number {
    return this.#map.size;
  }

  /** A free ID, remembered with `rec`; returns the query bytes to send. */
  add(name: string, rec: Rec): Uint8Array {
    let id = this.#next;
    while (this.#map.has(id) || this.#late.has(id)) id = (id + 1) & 0xffff;
    this.#next = (id + 1) & 0xffff;
    const q = buildQuery(name, "A", id);
    this.#map.set(id, { rec, q: questionBytes(q)!, at: performance.now() });
    return q;
  }

  /** Records the answer `msg`, if it answers a query of ours. */
  answer(msg: Uint8Array): void {
    if (msg.length < 12) {
      this.strays++;
      return;
    }
    const id = (msg[0] << 8) | msg[1];
    let p = this.#map.get(id);
    let late = false;
    if (p) this.#map.delete(id);
    else if ((p = this.#late.get(id))) {
      this.#late.delete(id);
      late = true;
    } else {
      this.strays++;
      return;
    }
    const qb = questionBytes(msg);
    const rec = p.rec;
    rec.mismatch = qb === null ? (msg[5] !== 0 || msg[4] !== 0) : !sameBytes(qb, p.q);
    rec.rcode = msg[3] & 0x0f;
    rec.tc = (msg[2] & 0x02) !== 0;
    rec.ms = performance.now() - p.at;
    rec.late = late;
  }

  /** Marks queries older than LOST_AFTER_MS as lost (a late answer is still recorded). */
  sweep(now = performance.now()): void {
    for (const [id, p] of this.#map) {
      if (now - p.at < LOST_AFTER_MS) continue;
      p.rec.lost = true;
      this.#map.delete(id);
      this.#late.set(id, p);
    }
    for (const [id, p] of this.#late) if (now - p.at > 30_000) this.#late.delete(id);
  }

  /** Marks every query still waiting as lost. */
  abandon(): void {
    for (const p of this.#map.values()) p.rec.lost = true;
    this.#map.clear();
  }
}

/** What {@link drain} needs of a client: its unanswered queries and the lost verdict. */
export interface Sweepable {
  readonly inFlight: number;
  sweep(now?: number): void;
}

/**
 * Waits (up to LOST_AFTER_MS + `graceMs`) for the last answers to the queries of `clients`,
 * sweeping every 100 ms; then marks whatever is still unanswered as lost.
 */
export async function drain(clients: Sweepable[], graceMs: number): Promise<void> {
  const until = performance.now() + LOST_AFTER_MS + graceMs;
  while (performance.now() < until && clients.some((c) => c.inFlight > 0)) {
    await sleep(100);
    for (const c of clients) c.sweep();
  }
  for (const c of clients) c.sweep(performance.now() + LOST_AFTER_MS);
}

/** A UDP client socket bound to `hostname` (port 0), sending to `target`, matching answers. */
export class UdpDns implements Sweepable {
  readonly sock: Deno.DatagramConn;
  readonly #pending: Pending;
  readonly #target: Deno.NetAddr;
  readonly #loop: Promise<void>;
  sendErrors = 0;

  constructor(hostname: string, target: { hostname: string; port: number }) {
    const sock = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
    const pending = new Pending();
    this.sock = sock;
    this.#pending = pending;
    this.#target = { transport: "udp", ...target };
    this.#loop = receiveEach(sock, (data) => pending.answer(data));
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  get strays(): number {
    return this.#pending.strays;
  }

  /** Sends a query for `name` (type A, RD) recorded in `rec`. */
  send(name: string, rec: Rec): void {
    const q = this.#pending.add(name, rec);
    this.sock.send(q, this.#target).catch(() => this.sendErrors++);
  }

  /** One query, awaited: the answer's rcode (-1 if none within `timeoutMs`). */
  async ask(name: string, timeoutMs: number): Promise<Rec> {
    const rec = newRec(0, "probe");
    this.send(name, rec);
    const until = performance.now() + timeoutMs;
    while (rec.ms < 0 && performance.now() < until) await sleep(5);
    return rec;
  }

  sweep(now?: number): void {
    this.#pending.sweep(now);
  }

  abandon(): void {
    this.#pending.abandon();
  }

  close(): void {
    try {
      this.sock.close();
    } catch { /* closed */ }
  }

  async closed(): Promise<void> {
    this.close();
    await this.#loop;
  }
}

/** A long-lived DNS-over-TCP connection that reconnects when dotproxy closes it. */
export class TcpStream implements Sweepable {
  #client: TcpDnsClient | null = null;
  #pending: Pending | null = null;
  #writing: Promise<void> = Promise.resolve();
  #closing = false;
  connects = 0;
  closedByPeer = 0;
  errors = 0;

  constructor(private readonly target: { hostname: string; port: number }) {}

  /** Sends a query for `name`, connecting first if needed; false if that is not possible now. */
  send(name: string, rec: Rec): boolean {
    if (!this.#client) {
      if (this.#closing) return false;
      this.#connect();
      return false;
    }
    const q = this.#pending!.add(name, rec);
    const client = this.#client;
    this.#writing = this.#writing.then(() => client.send(q)).catch(() => {
      this.errors++;
    });
    return true;
  }

  #connecting = false;
  #connect(): void {
    if (this.#connecting) return;
    this.#connecting = true;
    TcpDnsClient.connect(this.target).then((client) => {
      this.connects++;
      const pending = new Pending();
      this.#client = client;
      this.#pending = pending;
      this.#connecting = false;
      (async () => {
        try {
          for (;;) {
            const msg = await client.read();
            if (msg === null) break;
            pending.answer(msg);
          }
        } catch {
          this.errors++;
        }
        if (!this.#closing) this.closedByPeer++;
        this.#dead.push(pending);
        if (this.#client === client) this.#client = null;
        client.close();
      })();
    }).catch(() => {
      this.errors++;
      this.#connecting = false;
    });
  }

  #dead: Pending[] = [];

  sweep(now?: number): void {
    this.#pending?.sweep(now);
    for (const p of this.#dead) p.sweep(now);
    this.#dead = this.#dead.filter((p) => p.size > 0);
  }

  get inFlight(): number {
    return (this.#pending?.size ?? 0) + this.#dead.reduce((a, p) => a + p.size, 0);
  }

  close(): void {
    this.#closing = true;
    this.#pending?.abandon();
    for (const p of this.#dead) p.abandon();
    this.#client?.close();
  }
}
