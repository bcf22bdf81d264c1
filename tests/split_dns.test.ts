/**
 * Split DNS end to end, in-process: an internal plain-DNS Unbound serving corp.test (the "corp"
 * group) and a public-side DoT upstream (the fake, which records every query it gets) behind one
 * proxy. Internal names reach only the internal resolver, also while it is down; local zones,
 * records and hosts files answer with no upstream traffic; routes, records and hosts files reload
 * (SIGHUP path and the watcher on a fake clock) without losing the cache; rebinding on and off.
 */
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { QueryLog } from "../lib/metrics/query_log.ts";
import { testConfig } from "./helpers/proxy.ts";
import { buildQuery, parse, udpQuery } from "./helpers/dns_client.ts";
import { expectedAddress, type FakeDot, startFakeDot } from "./helpers/fake_dot.ts";
import { FakeHostsFs } from "./helpers/fake_hosts_fs.ts";
import { startProxy, type TestProxy } from "./helpers/proxy.ts";
import { toolTest } from "./helpers/tools.ts";
import { waitFor } from "./helpers/wait.ts";
import {
  CORP_ROUTE_TOML,
  CORP_ZONE,
  corpUpstreamToml,
  internalUnboundConfig,
  startUnbound,
  type Unbound,
} from "./helpers/unbound.ts";

/** Public answers with private addresses, for rebinding protection. */
const PUBLIC_PRIVATE: Record<string, string[]> = {
  "rebind.example": ["192.168.1.66", "203.0.113.7"],
  "private-only.example": ["10.0.0.1"],
  "allowed.plex.direct": ["192.168.1.20"],
};

function publicAnswer(q: dnsPacket.Packet): Partial<dnsPacket.Packet> | null {
  const question = q.questions?.[0];
  const addrs = question && PUBLIC_PRIVATE[question.name.toLowerCase()];
  if (!addrs || question.type !== "A") return null;
  return {
    answers: addrs.map((data: string) => ({
      name: question.name,
      type: "A",
      class: "IN",
      ttl: 300,
      data,
    })),
  };
}

interface Split {
  proxy: TestProxy;
  internal: Unbound;
  pub: FakeDot;
  hosts: FakeHostsFs;
  lines: string[];
  queryLog: QueryLog;
  /** The config TOML besides listeners and the public upstream (for reloads). */
  corpToml: string;
}

const ROUTES = `
${CORP_ROUTE_TOML}
[[routes]]
domains = ["lab.corp.test", "ads.example"]
action = "nxdomain"

[[routes]]
domains = ["guest.corp.test"]
action = "refuse"

[[routes]]
domains = ["pub.corp.test"]
group = "default"
`;

async function withSplit(
  extraToml: string,
  fn: (s: Split) => Promise<void>,
  hostsFiles: Record<string, string> = {},
): Promise<void> {
  const internal = await startUnbound({ config: internalUnboundConfig });
  const pub = await startFakeDot({ answerFor: publicAnswer });
  const hosts = new FakeHostsFs();
  for (const [path, text] of Object.entries(hostsFiles)) hosts.write(path, text);
  const lines: string[] = [];
  const clockForLog = { now: () => 0, schedule: () => () => {} };
  const queryLog = new QueryLog({
    transport: {
      send: (records) => {
        lines.push(...records.map((r) => r.line));
        return Promise.resolve(records.length);
      },
      close: () => Promise.resolve(),
    },
    wallClock: () => 0,
    clock: clockForLog,
  });
  const corpToml = corpUpstreamToml(internal.port) + extraToml;
  const proxy = await startProxy([pub], {
    extraToml: corpToml,
    readFile: hosts.readFile,
    hostsFs: hosts,
    queryLog,
  });
  try {
    await fn({ proxy, internal, pub, hosts, lines, queryLog, corpToml });
  } finally {
    await proxy.stop();
    await queryLog.close();
    await pub.close();
    await internal.stop();
  }
}

/** Names the public upstream was asked, lower-case, without the trailing dot. */
function publicNames(pub: FakeDot): string[] {
  return pub.queries.map((q) => (q.questions?.[0]?.name ?? "").toLowerCase());
}

function addresses(reply: Uint8Array): string[] {
  return (parse(reply).answers ?? []).filter((a: { type: string }) =>
    a.type === "A" || a.type === "AAAA"
  )
    .map((a: { type: string }) => String((a as { data?: unknown }).data));
}

/** The INFO-CODEs of the Extended DNS Errors in a reply. */
function edeCodes(reply: Uint8Array): number[] {
  const opt = parse(reply).additionals?.find((r: { type: string }) => r.type === "OPT") as
    | { options?: { code: number; data: Buffer }[] }
    | undefined;
  return (opt?.options ?? []).filter((o) => o.code === 15).map((o) => o.data.readUInt16BE(0));
}

