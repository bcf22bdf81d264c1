/**
 * PendingQueries, the anti-spoofing core every upstream channel shares: a reply settles a query
 * only when its ID and its question (name case-insensitively, type, class) both match; anything
 * else is discarded and counted, never delivered. IDs are unique among the queries in flight on
 * the channel; deadlines, aborts and closing settle what is outstanding exactly once.
 */
import assert from "node:assert/strict";
import type { Random } from "../../lib/sys/random.ts";
import {
  type ConnectionResult,
  PendingQueries,
  totalDiscards,
} from "../../lib/upstream/pending.ts";
import { buildQuery } from "../helpers/dns_client.ts";
import { FakeClock, seededRandom } from "../helpers/fake_clock.ts";
import { questionOf } from "../helpers/fake_plain.ts";

const QUESTION = questionOf(buildQuery("www.example.test", "A"));

/** A reply to a query for `name` `type` with `id`: the query with QR set (question only). */
function reply(id: number, name = "www.example.test", type = "A"): Uint8Array {
  const r = buildQuery(name, type, id);
  r[2] |= 0x80;
  return r;
}

/** A Random whose uint16 draws are `ids` in order; one draw more fails the test (no endless loop). */
function scriptedIds(...ids: number[]): Random {
  let i = 0;
  return {
    uint16: () => {
      if (i >= ids.length) throw new Error("the scripted IDs ran out");
      return ids[i++];
    },
    float: () => 0.5,
  };
}

function setup(random: Random = seededRandom(7)) {
  const clock = new FakeClock();
  const timeouts: number[] = [];
  const pending = new PendingQueries({ clock, random, onTimeout: (at) => timeouts.push(at) });
  return { clock, pending, timeouts };
}

const NOT_YET = Symbol("not settled");

/** The query's outcome if it has settled, else NOT_YET (no time passes). */
function outcome(p: Promise<ConnectionResult>): Promise<ConnectionResult | typeof NOT_YET> {
  return Promise.race([p, Promise.resolve(NOT_YET)]);
}

Deno.test("a reply with the query's ID and question settles it with the reply and its decoded form", async () => {
  const { clock, pending } = setup();
  const { id, result } = pending.add(QUESTION, clock.now() + 2000);
  const bytes = reply(id);
  const msg = pending.deliver(bytes);
  assert.ok(msg, "delivered");
  assert.equal(msg.header.id, id);
  const r = await result;
  assert.ok(r.ok);
  assert.equal(r.reply, bytes);
  assert.equal(r.msg, msg);
  assert.equal(pending.size, 0);
  assert.equal(clock.pending, 0, "the deadline timer is cancelled");
  assert.deepEqual(pending.discarded, { unknownId: 0, mismatched: 0, malformed: 0 });
});

Deno.test("a reply with an ID not in flight is discarded as unknownId and the query keeps waiting", async () => {
  const { clock, pending } = setup(scriptedIds(100));
  const { id, result } = pending.add(QUESTION, clock.now() + 2000);
  assert.equal(id, 100);
  for (const wrong of [101, 99, 0, 0xffff, 100 ^ 0x100]) {
    assert.equal(pending.deliver(reply(wrong)), null);
  }
  assert.equal(pending.discarded.unknownId, 5);
  assert.equal(await outcome(result), NOT_YET);
  assert.equal(pending.size, 1);
  assert.ok(pending.deliver(reply(id)), "the genuine reply still settles it");
  assert.ok((await result).ok);
});

Deno.test("a reply with the right ID but another name, type or class is discarded as mismatched", async () => {
  const { clock, pending } = setup();
  const { id, result } = pending.add(QUESTION, clock.now() + 2000);
  const otherClass = reply(id);
  otherClass[otherClass.length - 1] = 3; // QCLASS CH
  const noQuestion = reply(id).subarray(0, 12);
  noQuestion[5] = 0; // QDCOUNT 0
  const spoofs = [
    reply(id, "www.example.test.evil"),
    reply(id, "ww.example.test"),
    reply(id, "example.test"),
    reply(id, "www.example.test", "AAAA"),
    reply(id, "www.example.test", "TXT"),
    otherClass,
    noQuestion,
  ];
  for (const [i, spoof] of spoofs.entries()) {
    assert.equal(pending.deliver(spoof), null, `spoof ${i} was delivered`);
  }
  assert.equal(pending.discarded.mismatched, spoofs.length);
  assert.equal(pending.discarded.unknownId, 0);
  assert.equal(await outcome(result), NOT_YET, "no spoof settled the query");
  assert.ok(pending.deliver(reply(id)));
  assert.ok((await result).ok);
});

