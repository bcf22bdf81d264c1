/**
 * A pinned DoT upstream through the whole proxy (real server, real fake-DoT upstream): with its
 * key pinned it is used, and still after the upstream drops the connection (a new handshake,
 * checked again); with another key pinned it is refused, counted as a connection failure (tls),
 * and the client gets SERVFAIL, before and after a reconnect attempt.
 */
import assert from "node:assert/strict";
import { spkiPin } from "../../lib/identity/spki.ts";
import { startServer } from "../../lib/server.ts";
import { systemClock } from "../../lib/sys/clock.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { buildQuery, parse, udpQuery } from "../helpers/dns_client.ts";
import { readFixture, startFakeDot } from "../helpers/fake_dot.ts";
import { testConfig } from "../helpers/proxy.ts";

async function withPinnedProxy(
  pins: string[],
  fn: (ask: (name: string) => Promise<string>, errors: () => Promise<string>) => Promise<void>,
  upstreamOpts: Parameters<typeof startFakeDot>[0] = {},
): Promise<number> {
  const dot = await startFakeDot(upstreamOpts);
  const config = await testConfig([{ hostname: "127.0.0.1", port: dot.port }]);
  config.upstreams[0].spkiPins = pins;
  const server = await startServer(config, { clock: systemClock, random: cryptoRandom() });
  const udp = server.listeners[0].addr;
  try {
    await fn(
      async (name) => parse(await udpQuery(udp, buildQuery(name))).rcode ?? "",
      async () => {
        const text = await server.metrics.render();
        return [...text.matchAll(/dotproxy_upstream_errors_total\{[^}]*kind="tls"\} (\d+)/g)]
          .map((m) => m[1]).join(",");
      },
    );
    return dot.connections;
  } finally {
    await server.stop();
    await dot.close();
  }
}

Deno.test("with its key pinned the upstream is used, again after it drops the connection", async () => {
  const pin = spkiPin(await readFixture("server.pem"));
  const connections = await withPinnedProxy([pin], async (ask) => {
    assert.equal(await ask("one.pinned.test"), "NOERROR");
    assert.equal(await ask("two.pinned.test"), "NOERROR", "after the upstream closed");
  }, { closeAfter: 1 });
  assert.ok(connections >= 2, `reconnected (${connections} connections), pins checked again`);
});

Deno.test("with another key pinned the upstream is refused as a TLS failure: SERVFAIL", async () => {
  const other = spkiPin(await readFixture("other-ca.pem"));
  await withPinnedProxy([other], async (ask, errors) => {
    assert.equal(await ask("one.refused.test"), "SERVFAIL");
    assert.ok(Number(await errors()) >= 1, "counted as a tls connection failure");
    assert.equal(await ask("two.refused.test"), "SERVFAIL");
  });
});

Deno.test("a pin on the CA's key admits the upstream's leaf", async () => {
  const ca = spkiPin(await readFixture("ca.pem"));
  await withPinnedProxy([ca], async (ask) => {
    assert.equal(await ask("ca.pinned.test"), "NOERROR");
  });
});
