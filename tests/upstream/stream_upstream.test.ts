/**
 * The pooled stream upstream over plain TCP and over TLS: per-hop EDNS (padding on TLS only,
 * keepalive asked on both), RFC 7828 keepalive honoured, and DoT by hostname via bootstrap.
 */
import assert from "node:assert/strict";
import { OptionCode, QUERY_PADDING_BLOCK } from "../../lib/dns/edns.ts";
import { dialTcp } from "../../lib/upstream/dial.ts";
import { StreamUpstream, type StreamUpstreamOptions } from "../../lib/upstream/stream_upstream.ts";
import { KEEPALIVE_MARGIN_MS } from "../../lib/upstream/stream_connection.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { buildQuery } from "../helpers/dns_client.ts";
import { bootstrapResolver, startBootstrapServer } from "../helpers/fake_bootstrap.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { expectedAddress, readFixture, startFakeDot } from "../helpers/fake_dot.ts";
import { addressesIn, optionCodesOf, questionOf, startFakePlain } from "../helpers/fake_plain.ts";
import { waitFor } from "../helpers/wait.ts";

const IDLE_MS = 8000;

function upstream(
  clock: FakeClock,
  extra: Partial<StreamUpstreamOptions> & Pick<StreamUpstreamOptions, "target">,
) {
  return new StreamUpstream({
    name: "test",
    clock,
    random: cryptoRandom(),
    connectTimeoutMs: 2000,
    idleTimeoutMs: IDLE_MS,
    maxConnections: 2,
    maxInFlightPerConnection: 512,
    failureBackoffMs: 1000,
    maxFailureBackoffMs: 10_000,
    probeTimeoutMs: 2000,
    ...extra,
  });
}

const edns = { udpSize: 1232, keepEcs: false };

async function ask(u: StreamUpstream, clock: FakeClock, name: string) {
  const q = buildQuery(name);
  return await u.exchange(q, questionOf(q), clock.now() + 5000);
}