const ask = (s: Split, name: string, type = "A") =>
  udpQuery(s.proxy.udp, buildQuery(name, type, 0x5151, { udpSize: 1232 }), 5000);

/** Resolves `pending` while moving the fake clock, for answers that wait on a timeout. */
async function withClock<T>(s: Split, pending: Promise<T>, stepMs = 500): Promise<T> {
  let done = false;
  const out = pending.finally(() => done = true);
  for (let i = 0; i < 200 && !done; i++) {
    s.proxy.clock.advance(stepMs);
    await new Promise((r) => setTimeout(r, 0));
  }
  return await out;
}

await toolTest({
  name: "internal names are answered by the internal group only, public names by the default group",
  tools: ["unbound"],
  async fn() {
    await withSplit(ROUTES, async (s) => {
      assert.deepEqual(addresses(await ask(s, "www.corp.test")), [CORP_ZONE.www]);
      assert.deepEqual(addresses(await ask(s, "DB.Corp.TEST")), [CORP_ZONE.db]);
      const ptr = parse(await ask(s, "3.2.1.10.in-addr.arpa", "PTR"));
      assert.equal(String((ptr.answers?.[0] as { data: unknown }).data), "www.corp.test");
      // Label boundary: xcorp.test and corp.test.example are not under corp.test.
      assert.deepEqual(addresses(await ask(s, "xcorp.test")), [expectedAddress("xcorp.test")]);
      assert.deepEqual(addresses(await ask(s, "corp.test.example")), [
        expectedAddress("corp.test.example"),
      ]);
      // Longest suffix: pub.corp.test is routed back to the default group.
      assert.deepEqual(addresses(await ask(s, "pub.corp.test")), [
        expectedAddress("pub.corp.test"),
      ]);
      assert.deepEqual(publicNames(s.pub).sort(), [
        "corp.test.example",
        "pub.corp.test",
        "xcorp.test",
      ]);
      // The internal resolver logged the internal names and nothing else.
      const log = s.internal.log();
      assert.match(log, /www\.corp\.test\. A IN/);
      assert.match(log, /db\.corp\.test\. A IN/i);
      assert.doesNotMatch(log, /xcorp|example/);
    });
  },
});

await toolTest({
  name: "blocked suffixes inside a routed zone answer NXDOMAIN or REFUSED with EDE 15, unforwarded",
  tools: ["unbound"],
  async fn() {
    await withSplit(ROUTES, async (s) => {
      for (const name of ["lab.corp.test", "x.y.lab.corp.test", "ads.example", "a.ads.example"]) {
        const reply = await ask(s, name);
        const msg = parse(reply);
        assert.equal(msg.rcode, "NXDOMAIN", name);
        assert.equal(msg.flag_aa, true, name);
        assert.equal(msg.authorities?.[0]?.type, "SOA", name);
        assert.deepEqual(edeCodes(reply), [15], name);
      }
      const refused = await ask(s, "printer.guest.corp.test");
      assert.equal(parse(refused).rcode, "REFUSED");
      assert.deepEqual(edeCodes(refused), [15]);
      assert.deepEqual(publicNames(s.pub), []);
      assert.doesNotMatch(s.internal.log(), /lab\.corp|guest\.corp/);
    });
  },
});

await toolTest({
  name: "while the internal group is down its names get SERVFAIL, never the public answer",
  tools: ["unbound"],
  async fn() {
    await withSplit(ROUTES, async (s) => {
      assert.deepEqual(addresses(await ask(s, "www.corp.test")), [CORP_ZONE.www]);
      await s.internal.stop();
      const reply = await withClock(s, ask(s, "db.corp.test"));
      assert.equal(parse(reply).rcode, "SERVFAIL");
      assert.ok(edeCodes(reply).some((c) => c === 22 || c === 23), `EDE ${edeCodes(reply)}`);
      // Public names still work, and the public side never saw an internal name.
      assert.deepEqual(addresses(await ask(s, "www.example")), [expectedAddress("www.example")]);
      assert.deepEqual(publicNames(s.pub), ["www.example"]);
    });
  },
});

