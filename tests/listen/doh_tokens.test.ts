/**
 * DoH credentials on the real DoH listener (fake handler): a token in the Authorization header or
 * the path names the client; missing or wrong → 401 (404 in the path form) with no DNS work;
 * repeated failures from one address → 429 even with the right token, counted by reason. curl
 * over HTTP/2 and HTTP/1.1 at the end.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DohAuthenticator } from "../../lib/identity/doh_auth.ts";
import { FailureLimiter } from "../../lib/identity/failure_limiter.ts";
import type { ClientAuthMode } from "../../lib/identity/modes.ts";
import { TokenStore } from "../../lib/identity/tokens.ts";
import { type HttpsListener, listenHttps } from "../../lib/listen/https.ts";
import type { Query } from "../../lib/pipeline/pipeline.ts";
import { buildQuery } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { readFixture } from "../helpers/fake_dot.ts";
import { fixturePath } from "../helpers/fixtures.ts";
import { recordingHandler } from "../helpers/listener.ts";
import { runTool, toolTest } from "../helpers/tools.ts";

const CA = await readFixture("ca.pem");
const ALICE = "Zm9vYmFyLWFsaWNlLXRva2VuLTAxMjM0NTY3ODk";
const BOB = "Ym9iLXRva2VuLWFiY2RlZmdoaWprbG1ub3BxcnN0";
const sha256 = (t: string) => createHash("sha256").update(t).digest("hex");

interface Doh {
  listener: HttpsListener;
  queries: Query[];
  base: string;
  clock: FakeClock;
  get(path: string, headers?: Record<string, string>): Promise<Response>;
}

async function withDoh(mode: ClientAuthMode, fn: (d: Doh) => Promise<void>): Promise<void> {
  const clock = new FakeClock();
  const r = recordingHandler();
  const auth = new DohAuthenticator({
    mode,
    store: new TokenStore([
      { name: "alice", sha256: sha256(ALICE) },
      { name: "bob", sha256: sha256(BOB) },
    ]),
    limiter: new FailureLimiter({ clock, maxFailures: 3, failuresPerMinute: 1, blockMs: 60_000 }),
    basePath: "/dns-query",
  });
  const listener = await listenHttps({
    url: "https://127.0.0.1:0",
    hostname: "127.0.0.1",
    port: 0,
    path: "/dns-query",
    handle: r.handle,
    clock,
    cert: await readFixture("server.pem"),
    key: await readFixture("server-key.pem"),
    limits: {
      idleTimeoutMs: 600_000, // beyond the block the tests wait out on the fake clock
      readTimeoutMs: 5_000,
      maxConnections: 100,
      maxConnectionsPerClient: 32,
      maxPipelined: 100,
    },
    auth,
  });
  const client = Deno.createHttpClient({ caCerts: [CA] });
  const base = `https://127.0.0.1:${listener.addr.port}`;
  const q = buildQuery("token.test", "A", 0).toBase64({ alphabet: "base64url", omitPadding: true });
  try {
    await fn({
      listener,
      queries: r.queries,
      base,
      clock,
      get: (path, headers = {}) =>
        fetch(`${base}${path}?dns=${q}`, {
          client,
          headers: { accept: "application/dns-message", ...headers },
        }),
    });
  } finally {
    client.close();
    await listener.close();
  }
}

async function status(r: Promise<Response>): Promise<number> {
  const res = await r;
  await res.body?.cancel();
  return res.status;
}

const refused = (l: HttpsListener) => l.identity!()!.authRefused;

Deno.test("require: a token in the header or in the path names the client", async () => {
  await withDoh("require", async (d) => {
    assert.equal(await status(d.get("/dns-query", { authorization: `Bearer ${ALICE}` })), 200);
    assert.equal(await status(d.get(`/dns-query/${BOB}`)), 200);
    assert.deepEqual(d.queries.map((q) => q.clientName), ["alice", "bob"]);
  });
});

Deno.test("require: missing and wrong tokens get 401, a wrong path token 404, no DNS work", async () => {
  await withDoh("require", async (d) => {
    const missing = await d.get("/dns-query");
    assert.equal(missing.status, 401);
    assert.match(missing.headers.get("www-authenticate") ?? "", /^Bearer realm=/);
    await missing.body?.cancel();
    const wrong = await d.get("/dns-query", { authorization: "Bearer d3JvbmctdG9rZW4" });
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
    await wrong.body?.cancel();
    assert.equal(await status(d.get("/dns-query/d3JvbmctdG9rZW4")), 404);
    assert.equal(d.queries.length, 0);
    const r = refused(d.listener);
    assert.equal(r.missing, 1);
    assert.equal(r.wrong, 2);
  });
});

Deno.test("repeated failures from one address get 429, even with the right token", async () => {
  await withDoh("require", async (d) => {
    for (let i = 0; i < 3; i++) assert.equal(await status(d.get("/dns-query/bad-token")), 404);
    assert.equal(await status(d.get("/dns-query/bad-token")), 404, "this one starts the block");
    const blocked = await d.get("/dns-query", { authorization: `Bearer ${ALICE}` });
    assert.equal(blocked.status, 429);
    assert.ok(Number(blocked.headers.get("retry-after")) > 0);
    await blocked.body?.cancel();
    assert.equal(refused(d.listener).throttled, 1);
    assert.equal(d.queries.length, 0);
    d.clock.advance(60_000);
    assert.equal(await status(d.get("/dns-query", { authorization: `Bearer ${ALICE}` })), 200);
  });
});

Deno.test("optional: no token is anonymous, a wrong one is still refused; reloadAuth applies", async () => {
  await withDoh("optional", async (d) => {
    assert.equal(await status(d.get("/dns-query")), 200);
    assert.equal(await status(d.get("/dns-query", { authorization: "Bearer nope" })), 401);
    assert.deepEqual(d.queries.map((q) => q.clientName), [undefined]);
    d.listener.reloadAuth(null);
    assert.equal(await status(d.get(`/dns-query/${ALICE}`)), 404, "no tokens: not a DoH path");
    assert.equal(await status(d.get("/dns-query", { authorization: "Bearer nope" })), 200);
  });
});

/** curl, silent: the response's status code and HTTP version, e.g. "200 2". */
const curl = (bin: string, args: string[]) =>
  runTool(bin, ["-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", ...args]);

await toolTest({
  name: "curl over HTTP/2 and HTTP/1.1: with a token 200, without 401, wrong path token 404",
  tools: ["curl"],
  async fn({ curl: bin }) {
    await withDoh("require", async (d) => {
      const port = new URL(d.base).port;
      const q = buildQuery("curl.test").toBase64({ alphabet: "base64url", omitPadding: true });
      const url = (path: string) => `https://dns.test:${port}${path}?dns=${q}`;
      const common = ["--cacert", fixturePath("ca.pem"), "--resolve", `dns.test:${port}:127.0.0.1`];
      for (const version of ["--http2", "--http1.1"]) {
        const v = version === "--http2" ? "2" : "1.1";
        const header = ["-H", `authorization: Bearer ${ALICE}`];
        assert.equal(
          await curl(bin, [...common, version, ...header, url("/dns-query")]),
          `200 ${v}`,
        );
        assert.equal(await curl(bin, [...common, version, url(`/dns-query/${BOB}`)]), `200 ${v}`);
        assert.equal(await curl(bin, [...common, version, url("/dns-query")]), `401 ${v}`);
        assert.equal(await curl(bin, [...common, version, url("/dns-query/nope")]), `404 ${v}`);
      }
      assert.deepEqual(d.queries.map((q) => q.clientName), ["alice", "bob", "alice", "bob"]);
    });
  },
});
