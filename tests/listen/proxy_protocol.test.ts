/**
 * PROXY protocol on the real TCP, DoT and UDP listeners (fake handler, fake clock): the client a
 * trusted proxy's header names is the query's client; a header from an untrusted peer, a
 * trusted proxy without one, a malformed one or one that never completes closes the connection
 * (drops the datagram), is counted by reason and never reaches the handler as DNS. Connection
 * caps count a proxied connection against the client behind the proxy.
 */
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { ProxyGate } from "../../lib/identity/proxy_gate.ts";
import type { Handler, Listener } from "../../lib/listen/listener.ts";
import type { StreamLimits } from "../../lib/listen/stream.ts";
import { listenTcp } from "../../lib/listen/tcp.ts";
import { listenTls } from "../../lib/listen/tls.ts";
import { listenUdp } from "../../lib/listen/udp.ts";
import type { Query } from "../../lib/pipeline/pipeline.ts";
import { parseCidrList } from "../../lib/policy/acl.ts";
import { buildQuery, frame, parse, TcpDnsClient } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { defaultAnswer, readFixture } from "../helpers/fake_dot.ts";
import { concatBytes, encodeProxyV1, encodeProxyV2 } from "../helpers/proxy_header.ts";
import { waitFor } from "../helpers/wait.ts";

const CA = await readFixture("ca.pem");
const CERT = await readFixture("server.pem");
const KEY = await readFixture("server-key.pem");

const LIMITS: StreamLimits = {
  idleTimeoutMs: 10_000,
  readTimeoutMs: 3_000,
  maxConnections: 50,
  maxConnectionsPerClient: 2,
  maxPipelined: 100,
};

function gate(trusted: string[]): ProxyGate {
  const cidrs = parseCidrList(trusted);
  if (typeof cidrs === "string") throw new Error(cidrs);
  return new ProxyGate({ trustedProxies: cidrs });
}

/** The header a load balancer sends for `client` (v2, or v1 text). */
function header(
  client: string,
  port: number,
  opts: { transport?: "stream" | "dgram"; v1?: boolean } = {},
): Uint8Array {
  const h = {
    command: "proxy" as const,
    transport: opts.transport ?? "stream",
    addresses: {
      family: "inet" as const,
      source: { address: client, port },
      destination: { address: "127.0.0.1", port: 53 },
    },
  };
  return opts.v1 ? encodeProxyV1({ ...h, version: 1 }) : encodeProxyV2(h);
}

/** A handler that answers every query and records who asked. */
function recorder() {
  const queries: Query[] = [];
  const handle: Handler = (query) => {
    queries.push(query);
    const packet = parse(query.bytes);
    return { bytes: new Uint8Array(dnsPacket.encode(defaultAnswer(packet))), maxUdpSize: 65535 };
  };
  return { queries, handle };
}

async function withTcp(
  trusted: string[],
  fn: (l: Listener, q: Query[], clock: FakeClock) => Promise<void>,
): Promise<void> {
  const clock = new FakeClock();
  const r = recorder();
  const l = listenTcp({
    url: "tcp://127.0.0.1:0",
    hostname: "127.0.0.1",
    port: 0,
    handle: r.handle,
    clock,
    limits: LIMITS,
    proxy: gate(trusted),
  });
  try {
    await fn(l, r.queries, clock);
  } finally {
    await l.close();
  }
}

/** Sends `prefix` then one query on a new connection; the answer's id, or null if closed. */
async function ask(l: Listener, prefix: Uint8Array, id = 7): Promise<number | null> {
  const c = await TcpDnsClient.connect(l.addr);
  try {
    await c.sendRaw(concatBytes(prefix, frame(buildQuery("who.test", "A", id))));
    const reply = await c.read().catch(() => null);
    return reply === null ? null : parse(reply).id ?? null;
  } finally {
    c.close();
  }
}

const rejected = (l: Listener) => l.identity!()!.proxyRejected;

