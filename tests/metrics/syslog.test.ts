import assert from "node:assert/strict";
import { openQueryLog } from "../../lib/metrics/log_sinks.ts";
import {
  DEFAULT_SYSLOG_HEADER,
  formatSyslog,
  frameOctetCounting,
  type SyslogHeader,
  SyslogTcpTransport,
  SyslogUdpTransport,
} from "../../lib/metrics/syslog.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { waitFor } from "../helpers/wait.ts";

const T0 = Date.UTC(2025, 0, 2, 3, 4, 5, 678);
const HEADER: SyslogHeader = { ...DEFAULT_SYSLOG_HEADER, hostname: "dns-1", procId: "4242" };

/** RFC 5424 §6 with NILVALUE structured data: <PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG. */
const RFC5424 =
  /^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) ([\x21-\x7e]{1,255}) ([\x21-\x7e]{1,48}) ([\x21-\x7e]{1,128}) ([\x21-\x7e]{1,32}) - (.*)$/s;

const decoder = new TextDecoder();

Deno.test("a syslog message follows RFC 5424 with PRI = facility * 8 + severity", () => {
  const msg = formatSyslog('{"name":"example.com."}', T0, HEADER);
  assert.equal(
    msg,
    '<30>1 2025-01-02T03:04:05.678Z dns-1 dotproxy 4242 query - {"name":"example.com."}',
  );
  const m = RFC5424.exec(msg);
  assert.ok(m);
  assert.equal(Number(m[1]), 3 * 8 + 6);
  const local7 = formatSyslog("x", T0, { ...HEADER, facility: 23, severity: 7 });
  assert.match(local7, /^<191>1 /);
});

Deno.test("header fields are made printable ASCII, cut to their limits, '-' when empty", () => {
  const msg = formatSyslog("m", T0, {
    ...HEADER,
    hostname: "",
    appName: "dot proxy\u00e9" + "x".repeat(60),
    procId: "1",
    msgId: "q",
  });
  const m = RFC5424.exec(msg);
  assert.ok(m, msg);
  assert.equal(m[3], "-");
  assert.equal(m[4], "dot_proxy_" + "x".repeat(38));
});

Deno.test("octet-counting framing prefixes the byte length, not the character count", () => {
  assert.equal(decoder.decode(frameOctetCounting("hello")), "5 hello");
  assert.equal(decoder.decode(frameOctetCounting("é")), "2 é");
});

Deno.test("the UDP syslog sink sends one RFC 5424 message per datagram to the collector", async () => {
  const collector = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const { port } = collector.addr as Deno.NetAddr;
  const t = new SyslogUdpTransport({ transport: "udp", hostname: "127.0.0.1", port }, HEADER);
  try {
    const sent = await t.send([
      { timeMs: T0, line: '{"n":1}' },
      { timeMs: T0 + 1, line: '{"n":2}' },
    ]);
    assert.equal(sent, 2);
    const got = [];
    for (let i = 0; i < 2; i++) {
      const [data] = await collector.receive();
      got.push(decoder.decode(data));
    }
    assert.deepEqual(got, [
      '<30>1 2025-01-02T03:04:05.678Z dns-1 dotproxy 4242 query - {"n":1}',
      '<30>1 2025-01-02T03:04:05.679Z dns-1 dotproxy 4242 query - {"n":2}',
    ]);
    for (const g of got) assert.match(g, RFC5424);
  } finally {
    await t.close();
    collector.close();
  }
});

/** Reads octet-counted frames from a TCP connection until `n` have arrived. */
async function readFrames(conn: Deno.Conn, n: number): Promise<string[]> {
  const frames: string[] = [];
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  while (frames.length < n) {
    const got = await conn.read(chunk);
    if (got === null) throw new Error(`connection closed after ${frames.length} frames`);
    const next = new Uint8Array(buf.length + got);
    next.set(buf);
    next.set(chunk.subarray(0, got), buf.length);
    buf = next;
    for (;;) {
      const sp = buf.indexOf(0x20);
      if (sp < 0) break;
      const len = Number(decoder.decode(buf.subarray(0, sp)));
      assert.ok(Number.isInteger(len) && len > 0, "frame starts with a decimal length");
      if (buf.length < sp + 1 + len) break;
      frames.push(decoder.decode(buf.subarray(sp + 1, sp + 1 + len)));
      buf = buf.subarray(sp + 1 + len);
    }
  }
  return frames;
}

