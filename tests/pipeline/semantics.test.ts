/**
 * DNS semantics of the pipeline (issue 11): RD in the key and the RD=0 policy, AD kept in the
 * cache for every client, AA cleared, NOTIMP without RA, class CH answered locally, Extended DNS
 * Errors on answers decided here (and the upstream's passed through), response padding on
 * encrypted transports, ECS kept per client subnet.
 */
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { ResponseCache } from "../../lib/cache/cache.ts";
import { EdeCode } from "../../lib/dns/ede.ts";
import { Metrics } from "../../lib/metrics/metrics.ts";
import { Pipeline, type PipelineOptions, type Query } from "../../lib/pipeline/pipeline.ts";
import { Acl, parseCidrList } from "../../lib/policy/acl.ts";
import { RateLimiter } from "../../lib/policy/rate_limit.ts";
import { type Exchange, failure, forHop, type Upstream } from "../../lib/upstream/upstream.ts";
import { parse } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { clientQuery, TEST_LIMITS } from "../helpers/pipeline.ts";
import { answered } from "../helpers/exchange.ts";

type Packet = dnsPacket.Packet;
type Respond = (q: Packet) => Packet | Exchange;

/**
 * An upstream answering at once through `respond`, given the query as this hop rewrites it (the
 * real forHop: our OPT, AD, ECS only when kept); every query it got is kept, parsed.
 */
function fakeUpstream(respond: Respond, keepEcs: boolean) {
  const queries: Packet[] = [];
  const upstream: Upstream = {
    name: "fake",
    exchange(query) {
      const q = parse(forHop(query, { udpSize: 1232, pad: false, keepEcs }));
      queries.push(q);
      const r = respond(q);
      if ("ok" in r) return Promise.resolve(r as Exchange);
      return Promise.resolve(answered(new Uint8Array(dnsPacket.encode(r as Packet)), "fake"));
    },
    close: () => Promise.resolve(),
  };
  return { upstream, queries };
}

/** An upstream reply: one A record, flags as given (RA and the query's RD by default). */
function answer(q: Packet, opts: { flags?: number; address?: string; ttl?: number } = {}): Packet {
  const qn = q.questions![0];
  return {
    type: "response",
    id: q.id,
    flags: opts.flags ??
      (dnsPacket.RECURSION_AVAILABLE | ((q.flags ?? 0) & dnsPacket.RECURSION_DESIRED)),
    questions: q.questions,
    answers: [{
      type: "A",
      name: qn.name,
      ttl: opts.ttl ?? 300,
      data: opts.address ?? "192.0.2.1",
    }],
  };
}

function setup(respond: Respond, extra: Partial<PipelineOptions> = {}) {
  const clock = new FakeClock();
  const fake = fakeUpstream(respond, extra.ecs === "keep");
  const cache = new ResponseCache({ clock });
  const metrics = new Metrics({ protocols: ["udp", "tcp", "tls", "https"] });
  const pipeline = new Pipeline({
    upstream: fake.upstream,
    clock,
    ...TEST_LIMITS,
    cache,
    metrics,
    ...extra,
  });
  const ask = (q: Packet, transport: Query["transport"] = "udp", client = "127.0.0.1") =>
    Promise.resolve(
      pipeline.handle(clientQuery(new Uint8Array(dnsPacket.encode(q)), transport, client)),
    );
  return { clock, fake, cache, metrics, pipeline, ask };
}

/** A query packet; `opt` adds an OPT with these options (and DO when asked). */
function query(
  name: string,
  opts: {
    type?: string;
    klass?: string;
    id?: number;
    rd?: boolean;
    ad?: boolean;
    aa?: boolean;
    edns?: boolean;
    do?: boolean;
    options?: { code: number; data: Uint8Array }[];
  } = {},
): Packet {
  const flags = (opts.rd === false ? 0 : dnsPacket.RECURSION_DESIRED) |
    (opts.ad ? dnsPacket.AUTHENTIC_DATA : 0) | (opts.aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0);
  const edns = opts.edns || opts.do || opts.options;
  return {
    type: "query",
    id: opts.id ?? 0x4242,
    flags,
    questions: [{ type: opts.type ?? "A", name, class: opts.klass ?? "IN" } as dnsPacket.Question],
    additionals: edns
      ? [{
        type: "OPT",
        name: ".",
        udpPayloadSize: 1232,
        flags: opts.do ? dnsPacket.DNSSEC_OK : 0,
        options: (opts.options ?? []).map((o) => ({ code: o.code, data: Buffer.from(o.data) })),
      } as unknown as dnsPacket.Answer]
      : [],
  };
}

