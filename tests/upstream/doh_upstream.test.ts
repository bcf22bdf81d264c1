/**
 * The DoH upstream against a fake RFC 8484 server (Deno.serve with the test certificate): POST
 * of application/dns-message with ID 0, HTTP/2 and connection reuse, padding, typed errors,
 * deadlines through an AbortController on the fake clock, and bootstrap by hostname.
 */
import assert from "node:assert/strict";
import { OptionCode, QUERY_PADDING_BLOCK } from "../../lib/dns/edns.ts";
import { DEFAULT_FAILURE_THRESHOLD } from "../../lib/upstream/health.ts";
import { DohUpstream, type DohUpstreamOptions } from "../../lib/upstream/doh_upstream.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { buildQuery } from "../helpers/dns_client.ts";
import { bootstrapResolver, startBootstrapServer } from "../helpers/fake_bootstrap.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { type DohBehaviour, type FakeDoh, startFakeDoh } from "../helpers/fake_doh.ts";
import { expectedAddress, readFixture } from "../helpers/fake_dot.ts";
import { addressesIn, optionCodesOf, questionOf } from "../helpers/fake_plain.ts";
import { waitFor } from "../helpers/wait.ts";

const CA = await readFixture("ca.pem");

function doh(clock: FakeClock, url: string, extra: Partial<DohUpstreamOptions> = {}) {
  return new DohUpstream({
    name: "doh-test",
    url,
    clock,
    random: cryptoRandom(),
    caCerts: [CA],
    connectTimeoutMs: 2000,
    idleTimeoutMs: 8000,
    failureBackoffMs: 1000,
    maxFailureBackoffMs: 10_000,
    probeTimeoutMs: 2000,
    edns: { udpSize: 1232, keepEcs: false, pad: true },
    ...extra,
  });
}

async function ask(u: DohUpstream, clock: FakeClock, name: string) {
  const q = buildQuery(name, "A", 0x4321);
  return await u.exchange(q, questionOf(q), clock.now() + 2000);
}

async function withDoh(
  behaviour: DohBehaviour,
  fn: (server: FakeDoh, u: DohUpstream, clock: FakeClock) => Promise<void>,
  extra: Partial<DohUpstreamOptions> = {},
): Promise<void> {
  const server = await startFakeDoh({ behaviour });
  const clock = new FakeClock();
  const u = doh(clock, server.url, extra);
  try {
    await fn(server, u, clock);
  } finally {
    await u.close();
    await server.close();
  }
}

Deno.test("a DoH query is a POST of application/dns-message with ID 0, answered", async () => {
  await withDoh("answer", async (server, u, clock) => {
    const r = await ask(u, clock, "doh.test");
    assert.ok(r.ok, r.ok ? "" : r.error.message);
    assert.equal(r.upstream, "doh-test");
    assert.deepEqual(addressesIn(r.reply), [expectedAddress("doh.test")]);
    const [req] = server.requests;
    assert.equal(req.method, "POST");
    assert.equal(req.path, "/dns-query");
    assert.equal(req.contentType, "application/dns-message");
    assert.equal(req.accept, "application/dns-message");
    assert.equal(server.queries[0].id, 0);
  });
});

Deno.test("DoH queries share one HTTP/2 connection", async () => {
  await withDoh("answer", async (server, u, clock) => {
    assert.ok((await ask(u, clock, "one.doh.test")).ok);
    const names = ["two", "three", "four", "five"].map((n) => `${n}.doh.test`);
    const replies = await Promise.all(names.map((n) => ask(u, clock, n)));
    replies.forEach((r, i) =>
      assert.deepEqual(r.ok && addressesIn(r.reply), [expectedAddress(names[i])])
    );
    assert.ok(server.requests.every((r) => r.http2), "HTTP/2 negotiated");
    assert.equal(new Set(server.requests.map((r) => r.port)).size, 1, "one connection");
  });
});

Deno.test("DoH queries are padded to a multiple of 128 bytes and ask for no keepalive", async () => {
  await withDoh("answer", async (server, u, clock) => {
    for (const name of ["a.test", "padding.doh.example.org", "y".repeat(63) + ".test"]) {
      assert.ok((await ask(u, clock, name)).ok);
    }
    for (const raw of server.rawQueries) {
      assert.equal(raw.length % QUERY_PADDING_BLOCK, 0);
      assert.deepEqual(optionCodesOf(raw), [OptionCode.PADDING]);
    }
  });
});

for (
  const [behaviour, needle] of [
    ["status-500", "HTTP status 500"],
    ["wrong-type", "content type"],
    ["malformed", "malformed"],
    ["wrong-question", "another question"],
  ] as const
) {
  Deno.test(`a DoH ${behaviour} response is a protocol error; sustained, the upstream backs off`, async () => {
    await withDoh(behaviour, async (_server, u, clock) => {
      for (let i = 1; i <= DEFAULT_FAILURE_THRESHOLD; i++) {
        const r = await ask(u, clock, `bad${i}.doh.test`);
        assert.equal(!r.ok && r.error.kind, "protocol");
        assert.ok(!r.ok && r.error.message.includes(needle), !r.ok ? r.error.message : "");
        assert.equal(u.health.available(), i < DEFAULT_FAILURE_THRESHOLD, `after ${i} answers`);
      }
      const next = await ask(u, clock, "next.doh.test");
      assert.equal(
        !next.ok && next.error.kind,
        "down",
        "clients do not wait on a failing upstream",
      );
    });
  });
}

