import assert from "node:assert/strict";
import {
  type DecodeErrorKind,
  MAX_NAME_LENGTH,
  MAX_POINTER_HOPS,
  nameFromString,
  nameKey,
  namesEqual,
  nameToString,
  readName,
  skipName,
} from "../../lib/dns/wire.ts";

const enc = new TextEncoder();

/** Wire form of labels, built by hand so the tests do not trust nameFromString. */
function wire(...labels: string[]): number[] {
  const out: number[] = [];
  for (const l of labels) out.push(l.length, ...enc.encode(l));
  out.push(0);
  return out;
}

/** 12 bytes standing in for a header, so names sit where they would in a message. */
const PAD: number[] = new Array(12).fill(0);

function errorKind(r: { ok: true } | { ok: false; error: { kind: DecodeErrorKind } }) {
  assert.equal(r.ok, false, "expected a decode error");
  return r.ok ? undefined : r.error.kind;
}

Deno.test("nameFromString and nameToString round-trip ordinary names", () => {
  const w = nameFromString("www.example.com.");
  assert.deepEqual([...w], wire("www", "example", "com"));
  assert.equal(nameToString(w), "www.example.com.");
  assert.deepEqual(nameFromString("www.example.com"), w, "trailing dot is optional");
});

Deno.test("nameFromString keeps letter case as written", () => {
  const w = nameFromString("WwW.ExAmple.COM");
  assert.deepEqual([...w], wire("WwW", "ExAmple", "COM"));
  assert.equal(nameToString(w), "WwW.ExAmple.COM.");
});

Deno.test("the root name is a single zero byte and prints as a dot", () => {
  assert.deepEqual([...nameFromString(".")], [0]);
  assert.deepEqual([...nameFromString("")], [0]);
  assert.equal(nameToString(Uint8Array.of(0)), ".");
});

Deno.test("escapes round-trip: dots and backslashes in labels, non-printables as \\DDD", () => {
  const w = Uint8Array.of(5, 0x61, 0x2e, 0x62, 0x5c, 0x20, 3, 0x00, 0xff, 0x7f, 0);
  const s = nameToString(w);
  assert.equal(s, "a\\.b\\\\\\032.\\000\\255\\127.");
  assert.deepEqual(nameFromString(s), w);
});

Deno.test("nameFromString accepts \\X escapes of ordinary characters", () => {
  assert.deepEqual([...nameFromString("\\a\\-b.c")], wire("a-b", "c"));
});

Deno.test("nameFromString rejects a 64-byte label and accepts 63", () => {
  assert.equal(nameFromString("a".repeat(63) + ".com").length, 63 + 1 + 4 + 1);
  assert.throws(() => nameFromString("a".repeat(64) + ".com"), RangeError);
  assert.throws(() => nameFromString("\\097".repeat(64)), RangeError);
});

Deno.test("nameFromString rejects a 256-byte name and accepts 255", () => {
  const l63 = "a".repeat(63);
  const ok = [l63, l63, l63, "b".repeat(61)].join(".");
  assert.equal(nameFromString(ok).length, MAX_NAME_LENGTH);
  const tooLong = [l63, l63, l63, "b".repeat(62)].join(".");
  assert.throws(() => nameFromString(tooLong), RangeError);
  assert.throws(() => nameFromString(tooLong + "."), RangeError);
});

Deno.test("nameFromString rejects empty labels, bad escapes and non-ASCII", () => {
  for (const bad of ["a..b", ".a", "..", "a\\", "a\\25", "a\\256", "a\\2x5", "é.com", "a\tb"]) {
    assert.throws(() => nameFromString(bad), RangeError, bad);
  }
});

Deno.test("readName reads an uncompressed name and reports where it ends", () => {
  const buf = Uint8Array.from([...PAD, ...wire("Www", "Example", "com"), 0xaa]);
  const r = readName(buf, 12);
  assert.ok(r.ok);
  assert.deepEqual([...r.value.wire], wire("Www", "Example", "com"));
  assert.equal(r.value.end, buf.length - 1);
});

Deno.test("readName returns a copy that does not alias the message", () => {
  const buf = Uint8Array.from([...PAD, ...wire("a")]);
  const r = readName(buf, 12);
  assert.ok(r.ok);
  buf[13] = 0x62;
  assert.deepEqual([...r.value.wire], wire("a"));
});

