import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import {
  CACHE_ENTRY_OVERHEAD,
  type CacheHit,
  cacheKey,
  type CacheOptions,
  ResponseCache,
  STALE_TTL,
} from "../../lib/cache/cache.ts";
import { decodeMessage, Flag, type Message, Rcode, RRType } from "../../lib/dns/message.ts";
import { encodeQuery } from "../../lib/dns/reply.ts";
import { nameToString } from "../../lib/dns/wire.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

// --- helpers -------------------------------------------------------------------------------------

function decoded(buf: Uint8Array): Message {
  const r = decodeMessage(buf);
  if (!r.ok) assert.fail(`unexpected ${r.error.kind} at ${r.error.offset}: ${r.error.message}`);
  return r.value;
}

interface TestQuery {
  msg: Message;
  key: string;
}

/** A client query as the pipeline would decode it. */
function query(
  name: string,
  opts: { qtype?: number; id?: number; dnssecOk?: boolean; cd?: boolean; edns?: boolean } = {},
): TestQuery {
  const edns = opts.edns || opts.dnssecOk ? { dnssecOk: opts.dnssecOk ?? false } : undefined;
  const msg = decoded(encodeQuery({
    id: opts.id ?? 0x0101,
    name,
    qtype: opts.qtype ?? RRType.A,
    cd: opts.cd,
    edns,
  }));
  return { msg, key: cacheKey(msg) };
}

type Rec = Record<string, unknown>;

function a(name: string, ttl: number, ip = "192.0.2.1"): Rec {
  return { type: "A", name, ttl, data: ip };
}

function soa(zone: string, ttl: number, minimum: number): Rec {
  return {
    type: "SOA",
    name: zone,
    ttl,
    data: {
      mname: `ns.${zone}`,
      rname: `hostmaster.${zone}`,
      serial: 2024010101,
      refresh: 7200,
      retry: 900,
      expire: 1209600,
      minimum,
    },
  };
}

/** An upstream reply built with dns-packet (an independent codec), decoded with ours. */
function reply(
  name: string,
  spec: {
    rcode?: number;
    flags?: number;
    qtype?: string;
    answers?: Rec[];
    authorities?: Rec[];
    additionals?: Rec[];
    opt?: { dnssecOk?: boolean; udp?: number; extendedRcode?: number; cookie?: boolean };
  } = {},
): { bytes: Uint8Array; msg: Message } {
  const additionals = [...(spec.additionals ?? [])];
  if (spec.opt) {
    const optRr = {
      type: "OPT",
      name: ".",
      udpPayloadSize: spec.opt.udp ?? 1232,
      extendedRcode: spec.opt.extendedRcode ?? 0,
      flags: spec.opt.dnssecOk ? dnsPacket.DNSSEC_OK : 0,
      options: spec.opt.cookie ? [{ code: 10, data: Buffer.alloc(24, 0xab) }] : [],
    };
    additionals.unshift(optRr);
  }
  const buf = dnsPacket.encode({
    id: 0x7777,
    type: "response",
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (spec.flags ?? 0) |
      (spec.rcode ?? 0),
    questions: [{ type: spec.qtype ?? "A", name }],
    answers: spec.answers ?? [],
    authorities: spec.authorities ?? [],
    additionals,
  } as dnsPacket.Packet);
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return { bytes, msg: decoded(bytes) };
}

function setup(opts: Partial<CacheOptions> = {}): { clock: FakeClock; cache: ResponseCache } {
  const clock = new FakeClock();
  return { clock, cache: new ResponseCache({ clock, ...opts }) };
}

function put(cache: ResponseCache, q: TestQuery, r: { bytes: Uint8Array; msg: Message }): boolean {
  return cache.store(q.key, r.bytes, r.msg);
}

function get(cache: ResponseCache, q: TestQuery, stale = false): CacheHit | null {
  return cache.lookup(q.key, q.msg.header.id, q.msg.question!.name, { stale });
}

function ttls(hit: CacheHit | null): number[] {
  assert.ok(hit, "expected a cache hit");
  return decoded(hit.bytes).records.map((r) => r.ttl);
}

// --- serving -------------------------------------------------------------------------------------

