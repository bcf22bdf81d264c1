/**
 * The PROXY parser and gate against the peers operators put in front of dotproxy: HAProxy with
 * `send-proxy-v2` and `send-proxy` (TCP), dnsdist with `useProxyProtocol=true` (UDP and TCP).
 * A small backend here applies the gate and answers each query by echoing it with QR set; the
 * client address the gate reports must be the real client's. With CI=true a missing tool fails
 * these tests; elsewhere they are ignored.
 */
import assert from "node:assert/strict";
import {
  type ClientAddress,
  PrefixedConn,
  ProxyGate,
  type StreamOutcome,
} from "../../lib/identity/proxy_gate.ts";
import type { ProxyHeader } from "../../lib/identity/proxy_protocol.ts";
import { systemClock } from "../../lib/sys/clock.ts";
import { startDnsdist, startHaproxy } from "../helpers/daemon.ts";
import { buildQuery, TcpDnsClient } from "../helpers/dns_client.ts";
import { freeUdpPort } from "../helpers/process.ts";
import { readExactly, trustingGate } from "../helpers/proxy_gate.ts";
import { toolTest } from "../helpers/tools.ts";
import { freePort } from "../helpers/unbound.ts";

/** One decision of the backend's gate. */
interface Seen {
  transport: "udp" | "tcp";
  ok: boolean;
  client?: ClientAddress;
  header?: ProxyHeader | null;
  reason?: string;
}

/** A DNS "server" behind the proxy: gate first, then echo the query as a response. */
class Backend {
  readonly seen: Seen[] = [];
  readonly udp: Deno.DatagramConn;
  readonly tcp: Deno.TcpListener;
  readonly #loops: Promise<void>[];
  readonly #conns = new Set<Deno.Conn>();

  constructor(readonly gate: ProxyGate, readonly port: number) {
    this.udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
    this.tcp = Deno.listen({ hostname: "127.0.0.1", port });
    this.#loops = [this.#serveUdp(), this.#serveTcp()];
  }

  async #serveUdp(): Promise<void> {
    try {
      for await (const [d, addr] of this.udp) {
        const peer = addr as Deno.NetAddr;
        const o = this.gate.datagram({ hostname: peer.hostname, port: peer.port }, d);
        this.seen.push(
          o.ok
            ? { transport: "udp", ok: true, client: o.client, header: o.header }
            : { transport: "udp", ok: false, reason: o.reason },
        );
        if (o.ok) await this.udp.send(echo(o.payload), addr).catch(() => 0);
      }
    } catch { /* closed */ }
  }

  async #serveTcp(): Promise<void> {
    const sessions: Promise<void>[] = [];
    try {
      for await (const conn of this.tcp) {
        this.#conns.add(conn);
        sessions.push(this.#session(conn).finally(() => this.#conns.delete(conn)));
      }
    } catch { /* closed */ }
    await Promise.all(sessions);
  }

  async #session(conn: Deno.Conn): Promise<void> {
    const peer = conn.remoteAddr as Deno.NetAddr;
    try {
      const o: StreamOutcome = await this.gate.readStream(conn, peer, {
        clock: systemClock,
        timeoutMs: 5000,
      });
      this.seen.push(
        o.ok
          ? { transport: "tcp", ok: true, client: o.client, header: o.header }
          : { transport: "tcp", ok: false, reason: o.reason },
      );
      if (!o.ok) return;
      const c = new PrefixedConn(conn, o.rest);
      for (;;) {
        const len = await readExactly(c, 2);
        if (!len) return;
        const msg = await readExactly(c, (len[0] << 8) | len[1]);
        if (!msg) return;
        const answer = echo(msg);
        await conn.write(Uint8Array.of(answer.length >> 8, answer.length & 0xff, ...answer));
      }
    } catch {
      /* peer gone */
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }

  async close(): Promise<void> {
    this.udp.close();
    this.tcp.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await Promise.all(this.#loops);
  }
}

