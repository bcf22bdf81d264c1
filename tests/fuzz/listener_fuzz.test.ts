/**
 * Fuzzing the running proxy through its sockets: 100,000 garbage and mutated datagrams over UDP
 * from several sockets, and garbage over TCP (random frames, zero-length frames, length prefixes
 * promising more than follows, unframed noise, long streams of framed garbage). Afterwards the
 * proxy must still answer valid queries over UDP and TCP, must have answered FORMERR (with the
 * query's ID) to readable QR=0 datagrams that do not decode, and must never have answered a
 * datagram with QR=1.
 *
 * UDP is paced: each sender sends a bounded batch, then a sentinel (an IQUERY, answered NOTIMP
 * locally) and waits for its answer before the next batch, so the proxy's socket buffer is never
 * what is being tested. The seed is fixed (override with FUZZ_SEED=0x...); a failure names it.
 */
import assert from "node:assert/strict";
import { decodeHeader, decodeMessage, decodeQuery, Flag, Rcode } from "../../lib/dns/message.ts";
import { fitUdp } from "../../lib/listen/udp.ts";
import {
  type Addr,
  buildQuery,
  frame,
  parse,
  TcpDnsClient,
  udpQuery,
} from "../helpers/dns_client.ts";
import { expectedAddress, startFakeDot } from "../helpers/fake_dot.ts";
import { fuzzFailure, fuzzInput, fuzzSeed, randomBytes, toHex } from "../helpers/fuzz.ts";
import { Rng } from "../helpers/rng.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";

/** These tests count error answers to garbage, so the per-client budget for them is lifted. */
const ANSWER_EVERY_ERROR = "[rate_limit]\nerrors_qps = 0\n";

const SEED = fuzzSeed(0x1157e2);
const UDP_DATAGRAMS = 100_000;
const SENDERS = 4;
/** Datagrams per sender between sentinels: 4 × 32 in flight stays far below the socket buffer. */
const BATCH = 32;
/** Real-time guard on one sentinel round trip; the proxy answers it locally in well under 1 ms. */
const SENTINEL_RESEND_MS = 500;
const SENTINEL_ATTEMPTS = 10;

const SENTINEL_NAME = Uint8Array.of(
  8,
  ...new TextEncoder().encode("sentinel"),
  4,
  102,
  117,
  122,
  122,
  0,
);

/** An IQUERY for sentinel.fuzz.: the proxy answers NOTIMP without going upstream. */
function sentinel(id: number): Uint8Array {
  const out = new Uint8Array(12 + SENTINEL_NAME.length + 4);
  out[0] = id >> 8;
  out[1] = id & 0xff;
  out[2] = (1 << 3) | 1; // opcode IQUERY, RD
  out[5] = 1; // qdcount
  out.set(SENTINEL_NAME, 12);
  out[12 + SENTINEL_NAME.length + 1] = 1; // qtype A
  out[12 + SENTINEL_NAME.length + 3] = 1; // class IN
  return out;
}

function isSentinelReply(reply: Uint8Array, id: number): boolean {
  const d = decodeMessage(reply);
  if (!d.ok || d.value.header.id !== id || !(d.value.header.flags & Flag.QR)) return false;
  const q = d.value.question;
  return d.value.rcode === Rcode.NOTIMP && q !== null &&
    toHex(q.name) === toHex(SENTINEL_NAME);
}

/** One client socket: sends, reads everything that comes back, checks every reply. */
class UdpSender {
  readonly #sock: Deno.DatagramConn;
  readonly #reader: Promise<void>;
  #nextId: number;
  #waiting: { id: number; resolve: () => void } | null = null;
  /** Datagrams received that were not the awaited sentinel's answer. */
  others = 0;
  /** Replies that break an invariant, as messages with the reply in hex. */
  readonly violations: string[] = [];

  constructor(readonly target: Addr, private readonly maxReply: number, firstId: number) {
    this.#sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    this.#nextId = firstId;
    this.#reader = this.#read();
  }

