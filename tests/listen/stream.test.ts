/** The stream (TCP) listener's defences, driven through a real proxy and a fake clock. */
import assert from "node:assert/strict";
import { buildQuery, frame, parse, TcpDnsClient } from "../helpers/dns_client.ts";
import { type FakeDot, startFakeDot } from "../helpers/fake_dot.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";

async function withProxy(
  upstream: FakeDot,
  limits: string,
  fn: (p: TestProxy) => Promise<void>,
): Promise<void> {
  const proxy = await startProxy([upstream], { extraToml: `[limits]\n${limits}` });
  try {
    await fn(proxy);
  } finally {
    await proxy.stop();
    await upstream.close();
  }
}

async function answered(client: TcpDnsClient, name: string): Promise<boolean> {
  await client.send(buildQuery(name));
  const reply = await client.read();
  return reply !== null && parse(reply).rcode === "NOERROR";
}

Deno.test("a client that sends half a message and stalls is cut off at tcp_read_timeout", async () => {
  await withProxy(await startFakeDot(), `tcp_read_timeout = "3s"`, async (p) => {
    const client = await TcpDnsClient.connect(p.tcp);
    try {
      assert.ok(await answered(client, "before.slow.test"));
      await client.sendRaw(frame(buildQuery("slow.test")).subarray(0, 9));
      const closed = client.read().catch(() => null);
      // Let the partial bytes reach the server before time moves.
      await answeredElsewhere(p);
      p.clock.advance(3000);
      assert.equal(await closed, null);
    } finally {
      client.close();
    }
  });
});

Deno.test("a message shorter than a DNS header closes the connection", async () => {
  await withProxy(await startFakeDot(), "", async (p) => {
    const client = await TcpDnsClient.connect(p.tcp);
    try {
      await client.sendRaw(new Uint8Array([0, 0])); // a zero-length message
      assert.equal(await client.read(), null);
    } finally {
      client.close();
    }
  });
});

Deno.test("at the per-client cap the longest-idle connection makes room for a new one", async () => {
  await withProxy(await startFakeDot(), "tcp_max_connections_per_client = 2", async (p) => {
    const first = await TcpDnsClient.connect(p.tcp);
    const second = await TcpDnsClient.connect(p.tcp);
    let third: TcpDnsClient | null = null;
    try {
      assert.ok(await answered(first, "first.cap.test"));
      p.clock.advance(10);
      assert.ok(await answered(second, "second.cap.test"));
      third = await TcpDnsClient.connect(p.tcp);
      assert.ok(await answered(third, "third.cap.test"));
      assert.equal(await first.read(), null, "the longest-idle connection was closed");
      assert.ok(await answered(second, "second-again.cap.test"));
    } finally {
      first.close();
      second.close();
      third?.close();
    }
  });
});

Deno.test("when every connection is busy a new one over the cap is refused", async () => {
  const upstream = await startFakeDot({ behaviour: "silent" });
  await withProxy(upstream, "tcp_max_connections = 1", async (p) => {
    const busy = await TcpDnsClient.connect(p.tcp);
    let extra: TcpDnsClient | null = null;
    try {
      await busy.send(buildQuery("busy.cap.test"));
      await upstream.waitForQueries(1);
      extra = await TcpDnsClient.connect(p.tcp);
      assert.equal(await extra.read().catch(() => null), null);
      p.clock.advance(p.config.forwarding.attemptTimeoutMs);
      assert.equal(parse((await busy.read())!).rcode, "SERVFAIL");
    } finally {
      busy.close();
      extra?.close();
    }
  });
});

Deno.test("reading pauses while a connection has tcp_max_pipelined queries in flight", async () => {
  const upstream = await startFakeDot({ behaviour: "silent" });
  await withProxy(upstream, "tcp_max_pipelined = 2", async (p) => {
    const client = await TcpDnsClient.connect(p.tcp);
    try {
      const burst = [0, 1, 2, 3, 4].map((i) => frame(buildQuery(`p${i}.pipe.test`, "A", i)));
      await client.sendRaw(new Uint8Array(burst.flatMap((b) => [...b])));
      await upstream.waitForQueries(2);
      await answeredElsewhere(p, false); // the other three frames have reached the server by now
      assert.equal(p.server.pipeline.inFlight, 2);
    } finally {
      client.close();
      // Let the held queries time out so the proxy can stop.
      for (let i = 0; i < 20 && p.server.pipeline.inFlight > 0; i++) {
        p.clock.advance(p.config.server.queryTimeoutMs);
        await new Promise((r) => setTimeout(r, 0));
      }
    }
  });
});

/**
 * A full round trip on another connection: by then bytes sent earlier on the first one have been
 * read by the server too. With a silent upstream, a malformed query (FORMERR, never forwarded).
 */
async function answeredElsewhere(p: TestProxy, upstreamAnswers = true): Promise<void> {
  const other = await TcpDnsClient.connect(p.tcp);
  try {
    if (upstreamAnswers) assert.ok(await answered(other, "elsewhere.test"));
    else {
      await other.send(buildQuery("formerr.test").subarray(0, 14));
      assert.equal(parse((await other.read())!).rcode, "FORMERR");
    }
  } finally {
    other.close();
  }
}
