/**
 * Client identity in the pipeline: a name proven by the listener (certificate, token) or given by
 * a `[[clients]]` network is what the ACL's allow_clients / deny_clients match, what picks a
 * client's own rate-limit bucket, what the query log writes and what the per-client metric counts
 * (declared names only, everyone else "anonymous"). Unnamed clients keep the address rules.
 */
import assert from "node:assert/strict";
import { ClientDirectory, ClientLabels } from "../../lib/identity/clients.ts";
import { Metrics } from "../../lib/metrics/metrics.ts";
import type { QueryLog, QueryLogEntry } from "../../lib/metrics/query_log.ts";
import {
  type ListenerPolicy,
  Pipeline,
  type PipelineOptions,
  type Query,
} from "../../lib/pipeline/pipeline.ts";
import { Acl, parseCidrList } from "../../lib/policy/acl.ts";
import { RateLimiter } from "../../lib/policy/rate_limit.ts";
import type { Upstream } from "../../lib/upstream/upstream.ts";
import { buildQuery, parse } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

const never: Upstream = {
  name: "never",
  exchange: () => new Promise(() => {}),
  close: () => Promise.resolve(),
};

const clients = [
  { name: "office", networks: ["10.0.0.0/8"] },
  { name: "lab", networks: ["10.9.0.0/16"] },
];

function setup(extra: Partial<PipelineOptions> = {}) {
  const clock = new FakeClock();
  const logged: QueryLogEntry[] = [];
  const queryLog = { log: (e: QueryLogEntry) => logged.push(e) } as unknown as QueryLog;
  const metrics = new Metrics({ protocols: ["udp", "tls"] });
  const pipeline = new Pipeline({
    upstream: never,
    clock,
    queryTimeoutMs: 5000,
    udpMaxSize: 1232,
    maxInFlight: 100,
    overload: "refuse",
    anyQueries: "rfc8482", // ANY is answered here: no upstream needed
    clients: {
      directory: new ClientDirectory(clients),
      labels: new ClientLabels([...clients.map((c) => c.name), "alice"]),
    },
    queryLog,
    metrics,
    ...extra,
  });
  /** One ANY query (answered locally when admitted); the rcode, or null for no answer. */
  const ask = (
    client: string,
    name?: string,
    policy?: ListenerPolicy,
    transport: Query["transport"] = "udp",
  ) => {
    const q: Query = {
      bytes: buildQuery("who.test", "ANY", 9),
      transport,
      client: { hostname: client, port: 5353 },
    };
    if (name !== undefined) q.clientName = name;
    const a = pipeline.handle(q, policy);
    assert.ok(!(a instanceof Promise), "answered at once");
    return { rcode: a === null ? null : parse(a.bytes).rcode, query: q };
  };
  return { clock, pipeline, ask, logged, metrics };
}

function acl(allow: string[], names: { allowClients?: string[]; denyClients?: string[] } = {}) {
  const cidrs = parseCidrList(allow);
  assert.ok(Array.isArray(cidrs));
  return { acl: new Acl(cidrs, [], names), aclAction: "refuse" as const };
}

Deno.test("a client's name comes from the listener first, else from its [[clients]] network", () => {
  const { ask, logged } = setup();
  assert.equal(ask("10.9.1.1").query.clientName, "lab", "the longest prefix");
  assert.equal(ask("10.1.1.1").query.clientName, "office");
  assert.equal(ask("192.0.2.1").query.clientName, null, "unnamed");
  assert.equal(ask("10.9.1.1", "alice").query.clientName, "alice", "a certificate wins");
  assert.deepEqual(
    logged.map((e) => [e.client, e.clientName]),
    [["10.9.1.1", "lab"], ["10.1.1.1", "office"], ["192.0.2.1", null], ["10.9.1.1", "alice"]],
  );
});

Deno.test("allow_clients serves a named client from outside the allowed networks", () => {
  const { ask } = setup();
  const policy = acl(["10.0.0.0/8"], { allowClients: ["alice"] });
  assert.equal(ask("198.51.100.7", undefined, policy).rcode, "REFUSED", "unnamed: by address");
  assert.equal(ask("198.51.100.7", "mallory", policy).rcode, "REFUSED", "named, not allowed");
  assert.equal(ask("198.51.100.7", "alice", policy).rcode, "NOERROR");
});

