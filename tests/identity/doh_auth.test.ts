import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  bearerToken,
  classifyDohPath,
  DohAuthenticator,
  type DohAuthOutcome,
} from "../../lib/identity/doh_auth.ts";
import { FailureLimiter } from "../../lib/identity/failure_limiter.ts";
import type { ClientAuthMode } from "../../lib/identity/modes.ts";
import { TokenStore } from "../../lib/identity/tokens.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const ALICE = "q8Jx-3vN_0dQ2mT7rY1uW4eZ5aB6cD9fG0hK2lP4sV8";
const BOB = "Zr0bT-kq9_Xw2Lm4Np6Qs8Uv1Yx3Ab5Cd7Ef9Gh0Ij2";
const STORE = new TokenStore([
  { name: "alice", sha256: sha256(ALICE) },
  { name: "bob", sha256: sha256(BOB) },
]);
const IP = "192.0.2.7";

function auth(mode: ClientAuthMode, clock = new FakeClock()) {
  const limiter = new FailureLimiter({
    clock,
    maxFailures: 3,
    failuresPerMinute: 1,
    blockMs: 60_000,
  });
  return {
    a: new DohAuthenticator({ mode, store: STORE, limiter, basePath: "/dns-query" }),
    clock,
    limiter,
  };
}

function refusal(
  o: DohAuthOutcome,
): { reason: string; status: number; headers: Record<string, string> } {
  assert.equal(o.ok, false, JSON.stringify(o));
  return o as { ok: false; reason: string; status: number; headers: Record<string, string> };
}

Deno.test("paths: the DoH path, one token segment, or something else", () => {
  assert.deepEqual(classifyDohPath("/dns-query", "/dns-query"), { kind: "base" });
  assert.deepEqual(classifyDohPath(`/dns-query/${ALICE}`, "/dns-query"), {
    kind: "token",
    token: ALICE,
  });
  assert.deepEqual(classifyDohPath("/dns-query/", "/dns-query"), { kind: "other" });
  assert.deepEqual(classifyDohPath("/dns-query/a/b", "/dns-query"), { kind: "other" });
  assert.deepEqual(classifyDohPath("/dns-queryx", "/dns-query"), { kind: "other" });
  assert.deepEqual(classifyDohPath("/", "/dns-query"), { kind: "other" });
  assert.deepEqual(classifyDohPath("/dns-query/a%2Fb", "/dns-query"), { kind: "malformed_token" });
  assert.deepEqual(classifyDohPath("/dns-query/" + "a".repeat(600), "/dns-query"), {
    kind: "malformed_token",
  });
});

Deno.test("Authorization: Bearer (any case, RFC 6750 syntax); other schemes carry no token", () => {
  assert.deepEqual(bearerToken(`Bearer ${ALICE}`), { kind: "token", token: ALICE });
  assert.deepEqual(bearerToken(`bearer   ${ALICE}`), { kind: "token", token: ALICE });
  assert.deepEqual(bearerToken("Bearer abc+/=="), { kind: "token", token: "abc+/==" });
  assert.deepEqual(bearerToken(null), { kind: "none" });
  assert.deepEqual(bearerToken("Basic YWxpY2U6c2VjcmV0"), { kind: "none" });
  for (
    const bad of [
      "Bearer",
      "Bearer ",
      "Bearer a b",
      "Bearer a=b",
      "Bearer é",
      "Bearer " + "a".repeat(513),
    ]
  ) {
    assert.deepEqual(bearerToken(bad), { kind: "malformed" }, JSON.stringify(bad));
  }
});

Deno.test("require: a valid token in the header or the path names the client", () => {
  const { a } = auth("require");
  assert.deepEqual(a.authenticate(IP, "/dns-query", `Bearer ${ALICE}`), {
    ok: true,
    name: "alice",
    via: "header",
  });
  assert.deepEqual(a.authenticate(IP, `/dns-query/${BOB}`, null), {
    ok: true,
    name: "bob",
    via: "path",
  });
  assert.deepEqual(a.authenticate(IP, `/dns-query/${BOB}`, `Bearer ${BOB}`), {
    ok: true,
    name: "bob",
    via: "path",
  });
});

