/**
 * Split DNS configuration: [[upstreams]] group, [[groups]], [[routes]], [[records]], [routing].
 * Every bad input names the key path, the value and (hosts files) file:line, as --check and
 * start-up print it.
 */
import assert from "node:assert/strict";
import {
  configWarnings,
  formatConfigError,
  isConfigError,
  restartNeeded,
} from "../../lib/config/load.ts";
import { DEFAULT_FORWARDING, DEFAULT_ROUTING, forwardingOf } from "../../lib/config/schema.ts";
import { acceptedConfig as ok, LISTENER, MINIMAL, parseWithFiles as parse } from "./helpers.ts";

const CORP = `[[upstreams]]\nurl = "udp://10.0.0.53"\ngroup = "corp"\n`;
const CORP_ROUTE = `[[routes]]\ndomains = ["corp.example"]\ngroup = "corp"\n`;

/** The one-line message --check prints for `toml`, which must be invalid. */
async function rejected(toml: string, files: Record<string, string> = {}): Promise<string> {
  const c = await parse(toml, files);
  assert.ok(isConfigError(c), "expected the config to be rejected");
  return formatConfigError(c);
}

Deno.test("without split-DNS keys: one default group, no routes or records, local zones on", async () => {
  const c = await ok(MINIMAL);
  assert.equal(c.upstreams[0].group, "default");
  assert.deepEqual(c.groups, []);
  assert.deepEqual(c.routes, []);
  assert.deepEqual(c.records, []);
  assert.deepEqual(c.routing, { ...DEFAULT_ROUTING });
  assert.equal(c.routing.localZones, true);
  assert.equal(c.routing.rebindingProtection, false);
  assert.equal(c.routing.hostsPollMs, 5000);
});

Deno.test("groups, routes, records and [routing] are read as written", async () => {
  const c = await ok(
    MINIMAL + CORP + CORP_ROUTE +
      `[[groups]]\nname = "corp"\nstrategy = "round_robin"\nattempt_timeout = "500ms"\n` +
      `[[routes]]\ndomains = ["ads.example", "Tracker.Example."]\naction = "nxdomain"\n` +
      `[[records]]\nname = "nas.home.arpa"\ntype = "a"\ndata = "192.168.1.10"\n` +
      `[[records]]\nname = "mail.home.arpa"\ntype = "MX"\ndata = "10 nas.home.arpa"\nttl = 60\n` +
      `[routing]\nlocal_zones = false\nhosts_files = ["hosts"]\nhosts_poll = "0s"\n` +
      `rebinding_protection = true\nrebinding_action = "refuse"\nrebinding_allow = ["plex.direct"]\n`,
    { "/etc/dotproxy/hosts": "192.168.1.2 printer.lan\n" },
  );
  assert.equal(c.upstreams[1].group, "corp");
  assert.deepEqual(c.routes, [
    { domains: ["corp.example"], group: "corp" },
    { domains: ["ads.example", "Tracker.Example."], action: "nxdomain" },
  ]);
  assert.deepEqual(c.records, [
    { name: "nas.home.arpa", type: "A", data: "192.168.1.10", ttl: 300 },
    { name: "mail.home.arpa", type: "MX", data: "10 nas.home.arpa", ttl: 60 },
  ]);
  assert.deepEqual(c.routing, {
    localZones: false,
    hostsFiles: ["/etc/dotproxy/hosts"],
    hostsPollMs: 0,
    rebindingProtection: true,
    rebindingAction: "refuse",
    rebindingAllow: ["plex.direct"],
  });
  const corp = forwardingOf(c, "corp");
  assert.equal(corp.strategy, "round_robin");
  assert.equal(corp.attemptTimeoutMs, 500);
  assert.equal(corp.connectTimeoutMs, DEFAULT_FORWARDING.connectTimeoutMs);
  assert.equal(forwardingOf(c, "default"), c.forwarding);
});

Deno.test("every upstream in a group is valid when a root route sends the rest somewhere", async () => {
  const c = await ok(
    LISTENER + CORP + `[[routes]]\ndomains = ["."]\ngroup = "corp"\n`,
  );
  assert.deepEqual(c.routes, [{ domains: ["."], group: "corp" }]);
});

