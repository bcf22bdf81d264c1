/**
 * End-to-end behaviour of the proxy in-process: real sockets on loopback, a scriptable DoT
 * upstream with the test CA, and a fake clock for every timeout.
 */
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { buildQuery, frame, parse, TcpDnsClient, udpQuery } from "./helpers/dns_client.ts";
import { expectedAddress, type FakeDot, startFakeDot } from "./helpers/fake_dot.ts";
import { startProxy, type TestProxy } from "./helpers/proxy.ts";
import { waitFor } from "./helpers/wait.ts";
import { DEFAULT_FAILURE_THRESHOLD } from "../lib/upstream/health.ts";

/** Runs `fn` with a proxy in front of the given fake upstreams, closing everything after. */
async function withProxy(
  upstreams: FakeDot[],
  fn: (p: TestProxy) => Promise<void>,
  extraToml = "",
): Promise<void> {
  const proxy = await startProxy(upstreams, { extraToml });
  try {
    await fn(proxy);
  } finally {
    await proxy.stop();
    await Promise.all(upstreams.map((u) => u.close()));
  }
}

function firstAddress(reply: Uint8Array): string | undefined {
  const answer = parse(reply).answers?.[0];
  return answer && "data" in answer ? String(answer.data) : undefined;
}

function rcodeOf(reply: Uint8Array): string | undefined {
  return parse(reply).rcode;
}

Deno.test("a query over UDP is forwarded over TLS and the upstream's answer comes back", async () => {
  await withProxy([await startFakeDot()], async (p) => {
    const reply = await udpQuery(p.udp, buildQuery("example.com", "A", 0x4242));
    const msg = parse(reply);
    assert.equal(msg.id, 0x4242);
    assert.equal(msg.rcode, "NOERROR");
    assert.equal(firstAddress(reply), expectedAddress("example.com"));
  });
});

Deno.test("a query over TCP is forwarded and answered with the client's ID", async () => {
  await withProxy([await startFakeDot()], async (p) => {
    const client = await TcpDnsClient.connect(p.tcp);
    try {
      await client.send(buildQuery("tcp.example", "AAAA", 7));
      const reply = await client.read();
      assert.ok(reply);
      assert.equal(parse(reply).id, 7);
      assert.equal(firstAddress(reply), expectedAddress("tcp.example", "AAAA"));
    } finally {
      client.close();
    }
  });
});

Deno.test("the upstream sees its own query ID, not the client's", async () => {
  const upstream = await startFakeDot();
  await withProxy([upstream], async (p) => {
    const ids = new Set<number>();
    for (let i = 0; i < 5; i++) {
      await udpQuery(p.udp, buildQuery(`id${i}.example`, "A", 0x1111));
      ids.add(upstream.queries[i].id!);
    }
    assert.ok(ids.size >= 4, `upstream IDs should vary, got ${[...ids]}`);
  });
});

Deno.test("the answer carries the client's spelling of the name (0x20)", async () => {
  await withProxy([await startFakeDot()], async (p) => {
    const reply = await udpQuery(p.udp, buildQuery("MiXeD.ExAmPle.COM"));
    assert.equal(parse(reply).questions?.[0].name, "MiXeD.ExAmPle.COM");
  });
});

Deno.test("100 pipelined queries on one TCP connection each get their own answer", async () => {
  await withProxy([await startFakeDot()], async (p) => {
    const client = await TcpDnsClient.connect(p.tcp);
    try {
      const names = Array.from({ length: 100 }, (_, i) => `q${i}.pipeline.test`);
      await client.sendRaw(concat(names.map((n, i) => frame(buildQuery(n, "A", 1000 + i)))));
      const seen = new Map<number, string | undefined>();
      for (let i = 0; i < 100; i++) {
        const reply = await client.read();
        assert.ok(reply, `reply ${i} missing`);
        const msg = parse(reply);
        assert.equal(msg.questions?.[0].name, names[msg.id! - 1000]);
        seen.set(msg.id!, firstAddress(reply));
      }
      assert.equal(seen.size, 100);
      for (const [id, addr] of seen) assert.equal(addr, expectedAddress(names[id - 1000]));
    } finally {
      client.close();
    }
  });
});

