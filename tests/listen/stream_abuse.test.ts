/**
 * Stream listeners (TCP and DoT) under clients that never read their answers: the output each
 * connection may hold is bounded, a write the peer does not take is cut off at the read timeout,
 * dropped connections free their slot at once (so the caps hold when every connection is stuck)
 * and memory stays flat. Also: a handler that throws costs only its query. Driven directly with a
 * fake handler and a fake clock.
 */
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { withId } from "../../lib/dns/reply.ts";
import type { Handler, Listener } from "../../lib/listen/listener.ts";
import {
  DEFAULT_MAX_OUTPUT_BYTES,
  type StreamLimits,
  type StreamListener,
} from "../../lib/listen/stream.ts";
import { listenTcp } from "../../lib/listen/tcp.ts";
import { listenTls } from "../../lib/listen/tls.ts";
import { buildQuery, frame, parse, TcpDnsClient } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { defaultAnswer, readFixture } from "../helpers/fake_dot.ts";

const CA = await readFixture("ca.pem");
const CERT = await readFixture("server.pem");
const KEY = await readFixture("server-key.pem");

const LIMITS: StreamLimits = {
  idleTimeoutMs: 10_000,
  readTimeoutMs: 5_000,
  maxConnections: 1000,
  maxConnectionsPerClient: 32,
  maxPipelined: 100,
};

/** Limits under which only the write deadline can stop a non-reading client. */
const NO_OUTPUT_BOUND: StreamLimits = {
  ...LIMITS,
  maxOutputBytes: 256 * 1024 * 1024,
  maxQueuedAnswers: 1_000_000,
};

const MiB = 1024 * 1024;

/** A reply to `name` carrying `records` TXT records of 240 characters (~250 bytes each). */
function txtReply(name: string, records: number): Uint8Array {
  const q = parse(buildQuery(name, "TXT", 0));
  return new Uint8Array(dnsPacket.encode({
    ...defaultAnswer(q),
    answers: Array.from({ length: records }, (_, i) => ({
      name,
      type: "TXT" as const,
      class: "IN" as const,
      ttl: 300,
      data: [`r${String(i).padStart(3, "0")} ${"x".repeat(235)}`],
    })),
  }));
}

/** ~25 KB: the answer of the observed abuse. */
const BIG = txtReply("big.abuse.test", 100);
/** ~2.3 KB: 100 of them fit under the default output bound. */
const MEDIUM = txtReply("medium.abuse.test", 9);

/** Answers every query at once with a fresh copy of `reply` (as the pipeline's copies are). */
function replying(reply: Uint8Array) {
  const h = {
    calls: 0,
    handle: ((query) => {
      h.calls++;
      return { bytes: withId(reply, (query.bytes[0] << 8) | query.bytes[1]), maxUdpSize: 65535 };
    }) as Handler,
  };
  return h;
}

type Stream = Listener & { stats: StreamListener["stats"]; queuedOutputBytes: number };

function tcpListener(handle: Handler, limits: StreamLimits, clock: FakeClock): Stream {
  const l = listenTcp({
    url: "tcp://127.0.0.1:0",
    hostname: "127.0.0.1",
    port: 0,
    handle,
    clock,
    limits,
  });
  return l as StreamListener;
}

function dotListener(handle: Handler, limits: StreamLimits, clock: FakeClock): Stream {
  const url = "tls://127.0.0.1:0";
  return listenTls({
    url,
    hostname: "127.0.0.1",
    port: 0,
    handle,
    clock,
    limits,
    cert: CERT,
    key: KEY,
  });
}

function dotClient(l: Stream): Promise<TcpDnsClient> {
  return TcpDnsClient.connect(l.addr, { tls: { caCerts: [CA], serverName: "dns.test" } });
}

async function withListener(
  make: (clock: FakeClock) => Stream,
  fn: (l: Stream, clock: FakeClock) => Promise<void>,
): Promise<void> {
  const clock = new FakeClock();
  const l = make(clock);
  try {
    await fn(l, clock);
  } finally {
    await l.close();
  }
}