const BAD: { name: string; toml: string; files?: Record<string, string>; message: RegExp }[] = [
  {
    name: "a route domain that is not a name",
    toml: MINIMAL + `[[routes]]\ndomains = ["ok.example", "bad..example"]\naction = "refuse"\n`,
    message: /routes\[0\]\.domains\[1\] = "bad\.\.example": .*not a valid domain name/,
  },
  {
    name: "a route domain with a wildcard",
    toml: MINIMAL + `[[routes]]\ndomains = ["*.example"]\naction = "refuse"\n`,
    message: /routes\[0\]\.domains\[0\] = "\*\.example": .*wildcard/,
  },
  {
    name: "a domain in two routes (any case, trailing dot)",
    toml: MINIMAL + CORP + CORP_ROUTE +
      `[[routes]]\ndomains = ["Corp.Example."]\naction = "nxdomain"\n`,
    message:
      /routes\[1\]\.domains\[0\] = "Corp\.Example\.": corp\.example\. is already routed by routes\[0\]/,
  },
  {
    name: "a route to a group no upstream has",
    toml: MINIMAL + CORP_ROUTE,
    message:
      /routes\[0\]\.group = "corp": no upstream has group = "corp"; groups with upstreams: "default"/,
  },
  {
    name: "a route with both group and action",
    toml: MINIMAL + CORP +
      `[[routes]]\ndomains = ["a.example"]\ngroup = "corp"\naction = "refuse"\n`,
    message: /routes\[0\] = .*either group or action, not both/,
  },
  {
    name: "a route with neither group nor action",
    toml: MINIMAL + `[[routes]]\ndomains = ["a.example"]\n`,
    message:
      /routes\[0\] = .*needs group = "\.\.\." .* or action = "nxdomain" \| "refuse" \| "local"/,
  },
  {
    name: "an unknown route action",
    toml: MINIMAL + `[[routes]]\ndomains = ["a.example"]\naction = "block"\n`,
    message: /routes\[0\]\.action = "block": must be one of "nxdomain", "refuse", "local"/,
  },
  {
    name: "a route without domains",
    toml: MINIMAL + `[[routes]]\ndomains = []\naction = "refuse"\n`,
    message: /routes\[0\]\.domains = \[\]: must list at least one domain/,
  },
  {
    name: "a route domain given as a string",
    toml: MINIMAL + `[[routes]]\ndomains = "corp.example"\naction = "refuse"\n`,
    message:
      /routes\[0\]\.domains = "corp\.example": expected an array, e\.g\. domains = \["corp\.example"\]/,
  },
  {
    name: "an unknown key in a route",
    toml: MINIMAL + `[[routes]]\ndomain = ["a.example"]\naction = "refuse"\n`,
    message: /routes\[0\]\.domain = .*unknown key; did you mean "domains"\?/,
  },
  {
    name: "A data that is not an address",
    toml: MINIMAL + `[[records]]\nname = "nas.lan"\ntype = "A"\ndata = "192.168.1.300"\n`,
    message: /records\[0\]\.data = "192\.168\.1\.300": A data must be an IPv4 address/,
  },
  {
    name: "MX data without a preference",
    toml: MINIMAL + `[[records]]\nname = "lan"\ntype = "MX"\ndata = "mail.lan"\n`,
    message: /records\[0\]\.data = "mail\.lan": MX data must be 'PREFERENCE HOST'/,
  },
  {
    name: "an unsupported record type",
    toml: MINIMAL + `[[records]]\nname = "lan"\ntype = "NAPTR"\ndata = "x"\n`,
    message:
      /records\[0\]\.type = "NAPTR": must be one of "A", "AAAA", "CNAME", "TXT", "PTR", "MX", "SRV"/,
  },
  {
    name: "a CNAME beside other data",
    toml: MINIMAL + `[[records]]\nname = "x.lan"\ntype = "A"\ndata = "192.168.1.1"\n` +
      `[[records]]\nname = "x.lan"\ntype = "CNAME"\ndata = "y.lan"\n`,
    message: /records\[1\]\.name = "x\.lan": x\.lan\. cannot have a CNAME and other data/,
  },
  {
    name: "a record TTL out of range",
    toml: MINIMAL + `[[records]]\nname = "x.lan"\ntype = "A"\ndata = "192.168.1.1"\nttl = -1\n`,
    message: /records\[0\]\.ttl = -1: must be 0-2147483647/,
  },
  {
    name: "a missing hosts file",
    toml: MINIMAL + `[routing]\nhosts_files = ["/etc/hosts"]\n`,
    message: /routing\.hosts_files\[0\] = "\/etc\/hosts": cannot read \/etc\/hosts: No such file/,
  },
  {
    name: "a bad line in a hosts file, with file:line",
    toml: MINIMAL + `[routing]\nhosts_files = ["hosts"]\n`,
    files: { "/etc/dotproxy/hosts": "# mine\n127.0.0.1 localhost\n\n10.0.0.300 broken.lan\n" },
    message:
      /routing\.hosts_files\[0\] = "hosts": \/etc\/dotproxy\/hosts:4: "10\.0\.0\.300" is not an IPv4 or IPv6 address/,
  },
  {
    name: "a hosts name conflicting with a CNAME record",
    toml: MINIMAL + `[[records]]\nname = "printer.lan"\ntype = "CNAME"\ndata = "p.lan"\n` +
      `[routing]\nhosts_files = ["hosts"]\n`,
    files: { "/etc/dotproxy/hosts": "192.168.1.2 printer.lan\n" },
    message:
      /routing\.hosts_files = \["\/etc\/dotproxy\/hosts"\]: printer\.lan\. cannot have a CNAME/,
  },
  {
    name: "a bad rebinding_allow domain",
    toml: MINIMAL +
      `[routing]\nrebinding_protection = true\nrebinding_allow = ["ok.example", "a..b"]\n`,
    message: /routing\.rebinding_allow\[1\] = "a\.\.b": .*not a valid domain name/,
  },
  {
    name: "a [[groups]] entry for a group without upstreams",
    toml: MINIMAL + `[[groups]]\nname = "corp"\nstrategy = "parallel"\n`,
    message: /groups\[0\]\.name = "corp": no \[\[upstreams\]\] has group = "corp"/,
  },
  {
    name: "two [[groups]] entries for one group",
    toml: MINIMAL + CORP + CORP_ROUTE + `[[groups]]\nname = "corp"\n[[groups]]\nname = "corp"\n`,
    message: /groups\[1\]\.name = "corp": duplicate of groups\[0\]\.name/,
  },
  {
    name: "a group override of a global key",
    toml: MINIMAL + CORP + CORP_ROUTE + `[[groups]]\nname = "corp"\nbootstrap = ["9.9.9.9"]\n`,
    message: /groups\[0\]\.bootstrap = .*unknown key; bootstrap belongs in \[forwarding\]/,
  },
  {
    name: "a group attempt_timeout above query_timeout",
    toml: MINIMAL + CORP + CORP_ROUTE + `[[groups]]\nname = "corp"\nattempt_timeout = "10s"\n`,
    message: /groups\[0\]\.attempt_timeout = "10s": must not exceed server\.query_timeout/,
  },
  {
    name: "a reserved group name",
    toml: MINIMAL + `[[upstreams]]\nurl = "udp://10.0.0.53"\ngroup = "local"\n`,
    message: /upstreams\[1\]\.group = "local": "local" is reserved/,
  },
  {
    name: "a group name that is not a token",
    toml: MINIMAL + `[[upstreams]]\nurl = "udp://10.0.0.53"\ngroup = "my corp"\n`,
    message: /upstreams\[1\]\.group = "my corp": a group name is 1-63 letters/,
  },
  {
    name: "no upstream left for unrouted names",
    toml: LISTENER + CORP + CORP_ROUTE,
    message: /upstreams: every upstream has a group, so names no route covers would have nowhere/,
  },
];

