/**
 * The UDP upstream against a fake plain-DNS server on loopback: random IDs and source ports,
 * replies matched by ID, question and source, TC=1 retried over TCP, deadlines on the fake clock.
 */
import assert from "node:assert/strict";
import { OptionCode } from "../../lib/dns/edns.ts";
import { dialTcp } from "../../lib/upstream/dial.ts";
import { DEFAULT_FAILURE_THRESHOLD } from "../../lib/upstream/health.ts";
import { StreamUpstream } from "../../lib/upstream/stream_upstream.ts";
import { UdpUpstream, type UdpUpstreamOptions } from "../../lib/upstream/udp_upstream.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { buildQuery } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { expectedAddress } from "../helpers/fake_dot.ts";
import {
  addressesIn,
  type FakePlain,
  optionCodesOf,
  questionOf,
  startFakePlain,
} from "../helpers/fake_plain.ts";
import { waitFor as until } from "../helpers/wait.ts";

function udpUpstream(clock: FakeClock, server: FakePlain, extra: Partial<UdpUpstreamOptions> = {}) {
  return new UdpUpstream({
    name: "udp-test",
    hostname: server.hostname,
    port: server.port,
    clock,
    random: cryptoRandom(),
    failureBackoffMs: 1000,
    maxFailureBackoffMs: 10_000,
    probeTimeoutMs: 2000,
    ...extra,
  });
}

function tcpFallback(clock: FakeClock, server: FakePlain) {
  return new StreamUpstream({
    name: "tcp-test",
    target: { hostname: server.hostname, port: server.port },
    dial: dialTcp,
    clock,
    random: cryptoRandom(),
    connectTimeoutMs: 2000,
    idleTimeoutMs: 8000,
    maxConnections: 1,
    maxInFlightPerConnection: 64,
    failureBackoffMs: 1000,
    maxFailureBackoffMs: 10_000,
    probeTimeoutMs: 2000,
  });
}

async function ask(u: UdpUpstream, clock: FakeClock, name: string, type = "A", budget = 2000) {
  const q = buildQuery(name, type);
  return await u.exchange(q, questionOf(q), clock.now() + budget);
}

