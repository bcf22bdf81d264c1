/** The loopback CONNECT proxy behind bootstrapped DoH: it tunnels to its one host, nowhere else. */
import assert from "node:assert/strict";
import { ConnectTunnel } from "../../lib/upstream/tunnel.ts";
import type { AddressResolver } from "../../lib/upstream/resolver.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

/** Sends `request` to the tunnel and returns everything it answers before closing. */
async function roundTrip(tunnel: ConnectTunnel, request: string): Promise<string> {
  const { port } = new URL(tunnel.proxyUrl);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  try {
    await conn.write(new TextEncoder().encode(request));
    let text = "";
    const buf = new Uint8Array(1024);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text;
  } finally {
    conn.close();
  }
}

function tunnelTo(host: string, port: number, resolver: AddressResolver) {
  return new ConnectTunnel({
    host,
    port,
    resolver,
    clock: new FakeClock(),
    connectTimeoutMs: 2000,
  });
}

Deno.test("the tunnel refuses any authority but its own, without resolving it", async () => {
  let lookups = 0;
  const resolver: AddressResolver = {
    lookup: () => {
      lookups++;
      return Promise.resolve({ ok: true, addresses: ["127.0.0.1"] });
    },
  };
  const t = tunnelTo("dns.test", 443, resolver);
  try {
    for (
      const req of [
        "CONNECT evil.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT dns.test:22 HTTP/1.1\r\n\r\n",
        "GET http://dns.test/ HTTP/1.1\r\nHost: dns.test\r\n\r\n",
      ]
    ) {
      assert.match(await roundTrip(t, req), /^HTTP\/1\.1 403 /, req);
    }
    assert.equal(lookups, 0);
    assert.equal(t.opened, 0);
  } finally {
    await t.close();
  }
});

Deno.test("the tunnel answers 502 when its host cannot be resolved", async () => {
  const t = tunnelTo("dns.test", 443, {
    lookup: () => Promise.resolve({ ok: false, message: "NXDOMAIN" }),
  });
  try {
    assert.match(await roundTrip(t, "CONNECT DNS.test:443 HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 502 /);
  } finally {
    await t.close();
  }
});

Deno.test("the tunnel splices bytes to the resolved address", async () => {
  const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const c = await echo.accept();
    const buf = new Uint8Array(64);
    const n = await c.read(buf);
    await c.write(buf.subarray(0, n ?? 0));
    c.close();
  })();
  const port = (echo.addr as Deno.NetAddr).port;
  const t = tunnelTo("echo.test", port, {
    lookup: () => Promise.resolve({ ok: true, addresses: ["127.0.0.1"] }),
  });
  try {
    const text = await roundTrip(t, `CONNECT echo.test:${port} HTTP/1.1\r\n\r\nhello`);
    assert.equal(text, "HTTP/1.1 200 Connection Established\r\n\r\nhello");
    assert.equal(t.opened, 1);
  } finally {
    await served;
    echo.close();
    await t.close();
  }
});