await toolTest({
  name: "local zones and localhost are answered here with no upstream traffic",
  tools: ["unbound"],
  async fn() {
    await withSplit(ROUTES, async (s) => {
      const lo = parse(await ask(s, "localhost"));
      assert.equal(lo.flag_aa, true);
      assert.deepEqual(addresses(await ask(s, "localhost")), ["127.0.0.1"]);
      assert.deepEqual(addresses(await ask(s, "app.localhost", "AAAA")), ["::1"]);
      const ptr = parse(await ask(s, "1.0.0.127.in-addr.arpa", "PTR"));
      assert.equal(String((ptr.answers?.[0] as { data: unknown }).data), "localhost");
      for (
        const name of ["printer.local", "x.home.arpa", "5.1.168.192.in-addr.arpa", "a.invalid"]
      ) {
        const msg = parse(await ask(s, name));
        assert.equal(msg.rcode, "NXDOMAIN", name);
        assert.equal(msg.flag_aa, true, name);
        assert.equal(msg.authorities?.[0]?.type, "SOA", name);
      }
      assert.deepEqual(publicNames(s.pub), []);
      assert.doesNotMatch(s.internal.log(), /localhost|home\.arpa|168\.192/);
    });
  },
});

await toolTest({
  name: "local_zones = false forwards the private reverse zones to the default group",
  tools: ["unbound"],
  async fn() {
    await withSplit(`[routing]\nlocal_zones = false\n`, async (s) => {
      await ask(s, "5.1.168.192.in-addr.arpa", "PTR");
      assert.deepEqual(publicNames(s.pub), ["5.1.168.192.in-addr.arpa"]);
    });
  },
});

const RECORDS = `
[[records]]
name = "nas.home.arpa"
type = "A"
data = "192.168.1.10"

[[records]]
name = "alias.home.arpa"
type = "CNAME"
data = "nas.home.arpa"

[routing]
hosts_files = ["/etc/hosts.lan"]
hosts_poll = "5s"
`;

await toolTest({
  name:
    "records and hosts files answer locally and reload on SIGHUP and on change; the cache stays",
  tools: ["unbound"],
  async fn() {
    await withSplit(
      ROUTES + RECORDS,
      async (s) => {
        const nas = await ask(s, "nas.home.arpa");
        assert.deepEqual(addresses(nas), ["192.168.1.10"]);
        assert.equal(parse(nas).flag_aa, true);
        assert.equal(parse(nas).answers?.[0]?.ttl, 300);
        // Another type at a name with data: NODATA with the zone's SOA, not a forward.
        const nodata = parse(await ask(s, "nas.home.arpa", "AAAA"));
        assert.equal(nodata.rcode, "NOERROR");
        assert.equal(nodata.answers?.length, 0);
        assert.equal(nodata.authorities?.[0]?.type, "SOA");
        const alias = parse(await ask(s, "alias.home.arpa"));
        assert.deepEqual(alias.answers?.map((a: { type: string }) => a.type), ["CNAME", "A"]);
        assert.deepEqual(addresses(await ask(s, "printer.lan")), ["192.168.1.2"]);
        const rev = parse(await ask(s, "2.1.168.192.in-addr.arpa", "PTR"));
        assert.equal(String((rev.answers?.[0] as { data: unknown }).data), "printer.lan");
        // A hosts name overrides the route of its suffix (local data at exactly the name).
        assert.deepEqual(addresses(await ask(s, "vpn.corp.test")), ["10.8.0.1"]);
        assert.deepEqual(publicNames(s.pub), []);

        // A public answer in the cache, to see that reloads keep it.
        await ask(s, "cached.example");
        const cachedBefore = s.proxy.server.cache!.stats().entries;

        // The watcher: a changed file is picked up at the next poll of the fake clock.
        s.hosts.write("/etc/hosts.lan", "192.168.1.3 printer.lan\n10.8.0.1 vpn.corp.test\n");
        s.proxy.clock.advance(5_000);
        await waitFor(() => s.proxy.server.routing.generation === 2, "the hosts file is reloaded");
        assert.deepEqual(addresses(await ask(s, "printer.lan")), ["192.168.1.3"]);

        // A bad line keeps the running data.
        s.hosts.write("/etc/hosts.lan", "192.168.1.300 printer.lan\n");
        s.proxy.clock.advance(5_000);
        await waitFor(() => s.hosts.reads >= 3, "the bad hosts file is read");
        assert.equal(s.proxy.server.routing.generation, 2);
        assert.deepEqual(addresses(await ask(s, "printer.lan")), ["192.168.1.3"]);

        // SIGHUP (server.reload): new records and a fixed hosts file, cache untouched.
        s.hosts.write("/etc/hosts.lan", "192.168.1.4 printer.lan\n");
        const next = await testConfig(
          [{ hostname: s.pub.hostname, port: s.pub.port }],
          s.corpToml.replace("192.168.1.10", "192.168.1.11"),
          "127.0.0.1",
          s.hosts.readFile,
        );
        assert.deepEqual(await s.proxy.server.reload(next), []);
        assert.deepEqual(addresses(await ask(s, "nas.home.arpa")), ["192.168.1.11"]);
        assert.deepEqual(addresses(await ask(s, "printer.lan")), ["192.168.1.4"]);
        // vpn.corp.test left the hosts file: it is the internal group's again.
        assert.equal(parse(await ask(s, "vpn.corp.test")).rcode, "NXDOMAIN");
        assert.ok(s.proxy.server.cache!.stats().entries >= cachedBefore);
        await ask(s, "cached.example");
        assert.deepEqual(publicNames(s.pub).filter((n) => n === "cached.example").length, 1);

        // SIGHUP with a broken hosts file: the running hosts data stays.
        s.hosts.write("/etc/hosts.lan", "not-an-address printer.lan\n");
        await s.proxy.server.reload(next);
        assert.deepEqual(addresses(await ask(s, "printer.lan")), ["192.168.1.4"]);
      },
      { "/etc/hosts.lan": "192.168.1.2 printer.lan\n10.8.0.1 vpn.corp.test\n" },
    );
  },
});