Deno.test("replies that arrive out of order upstream are matched to the right clients", async () => {
  const upstream = await startFakeDot({ behaviour: "reverse", batch: 4 });
  await withProxy([upstream], async (p) => {
    const names = ["a.order.test", "b.order.test", "c.order.test", "d.order.test"];
    const replies = await Promise.all(
      names.map((n, i) => udpQuery(p.udp, buildQuery(n, "A", 500 + i))),
    );
    replies.forEach((r, i) => {
      assert.equal(parse(r).id, 500 + i);
      assert.equal(firstAddress(r), expectedAddress(names[i]));
    });
  });
});

Deno.test("an upstream that closes each connection after 3 answers loses no query", async () => {
  const upstream = await startFakeDot({ closeAfter: 3 });
  await withProxy([upstream], async (p) => {
    for (let i = 0; i < 7; i++) {
      const reply = await udpQuery(p.udp, buildQuery(`seq${i}.close.test`));
      assert.equal(firstAddress(reply), expectedAddress(`seq${i}.close.test`), `query ${i}`);
    }
    // More queries in flight than a connection will answer: the rest are retried on a new one.
    const names = Array.from({ length: 5 }, (_, i) => `burst${i}.close.test`);
    const burst = await Promise.all(names.map((n) => udpQuery(p.udp, buildQuery(n))));
    burst.forEach((r, i) => assert.equal(firstAddress(r), expectedAddress(names[i])));
    assert.ok(upstream.connections >= 4, `expected reconnects, saw ${upstream.connections}`);
  });
});

Deno.test("a silent upstream gives SERVFAIL at the deadline; once down, quick SERVFAIL until a probe finds it back", async () => {
  const upstream = await startFakeDot({ behaviour: "silent" });
  await withProxy([upstream], async (p) => {
    // Each query waits its attempt timeout until the failures are sustained (health.ts).
    for (let i = 1; i <= DEFAULT_FAILURE_THRESHOLD; i++) {
      const pending = udpQuery(p.udp, buildQuery(`silent${i}.test`, "A", 99), 5000);
      await upstream.waitForQueries(i);
      p.clock.advance(p.config.forwarding.attemptTimeoutMs);
      const reply = await pending;
      assert.equal(parse(reply).id, 99);
      assert.equal(rcodeOf(reply), "SERVFAIL");
    }
    assert.equal(p.server.upstreams[0].health.available(), false);

    // While it is down, clients get a quick SERVFAIL instead of waiting on it again.
    const quick = await udpQuery(p.udp, buildQuery("quick.test", "A", 100), 5000);
    assert.equal(rcodeOf(quick), "SERVFAIL");
    assert.equal(upstream.queries.length, DEFAULT_FAILURE_THRESHOLD);

    // A background probe finds it answering again; no client query had to pay for that.
    upstream.setBehaviour("answer");
    p.clock.advance(p.config.forwarding.failureBackoffMs * 1.2);
    await waitFor(() => p.server.upstreams[0].health.available());
    assert.equal(upstream.queries[DEFAULT_FAILURE_THRESHOLD].questions?.[0].name, ".");
    const again = await udpQuery(p.udp, buildQuery("silent1.test"));
    assert.equal(firstAddress(again), expectedAddress("silent1.test"));
  });
});

Deno.test("when the first upstream refuses connections the second one answers", async () => {
  const dead = await startFakeDot();
  const deadAddr = { hostname: dead.hostname, port: dead.port, close: () => Promise.resolve() };
  await dead.close(); // nothing listens on that port any more
  const second = await startFakeDot();
  await withProxy([deadAddr as unknown as FakeDot, second], async (p) => {
    const reply = await udpQuery(p.udp, buildQuery("failover.test"));
    assert.equal(firstAddress(reply), expectedAddress("failover.test"));
    // The failing upstream is now avoided: later queries go straight to the second.
    const [first] = p.server.upstreams;
    assert.equal(first.health.available(), false);
    await udpQuery(p.udp, buildQuery("failover2.test"));
    assert.equal(second.queries.length, 2);
  });
});