/** The EDNS options of an answer, as [code, data] pairs (raw, from our own walk of the OPT). */
function optionsOf(bytes: Uint8Array): { code: number; data: Uint8Array }[] {
  const p = parse(bytes);
  const opt = p.additionals?.find((r: dnsPacket.Answer) => r.type === "OPT") as
    | { options?: { code: number; data: Buffer }[] }
    | undefined;
  return (opt?.options ?? []).map((o) => ({ code: o.code, data: new Uint8Array(o.data) }));
}

/** The EDE options of an answer as [info-code, extra-text]. */
function edesOf(bytes: Uint8Array): [number, string][] {
  return optionsOf(bytes).filter((o) => o.code === 15).map((o) => [
    (o.data[0] << 8) | o.data[1],
    new TextDecoder().decode(o.data.subarray(2)),
  ]);
}

const flagsOf = (bytes: Uint8Array) => ({
  aa: (bytes[2] & 0x04) !== 0,
  rd: (bytes[2] & 0x01) !== 0,
  ra: (bytes[3] & 0x80) !== 0,
  ad: (bytes[3] & 0x20) !== 0,
  cd: (bytes[3] & 0x10) !== 0,
  rcode: bytes[3] & 0x0f,
});

// --- item 3: RD -----------------------------------------------------------------------------

Deno.test("an RD=0 query is refused with EDE 20 by default and never reaches the upstream", async () => {
  const { ask, fake } = setup((q) => answer(q));
  const a = await ask(query("snoop.test", { rd: false, edns: true }));
  assert.equal(parse(a!.bytes).rcode, "REFUSED");
  assert.equal(flagsOf(a!.bytes).rd, false, "RD echoed");
  assert.deepEqual(edesOf(a!.bytes).map(([c]) => c), [EdeCode.NOT_AUTHORITATIVE]);
  assert.equal(fake.queries.length, 0);
});

Deno.test("with non_recursive forward, RD=0 and RD=1 never share an answer, in flight or cached", async () => {
  // The upstream answers RD=0 from its cache only: here, a different address.
  const { ask, fake } = setup(
    (q) =>
      answer(q, { address: (q.flags! & dnsPacket.RECURSION_DESIRED) ? "192.0.2.1" : "192.0.2.99" }),
    {
      nonRecursive: "forward",
    },
  );
  const [norec, rec] = await Promise.all([
    ask(query("rd.test", { rd: false, id: 1 })),
    ask(query("rd.test", { rd: true, id: 2 })),
  ]);
  assert.equal(fake.queries.length, 2, "not coalesced together");
  assert.equal(parse(norec!.bytes).answers?.[0].data, "192.0.2.99");
  assert.equal(flagsOf(norec!.bytes).rd, false);
  assert.equal(parse(rec!.bytes).answers?.[0].data, "192.0.2.1");
  assert.equal(flagsOf(rec!.bytes).rd, true, "the RD=1 client sees its own RD");
  // From the cache, each gets its own.
  assert.equal(
    parse((await ask(query("rd.test", { rd: true, id: 3 })))!.bytes).answers?.[0].data,
    "192.0.2.1",
  );
  assert.equal(
    parse((await ask(query("rd.test", { rd: false, id: 4 })))!.bytes).answers?.[0].data,
    "192.0.2.99",
  );
  assert.equal(fake.queries.length, 2);
});

// --- item 7: AD -------------------------------------------------------------------------------

Deno.test("AD stays in the cache for an AD=1 client when an AD=0 client filled the entry", async () => {
  // A validating upstream sets AD only when the query asked with AD or DO (RFC 6840 5.7).
  const { ask } = setup((q) =>
    answer(q, {
      flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED |
        ((q.flags ?? 0) & dnsPacket.AUTHENTIC_DATA),
    })
  );
  const first = await ask(query("ad.test", { ad: false }));
  assert.equal(flagsOf(first!.bytes).ad, false, "not asked: cleared for this client");
  const second = await ask(query("ad.test", { ad: true }));
  assert.equal(flagsOf(second!.bytes).ad, true, "asked: kept from the cache entry");
});

// --- item 8: AA, opcode -------------------------------------------------------------------------

Deno.test("AA from the upstream is cleared on relayed and cached answers", async () => {
  const { ask } = setup((q) =>
    answer(q, {
      flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED |
        dnsPacket.AUTHORITATIVE_ANSWER,
    })
  );
  const relayed = await ask(query("aa.test", { aa: true }));
  assert.equal(flagsOf(relayed!.bytes).aa, false);
  const cached = await ask(query("aa.test", { aa: true }));
  assert.equal(flagsOf(cached!.bytes).aa, false);
  assert.equal(parse(cached!.bytes).answers?.length, 1);
});

