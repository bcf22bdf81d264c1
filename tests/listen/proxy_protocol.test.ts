/**
 * PROXY protocol on the real TCP, DoT and UDP listeners (fake handler, fake clock): the client a
 * trusted proxy's header names is the query's client; a header from an untrusted peer, a
 * trusted proxy without one, a malformed one or one that never completes closes the connection
 * (drops the datagram), is counted by reason and never reaches the handler as DNS. Connection
 * caps count a proxied connection against the client behind the proxy.
 */
import assert from "node:assert/strict";
import type { Listener } from "../../lib/listen/listener.ts";
import type { StreamLimits } from "../../lib/listen/stream.ts";
import { listenTcp } from "../../lib/listen/tcp.ts";
import { listenTls } from "../../lib/listen/tls.ts";
import { listenUdp } from "../../lib/listen/udp.ts";
import type { Query } from "../../lib/pipeline/pipeline.ts";
import { buildQuery, frame, parse, TcpDnsClient } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { readFixture } from "../helpers/fake_dot.ts";
import { recordingHandler, TEST_STREAM_LIMITS } from "../helpers/listener.ts";
import { trustingGate } from "../helpers/proxy_gate.ts";
import { concatBytes, encodeProxyV1, encodeProxyV2 } from "../helpers/proxy_header.ts";
import { waitFor } from "../helpers/wait.ts";

const CA = await readFixture("ca.pem");
const CERT = await readFixture("server.pem");
const KEY = await readFixture("server-key.pem");

/** A cap of 2 connections per client, for the test that counts the client behind the proxy. */
const LIMITS: StreamLimits = { ...TEST_STREAM_LIMITS, maxConnectionsPerClient: 2 };

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

/**
 * Runs `fn` with a `transport` listener on 127.0.0.1 (fake clock, recording handler) that takes
 * PROXY headers from `trusted` peers.
 */
async function withListener(
  transport: "tcp" | "tls" | "udp",
  trusted: string[],
  fn: (l: Listener, q: Query[], clock: FakeClock) => Promise<void>,
): Promise<void> {
  const clock = new FakeClock();
  const r = recordingHandler();
  const common = {
    url: `${transport}://127.0.0.1:0`,
    hostname: "127.0.0.1",
    port: 0,
    handle: r.handle,
    clock,
    proxy: trustingGate(trusted),
  };
  const l = transport === "udp"
    ? listenUdp(common)
    : transport === "tls"
    ? listenTls({ ...common, limits: LIMITS, cert: CERT, key: KEY })
    : listenTcp({ ...common, limits: LIMITS });
  try {
    await fn(l, r.queries, clock);
  } finally {
    await l.close();
  }
}

/** A UDP socket on 127.0.0.1 that talks to listener `l`; `fn` runs with it, then it closes. */
async function withUdpClient(
  l: Listener,
  fn: (
    c: { send(b: Uint8Array): Promise<number>; receive(): Promise<Uint8Array> },
  ) => Promise<void>,
): Promise<void> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port: l.addr.port };
  try {
    await fn({ send: (b) => sock.send(b, to), receive: async () => (await sock.receive())[0] });
  } finally {
    sock.close();
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
  await withListener("tcp", ["127.0.0.1"], async (l, queries) => {
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
  await withListener("tcp", ["10.0.0.0/8"], async (l, queries) => {
    assert.equal(await ask(l, header("192.0.2.7", 40001)), null, "closed");
    assert.equal(await ask(l, header("192.0.2.7", 40001, { v1: true })), null, "closed");
    assert.equal(queries.length, 0, "never read as DNS");
    assert.equal(rejected(l).untrusted_header, 2);
    assert.equal(await ask(l, new Uint8Array(0), 3), 3, "a direct client without a header");
    assert.equal(queries[0].client.hostname, "127.0.0.1");
  });
});

Deno.test("TCP: a trusted proxy without a header, or with a malformed one, is closed and counted", async () => {
  await withListener("tcp", ["127.0.0.1"], async (l, queries) => {
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
  await withListener("tcp", ["127.0.0.1"], async (l, queries, clock) => {
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
  await withListener("tcp", ["127.0.0.1"], async (l) => {
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
  await withListener("tls", ["127.0.0.1"], async (dot, queries) => {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: dot.addr.port });
    await tcp.write(header("203.0.113.5", 50000));
    const tls = TcpDnsClient.over(
      await Deno.startTls(tcp, { hostname: "dns.test", caCerts: [CA] }),
    );
    try {
      await tls.send(buildQuery("dot.test", "A", 9));
      const reply = await tls.read();
      assert.ok(reply !== null, "answered");
      assert.equal(parse(reply).id, 9);
      assert.deepEqual(queries[0].client, { hostname: "203.0.113.5", port: 50000 });
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
  });
});

Deno.test("UDP: a trusted proxy's datagram names the client; the answer goes back to the proxy", async () => {
  await withListener("udp", ["127.0.0.1"], async (udp, queries) => {
    await withUdpClient(udp, async (c) => {
      const q = buildQuery("udp.test", "A", 11);
      await c.send(concatBytes(header("192.0.2.77", 5353, { transport: "dgram" }), q));
      assert.equal(parse(await c.receive()).id, 11);
      assert.deepEqual(queries[0].client, { hostname: "192.0.2.77", port: 5353 });
      // From the proxy without a header, and a v1 header (not allowed on UDP): dropped, counted.
      await c.send(q);
      await c.send(concatBytes(header("192.0.2.1", 1, { v1: true }), q));
      await waitFor(() => {
        const s = udp.identity!()!.proxyRejected;
        return s.missing_header === 1 && s.malformed_header === 1;
      }, "both drops are counted");
      assert.equal(queries.length, 1, "neither was read as DNS");
    });
  });
});

Deno.test("UDP: an untrusted peer's header is dropped and counted, its plain DNS served", async () => {
  await withListener("udp", ["10.0.0.0/8"], async (udp, queries) => {
    await withUdpClient(udp, async (c) => {
      await c.send(
        concatBytes(header("192.0.2.7", 1, { transport: "dgram" }), buildQuery("x.test")),
      );
      await waitFor(() => udp.identity!()!.proxyRejected.untrusted_header === 1, "counted");
      await c.send(buildQuery("direct.test", "A", 12));
      assert.equal(parse(await c.receive()).id, 12);
      assert.equal(queries.length, 1);
      assert.equal(queries[0].client.hostname, "127.0.0.1");
    });
  });
});
