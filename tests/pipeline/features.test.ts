/** The pipeline's cache, coalescing, serve-stale, prefetch, ACL, rate limit and ANY policy. */
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { ResponseCache } from "../../lib/cache/cache.ts";
import { Pipeline, type PipelineOptions } from "../../lib/pipeline/pipeline.ts";
import { Acl, parseCidrList } from "../../lib/policy/acl.ts";
import { RateLimiter } from "../../lib/policy/rate_limit.ts";
import { Metrics } from "../../lib/metrics/metrics.ts";
import { type Exchange, failure, type Upstream } from "../../lib/upstream/upstream.ts";
import { buildQuery, parse } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { clientQuery, TEST_LIMITS } from "../helpers/pipeline.ts";
import { answered } from "../helpers/exchange.ts";

/** An upstream whose replies are released by the test, one exchange at a time. */
function heldUpstream() {
  const waiting: { query: Uint8Array; resolve: (e: Exchange) => void }[] = [];
  const upstream: Upstream = {
    name: "held",
    exchange: (query) => new Promise((resolve) => waiting.push({ query, resolve })),
    close: () => Promise.resolve(),
  };
  /** Answers the oldest waiting exchange: RD, RA, `rcode` and `answers(question name)`. */
  const reply = (rcode: number, answers: (name: string) => dnsPacket.Answer[]) => {
    const w = waiting.shift();
    assert.ok(w, "no exchange is waiting");
    const q = parse(w.query);
    const bytes = dnsPacket.encode({
      type: "response",
      id: q.id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
      questions: q.questions,
      answers: answers(q.questions![0].name),
    });
    w.resolve(answered(new Uint8Array(bytes), "held"));
  };
  /** Answers the oldest waiting exchange with an A record of the given TTL. */
  const answer = (ttl = 300, address = "192.0.2.7") =>
    reply(0, (name) => [{ type: "A", name, ttl, data: address }]);
  const fail = () => waiting.shift()!.resolve(failure("timeout", "held", "scripted"));
  /** Answers the oldest waiting exchange with an error rcode and no records. */
  const answerRcode = (rcode: "SERVFAIL" | "REFUSED") =>
    reply(rcode === "SERVFAIL" ? 2 : 5, () => []);
  return { upstream, waiting, answer, fail, answerRcode };
}

function setup(extra: Partial<PipelineOptions> = {}) {
  const clock = new FakeClock();
  const held = heldUpstream();
  const cache = new ResponseCache({ clock });
  const pipeline = new Pipeline({
    upstream: held.upstream,
    clock,
    ...TEST_LIMITS,
    cache,
    prefetch: true,
    ...extra,
  });
  const ask = (name: string, id = 1, client = "127.0.0.1", type = "A") =>
    Promise.resolve(pipeline.handle(clientQuery(buildQuery(name, type, id), "udp", client)));
  return { clock, held, cache, pipeline, ask };
}

const ttlOf = (bytes: Uint8Array) => parse(bytes).answers?.[0]?.ttl;
/** Lets promise callbacks run (no timers, no sleeping). */
const settle = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

Deno.test("a second identical query is answered from the cache with the TTL decremented by age", async () => {
  const { clock, held, ask } = setup();
  const first = ask("cached.test", 1);
  await settle();
  held.answer(300);
  assert.equal(ttlOf((await first)!.bytes), 300);
  clock.advance(100_000);
  const second = await ask("CACHED.test", 2);
  const msg = parse(second!.bytes);
  assert.equal(msg.id, 2);
  assert.equal(msg.questions?.[0].name, "CACHED.test");
  assert.equal(ttlOf(second!.bytes), 200);
  assert.equal(held.waiting.length, 0, "no second upstream exchange");
});