Deno.test("a cached answer is served with the client's ID and spelling of the name", () => {
  const { cache } = setup();
  const stored = query("www.example.com", { id: 1 });
  assert.equal(
    put(cache, stored, reply("www.example.com", { answers: [a("www.example.com", 300)] })),
    true,
  );
  const client = query("wWw.ExAmPlE.cOm", { id: 0xbeef });
  const hit = get(cache, client);
  assert.ok(hit);
  const m = decoded(hit.bytes);
  assert.equal(m.header.id, 0xbeef);
  assert.equal(nameToString(m.question!.name), "wWw.ExAmPlE.cOm.");
  assert.equal(m.header.flags & Flag.QR, Flag.QR);
  // The independent codec reads the same answer.
  const p = dnsPacket.decode(Buffer.from(hit.bytes));
  assert.equal(p.id, 0xbeef);
  assert.deepEqual(
    (p.answers ?? []).map((r: dnsPacket.Answer) => [r.name, r.type, r.ttl, r.data]),
    [["www.example.com", "A", 300, "192.0.2.1"]],
  );
});

Deno.test("cache serves TTL decremented by age in whole seconds, each record its own", () => {
  const { clock, cache } = setup();
  const q = query("www.example.com");
  put(
    cache,
    q,
    reply("www.example.com", {
      answers: [a("www.example.com", 300), a("www.example.com", 600, "192.0.2.2")],
      authorities: [{ type: "NS", name: "example.com", ttl: 1000, data: "ns.example.com" }],
      additionals: [a("ns.example.com", 50, "192.0.2.53")],
    }),
  );
  assert.deepEqual(ttls(get(cache, q)), [300, 600, 1000, 50]);
  clock.advance(10_999);
  assert.deepEqual(ttls(get(cache, q)), [290, 590, 990, 40]);
  clock.advance(60_000);
  assert.deepEqual(ttls(get(cache, q)), [230, 530, 930, 0], "a TTL never goes below 0");
});

Deno.test("a positive answer lives for the smallest answer TTL", () => {
  const { clock, cache } = setup();
  const q = query("www.example.com");
  put(
    cache,
    q,
    reply("www.example.com", { answers: [a("www.example.com", 600), a("www.example.com", 60)] }),
  );
  clock.advance(59_999);
  assert.deepEqual(ttls(get(cache, q)), [541, 1]);
  clock.advance(1);
  assert.equal(get(cache, q), null);
});

Deno.test("TTLs are clamped to min_ttl and max_ttl, in lifetime and in what is served", () => {
  const { clock, cache } = setup({ minTtl: 60, maxTtl: 600 });
  const q = query("www.example.com");
  put(
    cache,
    q,
    reply("www.example.com", { answers: [a("www.example.com", 10), a("www.example.com", 5000)] }),
  );
  assert.deepEqual(ttls(get(cache, q)), [60, 600]);
  clock.advance(59_000);
  assert.deepEqual(ttls(get(cache, q)), [1, 541]);
  clock.advance(1_000);
  assert.equal(get(cache, q), null);
});

Deno.test("a TTL of 0 is not cached, whatever min_ttl says", () => {
  const { cache } = setup({ minTtl: 30 });
  const q = query("www.example.com");
  const r = reply("www.example.com", {
    answers: [a("www.example.com", 300), a("www.example.com", 0)],
  });
  assert.equal(put(cache, q, r), false);
  assert.equal(get(cache, q), null);
  assert.equal(cache.stats().entries, 0);
});

Deno.test("a TTL with the top bit set counts as 0 (RFC 2181 §8) and is not cached", () => {
  const { cache } = setup();
  const q = query("www.example.com");
  assert.equal(
    put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 0x80000000)] })),
    false,
  );
});

Deno.test("max_ttl of 0 caches no positive answer", () => {
  const { cache } = setup({ maxTtl: 0 });
  const q = query("www.example.com");
  assert.equal(
    put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 300)] })),
    false,
  );
});

Deno.test("every hit is a new buffer: changing one does not change the cache", () => {
  const { cache } = setup();
  const q = query("www.example.com");
  put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 300)] }));
  const first = get(cache, q)!;
  first.bytes.fill(0);
  const second = get(cache, q)!;
  assert.notEqual(second.bytes, first.bytes);
  assert.deepEqual(ttls(second), [300]);
});

