/** createUpstream: one call per configured upstream picks the transport and its EDNS policy. */
import assert from "node:assert/strict";
import { OptionCode, QUERY_PADDING_BLOCK } from "../../lib/dns/edns.ts";
import { createUpstream, type UpstreamDeps } from "../../lib/upstream/create.ts";
import { DohUpstream } from "../../lib/upstream/doh_upstream.ts";
import { StreamUpstream } from "../../lib/upstream/stream_upstream.ts";
import { UdpUpstream } from "../../lib/upstream/udp_upstream.ts";
import { DEFAULT_FORWARDING } from "../../lib/config/schema.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { buildQuery } from "../helpers/dns_client.ts";
import { bootstrapResolver, startBootstrapServer } from "../helpers/fake_bootstrap.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { expectedAddress, readFixture, startFakeDot } from "../helpers/fake_dot.ts";
import { addressesIn, optionCodesOf, questionOf, startFakePlain } from "../helpers/fake_plain.ts";

function deps(clock: FakeClock, extra: Partial<UpstreamDeps> = {}): UpstreamDeps {
  return { ...DEFAULT_FORWARDING, clock, random: cryptoRandom(), ...extra };
}

Deno.test("each URL scheme gets its transport", async () => {
  const clock = new FakeClock();
  const common = { hostname: "127.0.0.1", port: 5300 };
  const made = [
    createUpstream({ url: "udp://127.0.0.1:5300", protocol: "udp", ...common }, deps(clock)),
    createUpstream({ url: "tcp://127.0.0.1:5300", protocol: "tcp", ...common }, deps(clock)),
    createUpstream(
      { url: "tls://127.0.0.1:5300", protocol: "tls", tlsName: "dns.test", ...common },
      deps(clock),
    ),
    createUpstream(
      { url: "https://127.0.0.1:5300/dns-query", protocol: "https", ...common },
      deps(clock),
    ),
  ];
  try {
    assert.ok(made[0] instanceof UdpUpstream);
    assert.ok(made[1] instanceof StreamUpstream);
    assert.ok(made[2] instanceof StreamUpstream);
    assert.ok(made[3] instanceof DohUpstream);
    assert.deepEqual(made.map((u) => u.name), [
      "udp://127.0.0.1:5300",
      "tcp://127.0.0.1:5300",
      "tls://127.0.0.1:5300",
      "https://127.0.0.1:5300/dns-query",
    ]);
    assert.ok(made.every((u) => u.health.available() && u.stats().inFlight === 0));
  } finally {
    await Promise.all(made.map((u) => u.close()));
  }
});

Deno.test("combinations the config must reject are programmer errors", () => {
  const clock = new FakeClock();
  for (const protocol of ["udp", "tcp"] as const) {
    assert.throws(
      () => createUpstream({ url: "x", protocol, hostname: "dns.example", port: 53 }, deps(clock)),
      RangeError,
    );
  }
  assert.throws(
    () =>
      createUpstream(
        { url: "x", protocol: "tls", hostname: "dns.example", port: 853 },
        deps(clock),
      ),
    /bootstrap/,
  );
});

Deno.test("a tls:// hostname upstream verifies the certificate for that hostname by default", async () => {
  const dot = await startFakeDot();
  const boot = startBootstrapServer({ a: ["127.0.0.1"] });
  const clock = new FakeClock();
  const bootstrap = bootstrapResolver(clock, [boot]);
  const u = createUpstream(
    {
      url: `tls://dns.test:${dot.port}`,
      protocol: "tls",
      hostname: "dns.test",
      port: dot.port,
      caCerts: [await readFixture("ca.pem")],
    },
    deps(clock, { resolver: bootstrap }),
  );
  try {
    const q = buildQuery("named.test");
    const r = await u.exchange(q, questionOf(q), clock.now() + 2000);
    assert.ok(r.ok, r.ok ? "" : r.error.message);
    assert.equal(dot.rawQueries[0].length % QUERY_PADDING_BLOCK, 0, "padded on TLS");
  } finally {
    await u.close();
    await bootstrap.close();
    await boot.close();
    await dot.close();
  }
});

Deno.test("a udp:// upstream from the factory retries truncated answers over TCP", async () => {
  const server = startFakePlain({ behaviour: "truncate" });
  const clock = new FakeClock();
  const u = createUpstream(
    { url: "udp://test", protocol: "udp", hostname: server.hostname, port: server.port },
    deps(clock),
  );
  try {
    const q = buildQuery("tc.factory.test");
    const r = await u.exchange(q, questionOf(q), clock.now() + 2000);
    assert.ok(r.ok);
    assert.deepEqual(addressesIn(r.reply), [expectedAddress("tc.factory.test")]);
    assert.deepEqual(server.queries.map((x) => x.transport), ["udp", "tcp"]);
    assert.deepEqual(optionCodesOf(server.queries[0].raw), []);
    assert.deepEqual(optionCodesOf(server.queries[1].raw), [OptionCode.TCP_KEEPALIVE]);
  } finally {
    await u.close();
    await server.close();
  }
});

Deno.test("with edns: false the factory's upstreams forward queries unchanged", async () => {
  const server = startFakePlain();
  const clock = new FakeClock();
  const u = createUpstream(
    { url: "tcp://test", protocol: "tcp", hostname: server.hostname, port: server.port },
    deps(clock, { edns: false }),
  );
  try {
    const q = buildQuery("verbatim.factory.test");
    assert.ok((await u.exchange(q, questionOf(q), clock.now() + 2000)).ok);
    assert.deepEqual(server.queries[0].raw.subarray(2), q.subarray(2));
  } finally {
    await u.close();
    await server.close();
  }
});
