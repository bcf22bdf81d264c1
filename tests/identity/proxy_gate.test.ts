import assert from "node:assert/strict";
import {
  type ByteReader,
  type ClientAddress,
  PrefixedConn,
  ProxyGate,
  type StreamOutcome,
} from "../../lib/identity/proxy_gate.ts";
import { DEFAULT_MAX_PROXY_HEADER_BYTES } from "../../lib/identity/proxy_protocol.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { readExactly, trustingGate } from "../helpers/proxy_gate.ts";
import { concatBytes, encodeProxyV1, encodeProxyV2 } from "../helpers/proxy_header.ts";

const text = (s: string) => new TextEncoder().encode(s);
const LB: ClientAddress = { hostname: "10.1.2.3", port: 40000 };
const STRANGER: ClientAddress = { hostname: "203.0.113.9", port: 5353 };
const CLIENT = { address: "192.0.2.10", port: 51234 };
const QUERY = Uint8Array.of(0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1);
const TCP_QUERY = concatBytes(Uint8Array.of(0, QUERY.length), QUERY);

function gate(opts: { allowDirect?: boolean } = {}): ProxyGate {
  return trustingGate(["10.0.0.0/8", "2001:db8:1b::/48"], opts);
}

function v2(transport: "stream" | "dgram", command: "proxy" | "local" = "proxy"): Uint8Array {
  return encodeProxyV2({
    command,
    transport,
    addresses: { family: "inet", source: CLIENT, destination: { address: "10.9.9.9", port: 53 } },
  });
}

/** A stream that hands out scripted chunks, then ends, fails or hangs; it counts bytes read. */
class ScriptedReader implements ByteReader {
  delivered = 0;
  reads = 0;
  #chunks: Uint8Array[];
  constructor(chunks: Uint8Array[], readonly end: "eof" | "hang" | "error" = "eof") {
    this.#chunks = chunks.map((c) => c.slice());
  }
  read(p: Uint8Array): Promise<number | null> {
    this.reads++;
    const chunk = this.#chunks[0];
    if (!chunk) {
      if (this.end === "hang") return new Promise(() => {});
      if (this.end === "error") return Promise.reject(new Error("connection reset"));
      return Promise.resolve(null);
    }
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    this.delivered += n;
    return Promise.resolve(n);
  }
}

/** The bytes of a Uint8Array one by one, as a peer writing a byte per segment sends them. */
function bytewise(b: Uint8Array): Uint8Array[] {
  return Array.from(b, (x) => Uint8Array.of(x));
}

function read(g: ProxyGate, r: ByteReader, peer: ClientAddress, clock = new FakeClock()) {
  return g.readStream(r, peer, { clock, timeoutMs: 5000 });
}

function rejected(o: StreamOutcome | ReturnType<ProxyGate["datagram"]>): string {
  assert.equal(o.ok, false, `expected a refusal, got ${JSON.stringify(o)}`);
  return (o as { reason: string }).reason;
}

Deno.test("datagram from a trusted proxy: the header's client, and the DNS message after it", () => {
  const o = gate().datagram(LB, concatBytes(v2("dgram"), QUERY));
  assert.ok(o.ok);
  assert.deepEqual(o.client, { hostname: CLIENT.address, port: CLIENT.port });
  assert.deepEqual(o.payload, QUERY);
  assert.equal(o.header?.transport, "dgram");
});

Deno.test("datagram from a trusted proxy with LOCAL is the proxy's own (health check)", () => {
  const o = gate().datagram(LB, concatBytes(v2("dgram", "local"), QUERY));
  assert.ok(o.ok);
  assert.deepEqual(o.client, LB);
  assert.deepEqual(o.payload, QUERY);
});

Deno.test("datagram from a trusted proxy without a header, or a bad one, is dropped with a reason", () => {
  const g = gate();
  assert.equal(rejected(g.datagram(LB, QUERY)), "missing_header");
  const v1 = g.datagram(LB, concatBytes(encodeProxyV1({ ...header(), version: 1 }), QUERY));
  assert.equal(rejected(v1), "malformed_header");
  assert.equal((v1 as { detail?: string }).detail, "v1_not_allowed");
  const cut = g.datagram(LB, v2("dgram").subarray(0, 20));
  assert.equal((cut as { detail?: string }).detail, "truncated");
  const bad = v2("dgram");
  bad[12] = 0x31;
  assert.equal((g.datagram(LB, bad) as { detail?: string }).detail, "bad_version");
});