Deno.test("identical queries in flight together share one upstream exchange", async () => {
  const { held, ask } = setup();
  const answers = [ask("same.test", 1), ask("same.test", 2), ask("SAME.test", 3)];
  await settle();
  assert.equal(held.waiting.length, 1);
  held.answer();
  const ids = (await Promise.all(answers)).map((a) => parse(a!.bytes).id);
  assert.deepEqual(ids, [1, 2, 3]);
});

Deno.test("an expired answer is served stale (TTL 30) when the upstream fails", async () => {
  const { clock, held, ask } = setup({ serveStale: { answerAfterMs: 1800 } });
  const first = ask("stale.test");
  await settle();
  held.answer(60);
  await first;
  clock.advance(120_000); // expired a minute ago
  const second = ask("stale.test", 9);
  await settle();
  held.fail();
  const reply = (await second)!.bytes;
  assert.equal(parse(reply).rcode, "NOERROR");
  assert.equal(ttlOf(reply), 30);
});

for (const rcode of ["SERVFAIL", "REFUSED"] as const) {
  Deno.test(`an expired answer is served stale (TTL 30) when the upstream answers ${rcode}`, async () => {
    const { clock, held, ask } = setup({ serveStale: { answerAfterMs: 1800 } });
    const first = ask("stale-rcode.test");
    await settle();
    held.answer(60);
    await first;
    clock.advance(120_000);
    const second = ask("stale-rcode.test", 9);
    await settle();
    held.answerRcode(rcode);
    const reply = (await second)!.bytes;
    assert.equal(parse(reply).rcode, "NOERROR");
    assert.equal(ttlOf(reply), 30);
    // Without an entry to fall back on, the upstream's answer is passed on as it is.
    const fresh = ask("no-entry.test", 10);
    await settle();
    held.answerRcode(rcode);
    assert.equal(parse((await fresh)!.bytes).rcode, rcode);
  });
}

Deno.test("a slow upstream gets stale_answer_after before the stale answer is used", async () => {
  const { clock, held, ask, cache } = setup({ serveStale: { answerAfterMs: 1800 } });
  const first = ask("slow.stale.test");
  await settle();
  held.answer(60, "192.0.2.1");
  await first;
  clock.advance(120_000);
  let done = false;
  const second = ask("slow.stale.test", 2).then((a) => ((done = true), a));
  await settle();
  clock.advance(1799);
  await settle();
  assert.equal(done, false, "still waiting for the refresh");
  clock.advance(1);
  assert.equal(ttlOf((await second)!.bytes), 30);
  // The refresh carries on and updates the cache.
  held.answer(300, "192.0.2.2");
  await settle();
  const fresh = await ask("slow.stale.test", 3);
  assert.equal(parse(fresh!.bytes).answers?.[0].data, "192.0.2.2");
  assert.equal(cache.stats().staleHits, 1);
});

Deno.test("without serve-stale an upstream failure is SERVFAIL even with an expired entry", async () => {
  const { clock, held, ask } = setup({ serveStale: null });
  const first = ask("nostale.test");
  await settle();
  held.answer(60);
  await first;
  clock.advance(120_000);
  const second = ask("nostale.test");
  await settle();
  held.fail();
  assert.equal(parse((await second)!.bytes).rcode, "SERVFAIL");
});

Deno.test("a popular entry in its last 10% of TTL is refreshed in the background", async () => {
  const { clock, held, ask, pipeline } = setup();
  const first = ask("hot.test");
  await settle();
  held.answer(100);
  await first;
  await ask("hot.test"); // hits 1 and 2
  await ask("hot.test");
  clock.advance(91_000);
  const hit = await ask("hot.test");
  assert.equal(ttlOf(hit!.bytes), 9);
  await settle();
  assert.equal(held.waiting.length, 1, "a prefetch went upstream");
  held.answer(100, "192.0.2.99");
  await settle();
  clock.advance(9_000); // the old entry would have expired now
  const after = await ask("hot.test");
  assert.equal(parse(after!.bytes).answers?.[0].data, "192.0.2.99");
  assert.equal(pipeline.inFlight, 0);
});