// --- keys ----------------------------------------------------------------------------------------

Deno.test("names differing only in case share an entry", () => {
  const { cache } = setup();
  const lower = query("www.example.com");
  const mixed = query("WWW.Example.COM");
  assert.equal(lower.key, mixed.key);
  put(cache, lower, reply("www.example.com", { answers: [a("www.example.com", 300)] }));
  const hit = get(cache, mixed);
  assert.ok(hit);
  assert.equal(nameToString(decoded(hit.bytes).question!.name), "WWW.Example.COM.");
});

Deno.test("DO and non-DO queries never share an entry", () => {
  const { cache } = setup();
  const plain = query("www.example.com", { edns: true });
  const dnssec = query("www.example.com", { dnssecOk: true });
  assert.notEqual(plain.key, dnssec.key);
  const r = reply("www.example.com", {
    answers: [a("www.example.com", 300)],
    opt: { dnssecOk: true },
  });
  assert.equal(put(cache, dnssec, r), true);
  assert.equal(get(cache, plain), null);
  assert.ok(get(cache, dnssec));
});

Deno.test("CD and non-CD queries never share an entry", () => {
  const { cache } = setup();
  const plain = query("www.example.com");
  const cd = query("www.example.com", { cd: true });
  assert.notEqual(plain.key, cd.key);
  put(
    cache,
    cd,
    reply("www.example.com", { flags: Flag.CD, answers: [a("www.example.com", 300)] }),
  );
  assert.equal(get(cache, plain), null);
  assert.ok(get(cache, cd));
});

Deno.test("a reply is only stored under the key of its own question", () => {
  const { cache } = setup();
  const other = query("other.example.com");
  const aaaa = query("www.example.com", { qtype: RRType.AAAA });
  const r = reply("www.example.com", { answers: [a("www.example.com", 300)] });
  assert.equal(put(cache, other, r), false);
  assert.equal(put(cache, aaaa, r), false);
  assert.equal(cache.store("", r.bytes, r.msg), false);
  assert.equal(cache.stats().entries, 0);
});

// --- negative answers and errors -----------------------------------------------------------------

Deno.test("negative answer lives for the SOA minimum when it is below the SOA TTL", () => {
  const { clock, cache } = setup();
  const q = query("nope.example.com");
  const r = reply("nope.example.com", {
    rcode: Rcode.NXDOMAIN,
    authorities: [soa("example.com", 3600, 300)],
  });
  assert.equal(put(cache, q, r), true);
  const hit = get(cache, q);
  assert.equal(decoded(hit!.bytes).rcode, Rcode.NXDOMAIN);
  assert.deepEqual(ttls(hit), [300], "the SOA is served with the negative TTL (RFC 2308 §3)");
  clock.advance(299_000);
  assert.deepEqual(ttls(get(cache, q)), [1]);
  clock.advance(1_000);
  assert.equal(get(cache, q), null);
});

Deno.test("NODATA lives for the SOA TTL when it is below the SOA minimum", () => {
  const { clock, cache } = setup();
  const q = query("www.example.com", { qtype: RRType.AAAA });
  const r = reply("www.example.com", { qtype: "AAAA", authorities: [soa("example.com", 60, 300)] });
  assert.equal(put(cache, q, r), true);
  assert.deepEqual(ttls(get(cache, q)), [60]);
  clock.advance(60_000);
  assert.equal(get(cache, q), null);
});

Deno.test("negative answer lifetime is capped by max_negative_ttl", () => {
  const { clock, cache } = setup({ maxNegativeTtl: 30 });
  const q = query("nope.example.com");
  put(
    cache,
    q,
    reply("nope.example.com", {
      rcode: Rcode.NXDOMAIN,
      authorities: [soa("example.com", 900, 900)],
    }),
  );
  assert.deepEqual(ttls(get(cache, q)), [30]);
  clock.advance(30_000);
  assert.equal(get(cache, q), null);
});

