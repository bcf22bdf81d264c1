/**
 * Traffic a DNS server must survive: garbage UDP datagrams (random bytes, mutated queries,
 * responses), well-formed queries with a meta QTYPE, and junk TCP connections (random bytes,
 * frames with garbage bodies, slowloris stalls, idle connections).
 */
import { buildQuery } from "../../tests/helpers/dns_client.ts";
import { receiveEach } from "./clients.ts";

const rnd = (k: number) => Math.floor(Math.random() * k);

function randomBytes(len: number): Uint8Array {
  const b = new Uint8Array(len);
  crypto.getRandomValues(b);
  return b;
}

/** Kinds of garbage datagrams, in rotation. */
export const GARBAGE_KINDS = ["random", "mutated", "response"] as const;

/**
 * One garbage datagram of `kind`: random bytes (0-600), a valid query for a name under
 * `garbage.test.` with 1-4 bytes changed, cut short or extended, or a query with QR=1.
 */
export function garbage(kind: (typeof GARBAGE_KINDS)[number]): Uint8Array {
  if (kind === "random") return randomBytes(rnd(601));
  const q = buildQuery(`g${rnd(1e9)}.garbage.test.`, "A", rnd(0x10000));
  if (kind === "response") {
    q[2] |= 0x80;
    return q;
  }
  switch (rnd(4)) {
    case 0: {
      for (let k = 1 + rnd(4); k > 0; k--) q[rnd(q.length)] = rnd(256);
      return q;
    }
    case 1:
      return q.subarray(0, rnd(q.length));
    case 2: {
      const out = new Uint8Array(q.length + 1 + rnd(64));
      out.set(q);
      out.set(randomBytes(out.length - q.length), q.length);
      return out;
    }
    default:
      q[4] = rnd(256); // QDCOUNT, high byte
      q[5] = rnd(256);
      return q;
  }
}

/**
 * A query for a fresh name whose QTYPE is a meta-type (RFC 6895 §3.1): OPT (41) or one in
 * 128-248. Well-formed, but unbound answers such queries FORMERR.
 */
export function metaQuery(i: number, tag: string): Uint8Array {
  const q = buildQuery(`m${i}-${tag}.meta.test.`, "A", i & 0xffff);
  const qtype = i % 4 === 0 ? 41 : 128 + (i % 121);
  q[q.length - 4] = qtype >> 8;
  q[q.length - 3] = qtype & 0xff;
  return q;
}

/** Replies seen by a garbage sender, by rcode, and the datagrams it sent. */
export class GarbageSender {
  readonly sock: Deno.DatagramConn;
  sent = 0;
  replies = 0;
  readonly rcodes = new Map<number, number>();
  #target: Deno.NetAddr;
  #loop: Promise<void>;

  constructor(hostname: string, target: { hostname: string; port: number }) {
    const sock = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
    this.sock = sock;
    this.#target = { transport: "udp", ...target };
    this.#loop = receiveEach(sock, (data) => {
      this.replies++;
      const rc = data.length >= 4 ? data[3] & 0x0f : -1;
      this.rcodes.set(rc, (this.rcodes.get(rc) ?? 0) + 1);
    });
  }

  send(): void {
    const pkt = garbage(GARBAGE_KINDS[this.sent % GARBAGE_KINDS.length]);
    this.sent++;
    this.sock.send(pkt, this.#target).catch(() => {});
  }

  async close(): Promise<void> {
    try {
      this.sock.close();
    } catch { /* closed */ }
    await this.#loop;
  }
}

const JUNK_TCP_KINDS = ["random", "bad-length", "stall-prefix", "stall-partial", "idle"] as const;

/**
 * Junk TCP connections to dotproxy: random bytes then close; a frame with a garbage body (then
 * read what comes back); a length prefix alone or a partial frame and then nothing (slowloris);
 * connect and say nothing. The stalled and idle ones wait up to 12 s for dotproxy to close them.
 */
export class JunkTcp {
  opened = 0;
  failed = 0;
  active = 0;
  /** Per kind: opened, closed by dotproxy, closed by us after waiting. */
  readonly kinds = new Map<string, { opened: number; byProxy: number; byUs: number }>(
    JUNK_TCP_KINDS.map((k) => [k, { opened: 0, byProxy: 0, byUs: 0 }]),
  );
  readonly #live = new Set<Deno.Conn>();

  constructor(private readonly target: { hostname: string; port: number }) {}

  open(): void {
    const kind = JUNK_TCP_KINDS[this.opened % JUNK_TCP_KINDS.length];
    this.opened++;
    this.active++;
    this.kinds.get(kind)!.opened++;
    this.#run(kind).catch(() => this.failed++).finally(() => this.active--);
  }

  async #run(kind: (typeof JUNK_TCP_KINDS)[number]): Promise<void> {
    const conn = await Deno.connect(this.target);
    this.#live.add(conn);
    try {
      let waitMs = 12_000;
      if (kind === "random") {
        await conn.write(randomBytes(1 + rnd(300)));
        waitMs = 500;
      } else if (kind === "bad-length") {
        const body = randomBytes(12 + rnd(100));
        const f = new Uint8Array(body.length + 2);
        f[0] = body.length >> 8;
        f[1] = body.length & 0xff;
        f.set(body, 2);
        await conn.write(f);
        waitMs = 1000;
      } else if (kind === "stall-prefix") {
        await conn.write(new Uint8Array([0x01, 0x00]));
      } else if (kind === "stall-partial") {
        const q = buildQuery(`j${rnd(1e9)}.junk.test.`);
        const f = new Uint8Array(q.length + 2);
        f[1] = q.length;
        f.set(q, 2);
        await conn.write(f.subarray(0, 2 + rnd(q.length)));
      }
      // Read until dotproxy closes or we give up.
      const buf = new Uint8Array(4096);
      const timer = setTimeout(() => {
        this.kinds.get(kind)!.byUs++;
        try {
          conn.close();
        } catch { /* closed */ }
      }, waitMs);
      let closedByPeer = false;
      try {
        while ((await conn.read(buf)) !== null) { /* discard */ }
        closedByPeer = true;
      } catch { /* closed by our timer, or reset */ }
      clearTimeout(timer);
      if (closedByPeer) this.kinds.get(kind)!.byProxy++;
    } finally {
      this.#live.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }

  closeAll(): void {
    for (const c of this.#live) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }
}
