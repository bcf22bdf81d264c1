/**
 * A wildcard UDP listener (0.0.0.0, [::]) answers every query from the address it was sent to:
 * one socket per local address, the loopback addresses of 127/8 included, followed as addresses
 * come and go. Loopback only: queries go to 127.0.0.0/8 and ::1.
 */
import assert from "node:assert/strict";
import type { Handler } from "../../lib/listen/listener.ts";
import {
  DEFAULT_WILDCARD_LOOPBACK,
  type InterfaceAddress,
  loopbackAddresses,
  wildcardOf,
  wildcardTargets,
} from "../../lib/listen/local_addresses.ts";
import {
  DEFAULT_WILDCARD_RESCAN_MS,
  listenUdp,
  type UdpListener,
  type WildcardOptions,
} from "../../lib/listen/udp.ts";
import { startServer } from "../../lib/server.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { type Addr, buildQuery, parse } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { expectedAddress, startFakeDot } from "../helpers/fake_dot.ts";
import { startProxy, testConfig } from "../helpers/proxy.ts";

/** Sends `msg` to `to` from an ephemeral loopback socket; resolves with the reply and its source. */
async function exchange(
  to: Addr,
  msg: Uint8Array,
  timeoutMs = 2000,
): Promise<{ reply: Uint8Array; from: Deno.NetAddr }> {
  const v6 = to.hostname.includes(":");
  const sock = Deno.listenDatagram({
    transport: "udp",
    hostname: v6 ? "::1" : "127.0.0.1",
    port: 0,
  });
  const timer = setTimeout(() => sock.close(), timeoutMs);
  try {
    await sock.send(msg, { transport: "udp", ...to });
    const [reply, from] = await sock.receive();
    return { reply, from: from as Deno.NetAddr };
  } catch (err) {
    throw new Error(`no reply from ${to.hostname}:${to.port} (${err})`);
  } finally {
    clearTimeout(timer);
    try {
      sock.close();
    } catch { /* closed by the timer */ }
  }
}

/** Answers every query with the same bytes and QR set, and records what it saw. */
function echo(seen: number[] = []): Handler {
  return (q) => {
    seen.push(q.bytes.length);
    const bytes = q.bytes.slice();
    bytes[2] |= 0x80;
    return { bytes, maxUdpSize: 512 };
  };
}

async function withListener(
  hostname: string,
  wildcard: WildcardOptions,
  fn: (l: UdpListener, clock: FakeClock) => Promise<void>,
  handle: Handler = echo(),
  port = 0,
): Promise<void> {
  const clock = new FakeClock();
  const l = listenUdp({
    url: `udp://${hostname}:${port}`,
    hostname,
    port,
    handle,
    clock,
    wildcard,
  });
  try {
    await fn(l, clock);
  } finally {
    await l.close();
  }
}

Deno.test("a query sent to 127.0.0.2 on a 0.0.0.0 listener is answered from 127.0.0.2", async () => {
  const upstream = await startFakeDot();
  const proxy = await startProxy([upstream], { listenOn: "0.0.0.0" });
  try {
    for (const hostname of ["127.0.0.2", "127.0.0.1", "127.0.0.200"]) {
      const { reply, from } = await exchange(
        { hostname, port: proxy.udp.port },
        buildQuery("multi.example", "A", 0x5151),
      );
      assert.equal(from.hostname, hostname, "the reply leaves from the address asked");
      assert.equal(from.port, proxy.udp.port);
      assert.equal(parse(reply).id, 0x5151);
      assert.equal(parse(reply).answers?.[0]?.data, expectedAddress("multi.example"));
    }
    assert.equal(proxy.udp.hostname, "0.0.0.0", "the listener reports the wildcard it serves");
  } finally {
    await proxy.stop();
    await upstream.close();
  }
});

Deno.test("a [::] listener answers ::1 from ::1 and IPv4 loopback addresses from themselves", async () => {
  await withListener("::", {}, async (l) => {
    for (const hostname of ["::1", "127.0.0.1", "127.0.0.3"]) {
      const { from } = await exchange({ hostname, port: l.addr.port }, buildQuery("v6.example"));
      assert.equal(from.hostname, hostname);
    }
  });
});

Deno.test("every socket of a wildcard listener is on the port the OS chose for the first", async () => {
  await withListener("0.0.0.0", { loopback: ["127.0.0.8/30"] }, async (l) => {
    const addresses = l.addresses();
    assert.ok(addresses.includes("127.0.0.1"));
    assert.ok(addresses.includes("127.0.0.9") && addresses.includes("127.0.0.10"));
    assert.ok(!addresses.includes("127.0.0.2"), "only the configured loopback addresses");
    for (const hostname of ["127.0.0.9", "127.0.0.10"]) {
      const { from } = await exchange({ hostname, port: l.addr.port }, buildQuery("p.example"));
      assert.deepEqual([from.hostname, from.port], [hostname, l.addr.port]);
    }
  });
});

