/**
 * A scriptable plain-DNS server (UDP and TCP on the same loopback port) for tests of the UDP and
 * TCP upstreams and of bootstrap resolution. It answers with dns-packet (an independent codec),
 * records every query with the transport and source port it came from, and misbehaves on demand.
 */
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { frame, writeAll } from "./dns_client.ts";
import { defaultAnswer, withCustomAnswer } from "./fake_dot.ts";
import { decodeQuery, type Question } from "../../lib/dns/message.ts";
import type { PlainTransport } from "../../lib/dns/transport.ts";

/**
 * How the server treats queries (read when each query arrives):
 * - "answer": `answerFor`'s answer, else the default answer of fake_dot.ts.
 * - "silent": record, never reply.
 * - "truncate": over UDP, reply TC=1 with no records; over TCP, answer normally.
 * - "wrong-id": reply with id + 1.
 * - "wrong-question": reply with the right id for wrong-question.invalid.
 * - "spoof-first" (UDP): first a forged reply from another port (right id and question, answer
 *   6.6.6.6), then the genuine one.
 */
export type PlainBehaviour =
  | "answer"
  | "silent"
  | "truncate"
  | "wrong-id"
  | "wrong-question"
  | "spoof-first";

export interface FakePlainOptions {
  /** Default "answer". */
  behaviour?: PlainBehaviour;
  /**
   * Custom answers laid over the default one (`rcode` may be a name such as "NXDOMAIN"); null
   * for the default answer.
   */
  answerFor?: (q: dnsPacket.Packet, transport: PlainTransport) => Partial<dnsPacket.Packet> | null;
  /** Announce edns-tcp-keepalive with this timeout (in units of 100 ms) in TCP replies with OPT. */
  keepalive?: number;
  /** Names answered late: their replies are held until `releaseSlow()` (dropped on close). */
  slow?: (name: string) => boolean;
}

/** One received query. */
export interface PlainQuery {
  transport: PlainTransport;
  /** The client's source port. */
  port: number;
  raw: Uint8Array;
  packet: dnsPacket.Packet;
}

export interface FakePlain {
  hostname: string;
  port: number;
  /** Every query, in order of arrival. */
  queries: PlainQuery[];
  /** TCP connections accepted so far. */
  readonly tcpConnections: number;
  /** TCP connections accepted and not yet closed. */
  openTcpConnections(): number;
  /** Resolves once `n` queries in all have arrived; rejects if closed first. */
  waitForQueries(n: number): Promise<void>;
  setBehaviour(b: PlainBehaviour): void;
  /** Sends the replies held for `slow` names. */
  releaseSlow(): void;
  /**
   * Closes both sockets and every connection, and waits for all their work to stop. Throws if
   * building a reply ever failed (a broken `answerFor`), so such a test fails instead of passing.
   */
  close(): Promise<void>;
}

function encode(p: dnsPacket.Packet): Uint8Array {
  return new Uint8Array(dnsPacket.encode(p));
}

/** Binds UDP on an OS-chosen loopback port and TCP on the same one (retrying if it is taken). */
function bindPair(): { udp: Deno.DatagramConn; tcp: Deno.Listener; port: number } {
  for (let attempt = 0;; attempt++) {
    const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (udp.addr as Deno.NetAddr).port;
    try {
      return { udp, tcp: Deno.listen({ hostname: "127.0.0.1", port }), port };
    } catch (err) {
      udp.close();
      if (attempt >= 20) throw err;
    }
  }
}

