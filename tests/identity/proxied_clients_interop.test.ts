/**
 * dotproxy behind real load balancers: HAProxy (send-proxy-v2) in front of the TCP and DoT
 * listeners, dnsdist (useProxyProtocol=true) in front of the UDP and TCP listeners. Clients bind
 * 127.0.0.2 and 127.0.0.3 (dig/kdig -b) while the proxies connect from 127.0.0.1: the ACL (which
 * allows 127.0.0.2 only), the query log (client and client_name) and the per-client metric must
 * all see the client, not the proxy. With CI=true a missing tool fails these tests.
 */
import assert from "node:assert/strict";
import { isConfigError, parseConfig } from "../../lib/config/load.ts";
import type { QueryLog, QueryLogEntry } from "../../lib/metrics/query_log.ts";
import { type Server, startServer } from "../../lib/server.ts";
import { systemClock } from "../../lib/sys/clock.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { freeDualPort, startDnsdist, startHaproxy } from "../helpers/daemon.ts";
import { type FakeDot, startFakeDot } from "../helpers/fake_dot.ts";
import { fixturePath } from "../helpers/fixtures.ts";
import { digArgs, runTool, toolTest } from "../helpers/tools.ts";
import { freePort } from "../helpers/unbound.ts";

/** dotproxy with PROXY protocol from 127.0.0.1 on udp+tcp (one port) and tls. */
interface Running {
  server: Server;
  upstream: FakeDot;
  port: number;
  tlsPort: number;
  logged: QueryLogEntry[];
  stop(): Promise<void>;
}

async function startDotproxy(): Promise<Running> {
  const upstream = await startFakeDot();
  const port = freeDualPort();
  const tlsPort = freePort();
  const proxied = `proxy_protocol = true\ntrusted_proxies = ["127.0.0.1"]\n`;
  const toml = `
[[listeners]]
url = "udp://127.0.0.1:${port}"
${proxied}
[[listeners]]
url = "tcp://127.0.0.1:${port}"
${proxied}
[[listeners]]
url = "tls://127.0.0.1:${tlsPort}"
cert_file = "${fixturePath("server.pem")}"
key_file = "${fixturePath("server-key.pem")}"
${proxied}
[[upstreams]]
url = "tls://127.0.0.1:${upstream.port}"
tls_name = "dns.test"
ca_file = "${fixturePath("ca.pem")}"

[access]
allow = ["127.0.0.2/32"]

[[clients]]
name = "lab"
networks = ["127.0.0.2/32"]
`;
  const config = await parseConfig(toml, {
    path: "interop.toml",
    baseDir: "/",
    readFile: (p) => Deno.readTextFile(p),
  });
  if (isConfigError(config)) throw new Error(config.message);
  const logged: QueryLogEntry[] = [];
  const queryLog = { log: (e: QueryLogEntry) => logged.push(e) } as unknown as QueryLog;
  const server = await startServer(config, {
    clock: systemClock,
    random: cryptoRandom(),
    queryLog,
  });
  return {
    server,
    upstream,
    port,
    tlsPort,
    logged,
    stop: async () => {
      await server.stop();
      await upstream.close();
    },
  };
}

/**
 * Asks dig or kdig for who.example from 127.0.0.1:`port` bound to `from`: the status it reports
 * ("NOERROR", "REFUSED"), or its output if none. `args` go last (transport flags).
 */
async function ask(
  tool: "dig" | "kdig",
  bin: string,
  from: string,
  port: number,
  args: string[] = [],
): Promise<string> {
  const caFile = tool === "kdig" ? fixturePath("ca.pem") : undefined;
  const text = await runTool(bin, [
    "-b",
    from,
    ...digArgs(tool, port, caFile),
    ...args,
    "who.example",
  ]);
  return /status: ([A-Z]+)/.exec(text)?.[1] ?? text;
}

async function clientCount(server: Server, client: string): Promise<number> {
  const text = await server.metrics.render();
  const m = new RegExp(`dotproxy_client_queries_total\\{client="${client}"\\} (\\d+)`).exec(text);
  return Number(m?.[1] ?? 0);
}

await toolTest({
  name: "HAProxy send-proxy-v2 before the TCP and DoT listeners: ACL, log, metrics see the client",
  tools: ["haproxy", "dig", "kdig"],
  async fn({ dig, kdig }) {
    const d = await startDotproxy();
    const tcpFront = freePort();
    const tlsFront = freePort();
    const haproxy = await startHaproxy([
      { front: tcpFront, backend: d.port, send: "send-proxy-v2" },
      { front: tlsFront, backend: d.tlsPort, send: "send-proxy-v2" },
    ]);
    try {
      const viaTcp = (from: string) => ask("dig", dig, from, tcpFront, ["+tcp"]);
      const viaTls = (from: string) => ask("kdig", kdig, from, tlsFront);
      assert.equal(await viaTcp("127.0.0.2"), "NOERROR", haproxy.log());
      assert.equal(await viaTls("127.0.0.2"), "NOERROR", haproxy.log());
      assert.equal(await viaTcp("127.0.0.3"), "REFUSED", "the ACL saw 127.0.0.3, not the proxy");
      assert.equal(await viaTls("127.0.0.3"), "REFUSED");
      const seen = d.logged.map((e) => [e.protocol, e.client, e.clientName ?? null]);
      assert.deepEqual(seen, [
        ["tcp", "127.0.0.2", "lab"],
        ["tls", "127.0.0.2", "lab"],
        ["tcp", "127.0.0.3", null],
        ["tls", "127.0.0.3", null],
      ]);
      assert.equal(await clientCount(d.server, "lab"), 2);
      assert.equal(await clientCount(d.server, "anonymous"), 2);
    } finally {
      await haproxy.stop();
      await d.stop();
    }
  },
});

await toolTest({
  name:
    "dnsdist useProxyProtocol before the UDP and TCP listeners: ACL, log, metrics see the client",
  tools: ["dnsdist", "dig"],
  async fn({ dig }) {
    const d = await startDotproxy();
    const front = freeDualPort();
    const dnsdist = await startDnsdist(front, d.port);
    try {
      const viaUdp = (from: string) => ask("dig", dig, from, front);
      const viaTcp = (from: string) => ask("dig", dig, from, front, ["+tcp"]);
      assert.equal(await viaUdp("127.0.0.2"), "NOERROR", dnsdist.log());
      assert.equal(await viaTcp("127.0.0.2"), "NOERROR", dnsdist.log());
      assert.equal(await viaUdp("127.0.0.3"), "REFUSED", "the ACL saw 127.0.0.3, not dnsdist");
      const seen = d.logged.map((e) => [e.protocol, e.client, e.clientName ?? null]);
      assert.deepEqual(seen, [
        ["udp", "127.0.0.2", "lab"],
        ["tcp", "127.0.0.2", "lab"],
        ["udp", "127.0.0.3", null],
      ]);
      assert.equal(await clientCount(d.server, "lab"), 2);
      const text = await d.server.metrics.render();
      assert.match(text, /dotproxy_acl_refused_total\{protocol="udp"\} 1\b/);
    } finally {
      await dnsdist.stop();
      await d.stop();
    }
  },
});
