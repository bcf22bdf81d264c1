import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import type { Question } from "../../lib/dns/message.ts";
import { Pipeline, type Query } from "../../lib/pipeline/pipeline.ts";
import { type Exchange, failure, type Upstream } from "../../lib/upstream/upstream.ts";
import { buildQuery, parse } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { clientQuery, TEST_LIMITS as LIMITS } from "../helpers/pipeline.ts";
import { answered } from "../helpers/exchange.ts";

/** An upstream that replies with a canned answer (upstream ID 0xBEEF, name lower-cased). */
function scriptedUpstream(
  result?: Exchange,
): Upstream & { calls: number[]; questions: Question[] } {
  const calls: number[] = [];
  const questions: Question[] = [];
  return {
    name: "scripted",
    calls,
    questions,
    exchange(query, question, deadline) {
      calls.push(deadline);
      questions.push(question);
      if (result) return Promise.resolve(result);
      const q = parse(query);
      const reply = dnsPacket.encode({
        type: "response",
        id: 0xbeef,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: q.questions!.map((x: dnsPacket.Question) => ({
          ...x,
          name: x.name.toLowerCase(),
        })),
        answers: [{ type: "A", name: q.questions![0].name, ttl: 60, data: "192.0.2.1" }],
      });
      return Promise.resolve(answered(new Uint8Array(reply), "scripted"));
    },
    close: () => Promise.resolve(),
  };
}

function setup(result?: Exchange) {
  const clock = new FakeClock();
  const upstream = scriptedUpstream(result);
  const pipeline = new Pipeline({ upstream, clock, ...LIMITS });
  const ask = (bytes: Uint8Array, transport: Query["transport"] = "udp") =>
    pipeline.handle(clientQuery(bytes, transport));
  return { clock, upstream, pipeline, ask };
}

function encode(p: dnsPacket.Packet): Uint8Array {
  return new Uint8Array(dnsPacket.encode(p));
}

Deno.test("an answer goes back with the client's ID and spelling of the name", async () => {
  const { ask } = setup();
  const answer = await ask(buildQuery("WwW.Example.ORG", "A", 0x0101));
  const msg = parse(answer!.bytes);
  assert.equal(msg.id, 0x0101);
  assert.equal(msg.questions?.[0].name, "WwW.Example.ORG");
  assert.equal(msg.answers?.length, 1);
});

Deno.test("the upstream is given the whole query timeout as its deadline", async () => {
  const { ask, upstream, clock } = setup();
  await ask(buildQuery("deadline.test"));
  assert.deepEqual(upstream.calls, [clock.now() + 5000]);
});

Deno.test("the client's UDP limit is 512 without EDNS, else its size within [512, udp_max_size]", async () => {
  const { ask } = setup();
  assert.equal((await ask(buildQuery("a.test")))!.maxUdpSize, 512);
  assert.equal((await ask(buildQuery("a.test", "A", 1, { udpSize: 4096 })))!.maxUdpSize, 1232);
  assert.equal((await ask(buildQuery("a.test", "A", 1, { udpSize: 1000 })))!.maxUdpSize, 1000);
  assert.equal((await ask(buildQuery("a.test", "A", 1, { udpSize: 100 })))!.maxUdpSize, 512);
});

Deno.test("a malformed query with a readable header gets FORMERR with the same ID", async () => {
  const { ask, upstream } = setup();
  const bytes = buildQuery("broken.test", "A", 0x7777).slice(0, 20); // question cut short
  const answer = await ask(bytes);
  const msg = parse(answer!.bytes);
  assert.equal(msg.id, 0x7777);
  assert.equal(msg.rcode, "FORMERR");
  assert.equal(upstream.calls.length, 0);
});

Deno.test("a message shorter than a header is dropped without an answer", async () => {
  const { ask } = setup();
  assert.equal(await ask(new Uint8Array([1, 2, 3])), null);
});

Deno.test("a response sent to the proxy is dropped, never answered (no reflection loop)", async () => {
  const { ask, upstream } = setup();
  const response = encode({
    type: "response",
    id: 5,
    questions: [{ type: "A", name: "loop.test", class: "IN" }],
  });
  assert.equal(await ask(response), null);
  const mangled = response.slice(0, 14); // a malformed response too
  assert.equal(await ask(mangled), null);
  assert.equal(upstream.calls.length, 0);
});

Deno.test("a non-QUERY opcode gets NOTIMP", async () => {
  const { ask } = setup();
  const notify = buildQuery("zone.test", "SOA", 9);
  notify[2] = (notify[2] & 0x87) | (4 << 3); // opcode NOTIFY
  const msg = parse((await ask(notify))!.bytes);
  assert.equal(msg.id, 9);
  assert.equal(msg.rcode, "NOTIMP");
});