await toolTest({
  name: "a reload that moves a name to another group makes its cached answer a miss",
  tools: ["unbound"],
  async fn() {
    await withSplit("", async (s) => {
      // No route yet: corp.test goes to the default (public) group and is cached.
      assert.deepEqual(addresses(await ask(s, "www.corp.test")), [
        expectedAddress("www.corp.test"),
      ]);
      await ask(s, "www.corp.test");
      assert.equal(publicNames(s.pub).length, 1, "the second answer came from the cache");

      const routed = await testConfig(
        [{ hostname: s.pub.hostname, port: s.pub.port }],
        s.corpToml + ROUTES,
        "127.0.0.1",
        s.hosts.readFile,
      );
      await s.proxy.server.reload(routed);
      assert.deepEqual(addresses(await ask(s, "www.corp.test")), [CORP_ZONE.www]);
      assert.equal(publicNames(s.pub).length, 1);

      // A reload that leaves the route as it is keeps the entry.
      await s.proxy.server.reload(routed);
      await ask(s, "www.corp.test");
      assert.equal(s.internal.log().match(/www\.corp\.test\. A IN/g)?.length, 1);
    });
  },
});

await toolTest({
  name: "rebinding protection removes private addresses from public names only; off by default",
  tools: ["unbound"],
  async fn() {
    await withSplit(ROUTES, async (s) => {
      assert.deepEqual(addresses(await ask(s, "rebind.example")), ["192.168.1.66", "203.0.113.7"]);
    });
    const on = `[routing]\nrebinding_protection = true\nrebinding_allow = ["plex.direct"]\n`;
    await withSplit(ROUTES + on, async (s) => {
      assert.deepEqual(addresses(await ask(s, "rebind.example")), ["203.0.113.7"]);
      const empty = parse(await ask(s, "private-only.example"));
      assert.equal(empty.rcode, "NOERROR");
      assert.equal(empty.answers?.length, 0);
      // From the cache: still filtered.
      assert.deepEqual(addresses(await ask(s, "rebind.example")), ["203.0.113.7"]);
      // Internal groups and allowed domains keep private addresses.
      assert.deepEqual(addresses(await ask(s, "www.corp.test")), [CORP_ZONE.www]);
      assert.deepEqual(addresses(await ask(s, "allowed.plex.direct")), ["192.168.1.20"]);
      const text = await s.proxy.server.metrics.render();
      assert.match(text, /dotproxy_rebinding_filtered_total\{action="remove"\} 2/);
    });
    const refuse = on + `rebinding_action = "refuse"\n`;
    await withSplit(ROUTES + refuse, async (s) => {
      const reply = await ask(s, "rebind.example");
      assert.equal(parse(reply).rcode, "REFUSED");
      assert.deepEqual(edeCodes(reply), [15]);
      assert.deepEqual(addresses(await ask(s, "www.example")), [expectedAddress("www.example")]);
    });
  },
});

await toolTest({
  name: "metrics and the query log show the route that answered",
  tools: ["unbound"],
  async fn() {
    await withSplit(ROUTES, async (s) => {
      await ask(s, "www.corp.test");
      await ask(s, "www.example");
      await ask(s, "localhost");
      await ask(s, "ads.example");
      await ask(s, "x.guest.corp.test");
      const text = await s.proxy.server.metrics.render();
      for (const route of ["corp", "default", "local", "blocked", "refused"]) {
        assert.match(text, new RegExp(`dotproxy_route_queries_total\\{route="${route}"\\} 1`));
      }
      await s.queryLog.flush();
      const routes = s.lines.map((l) => JSON.parse(l)).map((e) => `${e.name} ${e.route}`);
      assert.deepEqual(routes, [
        "www.corp.test. corp",
        "www.example. default",
        "localhost. local",
        "ads.example. blocked",
        "x.guest.corp.test. refused",
      ]);
    });
  },
});
