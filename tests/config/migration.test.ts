/**
 * The migration guides' configs (docs/migration.md, tests/fixtures/migration/*.toml) are valid,
 * warn about nothing, and do what the guide says they replace.
 */
import assert from "node:assert/strict";
import {
  type Config,
  configWarnings,
  formatConfigError,
  isConfigError,
  loadConfig,
  parseConfig,
} from "../../lib/config/load.ts";
import { forwardingOf } from "../../lib/config/schema.ts";
import { routingSettings } from "../../lib/config/sections/routing.ts";
import { nameFromString } from "../../lib/dns/wire.ts";
import { routeLabel } from "../../lib/route/router.ts";
import { buildRouting, isRoutingProblem } from "../../lib/route/routing.ts";
import { parseHosts } from "../../lib/route/hosts.ts";

const DIR = new URL("../fixtures/migration/", import.meta.url);
const HOSTS_LAN = "192.168.1.2 printer.lan\n";

async function load(name: string): Promise<Config> {
  const path = decodeURIComponent(new URL(name, DIR).pathname);
  const c = await loadConfig(
    path,
    (p) => p === "/etc/hosts.lan" ? Promise.resolve(HOSTS_LAN) : Deno.readTextFile(p),
  );
  if (isConfigError(c)) assert.fail(formatConfigError(c));
  assert.deepEqual(configWarnings(c), []);
  return c;
}

function routes(c: Config, names: string[]): string[] {
  const built = buildRouting(
    routingSettings({ ...c, groups: new Set(c.upstreams.map((u) => u.group)) }),
    parseHosts(HOSTS_LAN).records,
  );
  if (isRoutingProblem(built)) assert.fail(JSON.stringify(built));
  return names.map((n) => routeLabel(built.router.route(nameFromString(n))));
}

Deno.test("the cloudflared proxy-dns replacement listens on 127.0.0.1:5053 and uses DoH", async () => {
  const c = await load("cloudflared.toml");
  assert.deepEqual(c.listeners.map((l) => l.url), ["udp://127.0.0.1:5053", "tcp://127.0.0.1:5053"]);
  assert.deepEqual(c.upstreams.map((u) => [u.protocol, u.hostname, u.path]), [
    ["https", "1.1.1.1", "/dns-query"],
    ["https", "1.0.0.1", "/dns-query"],
    ["https", "dns.google", "/dns-query"],
  ]);
  assert.equal(c.forwarding.bootstrap.length, 2);
});

Deno.test("the Stubby replacement keeps its DoT upstreams, auth names and round robin", async () => {
  const c = await load("stubby.toml");
  assert.deepEqual(c.upstreams.map((u) => [u.url, u.tlsName]), [
    ["tls://9.9.9.9:853", "dns.quad9.net"],
    ["tls://[2620:fe::fe]:853", "dns.quad9.net"],
    ["tls://185.49.141.37:853", "getdnsapi.net"],
  ]);
  assert.equal(forwardingOf(c, "default").strategy, "round_robin");
  assert.equal(c.forwarding.idleTimeoutMs, 10_000);
});

Deno.test("the dnsmasq replacement routes server=/domain/ lines, blocks, local data, rebinding", async () => {
  const c = await load("dnsmasq.toml");
  assert.deepEqual(
    routes(c, [
      "host.corp.example",
      "4.3.2.10.in-addr.arpa",
      "db.lab.example",
      "x.ads.example",
      "nas.lan",
      "printer.lan",
      "unknown.lan",
      "example.com",
    ]),
    ["corp", "corp", "lab", "blocked", "local", "local", "local", "default"],
  );
  assert.equal(c.upstreams.find((u) => u.group === "lab")?.port, 5353);
  assert.equal(c.routing.rebindingProtection, true);
  assert.deepEqual(c.routing.rebindingAllow, ["plex.direct"]);
});

Deno.test("docs/migration.md shows each fixture's config (comments aside)", async () => {
  const doc = Deno.readTextFileSync(new URL("../../docs/migration.md", import.meta.url));
  const blocks = [...doc.matchAll(/```toml\n# tests\/fixtures\/migration\/(\S+)\n([\s\S]*?)```/g)];
  assert.deepEqual(blocks.map((b) => b[1]).sort(), [
    "cloudflared.toml",
    "dnsmasq.toml",
    "stubby.toml",
  ]);
  for (const [, name, text] of blocks) {
    const fixture = await load(name);
    const shown = await parseConfig(text, {
      path: fixture.path,
      baseDir: "/",
      readFile: (p) => p === "/etc/hosts.lan" ? Promise.resolve(HOSTS_LAN) : Deno.readTextFile(p),
    });
    if (isConfigError(shown)) assert.fail(`${name}: ${formatConfigError(shown)}`);
    assert.deepEqual({ ...shown, path: "" }, { ...fixture, path: "" }, name);
  }
});