Deno.test("an EDNS version above 0 gets BADVERS", async () => {
  const { ask } = setup();
  const q = buildQuery("v1.test", "A", 11, { udpSize: 1232 });
  q[q.length - 5] = 1; // the OPT RR is last: ... ext-rcode, VERSION, flags(2), rdlen(2)
  const bytes = (await ask(q))!.bytes;
  const msg = parse(bytes);
  const opt = msg.additionals?.find((r: { type: string }) => r.type === "OPT") as
    | { extendedRcode?: number }
    | undefined;
  assert.ok(opt, "BADVERS needs an OPT record to carry the extended rcode");
  // BADVERS = 16: low 4 bits 0 in the header, high bits (1) in OPT's extended rcode.
  assert.equal(bytes[3] & 0x0f, 0);
  assert.equal(opt.extendedRcode, 1);
});

Deno.test("a query without a question gets FORMERR", async () => {
  const { ask } = setup();
  const msg = parse((await ask(encode({ type: "query", id: 12, questions: [] })))!.bytes);
  assert.equal(msg.rcode, "FORMERR");
});

for (
  const [kind, rcode] of [
    ["timeout", "SERVFAIL"],
    ["tls", "SERVFAIL"],
    ["connect", "SERVFAIL"],
    ["closed", "SERVFAIL"],
    ["down", "SERVFAIL"],
    ["overloaded", "REFUSED"],
  ] as const
) {
  Deno.test(`an upstream ${kind} failure is answered ${rcode}`, async () => {
    const { ask } = setup(failure(kind, "u", "scripted"));
    const msg = parse((await ask(buildQuery("fail.test", "A", 13)))!.bytes);
    assert.equal(msg.id, 13);
    assert.equal(msg.rcode, rcode);
    assert.equal(msg.questions?.[0].name, "fail.test");
  });
}

Deno.test("in-flight queries are counted and drained() waits for them", async () => {
  let release: (e: Exchange) => void = () => {};
  const clock = new FakeClock();
  const upstream: Upstream = {
    name: "held",
    exchange: () => new Promise((r) => (release = r)),
    close: () => Promise.resolve(),
  };
  const pipeline = new Pipeline({ upstream, clock, ...LIMITS });
  const pending = pipeline.handle({
    bytes: buildQuery("held.test"),
    transport: "tcp",
    client: { hostname: "::1", port: 1 },
  });
  assert.equal(pipeline.inFlight, 1);
  let drained = false;
  const d = pipeline.drained().then(() => (drained = true));
  await Promise.resolve();
  assert.equal(drained, false);
  release(failure("timeout", "held", "x"));
  await pending;
  await d;
  assert.equal(pipeline.inFlight, 0);
});

function heldPipeline(overload: "refuse" | "drop") {
  const releases: ((e: Exchange) => void)[] = [];
  const upstream: Upstream = {
    name: "held",
    exchange: () => new Promise((r) => releases.push(r)),
    close: () => Promise.resolve(),
  };
  const pipeline = new Pipeline({
    upstream,
    clock: new FakeClock(),
    ...LIMITS,
    maxInFlight: 2,
    overload,
  });
  const ask = (id: number) =>
    pipeline.handle({
      bytes: buildQuery("shed.test", "A", id),
      transport: "udp",
      client: { hostname: "192.0.2.1", port: 1 },
    });
  const releaseAll = () => releases.forEach((r) => r(failure("timeout", "held", "x")));
  return { pipeline, ask, releaseAll };
}

Deno.test("above max_in_flight a new query is refused at once, not queued", async () => {
  const { pipeline, ask, releaseAll } = heldPipeline("refuse");
  const held = [ask(1), ask(2)];
  const shed = parse((await ask(3))!.bytes);
  assert.equal(shed.id, 3);
  assert.equal(shed.rcode, "REFUSED");
  assert.equal(pipeline.shed, 1);
  releaseAll();
  await Promise.all(held);
  // Once the load is gone, queries go upstream again (this one fails there: SERVFAIL).
  const after = ask(4);
  releaseAll();
  assert.equal(parse((await after)!.bytes).rcode, "SERVFAIL");
});

Deno.test("with overload = drop a query above max_in_flight gets no answer", async () => {
  const { ask, releaseAll } = heldPipeline("drop");
  const held = [ask(1), ask(2)];
  assert.equal(await ask(3), null);
  releaseAll();
  await Promise.all(held);
});
