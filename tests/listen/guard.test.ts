/**
 * The query guard: an unexpected throw or rejection in the pipeline costs that one query
 * (SERVFAIL when it can be read), is counted and logged at a bounded rate, and never escapes to a
 * listener. Unit tests on the guard, then a fault injected into a running server's query path.
 */
import assert from "node:assert/strict";
import { Rcode } from "../../lib/dns/message.ts";
import { type FaultReport, QueryGuard, servfailFor } from "../../lib/listen/guard.ts";
import { LogThrottle } from "../../lib/sys/log_throttle.ts";
import type { Handler } from "../../lib/listen/listener.ts";
import { QueryLog, type QueryLogEntry } from "../../lib/metrics/query_log.ts";
import type { Answer, Query } from "../../lib/pipeline/pipeline.ts";
import type { Transport } from "../../lib/dns/transport.ts";
import { startServer } from "../../lib/server.ts";
import { nameToString } from "../../lib/dns/wire.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { buildQuery, parse, TcpDnsClient, udpQuery } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { startFakeDot } from "../helpers/fake_dot.ts";
import { testConfig } from "../helpers/proxy.ts";

const CLIENT = { hostname: "192.0.2.7", port: 5353 };

function query(bytes: Uint8Array, transport: Transport = "udp"): Query {
  return { bytes, client: CLIENT, transport };
}

/** A guard over `handle` that records what it counts and reports. */
function guarded(handle: Handler, clock = new FakeClock(), logIntervalMs = 10_000) {
  const faults: Transport[] = [];
  const reports: FaultReport[] = [];
  const guard = new QueryGuard({
    clock,
    logIntervalMs,
    onFault: (t) => faults.push(t),
    report: (r) => reports.push(r),
  });
  return { handle: guard.wrap(handle), faults, reports, clock };
}

function assertServfailFor(answer: Answer | null, id: number, name: string): void {
  assert.ok(answer, "an answer is expected");
  const msg = parse(answer.bytes);
  assert.equal(msg.id, id);
  assert.equal(msg.rcode, "SERVFAIL");
  assert.equal(msg.type, "response");
  assert.equal(msg.questions?.[0]?.name, name);
}

Deno.test("a handler that throws synchronously yields SERVFAIL for that query, counted and reported", () => {
  const g = guarded(() => {
    throw new Error("injected");
  });
  const answer = g.handle(query(buildQuery("boom.example", "A", 0x1111), "tcp"));
  assert.ok(!(answer instanceof Promise), "a synchronous fault is answered synchronously");
  assertServfailFor(answer, 0x1111, "boom.example");
  assert.deepEqual(g.faults, ["tcp"]);
  assert.equal(g.reports.length, 1);
  assert.equal((g.reports[0].error as Error).message, "injected");
  assert.equal(g.reports[0].client, CLIENT.hostname);
  assert.equal(g.reports[0].suppressed, 0);
});

Deno.test("a handler whose promise rejects yields a promise of SERVFAIL, never a rejection", async () => {
  const g = guarded(() => Promise.reject(new TypeError("injected rejection")));
  const answer = g.handle(query(buildQuery("reject.example", "AAAA", 0x2222)));
  assert.ok(answer instanceof Promise);
  assertServfailFor(await answer, 0x2222, "reject.example");
  assert.deepEqual(g.faults, ["udp"]);
});

Deno.test("answers given synchronously pass through unchanged and without a promise", () => {
  const fixed: Answer = { bytes: new Uint8Array([1, 2, 3]), maxUdpSize: 512 };
  const g = guarded(() => fixed);
  assert.equal(g.handle(query(buildQuery("hit.example"))), fixed);
  assert.equal(guarded(() => null).handle(query(buildQuery("drop.example"))), null);
  assert.deepEqual(g.faults, []);
});

Deno.test("a promise that resolves passes its answer through", async () => {
  const fixed: Answer = { bytes: new Uint8Array([4, 5]), maxUdpSize: 1232 };
  const g = guarded(() => Promise.resolve(fixed));
  assert.equal(await g.handle(query(buildQuery("miss.example"))), fixed);
  assert.deepEqual(g.faults, []);
});

Deno.test("a SERVFAIL to an EDNS query carries an OPT with the configured UDP size and DO", () => {
  const answer = servfailFor(buildQuery("edns.example", "A", 7, { udpSize: 4096, do: true }), 1400);
  assert.ok(answer);
  // The OPT RR is the last 11 bytes: root, type (2), UDP size (2), ext. rcode, version, flags (2).
  const b = answer.bytes;
  const opt = b.length - 11;
  assert.equal((b[10] << 8) | b[11], 1, "ARCOUNT 1");
  assert.equal((b[opt + 1] << 8) | b[opt + 2], 41, "type OPT");
  assert.equal((b[opt + 3] << 8) | b[opt + 4], 1400);
  assert.ok((b[opt + 7] & 0x80) !== 0, "DO is echoed");
});

