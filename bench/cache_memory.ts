/**
 * Memory of the response cache at scale: fills it with realistic upstream replies (two A records
 * for a distinct 38-character name, compressed, with an OPT RR the cache strips: 99 bytes on the
 * wire, 88 stored plus 4 of TTL offsets) and prints RSS and V8 heap at 0, 100k and 1M entries,
 * after a full GC, with the per-entry cost against the empty cache.
 *
 *   deno run --v8-flags=--expose-gc bench/cache_memory.ts [entries]
 *
 * The target is 1,000,000 entries well under 1 GiB RSS.
 */

import { cacheKey, ResponseCache } from "../lib/cache/cache.ts";
import { decodeMessage } from "../lib/dns/message.ts";
import type { Clock } from "../lib/sys/clock.ts";

const total = Number(Deno.args[0] ?? 1_000_000);
const checkpoints = [0, 100_000, 1_000_000].filter((n) => n <= total);
if (!checkpoints.includes(total)) checkpoints.push(total);

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) console.warn("run with --v8-flags=--expose-gc for stable numbers");

let now = 0;
const clock: Clock = { now: () => now, schedule: () => () => {} };

// "host-NNNNNNN.svc.cluster-a.example.com." with the digits rewritten per entry.
const labels = ["host-0000000", "svc", "cluster-a", "example", "com"];
const name: number[] = [];
for (const l of labels) name.push(l.length, ...[...l].map((c) => c.charCodeAt(0)));
name.push(0);
const DIGITS_AT = 12 + 1 + 5; // header, length byte, "host-"
const template = new Uint8Array([
  ...[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 1], // response, RD RA, 1 q, 2 an, 1 ar
  ...name,
  ...[0, 1, 0, 1], // A IN
  ...[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1], // A 3600
  ...[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 2],
  ...[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0], // OPT 1232, no options
]);

function reply(i: number): Uint8Array {
  const r = template.slice();
  for (let d = 6, n = i; d >= 0; d--, n = Math.floor(n / 10)) r[DIGITS_AT + d] = 0x30 + (n % 10);
  return r;
}

function mib(n: number): string {
  return (n / 1048576).toFixed(1).padStart(8) + " MiB";
}

const cache = new ResponseCache({
  clock,
  maxEntries: total,
  maxBytes: Number.MAX_SAFE_INTEGER,
});

function report(n: number, base?: Deno.MemoryUsage): Deno.MemoryUsage {
  gc?.();
  gc?.();
  const m = Deno.memoryUsage();
  const per = base && n > 0
    ? `  ${((m.rss - base.rss) / n).toFixed(0)} B/entry RSS, ${
      ((m.heapUsed - base.heapUsed) / n).toFixed(0)
    } B/entry heap, ${((m.external - base.external) / n).toFixed(0)} B/entry external`
    : "";
  console.log(
    `${String(n).padStart(9)} entries: rss ${mib(m.rss)}  heapUsed ${mib(m.heapUsed)}  ` +
      `heapTotal ${mib(m.heapTotal)}  external ${mib(m.external)}${per}`,
  );
  return m;
}

console.log(`stored bytes per entry: ${template.length - 11} (+ 2 per TTL offset)`);
const base = report(0);
const t0 = performance.now();
let stored = 0;
for (const target of checkpoints.slice(1)) {
  for (; stored < target; stored++) {
    const bytes = reply(stored);
    const d = decodeMessage(bytes);
    if (!d.ok || !cache.store(cacheKey(d.value), bytes, d.value)) throw new Error("not stored");
    now += 0.001;
  }
  report(stored, base);
}
const ms = performance.now() - t0;
console.log(`insert (build + decode + key + store): ${(ms * 1000 / stored).toFixed(2)} µs each`);
const stats = cache.stats();
console.log(
  `accounted bytes (maxBytes budget): ${(stats.bytes / stats.entries).toFixed(0)} per entry`,
);
console.log("stats:", stats);