Deno.test("a udp:// upstream answers from a random source port with its own random ID", async () => {
  const server = startFakePlain();
  const clock = new FakeClock();
  const u = udpUpstream(clock, server, { edns: { udpSize: 1232, keepEcs: false } });
  try {
    const r = await ask(u, clock, "udp.test");
    assert.ok(r.ok);
    assert.equal(r.upstream, "udp-test");
    assert.deepEqual(addressesIn(r.reply), [expectedAddress("udp.test")]);
    const [q] = server.queries;
    assert.equal(q.transport, "udp");
    assert.deepEqual(u.localPorts, [q.port]);
    assert.notEqual(q.packet.id, 0x1234, "the client's ID is not reused");
    assert.deepEqual(optionCodesOf(q.raw), [], "no padding or keepalive over cleartext UDP");
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("concurrent UDP queries carry distinct IDs and each times out at its deadline", async () => {
  const server = startFakePlain({ behaviour: "silent" });
  const clock = new FakeClock();
  const u = udpUpstream(clock, server);
  try {
    const pending = Array.from({ length: 50 }, (_, i) => ask(u, clock, `q${i}.silent.test`));
    await server.waitForQueries(50);
    assert.equal(new Set(server.queries.map((q) => q.packet.id)).size, 50);
    clock.advance(2000);
    const results = await Promise.all(pending);
    assert.ok(results.every((r) => !r.ok && r.error.kind === "timeout"));
    assert.equal(u.health.available(), false);
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("a truncated UDP answer is retried over TCP to the same server", async () => {
  const server = startFakePlain({ behaviour: "truncate" });
  const clock = new FakeClock();
  const u = udpUpstream(clock, server, { tcp: tcpFallback(clock, server) });
  try {
    const r = await ask(u, clock, "big.tc.test");
    assert.ok(r.ok);
    assert.equal(r.upstream, "udp-test");
    assert.equal(r.reply[2] & 0x02, 0, "the TCP answer is complete");
    assert.deepEqual(addressesIn(r.reply), [expectedAddress("big.tc.test")]);
    assert.deepEqual(server.queries.map((q) => q.transport), ["udp", "tcp"]);
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("without a TCP fallback a truncated answer is returned as it is", async () => {
  const server = startFakePlain({ behaviour: "truncate" });
  const clock = new FakeClock();
  const u = udpUpstream(clock, server);
  try {
    const r = await ask(u, clock, "tc.test");
    assert.ok(r.ok);
    assert.equal(r.reply[2] & 0x02, 0x02);
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("a forged reply from another port is discarded and the genuine one delivered", async () => {
  const server = startFakePlain({ behaviour: "spoof-first" });
  const clock = new FakeClock();
  const u = udpUpstream(clock, server);
  try {
    const r = await ask(u, clock, "spoofed.test");
    assert.ok(r.ok);
    assert.deepEqual(addressesIn(r.reply), [expectedAddress("spoofed.test")]);
    assert.equal(u.stats().discarded, 1);
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("replies with a wrong ID or question are discarded; the query times out", async () => {
  for (const behaviour of ["wrong-id", "wrong-question"] as const) {
    const server = startFakePlain({ behaviour });
    const clock = new FakeClock();
    const u = udpUpstream(clock, server);
    try {
      const pending = ask(u, clock, "bogus.test");
      await until(() => u.stats().discarded === 1);
      clock.advance(2000);
      const r = await pending;
      assert.equal(!r.ok && r.error.kind, "timeout", behaviour);
    } finally {
      await u.close();
      await server.close();
    }
  }
});

Deno.test("a failing UDP upstream is probed in the background and recovers", async () => {
  const server = startFakePlain({ behaviour: "silent" });
  const clock = new FakeClock();
  const u = udpUpstream(clock, server);
  const n = DEFAULT_FAILURE_THRESHOLD;
  try {
    const pending = Array.from({ length: n }, (_, i) => ask(u, clock, `down${i}.test`));
    await server.waitForQueries(n);
    clock.advance(2000);
    assert.ok((await Promise.all(pending)).every((r) => !r.ok));
    assert.equal(u.health.available(), false);
    clock.advance(0); // the probe goes out at once; silent too
    await server.waitForQueries(n + 1);
    server.setBehaviour("answer");
    clock.advance(2000); // that probe gives up
    await until(() => u.health.failures === 2);
    clock.advance(2400); // after the doubled backoff, another probe is answered
    await server.waitForQueries(n + 2);
    assert.equal(server.queries[n + 1].packet.questions?.[0].name, ".");
    await until(() => u.health.available());
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("source ports change as sockets are used up", async () => {
  const server = startFakePlain();
  const clock = new FakeClock();
  const u = udpUpstream(clock, server, { queriesPerSocket: 2 });
  try {
    for (let i = 0; i < 6; i++) assert.ok((await ask(u, clock, `rotate${i}.test`)).ok);
    const ports = new Set(server.queries.map((q) => q.port));
    assert.ok(ports.size >= 3, `source ports: ${[...ports]}`);
    await until(() => u.stats().openConnections === 1); // used-up sockets closed once drained
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("closing a UDP upstream settles its outstanding queries as closed", async () => {
  const server = startFakePlain({ behaviour: "silent" });
  const clock = new FakeClock();
  const u = udpUpstream(clock, server);
  try {
    const pending = ask(u, clock, "closing.test");
    await server.waitForQueries(1);
    await u.close();
    const r = await pending;
    assert.equal(!r.ok && r.error.kind, "closed");
    const after = await ask(u, clock, "after.test");
    assert.equal(!after.ok && after.error.kind, "closed");
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("the EDNS options a client sends are not relayed over UDP", async () => {
  const server = startFakePlain();
  const clock = new FakeClock();
  const u = udpUpstream(clock, server, { edns: { udpSize: 1400, keepEcs: false } });
  try {
    const q = buildQuery("opts.test", "A", 1, { udpSize: 4096, do: true });
    assert.ok((await u.exchange(q, questionOf(q), clock.now() + 2000)).ok);
    const opt = server.queries[0].packet.additionals?.find((r: { type: string }) =>
      r.type === "OPT"
    ) as {
      udpPayloadSize: number;
      flags: number;
    };
    assert.equal(opt.udpPayloadSize, 1400);
    assert.equal(opt.flags & 0x8000, 0x8000, "DO kept");
    assert.ok(!optionCodesOf(server.queries[0].raw).includes(OptionCode.PADDING));
  } finally {
    await u.close();
    await server.close();
  }
});