Deno.test("an address added to the host is served after the periodic rescan, a removed one released", async () => {
  const interfaces: InterfaceAddress[] = [{ family: "IPv4", address: "127.0.0.1", scopeid: null }];
  const opts = { loopback: [], interfaces: () => interfaces };
  await withListener("0.0.0.0", opts, async (l, clock) => {
    const port = l.addr.port;
    assert.deepEqual(l.addresses(), ["127.0.0.1"]);
    interfaces.push({ family: "IPv4", address: "127.0.1.5", scopeid: null });
    clock.advance(DEFAULT_WILDCARD_RESCAN_MS - 1);
    assert.deepEqual(l.addresses(), ["127.0.0.1"], "not before the interval");
    clock.advance(1);
    assert.deepEqual(l.addresses(), ["127.0.0.1", "127.0.1.5"]);
    const { from } = await exchange({ hostname: "127.0.1.5", port }, buildQuery("new.example"));
    assert.equal(from.hostname, "127.0.1.5");

    interfaces.pop();
    clock.advance(DEFAULT_WILDCARD_RESCAN_MS);
    assert.deepEqual(l.addresses(), ["127.0.0.1"]);
    // The socket is closed: once released, the address and port can be bound again.
    await l.rescan();
    Deno.listenDatagram({ transport: "udp", hostname: "127.0.1.5", port }).close();
  });
});

Deno.test("a reload rescans: a loopback address another program held is served once freed", async () => {
  const holder = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.77", port: 0 });
  const port = (holder.addr as Deno.NetAddr).port;
  const upstream = await startFakeDot();
  const config = await testConfig([upstream], "", "0.0.0.0");
  config.listeners[0].port = port;
  const server = await startServer(config, { clock: new FakeClock(), random: cryptoRandom() });
  let held = true;
  try {
    const query = buildQuery("held.example", "A", 0x7777);
    // While held, the other program gets the query: dotproxy did not take its address.
    const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    await client.send(query, { transport: "udp", hostname: "127.0.0.77", port });
    const [got] = await holder.receive();
    client.close();
    assert.deepEqual(got, query);
    holder.close();
    held = false;
    await server.reload(config); // what SIGHUP does
    const { reply, from } = await exchange({ hostname: "127.0.0.77", port }, query);
    assert.equal(from.hostname, "127.0.0.77");
    assert.equal(parse(reply).rcode, "NOERROR");
  } finally {
    if (held) holder.close();
    await server.stop();
    await upstream.close();
  }
});

Deno.test("a second wildcard listener on a port in use fails with AddrInUse", async () => {
  await withListener("0.0.0.0", { loopback: [] }, (l) => {
    assert.throws(
      () =>
        listenUdp({
          url: "udp://0.0.0.0",
          hostname: "0.0.0.0",
          port: l.addr.port,
          handle: echo(),
          clock: new FakeClock(),
          wildcard: { loopback: [] },
        }),
      Deno.errors.AddrInUse,
    );
    return Promise.resolve();
  });
});

Deno.test("without permission to list interfaces, loopback addresses still answer from themselves", async () => {
  const interfaces = () => {
    throw new Deno.errors.NotCapable('Requires sys access to "networkInterfaces"');
  };
  await withListener("0.0.0.0", { interfaces, loopback: ["127.0.0.2"] }, async (l) => {
    // The loopback list keeps its own sockets; one wildcard socket serves the rest.
    assert.deepEqual(l.addresses().sort(), ["0.0.0.0", "127.0.0.2"]);
    for (const hostname of ["127.0.0.1", "127.0.0.2", "127.0.0.3"]) {
      const { reply, from } = await exchange(
        { hostname, port: l.addr.port },
        buildQuery("x.example"),
      );
      assert.equal(parse(reply).type, "response");
      // 127.0.0.3 is outside the list: the wildcard socket answers it, from the primary address.
      assert.equal(from.hostname, hostname === "127.0.0.3" ? "127.0.0.1" : hostname);
    }
  });
});

Deno.test("a wildcard opens at most maxSockets sockets, interface addresses first", async () => {
  await withListener("0.0.0.0", { maxSockets: 3 }, (l) => {
    const a = l.addresses();
    assert.equal(a.length, 3);
    assert.ok(a.includes("127.0.0.1"));
    return Promise.resolve();
  });
});