Deno.test("the question's name matches case-insensitively (0x20), type and class exactly", async () => {
  const { clock, pending } = setup();
  const { id, result } = pending.add(QUESTION, clock.now() + 2000);
  const mixed = reply(id, "WwW.ExAmPlE.TeSt");
  assert.ok(new TextDecoder().decode(mixed).includes("WwW"), "the reply keeps its spelling");
  const msg = pending.deliver(mixed);
  assert.ok(msg, "a differently cased name is the same name");
  assert.ok((await result).ok);
  assert.equal(pending.discarded.mismatched, 0);
});

Deno.test("a reply too short for a header, or undecodable with a known ID, is discarded as malformed", async () => {
  const { clock, pending } = setup();
  const { id, result } = pending.add(QUESTION, clock.now() + 2000);
  assert.equal(pending.deliver(new Uint8Array(0)), null);
  assert.equal(pending.deliver(reply(id).subarray(0, 11)), null);
  assert.equal(pending.deliver(reply(id).subarray(0, 20)), null, "question cut short");
  assert.deepEqual(pending.discarded, { unknownId: 0, mismatched: 0, malformed: 3 });
  assert.equal(totalDiscards(pending.discarded), 3);
  assert.equal(await outcome(result), NOT_YET);
  assert.ok(pending.deliver(reply(id)));
});

Deno.test("a duplicate reply is ignored: the first settled the query, the second finds no ID", async () => {
  const { clock, pending } = setup();
  const { id, result } = pending.add(QUESTION, clock.now() + 2000);
  const first = reply(id);
  const again = reply(id);
  assert.ok(pending.deliver(first));
  assert.equal(pending.deliver(again), null);
  assert.equal(pending.discarded.unknownId, 1);
  const r = await result;
  assert.ok(r.ok);
  assert.equal(r.reply, first, "the outcome is the first reply's");
});

Deno.test("IDs come from the injected Random and skip those in flight, so they are unique per channel", () => {
  const { clock, pending } = setup(scriptedIds(7, 7, 7, 9, 7, 9, 11, 9, 11, 7, 3));
  const a = pending.add(QUESTION, clock.now() + 2000);
  const b = pending.add(QUESTION, clock.now() + 2000);
  const c = pending.add(QUESTION, clock.now() + 2000);
  assert.deepEqual([a.id, b.id, c.id], [7, 9, 11]);
  // Once 7 is settled it is free again: the next draw skips 9 and 11 (in flight) and takes it.
  assert.ok(pending.deliver(reply(7)));
  assert.equal(pending.add(QUESTION, clock.now() + 2000).id, 7);
  assert.equal(pending.size, 3);
  pending.closeAll("test over");
});

Deno.test("thousands of queries in flight on one channel all get distinct IDs", () => {
  const { clock, pending } = setup(seededRandom(0xbeef));
  const ids = new Set<number>();
  for (let i = 0; i < 20_000; i++) ids.add(pending.add(QUESTION, clock.now() + 2000).id);
  assert.equal(ids.size, 20_000);
  assert.equal(pending.size, 20_000);
  pending.closeAll("test over");
});

Deno.test("a query with no reply by its deadline settles as timeout once, and a late reply is discarded", async () => {
  const { clock, pending, timeouts } = setup();
  const sentAt = clock.now();
  const { id, result } = pending.add(QUESTION, sentAt + 1000);
  clock.advance(999);
  assert.equal(await outcome(result), NOT_YET);
  assert.deepEqual(timeouts, []);
  clock.advance(1);
  const r = await result;
  assert.equal(!r.ok && r.kind, "timeout");
  assert.deepEqual(timeouts, [sentAt], "onTimeout gets the time the query was sent");
  assert.equal(pending.size, 0);
  assert.equal(pending.deliver(reply(id)), null, "the late reply is not delivered");
  assert.equal(pending.discarded.unknownId, 1);
  clock.advance(10_000);
  assert.deepEqual(timeouts, [sentAt], "settled once");
});

Deno.test("closing the channel settles every outstanding query as closed and cancels their deadlines", async () => {
  const { clock, pending, timeouts } = setup();
  const queries = [0, 1, 2].map(() => pending.add(QUESTION, clock.now() + 1000));
  assert.equal(clock.pending, 1, "one timer serves every deadline of the channel");
  pending.closeAll("connection lost");
  for (const q of queries) {
    const r = await q.result;
    assert.deepEqual(r, { ok: false, kind: "closed", message: "connection lost" });
  }
  assert.equal(pending.size, 0);
  assert.equal(clock.pending, 0);
  clock.advance(5000);
  assert.deepEqual(timeouts, [], "no timeout after closing");
  assert.equal(pending.deliver(reply(queries[0].id)), null);
  assert.equal(pending.discarded.unknownId, 1);
});