Deno.test("TCP: a trusted proxy's v2 and v1 headers name the client the handler sees", async () => {
  await withTcp(["127.0.0.1"], async (l, queries) => {
    assert.equal(await ask(l, header("192.0.2.7", 40001), 1), 1);
    assert.equal(await ask(l, header("198.51.100.9", 40002, { v1: true }), 2), 2);
    assert.deepEqual(queries.map((q) => [q.client.hostname, q.client.port]), [
      ["192.0.2.7", 40001],
      ["198.51.100.9", 40002],
    ]);
    assert.deepEqual(Object.values(rejected(l)), [0, 0, 0, 0, 0, 0]);
  });
});

Deno.test("TCP: an untrusted peer's header is refused and counted; its plain DNS is served", async () => {
  await withTcp(["10.0.0.0/8"], async (l, queries) => {
    assert.equal(await ask(l, header("192.0.2.7", 40001)), null, "closed");
    assert.equal(await ask(l, header("192.0.2.7", 40001, { v1: true })), null, "closed");
    assert.equal(queries.length, 0, "never read as DNS");
    assert.equal(rejected(l).untrusted_header, 2);
    assert.equal(await ask(l, new Uint8Array(0), 3), 3, "a direct client without a header");
    assert.equal(queries[0].client.hostname, "127.0.0.1");
  });
});

Deno.test("TCP: a trusted proxy without a header, or with a malformed one, is closed and counted", async () => {
  await withTcp(["127.0.0.1"], async (l, queries) => {
    assert.equal(await ask(l, new Uint8Array(0)), null, "plain DNS from the proxy");
    const bad = header("192.0.2.7", 1);
    bad[12] = 0x31; // version 3
    assert.equal(await ask(l, bad), null);
    assert.equal(
      await ask(l, new TextEncoder().encode("PROXY TCP4 999.0.0.1 1.2.3.4 1 2\r\n")),
      null,
    );
    assert.equal(queries.length, 0);
    const r = rejected(l);
    assert.equal(r.missing_header, 1);
    assert.equal(r.malformed_header, 2);
  });
});

Deno.test("TCP: a header that never completes is cut off at the read timeout", async () => {
  await withTcp(["127.0.0.1"], async (l, queries, clock) => {
    const c = await TcpDnsClient.connect(l.addr);
    try {
      await c.sendRaw(header("192.0.2.7", 1).subarray(0, 10));
      const closed = c.read().catch(() => null);
      // The partial header is read before time moves: the other connections are served.
      assert.equal(await ask(l, header("192.0.2.8", 2), 5), 5);
      clock.advance(LIMITS.readTimeoutMs);
      assert.equal(await closed, null);
      await waitFor(() => rejected(l).header_timeout === 1, "the timeout is counted");
      assert.equal(queries.length, 1);
    } finally {
      c.close();
    }
  });
});

Deno.test("TCP: the per-client cap counts the client behind the proxy, not the proxy", async () => {
  await withTcp(["127.0.0.1"], async (l) => {
    // Five clients through one proxy address, each well under its cap of 2: all stay open.
    const clients: TcpDnsClient[] = [];
    try {
      for (let i = 1; i <= 5; i++) {
        const c = await TcpDnsClient.connect(l.addr);
        clients.push(c);
        await c.sendRaw(concatBytes(header(`192.0.2.${i}`, 1000 + i), frame(buildQuery("a.test"))));
        assert.ok(await c.read(), `client ${i} answered`);
      }
      assert.equal(l.connections!().open, 5);
      assert.equal(l.connections!().drops.evicted_idle, 0);
      // A third connection of one client goes over that client's cap: its idlest one makes room.
      for (let i = 0; i < 2; i++) {
        const c = await TcpDnsClient.connect(l.addr);
        clients.push(c);
        await c.sendRaw(concatBytes(header("192.0.2.1", 2000 + i), frame(buildQuery("b.test"))));
        assert.ok(await c.read());
      }
      assert.equal(await clients[0].read(), null, "192.0.2.1's oldest connection was evicted");
      assert.equal(l.connections!().drops.evicted_idle, 1);
      assert.equal(l.connections!().open, 6);
    } finally {
      for (const c of clients) c.close();
    }
  });
});