Deno.test("a client outside the ACL is refused, or ignored with action drop", async () => {
  const allow = parseCidrList(["10.0.0.0/8"]);
  assert.ok(Array.isArray(allow));
  const acl = new Acl(allow, []);
  const { pipeline, held } = setup();
  const query = (client: string) => ({
    bytes: buildQuery("acl.test", "A", 4),
    transport: "udp" as const,
    client: { hostname: client, port: 1 },
  });
  const refused = await pipeline.handle(query("192.0.2.1"), { acl, aclAction: "refuse" });
  assert.equal(parse(refused!.bytes).rcode, "REFUSED");
  assert.equal(await pipeline.handle(query("192.0.2.1"), { acl, aclAction: "drop" }), null);
  // Garbage from a refused client gets nothing, not even FORMERR.
  const garbage = { ...query("192.0.2.1"), bytes: buildQuery("x.test").subarray(0, 14) };
  assert.equal(await pipeline.handle(garbage, { acl, aclAction: "refuse" }), null);
  assert.equal(held.waiting.length, 0);
  const allowed = pipeline.handle(query("10.1.2.3"), { acl, aclAction: "refuse" });
  await settle();
  held.answer();
  assert.equal(parse((await allowed)!.bytes).rcode, "NOERROR");
});

Deno.test("over the rate limit a UDP client gets an empty TC=1 answer", async () => {
  const clock = new FakeClock();
  const limiter = new RateLimiter({ clock, qps: 1, burst: 1 });
  const { ask, held } = setup({ rateLimit: { limiter, action: "truncate" } });
  const first = ask("rl.test", 1, "192.0.2.1");
  await settle();
  held.answer();
  assert.equal(parse((await first)!.bytes).flag_tc, false);
  const limited = parse((await ask("rl.test", 2, "192.0.2.2"))!.bytes);
  assert.equal(limited.flag_tc, true);
  assert.equal(limited.answers?.length ?? 0, 0);
  assert.equal(limited.id, 2);
});

Deno.test("over the rate limit only every slip-th UDP query is answered, the others dropped", async () => {
  const clock = new FakeClock();
  const limiter = new RateLimiter({ clock, qps: 1, burst: 1 }); // the clock stands still: no refill
  const { pipeline } = setup({ rateLimit: { limiter, action: "truncate", slip: 3 } });
  const over = (transport: "udp" | "tcp") =>
    pipeline.handle({
      bytes: buildQuery("slip.test", "ANY", 7), // answered locally when allowed
      transport,
      client: { hostname: "192.0.2.1", port: 1 },
    });
  assert.equal(parse((await over("udp"))!.bytes).flag_tc, false, "within the burst");
  const answered = [];
  for (let i = 0; i < 6; i++) answered.push((await over("udp"))?.bytes[2]! & 0x02 ? "TC" : null);
  assert.deepEqual(answered, [null, null, "TC", null, null, "TC"]);
});

Deno.test("slip does not thin REFUSED over TCP, and slip 0 answers nothing over UDP", async () => {
  const clock = new FakeClock();
  const limiter = new RateLimiter({ clock, qps: 1, burst: 1 });
  const { pipeline } = setup({ rateLimit: { limiter, action: "refuse", slip: 0 } });
  const over = (transport: "udp" | "tcp") =>
    pipeline.handle({
      bytes: buildQuery("slip.test", "ANY", 8),
      transport,
      client: { hostname: "192.0.2.1", port: 1 },
    });
  await over("udp"); // the burst
  for (let i = 0; i < 3; i++) assert.equal(await over("udp"), null);
  assert.equal(parse((await over("tcp"))!.bytes).rcode, "NOERROR", "TCP's own burst");
  for (let i = 0; i < 3; i++) assert.equal(parse((await over("tcp"))!.bytes).rcode, "REFUSED");
});

