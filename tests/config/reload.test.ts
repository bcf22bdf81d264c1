/** Which changes a reload reports as needing a restart, derived from the rows' reloadable flag. */
import assert from "node:assert/strict";
import { type Config, isConfigError, parseConfig, restartNeeded } from "../../lib/config/load.ts";
import { BASE_DIR, CONFIG_PATH, fakeFiles, LISTENER, TLS_FILES, UPSTREAM } from "./helpers.ts";

const WEB = `[[listeners]]\nurl = "http://127.0.0.1:8080"\n`;
const BASE = LISTENER + WEB + UPSTREAM;

async function config(toml: string): Promise<Config> {
  const c = await parseConfig(toml, {
    path: CONFIG_PATH,
    baseDir: BASE_DIR,
    readFile: fakeFiles(TLS_FILES),
  });
  if (isConfigError(c)) throw new Error(c.message);
  return c;
}

const cases: { name: string; next: string; restart: string[] }[] = [
  { name: "the same config", next: BASE, restart: [] },
  {
    name: "upstreams, forwarding, access, rate limits, policy, log: all applied",
    next: LISTENER + WEB + `[[upstreams]]\nurl = "tls://9.9.9.9"\ntls_name = "dns.quad9.net"\n` +
      `[forwarding]\nstrategy = "fastest"\n[access]\naction = "drop"\n[rate_limit]\nqps = 5\n` +
      `[policy]\nany_queries = "refuse"\n[log]\nlevel = "debug"\n[limits]\nmax_in_flight = 5\n`,
    restart: [],
  },
  {
    name: "cache timers are applied, cache sizing is not",
    next: BASE + `[cache]\nprefetch = false\nstale_answer_after = "1s"\nmax_entries = 10\n` +
      `max_ttl = "1h"\n`,
    restart: ["cache.max_entries", "cache.max_ttl"],
  },
  {
    name: "a listener address",
    next: `[[listeners]]\nurl = "udp://127.0.0.1:5054"\n` + WEB + UPSTREAM,
    restart: ["listeners[0].url"],
  },
  {
    name: "the same listener address written differently",
    next: `[[listeners]]\nurl = "UDP://127.0.0.1:5053"\n` + WEB + UPSTREAM,
    restart: [],
  },
  {
    name: "a listener's trusted proxies and header, but not its access rules",
    next: LISTENER + WEB + `trusted_proxies = ["10.0.0.1"]\nclient_header = "x-real-ip"\n` +
      `[listeners.access]\naction = "drop"\n` + UPSTREAM,
    restart: ["listeners[1].trusted_proxies", "listeners[1].client_header"],
  },
  {
    name: "a listener added",
    next: BASE + LISTENER.replace("5053", "5054"),
    restart: ["listeners[2]"],
  },
  {
    name: "a certificate changed is reloaded by the listener",
    next: BASE + `[[listeners]]\nurl = "tls://127.0.0.1:853"\ncert_file = "cert.pem"\n` +
      `key_file = "key.pem"\n`,
    restart: ["listeners[2]"],
  },
  {
    name: "client connection limits are fixed at bind",
    next: BASE + `[limits]\ntcp_max_connections = 5\n[server]\ntcp_idle_timeout = "1s"\n`,
    restart: ["server.tcp_idle_timeout", "limits.tcp_max_connections"],
  },
  {
    name: "the admin endpoint turned on",
    next: BASE + `[admin]\naddress = "127.0.0.1:9153"\n`,
    restart: ["admin"],
  },
  {
    name: "the query log",
    next: BASE + `[query_log]\nenabled = true\nsink = "file"\npath = "q.log"\n`,
    restart: ["query_log.enabled", "query_log.sink", "query_log.path"],
  },
];

for (const c of cases) {
  Deno.test(`restartNeeded: ${c.name}`, async () => {
    assert.deepEqual(restartNeeded(await config(BASE), await config(c.next)), c.restart);
  });
}

Deno.test("restartNeeded: the admin address moved", async () => {
  const a = await config(BASE + `[admin]\naddress = "127.0.0.1:9153"\n`);
  const b = await config(BASE + `[admin]\naddress = "127.0.0.1:9154"\n`);
  assert.deepEqual(restartNeeded(a, b), ["admin.address"]);
});