Deno.test("readName follows a backward pointer and ends just after it", () => {
  // 12: example.com.  25: www + pointer to 12
  const buf = Uint8Array.from([
    ...PAD,
    ...wire("example", "com"),
    3,
    ...enc.encode("www"),
    0xc0,
    12,
    9,
  ]);
  const r = readName(buf, 25);
  assert.ok(r.ok);
  assert.equal(nameToString(r.value.wire), "www.example.com.");
  assert.equal(r.value.end, 31);
});

Deno.test("readName rejects a forward pointer", () => {
  const buf = Uint8Array.from([...PAD, 0xc0, 14, ...wire("a")]);
  assert.equal(errorKind(readName(buf, 12)), "pointer_out_of_range");
});

Deno.test("readName rejects a pointer beyond the message", () => {
  const buf = Uint8Array.from([...PAD, 0xc1, 0x00]);
  assert.equal(errorKind(readName(buf, 12)), "pointer_out_of_range");
});

Deno.test("readName rejects a self-pointer", () => {
  const buf = Uint8Array.from([...PAD, 0xc0, 12]);
  const r = readName(buf, 12);
  assert.equal(errorKind(r), "pointer_loop");
  assert.equal(r.ok ? -1 : r.error.offset, 12);
});

Deno.test("readName rejects a pointer back into the name being read", () => {
  // 12: label "a", then a pointer to 12: would loop forever.
  const buf = Uint8Array.from([...PAD, 1, 0x61, 0xc0, 12]);
  assert.equal(errorKind(readName(buf, 12)), "pointer_loop");
  // A second hop may not go back to where the first one landed either.
  const buf2 = Uint8Array.from([...PAD, 1, 0x61, 0xc0, 12, 1, 0x62, 0xc0, 14]);
  assert.equal(errorKind(readName(buf2, 16)), "pointer_loop");
});

/** A name "a." at 12 followed by `hops` pointers, each to the previous one; returns the last. */
function pointerChain(hops: number): { buf: Uint8Array; at: number } {
  const bytes = [...PAD, 1, 0x61, 0];
  let target = 12;
  for (let i = 0; i < hops; i++) {
    const at = bytes.length;
    bytes.push(0xc0 | (target >> 8), target & 0xff);
    target = at;
  }
  return { buf: Uint8Array.from(bytes), at: target };
}

Deno.test("readName follows a chain of MAX_POINTER_HOPS pointers", () => {
  const { buf, at } = pointerChain(MAX_POINTER_HOPS);
  const r = readName(buf, at);
  assert.ok(r.ok);
  assert.deepEqual([...r.value.wire], wire("a"));
  assert.equal(r.value.end, at + 2);
});

Deno.test("readName rejects a chain of more than MAX_POINTER_HOPS pointers", () => {
  const { buf, at } = pointerChain(MAX_POINTER_HOPS + 1);
  assert.equal(errorKind(readName(buf, at)), "too_many_pointers");
});

Deno.test("a label length of 64 (0x40) is rejected as label_too_long", () => {
  const buf = Uint8Array.from([...PAD, 64, ...new Array(64).fill(0x61), 0]);
  assert.equal(errorKind(readName(buf, 12)), "label_too_long");
  assert.equal(errorKind(skipName(buf, 12)), "label_too_long");
  const buf2 = Uint8Array.from([...PAD, 0x7f, 1, 2, 3]);
  assert.equal(errorKind(readName(buf2, 12)), "label_too_long");
});

Deno.test("the reserved 0x80 label type is rejected as bad_label_type", () => {
  for (const b of [0x80, 0xbf]) {
    const buf = Uint8Array.from([...PAD, 1, 0x61, b, 0, 0]);
    assert.equal(errorKind(readName(buf, 12)), "bad_label_type");
    assert.equal(errorKind(skipName(buf, 12)), "bad_label_type");
  }
});

Deno.test("readName accepts a 255-byte name and rejects a 256-byte one", () => {
  const l63 = "a".repeat(63);
  const ok = Uint8Array.from([...PAD, ...wire(l63, l63, l63, "b".repeat(61))]);
  const r = readName(ok, 12);
  assert.ok(r.ok);
  assert.equal(r.value.wire.length, 255);
  const long = Uint8Array.from([...PAD, ...wire(l63, l63, l63, "b".repeat(62))]);
  assert.equal(errorKind(readName(long, 12)), "name_too_long");
  assert.equal(errorKind(skipName(long, 12)), "name_too_long");
});