Deno.test("NOTIMP to an unknown opcode has no RA, AA, AD or CD (genreport opcode, opcodeflg)", async () => {
  const { ask, fake } = setup((q) => answer(q));
  // genreport: opcode 15, header only (QDCOUNT 0), RD set in recursive mode; opcodeflg sets
  // every flag as well.
  for (const flags of [0x0100, 0x0100 | 0x0200 | 0x0400 | 0x0080 | 0x0040 | 0x0020 | 0x0010]) {
    const h = new Uint8Array(12);
    h[0] = 0x12;
    h[2] = (15 << 3) | (flags >> 8);
    h[3] = flags & 0xff;
    const a = await ask(parse(h));
    const f = flagsOf(a!.bytes);
    assert.equal(f.rcode, 4, "NOTIMP");
    assert.equal((a!.bytes[2] >> 3) & 0xf, 15, "opcode echoed");
    assert.deepEqual(
      [f.ra, f.aa, f.ad, f.cd, (a!.bytes[3] & 0x40) !== 0, (a!.bytes[2] & 2) !== 0],
      [
        false,
        false,
        false,
        false,
        false,
        false,
      ],
    );
    assert.deepEqual(
      [...a!.bytes.subarray(4, 12)],
      [0, 0, 0, 0, 0, 0, 0, 0],
      "every section empty",
    );
  }
  assert.equal(fake.queries.length, 0);
});

// --- item 9: CHAOS ------------------------------------------------------------------------------

Deno.test("class CH never goes upstream: refused with EDE 21 unless an identity is configured", async () => {
  const { ask, fake } = setup((q) => answer(q));
  for (const name of ["version.bind", "hostname.bind", "id.server", "version.server", "x.test"]) {
    const a = await ask(query(name, { type: "TXT", klass: "CH", edns: true }));
    assert.equal(parse(a!.bytes).rcode, "REFUSED", name);
    assert.deepEqual(edesOf(a!.bytes).map(([c]) => c), [EdeCode.NOT_SUPPORTED]);
  }
  assert.equal(fake.queries.length, 0);
});

Deno.test("id.server and hostname.bind TXT CH answer the configured identity; version.bind does not", async () => {
  const { ask, fake } = setup((q) => answer(q), { chaosIdentity: "resolver-7.example" });
  for (const name of ["id.server", "HOSTNAME.bind"]) {
    const a = await ask(query(name, { type: "TXT", klass: "CH" }));
    const p = parse(a!.bytes);
    assert.equal(p.rcode, "NOERROR");
    assert.equal(p.answers?.[0].type, "TXT");
    assert.equal(p.answers?.[0].class, "CH");
    assert.deepEqual((p.answers?.[0].data as Buffer[]).map(String), ["resolver-7.example"]);
    assert.equal(flagsOf(a!.bytes).aa, true, "our own data");
  }
  assert.equal(
    parse((await ask(query("version.bind", { type: "TXT", klass: "CH" })))!.bytes).rcode,
    "REFUSED",
  );
  assert.equal(
    parse((await ask(query("id.server", { type: "A", klass: "CH" })))!.bytes).rcode,
    "REFUSED",
  );
  assert.equal(fake.queries.length, 0);
});

// --- item 10: EDE -------------------------------------------------------------------------------

for (
  const [kind, code] of [
    ["timeout", EdeCode.NO_REACHABLE_AUTHORITY],
    ["down", EdeCode.NO_REACHABLE_AUTHORITY],
    ["connect", EdeCode.NETWORK_ERROR],
    ["tls", EdeCode.NETWORK_ERROR],
    ["closed", EdeCode.NETWORK_ERROR],
    ["protocol", EdeCode.NETWORK_ERROR],
    ["overloaded", EdeCode.NOT_READY],
  ] as const
) {
  Deno.test(`an upstream ${kind} failure says so in an EDE (${code}) to EDNS clients only`, async () => {
    const { ask, metrics } = setup(() => failure(kind, "fake", "scripted"));
    const a = await ask(query(`${kind}.test`, { edns: true }));
    assert.deepEqual(edesOf(a!.bytes), [[code, `upstream ${kind}`]]);
    const plain = await ask(query(`${kind}.test`));
    assert.equal(parse(plain!.bytes).additionals?.length ?? 0, 0, "no OPT without EDNS");
    assert.match(
      await metrics.render(),
      new RegExp(`dotproxy_extended_errors_total\\{code="${code}",name="[a-z_]+"\\} 1\\b`),
    );
  });
}