Deno.test("NXDOMAIN after a CNAME lives no longer than the CNAME", () => {
  const { clock, cache } = setup();
  const q = query("alias.example.com");
  const r = reply("alias.example.com", {
    rcode: Rcode.NXDOMAIN,
    answers: [{ type: "CNAME", name: "alias.example.com", ttl: 20, data: "gone.example.net" }],
    authorities: [soa("example.net", 600, 600)],
  });
  assert.equal(put(cache, q, r), true);
  clock.advance(20_000);
  assert.equal(get(cache, q), null);
});

Deno.test("NODATA without SOA is not cached", () => {
  const { cache } = setup();
  const q = query("www.example.com", { qtype: RRType.AAAA });
  const referral = reply("www.example.com", {
    qtype: "AAAA",
    authorities: [{ type: "NS", name: "example.com", ttl: 3600, data: "ns.example.com" }],
  });
  assert.equal(put(cache, q, referral), false);
  assert.equal(put(cache, q, reply("www.example.com", { qtype: "AAAA" })), false);
});

Deno.test("NXDOMAIN without SOA is not cached", () => {
  const { cache } = setup();
  const q = query("nope.example.com");
  assert.equal(put(cache, q, reply("nope.example.com", { rcode: Rcode.NXDOMAIN })), false);
});

Deno.test("SERVFAIL is cached for servfail_ttl seconds", () => {
  const { clock, cache } = setup({ servfailTtl: 5 });
  const q = query("broken.example.com");
  assert.equal(put(cache, q, reply("broken.example.com", { rcode: Rcode.SERVFAIL })), true);
  assert.equal(decoded(get(cache, q)!.bytes).rcode, Rcode.SERVFAIL);
  clock.advance(4_999);
  assert.ok(get(cache, q));
  clock.advance(1);
  assert.equal(get(cache, q), null);
});

Deno.test("SERVFAIL is never cached when servfail_ttl is 0", () => {
  const { cache } = setup({ servfailTtl: 0 });
  const q = query("broken.example.com");
  assert.equal(put(cache, q, reply("broken.example.com", { rcode: Rcode.SERVFAIL })), false);
});

Deno.test("SERVFAIL does not displace an answer that is fresh or servable stale", () => {
  const { clock, cache } = setup({ staleMaxAge: 100 });
  const q = query("www.example.com");
  const good = reply("www.example.com", { answers: [a("www.example.com", 60)] });
  const bad = reply("www.example.com", { rcode: Rcode.SERVFAIL });
  put(cache, q, good);
  assert.equal(put(cache, q, bad), false, "fresh answer kept");
  clock.advance(120_000);
  assert.equal(put(cache, q, bad), false, "stale answer kept for serve-stale");
  assert.equal(get(cache, q, true)?.stale, true);
  clock.advance(50_000);
  assert.equal(put(cache, q, bad), true, "past the stale window the SERVFAIL may take its place");
});

Deno.test("truncated answers are never cached", () => {
  const { cache } = setup();
  const q = query("big.example.com");
  const r = reply("big.example.com", { flags: Flag.TC, answers: [a("big.example.com", 300)] });
  assert.equal(put(cache, q, r), false);
  assert.equal(get(cache, q), null);
});

Deno.test("REFUSED, FORMERR, NOTIMP and extended rcodes are never cached", () => {
  const { cache } = setup();
  const q = query("www.example.com", { edns: true });
  for (const rcode of [Rcode.REFUSED, Rcode.FORMERR, Rcode.NOTIMP]) {
    const r = reply("www.example.com", { rcode, authorities: [soa("example.com", 60, 60)] });
    assert.equal(put(cache, q, r), false, `rcode ${rcode}`);
  }
  // BADVERS (16): header rcode 0, extended rcode 1 in the OPT, which the cache would strip.
  const badvers = reply("www.example.com", {
    answers: [a("www.example.com", 300)],
    opt: { extendedRcode: 1 },
  });
  assert.equal(badvers.msg.rcode, Rcode.BADVERS);
  assert.equal(put(cache, q, badvers), false);
  assert.equal(cache.stats().entries, 0);
});