Deno.test("the TCP syslog sink frames RFC 5424 messages with octet counting", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  const clock = new FakeClock();
  const t = new SyslogTcpTransport(
    { transport: "tcp", hostname: "127.0.0.1", port },
    HEADER,
    { clock },
  );
  try {
    const accepted = listener.accept();
    const sent = await t.send([
      { timeMs: T0, line: '{"name":"a."}' },
      { timeMs: T0, line: '{"name":"\u00e9."}' },
      { timeMs: T0, line: "third" },
    ]);
    assert.equal(sent, 3);
    const conn = await accepted;
    try {
      const frames = await readFrames(conn, 3);
      assert.equal(
        frames[0],
        '<30>1 2025-01-02T03:04:05.678Z dns-1 dotproxy 4242 query - {"name":"a."}',
      );
      assert.equal(frames[1].endsWith('{"name":"\u00e9."}'), true);
      for (const f of frames) assert.match(f, RFC5424);
    } finally {
      conn.close();
    }
  } finally {
    await t.close();
    listener.close();
  }
});

Deno.test("the TCP syslog sink reconnects after the collector drops it, once the delay passed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const clock = new FakeClock();
  const t = new SyslogTcpTransport(
    { transport: "tcp", hostname: "127.0.0.1", port: listener.addr.port },
    HEADER,
    { clock, reconnectDelayMs: 1000 },
  );
  try {
    const first = listener.accept();
    assert.equal(await t.send([{ timeMs: T0, line: "one" }]), 1);
    const c1 = await first;
    await readFrames(c1, 1);
    c1.close(); // the collector restarts
    // Yield to the event loop until the sink has read the collector's FIN (no fixed sleep).
    await waitFor(() => !t.connected, "the sink saw the collector close", 10_000);
    assert.equal(await t.send([{ timeMs: T0, line: "lost" }]), 0, "dropped during the delay");
    clock.advance(1000);
    const second = listener.accept();
    assert.equal(await t.send([{ timeMs: T0, line: "two" }]), 1);
    const c2 = await second;
    try {
      const [frame] = await readFrames(c2, 1);
      assert.match(frame, / - two$/);
    } finally {
      c2.close();
    }
  } finally {
    await t.close();
    listener.close();
  }
});

Deno.test("a TCP collector that refuses connections costs one try per delay, not one per batch", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = probe.addr;
  probe.close(); // nothing listens there now
  const clock = new FakeClock();
  const t = new SyslogTcpTransport({ transport: "tcp", hostname: "127.0.0.1", port }, HEADER, {
    clock,
    reconnectDelayMs: 1000,
  });
  let revived: Deno.Listener | null = null;
  try {
    assert.equal(await t.send([{ timeMs: T0, line: "a" }]), 0, "refused");
    revived = Deno.listen({ hostname: "127.0.0.1", port }); // the collector comes back
    clock.advance(999);
    assert.equal(await t.send([{ timeMs: T0, line: "b" }]), 0, "no new try within the delay");
    assert.equal(t.connected, false);
    clock.advance(1);
    const accepted = revived.accept();
    assert.equal(await t.send([{ timeMs: T0, line: "c" }]), 1, "tried again after the delay");
    const conn = await accepted;
    try {
      assert.match((await readFrames(conn, 1))[0], / - c$/);
    } finally {
      conn.close();
    }
  } finally {
    await t.close();
    revived?.close();
  }
});

Deno.test("a query log opened with a UDP syslog sink delivers each query to the collector", async () => {
  const collector = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const { port } = collector.addr as Deno.NetAddr;
  const clock = new FakeClock();
  const log = await openQueryLog({
    sink: { kind: "syslog", transport: "udp", hostname: "127.0.0.1", port },
    clock,
    wallClock: () => T0,
    syslog: { hostname: "dns-1", facility: 16 },
  });
  try {
    log.log({
      client: "192.0.2.7",
      protocol: "tcp",
      name: "example.org.",
      qtype: 28,
      rcode: 3,
      upstream: null,
      cacheHit: true,
      durationMs: 0.05,
    });
    await log.flush();
    const [data] = await collector.receive();
    const m = RFC5424.exec(decoder.decode(data));
    assert.ok(m);
    assert.equal(m[1], String(16 * 8 + 6));
    assert.equal(m[3], "dns-1");
    assert.equal(m[5], String(Deno.pid));
    assert.deepEqual(JSON.parse(m[7]), {
      time: "2025-01-02T03:04:05.678Z",
      client: "192.0.2.7",
      client_name: null,
      protocol: "tcp",
      name: "example.org.",
      type: "AAAA",
      rcode: "NXDOMAIN",
      upstream: null,
      route: null,
      cache_hit: true,
      duration_ms: 0.05,
    });
  } finally {
    await log.close();
    collector.close();
  }
});
