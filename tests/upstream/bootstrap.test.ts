/**
 * Bootstrap resolution of upstream hostnames through plain-DNS servers on loopback: A and AAAA,
 * a TTL cache re-resolved lazily on use, stale addresses kept when re-resolution fails, failover
 * between bootstrap servers, all on the fake clock.
 */
import assert from "node:assert/strict";
import {
  type BootstrapRecords,
  bootstrapResolver,
  startBootstrapServer,
} from "../helpers/fake_bootstrap.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { startFakePlain } from "../helpers/fake_plain.ts";

/** A bootstrap server that knows one name: A and AAAA records with the given TTL. */
const server = (records: BootstrapRecords) => startBootstrapServer(records, "dns.example");
const bootstrap = bootstrapResolver;

Deno.test("a hostname resolves to its A and AAAA addresses, IPv4 first", async () => {
  const s = server({ a: ["192.0.2.1", "192.0.2.2"], aaaa: ["2001:db8::53"] });
  const clock = new FakeClock();
  const b = bootstrap(clock, [s]);
  try {
    const r = await b.lookup("dns.example");
    assert.deepEqual(r, {
      ok: true,
      addresses: ["192.0.2.1", "192.0.2.2", "2001:db8:0:0:0:0:0:53"],
    });
    assert.deepEqual(s.queries.map((q) => q.packet.questions?.[0].type).sort(), ["A", "AAAA"]);
    assert.ok(s.queries.every((q) => q.transport === "udp"));
  } finally {
    await b.close();
    await s.close();
  }
});

Deno.test("a name with only IPv4 addresses resolves to those", async () => {
  const s = server({ a: ["192.0.2.9"] });
  const clock = new FakeClock();
  const b = bootstrap(clock, [s]);
  try {
    assert.deepEqual(await b.lookup("dns.example"), { ok: true, addresses: ["192.0.2.9"] });
  } finally {
    await b.close();
    await s.close();
  }
});

Deno.test("answers are cached for their TTL and re-resolved on the first use after it", async () => {
  const records = { a: ["192.0.2.1"], ttl: 60 };
  const s = server(records);
  const clock = new FakeClock();
  const b = bootstrap(clock, [s]);
  try {
    await b.lookup("dns.example");
    await b.lookup("DNS.Example."); // same name, any spelling
    assert.equal(b.resolutions, 1);
    records.a = ["192.0.2.2"];
    clock.advance(59_999);
    assert.deepEqual(await b.lookup("dns.example"), { ok: true, addresses: ["192.0.2.1"] });
    assert.equal(b.resolutions, 1);
    clock.advance(1);
    assert.equal(s.queries.length, 2, "nothing is asked until the name is used again");
    assert.deepEqual(await b.lookup("dns.example"), { ok: true, addresses: ["192.0.2.2"] });
    assert.equal(b.resolutions, 2);
  } finally {
    await b.close();
    await s.close();
  }
});

Deno.test("a TTL below the floor is kept for the floor, so a zero TTL cannot cause a storm", async () => {
  const s = server({ a: ["192.0.2.1"], ttl: 0 });
  const clock = new FakeClock();
  const b = bootstrap(clock, [s], { minTtlMs: 30_000 });
  try {
    await b.lookup("dns.example");
    clock.advance(29_999);
    await b.lookup("dns.example");
    assert.equal(b.resolutions, 1);
    clock.advance(1);
    await b.lookup("dns.example");
    assert.equal(b.resolutions, 2);
  } finally {
    await b.close();
    await s.close();
  }
});

Deno.test("concurrent lookups of one name share a single resolution", async () => {
  const s = server({ a: ["192.0.2.1"] });
  const clock = new FakeClock();
  const b = bootstrap(clock, [s]);
  try {
    const rs = await Promise.all(Array.from({ length: 5 }, () => b.lookup("dns.example")));
    assert.ok(rs.every((r) => r.ok && r.addresses[0] === "192.0.2.1"));
    assert.equal(b.resolutions, 1);
    assert.equal(s.queries.length, 2);
  } finally {
    await b.close();
    await s.close();
  }
});

Deno.test("when re-resolution fails the old addresses stay in use and are retried later", async () => {
  const s = server({ a: ["192.0.2.1"], ttl: 60 });
  const clock = new FakeClock();
  const b = bootstrap(clock, [s], { retryMs: 10_000 });
  try {
    await b.lookup("dns.example");
    s.setBehaviour("silent");
    clock.advance(60_000);
    const pending = b.lookup("dns.example");
    await s.waitForQueries(4);
    clock.advance(2000);
    assert.deepEqual(await pending, { ok: true, addresses: ["192.0.2.1"] });
    const asked = s.queries.length;
    clock.advance(9_999);
    await b.lookup("dns.example");
    assert.equal(s.queries.length, asked, "not asked again before the retry delay");
    s.setBehaviour("answer");
    clock.advance(1);
    await b.lookup("dns.example");
    assert.ok(s.queries.length > asked);
  } finally {
    await b.close();
    await s.close();
  }
});

Deno.test("a name the bootstrap servers do not know fails with a reason", async () => {
  const s = server({ a: ["192.0.2.1"] });
  const clock = new FakeClock();
  const b = bootstrap(clock, [s]);
  try {
    const r = await b.lookup("unknown.example");
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.message : "", /rcode 3/);
  } finally {
    await b.close();
    await s.close();
  }
});

Deno.test("an IP literal is returned as it is, without asking anyone", async () => {
  const s = server({});
  const clock = new FakeClock();
  const b = bootstrap(clock, [s]);
  try {
    assert.deepEqual(await b.lookup("192.0.2.7"), { ok: true, addresses: ["192.0.2.7"] });
    assert.deepEqual(await b.lookup("2001:db8::1"), { ok: true, addresses: ["2001:db8::1"] });
    assert.equal(s.queries.length, 0);
  } finally {
    await b.close();
    await s.close();
  }
});

Deno.test("a silent bootstrap server is failed over to the next one", async () => {
  const silent = startFakePlain({ behaviour: "silent" });
  const good = server({ a: ["192.0.2.1"] });
  const clock = new FakeClock();
  const b = bootstrap(clock, [silent, good], { attemptTimeoutMs: 1000 });
  try {
    const pending = b.lookup("dns.example");
    await silent.waitForQueries(2);
    clock.advance(1000);
    assert.deepEqual(await pending, { ok: true, addresses: ["192.0.2.1"] });
  } finally {
    await b.close();
    await silent.close();
    await good.close();
  }
});
