/**
 * Operating the running proxy: metrics scraped over the admin listener, readiness, reload of a
 * new configuration with the cache kept, and the cache seen end to end.
 */
import assert from "node:assert/strict";
import { buildQuery, parse, udpQuery } from "./helpers/dns_client.ts";
import { expectedAddress, startFakeDot } from "./helpers/fake_dot.ts";
import { startProxy, testConfig } from "./helpers/proxy.ts";

const ADMIN = `[admin]\naddress = "127.0.0.1:9153"\n`; // port replaced by 0 in testConfig

async function scrape(addr: Deno.NetAddr, path = "/metrics"): Promise<[number, string]> {
  const res = await fetch(`http://${addr.hostname}:${addr.port}${path}`);
  return [res.status, await res.text()];
}

/** The value of one sample line, e.g. `metric{label="x"} 3`, summed over matching lines. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

Deno.test("metrics count queries, cache hits and upstream results as they happen", async () => {
  const upstream = await startFakeDot();
  const p = await startProxy([upstream], { extraToml: ADMIN });
  try {
    const admin = p.server.admin!.addr;
    for (let i = 0; i < 3; i++) await udpQuery(p.udp, buildQuery("metrics.test", "A", i));
    const [status, text] = await scrape(admin);
    assert.equal(status, 200);
    assert.equal(sample(text, "dotproxy_queries_total", { protocol: "udp" }), 3, text);
    assert.equal(upstream.queries.length, 1, "two of three answered from the cache");
    assert.equal(sample(text, "dotproxy_cache_hits_total"), 2, text);
    assert.equal(sample(text, "dotproxy_cache_misses_total"), 1, text);
    assert.ok(sample(text, "dotproxy_query_duration_seconds_count") >= 3, "latency histogram");
  } finally {
    await p.stop();
    await upstream.close();
  }
});

Deno.test("/healthz answers while running and /readyz reflects upstream health", async () => {
  const upstream = await startFakeDot({ cert: "wrong-name" });
  const p = await startProxy([upstream], { extraToml: ADMIN });
  try {
    const admin = p.server.admin!.addr;
    assert.equal((await scrape(admin, "/healthz"))[0], 200);
    assert.equal((await scrape(admin, "/readyz"))[0], 200);
    // The only upstream fails its TLS check: not ready any more.
    assert.equal(parse(await udpQuery(p.udp, buildQuery("ready.test"))).rcode, "SERVFAIL");
    const [status, body] = await scrape(admin, "/readyz");
    assert.equal(status, 503);
    assert.match(body, /upstream/);
  } finally {
    await p.stop();
    await upstream.close();
  }
});

Deno.test("a reload switches to the new upstream and keeps the cache", async () => {
  const first = await startFakeDot();
  const second = await startFakeDot();
  const p = await startProxy([first]);
  try {
    await udpQuery(p.udp, buildQuery("kept.test"));
    const next = await testConfig([second]);
    const skipped = await p.server.reload(next);
    assert.deepEqual(skipped, []);
    // Cached before the reload: still served, nothing sent to either upstream.
    const kept = parse(await udpQuery(p.udp, buildQuery("kept.test")));
    assert.equal(kept.answers?.[0].data, expectedAddress("kept.test"));
    await udpQuery(p.udp, buildQuery("new.test"));
    assert.equal(first.queries.length, 1);
    assert.equal(second.queries.length, 1);
    assert.equal(second.queries[0].questions?.[0].name, "new.test");
  } finally {
    await p.stop();
    await first.close();
    await second.close();
  }
});

Deno.test("a reload that changes listener addresses reports them as needing a restart", async () => {
  const upstream = await startFakeDot();
  const p = await startProxy([upstream]);
  try {
    const next = await testConfig([upstream], "", "::1");
    const skipped = await p.server.reload(next);
    assert.ok(skipped.some((s) => s.includes("listeners")), skipped.join(", "));
  } finally {
    await p.stop();
    await upstream.close();
  }
});