Deno.test("require: missing is 401 with a Bearer challenge; wrong header 401; wrong path 404", () => {
  const { a } = auth("require");
  const missing = refusal(a.authenticate(IP, "/dns-query", null));
  assert.equal(missing.reason, "missing");
  assert.equal(missing.status, 401);
  assert.equal(missing.headers["www-authenticate"], 'Bearer realm="dotproxy"');
  assert.equal(
    refusal(a.authenticate(IP, "/dns-query", "Basic YWxpY2U6c2VjcmV0")).reason,
    "missing",
  );

  const wrong = refusal(a.authenticate(IP, "/dns-query", "Bearer not-the-token"));
  assert.deepEqual([wrong.reason, wrong.status], ["wrong", 401]);
  assert.match(wrong.headers["www-authenticate"], /error="invalid_token"/);
  const wrongPath = refusal(a.authenticate(IP, "/dns-query/not-the-token", null));
  assert.deepEqual([wrongPath.reason, wrongPath.status, wrongPath.headers], ["wrong", 404, {}]);
  const malformed = refusal(a.authenticate(IP, "/dns-query/a%20b", null));
  assert.deepEqual([malformed.reason, malformed.status], ["malformed", 404]);
});

Deno.test("two tokens that disagree are refused, whichever is right", () => {
  const { a } = auth("require");
  assert.equal(refusal(a.authenticate(IP, `/dns-query/${ALICE}`, `Bearer ${BOB}`)).reason, "wrong");
  assert.equal(refusal(a.authenticate(IP, `/dns-query/${ALICE}`, "Bearer nope")).status, 401);
  assert.equal(refusal(a.authenticate(IP, "/dns-query/nope", `Bearer ${ALICE}`)).status, 404);
});

Deno.test("optional: no credential is anonymous, a wrong one is still refused", () => {
  const { a } = auth("optional");
  assert.deepEqual(a.authenticate(IP, "/dns-query", null), { ok: true, name: null, via: null });
  assert.equal(refusal(a.authenticate(IP, "/dns-query", "Bearer nope")).status, 401);
  assert.deepEqual(a.authenticate(IP, "/dns-query", `Bearer ${ALICE}`).ok, true);
});

Deno.test("none: nothing is checked and token paths are not DoH paths", () => {
  const a = new DohAuthenticator({
    mode: "none",
    store: null,
    limiter: null,
    basePath: "/dns-query",
  });
  assert.deepEqual(a.authenticate(IP, "/dns-query", "Bearer whatever"), {
    ok: true,
    name: null,
    via: null,
  });
  assert.equal(a.route("/dns-query"), "doh");
  assert.equal(a.route(`/dns-query/${ALICE}`), "other");
  assert.equal(auth("require").a.route(`/dns-query/${ALICE}`), "doh");
  assert.equal(auth("require").a.route("/other"), "other");
  assert.throws(
    () =>
      new DohAuthenticator({ mode: "require", store: null, limiter: null, basePath: "/dns-query" }),
    /needs tokens/,
  );
});

Deno.test("repeated failures block the address, even for the right token, until the block ends", () => {
  const { a, clock } = auth("require");
  for (let i = 0; i < 3; i++) {
    assert.equal(refusal(a.authenticate(IP, "/dns-query", "Bearer x")).reason, "wrong");
  }
  // The fourth failure finds the bucket empty: from now on the address is blocked.
  assert.equal(refusal(a.authenticate(IP, "/dns-query", "Bearer x")).reason, "wrong");
  const blocked = refusal(a.authenticate(IP, "/dns-query", `Bearer ${ALICE}`));
  assert.deepEqual([blocked.reason, blocked.status, blocked.headers["retry-after"]], [
    "throttled",
    429,
    "60",
  ]);
  // Other addresses are not affected; a missing token does not count as a failure.
  assert.equal(a.authenticate("192.0.2.8", "/dns-query", `Bearer ${ALICE}`).ok, true);
  clock.advance(30_000);
  assert.equal(
    refusal(a.authenticate(IP, `/dns-query/${ALICE}`, null)).headers["retry-after"],
    "30",
  );
  clock.advance(30_000);
  assert.deepEqual(a.authenticate(IP, "/dns-query", `Bearer ${ALICE}`), {
    ok: true,
    name: "alice",
    via: "header",
  });
});
