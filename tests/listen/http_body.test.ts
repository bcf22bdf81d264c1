/**
 * Bounded request bodies (lib/listen/http_body.ts): a body is kept only up to the limit, read to
 * its end (discarding) up to MAX_DRAINED_BODY so the client's upload completes, cancelled beyond
 * that or when too slow.
 */
import assert from "node:assert/strict";
import { discardBody, MAX_DRAINED_BODY, readBody } from "../../lib/listen/http_body.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

/** A body of `chunks` chunks of `size` bytes that records how much was pulled and cancels. */
function body(chunks: number, size: number) {
  const state = { pulled: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (state.pulled === chunks) return c.close();
      state.pulled++;
      c.enqueue(new Uint8Array(size).fill(state.pulled));
    },
    cancel() {
      state.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, state };
}

const limits = (clock = new FakeClock()) => ({ maxBytes: 100, timeoutMs: 1_000, clock });

Deno.test("a body within the limit is returned whole", async () => {
  const b = body(3, 30);
  const result = await readBody(b.stream, limits());
  assert.equal(result.kind, "ok");
  assert.deepEqual(result.kind === "ok" && [...result.bytes.subarray(28, 32)], [1, 1, 2, 2]);
});

Deno.test("a body over the limit is too-large, drained to its end without being kept", async () => {
  const b = body(10, 30);
  assert.deepEqual(await readBody(b.stream, limits()), { kind: "too-large" });
  assert.equal(b.state.pulled, 10);
  assert.equal(b.state.cancelled, false);
});

Deno.test("a body longer than MAX_DRAINED_BODY is cancelled once the bound is passed", async () => {
  const size = 16 * 1024;
  const b = body(1_000, size);
  assert.deepEqual(await readBody(b.stream, limits()), { kind: "too-large" });
  assert.equal(b.state.cancelled, true);
  assert.equal(b.state.pulled, MAX_DRAINED_BODY / size + 1);
});

Deno.test("a body that stalls is cancelled at the deadline", async () => {
  const clock = new FakeClock();
  let cancelled = false;
  const stalled = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new Uint8Array(10));
    },
    cancel() {
      cancelled = true;
    },
  });
  const reading = readBody(stalled, limits(clock));
  for (let i = 0; i < 100 && clock.pending === 0; i++) await Promise.resolve();
  clock.advance(1_000);
  assert.deepEqual(await reading, { kind: "timeout" });
  assert.equal(cancelled, true);
});

Deno.test("discardBody drains an unread body, and cancels one declared over the bound", async () => {
  const small = body(5, 1_000);
  await discardBody(new Request("http://x/", { method: "PUT", body: small.stream }), limits());
  assert.equal(small.state.pulled, 5);
  assert.equal(small.state.cancelled, false);

  const big = body(5, 1_000);
  const declared = new Request("http://x/", {
    method: "PUT",
    body: big.stream,
    headers: { "content-length": String(MAX_DRAINED_BODY + 1) },
  });
  await discardBody(declared, limits());
  assert.equal(big.state.cancelled, true);
  assert.equal(big.state.pulled, 0);
});