Deno.test("policy answers carry an EDE: ACL 18, rate limit 18 'rate limited', meta-types and ANY 21, shed 14", async () => {
  const clock = new FakeClock();
  const allow = parseCidrList(["10.0.0.0/8"]);
  assert.ok(Array.isArray(allow));
  const acl = new Acl(allow, []);
  const { pipeline, ask } = setup((q) => answer(q), {
    anyQueries: "refuse",
    rateLimit: { limiter: new RateLimiter({ clock, qps: 1, burst: 1 }), action: "refuse" },
  });
  const bytes = new Uint8Array(dnsPacket.encode(query("acl.test", { edns: true })));
  const denied = await pipeline.handle(
    { bytes, transport: "udp", client: { hostname: "192.0.2.1", port: 1 } },
    { acl, aclAction: "refuse" },
  );
  assert.deepEqual(edesOf(denied!.bytes).map(([c]) => c), [EdeCode.PROHIBITED]);
  await ask(query("rl.test", { edns: true }), "udp", "198.51.100.1"); // the burst
  const limited = await ask(query("rl.test", { edns: true }), "udp", "198.51.100.1");
  assert.deepEqual(edesOf(limited!.bytes), [[EdeCode.PROHIBITED, "rate limited"]]);
  const axfr = await ask(query("zone.test", { type: "AXFR", edns: true }), "tcp", "203.0.113.1");
  assert.deepEqual(edesOf(axfr!.bytes).map(([c]) => c), [EdeCode.NOT_SUPPORTED]);
  const any = await ask(query("any.test", { type: "ANY", edns: true }), "tcp", "100.64.0.1");
  assert.deepEqual(edesOf(any!.bytes).map(([c]) => c), [EdeCode.NOT_SUPPORTED]);
  const shedding = setup((q) => answer(q), { maxInFlight: 0 });
  const shed = await shedding.ask(query("shed.test", { edns: true }));
  assert.equal(parse(shed!.bytes).rcode, "REFUSED");
  assert.deepEqual(edesOf(shed!.bytes), [[EdeCode.NOT_READY, "overloaded"]]);
});

Deno.test("a stale answer carries EDE 3, a stale NXDOMAIN EDE 19", async () => {
  let fail = false;
  const { ask, clock } = setup((q) => {
    if (fail) return failure("timeout", "fake", "scripted");
    if (q.questions![0].name.startsWith("nx")) {
      return {
        type: "response",
        id: q.id,
        flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED | 3,
        questions: q.questions,
        authorities: [{
          type: "SOA",
          name: "test",
          ttl: 60,
          data: {
            mname: "ns.test",
            rname: "h.test",
            serial: 1,
            refresh: 1,
            retry: 1,
            expire: 1,
            minimum: 60,
          },
        }],
      };
    }
    return answer(q, { ttl: 60 });
  }, { serveStale: { answerAfterMs: 1800 } });
  await ask(query("stale.test", { edns: true }));
  await ask(query("nx.test", { edns: true }));
  clock.advance(120_000);
  fail = true;
  const stale = await ask(query("stale.test", { edns: true }));
  assert.deepEqual(edesOf(stale!.bytes).map(([c]) => c), [EdeCode.STALE_ANSWER]);
  const nx = await ask(query("nx.test", { edns: true }));
  assert.equal(parse(nx!.bytes).rcode, "NXDOMAIN");
  assert.deepEqual(edesOf(nx!.bytes).map(([c]) => c), [EdeCode.STALE_NXDOMAIN_ANSWER]);
});

Deno.test("the upstream's EDE options reach the client, relayed and from the cache", async () => {
  const blocked = new Uint8Array([0, 15, ...new TextEncoder().encode("blocked by policy")]);
  const { ask } = setup((q) => ({
    ...answer(q),
    additionals: [{
      type: "OPT",
      name: ".",
      udpPayloadSize: 1232,
      options: [{ code: 15, data: Buffer.from(blocked) }, { code: 10, data: Buffer.alloc(16, 1) }],
    } as unknown as dnsPacket.Answer],
  }));
  for (const round of ["relayed", "cached"]) {
    const a = await ask(query("ede.test", { edns: true }));
    assert.deepEqual(edesOf(a!.bytes), [[15, "blocked by policy"]], round);
    assert.deepEqual(optionsOf(a!.bytes).map((o) => o.code), [15], `${round}: no upstream cookie`);
  }
});

// --- item 4: padding ---------------------------------------------------------------------------