Deno.test("a client sent TC=1 by the rate limit is answered when it retries over TCP", async () => {
  const clock = new FakeClock(); // stands still: no refill
  const limiter = new RateLimiter({ clock, qps: 1, burst: 1 });
  const { pipeline, held } = setup({ rateLimit: { limiter, action: "truncate" } });
  const ask = (transport: "udp" | "tcp", client: string) =>
    Promise.resolve(pipeline.handle({
      bytes: buildQuery("retry.test", "A", 4),
      transport,
      client: { hostname: client, port: 1 },
    }));
  // A (spoofed) flood empties the /24's UDP allowance...
  const first = ask("udp", "192.0.2.66");
  await settle();
  held.answer();
  await first;
  assert.equal(parse((await ask("udp", "192.0.2.7"))!.bytes).flag_tc, true);
  // ...the real client follows the TC=1 and gets its answer over TCP (from the cache here).
  const overTcp = await ask("tcp", "192.0.2.7");
  assert.ok(overTcp, "the TCP retry is not dropped");
  const msg = parse(overTcp.bytes);
  assert.equal(msg.flag_tc, false);
  assert.equal(msg.answers?.length, 1);
  // A TCP flooder is still bounded, by the stream allowance.
  assert.equal(await ask("tcp", "192.0.2.7"), null);
});

Deno.test("slip is counted per prefix: one prefix's flood does not pick another's TC=1 answers", () => {
  const clock = new FakeClock();
  const limiter = new RateLimiter({ clock, qps: 1, burst: 1 });
  const { pipeline } = setup({ rateLimit: { limiter, action: "truncate", slip: 2 } });
  const over = (client: string) =>
    pipeline.handle({
      bytes: buildQuery("slip.test", "ANY", 7),
      transport: "udp",
      client: { hostname: client, port: 1 },
    });
  const tc = (a: ReturnType<typeof over>) => a !== null && !("then" in a) && (a.bytes[2] & 2) !== 0;
  assert.equal(tc(over("192.0.2.1")), false, "A's burst");
  assert.equal(tc(over("198.51.100.1")), false, "B's burst");
  assert.equal(over("192.0.2.1"), null, "A's first over the limit is thinned");
  assert.equal(over("198.51.100.1"), null, "so is B's: A's count is not B's");
  assert.equal(tc(over("198.51.100.1")), true, "B's second gets TC=1");
  assert.equal(tc(over("192.0.2.1")), true, "A's second gets TC=1");
});

Deno.test("error answers over UDP beyond the client's error budget are dropped and counted", async () => {
  const clock = new FakeClock();
  const metrics = new Metrics({ protocols: ["udp", "tcp"] });
  const errorLimit = new RateLimiter({ clock, qps: 1, burst: 2 });
  const { pipeline } = setup({ errorLimit, metrics });
  const send = (bytes: Uint8Array, client: string, transport: "udp" | "tcp" = "udp") =>
    pipeline.handle({ bytes, transport, client: { hostname: client, port: 1 } });
  const garbage = buildQuery("x.test", "A", 9).subarray(0, 14); // readable header: FORMERR
  const rcode = (a: { bytes: Uint8Array } | null) => a && parse(a.bytes).rcode;
  assert.equal(rcode(await send(garbage, "192.0.2.1")), "FORMERR");
  assert.equal(rcode(await send(buildQuery("m.test", "AXFR", 9), "192.0.2.1")), "REFUSED");
  assert.equal(await send(garbage, "192.0.2.1"), null, "budget spent");
  assert.equal(await send(buildQuery("m.test", "AXFR", 9), "192.0.2.1"), null);
  assert.equal(rcode(await send(garbage, "198.51.100.1")), "FORMERR", "another client's budget");
  assert.equal(rcode(await send(garbage, "192.0.2.1", "tcp")), "FORMERR", "TCP is not limited");
  const any = await send(buildQuery("a.test", "ANY", 9), "192.0.2.1");
  assert.equal(rcode(any), "NOERROR", "answers that are not errors are not limited");
  clock.advance(1000);
  assert.equal(rcode(await send(garbage, "192.0.2.1")), "FORMERR", "refilled");
  assert.match(
    await metrics.render(),
    /dotproxy_dropped_queries_total\{protocol="udp",reason="error_limit"\} 2\b/,
  );
});