function header() {
  return {
    command: "proxy" as const,
    transport: "stream" as const,
    addresses: {
      family: "inet" as const,
      source: CLIENT,
      destination: { address: "10.9.9.9", port: 53 },
    },
  };
}

Deno.test("datagram from an untrusted peer: DNS passes, a header is refused, never parsed", () => {
  const g = gate();
  const direct = g.datagram(STRANGER, QUERY);
  assert.ok(direct.ok);
  assert.deepEqual(direct.client, STRANGER);
  assert.equal(direct.payload, QUERY);
  assert.equal(rejected(g.datagram(STRANGER, concatBytes(v2("dgram"), QUERY))), "untrusted_header");
  assert.equal(
    rejected(g.datagram(STRANGER, text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))),
    "untrusted_header",
  );
  // A fragment of a signature is no header: it goes on as (malformed) DNS.
  assert.ok(g.datagram(STRANGER, text("PROX")).ok);
});

Deno.test("with allowDirect off, only trusted proxies are served", () => {
  const g = gate({ allowDirect: false });
  assert.equal(rejected(g.datagram(STRANGER, QUERY)), "direct_refused");
  assert.ok(g.datagram(LB, concatBytes(v2("dgram"), QUERY)).ok);
});

Deno.test("trusted proxies match IPv4-mapped and IPv6 peers; garbage peers are untrusted", () => {
  const g = gate();
  assert.ok(g.isTrusted("::ffff:10.0.0.1"));
  assert.ok(g.isTrusted("2001:db8:1b::53"));
  assert.ok(!g.isTrusted("2001:db8:1c::53"));
  assert.ok(!g.isTrusted("not an address"));
});

Deno.test("stream from a trusted proxy: header byte by byte, DNS bytes after it are kept", async () => {
  const g = gate();
  for (const head of [v2("stream"), encodeProxyV1({ ...header(), version: 1 })]) {
    const reader = new ScriptedReader([...bytewise(head), TCP_QUERY]);
    const o = await read(g, reader, LB);
    assert.ok(o.ok, JSON.stringify(o));
    assert.deepEqual(o.client, { hostname: CLIENT.address, port: CLIENT.port });
    assert.deepEqual(o.rest, new Uint8Array(0));
    // In one segment with the query: the query bytes come back as `rest`.
    const one = await read(g, new ScriptedReader([concatBytes(head, TCP_QUERY)]), LB);
    assert.ok(one.ok);
    assert.deepEqual(one.rest, TCP_QUERY);
  }
});

Deno.test("stream from a trusted proxy without a header, cut short, or silent is refused", async () => {
  const g = gate();
  assert.equal(rejected(await read(g, new ScriptedReader([TCP_QUERY]), LB)), "missing_header");
  const half = v2("stream").subarray(0, 20);
  assert.equal(rejected(await read(g, new ScriptedReader([half]), LB)), "closed");
  assert.equal(rejected(await read(g, new ScriptedReader([half], "error"), LB)), "closed");

  const clock = new FakeClock();
  const pending = read(g, new ScriptedReader([half], "hang"), LB, clock);
  clock.advance(4999);
  let settled = false;
  pending.then(() => (settled = true));
  await Promise.resolve();
  assert.equal(settled, false, "still waiting before the deadline");
  clock.advance(1);
  assert.equal(rejected(await pending), "header_timeout");
  assert.equal(clock.pending, 0, "no timer left behind");
});

