/**
 * The DNS-over-TLS listener, driven directly with a fake handler (no proxy, no upstream): TCP
 * framing and pipelining inside TLS, ALPN, the handshake deadline, idle close, certificate
 * reload, and the TCP_NODELAY fix (the first answer on a new connection is not held back).
 * Interop with kdig and dig at the end.
 */
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import type { Handler } from "../../lib/listen/listener.ts";
import type { StreamLimits } from "../../lib/listen/stream.ts";
import { checkCertificate, listenTls, type TlsListener } from "../../lib/listen/tls.ts";
import type { Query } from "../../lib/pipeline/pipeline.ts";
import { buildQuery, frame, parse, TcpDnsClient } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { defaultAnswer, expectedAddress, readFixture } from "../helpers/fake_dot.ts";
import { startServer } from "../../lib/server.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { startFakeDot } from "../helpers/fake_dot.ts";
import { testConfig } from "../helpers/proxy.ts";
import { digArgs, runTool, toolTest } from "../helpers/tools.ts";
import { waitFor as until } from "../helpers/wait.ts";

const CA = await readFixture("ca.pem");
const CERT = await readFixture("server.pem");
const KEY = await readFixture("server-key.pem");
const WRONG_NAME_CERT = await readFixture("wrong-name.pem");
const WRONG_NAME_KEY = await readFixture("wrong-name-key.pem");
const CA_PATH = new URL("../fixtures/ca.pem", import.meta.url).pathname;

const LIMITS: StreamLimits = {
  idleTimeoutMs: 10_000,
  readTimeoutMs: 3_000,
  maxConnections: 50,
  maxConnectionsPerClient: 50,
  maxPipelined: 100,
};

/** A handler answering like the fake upstream; with `hold`, answers wait for `release()`. */
function fakeHandler(opts: { hold?: boolean } = {}) {
  const queries: Query[] = [];
  const held: (() => void)[] = [];
  const handle: Handler = async (query) => {
    queries.push(query);
    const packet = parse(query.bytes);
    if (opts.hold) await new Promise<void>((resolve) => held.push(resolve));
    return { bytes: new Uint8Array(dnsPacket.encode(defaultAnswer(packet))), maxUdpSize: 65535 };
  };
  return {
    handle,
    queries,
    held,
    /** Releases held answers, last held first. */
    releaseInReverse: () => held.splice(0).reverse().forEach((release) => release()),
  };
}

async function withDot(
  handle: Handler,
  fn: (dot: TlsListener, clock: FakeClock) => Promise<void>,
): Promise<void> {
  const clock = new FakeClock();
  const dot = listenTls({
    url: "tls://127.0.0.1:0",
    hostname: "127.0.0.1",
    port: 0,
    handle,
    clock,
    limits: LIMITS,
    cert: CERT,
    key: KEY,
  });
  try {
    await fn(dot, clock);
  } finally {
    await dot.close();
  }
}

function connect(dot: TlsListener, serverName = "dns.test"): Promise<TcpDnsClient> {
  return TcpDnsClient.connect(dot.addr, { tls: { caCerts: [CA], serverName } });
}

Deno.test("pipelined queries on one DoT connection are all answered, in completion order", async () => {
  const h = fakeHandler({ hold: true });
  await withDot(h.handle, async (dot) => {
    const client = await connect(dot);
    try {
      const names = [0, 1, 2, 3, 4].map((i) => `p${i}.pipe.test`);
      await client.sendRaw(
        new Uint8Array(names.flatMap((n, i) => [...frame(buildQuery(n, "A", 100 + i))])),
      );
      await until(() => h.held.length === 5, "all five queries reached the handler");
      h.releaseInReverse();
      const replies = [];
      for (let i = 0; i < 5; i++) replies.push(parse((await client.read())!));
      assert.deepEqual(replies.map((r) => r.id), [104, 103, 102, 101, 100]);
      for (const r of replies) {
        assert.equal(r.answers?.[0].data, expectedAddress(names[r.id! - 100]));
      }
      assert.equal(h.queries[0].transport, "tls");
      assert.equal(h.queries[0].client.hostname, "127.0.0.1");
    } finally {
      client.close();
    }
  });
});

Deno.test("the DoT listener negotiates ALPN dot", async () => {
  await withDot(fakeHandler().handle, async (dot) => {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: dot.addr.port,
      caCerts: [CA],
      alpnProtocols: ["dot"],
    });
    try {
      assert.equal((await conn.handshake()).alpnProtocol, "dot");
    } finally {
      conn.close();
    }
  });
});