Deno.test("a silent first upstream costs an attempt timeout per query until it is down, then the second answers at once", async () => {
  const silent = await startFakeDot({ behaviour: "silent" });
  const second = await startFakeDot();
  await withProxy([silent, second], async (p) => {
    for (let i = 1; i <= DEFAULT_FAILURE_THRESHOLD; i++) {
      const name = `slow${i}.failover.test`;
      const pending = udpQuery(p.udp, buildQuery(name), 5000);
      await silent.waitForQueries(i);
      p.clock.advance(p.config.forwarding.attemptTimeoutMs);
      assert.equal(firstAddress(await pending), expectedAddress(name));
    }
    // Down now: the next query does not wait on the silent one.
    const next = await udpQuery(p.udp, buildQuery("next.failover.test"));
    assert.equal(firstAddress(next), expectedAddress("next.failover.test"));
    assert.equal(silent.queries.length, DEFAULT_FAILURE_THRESHOLD);
  });
});

Deno.test("a stalled TLS handshake is cut off at connect_timeout and the next upstream answers", async () => {
  const stalled = await startFakeDot({ behaviour: "stall-handshake" });
  const second = await startFakeDot();
  await withProxy([stalled, second], async (p) => {
    const pending = udpQuery(p.udp, buildQuery("stall.test"), 5000);
    await stalled.waitForConnections(1);
    p.clock.advance(p.config.forwarding.connectTimeoutMs);
    assert.equal(firstAddress(await pending), expectedAddress("stall.test"));
  });
});

for (const cert of ["wrong-name", "untrusted"] as const) {
  Deno.test(`an upstream with a ${cert} certificate is refused and sees no query`, async () => {
    const upstream = await startFakeDot({ cert });
    await withProxy([upstream], async (p) => {
      const reply = await udpQuery(p.udp, buildQuery("secret.test", "A", 3));
      assert.equal(rcodeOf(reply), "SERVFAIL");
      assert.equal(parse(reply).answers?.length ?? 0, 0);
      assert.equal(upstream.queries.length, 0);
      assert.equal(p.server.upstreams[0].health.available(), false);
    });
  });
}

Deno.test("a large answer is truncated with TC over UDP and complete over TCP", async () => {
  await withProxy([await startFakeDot({ behaviour: "large" })], async (p) => {
    const plain = await udpQuery(p.udp, buildQuery("big.test", "TXT"));
    assert.ok(plain.length <= 512, `UDP without EDNS must fit 512, got ${plain.length}`);
    assert.equal(parse(plain).flag_tc, true);

    const edns = await udpQuery(p.udp, buildQuery("big.test", "TXT", 5, { udpSize: 4096 }));
    assert.ok(edns.length <= 1232, `capped at udp_max_size, got ${edns.length}`);
    assert.equal(parse(edns).flag_tc, true);

    const client = await TcpDnsClient.connect(p.tcp);
    try {
      await client.send(buildQuery("big.test", "TXT"));
      const full = await client.read();
      assert.ok(full && full.length > 2000);
      assert.equal(parse(full).flag_tc, false);
      assert.ok((parse(full).answers?.length ?? 0) > 1);
    } finally {
      client.close();
    }
  });
});

Deno.test("a TCP client that half-closes still gets every pending answer", async () => {
  await withProxy([await startFakeDot()], async (p) => {
    const client = await TcpDnsClient.connect(p.tcp);
    try {
      for (let i = 0; i < 5; i++) await client.send(buildQuery(`half${i}.test`, "A", i));
      await client.closeWrite();
      const ids = [];
      for (let r = await client.read(); r; r = await client.read()) ids.push(parse(r).id);
      assert.deepEqual(ids.sort(), [0, 1, 2, 3, 4]);
    } finally {
      client.close();
    }
  });
});

Deno.test("an idle TCP client connection is closed after tcp_idle_timeout", async () => {
  await withProxy([await startFakeDot()], async (p) => {
    const client = await TcpDnsClient.connect(p.tcp);
    try {
      await client.send(buildQuery("idle.test"));
      assert.ok(await client.read());
      p.clock.advance(p.config.server.tcpIdleTimeoutMs - 1);
      const closed = client.read();
      p.clock.advance(1);
      assert.equal(await closed, null);
    } finally {
      client.close();
    }
  });
});

Deno.test("an idle upstream connection is closed by us and reopened on the next query", async () => {
  const upstream = await startFakeDot();
  await withProxy([upstream], async (p) => {
    await udpQuery(p.udp, buildQuery("one.idle.test"));
    assert.equal(p.server.upstreams[0].stats().openConnections, 1);
    p.clock.advance(p.config.forwarding.idleTimeoutMs);
    assert.equal(p.server.upstreams[0].stats().openConnections, 0);
    const reply = await udpQuery(p.udp, buildQuery("two.idle.test"));
    assert.equal(firstAddress(reply), expectedAddress("two.idle.test"));
    assert.equal(upstream.connections, 2);
  });
});