for (const c of BAD) {
  Deno.test(`--check rejects ${c.name}, naming the key and value`, async () => {
    assert.match(await rejected(c.toml, c.files), c.message);
  });
}

Deno.test("a group with upstreams that no route uses is a warning, not an error", async () => {
  const c = await ok(MINIMAL + CORP);
  const warnings = configWarnings(c);
  assert.equal(warnings.length, 1);
  assert.match(
    warnings[0],
    /upstreams group = "corp" \(udp:\/\/10\.0\.0\.53\): no \[\[routes\]\] entry has group = "corp"/,
  );
  assert.deepEqual(configWarnings(await ok(MINIMAL + CORP + CORP_ROUTE)), []);
});

Deno.test("a hosts line with a zoned address is skipped with a file:line warning", async () => {
  const c = await ok(MINIMAL + `[routing]\nhosts_files = ["hosts"]\n`, {
    "/etc/dotproxy/hosts": "::1 localhost\nfe80::1%lo0 localhost\n",
  });
  assert.deepEqual(configWarnings(c).filter((w) => w.includes("hosts")), [
    "/etc/dotproxy/hosts:2: fe80::1%lo0: an address with a zone cannot be served over DNS; line skipped",
  ]);
});

Deno.test("routes, groups, records and [routing] all reload without a restart", async () => {
  const before = await ok(MINIMAL);
  const after = await ok(
    MINIMAL + CORP + CORP_ROUTE + `[[groups]]\nname = "corp"\nstrategy = "parallel"\n` +
      `[[records]]\nname = "nas.lan"\ntype = "A"\ndata = "192.168.1.10"\n` +
      `[routing]\nlocal_zones = false\nrebinding_protection = true\n`,
  );
  assert.deepEqual(restartNeeded(before, after), []);
  assert.deepEqual(restartNeeded(after, before), []);
});