Deno.test("queries and zone transfers are never cached", () => {
  const { cache } = setup();
  const q = query("www.example.com");
  const notResponse = reply("www.example.com", { answers: [a("www.example.com", 300)] });
  notResponse.bytes[2] &= 0x7f; // clear QR
  assert.equal(cache.store(q.key, notResponse.bytes, decoded(notResponse.bytes)), false);
  const axfr = query("example.com", { qtype: 252 });
  const xfr = reply("example.com", { qtype: "AXFR", answers: [soa("example.com", 3600, 300)] });
  assert.equal(put(cache, axfr, xfr), false);
});

// --- OPT -----------------------------------------------------------------------------------------

Deno.test("OPT of the upstream is not served to the client", () => {
  const { clock, cache } = setup();
  const q = query("www.example.com", { dnssecOk: true });
  const r = reply("www.example.com", {
    answers: [a("www.example.com", 300)],
    additionals: [a("ns.example.com", 120, "192.0.2.53")],
    opt: { dnssecOk: true, udp: 4096, cookie: true },
  });
  assert.ok(r.msg.edns, "the upstream reply has an OPT before the glue record");
  assert.ok(r.msg.edns.start < r.msg.records[1].ttlOffset);
  assert.equal(put(cache, q, r), true);
  clock.advance(20_000);
  const hit = get(cache, q)!;
  const m = decoded(hit.bytes);
  assert.equal(m.edns, null);
  assert.equal(m.header.arcount, 1);
  assert.equal(hit.bytes.length, r.bytes.length - (r.msg.edns.end - r.msg.edns.start));
  assert.deepEqual(ttls(hit), [280, 100], "the record after the OPT is aged at its new offset");
  const p = dnsPacket.decode(Buffer.from(hit.bytes));
  assert.deepEqual(
    (p.additionals ?? []).map((x: dnsPacket.Answer) => [x.type, x.name, x.ttl]),
    [["A", "ns.example.com", 100]],
  );
});

// --- bounds --------------------------------------------------------------------------------------

Deno.test("least recently used entry is evicted at max_entries", () => {
  const { cache } = setup({ maxEntries: 3 });
  const names = ["a.example", "b.example", "c.example", "d.example"];
  const qs = names.map((n) => query(n));
  for (let i = 0; i < 3; i++) put(cache, qs[i], reply(names[i], { answers: [a(names[i], 300)] }));
  assert.ok(get(cache, qs[0]), "a is now the most recently used");
  put(cache, qs[3], reply(names[3], { answers: [a(names[3], 300)] }));
  assert.equal(get(cache, qs[1]), null, "b was least recently used");
  assert.ok(get(cache, qs[0]));
  assert.ok(get(cache, qs[2]));
  assert.ok(get(cache, qs[3]));
  assert.equal(cache.stats().entries, 3);
  assert.equal(cache.stats().evictions, 1);
});

Deno.test("byte budget evicts least recently used entries", () => {
  const names = ["a.example", "b.example", "c.example"];
  const qs = names.map((n) => query(n));
  const rs = names.map((n) => reply(n, { answers: [a(n, 300)] }));
  const probe = setup().cache;
  put(probe, qs[0], rs[0]);
  const one = probe.stats().bytes;
  assert.ok(one > CACHE_ENTRY_OVERHEAD);
  const { cache } = setup({ maxBytes: 2 * one + one - 1 });
  put(cache, qs[0], rs[0]);
  put(cache, qs[1], rs[1]);
  assert.equal(cache.stats().bytes, 2 * one);
  put(cache, qs[2], rs[2]);
  assert.equal(get(cache, qs[0]), null);
  assert.ok(get(cache, qs[1]));
  assert.ok(get(cache, qs[2]));
  assert.equal(cache.stats().bytes, 2 * one);
  assert.equal(cache.stats().evictions, 1);
});

Deno.test("an entry larger than the byte budget is not stored", () => {
  const { cache } = setup({ maxBytes: CACHE_ENTRY_OVERHEAD });
  const q = query("www.example.com");
  assert.equal(
    put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 300)] })),
    false,
  );
  assert.deepEqual([cache.stats().entries, cache.stats().bytes], [0, 0]);
});