Deno.test("a client that connects but never starts the TLS handshake is closed at the read timeout", async () => {
  await withDot(fakeHandler().handle, async (dot, clock) => {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: dot.addr.port });
    try {
      await until(() => dot.stats.open === 1, "the connection was accepted");
      clock.advance(LIMITS.readTimeoutMs - 1);
      assert.equal(dot.stats.timedOut, 0);
      clock.advance(1);
      assert.equal(await tcp.read(new Uint8Array(16)), null);
      assert.equal(dot.stats.timedOut, 1);
      await until(() => dot.stats.open === 0, "the connection was released");
    } finally {
      tcp.close();
    }
  });
});

Deno.test("a TLS handshake that stalls halfway is cut off at the read timeout", async () => {
  await withDot(fakeHandler().handle, async (dot, clock) => {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: dot.addr.port });
    try {
      // A TLS record header announcing a 512-byte ClientHello, then nothing more.
      await tcp.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
      await until(() => dot.stats.open === 1, "the connection was accepted");
      clock.advance(LIMITS.readTimeoutMs);
      assert.equal(await tcp.read(new Uint8Array(16)).catch(() => null), null);
      assert.equal(dot.stats.timedOut, 1);
    } finally {
      tcp.close();
    }
  });
});

Deno.test("a client speaking plain DNS to the DoT port is disconnected without an answer", async () => {
  const h = fakeHandler();
  await withDot(h.handle, async (dot) => {
    const plain = await TcpDnsClient.connect(dot.addr);
    try {
      await plain.send(buildQuery("cleartext.test"));
      assert.equal(await plain.read().catch(() => null), null);
      await until(() => dot.stats.open === 0, "the connection was released");
      assert.equal(h.queries.length, 0);
    } finally {
      plain.close();
    }
  });
});

Deno.test("an idle DoT connection is closed with a TLS close_notify after the idle timeout", async () => {
  await withDot(fakeHandler().handle, async (dot, clock) => {
    const client = await connect(dot);
    try {
      await client.send(buildQuery("idle.test"));
      assert.equal(parse((await client.read())!).rcode, "NOERROR");
      clock.advance(LIMITS.idleTimeoutMs);
      // A clean end of stream: Deno's TLS client would throw on EOF without close_notify.
      assert.equal(await client.read(), null);
      await until(() => dot.stats.open === 0, "the connection was released");
    } finally {
      client.close();
    }
  });
});

Deno.test("a DoT client that half-closes still gets the answers it is owed", async () => {
  const h = fakeHandler({ hold: true });
  await withDot(h.handle, async (dot) => {
    const client = await connect(dot);
    try {
      await client.send(buildQuery("a.half.test", "A", 1));
      await client.send(buildQuery("b.half.test", "A", 2));
      await until(() => h.held.length === 2, "both queries reached the handler");
      await client.closeWrite();
      h.releaseInReverse();
      assert.equal(parse((await client.read())!).id, 2);
      assert.equal(parse((await client.read())!).id, 1);
      assert.equal(await client.read(), null);
    } finally {
      client.close();
    }
  });
});

Deno.test("after reloadCertificate new DoT connections get the new certificate, open ones carry on", async () => {
  await withDot(fakeHandler().handle, async (dot) => {
    const before = await connect(dot);
    let after: TcpDnsClient | null = null;
    try {
      dot.reloadCertificate(WRONG_NAME_CERT, WRONG_NAME_KEY);
      await assert.rejects(connect(dot, "dns.test"), "dns.test is no longer the served name");
      after = await connect(dot, "wrong.test");
      await after.send(buildQuery("after.reload.test"));
      assert.equal(parse((await after.read())!).rcode, "NOERROR");
      await before.send(buildQuery("before.reload.test"));
      assert.equal(parse((await before.read())!).rcode, "NOERROR");
    } finally {
      before.close();
      after?.close();
    }
  });
});

Deno.test("reloadCertificate with a key that does not match throws and keeps the old certificate", async () => {
  await withDot(fakeHandler().handle, async (dot) => {
    assert.throws(() => dot.reloadCertificate(CERT, WRONG_NAME_KEY), /does not belong/);
    assert.throws(() => dot.reloadCertificate("not a certificate", KEY), /not a PEM certificate/);
    const client = await connect(dot, "dns.test");
    client.close();
  });
});

