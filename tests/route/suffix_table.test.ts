import assert from "node:assert/strict";
import { nameFromString } from "../../lib/dns/wire.ts";
import { SuffixTable } from "../../lib/route/suffix_table.ts";

const w = nameFromString;

Deno.test("the longest stored suffix wins", () => {
  const t = new SuffixTable<string>();
  t.set("example", "tld");
  t.set("corp.example", "corp");
  t.set("a.b.corp.example", "deep");
  assert.equal(t.lookup(w("corp.example")), "corp");
  assert.equal(t.lookup(w("x.corp.example")), "corp");
  assert.equal(t.lookup(w("b.corp.example")), "corp");
  assert.equal(t.lookup(w("a.b.corp.example")), "deep");
  assert.equal(t.lookup(w("z.a.b.corp.example")), "deep");
  assert.equal(t.lookup(w("other.example")), "tld");
  assert.equal(t.lookup(w("example.org")), undefined);
});

Deno.test("a suffix matches on label boundaries only", () => {
  const t = new SuffixTable<string>();
  t.set("corp.example", "corp");
  assert.equal(t.lookup(w("xcorp.example")), undefined);
  assert.equal(t.lookup(w("corp.example.com")), undefined);
  assert.equal(t.lookup(w("rp.example")), undefined);
  assert.equal(t.lookup(w("a.xcorp.example")), undefined);
  // A label containing a dot is one label, not two.
  assert.equal(t.lookup(w("a\\.corp.example")), undefined);
});

Deno.test("matching ignores ASCII case in both the stored and the queried name", () => {
  const t = new SuffixTable<number>();
  t.set("Corp.EXAMPLE", 1);
  assert.equal(t.lookup(w("WWW.corp.example")), 1);
  assert.equal(t.lookup(w("www.CORP.Example")), 1);
  // Non-ASCII bytes compare exactly: \195 (0xC3) is not folded.
  t.set("\\195.test", 2);
  assert.equal(t.lookup(w("a.\\195.test")), 2);
  assert.equal(t.lookup(w("a.\\227.test")), undefined);
});

Deno.test("the root matches every name and loses to any longer suffix", () => {
  const t = new SuffixTable<string>();
  t.set(".", "default");
  t.set("corp.example", "corp");
  assert.equal(t.lookup(w(".")), "default");
  assert.equal(t.lookup(w("com")), "default");
  assert.equal(t.lookup(w("a.corp.example")), "corp");
  assert.deepEqual(t.match(w("www.example.com")), { value: "default", depth: 0 });
  assert.deepEqual(t.match(w("a.corp.example")), { value: "corp", depth: 2 });
});

Deno.test("set replaces a value and reports the old one; get is exact", () => {
  const t = new SuffixTable<string>();
  assert.equal(t.set("corp.example", "one"), undefined);
  assert.equal(t.set("CORP.example.", "two"), "one");
  assert.equal(t.size, 1);
  assert.equal(t.get("corp.example"), "two");
  assert.equal(t.get("a.corp.example"), undefined);
  assert.equal(t.get("example"), undefined, "an ancestor node has no value");
  assert.equal(t.set(".", "root"), undefined);
  assert.equal(t.get("."), "root");
  assert.equal(t.size, 2);
});

Deno.test("a stored name's ancestors do not match by themselves", () => {
  const t = new SuffixTable<string>();
  t.set("a.b.c", "abc");
  assert.equal(t.lookup(w("c")), undefined);
  assert.equal(t.lookup(w("b.c")), undefined);
  assert.equal(t.lookup(w("x.b.c")), undefined);
});

Deno.test("malformed wire names match only the root", () => {
  const t = new SuffixTable<string>();
  t.set("example", "e");
  assert.equal(t.lookup(new Uint8Array([7, 0x65, 0x78])), undefined); // label past the end
  assert.equal(t.lookup(new Uint8Array([])), undefined);
  assert.equal(
    t.lookup(new Uint8Array([7, ...new TextEncoder().encode("example"), 0, 0])),
    undefined,
  );
  t.set(".", "root");
  assert.equal(t.lookup(new Uint8Array([0xc0, 0x0c])), "root");
});

Deno.test("entries lists every stored suffix once", () => {
  const t = new SuffixTable<number>();
  t.set(".", 0);
  t.set("a.example", 1);
  t.set("b.a.example", 2);
  const got = [...t.entries()].map(([wire, v]) => [Array.from(wire).join(","), v]);
  assert.equal(got.length, 3);
  assert.deepEqual(new Set(got.map(([, v]) => v)), new Set([0, 1, 2]));
});

Deno.test("invalid names are rejected when stored", () => {
  const t = new SuffixTable<number>();
  assert.throws(() => t.set("a..b", 1), RangeError);
  assert.throws(() => t.set("x".repeat(64) + ".com", 1), RangeError);
  assert.throws(() => t.set(new Uint8Array([3, 0x61]), 1), RangeError);
});

/** A deterministic PRNG (mulberry32), so the property test is reproducible. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("lookups agree with a naive string implementation over many random names", () => {
  const rnd = prng(13);
  const alphabet = "abcXYZ-0";
  const label = () => {
    let s = "";
    const n = 1 + Math.floor(rnd() * 3);
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
    return s;
  };
  const name = () => Array.from({ length: 1 + Math.floor(rnd() * 4) }, label).join(".");
  const t = new SuffixTable<string>();
  const reference = new Map<string, string>();
  // Enough entries that 30-bit hash collisions between nodes are likely to occur.
  for (let i = 0; i < 60_000; i++) {
    const n = name();
    t.set(n, n);
    reference.set(n.toLowerCase(), n);
  }
  const naive = (q: string): string | undefined => {
    const labels = q.toLowerCase().split(".");
    for (let i = 0; i < labels.length; i++) {
      const v = reference.get(labels.slice(i).join("."));
      if (v !== undefined) return v;
    }
    return undefined;
  };
  for (let i = 0; i < 20_000; i++) {
    const q = `${label()}.${name()}`;
    const want = naive(q);
    const got = t.lookup(w(q));
    // Values are the first spelling stored; compare case-insensitively.
    assert.equal(got?.toLowerCase(), want?.toLowerCase(), q);
  }
});

Deno.test("exact finds only the stored name itself, covers also its ancestors", () => {
  const t = new SuffixTable<string>();
  t.set("a.b.example", "ab");
  assert.equal(t.exact(w("a.b.example")), "ab");
  assert.equal(t.exact(w("A.B.Example")), "ab");
  assert.equal(t.exact(w("x.a.b.example")), undefined);
  assert.equal(t.exact(w("b.example")), undefined);
  assert.equal(t.covers(w("b.example")), true);
  assert.equal(t.covers(w("example")), true);
  assert.equal(t.covers(w(".")), true);
  assert.equal(t.covers(w("a.b.example")), true);
  assert.equal(t.covers(w("c.b.example")), false);
  assert.equal(t.covers(w("x.a.b.example")), false);
  assert.equal(new SuffixTable<string>().covers(w(".")), false);
  t.set(".", "root");
  assert.equal(t.exact(w(".")), "root");
});