Deno.test("abort settles one query as closed and leaves the others waiting", async () => {
  const { clock, pending } = setup();
  const a = pending.add(QUESTION, clock.now() + 1000);
  const b = pending.add(QUESTION, clock.now() + 1000);
  pending.abort(a.id, "send failed");
  assert.deepEqual(await a.result, { ok: false, kind: "closed", message: "send failed" });
  pending.abort(a.id, "again"); // already settled: nothing happens
  pending.abort(0x10000, "never issued");
  assert.equal(pending.size, 1);
  assert.equal(clock.pending, 1, "only b's deadline is left");
  assert.equal(await outcome(b.result), NOT_YET);
  assert.ok(pending.deliver(reply(b.id)));
  assert.ok((await b.result).ok);
});

// --- QR=0: a query echoed back is not a reply ---

function setupOne() {
  const clock = new FakeClock();
  const pending = new PendingQueries({ clock, random: seededRandom() });
  const q = questionOf(buildQuery("pending.test"));
  const { id, result } = pending.add(q, clock.now() + 1000);
  let settled = false;
  result.then(() => settled = true);
  return { clock, pending, id, result, settled: () => settled };
}

const turn = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

Deno.test("an upstream message with QR=0 is discarded like a wrong ID, and the real reply still settles", async () => {
  const { pending, id, result, settled } = setupOne();
  const echoed = reply(id, "pending.test");
  echoed[2] &= 0x7f; // QR=0
  assert.equal(pending.deliver(echoed), null);
  await turn();
  assert.equal(settled(), false, "a query is not the answer");
  assert.equal(pending.discarded.mismatched, 1);
  assert.equal(pending.size, 1);
  assert.ok(pending.deliver(reply(id, "pending.test")));
  const r = await result;
  assert.ok(r.ok);
});

Deno.test("a reply with bytes after the message is accepted and the extra bytes ignored", async () => {
  const { pending, id, result } = setupOne();
  const exact = reply(id, "pending.test");
  const padded = new Uint8Array(exact.length + 5);
  padded.set(exact);
  padded.fill(0xee, exact.length);
  const msg = pending.deliver(padded);
  assert.ok(msg, "settled, not discarded as malformed");
  assert.equal(msg.end, exact.length);
  assert.equal(pending.discarded.malformed, 0);
  assert.ok((await result).ok);
});

Deno.test("one timer serves thousands of queries and each still times out exactly at its own deadline", async () => {
  const { clock, pending, timeouts } = setup();
  const results: Promise<ConnectionResult>[] = [];
  // Deadlines out of order (a group caps some attempts shorter): 1000 ms, 400 ms, 1000 ms, ...
  for (let i = 0; i < 3000; i++) {
    const { result } = pending.add(QUESTION, clock.now() + (i % 3 === 1 ? 400 : 1000));
    results.push(result);
  }
  assert.equal(clock.pending, 1);
  clock.advance(399);
  assert.deepEqual(timeouts, []);
  clock.advance(1);
  assert.equal(timeouts.length, 1000, "the short deadlines, at 400 ms");
  assert.equal(pending.size, 2000);
  clock.advance(599);
  assert.equal(timeouts.length, 1000);
  clock.advance(1);
  assert.equal(timeouts.length, 3000);
  assert.equal(pending.size, 0);
  assert.equal(clock.pending, 0, "no timer left once nothing is in flight");
  for (const r of results) assert.equal((await r).ok, false);
});

Deno.test("answered queries do not accumulate in the deadline heap while others stay in flight", () => {
  const { clock, pending } = setup();
  // One query that never gets its answer keeps the channel busy; 10,000 others are answered.
  pending.add(QUESTION, clock.now() + 60_000);
  for (let i = 0; i < 10_000; i++) {
    const { id } = pending.add(QUESTION, clock.now() + 5000);
    assert.ok(pending.deliver(reply(id)));
    clock.advance(1);
  }
  assert.equal(pending.size, 1);
  assert.ok(
    pending.deadlinesHeld <= 2 * pending.size + 64 + 1,
    `heap holds ${pending.deadlinesHeld} entries for 1 query in flight`,
  );
  assert.equal(clock.pending, 1);
});