Deno.test("a datagram that fills a loopback socket's small buffer is dropped, the next answered", async () => {
  const seen: number[] = [];
  await withListener("0.0.0.0", { loopback: ["127.0.0.2"] }, async (l) => {
    const to = { hostname: "127.0.0.2", port: l.addr.port };
    const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    await sock.send(new Uint8Array(5000), { transport: "udp", ...to });
    sock.close();
    const { from } = await exchange(to, buildQuery("after.example"));
    assert.equal(from.hostname, "127.0.0.2");
    assert.deepEqual(seen, [buildQuery("after.example").length]);
  }, echo(seen));
});

Deno.test("loopback lists expand inside 127/8 only, without network and broadcast addresses", () => {
  const all = loopbackAddresses(DEFAULT_WILDCARD_LOOPBACK);
  assert.ok(Array.isArray(all));
  assert.equal(all.length, 254);
  assert.deepEqual([all[0], all[253]], ["127.0.0.1", "127.0.0.254"]);
  assert.deepEqual(loopbackAddresses(["127.0.0.2", "127.0.0.2/32", "127.0.1.0/31"]), [
    "127.0.0.2",
    "127.0.1.0",
    "127.0.1.1",
  ]);
  assert.match(String(loopbackAddresses(["10.0.0.1"])), /not inside 127\.0\.0\.0\/8/);
  assert.match(String(loopbackAddresses(["::1"])), /not inside/);
  assert.match(String(loopbackAddresses(["127.0.0.0/8"])), /more than 1024/);
  assert.match(String(loopbackAddresses(["127.0.0.300"])), /127\.0\.0\.300/);
});

Deno.test("wildcard targets: interface addresses of the family, scoped link-local, loopback list", () => {
  const ifs: InterfaceAddress[] = [
    { family: "IPv4", address: "127.0.0.1", scopeid: null },
    { family: "IPv4", address: "192.0.2.2", scopeid: null },
    { family: "IPv6", address: "::1", scopeid: 0 },
    { family: "IPv6", address: "fe80::1", scopeid: 4 },
    { family: "IPv4", address: "192.0.2.2", scopeid: null },
  ];
  const names = (t: { hostname: string }[]) => t.map((x) => x.hostname);
  const loopback = ["127.0.0.1", "127.0.0.2"];
  assert.deepEqual(names(wildcardTargets("0.0.0.0", ifs, { loopback })), [
    "127.0.0.1",
    "192.0.2.2",
    "127.0.0.2",
  ]);
  assert.deepEqual(names(wildcardTargets("::", ifs, { loopback })), [
    "127.0.0.1",
    "192.0.2.2",
    "::1",
    "fe80::1%4",
    "127.0.0.2",
  ]);
  assert.deepEqual(names(wildcardTargets("::", ifs, { loopback, ipv4: false })), [
    "::1",
    "fe80::1%4",
  ]);
  const t = wildcardTargets("0.0.0.0", ifs, { loopback });
  assert.deepEqual(t.map((x) => x.loopback), [false, false, true]);
});

Deno.test("wildcards are recognised in any spelling", () => {
  assert.equal(wildcardOf("0.0.0.0"), "0.0.0.0");
  assert.equal(wildcardOf("::"), "::");
  assert.equal(wildcardOf("0:0::0"), "::");
  assert.equal(wildcardOf("127.0.0.1"), null);
  assert.equal(wildcardOf("::1"), null);
});

Deno.test("0.0.0.0, [::] and 127.0.0.2 listeners share one UDP port, each answering its own", async () => {
  const holder = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (holder.addr as Deno.NetAddr).port;
  holder.close();
  const upstream = await startFakeDot();
  const extra =
    '[[listeners]]\nurl = "udp://[::]:5053"\n\n[[listeners]]\nurl = "udp://127.0.0.2:5053"';
  const config = await testConfig([upstream], extra, "0.0.0.0");
  for (const l of config.listeners) if (l.protocol === "udp") l.port = port;
  const server = await startServer(config, { clock: new FakeClock(), random: cryptoRandom() });
  try {
    const [v4, v6, explicit] = server.listeners.filter((l) =>
      l.url.startsWith("udp")
    ) as UdpListener[];
    assert.ok(!v4.addresses().includes("127.0.0.2"), "left to its own listener");
    assert.ok(v4.addresses().includes("127.0.0.3"));
    assert.ok(!v6.addresses().includes("127.0.0.1"), "[::] leaves IPv4 to 0.0.0.0");
    assert.deepEqual(explicit.addresses(), ["127.0.0.2"]);
    for (const hostname of ["127.0.0.2", "127.0.0.3", "::1"]) {
      const { reply, from } = await exchange({ hostname, port }, buildQuery("share.example"));
      assert.equal(from.hostname, hostname);
      assert.equal(parse(reply).rcode, "NOERROR");
    }
  } finally {
    await server.stop();
    await upstream.close();
  }
});
