import assert from "node:assert/strict";
import { probe } from "../../lib/admin/probe.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

function serve(handler: (req: Request) => Response | Promise<Response>) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
}

Deno.test("probing a URL that answers 200 exits 0", async () => {
  const server = serve(() => new Response("ok\n"));
  try {
    assert.equal(await probe(`http://127.0.0.1:${server.addr.port}/healthz`), 0);
  } finally {
    await server.shutdown();
  }
});

Deno.test("probing a URL that answers 503 exits 1 and says the status", async () => {
  const server = serve(() => new Response("not ready\n", { status: 503 }));
  const lines: string[] = [];
  try {
    const code = await probe(`http://127.0.0.1:${server.addr.port}/readyz`, {
      report: (l) => lines.push(l),
    });
    assert.equal(code, 1);
    assert.deepEqual(lines, [`probe: http://127.0.0.1:${server.addr.port}/readyz: HTTP 503`]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("a redirect is not followed and is not healthy", async () => {
  const server = serve(() => new Response(null, { status: 302, headers: { location: "/x" } }));
  try {
    assert.equal(await probe(`http://127.0.0.1:${server.addr.port}/`), 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("probing a port nobody listens on exits 1", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr;
  l.close();
  const lines: string[] = [];
  assert.equal(
    await probe(`http://127.0.0.1:${port}/healthz`, { report: (s) => lines.push(s) }),
    1,
  );
  assert.equal(lines.length, 1);
  assert.match(lines[0], new RegExp(`^probe: http://127\\.0\\.0\\.1:${port}/healthz: `));
});

Deno.test("a server that never answers fails the probe at the timeout", async () => {
  let unblock = () => {};
  const blocked = new Promise<void>((r) => unblock = r);
  const server = serve(async () => {
    await blocked;
    return new Response("late");
  });
  const clock = new FakeClock();
  const lines: string[] = [];
  try {
    const result = probe(`http://127.0.0.1:${server.addr.port}/healthz`, {
      clock,
      timeoutMs: 3000,
      report: (s) => lines.push(s),
    });
    clock.advance(3000);
    assert.equal(await result, 1);
    assert.match(lines[0], /no answer within 3000 ms$/);
    assert.equal(clock.pending, 0);
  } finally {
    unblock();
    await server.shutdown();
  }
});

Deno.test("anything but an http or https URL is refused without a request", async () => {
  const lines: string[] = [];
  assert.equal(await probe("not a url", { report: (s) => lines.push(s) }), 1);
  assert.equal(await probe("file:///etc/passwd", { report: (s) => lines.push(s) }), 1);
  assert.deepEqual(lines, [
    'probe: "not a url" is not a URL',
    "probe: file:///etc/passwd: only http:// and https:// URLs can be probed",
  ]);
});