Deno.test("DoT: the PROXY header comes before the TLS handshake and names the client", async () => {
  const clock = new FakeClock();
  const r = recorder();
  const dot = listenTls({
    url: "tls://127.0.0.1:0",
    hostname: "127.0.0.1",
    port: 0,
    handle: r.handle,
    clock,
    limits: LIMITS,
    cert: CERT,
    key: KEY,
    proxy: gate(["127.0.0.1"]),
  });
  try {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: dot.addr.port });
    await tcp.write(header("203.0.113.5", 50000));
    const tls = await Deno.startTls(tcp, { hostname: "dns.test", caCerts: [CA] });
    try {
      await tls.write(frame(buildQuery("dot.test", "A", 9)));
      const buf = new Uint8Array(512);
      let n = 0;
      while (n < 2 || n < 2 + ((buf[0] << 8) | buf[1])) {
        const got = await tls.read(buf.subarray(n));
        assert.ok(got !== null, "answered");
        n += got;
      }
      assert.equal(parse(buf.slice(2, n)).id, 9);
      assert.deepEqual(r.queries[0].client, { hostname: "203.0.113.5", port: 50000 });
    } finally {
      tls.close();
    }
    // A TLS ClientHello straight from the trusted proxy is not a header: refused, counted.
    await assert.rejects(async () => {
      const c = await TcpDnsClient.connect(dot.addr, {
        tls: { caCerts: [CA], serverName: "dns.test" },
      });
      try {
        await c.send(buildQuery("x.test"));
        if ((await c.read()) === null) throw new Error("closed");
      } finally {
        c.close();
      }
    });
    await waitFor(() => dot.identity!()!.proxyRejected.missing_header === 1, "counted");
  } finally {
    await dot.close();
  }
});

Deno.test("UDP: a trusted proxy's datagram names the client; the answer goes back to the proxy", async () => {
  const clock = new FakeClock();
  const r = recorder();
  const udp = listenUdp({
    url: "udp://127.0.0.1:0",
    hostname: "127.0.0.1",
    port: 0,
    handle: r.handle,
    clock,
    proxy: gate(["127.0.0.1"]),
  });
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: udp.addr.port };
    const q = buildQuery("udp.test", "A", 11);
    await sock.send(concatBytes(header("192.0.2.77", 5353, { transport: "dgram" }), q), to);
    const [answer] = await sock.receive();
    assert.equal(parse(answer).id, 11);
    assert.deepEqual(r.queries[0].client, { hostname: "192.0.2.77", port: 5353 });
    // From the proxy without a header, and a v1 header (not allowed on UDP): dropped, counted.
    await sock.send(q, to);
    await sock.send(concatBytes(header("192.0.2.1", 1, { v1: true }), q), to);
    await waitFor(() => {
      const s = udp.identity!()!.proxyRejected;
      return s.missing_header === 1 && s.malformed_header === 1;
    }, "both drops are counted");
    assert.equal(r.queries.length, 1, "neither was read as DNS");
  } finally {
    sock.close();
    await udp.close();
  }
});

Deno.test("UDP: an untrusted peer's header is dropped and counted, its plain DNS served", async () => {
  const clock = new FakeClock();
  const r = recorder();
  const udp = listenUdp({
    url: "udp://127.0.0.1:0",
    hostname: "127.0.0.1",
    port: 0,
    handle: r.handle,
    clock,
    proxy: gate(["10.0.0.0/8"]),
  });
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: udp.addr.port };
    await sock.send(
      concatBytes(header("192.0.2.7", 1, { transport: "dgram" }), buildQuery("x.test")),
      to,
    );
    await waitFor(() => udp.identity!()!.proxyRejected.untrusted_header === 1, "counted");
    await sock.send(buildQuery("direct.test", "A", 12), to);
    const [answer] = await sock.receive();
    assert.equal(parse(answer).id, 12);
    assert.equal(r.queries.length, 1);
    assert.equal(r.queries[0].client.hostname, "127.0.0.1");
  } finally {
    sock.close();
    await udp.close();
  }
});