Deno.test("replacing an entry restarts its lifetime and keeps the byte count exact", () => {
  const { clock, cache } = setup();
  const q = query("www.example.com");
  put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 100)] }));
  const before = cache.stats().bytes;
  clock.advance(50_000);
  put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 100)] }));
  assert.equal(cache.stats().bytes, before);
  assert.equal(cache.stats().entries, 1);
  assert.deepEqual(ttls(get(cache, q)), [100]);
  assert.equal(cache.delete(q.key), true);
  assert.deepEqual([cache.stats().entries, cache.stats().bytes], [0, 0]);
  assert.equal(cache.delete(q.key), false);
});

Deno.test("an expired entry is dropped when touched once stale serving cannot use it", () => {
  const { clock, cache } = setup({ staleMaxAge: 0 });
  const q = query("www.example.com");
  put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 10)] }));
  clock.advance(10_000);
  assert.equal(cache.stats().entries, 1, "nothing happens until the entry is touched");
  assert.equal(get(cache, q, true), null);
  assert.deepEqual([cache.stats().entries, cache.stats().bytes, cache.stats().expired], [0, 0, 1]);
});

// --- serve-stale ---------------------------------------------------------------------------------

Deno.test("stale answer served with TTL 30 within stale_max_age only", () => {
  const { clock, cache } = setup({ staleMaxAge: 100 });
  const q = query("www.example.com");
  put(
    cache,
    q,
    reply("www.example.com", {
      answers: [a("www.example.com", 60)],
      additionals: [a("ns.example.com", 3600, "192.0.2.53")],
    }),
  );
  clock.advance(61_000);
  assert.equal(get(cache, q), null, "expired: no answer unless stale is asked for");
  assert.equal(cache.stats().entries, 1, "but the entry is kept for serve-stale");
  const stale = get(cache, q, true);
  assert.equal(stale?.stale, true);
  assert.equal(stale?.prefetch, false);
  assert.deepEqual(ttls(stale), [STALE_TTL, STALE_TTL]);
  assert.equal(decoded(stale!.bytes).header.id, q.msg.header.id);
  clock.advance(99_000); // 100 s past expiry
  assert.equal(get(cache, q, true)?.stale, true);
  clock.advance(1);
  assert.equal(get(cache, q, true), null);
  assert.equal(cache.stats().entries, 0);
  assert.equal(cache.stats().staleHits, 2);
});

Deno.test("stale answers are never served when stale_max_age is 0", () => {
  const { clock, cache } = setup({ staleMaxAge: 0 });
  const q = query("www.example.com");
  put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 60)] }));
  clock.advance(60_000);
  assert.equal(get(cache, q, true), null);
});

Deno.test("a fresh entry asked for stale is served fresh", () => {
  const { clock, cache } = setup();
  const q = query("www.example.com");
  put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 60)] }));
  clock.advance(5_000);
  const hit = get(cache, q, true);
  assert.equal(hit?.stale, false);
  assert.deepEqual(ttls(hit), [55]);
});

Deno.test("SERVFAIL is never served stale", () => {
  const { clock, cache } = setup({ servfailTtl: 5, staleMaxAge: 3600 });
  const q = query("broken.example.com");
  put(cache, q, reply("broken.example.com", { rcode: Rcode.SERVFAIL }));
  clock.advance(6_000);
  assert.equal(get(cache, q, true), null);
  assert.equal(cache.stats().entries, 0);
});

Deno.test("a negative answer is served stale too", () => {
  const { clock, cache } = setup({ staleMaxAge: 60 });
  const q = query("nope.example.com");
  put(
    cache,
    q,
    reply("nope.example.com", { rcode: Rcode.NXDOMAIN, authorities: [soa("example.com", 10, 10)] }),
  );
  clock.advance(15_000);
  const hit = get(cache, q, true);
  assert.equal(hit?.stale, true);
  assert.equal(decoded(hit!.bytes).rcode, Rcode.NXDOMAIN);
  assert.deepEqual(ttls(hit), [STALE_TTL]);
});

// --- prefetch ------------------------------------------------------------------------------------