Deno.test("a silent DoH server times out at the deadline on the injected clock", async () => {
  await withDoh("silent", async (server, u, clock) => {
    const pending = ask(u, clock, "slow.doh.test");
    await server.waitForRequests(1);
    clock.advance(1999);
    assert.equal(u.stats().inFlight, 1);
    clock.advance(1);
    const r = await pending;
    assert.equal(!r.ok && r.error.kind, "timeout");
  });
});

Deno.test("a DoH server the trust anchors do not cover is a TLS failure", async () => {
  await withDoh("answer", async (server, u, clock) => {
    const r = await ask(u, clock, "untrusted.doh.test");
    assert.equal(!r.ok && r.error.kind, "tls", !r.ok ? r.error.message : "");
    assert.equal(server.requests.length, 0);
  }, { caCerts: [] });
});

Deno.test("a DoH error status for one name costs only that query", async () => {
  const server = await startFakeDoh({ slow: (name) => name.startsWith("broken") });
  const clock = new FakeClock();
  const u = doh(clock, server.url);
  try {
    for (let i = 0; i < 2 * DEFAULT_FAILURE_THRESHOLD; i++) {
      const broken = ask(u, clock, `broken${i}.doh.test`); // held, then answered 500
      await server.waitForRequests(server.requests.length + 1);
      assert.ok((await ask(u, clock, `fine${i}.doh.test`)).ok);
      server.setBehaviour("status-500");
      server.releaseSlow();
      const r = await broken;
      server.setBehaviour("answer");
      assert.equal(!r.ok && r.error.kind, "protocol");
      assert.equal(u.health.available(), true, `up after ${i + 1} error statuses`);
    }
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("a failing DoH upstream is probed and recovers", async () => {
  await withDoh("status-500", async (server, u, clock) => {
    for (let i = 0; i < DEFAULT_FAILURE_THRESHOLD; i++) {
      assert.equal((await ask(u, clock, `x${i}.doh.test`)).ok, false);
    }
    assert.equal(u.health.available(), false);
    clock.advance(0); // the probe goes out at once, and fails too
    await waitFor(() => u.health.failures === 2, "the immediate probe failed");
    server.setBehaviour("answer");
    clock.advance(2400); // the doubled backoff is over: the next probe is answered
    await server.waitForRequests(DEFAULT_FAILURE_THRESHOLD + 2);
    await waitFor(() => u.health.available(), "the probe made the upstream available");
    assert.ok((await ask(u, clock, "y.doh.test")).ok);
  });
});

Deno.test("closing a DoH upstream settles its outstanding queries as closed", async () => {
  const server = await startFakeDoh({ behaviour: "silent" });
  const clock = new FakeClock();
  const u = doh(clock, server.url);
  try {
    const pending = ask(u, clock, "closing.doh.test");
    await server.waitForRequests(1);
    await u.close();
    const r = await pending;
    assert.equal(!r.ok && r.error.kind, "closed");
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("a DoH upstream given by hostname connects to its bootstrap address, verified for the name", async () => {
  const server = await startFakeDoh();
  const boot = startBootstrapServer({ a: ["127.0.0.1"] });
  const clock = new FakeClock();
  const bootstrap = bootstrapResolver(clock, [boot]);
  const u = doh(clock, `https://dns.test:${server.port}/dns-query`, { resolver: bootstrap });
  try {
    for (const name of ["a.boot.test", "b.boot.test"]) {
      const r = await ask(u, clock, name);
      assert.ok(r.ok, r.ok ? "" : r.error.message);
      assert.deepEqual(addressesIn(r.reply), [expectedAddress(name)]);
    }
    assert.equal(u.tunnelled, 1, "one tunnelled connection, reused");
    assert.ok(server.requests.every((r) => r.http2), "HTTP/2 inside the tunnel");
    assert.equal(bootstrap.resolutions, 1);
  } finally {
    await u.close();
    await bootstrap.close();
    await boot.close();
    await server.close();
  }
});

Deno.test("a DoH hostname the bootstrap servers cannot resolve is a connect failure", async () => {
  const server = await startFakeDoh();
  const boot = startBootstrapServer({}, "other.test"); // dns.test: NXDOMAIN
  const clock = new FakeClock();
  const bootstrap = bootstrapResolver(clock, [boot]);
  const u = doh(clock, `https://dns.test:${server.port}/dns-query`, { resolver: bootstrap });
  try {
    const r = await ask(u, clock, "nx.boot.test");
    assert.equal(!r.ok && r.error.kind, "connect", !r.ok ? r.error.message : "");
    assert.equal(server.requests.length, 0);
  } finally {
    await u.close();
    await bootstrap.close();
    await boot.close();
    await server.close();
  }
});