Deno.test("readName counts decompressed length: a pointer cannot build a 256-byte name", () => {
  const l63 = "a".repeat(63);
  // 12: three 63-byte labels + root (193 bytes); then a 62-byte label + pointer to 12 = 256.
  const suffix = wire(l63, l63, l63);
  const bytes = [...PAD, ...suffix];
  const at = bytes.length;
  bytes.push(62, ...new Array(62).fill(0x62), 0xc0, 12);
  const buf = Uint8Array.from(bytes);
  assert.equal(errorKind(readName(buf, at)), "name_too_long");
  // One byte shorter is fine.
  const bytes2 = [...PAD, ...suffix, 61, ...new Array(61).fill(0x62), 0xc0, 12];
  const r = readName(Uint8Array.from(bytes2), at);
  assert.ok(r.ok);
  assert.equal(r.value.wire.length, 255);
});

Deno.test("readName reports truncation anywhere inside a name", () => {
  const full = [...PAD, ...wire("abc", "de")];
  for (let cut = 12; cut < full.length; cut++) {
    assert.equal(
      errorKind(readName(Uint8Array.from(full.slice(0, cut)), 12)),
      "truncated",
      `${cut}`,
    );
    assert.equal(
      errorKind(skipName(Uint8Array.from(full.slice(0, cut)), 12)),
      "truncated",
      `${cut}`,
    );
  }
  assert.equal(errorKind(readName(Uint8Array.from([...PAD, 0xc0]), 12)), "truncated");
});

Deno.test("skipName stops after a pointer without following it", () => {
  const buf = Uint8Array.from([...PAD, ...wire("x"), 3, 0x77, 0x77, 0x77, 0xc0, 12, 0xee]);
  const r = skipName(buf, 15);
  assert.ok(r.ok);
  assert.equal(r.value, 21);
  const root = skipName(Uint8Array.from([...PAD, 0]), 12);
  assert.ok(root.ok);
  assert.equal(root.value, 13);
});

Deno.test("skipName rejects forward and self pointers", () => {
  assert.equal(
    errorKind(skipName(Uint8Array.from([...PAD, 0xc0, 14, 0]), 12)),
    "pointer_out_of_range",
  );
  assert.equal(errorKind(skipName(Uint8Array.from([...PAD, 0xc0, 12]), 12)), "pointer_loop");
});

Deno.test("namesEqual ignores ASCII case only", () => {
  assert.ok(namesEqual(nameFromString("WWW.Example.COM"), nameFromString("www.example.com")));
  assert.ok(!namesEqual(nameFromString("www.example.com"), nameFromString("www.example.org")));
  assert.ok(!namesEqual(nameFromString("a.b"), nameFromString("ab")));
  // Non-letters that differ by 0x20 are different names.
  assert.ok(!namesEqual(nameFromString("@"), nameFromString("`")));
  assert.ok(!namesEqual(nameFromString("["), nameFromString("{")));
  // Non-ASCII bytes compare exactly (no Latin-1 folding).
  assert.ok(!namesEqual(Uint8Array.of(1, 0xc0, 0), Uint8Array.of(1, 0xe0, 0)));
});

Deno.test("nameKey is equal for case variants and distinct for different names", () => {
  const k = nameKey(nameFromString("WwW.ExAmPle.CoM"));
  assert.equal(k, nameKey(nameFromString("www.example.com")));
  assert.notEqual(k, nameKey(nameFromString("www.example.org")));
  assert.notEqual(nameKey(nameFromString("a.b")), nameKey(nameFromString("ab")));
  assert.notEqual(nameKey(nameFromString("@")), nameKey(nameFromString("`")));
  assert.notEqual(nameKey(Uint8Array.of(1, 0xc0, 0)), nameKey(Uint8Array.of(1, 0xe0, 0)));
  assert.equal(nameKey(Uint8Array.of(0)).length, 1);
});

Deno.test("nameKey handles the longest name", () => {
  const l63 = "A".repeat(63);
  const text = [l63, l63, l63, "B".repeat(61)].join(".");
  const k = nameKey(nameFromString(text));
  assert.equal(k.length, 255);
  assert.equal(k, nameKey(nameFromString(text.toLowerCase())));
});

Deno.test("readName and skipName report a negative offset instead of reading garbage", () => {
  const buf = Uint8Array.from([...PAD, 0]);
  assert.equal(errorKind(readName(buf, -1)), "truncated");
  assert.equal(errorKind(skipName(buf, -1)), "truncated");
  assert.equal(errorKind(readName(buf, buf.length)), "truncated");
});