export function startFakePlain(opts: FakePlainOptions = {}): FakePlain {
  const { udp, tcp, port } = bindPair();
  const spoofer = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  let behaviour: PlainBehaviour = opts.behaviour ?? "answer";
  const queries: PlainQuery[] = [];
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  type Waiter = { n: number; resolve: () => void; reject: (e: Error) => void };
  let waiters: Waiter[] = [];
  let accepted = 0;
  let closed = false;
  /** Replies held for slow names, as thunks that send them. */
  let held: (() => void)[] = [];
  const isSlow = (q: dnsPacket.Packet) => opts.slow?.(q.questions?.[0]?.name ?? "") ?? false;

  const track = (p: Promise<void>) => {
    tasks.add(p);
    p.finally(() => tasks.delete(p));
  };

  /** The reply to send, or null for none. */
  const respond = (q: dnsPacket.Packet, transport: PlainTransport): Uint8Array | null => {
    const b = behaviour;
    if (b === "silent") return null;
    let p = defaultAnswer(q);
    if (b === "wrong-question") {
      p = defaultAnswer({
        ...q,
        questions: [{
          type: q.questions?.[0]?.type ?? "A",
          class: "IN",
          name: "wrong-question.invalid",
        }],
      });
    } else if (b === "truncate" && transport === "udp") {
      p.answers = [];
      p.flags = (p.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE;
    } else if (opts.answerFor) {
      const custom = opts.answerFor(q, transport);
      if (custom) p = withCustomAnswer(p, custom);
    }
    if (b === "wrong-id") p.id = ((q.id ?? 0) + 1) & 0xffff;
    if (transport === "tcp" && opts.keepalive !== undefined) {
      const opt = (p.additionals ?? []).find((r: dnsPacket.Answer) => r.type === "OPT");
      // Raw bytes: dns-packet writes a timeout of 0 as an empty option.
      const units = opts.keepalive;
      if (opt) opt.options = [{ code: 11, data: Buffer.from([units >> 8, units & 0xff]) }];
    }
    return encode(p);
  };

  /**
   * A script error (say, in `answerFor`) is answered SERVFAIL and rethrown by close(), so the test
   * fails instead of hanging or passing by accident.
   */
  let scriptError: unknown = null;
  const safely = (q: dnsPacket.Packet, fn: () => Uint8Array | null): Uint8Array | null => {
    try {
      return fn();
    } catch (err) {
      scriptError ??= err;
      return encode({ ...defaultAnswer(q), answers: [], flags: 0x8000 | 2 });
    }
  };

  const record = (transport: PlainTransport, from: number, raw: Uint8Array) => {
    let packet: dnsPacket.Packet;
    try {
      packet = dnsPacket.decode(Buffer.from(raw));
    } catch {
      return null;
    }
    queries.push({ transport, port: from, raw, packet });
    waiters = waiters.filter((w) => {
      if (queries.length < w.n) return true;
      w.resolve();
      return false;
    });
    return packet;
  };

  const serveUdp = async () => {
    try {
      for (;;) {
        const [data, from] = await udp.receive();
        const addr = from as Deno.NetAddr;
        const q = record("udp", addr.port, data);
        if (!q) continue;
        const out = safely(q, () => respond(q, "udp"));
        if (!out) continue;
        const to = { transport: "udp" as const, hostname: addr.hostname, port: addr.port };
        if (behaviour === "spoof-first") {
          const forged = defaultAnswer(q);
          forged.answers = (forged.answers ?? []).map((a: dnsPacket.Answer) =>
            a.type === "A" ? { ...a, data: "6.6.6.6" } : a
          );
          await spoofer.send(encode(forged), to);
        }
        if (isSlow(q)) held.push(() => udp.send(out, to).catch(() => {}));
        else await udp.send(out, to);
      }
    } catch {
      // socket closed
    }
  };

  const serveTcp = async (conn: Deno.Conn) => {
    const from = (conn.remoteAddr as Deno.NetAddr).port;
    let writing = Promise.resolve();
    try {
      const chunk = new Uint8Array(65536 + 2);
      let buf = new Uint8Array(0);
      for (;;) {
        const n = await conn.read(chunk);
        if (n === null) break;
        const next = new Uint8Array(buf.length + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.length);
        buf = next;
        let off = 0;
        while (buf.length - off >= 2) {
          const len = (buf[off] << 8) | buf[off + 1];
          if (buf.length - off < len + 2) break;
          const q = record("tcp", from, buf.slice(off + 2, off + 2 + len));
          const out = q && safely(q, () => respond(q, "tcp"));
          if (q && out) {
            const send = () => {
              writing = writing.then(() => writeAll(conn, frame(out))).catch(() => {});
            };
            if (isSlow(q)) held.push(send);
            else send();
          }
          off += len + 2;
        }
        buf = buf.slice(off);
      }
    } catch {
      // reset or closed
    } finally {
      await writing;
      try {
        conn.close();
      } catch { /* already closed */ }
      conns.delete(conn);
    }
  };

  const acceptLoop = async () => {
    try {
      for (;;) {
        const conn = await tcp.accept();
        if (closed) {
          conn.close();
          break;
        }
        accepted++;
        conns.add(conn);
        track(serveTcp(conn));
      }
    } catch {
      // listener closed
    }
  };
  const udpTask = serveUdp();
  const acceptTask = acceptLoop();

  return {
    hostname: "127.0.0.1",
    port,
    queries,
    get tcpConnections() {
      return accepted;
    },
    openTcpConnections: () => conns.size,
    waitForQueries(n: number): Promise<void> {
      if (queries.length >= n) return Promise.resolve();
      if (closed) return Promise.reject(new Error("fake plain server is closed"));
      return new Promise((resolve, reject) => waiters.push({ n, resolve, reject }));
    },
    setBehaviour(b: PlainBehaviour) {
      behaviour = b;
    },
    releaseSlow() {
      const due = held;
      held = [];
      for (const send of due) send();
    },
    async close() {
      if (closed) return;
      closed = true;
      held = [];
      for (const s of [udp, spoofer, tcp]) {
        try {
          s.close();
        } catch { /* already closed */ }
      }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await Promise.all([udpTask, acceptTask]);
      while (tasks.size > 0) await Promise.all([...tasks]);
      const pending = waiters;
      waiters = [];
      for (const w of pending) w.reject(new Error("fake plain server closed"));
      if (scriptError) throw new Error(`fake plain server script failed: ${scriptError}`);
    },
  };
}

/** The decoded question of a query built by a test, for `Upstream.exchange`. */
export function questionOf(query: Uint8Array): Question {
  const d = decodeQuery(query);
  if (!d.ok || !d.value.question) throw new Error("test query has no question");
  return d.value.question;
}

/** The addresses in a reply's answer section, as dns-packet reads them. */
export function addressesIn(reply: Uint8Array): string[] {
  const p = dnsPacket.decode(Buffer.from(reply));
  return (p.answers ?? []).flatMap((a: dnsPacket.Answer) =>
    a.type === "A" || a.type === "AAAA" ? [String(a.data)] : []
  );
}

/** The EDNS option codes of a raw query, in order (empty without OPT). */
export function optionCodesOf(raw: Uint8Array): number[] {
  const d = decodeQuery(raw);
  return d.ok ? d.value.edns?.options.map((o) => o.code) ?? [] : [];
}