/** Yields to the event loop (no timers of any length) until `cond` holds, at most `turns` times. */
async function until(cond: () => boolean, what: string, turns = 5000): Promise<void> {
  for (let i = 0; i < turns && !cond(); i++) await new Promise((r) => setTimeout(r, 0));
  assert.ok(cond(), `timed out waiting until ${what}`);
}

/**
 * Waits until the listener makes no more progress (queries read, answer bytes queued: the same
 * over ten turns of the event loop): its writes then wait on peers that do not read.
 */
async function stuck(l: Stream, h: { calls: number }): Promise<void> {
  let last = "";
  for (let i = 0; i < 500; i++) {
    for (let j = 0; j < 10; j++) await new Promise((r) => setTimeout(r, 0));
    const now = `${h.calls} ${l.queuedOutputBytes}`;
    if (now === last && h.calls > 0) return;
    last = now;
  }
  assert.fail("the listener kept making progress");
}

/** `count` framed queries in one buffer, IDs 0, 1, 2... */
function burst(name: string, count: number): Uint8Array {
  const one = frame(buildQuery(name, "TXT", 0));
  const out = new Uint8Array(one.length * count);
  for (let i = 0; i < count; i++) {
    one[2] = (i >> 8) & 0xff;
    one[3] = i & 0xff;
    out.set(one, i * one.length);
  }
  return out;
}

/** Writes `data` and never reads; the server may reset the connection meanwhile. */
async function sendWithoutReading(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  try {
    for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
  } catch { /* dropped by the server */ }
}

function rss(): number {
  return Deno.memoryUsage().rss;
}

Deno.test("a TCP client that sends 2,000 queries for a 25 KB answer and never reads holds little memory and is dropped", async () => {
  const h = replying(BIG);
  await withListener((clock) => tcpListener(h.handle, LIMITS, clock), async (l, clock) => {
    const before = rss();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
    try {
      await sendWithoutReading(conn, burst("big.abuse.test", 2000));
      await stuck(l, h);
      const grown = (rss() - before) / MiB;
      // Unbounded, the 2,000 answers (50 MB) sit in the queue, and again in the batch written.
      assert.ok(grown < 24, `RSS grew by ${grown.toFixed(1)} MiB`);
      assert.ok(h.calls < 2000, `${h.calls} queries were read from a client that does not read`);
      assert.ok(l.queuedOutputBytes <= DEFAULT_MAX_OUTPUT_BYTES);
      clock.advance(LIMITS.readTimeoutMs);
      assert.equal(l.stats.writeTimedOut, 1);
      assert.equal(l.stats.open, 0);
      assert.equal(l.queuedOutputBytes, 0);
    } finally {
      conn.close();
    }
  });
});

Deno.test("answers that keep completing for a client that does not read drop it at the output bound", async () => {
  // 100 queries held by the handler, then answered ten at a time (~600 KB each time): once the
  // socket is full and a write waits, the next answers would take the queue over 256 KiB.
  const answer = txtReply("huge.abuse.test", 240);
  const held: (() => void)[] = [];
  const handle: Handler = async (query) => {
    await new Promise<void>((resolve) => held.push(resolve));
    return { bytes: withId(answer, (query.bytes[0] << 8) | query.bytes[1]), maxUdpSize: 65535 };
  };
  await withListener((clock) => tcpListener(handle, LIMITS, clock), async (l) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
    try {
      await sendWithoutReading(conn, burst("huge.abuse.test", 100));
      await until(() => held.length === 100, "all 100 queries reached the handler");
      for (let i = 0; i < 10 && l.stats.outputFull === 0; i++) {
        held.splice(0, 10).forEach((release) => release());
        await stuck(l, { calls: 1 });
      }
      assert.equal(l.stats.outputFull, 1);
      assert.equal(l.stats.open, 0, "dropped at once, without the clock moving");
      assert.equal(l.queuedOutputBytes, 0);
    } finally {
      held.splice(0).forEach((release) => release());
      conn.close();
    }
  });
});