Deno.test("prefetch flagged once in the last 10% of TTL for a popular entry", () => {
  const { clock, cache } = setup({ prefetchMinHits: 2 });
  const q = query("www.example.com");
  const r = reply("www.example.com", { answers: [a("www.example.com", 100)] });
  put(cache, q, r);
  assert.equal(get(cache, q)?.prefetch, false); // hit 1, 100 s left
  clock.advance(89_999);
  assert.equal(get(cache, q)?.prefetch, false, "hit 2, still more than 10% left");
  clock.advance(1);
  assert.equal(get(cache, q)?.prefetch, true, "hit 3, 10 s of 100 left");
  assert.equal(get(cache, q)?.prefetch, false, "only once");
  clock.advance(5_000);
  assert.equal(get(cache, q)?.prefetch, false);
  put(cache, q, r); // the refresh arrived
  clock.advance(90_000);
  assert.equal(get(cache, q)?.prefetch, false, "a restored entry counts its hits again");
  assert.equal(get(cache, q)?.prefetch, true);
});

Deno.test("an entry without enough hits is not flagged for prefetch", () => {
  const { clock, cache } = setup({ prefetchMinHits: 3 });
  const q = query("www.example.com");
  put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 100)] }));
  clock.advance(95_000);
  assert.equal(get(cache, q)?.prefetch, false);
  assert.equal(get(cache, q)?.prefetch, false);
  assert.equal(get(cache, q)?.prefetch, true, "the third hit");
});

// --- stats and options ---------------------------------------------------------------------------

Deno.test("stats count entries, bytes, hits, misses, stale hits, evictions and inserts", () => {
  const { clock, cache } = setup({ maxEntries: 1, staleMaxAge: 10 });
  const q1 = query("a.example");
  const q2 = query("b.example");
  assert.deepEqual(cache.stats(), {
    entries: 0,
    bytes: 0,
    hits: 0,
    misses: 0,
    staleHits: 0,
    evictions: 0,
    expired: 0,
    inserts: 0,
  });
  get(cache, q1); // miss
  put(cache, q1, reply("a.example", { answers: [a("a.example", 5)] }));
  get(cache, q1); // hit
  clock.advance(5_000);
  get(cache, q1); // miss (expired, not asked stale)
  get(cache, q1, true); // stale hit
  put(cache, q2, reply("b.example", { answers: [a("b.example", 5)] })); // evicts a
  const s = cache.stats();
  assert.deepEqual(
    [s.entries, s.hits, s.misses, s.staleHits, s.evictions, s.expired, s.inserts],
    [1, 1, 2, 1, 1, 0, 2],
  );
  assert.equal(
    s.bytes,
    // The reply, one 2-byte TTL offset, and the 2-byte length of the (empty) stored options.
    q2.key.length + CACHE_ENTRY_OVERHEAD + decoded(get(cache, q2)!.bytes).end + 2 + 2,
  );
});

Deno.test("invalid options are rejected with RangeError", () => {
  const clock = new FakeClock();
  assert.throws(() => new ResponseCache({ clock, maxEntries: -1 }), RangeError);
  assert.throws(() => new ResponseCache({ clock, maxBytes: 1.5 }), RangeError);
  assert.throws(() => new ResponseCache({ clock, minTtl: 10, maxTtl: 5 }), RangeError);
  assert.throws(() => new ResponseCache({ clock, servfailTtl: -5 }), RangeError);
  assert.throws(() => new ResponseCache({ clock, staleMaxAge: NaN }), RangeError);
  const c = new ResponseCache({ clock, maxEntries: 0 });
  const q = query("www.example.com");
  assert.equal(
    put(c, q, reply("www.example.com", { answers: [a("www.example.com", 300)] })),
    false,
  );
});

Deno.test("hasStale is true only for an expired entry still within stale_max_age", () => {
  const { clock, cache } = setup({ staleMaxAge: 100 });
  const q = query("www.example.com");
  assert.equal(cache.hasStale(q.key), false, "no entry");
  put(cache, q, reply("www.example.com", { answers: [a("www.example.com", 60)] }));
  assert.equal(cache.hasStale(q.key), false, "fresh");
  clock.advance(61_000);
  assert.equal(cache.hasStale(q.key), true, "expired, stale-eligible");
  const before = cache.stats();
  clock.advance(100_000);
  assert.equal(cache.hasStale(q.key), false, "past stale_max_age");
  assert.deepEqual(cache.stats(), before, "hasStale counts nothing");
});
