import assert from "node:assert/strict";
import { Coalescer } from "../../lib/cache/coalesce.ts";

/** A promise the test settles by hand. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

Deno.test("coalescer: identical keys in flight share one call", async () => {
  const c = new Coalescer<string>();
  const d = deferred<string>();
  let calls = 0;
  const work = () => {
    calls++;
    return d.promise;
  };
  const first = c.run("k", work);
  const second = c.run("k", work);
  assert.equal(calls, 1);
  assert.equal(c.inFlight, 1);
  d.resolve("answer");
  assert.deepEqual(await Promise.all([first, second]), ["answer", "answer"]);
  assert.equal(c.inFlight, 0);
});

Deno.test("coalescer: different keys run separately", async () => {
  const c = new Coalescer<number>();
  const a = c.run("a", () => Promise.resolve(1));
  const b = c.run("b", () => Promise.resolve(2));
  assert.equal(c.inFlight, 2);
  assert.deepEqual(await Promise.all([a, b]), [1, 2]);
});

Deno.test("coalescer: a settled key runs again on the next call", async () => {
  const c = new Coalescer<number>();
  let calls = 0;
  const work = () => Promise.resolve(++calls);
  assert.equal(await c.run("k", work), 1);
  assert.equal(await c.run("k", work), 2);
  assert.equal(c.inFlight, 0);
});

Deno.test("coalescer: forgets the key after rejection, and every waiter sees it", async () => {
  const c = new Coalescer<string>();
  const d = deferred<string>();
  const first = c.run("k", () => d.promise);
  const second = c.run("k", () => Promise.resolve("not called"));
  d.reject(new Error("upstream down"));
  await assert.rejects(first, /upstream down/);
  await assert.rejects(second, /upstream down/);
  assert.equal(c.inFlight, 0);
  assert.equal(await c.run("k", () => Promise.resolve("retried")), "retried");
});

Deno.test("coalescer: work that throws synchronously rejects and leaves nothing behind", async () => {
  const c = new Coalescer<string>();
  await assert.rejects(
    c.run("k", () => {
      throw new Error("bad");
    }),
    /bad/,
  );
  assert.equal(c.inFlight, 0);
});