Deno.test("checkCertificate accepts the fixture pair and rejects a key from another pair", () => {
  checkCertificate(CERT, KEY);
  assert.throws(() => checkCertificate(WRONG_NAME_CERT, KEY), /does not belong/);
  assert.throws(() => checkCertificate(CERT, "garbage"), /not a PEM private key/);
});

Deno.test("listenTls refuses an unusable certificate before binding", () => {
  assert.throws(
    () =>
      listenTls({
        url: "tls://127.0.0.1:0",
        hostname: "127.0.0.1",
        port: 0,
        handle: fakeHandler().handle,
        clock: new FakeClock(),
        limits: LIMITS,
        cert: CERT,
        key: WRONG_NAME_KEY,
      }),
    /does not belong/,
  );
});

Deno.test("the first answer on a new DoT connection is not held back by Nagle (TCP_NODELAY)", async () => {
  await withDot(fakeHandler().handle, async (dot) => {
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const client = await connect(dot);
      try {
        const started = performance.now();
        await client.send(buildQuery(`first${i}.nagle.test`));
        await client.read();
        latencies.push(performance.now() - started);
      } finally {
        client.close();
      }
    }
    latencies.sort((a, b) => a - b);
    // With Deno.listenTls this is ~40 ms (a delayed ACK); with no-delay, about a millisecond.
    assert.ok(latencies[2] < 20, `median first-answer latency ${latencies[2].toFixed(1)} ms`);
  });
});

Deno.test("through startServer, tls:// and https:// listeners answer with the upstream's records", async () => {
  const upstream = await startFakeDot();
  const certFile = new URL("../fixtures/server.pem", import.meta.url).pathname;
  const keyFile = new URL("../fixtures/server-key.pem", import.meta.url).pathname;
  const files = `cert_file = "${certFile}"\nkey_file = "${keyFile}"`;
  const config = await testConfig(
    [upstream],
    `[[listeners]]\nurl = "tls://127.0.0.1:8853"\n${files}\n\n` +
      `[[listeners]]\nurl = "https://127.0.0.1:8443/dns-query"\n${files}`,
  );
  const server = await startServer(config, { clock: new FakeClock(), random: cryptoRandom() });
  const http = Deno.createHttpClient({ caCerts: [CA], http2: true, http1: false });
  let dot: TcpDnsClient | null = null;
  try {
    const [dotAddr, dohAddr] = server.listeners.slice(2).map((l) => l.addr);
    dot = await TcpDnsClient.connect(dotAddr, { tls: { caCerts: [CA], serverName: "dns.test" } });
    await dot.send(buildQuery("dot.server.test", "A", 11));
    const viaDot = parse((await dot.read())!);
    assert.equal(viaDot.id, 11);
    assert.equal(viaDot.answers?.[0].data, expectedAddress("dot.server.test"));

    const q = buildQuery("doh.server.test", "AAAA", 0).toBase64({
      alphabet: "base64url",
      omitPadding: true,
    });
    const res = await fetch(`https://127.0.0.1:${dohAddr.port}/dns-query?dns=${q}`, {
      client: http,
    });
    assert.equal(res.status, 200);
    const viaDoh = parse(new Uint8Array(await res.arrayBuffer()));
    assert.equal(viaDoh.answers?.[0].data, expectedAddress("doh.server.test", "AAAA"));
  } finally {
    dot?.close();
    http.close();
    await server.stop();
    await upstream.close();
  }
});

await toolTest({
  name: "kdig +tls gets answers from the DoT listener, verifying its certificate",
  tools: ["kdig"],
  async fn({ kdig }) {
    await withDot(fakeHandler().handle, async (dot) => {
      const out = await runTool(kdig, [
        ...digArgs("kdig", dot.addr.port, CA_PATH),
        "+short",
        "kdig.example.test",
        "A",
      ]);
      assert.equal(out.trim(), expectedAddress("kdig.example.test"));
    });
  },
});

await toolTest({
  name: "dig +tls gets answers from the DoT listener, verifying its certificate",
  tools: ["dig"],
  async fn({ dig }) {
    await withDot(fakeHandler().handle, async (dot) => {
      const out = await runTool(dig, [
        ...digArgs("dig", dot.addr.port, CA_PATH),
        "+short",
        "dig.example.test",
        "AAAA",
      ]);
      assert.equal(out.trim(), expectedAddress("dig.example.test", "AAAA"));
    });
  },
});
