import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { buildQuery, frame, parse, TcpDnsClient, udpQuery } from "./dns_client.ts";
import { expectedAddress, type FakeDot, type FakeDotOptions, startFakeDot } from "./fake_dot.ts";

const CA = await Deno.readTextFile(new URL("../fixtures/ca.pem", import.meta.url));

function dot(fake: FakeDot, serverName = "dns.test"): Promise<TcpDnsClient> {
  return TcpDnsClient.connect(fake, { tls: { caCerts: [CA], serverName } });
}

/** Runs `fn` with a fake server and a verified DoT client, closing both afterwards. */
async function withFake(
  opts: FakeDotOptions,
  fn: (fake: FakeDot, client: TcpDnsClient) => Promise<void>,
): Promise<void> {
  const fake = await startFakeDot(opts);
  let client: TcpDnsClient | undefined;
  try {
    client = await dot(fake);
    await fn(fake, client);
  } finally {
    client?.close();
    await fake.close();
  }
}

async function readParsed(client: TcpDnsClient): Promise<dnsPacket.Packet> {
  const msg = await client.read();
  assert.ok(msg, "expected a reply, got EOF");
  return parse(msg);
}

Deno.test("expectedAddress: sum of lower-cased name bytes", () => {
  // "a" = 97 -> 97 % 254 + 1 = 98
  assert.equal(expectedAddress("a"), "192.0.2.98");
  assert.equal(expectedAddress("A."), "192.0.2.98");
  assert.equal(expectedAddress("a", "AAAA"), "2001:db8::98");
});

Deno.test("fake DoT answers A, AAAA and other types over TLS verified with the test CA", async () => {
  await withFake({}, async (fake, client) => {
    await client.send(buildQuery("Example.COM", "A", 7));
    const a = await readParsed(client);
    assert.equal(a.id, 7);
    assert.equal(a.type, "response");
    assert.equal(a.flag_rd, true);
    assert.equal(a.flag_ra, true);
    assert.equal(a.rcode, "NOERROR");
    assert.deepEqual(a.questions, [{ name: "Example.COM", type: "A", class: "IN" }]);
    assert.equal(a.answers?.length, 1);
    assert.equal(a.answers?.[0].data, expectedAddress("example.com"));
    assert.equal(a.answers?.[0].ttl, 300);

    await client.send(buildQuery("example.com", "AAAA", 8));
    const aaaa = await readParsed(client);
    assert.equal(aaaa.answers?.[0].data, expectedAddress("example.com", "AAAA"));

    await client.send(buildQuery("example.com", "MX", 9, { udpSize: 4096, do: true }));
    const mx = await readParsed(client);
    assert.equal(mx.id, 9);
    assert.deepEqual(mx.answers, []);
    assert.equal(mx.additionals?.[0].type, "OPT");
    assert.equal(mx.additionals?.[0].flag_do, true);

    await fake.waitForQueries(3);
    assert.deepEqual(fake.queries.map((q) => q.id), [7, 8, 9]);
    assert.equal(fake.rawQueries.length, 3);
    assert.equal(fake.connections, 1);
    assert.equal(fake.openConnections(), 1);
  });
});

Deno.test("fake DoT listens on ::1 too", async () => {
  await withFake({ hostname: "::1" }, async (fake, client) => {
    assert.equal(fake.hostname, "::1");
    await client.send(buildQuery("v6.test"));
    assert.equal((await readParsed(client)).answers?.[0].data, expectedAddress("v6.test"));
  });
});

Deno.test("fake DoT handles several messages per read and messages split across reads", async () => {
  await withFake({}, async (fake, client) => {
    const f1 = frame(buildQuery("one.test", "A", 1));
    const f2 = frame(buildQuery("two.test", "A", 2));
    const f3 = frame(buildQuery("three.test", "A", 3));
    const all = new Uint8Array([...f1, ...f2, ...f3]);
    await client.sendRaw(all.subarray(0, 1)); // half a length prefix
    await client.sendRaw(all.subarray(1, f1.length + 5)); // rest of 1, start of 2
    await fake.waitForQueries(1);
    await client.sendRaw(all.subarray(f1.length + 5)); // rest of 2, and 3
    await fake.waitForQueries(3);
    const ids = [(await readParsed(client)).id, (await readParsed(client)).id];
    ids.push((await readParsed(client)).id);
    assert.deepEqual(ids, [1, 2, 3]);
    assert.deepEqual(fake.queries.map((q) => q.questions?.[0].name), [
      "one.test",
      "two.test",
      "three.test",
    ]);
  });
});