Deno.test("answers to padded queries are padded to 468-byte blocks on tls and https only", async () => {
  const { ask } = setup((q) => answer(q));
  const padded = query("pad.test", { options: [{ code: 12, data: new Uint8Array(30) }] });
  for (const transport of ["tls", "https"] as const) {
    const a = await ask(padded, transport);
    assert.equal(a!.bytes.length % 468, 0, `${transport}: ${a!.bytes.length} bytes`);
    assert.equal(optionsOf(a!.bytes).at(-1)?.code, 12, "padding last");
    const err = await ask(
      query("pad.test", { type: "AXFR", options: [{ code: 12, data: new Uint8Array(0) }] }),
      transport,
    );
    assert.equal(err!.bytes.length % 468, 0, "error answers too");
  }
  for (const transport of ["udp", "tcp"] as const) {
    const a = await ask(padded, transport);
    assert.ok(!optionsOf(a!.bytes).some((o) => o.code === 12), `never on ${transport}`);
  }
  const unpadded = await ask(query("pad.test", { edns: true }), "tls");
  assert.ok(!optionsOf(unpadded!.bytes).some((o) => o.code === 12), "only when the query was");
});

// --- item 5: ECS keep ----------------------------------------------------------------------------

/** ECS option data for an IPv4 subnet a.b.c.0/24. */
function ecs24(a: number, b: number, c: number, scope = 0): Uint8Array {
  return new Uint8Array([0, 1, 24, scope, a, b, c]);
}

Deno.test("with ecs keep, each client subnet gets its own answer, upstream query and ECS echo", async () => {
  // A tailoring upstream: the address names the subnet it got; scope /24.
  const { ask, fake } = setup((q) => {
    const opt = q.additionals?.find((r: dnsPacket.Answer) => r.type === "OPT") as
      | { options?: { code: number; data: Buffer }[] }
      | undefined;
    const ecs = opt?.options?.find((o) => o.code === 8);
    const subnet = ecs ? [...ecs.data.subarray(4, 7)].join(".") : "0.0.0";
    return {
      ...answer(q, { address: `${subnet}.1` }),
      additionals: [{
        type: "OPT",
        name: ".",
        udpPayloadSize: 1232,
        options: ecs
          ? [{ code: 8, data: Buffer.from([0, 1, 24, 24, ...ecs.data.subarray(4, 7)]) }]
          : [],
      } as unknown as dnsPacket.Answer],
    };
  }, { ecs: "keep" });
  const subnets = [[198, 51, 100], [203, 0, 113], [192, 0, 2]] as const;
  const asks = subnets.map(([a, b, c]) =>
    ask(query("ecs.test", { options: [{ code: 8, data: ecs24(a, b, c) }] }))
  );
  const answers = await Promise.all(asks);
  assert.equal(fake.queries.length, 3, "one upstream query per subnet");
  answers.forEach((a, i) => {
    const [x, y, z] = subnets[i];
    assert.equal(parse(a!.bytes).answers?.[0].data, `${x}.${y}.${z}.1`);
    const echo = optionsOf(a!.bytes).find((o) => o.code === 8);
    assert.deepEqual(
      [...echo!.data],
      [0, 1, 24, 24, x, y, z],
      "source echoed, scope from upstream",
    );
  });
  // From the cache, still per subnet.
  const again = await ask(query("ecs.test", { options: [{ code: 8, data: ecs24(203, 0, 113) }] }));
  assert.equal(parse(again!.bytes).answers?.[0].data, "203.0.113.1");
  assert.deepEqual([...optionsOf(again!.bytes).find((o) => o.code === 8)!.data], [
    0,
    1,
    24,
    24,
    203,
    0,
    113,
  ]);
  assert.equal(fake.queries.length, 3);
});

Deno.test("with ecs keep, a malformed ECS option is FORMERR; with strip, ECS is ignored", async () => {
  const bad = new Uint8Array([0, 1, 24, 0, 192, 0, 2, 5]); // 4 address bytes for a /24
  const keep = setup((q) => answer(q), { ecs: "keep" });
  assert.equal(
    parse((await keep.ask(query("bad.test", { options: [{ code: 8, data: bad }] })))!.bytes).rcode,
    "FORMERR",
  );
  const strip = setup((q) => answer(q));
  const a = await strip.ask(query("bad.test", { options: [{ code: 8, data: bad }] }));
  assert.equal(parse(a!.bytes).rcode, "NOERROR");
  assert.ok(!optionsOf(a!.bytes).some((o) => o.code === 8), "no ECS echo when stripped");
});
