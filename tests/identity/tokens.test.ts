import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  MAX_TOKEN_LENGTH,
  parseTokenFile,
  type TokenEntry,
  TokenStore,
  tokenStoreProblem,
} from "../../lib/identity/tokens.ts";
import { toolTest } from "../helpers/tools.ts";

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const ALICE = "q8Jx-3vN_0dQ2mT7rY1uW4eZ5aB6cD9fG0hK2lP4sV8";
const BOB = "Zr0bT-kq9_Xw2Lm4Np6Qs8Uv1Yx3Ab5Cd7Ef9Gh0Ij2";
const ENTRIES: TokenEntry[] = [
  { name: "alice", sha256: sha256(ALICE) },
  { name: "bob's laptop", sha256: sha256(BOB) },
];

Deno.test("a store accepts each client's token, naming the client, and nothing else", () => {
  const store = new TokenStore(ENTRIES);
  assert.deepEqual(store.verify(ALICE), { ok: true, name: "alice" });
  assert.deepEqual(store.verify(BOB), { ok: true, name: "bob's laptop" });
  for (const wrong of ["", ALICE.slice(1), ALICE + "x", ALICE.toUpperCase(), sha256(ALICE)]) {
    assert.deepEqual(store.verify(wrong), { ok: false }, JSON.stringify(wrong));
  }
  assert.deepEqual(store.verify("a".repeat(MAX_TOKEN_LENGTH + 1)), { ok: false });
  assert.deepEqual(new TokenStore([]).verify(ALICE), { ok: false });
  assert.deepEqual(store.names, ["alice", "bob's laptop"]);
});

Deno.test("the store keeps digests only: the token text is nowhere in it", () => {
  const store = new TokenStore(ENTRIES);
  const dump = Deno.inspect(store, { depth: 10, showHidden: true });
  assert.ok(!dump.includes(ALICE) && !dump.includes(BOB));
});

Deno.test("invalid entries are refused with the name and value in the message", () => {
  const cases: [TokenEntry[], RegExp][] = [
    [[{ name: "alice", sha256: "abc" }], /sha256 "abc" for "alice" is not 64 lower-case hex/],
    [[{ name: "alice", sha256: sha256(ALICE).toUpperCase() }], /not 64 lower-case hex/],
    [[{ name: "", sha256: sha256(ALICE) }], /cannot be empty/],
    [[{ name: "anonymous", sha256: sha256(ALICE) }], /reserved/],
    [[{ name: 'a"b', sha256: sha256(ALICE) }], /quotes/],
    [[ENTRIES[0], { name: "alice", sha256: sha256(BOB) }], /"alice" appears twice/],
    [[ENTRIES[0], { name: "eve", sha256: sha256(ALICE) }], /"alice" and "eve" have the same token/],
  ];
  for (const [entries, message] of cases) {
    assert.match(String(tokenStoreProblem(entries)), message);
    assert.throws(() => new TokenStore(entries), message);
  }
  assert.equal(tokenStoreProblem(ENTRIES), null);
});

Deno.test("tokens file: name and digest per line, comments and blank lines, errors by line", () => {
  const text = `# dotproxy DoH tokens\n\nalice ${sha256(ALICE)}\r\nbob's laptop ${sha256(BOB)}\n`;
  assert.deepEqual(parseTokenFile(text, "/etc/dotproxy/tokens"), ENTRIES);
  const bad = parseTokenFile(`alice ${sha256(ALICE)}\nbob\n`, "/etc/dotproxy/tokens");
  assert.deepEqual(bad, {
    error: `/etc/dotproxy/tokens line 2: expected "name sha256hex", got "bob"`,
  });
  const badDigest = parseTokenFile(`alice ${ALICE}\n`, "tokens");
  assert.match((badDigest as { error: string }).error, /^tokens line 1: sha256 ".*" for "alice"/);
});

await toolTest({
  name: "the documented shell recipe makes an entry the store accepts",
  tools: ["sh", "sha256sum"],
  async fn({ sh }) {
    const script = `TOKEN=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
printf '%s\\n' "$TOKEN"
printf '%s %s\\n' alice "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)"`;
    const out = await new Deno.Command(sh, { args: ["-c", script], stdout: "piped" }).output();
    const [token, line] = new TextDecoder().decode(out.stdout).trim().split("\n");
    assert.match(token, /^[A-Za-z0-9_-]{43}$/, "256 bits, base64url: fits a URL path");
    const entries = parseTokenFile(line, "recipe");
    assert.ok(Array.isArray(entries));
    assert.deepEqual(new TokenStore(entries).verify(token), { ok: true, name: "alice" });
  },
});
