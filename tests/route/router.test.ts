import assert from "node:assert/strict";
import { nameFromString } from "../../lib/dns/wire.ts";
import { isRecordError, LocalData, parseRecord, type RecordRow } from "../../lib/route/records.ts";
import {
  type RouteDecision,
  type RouteError,
  routeLabel,
  Router,
  type RouterOptions,
  unusedGroups,
} from "../../lib/route/router.ts";
import { lines, query, read } from "./helpers.ts";

function router(opts: RouterOptions): Router {
  const r = Router.build(opts);
  if (!(r instanceof Router)) throw new Error(JSON.stringify(r));
  return r;
}

function errors(opts: RouterOptions): RouteError[] {
  const r = Router.build(opts);
  assert.ok(!(r instanceof Router), "expected errors");
  return r;
}

function dataOf(...rows: RecordRow[]): LocalData {
  const d = new LocalData();
  for (const row of rows) {
    const rec = parseRecord(row);
    if (isRecordError(rec)) throw new Error(rec.message);
    assert.equal(d.add(rec), null);
  }
  return d;
}

/** A compact description of a decision: "forward cluster", "local", "block nxdomain". */
function what(d: RouteDecision): string {
  if (d.kind === "forward") return `forward ${d.group}`;
  return d.kind === "block" ? `block ${d.action}` : "local";
}

const route = (r: Router, name: string) => what(r.route(nameFromString(name)));

Deno.test("unrouted names go to the default group; routed ones to their group only", () => {
  const r = router({
    routes: [
      { domains: ["cluster.local", "10.in-addr.arpa"], group: "cluster" },
      { domains: ["corp.example"], group: "corp" },
    ],
  });
  assert.equal(route(r, "www.example.com"), "forward default");
  assert.equal(route(r, "svc.ns.svc.cluster.local"), "forward cluster");
  assert.equal(route(r, "cluster.local"), "forward cluster");
  assert.equal(route(r, "4.3.2.10.in-addr.arpa"), "forward cluster");
  assert.equal(route(r, "A.CORP.example"), "forward corp");
  assert.equal(route(r, "xcorp.example"), "forward default", "label boundary");
  // Other .local names stay local: the built-in zone still covers them.
  assert.equal(route(r, "printer.local"), "local");
});

Deno.test("the longest suffix wins across routes, actions and built-in zones", () => {
  const r = router({
    routes: [
      { domains: ["example"], group: "outer" },
      { domains: ["ads.example"], action: "nxdomain" },
      { domains: ["ok.ads.example"], group: "inner" },
      { domains: ["bad.example"], action: "refuse" },
    ],
  });
  assert.equal(route(r, "x.example"), "forward outer");
  assert.equal(route(r, "ads.example"), "block nxdomain");
  assert.equal(route(r, "t.ads.example"), "block nxdomain");
  assert.equal(route(r, "a.ok.ads.example"), "forward inner");
  assert.equal(route(r, "bad.example"), "block refuse");
});

Deno.test("built-in zones answer by default, and one switch turns them off", () => {
  const on = router({});
  for (const n of ["localhost", "x.invalid", "1.1.168.192.in-addr.arpa", "nas.home.arpa"]) {
    assert.equal(route(on, n), "local", n);
  }
  const off = router({ localZones: false });
  assert.equal(route(off, "1.1.168.192.in-addr.arpa"), "forward default");
  assert.equal(route(off, "localhost"), "forward default");
});

Deno.test("a route replaces built-in zones at and below it, but a root route does not", () => {
  const r = router({
    routes: [
      { domains: ["in-addr.arpa"], group: "corp" },
      { domains: ["home.arpa"], group: "router" },
      { domains: ["."], group: "public" },
    ],
  });
  assert.equal(route(r, "1.0.0.10.in-addr.arpa"), "forward corp");
  assert.equal(route(r, "1.0.0.127.in-addr.arpa"), "forward corp");
  assert.equal(route(r, "nas.home.arpa"), "forward router");
  assert.equal(route(r, "localhost"), "local", "the root route leaves built-in zones alone");
  assert.equal(route(r, "www.example.com"), "forward public");
  // The ip6.arpa zones are not under in-addr.arpa.
  assert.equal(route(r, "1.d.f.ip6.arpa"), "local");
});

Deno.test("local data at a name wins over every route, and only at that exact name", () => {
  const r = router({
    routes: [{ domains: ["corp.example"], group: "corp" }, {
      domains: ["ads.example"],
      action: "nxdomain",
    }],
    data: dataOf(
      { name: "vpn.corp.example", type: "A", data: "10.0.0.5" },
      { name: "ok.ads.example", type: "A", data: "192.0.2.1" },
      { name: "nas.lan", type: "A", data: "192.168.1.10" },
    ),
  });
  assert.equal(route(r, "vpn.corp.example"), "local");
  assert.equal(route(r, "x.vpn.corp.example"), "forward corp");
  assert.equal(route(r, "ok.ads.example"), "local");
  assert.equal(route(r, "nas.lan"), "local");
  assert.equal(route(r, "other.lan"), "forward default");
  assert.deepEqual(lines(ask(r, "VPN.corp.example").answers), [
    "VPN.corp.example 300 A 10.0.0.5",
  ]);
});