Deno.test("TLS clients reject the wrong name and an untrusted CA", async () => {
  for (const cert of ["wrong-name", "untrusted"] as const) {
    const fake = await startFakeDot({ cert });
    try {
      await assert.rejects(dot(fake), `${cert} must be rejected`);
      await fake.waitForConnections(1);
    } finally {
      await fake.close();
    }
    assert.equal(fake.queries.length, 0);
  }
  // The wrong-name certificate is fine for a client that asks for wrong.test.
  const fake = await startFakeDot({ cert: "wrong-name" });
  try {
    const client = await dot(fake, "wrong.test");
    await client.send(buildQuery("ok.test"));
    assert.equal((await readParsed(client)).answers?.[0].data, expectedAddress("ok.test"));
    client.close();
  } finally {
    await fake.close();
  }
});

Deno.test("behaviour 'reverse' releases held replies in reverse order", async () => {
  await withFake({ behaviour: "reverse", batch: 3 }, async (_fake, client) => {
    for (const id of [1, 2, 3]) await client.send(buildQuery(`q${id}.test`, "A", id));
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await readParsed(client)).id);
    assert.deepEqual(ids, [3, 2, 1]);
  });
});

Deno.test("behaviours 'wrong-id', 'wrong-question', 'large', 'silent' via setBehaviour", async () => {
  await withFake({}, async (fake, client) => {
    fake.setBehaviour("wrong-id");
    await client.send(buildQuery("x.test", "A", 100));
    assert.equal((await readParsed(client)).id, 101);

    fake.setBehaviour("wrong-question");
    await client.send(buildQuery("x.test", "A", 200));
    const wq = await readParsed(client);
    assert.equal(wq.id, 200);
    assert.notEqual(wq.questions?.[0].name, "x.test");

    fake.setBehaviour("large");
    await client.send(buildQuery("big.test", "TXT", 300));
    const raw = await client.read();
    assert.ok(raw && raw.length > 2900 && raw.length < 3600, `large size ${raw?.length}`);
    assert.equal(parse(raw).answers?.length, 12);

    fake.setBehaviour("silent");
    await client.send(buildQuery("quiet.test", "A", 400));
    await fake.waitForQueries(4);
    fake.setBehaviour("answer");
    await client.send(buildQuery("loud.test", "A", 500));
    assert.equal((await readParsed(client)).id, 500); // 400 was never answered
  });
});

Deno.test("answerFor overrides the default answer", async () => {
  const answerFor = (q: dnsPacket.Packet) =>
    q.questions?.[0].name === "nx.test" ? { rcode: "NXDOMAIN", answers: [] } : null;
  await withFake({ answerFor }, async (_fake, client) => {
    await client.send(buildQuery("nx.test", "A", 1));
    const nx = await readParsed(client);
    assert.equal(nx.rcode, "NXDOMAIN");
    assert.equal(nx.id, 1);
    await client.send(buildQuery("ok.test", "A", 2));
    assert.equal((await readParsed(client)).answers?.[0].data, expectedAddress("ok.test"));
  });
});

Deno.test("closeAfter closes each connection after N answers", async () => {
  await withFake({ closeAfter: 2 }, async (fake, client) => {
    for (const id of [1, 2, 3]) await client.send(buildQuery("c.test", "A", id));
    assert.equal((await readParsed(client)).id, 1);
    assert.equal((await readParsed(client)).id, 2);
    assert.equal(await client.read(), null);
    const again = await dot(fake);
    await again.send(buildQuery("c.test", "A", 4));
    assert.equal((await readParsed(again)).id, 4);
    again.close();
    assert.equal(fake.connections, 2);
  });
});

Deno.test("behaviour 'close-immediately' completes TLS then hangs up", async () => {
  await withFake({ behaviour: "close-immediately" }, async (fake, client) => {
    await client.send(buildQuery("gone.test")).catch(() => {});
    assert.equal(await client.read(), null);
    assert.equal(fake.queries.length, 0);
  });
});

Deno.test("behaviour 'stall-handshake' accepts TCP but never completes TLS", async () => {
  const fake = await startFakeDot({ behaviour: "stall-handshake" });
  try {
    const tcp = await Deno.connect({ hostname: fake.hostname, port: fake.port });
    const tls = await Deno.startTls(tcp, { hostname: "dns.test", caCerts: [CA] });
    const hs = tls.handshake();
    await fake.waitForConnections(1);
    assert.equal(fake.openConnections(), 1);
    tls.close(); // give up: the pending handshake fails
    await assert.rejects(hs);
  } finally {
    await fake.close();
  }
  assert.equal(fake.openConnections(), 0);
});

Deno.test("dns_client udpQuery: gets the reply, and times out cleanly", async () => {
  const server = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const addr = { hostname: "127.0.0.1", port: (server.addr as Deno.NetAddr).port };
  try {
    const echo = (async () => {
      const [msg, from] = await server.receive();
      await server.send(msg, from);
    })();
    const q = buildQuery("udp.test", "A", 77, { udpSize: 1232 });
    assert.deepEqual(await udpQuery(addr, q), q);
    await echo;
    // Nothing answers now: the query must reject after the timeout, leaking nothing.
    await assert.rejects(udpQuery(addr, q, 20), /timed out/);
  } finally {
    server.close();
  }
});