  async #read(): Promise<void> {
    for (;;) {
      let data: Uint8Array;
      try {
        [data] = await this.#sock.receive();
      } catch {
        return; // closed
      }
      const w = this.#waiting;
      if (w && isSentinelReply(data, w.id)) {
        this.#waiting = null;
        w.resolve();
        continue;
      }
      this.others++;
      const h = decodeHeader(data);
      if (!h.ok || !(h.value.flags & Flag.QR) || data.length > this.maxReply) {
        this.violations.push(
          `reply of ${data.length} bytes without QR or too large: ${toHex(data)}`,
        );
      }
    }
  }

  async send(bytes: Uint8Array): Promise<void> {
    await this.#sock.send(bytes, { transport: "udp", ...this.target });
  }

  /** Sends a sentinel and waits for its answer: everything sent before it has been read. */
  async barrier(): Promise<void> {
    for (let attempt = 0; attempt < SENTINEL_ATTEMPTS; attempt++) {
      const id = this.#nextId = (this.#nextId + 1) & 0xffff;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const answered = await new Promise<boolean>((resolve) => {
        this.#waiting = { id, resolve: () => resolve(true) };
        timer = setTimeout(() => resolve(false), SENTINEL_RESEND_MS);
        this.send(sentinel(id)).catch(() => resolve(false));
      });
      clearTimeout(timer);
      this.#waiting = null;
      if (answered) return;
    }
    throw new Error(`no answer to ${SENTINEL_ATTEMPTS} sentinels: the UDP listener is not serving`);
  }

  async close(): Promise<void> {
    this.#sock.close();
    await this.#reader;
  }
}

/** Rejections nobody handled (a listener's fire-and-forget serve() throwing, say), collected. */
function catchUnhandled(): { errors: unknown[]; stop(): void } {
  const errors: unknown[] = [];
  const onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    errors.push(e.reason);
  };
  addEventListener("unhandledrejection", onRejection);
  return { errors, stop: () => removeEventListener("unhandledrejection", onRejection) };
}

/**
 * Finds which of `inputs` makes the proxy throw by replaying each through the pipeline and the
 * UDP size rule directly; returns a failure naming it (or the batch when none reproduces alone).
 */
async function pinpoint(p: TestProxy, inputs: Uint8Array[], seed: number, reason: unknown) {
  const client = { hostname: "127.0.0.1", port: 9 };
  for (const [i, bytes] of inputs.entries()) {
    try {
      // Inputs that went upstream stay pending (the fake clock is frozen): not the culprit.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const answer = await Promise.race([
        p.server.pipeline.handle({ bytes, client, transport: "udp" }),
        new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 50)),
      ]);
      clearTimeout(timer);
      if (answer) fitUdp(answer);
    } catch (err) {
      return fuzzFailure(seed, i, bytes, err);
    }
  }
  return new Error(
    `unhandled rejection while serving fuzz inputs (seed 0x${seed.toString(16)}): ${reason}\n` +
      `batch:\n${inputs.map(toHex).join("\n")}`,
  );
}

async function floodUdp(p: TestProxy, maxReply: number): Promise<{ others: number }> {
  const unhandled = catchUnhandled();
  const senders = Array.from({ length: SENDERS }, (_, k) => new UdpSender(p.udp, maxReply, k));
  try {
    const perSender = UDP_DATAGRAMS / SENDERS;
    await Promise.all(senders.map(async (s, k) => {
      const seed = SEED + k;
      const rng = new Rng(seed);
      for (let sent = 0; sent < perSender;) {
        const batch: Uint8Array[] = [];
        for (let i = 0; i < BATCH && sent < perSender; i++, sent++) batch.push(fuzzInput(rng));
        for (const bytes of batch) await s.send(bytes);
        await s.barrier();
        if (unhandled.errors.length > 0) throw await pinpoint(p, batch, seed, unhandled.errors[0]);
      }
    }));
    for (const s of senders) assert.deepEqual(s.violations.slice(0, 3), []);
    return { others: senders.reduce((n, s) => n + s.others, 0) };
  } finally {
    await Promise.all(senders.map((s) => s.close()));
    unhandled.stop();
  }
}

/** True for a message the pipeline would forward (and so might wait on upstream for). */
function goesUpstream(b: Uint8Array): boolean {
  const d = decodeQuery(b);
  if (!d.ok) return false;
  const m = d.value;
  return !(m.header.flags & Flag.QR) && ((m.header.flags >> 11) & 0xf) === 0 &&
    m.question !== null && (m.edns === null || m.edns.version === 0);
}

/**
 * TCP abuse, one connection per case; the proxy must shrug each off. Between rounds the fake
 * clock is moved on so that queries stuck upstream (a mangled name the fake server re-encodes
 * differently, say) time out and their connections go away, keeping within the per-client cap.
 */