Deno.test("replies with a wrong ID or question are discarded, never delivered", async () => {
  for (const behaviour of ["wrong-id", "wrong-question"] as const) {
    const upstream = await startFakeDot({ behaviour });
    await withProxy([upstream], async (p) => {
      const pending = udpQuery(p.udp, buildQuery("spoof.test", "A", 42), 5000);
      await upstream.waitForQueries(1);
      // Let the bogus reply arrive and be judged before the deadline passes.
      await waitFor(() => p.server.upstreams[0].stats().discarded === 1);
      p.clock.advance(p.config.forwarding.attemptTimeoutMs);
      assert.equal(rcodeOf(await pending), "SERVFAIL", behaviour);
    });
  }
});

Deno.test("on shutdown a query in flight is still answered before sockets close", async () => {
  const upstream = await startFakeDot({ behaviour: "silent" });
  const p = await startProxy([upstream]);
  try {
    const pending = udpQuery(p.udp, buildQuery("shutdown.test", "A", 77), 5000);
    await upstream.waitForQueries(1);
    const stopped = p.stop();
    p.clock.advance(p.config.forwarding.attemptTimeoutMs);
    const reply = await pending;
    assert.equal(parse(reply).id, 77);
    assert.equal(rcodeOf(reply), "SERVFAIL");
    await stopped;
    await assert.rejects(udpQuery(p.udp, buildQuery("after.test"), 200));
  } finally {
    await p.stop();
    await upstream.close();
  }
});

Deno.test("listeners on ::1 answer over UDP and TCP", async () => {
  const upstream = await startFakeDot();
  const p = await startProxy([upstream], { listenOn: "::1" });
  try {
    assert.equal(p.udp.hostname, "::1");
    const reply = await udpQuery(p.udp, buildQuery("v6.listen.test"));
    assert.equal(firstAddress(reply), expectedAddress("v6.listen.test"));
    const client = await TcpDnsClient.connect(p.tcp);
    try {
      await client.send(buildQuery("v6.listen.test", "AAAA"));
      assert.equal(firstAddress((await client.read())!), expectedAddress("v6.listen.test", "AAAA"));
    } finally {
      client.close();
    }
  } finally {
    await p.stop();
    await upstream.close();
  }
});

Deno.test("an IPv6 upstream on ::1 answers queries", async () => {
  const upstream = await startFakeDot({ hostname: "::1" });
  await withProxy([upstream], async (p) => {
    const reply = await udpQuery(p.udp, buildQuery("v6.test"));
    assert.equal(firstAddress(reply), expectedAddress("v6.test"));
  });
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("queries reach a DoT upstream padded to 128 bytes, without the client's ECS or cookie", async () => {
  const upstream = await startFakeDot();
  await withProxy([upstream], async (p) => {
    const query = dnsPacketQuery("padded.test", [
      { code: 8, data: new Uint8Array([0, 1, 24, 0, 192, 0, 2]) }, // ECS 192.0.2.0/24
      { code: 10, data: new Uint8Array(8).fill(7) }, // client cookie
    ]);
    await udpQuery(p.udp, query);
    const raw = upstream.rawQueries[0];
    assert.equal(raw.length % 128, 0, `upstream query is ${raw.length} bytes`);
    const opt = upstream.queries[0].additionals?.find((r: { type: string }) => r.type === "OPT") as
      | { options?: { code: number }[] }
      | undefined;
    const codes = (opt?.options ?? []).map((o) => o.code);
    // Ours only: edns-tcp-keepalive (RFC 7828) and padding last (RFC 8467).
    assert.deepEqual(codes, [11, 12]);
  });
});

/** A query with EDNS options, built with dns-packet (independent of our codec). */
function dnsPacketQuery(name: string, options: { code: number; data: Uint8Array }[]): Uint8Array {
  return new Uint8Array(
    dnsPacket.encode({
      type: "query",
      id: 0x5150,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: "A", name, class: "IN" }],
      additionals: [{
        type: "OPT",
        name: ".",
        udpPayloadSize: 1232,
        flags: 0,
        options: options.map((o) => ({ code: o.code, data: Buffer.from(o.data) })),
      }],
    } as dnsPacket.Packet),
  );
}