/** The query turned into a response (QR set, RA set), question kept: enough for any client. */
function echo(query: Uint8Array): Uint8Array {
  const r = query.slice();
  if (r.length >= 4) {
    r[2] |= 0x80;
    r[3] = 0x80;
  }
  return r;
}

/** A query for example.com A with id `id`. */
const query = (id: number) => buildQuery("example.com", "A", id);

/** One query over TCP to `port`: the answer, and the local port it was asked from. */
async function tcpExchange(
  port: number,
  id: number,
): Promise<{ local: number; answer: Uint8Array }> {
  const c = await TcpDnsClient.connect({ hostname: "127.0.0.1", port });
  try {
    await c.send(query(id));
    const answer = await c.read();
    if (answer === null) throw new Error("connection closed without an answer");
    return { local: (c.conn.localAddr as Deno.NetAddr).port, answer };
  } finally {
    c.close();
  }
}

await toolTest({
  name: "HAProxy send-proxy-v2 and send-proxy: the gate sees the real client's address and port",
  tools: ["haproxy"],
  async fn() {
    const backend = new Backend(trustingGate(["127.0.0.1/32"]), freePort());
    const v2Port = freePort();
    const v1Port = freePort();
    const haproxy = await startHaproxy([
      { front: v2Port, backend: backend.port, send: "send-proxy-v2" },
      { front: v1Port, backend: backend.port, send: "send-proxy" },
    ]);
    try {
      for (const [port, version] of [[v2Port, 2], [v1Port, 1]] as const) {
        const before = backend.seen.length;
        const { local, answer } = await tcpExchange(port, 0x4242 + version);
        assert.equal(answer[0] << 8 | answer[1], 0x4242 + version, "the answer came back");
        const seen = backend.seen.slice(before).filter((s) => s.transport === "tcp");
        // HAProxy's readiness probe above also arrived, as a connection with a header.
        const mine = seen.find((s) => s.client?.port === local);
        assert.ok(mine, `no decision for client port ${local}: ${JSON.stringify(seen)}`);
        assert.equal(mine.ok, true);
        assert.equal(mine.client?.hostname, "127.0.0.1");
        assert.equal(mine.header?.version, version);
        assert.equal(mine.header?.transport, "stream");
      }
    } finally {
      await haproxy.stop();
      await backend.close();
    }
  },
});

await toolTest({
  name: "dnsdist useProxyProtocol over UDP and TCP: the gate sees the real client's address",
  tools: ["dnsdist"],
  async fn() {
    const backend = new Backend(trustingGate(["127.0.0.1/32"]), freePort());
    const front = freeUdpPort();
    const dnsdist = await startDnsdist(front, backend.port);
    const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      const local = (sock.addr as Deno.NetAddr).port;
      await sock.send(query(0x5151), { transport: "udp", hostname: "127.0.0.1", port: front });
      const [answer] = await sock.receive();
      assert.equal(answer[0] << 8 | answer[1], 0x5151);
      assert.equal(answer[2] & 0x80, 0x80, "a response");
      const udp = backend.seen.find((s) => s.transport === "udp" && s.client?.port === local);
      assert.ok(udp, `no UDP decision for port ${local}: ${JSON.stringify(backend.seen)}`);
      assert.equal(udp.client?.hostname, "127.0.0.1");
      assert.equal(udp.header?.version, 2);
      assert.equal(udp.header?.transport, "dgram");

      const tcp = await tcpExchange(front, 0x5252);
      assert.equal(tcp.answer[0] << 8 | tcp.answer[1], 0x5252);
      const t = backend.seen.find((s) => s.transport === "tcp" && s.client?.port === tcp.local);
      assert.ok(t, `no TCP decision for port ${tcp.local}: ${JSON.stringify(backend.seen)}`);
      assert.equal(t.header?.transport, "stream");
      assert.ok(backend.seen.every((s) => s.ok), JSON.stringify(backend.seen));
    } finally {
      sock.close();
      await dnsdist.stop();
      await backend.close();
    }
  },
});