Deno.test("a fault on a query whose question cannot be read gets a header-only SERVFAIL", () => {
  const bytes = buildQuery("short.example", "A", 0x3333).subarray(0, 20); // header + part of a name
  const answer = servfailFor(bytes);
  assert.ok(answer);
  assert.equal(answer.bytes.length, 12);
  assert.equal((answer.bytes[0] << 8) | answer.bytes[1], 0x3333);
  assert.equal(answer.bytes[3] & 0x0f, Rcode.SERVFAIL);
  assert.ok((answer.bytes[2] & 0x80) !== 0, "QR is set");
  assert.equal((answer.bytes[4] << 8) | answer.bytes[5], 0, "no question");
});

Deno.test("a fault on bytes without a header, or on a response, gets no answer", () => {
  const g = guarded(() => {
    throw new Error("injected");
  });
  assert.equal(g.handle(query(new Uint8Array(5))), null);
  const response = buildQuery("resp.example");
  response[2] |= 0x80; // QR=1
  assert.equal(g.handle(query(response)), null);
  assert.deepEqual(g.faults, ["udp", "udp"], "both are still counted");
});

Deno.test("repeated faults are logged once per interval with the count of those left unlogged", () => {
  const g = guarded(
    () => {
      throw new Error("always");
    },
    new FakeClock(),
    10_000,
  );
  for (let i = 0; i < 5; i++) g.handle(query(buildQuery(`n${i}.example`)));
  assert.equal(g.reports.length, 1);
  assert.equal(g.faults.length, 5, "every fault is counted");
  g.clock.advance(9_999);
  g.handle(query(buildQuery("still-quiet.example")));
  assert.equal(g.reports.length, 1);
  g.clock.advance(1);
  g.handle(query(buildQuery("next.example")));
  assert.equal(g.reports.length, 2);
  assert.equal(g.reports[1].suppressed, 5);
});

Deno.test("a log throttle lets the first event through and counts the rest of the interval", () => {
  const clock = new FakeClock();
  const t = new LogThrottle(clock, 1000);
  assert.equal(t.take(), 0);
  assert.equal(t.take(), null);
  assert.equal(t.take(), null);
  clock.advance(1000);
  assert.equal(t.take(), 2);
  assert.equal(t.take(), null);
});

Deno.test("a failing counter or log sink does not cost the SERVFAIL", () => {
  const guard = new QueryGuard({
    clock: new FakeClock(),
    onFault: () => {
      throw new Error("counter broke");
    },
    report: () => {
      throw new Error("sink broke");
    },
  });
  const handle = guard.wrap(() => {
    throw new Error("injected");
  });
  assertServfailFor(handle(query(buildQuery("x.example", "A", 9))) as Answer, 9, "x.example");
});

/** A query log that throws for the names it is given: a fault inside the pipeline's own path. */
class FaultyQueryLog extends QueryLog {
  constructor(private readonly faulty: Set<string>) {
    super({
      transport: {
        send: (records) => Promise.resolve(records.length),
        close: () => Promise.resolve(),
      },
      wallClock: () => 0,
      clock: new FakeClock(),
    });
  }

  override log(entry: QueryLogEntry): void {
    const name = typeof entry.name === "string" ? entry.name : nameToString(entry.name);
    if (this.faulty.has(name)) throw new Error(`injected fault for ${name}`);
  }
}

function metricValue(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  assert.ok(line, `${series} is exported`);
  return Number(line.slice(series.length + 1));
}

Deno.test("a fault in a running server's query path costs one query over UDP and TCP, never the listener", async () => {
  const upstream = await startFakeDot();
  const config = await testConfig([upstream]);
  const server = await startServer(config, {
    clock: new FakeClock(),
    random: cryptoRandom(),
    queryLog: new FaultyQueryLog(new Set(["fault-udp.example.", "fault-tcp.example."])),
  });
  const [udp, tcp] = server.listeners.map((l) => ({
    hostname: l.addr.hostname,
    port: l.addr.port,
  }));
  const client = await TcpDnsClient.connect(tcp);
  try {
    // First query of a name: a miss, so the fault rejects the pipeline's promise. Second: a
    // cache hit, answered synchronously, so the fault is a synchronous throw.
    for (const kind of ["rejected promise", "synchronous throw"]) {
      const u = parse(await udpQuery(udp, buildQuery("fault-udp.example", "A", 0x0a01)));
      assert.equal(u.rcode, "SERVFAIL", `UDP, ${kind}`);
      assert.equal(u.id, 0x0a01);
      await client.send(buildQuery("fault-tcp.example", "A", 0x0b01));
      const t = await client.read();
      assert.ok(t, `TCP answer, ${kind}`);
      assert.equal(parse(t).rcode, "SERVFAIL", `TCP, ${kind}`);
      // The next query on the same listener and connection is answered normally.
      const ok = parse(await udpQuery(udp, buildQuery("fine.example", "A", 0x0c01)));
      assert.equal(ok.rcode, "NOERROR");
      await client.send(buildQuery("fine.example", "A", 0x0d01));
      const okTcp = await client.read();
      assert.ok(okTcp);
      assert.equal(parse(okTcp).rcode, "NOERROR");
    }
    const text = await server.metrics.render();
    assert.equal(metricValue(text, 'dotproxy_internal_errors_total{protocol="udp"}'), 2);
    assert.equal(metricValue(text, 'dotproxy_internal_errors_total{protocol="tcp"}'), 2);
  } finally {
    client.close();
    await server.stop();
    await upstream.close();
  }
});