Deno.test("queries turned away without an answer are counted as dropped, by reason", async () => {
  const clock = new FakeClock();
  const metrics = new Metrics({ protocols: ["udp", "tcp"] });
  const limiter = new RateLimiter({ clock, qps: 1, burst: 1 }); // the clock stands still
  const { pipeline, held } = setup({
    metrics,
    maxInFlight: 1,
    overload: "drop",
    rateLimit: { limiter, action: "truncate", slip: 2 },
  });
  const allow = parseCidrList(["10.0.0.0/8"]);
  assert.ok(Array.isArray(allow));
  const acl = new Acl(allow, []);
  const query = (client: string, name = "drop.test") => ({
    bytes: buildQuery(name, "A", 3),
    transport: "udp" as const,
    client: { hostname: client, port: 1 },
  });
  assert.equal(pipeline.handle(query("192.0.2.1"), { acl, aclAction: "drop" }), null);
  const first = pipeline.handle(query("10.0.0.1")); // the burst; waits upstream
  assert.equal(pipeline.handle(query("10.0.0.1", "other.test")), null, "thinned by slip");
  assert.ok(pipeline.handle(query("10.0.0.1", "other.test")), "every 2nd gets TC=1");
  assert.equal(pipeline.handle(query("10.9.0.1", "other.test")), null, "max_in_flight reached");
  const text = await metrics.render();
  assert.match(text, /dotproxy_dropped_queries_total\{protocol="udp",reason="policy"\} 2\b/);
  assert.match(text, /dotproxy_dropped_queries_total\{protocol="udp",reason="overload"\} 1\b/);
  await settle();
  held.answer();
  await first;
});

Deno.test("an ANY query gets the RFC 8482 minimal answer and never goes upstream", async () => {
  const { ask, held } = setup({ anyQueries: "rfc8482" });
  const reply = parse((await ask("any.test", 5, "127.0.0.1", "ANY"))!.bytes);
  assert.equal(reply.rcode, "NOERROR");
  assert.equal(reply.answers?.length, 1);
  assert.equal(reply.answers?.[0].type, "HINFO");
  assert.equal(held.waiting.length, 0);
});

Deno.test("an ANY query is refused with any_queries = refuse", async () => {
  const { ask } = setup({ anyQueries: "refuse" });
  assert.equal(parse((await ask("any.test", 5, "127.0.0.1", "ANY"))!.bytes).rcode, "REFUSED");
});

Deno.test("an EDNS client gets our OPT with our UDP size, not the upstream's", async () => {
  const { held, pipeline } = setup();
  const pending = pipeline.handle({
    bytes: buildQuery("opt.test", "A", 1, { udpSize: 4096, do: true }),
    transport: "udp",
    client: { hostname: "127.0.0.1", port: 1 },
  });
  await settle();
  held.answer();
  const opt = parse((await pending)!.bytes).additionals?.find((r: { type: string }) =>
    r.type === "OPT"
  ) as { udpPayloadSize: number } | undefined;
  assert.equal(opt?.udpPayloadSize, 1232);
});

for (const [qtype, rcode] of [["OPT", "FORMERR"], ["AXFR", "REFUSED"], ["TSIG", "REFUSED"]]) {
  Deno.test(`a ${qtype} question is answered ${rcode} locally and never forwarded`, async () => {
    const { ask, held } = setup();
    const reply = parse((await ask("meta.test", 6, "127.0.0.1", qtype))!.bytes);
    assert.equal(reply.rcode, rcode);
    assert.equal(held.waiting.length, 0);
  });
}