Deno.test("stream: a peer that never ends its header is cut off at the bound", async () => {
  const g = gate();
  // v1 without CRLF: refused once 107 bytes are in, whatever else the peer would send.
  const endless = new ScriptedReader([text("PROXY UNKNOWN " + "x".repeat(5000))]);
  const o = await read(g, endless, LB);
  assert.equal(rejected(o), "malformed_header");
  assert.equal((o as { detail?: string }).detail, "too_long");
  assert.ok(endless.delivered <= DEFAULT_MAX_PROXY_HEADER_BYTES, `${endless.delivered} bytes read`);
  // v2 announcing 65535 bytes: refused from the fixed 16 bytes.
  const huge = v2("stream");
  huge[14] = 0xff;
  huge[15] = 0xff;
  const big = new ScriptedReader([...bytewise(huge.subarray(0, 16)), new Uint8Array(70000)]);
  const o2 = await read(g, big, LB);
  assert.equal((o2 as { detail?: string }).detail, "too_long");
  assert.equal(big.delivered, 16);
});

Deno.test("stream from an untrusted peer: decided within 12 bytes, DNS and TLS pass untouched", async () => {
  const g = gate();
  const tls = Uint8Array.of(0x16, 3, 1, 0, 200, 1);
  const r1 = new ScriptedReader([tls]);
  const o1 = await read(g, r1, STRANGER);
  assert.ok(o1.ok);
  assert.deepEqual(o1.rest, tls);
  assert.equal(o1.header, null);
  assert.deepEqual(o1.client, STRANGER);
  assert.equal(r1.reads, 1);

  const o2 = await read(g, new ScriptedReader(bytewise(TCP_QUERY)), STRANGER);
  assert.ok(o2.ok);
  assert.deepEqual(o2.rest, TCP_QUERY.subarray(0, 1), "one byte decides: DNS length 0x00");

  const sneaky = new ScriptedReader([text("PRO"), text("XY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")]);
  assert.equal(rejected(await read(g, sneaky, STRANGER)), "untrusted_header");
  const v2Sneaky = new ScriptedReader(bytewise(concatBytes(v2("stream"), TCP_QUERY)));
  assert.equal(rejected(await read(g, v2Sneaky, STRANGER)), "untrusted_header");
  assert.equal(v2Sneaky.delivered, 12, "refused as soon as the signature is complete");

  // A direct client that connects and closes: nothing to refuse, the session sees the end.
  const empty = await read(g, new ScriptedReader([]), STRANGER);
  assert.ok(empty.ok);
  assert.equal(empty.rest.length, 0);
  assert.equal(
    rejected(await read(gate({ allowDirect: false }), new ScriptedReader([]), STRANGER)),
    "direct_refused",
  );
});

Deno.test("PrefixedConn returns the bytes read past the header first, then the connection's", async () => {
  const inner = new ScriptedReader([Uint8Array.of(7, 8, 9)]);
  const writes: Uint8Array[] = [];
  let closed = 0;
  const conn = new PrefixedConn({
    read: (p) => inner.read(p),
    write: (p) => {
      writes.push(p);
      return Promise.resolve(p.length);
    },
    close: () => {
      closed++;
    },
  }, Uint8Array.of(1, 2, 3, 4, 5));
  const buf = new Uint8Array(3);
  assert.equal(await conn.read(buf), 3);
  assert.deepEqual(buf, Uint8Array.of(1, 2, 3));
  assert.equal(await conn.read(buf), 2);
  assert.deepEqual(buf.subarray(0, 2), Uint8Array.of(4, 5));
  assert.equal(await conn.read(buf), 3);
  assert.deepEqual(buf, Uint8Array.of(7, 8, 9));
  assert.equal(await conn.read(buf), null);
  await conn.write(Uint8Array.of(1));
  await conn.closeWrite();
  conn.close();
  assert.equal(writes.length, 1);
  assert.equal(closed, 1);
});

Deno.test("a real TCP connection: header and query in one segment, the query read after it", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const g = trustingGate(["127.0.0.0/8"]);
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  try {
    await client.write(concatBytes(v2("stream"), TCP_QUERY));
    const peer = { hostname: server.remoteAddr.hostname, port: server.remoteAddr.port };
    const o = await g.readStream(server, peer, { clock: new FakeClock(), timeoutMs: 5000 });
    assert.ok(o.ok);
    assert.equal(o.client.hostname, CLIENT.address);
    const got = await readExactly(new PrefixedConn(server, o.rest), TCP_QUERY.length);
    assert.deepEqual(got, TCP_QUERY);
  } finally {
    client.close();
    server.close();
    listener.close();
  }
});
