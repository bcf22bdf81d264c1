/**
 * DeadlineQueue: one timer for many deadlines. Every entry comes due exactly at its deadline on
 * the (fake) clock, earliest first and in token order on ties, whatever order they were added
 * in; only one host timer is ever armed; compaction drops answered entries and keeps the rest.
 */
import assert from "node:assert/strict";
import { DeadlineQueue } from "../../lib/upstream/deadlines.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { Rng } from "../helpers/rng.ts";

function setup() {
  const clock = new FakeClock();
  const due: { key: number; token: number; at: number }[] = [];
  const queue = new DeadlineQueue(clock, (key, token) => due.push({ key, token, at: clock.now() }));
  return { clock, queue, due };
}

Deno.test("entries added in any order come due at their own deadlines, earliest first", () => {
  const { clock, queue, due } = setup();
  const t0 = clock.now();
  const rng = new Rng(11);
  const deadlines = Array.from({ length: 500 }, () => t0 + 1 + rng.int(2000));
  deadlines.forEach((d, i) => queue.add(d, i, i));
  assert.equal(clock.pending, 1, "one host timer");
  clock.advance(2001);
  assert.equal(due.length, 500);
  for (const d of due) assert.equal(d.at, deadlines[d.key], `entry ${d.key} fired on time`);
  const order = due.map((d) => d.at);
  assert.deepEqual(order, [...order].sort((a, b) => a - b));
  assert.equal(queue.size, 0);
  assert.equal(clock.pending, 0, "no timer once empty");
});

Deno.test("entries due at the same time fire in token order", () => {
  const { clock, queue, due } = setup();
  const at = clock.now() + 100;
  for (const token of [5, 1, 4, 2, 3]) queue.add(at, token * 10, token);
  clock.advance(100);
  assert.deepEqual(due.map((d) => d.token), [1, 2, 3, 4, 5]);
});

Deno.test("an earlier deadline added later re-arms the one timer for it", () => {
  const { clock, queue, due } = setup();
  queue.add(clock.now() + 1000, 1, 1);
  queue.add(clock.now() + 10, 2, 2);
  assert.equal(clock.pending, 1, "the later timer was replaced, not kept beside");
  clock.advance(10);
  assert.deepEqual(due.map((d) => d.key), [2]);
  clock.advance(990);
  assert.deepEqual(due.map((d) => d.key), [2, 1]);
});

Deno.test("compaction drops the entries that are no longer live and keeps the order of the rest", () => {
  const { clock, queue, due } = setup();
  const t0 = clock.now();
  for (let i = 0; i < 100; i++) queue.add(t0 + 1000 - i, i, i);
  queue.compact((key) => key % 10 === 0);
  assert.equal(queue.size, 10);
  clock.advance(1000);
  assert.deepEqual(due.map((d) => d.key), [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]);
  for (const d of due) assert.equal(d.at, t0 + 1000 - d.key);
});

Deno.test("compacting everything away disarms the timer; clear drops entries and timer", () => {
  const { clock, queue, due } = setup();
  queue.add(clock.now() + 50, 1, 1);
  queue.compact(() => false);
  assert.equal(clock.pending, 0);
  queue.add(clock.now() + 50, 2, 2);
  queue.add(clock.now() + 70, 3, 3);
  queue.clear();
  assert.equal(queue.size, 0);
  assert.equal(clock.pending, 0);
  clock.advance(100);
  assert.deepEqual(due, []);
});

Deno.test("an entry added while another comes due is served too", () => {
  const clock = new FakeClock();
  const fired: number[] = [];
  const queue: DeadlineQueue = new DeadlineQueue(clock, (key) => {
    fired.push(key);
    if (key === 1) queue.add(clock.now() + 5, 2, 2);
  });
  queue.add(clock.now() + 10, 1, 1);
  clock.advance(14);
  assert.deepEqual(fired, [1]);
  clock.advance(1);
  assert.deepEqual(fired, [1, 2]);
  assert.equal(clock.pending, 0);
});
