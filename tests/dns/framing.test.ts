import assert from "node:assert/strict";
import { frameAll, FramedWriter, FrameReader, writeAll } from "../../lib/dns/framing.ts";

const msg = (n: number, fill: number) => new Uint8Array(n).fill(fill);

Deno.test("frameAll prefixes each message with its big-endian length", () => {
  const out = frameAll([msg(3, 1), msg(300, 2)]);
  assert.deepEqual([...out.subarray(0, 5)], [0, 3, 1, 1, 1]);
  assert.deepEqual([...out.subarray(5, 7)], [1, 44]);
  assert.equal(out.length, 2 + 3 + 2 + 300);
});

Deno.test("FrameReader reassembles messages split across chunks at every byte", () => {
  const stream = frameAll([msg(20, 7), msg(1, 8), msg(0, 0), msg(5000, 9)]);
  for (const step of [1, 2, 3, 7, 100, stream.length]) {
    const r = new FrameReader();
    const got: Uint8Array[] = [];
    for (let at = 0; at < stream.length; at += step) {
      r.push(stream.subarray(at, at + step));
      for (let m = r.next(); m; m = r.next()) got.push(m);
    }
    assert.deepEqual(got.map((m) => m.length), [20, 1, 0, 5000], `step ${step}`);
    assert.equal(r.pendingBytes, 0);
  }
});

Deno.test("FrameReader hands out copies that later chunks do not overwrite", () => {
  const r = new FrameReader();
  const chunk = frameAll([msg(4, 1)]);
  r.push(chunk);
  const first = r.next()!;
  chunk.fill(0xff);
  r.push(frameAll([msg(4, 2)]));
  r.next();
  assert.deepEqual([...first], [1, 1, 1, 1]);
});

Deno.test("FrameReader reports a half-received message as pending bytes", () => {
  const r = new FrameReader();
  r.push(new Uint8Array([0, 10, 1, 2, 3]));
  assert.equal(r.next(), null);
  assert.equal(r.pendingBytes, 5);
});

Deno.test("writeAll keeps writing when the sink takes only part of a buffer", async () => {
  const written: number[] = [];
  const sink = {
    write(p: Uint8Array) {
      written.push(...p.subarray(0, 3));
      return Promise.resolve(Math.min(3, p.length));
    },
  };
  await writeAll(sink, new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
  assert.deepEqual(written, [1, 2, 3, 4, 5, 6, 7]);
});

Deno.test("FramedWriter coalesces messages queued during a write into one write", async () => {
  const writes: Uint8Array[] = [];
  let release = () => {};
  const sink = {
    async write(p: Uint8Array) {
      writes.push(p.slice());
      if (writes.length === 1) await new Promise<void>((r) => (release = r));
      return p.length;
    },
  };
  const w = new FramedWriter(sink, () => assert.fail("no error expected"));
  w.send(msg(1, 1));
  await Promise.resolve(); // the first write starts at the end of the turn
  w.send(msg(1, 2));
  w.send(msg(1, 3));
  release();
  await w.flushed();
  assert.equal(writes.length, 2);
  assert.deepEqual([...writes[1]], [0, 1, 2, 0, 1, 3]);
});

Deno.test("FramedWriter reports a failed write once and drops later sends", async () => {
  const errors: unknown[] = [];
  let calls = 0;
  const sink = {
    write(): Promise<number> {
      calls++;
      return Promise.reject(new Error("broken pipe"));
    },
  };
  const w = new FramedWriter(sink, (e) => errors.push(e));
  w.send(msg(2, 1));
  await w.flushed();
  w.send(msg(2, 2));
  await w.flushed();
  assert.equal(errors.length, 1);
  assert.equal(calls, 1);
});

/** A sink whose writes wait until `release` (all bytes accepted) or `fail` is called. */
function heldSink() {
  const writes: Uint8Array[] = [];
  let settle: { resolve: (n: number) => void; reject: (e: Error) => void } | null = null;
  return {
    writes,
    write(p: Uint8Array): Promise<number> {
      writes.push(p.slice());
      return new Promise((resolve, reject) => (settle = { resolve, reject }));
    },
    release: (n?: number) => settle?.resolve(n ?? writes.at(-1)!.length),
    fail: () => settle?.reject(new Error("closed")),
  };
}

/** Lets queued microtasks run (the writer starts a write at the end of the turn it was sent in). */
async function turn(): Promise<void> {
  for (let i = 0; i < 3; i++) await Promise.resolve();
}

Deno.test("FramedWriter refuses a message that would take the queue over maxBytes or maxMessages", async () => {
  const sink = heldSink();
  const w = new FramedWriter(sink, () => assert.fail("not an error"), {
    maxBytes: 30,
    maxMessages: 3,
  });
  assert.equal(w.send(msg(8, 1)), true); // 10 framed bytes
  assert.equal(w.send(msg(8, 2)), true); // 20
  assert.equal(w.send(msg(9, 3)), false, "31 bytes would be over 30");
  assert.equal(w.send(msg(8, 3)), true); // 30
  assert.deepEqual([w.queuedBytes, w.queuedMessages], [30, 3]);
  await turn();
  assert.equal(sink.writes.length, 1, "the three sent together go out in one write");
  sink.release(15); // the first message and half the second are taken
  await turn();
  assert.deepEqual([w.queuedBytes, w.queuedMessages], [15, 2]);
  assert.equal(w.send(msg(0, 4)), true); // 17 bytes, 3 messages
  assert.equal(w.send(msg(0, 5)), false, "a fourth message is over maxMessages");
  sink.release();
  await turn();
  sink.release();
  await w.flushed();
  assert.deepEqual([w.queuedBytes, w.queuedMessages], [0, 0]);
});

Deno.test("FramedWriter counts a message as written only once its last byte is taken", async () => {
  const sink = heldSink();
  let writes = 0;
  let done = 0;
  const w = new FramedWriter(sink, () => assert.fail("no error expected"), {
    onWriteStart: () => writes++,
    onWriteDone: () => done++,
  });
  w.send(msg(4, 1));
  await turn(); // written alone: 6 bytes
  w.send(msg(4, 2)); // these two coalesce into one 12-byte write
  w.send(msg(4, 3));
  assert.deepEqual([w.queuedBytes, w.queuedMessages, writes, done], [18, 3, 1, 0]);
  sink.release();
  await turn();
  assert.deepEqual([w.queuedBytes, w.queuedMessages, writes, done], [12, 2, 2, 1]);
  sink.release(7); // the sink takes the first message and one byte of the second
  await turn();
  assert.deepEqual([w.queuedBytes, w.queuedMessages, writes, done], [5, 1, 3, 2]);
  sink.release();
  await w.flushed();
  assert.deepEqual([w.queuedBytes, w.queuedMessages], [0, 0]);
});

Deno.test("FramedWriter.abort drops the queue at once, reports no error and ignores later sends", async () => {
  const sink = heldSink();
  const w = new FramedWriter(sink, () => assert.fail("abort is not an error"));
  w.send(msg(100, 1));
  await turn(); // written alone
  w.send(msg(100, 2)); // waits behind it
  const flushed = w.flushed();
  w.abort();
  await flushed; // resolves although the write in progress never completes
  assert.deepEqual([w.queuedBytes, w.queuedMessages], [0, 0]);
  assert.equal(w.send(msg(1, 3)), true);
  assert.equal(w.queuedMessages, 0);
  await w.flushed();
  sink.fail(); // the sink closed under the write: still no error reported
  await Promise.resolve();
  assert.equal(sink.writes.length, 1);
});
