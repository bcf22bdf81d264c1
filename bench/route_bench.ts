/**
 * Micro-benchmark of the per-query route lookup (lib/route/router.ts), which runs for every
 * query before the cache: `deno bench bench/route_bench.ts`. The cache key (`nameKey`) of the
 * same names is measured alongside as the yardstick: routing should cost a fraction of it.
 *
 * The router holds the built-in local zones (118), a few routes, and optionally 10,000 local
 * records (a large hosts file). Names: a typical public name, a deep one, a routed one, a
 * reverse name in a local zone, and a record name.
 */
import { nameFromString, nameKey } from "../lib/dns/wire.ts";
import { isRecordError, LocalData, parseRecord } from "../lib/route/records.ts";
import { type RouteDecision, Router, type RouterOptions } from "../lib/route/router.ts";

function build(opts: RouterOptions): Router {
  const r = Router.build(opts);
  if (!(r instanceof Router)) throw new Error(JSON.stringify(r));
  return r;
}

const routes = [
  { domains: ["cluster.local", "10.in-addr.arpa"], group: "cluster" },
  { domains: ["corp.example", "corp.internal"], group: "corp" },
  { domains: ["ads.example", "tracker.example"], action: "nxdomain" },
];
const plain = build({ routes });
const hosts = new LocalData();
for (let i = 0; i < 10_000; i++) {
  const rec = parseRecord({
    name: `host${i}.lan`,
    type: "A",
    data: `192.168.${i >> 8}.${i & 0xff}`,
  });
  if (isRecordError(rec)) throw new Error(rec.message);
  hosts.add(rec);
}
const withHosts = build({ routes, data: hosts });

const names = {
  public: nameFromString("www.example.com"),
  deep: nameFromString("a.b.c.d.e.f.cdn.example.net"),
  routed: nameFromString("api.default.svc.cluster.local"),
  reverse: nameFromString("4.3.2.192.168.in-addr.arpa"),
  record: nameFromString("host4242.lan"),
};

let sink: RouteDecision | string | null = null;

for (const [label, wire] of Object.entries(names)) {
  Deno.bench(`route ${label}`, { group: label, baseline: false }, () => {
    sink = plain.route(wire);
  });
  Deno.bench(`route ${label}, 10k records`, { group: label }, () => {
    sink = withHosts.route(wire);
  });
  Deno.bench(`cache key ${label} (yardstick)`, { group: label, baseline: true }, () => {
    sink = nameKey(wire);
  });
}

Deno.bench("keep results alive", () => {
  if (sink === undefined) throw new Error("unreachable");
});
