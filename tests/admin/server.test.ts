import assert from "node:assert/strict";
import { AdminBindError, handleAdmin, startAdmin } from "../../lib/admin/server.ts";
import { Metrics } from "../../lib/metrics/metrics.ts";

/** Samples of a Prometheus text exposition, keyed `name{labels}` exactly as printed. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    samples.set(m[1], Number(m[2]));
  }
  return samples;
}

async function withAdmin(
  fn: (base: string, state: { ready: boolean; reason?: string }, metrics: Metrics) => Promise<void>,
): Promise<void> {
  const metrics = new Metrics({ protocols: ["udp", "tcp"] });
  const state: { ready: boolean; reason?: string } = { ready: false, reason: "starting" };
  const admin = startAdmin({ hostname: "127.0.0.1", port: 0, metrics, ready: () => state });
  try {
    await fn(`http://127.0.0.1:${admin.addr.port}`, state, metrics);
  } finally {
    await admin.close();
  }
}

Deno.test("/metrics serves the Prometheus text of recorded queries with its content type", async () => {
  await withAdmin(async (base, _state, metrics) => {
    metrics.recordQuery("udp", 1, 0, 0.004, false);
    metrics.recordQuery("udp", 1, 0, 0.0002, true);
    metrics.recordQuery("tcp", 28, 3, 0.03, false);
    metrics.upstream("tls://192.0.2.1:853").result(null, 0.025);
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const s = parse(await res.text());
    assert.equal(s.get('dotproxy_queries_total{protocol="udp",qtype="A",rcode="NOERROR"}'), 2);
    assert.equal(s.get('dotproxy_queries_total{protocol="tcp",qtype="AAAA",rcode="NXDOMAIN"}'), 1);
    assert.equal(
      s.get('dotproxy_query_duration_seconds_bucket{protocol="udp",cache="miss",le="0.005"}'),
      1,
    );
    assert.equal(
      s.get('dotproxy_query_duration_seconds_bucket{protocol="udp",cache="hit",le="0.00025"}'),
      1,
    );
    assert.equal(
      s.get('dotproxy_query_duration_seconds_bucket{protocol="tcp",cache="miss",le="+Inf"}'),
      1,
    );
    assert.equal(
      s.get('dotproxy_upstream_duration_seconds_bucket{upstream="tls://192.0.2.1:853",le="0.025"}'),
      1,
    );

    metrics.recordQuery("udp", 1, 0, 0.004, false);
    const again = parse(await (await fetch(`${base}/metrics`)).text());
    assert.equal(again.get('dotproxy_queries_total{protocol="udp",qtype="A",rcode="NOERROR"}'), 3);
  });
});

Deno.test("/healthz answers 200 ok while the process runs, ready or not", async () => {
  await withAdmin(async (base) => {
    const res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ok\n");
  });
});

Deno.test("/readyz is 503 with the reason until ready, then 200, and 503 again when draining", async () => {
  await withAdmin(async (base, state) => {
    let res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    assert.equal(await res.text(), "not ready: starting\n");
    state.ready = true;
    state.reason = undefined;
    res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ready\n");
    state.ready = false;
    state.reason = "shutting down";
    res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    assert.equal(await res.text(), "not ready: shutting down\n");
  });
});

Deno.test("unknown paths are 404 and other methods 405 with Allow", async () => {
  await withAdmin(async (base) => {
    let res = await fetch(`${base}/nope`);
    assert.equal(res.status, 404);
    await res.body?.cancel();
    res = await fetch(`${base}/metrics/extra`);
    assert.equal(res.status, 404);
    await res.body?.cancel();
    res = await fetch(`${base}/metrics`, { method: "POST", body: "x" });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "GET, HEAD");
    await res.body?.cancel();
  });
});

Deno.test("HEAD gets the status and headers without a body", async () => {
  await withAdmin(async (base) => {
    const res = await fetch(`${base}/readyz`, { method: "HEAD" });
    assert.equal(res.status, 503);
    assert.equal(await res.text(), "");
    const m = await fetch(`${base}/metrics`, { method: "HEAD" });
    assert.equal(m.status, 200);
    assert.equal(m.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    assert.equal(await m.text(), "");
  });
});

Deno.test("a metrics failure is a 500, not a crash", async () => {
  const res = await handleAdmin(new Request("http://admin/metrics"), {
    metrics: { contentType: "text/plain", render: () => Promise.reject(new Error("boom")) },
    ready: () => ({ ready: true }),
  });
  assert.equal(res.status, 500);
  assert.equal(await res.text(), "metrics unavailable\n");
});

Deno.test("an admin address in use is an AdminBindError naming it", () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    assert.throws(
      () =>
        startAdmin({
          hostname: "127.0.0.1",
          port: taken.addr.port,
          metrics: new Metrics(),
          ready: () => ({ ready: true }),
        }),
      (err) => {
        assert.ok(err instanceof AdminBindError);
        assert.equal(err.inUse, true);
        assert.equal(
          err.message,
          `cannot listen on admin address 127.0.0.1:${taken.addr.port}: address already in use`,
        );
        return true;
      },
    );
  } finally {
    taken.close();
  }
});

Deno.test("close releases the port and may be called twice", async () => {
  const admin = startAdmin({
    hostname: "127.0.0.1",
    port: 0,
    metrics: new Metrics(),
    ready: () => ({ ready: true }),
  });
  const { port } = admin.addr;
  await Promise.all([admin.close(), admin.close()]);
  const again = Deno.listen({ hostname: "127.0.0.1", port });
  again.close();
});