Deno.test("a client that stops reading is dropped when a write has waited tcp_read_timeout", async () => {
  const h = replying(BIG);
  await withListener((clock) => tcpListener(h.handle, NO_OUTPUT_BOUND, clock), async (l, clock) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
    try {
      // Beyond what the kernel buffers (~4 MB on loopback), answers queue: a write is waiting.
      await sendWithoutReading(conn, burst("big.abuse.test", 600));
      await stuck(l, h);
      clock.advance(NO_OUTPUT_BOUND.readTimeoutMs - 1);
      assert.equal(l.stats.open, 1, "not before the deadline");
      clock.advance(1);
      assert.equal(l.stats.writeTimedOut, 1);
      assert.equal(l.stats.open, 0, "the slot is freed at once");
      assert.equal(l.queuedOutputBytes, 0, "the queue is dropped at once");
    } finally {
      conn.close();
    }
  });
});

Deno.test("a client that half-closes and never reads its answers is dropped at the write deadline, not flushed forever", async () => {
  const h = replying(BIG);
  // Reading never pauses here, so the server sees the end of input and starts a graceful close.
  const limits = { ...NO_OUTPUT_BOUND, maxPipelined: 1000 };
  await withListener((clock) => tcpListener(h.handle, limits, clock), async (l, clock) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
    try {
      await sendWithoutReading(conn, burst("big.abuse.test", 600));
      await conn.closeWrite();
      await until(() => h.calls >= 600, "all 600 queries read");
      // The EOF is read, and a write is left waiting on the full socket (15 MB of answers).
      for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
      clock.advance(limits.readTimeoutMs - 1);
      assert.equal(l.stats.open, 1, "still flushing before the deadline");
      clock.advance(1);
      assert.equal(l.stats.writeTimedOut, 1);
      assert.equal(l.stats.open, 0);
      assert.equal(l.queuedOutputBytes, 0);
    } finally {
      conn.close();
    }
  });
});

Deno.test("40 connections from one address stuck with unread output never hold more than 32 slots; a new one is served", async () => {
  const h = replying(MEDIUM);
  await withListener((clock) => tcpListener(h.handle, LIMITS, clock), async (l) => {
    const conns: Deno.Conn[] = [];
    let client: TcpDnsClient | null = null;
    try {
      // ~6 MB of answers each: more than the kernel takes, so each connection ends up stuck with
      // a write waiting and (reading paused at half the output bound) ~128 KiB queued behind it.
      const queries = burst("medium.abuse.test", 2400);
      for (let i = 0; i < 40; i++) {
        const queued = l.queuedOutputBytes;
        const evicted = l.stats.evictedStuck;
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
        conns.push(conn);
        await sendWithoutReading(conn, queries);
        await until(
          () =>
            l.queuedOutputBytes > queued + 64 * 1024 || l.stats.evictedStuck > evicted ||
            h.calls >= (i + 1) * 2400,
          `connection ${i} is stuck`,
        );
        assert.ok(l.stats.open <= 32, `${l.stats.open} connections open from one address`);
      }
      assert.equal(l.stats.open, 32);
      assert.equal(l.stats.evictedStuck, 8);
      assert.equal(l.stats.rejected, 0);
      client = await TcpDnsClient.connect(l.addr);
      await client.send(buildQuery("medium.abuse.test", "TXT", 7));
      assert.equal(parse((await client.read())!).id, 7);
      assert.ok(l.stats.open <= 32);
      assert.ok(l.queuedOutputBytes <= 32 * DEFAULT_MAX_OUTPUT_BYTES);
    } finally {
      client?.close();
      for (const c of conns) c.close();
    }
  });
});