Deno.test("deny_clients refuses a named client from any address, and address deny still holds", () => {
  const { ask } = setup();
  const policy = acl(["10.0.0.0/8"], { denyClients: ["lab"], allowClients: ["alice"] });
  assert.equal(ask("10.1.1.1", undefined, policy).rcode, "NOERROR", "office is allowed");
  assert.equal(ask("10.9.1.1", undefined, policy).rcode, "REFUSED", "lab by its network");
  assert.equal(ask("10.1.1.1", "lab", policy).rcode, "REFUSED", "lab by its certificate");
  const deny = parseCidrList(["203.0.113.0/24"]);
  assert.ok(Array.isArray(deny));
  const strict = {
    acl: new Acl([], deny, { allowClients: ["alice"] }),
    aclAction: "refuse" as const,
  };
  assert.equal(ask("198.51.100.7", "alice", strict).rcode, "NOERROR");
  assert.equal(ask("203.0.113.9", "alice", strict).rcode, "REFUSED", "a denied network");
});

Deno.test("a client with its own qps draws from its own bucket, not its prefix's", () => {
  const clock = new FakeClock();
  const prefix = new RateLimiter({ clock, qps: 1, burst: 2 }); // the clock stands still
  const alice = new RateLimiter({ clock, qps: 1, burst: 5, ipv4Prefix: 0, ipv6Prefix: 0 });
  const { ask } = setup({
    clock,
    rateLimit: { limiter: prefix, perClient: new Map([["alice", alice]]), action: "refuse" },
  });
  // alice's 5 from two addresses of the same /24 as an unnamed client: her own bucket.
  const hers = [1, 2, 3, 4, 5].map((i) => ask(`192.0.2.${i % 2 + 1}`, "alice").rcode);
  assert.deepEqual(hers, Array(5).fill("NOERROR"));
  assert.equal(ask("192.0.2.1", "alice").rcode, "REFUSED", "her bucket is empty");
  // The /24's bucket was not touched by her queries.
  assert.deepEqual([ask("192.0.2.9").rcode, ask("192.0.2.9").rcode], ["NOERROR", "NOERROR"]);
  assert.equal(ask("192.0.2.9").rcode, "REFUSED");
  // Her bucket is one for all her addresses, wherever they are.
  assert.equal(ask("198.51.100.1", "alice").rcode, "REFUSED");
});

Deno.test("a per-client limit applies with the prefix limit off", () => {
  const clock = new FakeClock();
  const lab = new RateLimiter({ clock, qps: 1, burst: 1, ipv4Prefix: 0, ipv6Prefix: 0 });
  const { ask } = setup({
    clock,
    rateLimit: { limiter: null, perClient: new Map([["lab", lab]]), action: "refuse" },
  });
  assert.equal(ask("10.9.0.1").rcode, "NOERROR");
  assert.equal(ask("10.9.0.2").rcode, "REFUSED", "lab's one bucket, named by network");
  for (let i = 0; i < 5; i++) assert.equal(ask("10.1.0.1").rcode, "NOERROR", "office: no limit");
  clock.advance(1000);
  assert.equal(ask("10.9.200.1").rcode, "NOERROR", "refilled");
});

Deno.test("the per-client metric counts declared names and lumps every other client together", async () => {
  const { ask, metrics } = setup();
  metrics.showClients(["office", "lab", "alice", "anonymous"]);
  ask("10.1.1.1");
  ask("10.9.1.1");
  ask("10.9.1.2");
  ask("192.0.2.1");
  ask("192.0.2.1", "carol"); // a certificate name nobody declared
  ask("192.0.2.1", "alice"); // declared (e.g. a token's name)
  const text = await metrics.render();
  const count = (c: string) =>
    Number(new RegExp(`dotproxy_client_queries_total\\{client="${c}"\\} (\\d+)`).exec(text)?.[1]);
  assert.deepEqual(
    ["office", "lab", "alice", "anonymous"].map(count),
    [1, 2, 1, 2],
  );
  assert.doesNotMatch(text, /client="carol"/);
});