/** The answer a local or block decision gives `name`/`qtype`, decoded. */
function ask(r: Router, name: string, qtype: Parameters<typeof query>[1] = "A") {
  const msg = query(name, qtype);
  const d = r.route(msg.question!.name);
  assert.notEqual(d.kind, "forward", `${name} is answered here`);
  return read((d as Exclude<RouteDecision, { kind: "forward" }>).answer(msg));
}

Deno.test("records inside a local zone take its SOA for NODATA; its other names are NXDOMAIN", () => {
  const r = router({
    data: dataOf(
      { name: "nas.home.arpa", type: "A", data: "192.168.1.10" },
      { name: "a.b.home.arpa", type: "A", data: "192.168.1.11" },
    ),
  });
  assert.deepEqual(lines(ask(r, "nas.home.arpa").answers), ["nas.home.arpa 300 A 192.168.1.10"]);
  const nodata = ask(r, "nas.home.arpa", "MX");
  assert.equal(nodata.rcode, "NOERROR");
  assert.deepEqual(lines(nodata.authorities), [
    "home.arpa 10800 SOA localhost nobody.invalid",
  ]);
  assert.equal(ask(r, "b.home.arpa").rcode, "NOERROR", "empty non-terminal");
  assert.equal(ask(r, "x.home.arpa").rcode, "NXDOMAIN");
});

Deno.test("an operator zone (action local) serves its records and NXDOMAIN for the rest", () => {
  const r = router({
    routes: [{ domains: ["lan"], action: "local" }],
    data: dataOf({ name: "nas.lan", type: "A", data: "192.168.1.10" }),
  });
  assert.deepEqual(lines(ask(r, "nas.lan").answers), ["nas.lan 300 A 192.168.1.10"]);
  const nx = ask(r, "printer.lan");
  assert.equal(nx.rcode, "NXDOMAIN");
  assert.deepEqual(lines(nx.authorities), ["lan 10800 SOA localhost nobody.invalid"]);
  assert.deepEqual(lines(ask(r, "nas.lan", "TXT").authorities), [
    "lan 10800 SOA localhost nobody.invalid",
  ]);
});

Deno.test("blocked names answer NXDOMAIN with a short SOA, or REFUSED", () => {
  const r = router({
    routes: [
      { domains: ["ads.example"], action: "nxdomain" },
      { domains: ["tracker.example"], action: "refuse" },
    ],
  });
  const nx = ask(r, "x.ads.example");
  assert.equal(nx.rcode, "NXDOMAIN");
  assert.deepEqual(lines(nx.authorities), ["ads.example 10 SOA localhost nobody.invalid"]);
  const refused = ask(r, "tracker.example");
  assert.equal(refused.rcode, "REFUSED");
  assert.deepEqual(refused.authorities, []);
});

Deno.test("only explicit routes to a non-default group allow private answers", () => {
  const r = router({
    routes: [
      { domains: ["corp.example"], group: "corp" },
      { domains: ["pub.example"], group: "default" },
      { domains: ["."], group: "public" },
    ],
  });
  const d = (n: string) => r.route(nameFromString(n));
  const corp = d("a.corp.example");
  assert.ok(corp.kind === "forward" && corp.allowPrivate);
  const pub = d("a.pub.example");
  assert.ok(pub.kind === "forward" && !pub.allowPrivate);
  const root = d("www.example.com");
  assert.ok(root.kind === "forward" && !root.allowPrivate && root.group === "public");
  assert.equal(corp.suffix, "corp.example.");
  assert.equal(root.suffix, ".");
  assert.notEqual(corp.key, root.key);
  assert.equal(routeLabel(corp), "corp");
});

Deno.test("bad routes are all reported with the rule, the field and the value", () => {
  const errs = errors({
    groups: new Set(["default", "corp"]),
    routes: [
      { domains: ["corp.example"], group: "corp" },
      { domains: ["CORP.example."], group: "corp" },
      { domains: ["a..b"], group: "corp" },
      { domains: ["x.example"], group: "nosuch" },
      { domains: ["y.example"], action: "drop" },
      { domains: ["z.example"], group: "corp", action: "refuse" },
      { domains: ["w.example"] },
      { domains: [], group: "corp" },
    ],
  });
  const got = errs.map((e) => `${e.route} ${e.field} ${e.value}`);
  assert.deepEqual(got, [
    "1 domains CORP.example.",
    "2 domains a..b",
    "3 group nosuch",
    "4 action drop",
    "5 group corp",
    "6 group ",
    "7 domains ",
  ]);
  assert.match(errs[0].message, /already routed by routes\[0\]/);
  assert.match(errs[2].message, /no upstream has group = "nosuch"/);
  assert.match(errs[3].message, /nxdomain, refuse, local/);
});

Deno.test("groups no route uses are reported for a --check warning", () => {
  const r = router({ routes: [{ domains: ["corp.example"], group: "corp" }] });
  assert.deepEqual(unusedGroups(r, ["default", "corp", "spare"]), ["spare"]);
  const rooted = router({ routes: [{ domains: ["."], group: "public" }] });
  assert.deepEqual(unusedGroups(rooted, ["default", "public"]), []);
});