Deno.test("DoT clients that send 2,000 queries for a 25 KB answer each and never read hold little memory and are dropped", async () => {
  const h = replying(BIG);
  await withListener((clock) => dotListener(h.handle, LIMITS, clock), async (l, clock) => {
    const before = rss();
    const clients: TcpDnsClient[] = [];
    try {
      for (let i = 0; i < 3; i++) clients.push(await dotClient(l));
      await Promise.all(
        clients.map((c) => sendWithoutReading(c.conn, burst("big.abuse.test", 2000))),
      );
      await stuck(l, h);
      const grown = (rss() - before) / MiB;
      // Unbounded, 150 MB of answers queue. Bounded, what remains is allocation churn: the ~4 MB
      // each socket's kernel buffers take, copied on the way (answer, frame, TLS records).
      assert.ok(grown < 40, `RSS grew by ${grown.toFixed(1)} MiB`);
      assert.ok(h.calls < 6000, `${h.calls} queries were read from clients that do not read`);
      assert.ok(l.queuedOutputBytes <= 3 * DEFAULT_MAX_OUTPUT_BYTES);
      clock.advance(LIMITS.readTimeoutMs);
      assert.equal(l.stats.writeTimedOut, 3);
      assert.equal(l.stats.open, 0);
    } finally {
      for (const c of clients) c.close();
    }
  });
});

Deno.test("a DoT client that stops reading is dropped when a write has waited tcp_read_timeout", async () => {
  const h = replying(BIG);
  await withListener((clock) => dotListener(h.handle, NO_OUTPUT_BOUND, clock), async (l, clock) => {
    const client = await dotClient(l);
    try {
      await sendWithoutReading(client.conn, burst("big.abuse.test", 600));
      await stuck(l, h);
      clock.advance(NO_OUTPUT_BOUND.readTimeoutMs);
      assert.equal(l.stats.writeTimedOut, 1);
      assert.equal(l.stats.open, 0);
    } finally {
      client.close();
    }
  });
});

for (
  const [transport, listen, connect] of [
    ["TCP", tcpListener, (l: Stream) => TcpDnsClient.connect(l.addr)],
    ["DoT", dotListener, dotClient],
  ] as const
) {
  Deno.test(`a ${transport} client that pipelines 100 queries for a 25 KB answer and reads gets all 100 (2.5 MB at once)`, async () => {
    const h = replying(BIG);
    await withListener((clock) => listen(h.handle, LIMITS, clock), async (l) => {
      const client = await connect(l);
      try {
        await client.sendRaw(burst("big.abuse.test", 100));
        const ids = new Set<number>();
        for (let i = 0; i < 100; i++) ids.add(parse((await client.read())!).id!);
        assert.equal(ids.size, 100);
        assert.equal(l.stats.outputFull, 0);
      } finally {
        client.close();
      }
    });
  });
}

Deno.test("a handler that throws or rejects costs only its query: SERVFAIL, and the connection carries on", async () => {
  let n = 0;
  const handle: Handler = (query) => {
    n++;
    if (n === 1) throw new Error("injected synchronous fault");
    if (n === 2) return Promise.reject(new Error("injected asynchronous fault"));
    return { bytes: withId(MEDIUM, (query.bytes[0] << 8) | query.bytes[1]), maxUdpSize: 65535 };
  };
  await withListener((clock) => tcpListener(handle, LIMITS, clock), async (l) => {
    const client = await TcpDnsClient.connect(l.addr);
    try {
      await client.send(buildQuery("first.fault.test", "A", 1, { udpSize: 1232 }));
      const first = parse((await client.read())!);
      assert.equal(first.id, 1);
      assert.equal(first.rcode, "SERVFAIL");
      assert.equal(first.questions?.[0].name, "first.fault.test");
      await client.send(buildQuery("second.fault.test", "A", 2));
      const second = parse((await client.read())!);
      assert.equal(second.id, 2);
      assert.equal(second.rcode, "SERVFAIL");
      await client.send(buildQuery("medium.abuse.test", "TXT", 3));
      const third = parse((await client.read())!);
      assert.equal(third.id, 3);
      assert.equal(third.rcode, "NOERROR");
      assert.equal(l.stats.handlerErrors, 2);
    } finally {
      client.close();
    }
  });
});