async function abuseTcp(p: TestProxy, rng: Rng): Promise<void> {
  const unhandled = catchUnhandled();
  const withConn = async (fn: (c: TcpDnsClient) => Promise<void>) => {
    const c = await TcpDnsClient.connect(p.tcp);
    try {
      await fn(c);
    } catch (err) {
      // Writing to a connection the proxy has given up on may fail; that is its right.
      if (!(err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BrokenPipe)) {
        throw err;
      }
    } finally {
      c.close();
    }
  };
  /** Reads until the sentinel's NOTIMP arrives, checking every reply on the way. */
  const awaitSentinel = async (c: TcpDnsClient, id: number) => {
    for (;;) {
      const reply = await c.read();
      assert.ok(reply, "connection closed before the sentinel was answered");
      if (isSentinelReply(reply, id)) return;
      const h = decodeHeader(reply);
      assert.ok(h.ok && h.value.flags & Flag.QR, `TCP reply without QR: ${toHex(reply)}`);
    }
  };
  /** Framed fuzz inputs of at least a header, at most `upstream` of them forwardable. */
  const framedGarbage = (n: number, upstream: number) => {
    const frames: Uint8Array[] = [];
    let forwarded = 0;
    while (frames.length < n) {
      const b = fuzzInput(rng);
      if (b.length < 12) continue; // those close the connection: a case of their own
      if (goesUpstream(b) && ++forwarded > upstream) continue;
      frames.push(frame(b));
    }
    return frames;
  };
  try {
    for (let round = 0; round < 6; round++) {
      // Random frames, then a hang-up without reading.
      await withConn(async (c) => {
        for (let i = 0; i < 200; i++) await c.sendRaw(frame(randomBytes(rng)));
      });
      // A message shorter than a header: no ID to answer, so the connection is closed.
      await withConn(async (c) => {
        await c.sendRaw(new Uint8Array(2 * 500));
        await c.send(sentinel(0x5a00 + round));
        assert.equal(await c.read(), null, "zero-length frames close the connection");
      });
      // A length prefix promising more than follows, then close.
      await withConn(async (c) => {
        const promised = rng.range(13, 65535);
        await c.sendRaw(Uint8Array.of(promised >> 8, promised & 0xff, ...rng.bytes(rng.int(12))));
      });
      await withConn(async (c) => {
        await c.sendRaw(Uint8Array.of(0xff, 0xff, ...rng.bytes(rng.range(1000, 30000))));
      });
      // Unframed noise.
      await withConn(async (c) => {
        await c.sendRaw(rng.bytes(rng.range(1, 70000)));
      });
      // A long stream of framed garbage in frame-aligned writes, then the sentinel, answered.
      await withConn(async (c) => {
        const frames = framedGarbage(2000, 40);
        for (let i = 0; i < frames.length; i += 50) {
          await c.sendRaw(concat(frames.slice(i, i + 50)));
        }
        await c.send(sentinel(0x6b00 + round));
        await awaitSentinel(c, 0x6b00 + round);
      });
      // Framed garbage, half-closed: pending answers may still come, then the proxy closes. A
      // query whose mangled name the fake upstream echoes back differently is never matched and
      // waits for its deadline, so the fake clock is moved on while the answers are drained.
      await withConn(async (c) => {
        await c.sendRaw(concat(framedGarbage(50, 10)));
        await c.closeWrite();
        let closed = false;
        const drained = (async () => {
          try {
            while (await c.read() !== null) { /* drain */ }
          } finally {
            closed = true;
          }
        })();
        // A read error also ends the drain (closed), and `await drained` then reports it.
        await settle(p, () => closed).catch((err) => {
          drained.catch(() => {}); // still reading: withConn closes the connection under it
          throw err;
        });
        await drained;
      });
      await settle(p, idle);
    }
    if (unhandled.errors.length > 0) {
      throw new Error(`unhandled rejection during TCP fuzzing: ${unhandled.errors[0]}`, {
        cause: unhandled.errors[0],
      });
    }
  } finally {
    unhandled.stop();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
  let at = 0;
  for (const x of parts) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}

/** No query in flight: everything accepted has been answered (or dropped) by now. */
const idle = (p: TestProxy) => p.server.pipeline.inFlight === 0;
/** Idle, and every upstream healthy again (its background probe succeeded). */
const recovered = (p: TestProxy) =>
  idle(p) && p.server.upstreams.every((u) => u.health.available());

/**
 * Lets the proxy come to rest: moves the fake clock in half-second steps (past query deadlines,
 * backoffs and probe times) and gives socket events some event-loop turns after each step, so
 * real I/O such as a probe's TLS dial completes before its fake-clock deadline comes round.
 */
async function settle(p: TestProxy, rested: (p: TestProxy) => boolean): Promise<void> {
  for (let step = 0; step < 400 && !rested(p); step++) {
    p.clock.advance(500);
    for (let turn = 0; turn < 20 && !rested(p); turn++) {
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
  const u = p.server.upstreams.map((u) => `${u.name}: ${u.health.failures} failures`);
  assert.ok(rested(p), `not at rest: ${p.server.pipeline.inFlight} in flight; ${u.join(", ")}`);
}

/** Up to `n` fuzz inputs satisfying `want`, from a fresh generator. */
function sample(seed: number, n: number, want: (b: Uint8Array) => boolean): Uint8Array[] {
  const rng = new Rng(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < 1_000_000 && out.length < n; i++) {
    const b = fuzzInput(rng);
    if (want(b)) out.push(b);
  }
  return out;
}

Deno.test({
  name:
    `the proxy survives ${UDP_DATAGRAMS} garbage UDP datagrams and TCP abuse, then still answers`,
  async fn() {
    const upstream = await startFakeDot();
    const p = await startProxy([upstream], { extraToml: ANSWER_EVERY_ERROR });
    try {
      const maxReply = p.config.server.udpMaxSize;
      const { others } = await floodUdp(p, maxReply);
      assert.ok(others > UDP_DATAGRAMS / 20, `only ${others} replies to the flood`);

      await abuseTcp(p, new Rng(SEED ^ 0x7c9));

      // Let every query still waiting upstream reach its deadline, and backoffs run out.
      await settle(p, recovered);

      const udpReply = await udpQuery(p.udp, buildQuery("after-fuzz.example", "A", 0x4242));
      assert.equal(parse(udpReply).id, 0x4242);
      assert.equal(parse(udpReply).rcode, "NOERROR");
      assert.equal(
        (parse(udpReply).answers?.[0] as { data?: string })?.data,
        expectedAddress("after-fuzz.example"),
      );
      const tcp = await TcpDnsClient.connect(p.tcp);
      try {
        await tcp.send(buildQuery("after-fuzz-tcp.example", "AAAA", 0x4343));
        const tcpReply = await tcp.read();
        assert.ok(tcpReply);
        assert.equal(parse(tcpReply).id, 0x4343);
        assert.equal(
          (parse(tcpReply).answers?.[0] as { data?: string })?.data,
          expectedAddress("after-fuzz-tcp.example", "AAAA"),
        );
      } finally {
        tcp.close();
      }
    } finally {
      const stopped = p.stop();
      p.clock.advance(p.config.server.shutdownGraceMs);
      await stopped;
      await upstream.close();
    }
  },
});

Deno.test("readable QR=0 datagrams that do not decode get FORMERR with their ID", async () => {
  const upstream = await startFakeDot();
  const p = await startProxy([upstream], { extraToml: ANSWER_EVERY_ERROR });
  try {
    const bad = sample(SEED ^ 0xf0, 12, (b) => {
      const h = decodeHeader(b);
      return h.ok && !(h.value.flags & Flag.QR) && !decodeQuery(b).ok;
    });
    assert.equal(bad.length, 12);
    for (const [i, bytes] of bad.entries()) {
      try {
        const reply = await udpQuery(p.udp, bytes);
        const h = decodeHeader(reply);
        assert.ok(h.ok);
        assert.equal(h.value.id, (bytes[0] << 8) | bytes[1], "the query's ID");
        assert.ok(h.value.flags & Flag.QR, "QR set");
        assert.equal(h.value.flags & 0xf, Rcode.FORMERR);
        assert.equal((h.value.flags >> 11) & 0xf, (bytes[2] >> 3) & 0xf, "the query's opcode");
      } catch (err) {
        throw fuzzFailure(SEED ^ 0xf0, i, bytes, err);
      }
    }
    assert.equal(upstream.queries.length, 0, "nothing malformed went upstream");
  } finally {
    await p.stop();
    await upstream.close();
  }
});

Deno.test("datagrams with QR=1, decodable or not, get no answer at all", async () => {
  const upstream = await startFakeDot();
  const p = await startProxy([upstream], { extraToml: ANSWER_EVERY_ERROR });
  const s = new UdpSender(p.udp, p.config.server.udpMaxSize, 0x100);
  try {
    const responses = sample(SEED ^ 0xa1, 500, (b) => {
      const h = decodeHeader(b);
      return h.ok && (h.value.flags & Flag.QR) !== 0;
    });
    assert.ok(responses.some((b) => decodeMessage(b).ok), "some decodable responses");
    assert.ok(responses.some((b) => !decodeMessage(b).ok), "some undecodable responses");
    for (let i = 0; i < responses.length; i += BATCH) {
      for (const b of responses.slice(i, i + BATCH)) await s.send(b);
      await s.barrier();
    }
    await s.barrier(); // a second round trip: anything answered late would have arrived
    assert.equal(s.others, 0, "a response sent to the proxy was answered");
    assert.equal(upstream.queries.length, 0, "no response was forwarded");
  } finally {
    await s.close();
    await p.stop();
    await upstream.close();
  }
});
