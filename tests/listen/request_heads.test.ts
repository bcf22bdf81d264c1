/**
 * Incomplete request heads (lib/listen/request_heads.ts): what the DoH front's read deadline
 * runs on. HTTP/1.1 bytes between requests are a head until dispatched; HTTP/2 is followed
 * frame by frame, so control frames never count as a pending head but a split frame or an
 * open header block does.
 */
import assert from "node:assert/strict";
import { H2_PREFACE, RequestHeadTracker } from "../../lib/listen/request_heads.ts";

const text = (s: string) => new TextEncoder().encode(s);

/** An HTTP/2 frame: 9-byte header and `length` payload bytes. */
function frame(type: number, flags: number, length: number, stream = 1): Uint8Array {
  const f = new Uint8Array(9 + length);
  f.set([length >> 16, (length >> 8) & 0xff, length & 0xff, type, flags], 0);
  new DataView(f.buffer).setUint32(5, stream);
  return f;
}
const SETTINGS = 0x4, PING = 0x6, HEADERS = 0x1, CONTINUATION = 0x9, DATA = 0x0;
const END_HEADERS = 0x4;

Deno.test("HTTP/1.1: bytes arriving with nothing in flight are a head until it is dispatched", () => {
  const t = new RequestHeadTracker();
  assert.equal(t.partial, false);
  t.push(text("GET /dns-query HTTP/1.1\r\nhost"), 0);
  assert.equal(t.protocol, "http/1.1");
  assert.equal(t.partial, true);
  t.push(text(": x\r\n\r\n"), 0);
  assert.equal(t.partial, true);
  t.dispatched();
  assert.equal(t.partial, false);
  // A body arriving while its request is in flight is not a head.
  t.push(new Uint8Array(100), 1);
  assert.equal(t.partial, false);
});

Deno.test("a prefix of the HTTP/2 preface is pending; a mismatch is HTTP/1.1", () => {
  const t = new RequestHeadTracker();
  t.push(H2_PREFACE.subarray(0, 10), 0);
  assert.equal(t.protocol, "unknown");
  assert.equal(t.partial, true);
  const p = new RequestHeadTracker();
  t.push(text("P"), 0);
  p.push(text("POST / HTTP/1.1\r\n"), 0);
  assert.equal(p.protocol, "http/1.1");
});

Deno.test("HTTP/2: complete control frames are not a pending head; a split frame is", () => {
  const t = new RequestHeadTracker();
  assert.equal(t.push(H2_PREFACE, 0), true);
  assert.equal(t.protocol, "h2");
  assert.equal(t.partial, false);
  t.push(frame(SETTINGS, 0, 12, 0), 0);
  t.push(frame(PING, 0, 8, 0), 0);
  assert.equal(t.partial, false);
  const headers = frame(HEADERS, END_HEADERS | 0x1, 40);
  assert.equal(t.push(headers.subarray(0, 5), 0), false);
  assert.equal(t.partial, true);
  t.push(headers.subarray(5, 30), 0);
  assert.equal(t.partial, true);
  assert.equal(t.push(headers.subarray(30), 0), true);
  assert.equal(t.partial, false);
});

Deno.test("HTTP/2: a header block stays open until a frame with END_HEADERS", () => {
  const t = new RequestHeadTracker();
  t.push(H2_PREFACE, 0);
  t.push(frame(HEADERS, 0, 20), 0);
  assert.equal(t.partial, true);
  t.push(frame(CONTINUATION, 0, 20), 0);
  assert.equal(t.partial, true);
  t.push(frame(CONTINUATION, END_HEADERS, 20), 0);
  assert.equal(t.partial, false);
  // DATA frames only count while split.
  const data = frame(DATA, 0, 1000);
  t.push(data.subarray(0, 500), 1);
  assert.equal(t.partial, true);
  t.push(data.subarray(500), 1);
  assert.equal(t.partial, false);
});

Deno.test("HTTP/2: frames split anywhere, several per chunk, are followed", () => {
  const t = new RequestHeadTracker();
  const parts = [
    H2_PREFACE,
    frame(SETTINGS, 0, 6, 0),
    frame(HEADERS, END_HEADERS, 33),
    frame(PING, 0, 8, 0),
  ];
  const all = new Uint8Array(parts.flatMap((p) => [...p]));
  const boundaries = new Set<number>();
  let end = 0;
  for (const p of parts) boundaries.add(end += p.length);
  for (let i = 0; i < all.length; i++) {
    t.push(all.subarray(i, i + 1), 0);
    assert.equal(t.partial, !boundaries.has(i + 1), `after byte ${i}`);
  }
});