Deno.test("a tcp:// upstream answers many queries over pooled connections, without TLS", async () => {
  const server = startFakePlain();
  const clock = new FakeClock();
  const u = upstream(clock, {
    target: { hostname: server.hostname, port: server.port },
    dial: dialTcp,
    edns: { ...edns, pad: false },
  });
  try {
    const names = Array.from({ length: 20 }, (_, i) => `q${i}.tcp.test`);
    const replies = await Promise.all(names.map((n) => ask(u, clock, n)));
    replies.forEach((r, i) => {
      assert.ok(r.ok, `query ${i}`);
      assert.deepEqual(addressesIn(r.reply), [expectedAddress(names[i])]);
    });
    assert.ok(server.tcpConnections >= 1 && server.tcpConnections <= 2, `${server.tcpConnections}`);
    assert.ok(server.queries.every((q) => q.transport === "tcp"));
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("queries on a TCP upstream ask for keepalive and are not padded", async () => {
  const server = startFakePlain();
  const clock = new FakeClock();
  const u = upstream(clock, {
    target: { hostname: server.hostname, port: server.port },
    dial: dialTcp,
    edns: { ...edns, pad: false },
  });
  try {
    assert.ok((await ask(u, clock, "nopad.test")).ok);
    assert.deepEqual(optionCodesOf(server.queries[0].raw), [OptionCode.TCP_KEEPALIVE]);
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("queries on a DoT upstream are padded to a multiple of 128 bytes", async () => {
  const server = await startFakeDot();
  const clock = new FakeClock();
  const u = upstream(clock, {
    target: {
      hostname: server.hostname,
      port: server.port,
      tlsName: "dns.test",
      caCerts: [await readFixture("ca.pem")],
    },
    edns: { ...edns, pad: true },
  });
  try {
    for (
      const name of [
        "a.test",
        "a-much-longer-name.with.several.labels.example.org",
        "x".repeat(60) + ".test",
      ]
    ) {
      const r = await ask(u, clock, name);
      assert.ok(r.ok);
      assert.deepEqual(addressesIn(r.reply), [expectedAddress(name)]);
    }
    for (const raw of server.rawQueries) {
      assert.equal(raw.length % QUERY_PADDING_BLOCK, 0, `${raw.length} bytes`);
      assert.deepEqual(optionCodesOf(raw), [OptionCode.TCP_KEEPALIVE, OptionCode.PADDING]);
    }
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("without EDNS options a stream upstream forwards the query as the client sent it", async () => {
  const server = startFakePlain();
  const clock = new FakeClock();
  const u = upstream(clock, {
    target: { hostname: server.hostname, port: server.port },
    dial: dialTcp,
  });
  try {
    const q = buildQuery("verbatim.test");
    assert.ok((await u.exchange(q, questionOf(q), clock.now() + 5000)).ok);
    assert.deepEqual(server.queries[0].raw.subarray(2), q.subarray(2), "all but the ID");
  } finally {
    await u.close();
    await server.close();
  }
});

for (
  const [announcedUnits, expected] of [
    [30, 3000 - KEEPALIVE_MARGIN_MS],
    [600, IDLE_MS],
    [0, 0],
  ] as const
) {
  Deno.test(`a server announcing a ${announcedUnits * 100} ms keepalive gets its idle connection closed after ${expected} ms`, async () => {
    const server = startFakePlain({ keepalive: announcedUnits });
    const clock = new FakeClock();
    const u = upstream(clock, {
      target: { hostname: server.hostname, port: server.port },
      dial: dialTcp,
      edns: { ...edns, pad: false },
    });
    try {
      assert.ok((await ask(u, clock, "keepalive.test")).ok);
      assert.equal(u.connections[0].idleTimeoutMs, expected);
      if (expected > 0) {
        clock.advance(expected - 1);
        assert.equal(u.stats().openConnections, 1);
      }
      clock.advance(1);
      assert.equal(u.stats().openConnections, 0);
      // The next query simply opens a new connection.
      assert.ok((await ask(u, clock, "again.keepalive.test")).ok);
      assert.equal(server.tcpConnections, 2);
    } finally {
      await u.close();
      await server.close();
    }
  });
}

Deno.test("a DoT upstream given by hostname is dialled at its bootstrap address and verified for that name", async () => {
  const dot = await startFakeDot();
  const boot = startBootstrapServer({ a: ["127.0.0.1"] });
  const clock = new FakeClock();
  const bootstrap = bootstrapResolver(clock, [boot]);
  const u = upstream(clock, {
    target: {
      hostname: "dns.test",
      port: dot.port,
      tlsName: "dns.test",
      caCerts: [await readFixture("ca.pem")],
    },
    resolver: bootstrap,
    edns: { ...edns, pad: true },
  });
  try {
    const r = await ask(u, clock, "via-bootstrap.test");
    assert.ok(r.ok, r.ok ? "" : r.error.message);
    assert.deepEqual(addressesIn(r.reply), [expectedAddress("via-bootstrap.test")]);
    assert.deepEqual(
      boot.queries.map((q) => `${q.packet.questions?.[0].name} ${q.packet.questions?.[0].type}`)
        .sort(),
      [
        "dns.test A",
        "dns.test AAAA",
      ],
    );
  } finally {
    await u.close();
    await bootstrap.close();
    await boot.close();
    await dot.close();
  }
});

Deno.test("when a resolved address refuses, the probe dials the next one and service recovers", async () => {
  const dot = await startFakeDot();
  const boot = startBootstrapServer({ a: ["127.0.0.2", "127.0.0.1"] });
  const clock = new FakeClock();
  const bootstrap = bootstrapResolver(clock, [boot]);
  const u = upstream(clock, {
    target: {
      hostname: "dns.test",
      port: dot.port,
      tlsName: "dns.test",
      caCerts: [await readFixture("ca.pem")],
    },
    resolver: bootstrap,
  });
  try {
    const first = await ask(u, clock, "first.test");
    assert.equal(!first.ok && first.error.kind, "connect");
    assert.equal(u.health.available(), false);
    clock.advance(1200); // the backoff ends: the probe dials the second address
    await dot.waitForQueries(1);
    await waitFor(() => u.health.available(), "the probe made the upstream available");
    const r = await ask(u, clock, "second.test");
    assert.ok(r.ok);
  } finally {
    await u.close();
    await bootstrap.close();
    await boot.close();
    await dot.close();
  }
});

Deno.test("a connection given up as silent while another one answers does not take the upstream down", async () => {
  const server = startFakePlain({ slow: (name) => name.startsWith("slow") });
  const clock = new FakeClock();
  const u = upstream(clock, {
    target: { hostname: server.hostname, port: server.port },
    dial: dialTcp,
    maxInFlightPerConnection: 2,
  });
  try {
    // Two slow names fill the first connection; the next name gets a second one, and an answer.
    const slow = [ask(u, clock, "slow1.test"), ask(u, clock, "slow2.test")];
    await server.waitForQueries(2);
    assert.ok((await ask(u, clock, "fast.test")).ok);
    assert.equal(server.tcpConnections, 2);
    // The first connection heard nothing since its queries went out: it is closed as silent,
    // and the query still on it is dropped with it. That says nothing about the server.
    clock.advance(5000);
    for (const r of await Promise.all(slow)) assert.equal(!r.ok && r.error.kind, "timeout");
    assert.equal(u.stats().openConnections, 1);
    assert.equal(u.health.available(), true);
    assert.ok((await ask(u, clock, "after.test")).ok);
  } finally {
    await u.close();
    await server.close();
  }
});
