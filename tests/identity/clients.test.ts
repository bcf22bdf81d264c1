import assert from "node:assert/strict";
import {
  ClientDirectory,
  type ClientEntry,
  ClientLabels,
  clientsProblem,
  MAX_NAMED_CLIENTS,
} from "../../lib/identity/clients.ts";
import { clientNameProblem } from "../../lib/identity/names.ts";

const ENTRIES: ClientEntry[] = [
  { name: "office", networks: ["10.0.0.0/8", "2001:db8::/32"] },
  { name: "lab", networks: ["10.9.0.0/16", "2001:db8:9::/48"] },
  { name: "printer", networks: ["10.9.1.17"] },
  { name: "alice", networks: [] },
];

Deno.test("lookup: the longest prefix wins, whatever the configuration order", () => {
  for (const entries of [ENTRIES, [...ENTRIES].reverse()]) {
    const d = new ClientDirectory(entries);
    assert.equal(d.lookup("10.1.2.3"), "office");
    assert.equal(d.lookup("10.9.2.3"), "lab");
    assert.equal(d.lookup("10.9.1.17"), "printer");
    assert.equal(d.lookup("::ffff:10.9.1.17"), "printer", "IPv4-mapped is IPv4");
    assert.equal(d.lookup("2001:db8:1::1"), "office");
    assert.equal(d.lookup("2001:db8:9::1"), "lab");
    assert.equal(d.lookup("fe80::1%eth0"), null);
    assert.equal(d.lookup("192.0.2.1"), null);
    assert.equal(d.lookup("not an address"), null);
  }
});

Deno.test("a /0 names everyone not named more precisely", () => {
  const d = new ClientDirectory([{ name: "world", networks: ["0.0.0.0/0", "::/0"] }, ENTRIES[2]]);
  assert.equal(d.lookup("192.0.2.1"), "world");
  assert.equal(d.lookup("2001:db8::1"), "world");
  assert.equal(d.lookup("10.9.1.17"), "printer");
});

Deno.test("invalid entries are named in the message", () => {
  const cases: [ClientEntry[], RegExp][] = [
    [
      [{ name: "a", networks: ["10.0.0.1/8"] }],
      /clients\[0\]\.networks \("a"\): .*host bits are set/,
    ],
    [[{ name: "a", networks: ["nope"] }], /"nope"/],
    [[{ name: "", networks: [] }], /clients\[0\]\.name: a client name cannot be empty/],
    [[{ name: "anonymous", networks: [] }], /reserved/],
    [
      [{ name: "a", networks: [] }, { name: "a", networks: [] }],
      /clients\[1\]\.name: "a" appears twice/,
    ],
    [
      [{ name: "a", networks: ["10.0.0.0/8"] }, { name: "b", networks: ["10.0.0.0/8"] }],
      /10\.0\.0\.0\/8 belongs to both "a" and "b"/,
    ],
  ];
  for (const [entries, message] of cases) {
    assert.match(String(clientsProblem(entries)), message);
    assert.throws(() => new ClientDirectory(entries), message);
  }
  const many = Array.from(
    { length: MAX_NAMED_CLIENTS + 1 },
    (_, i) => ({ name: `c${i}`, networks: [] }),
  );
  assert.match(String(clientsProblem(many)), /limit of 1000/);
});

Deno.test("labels: declared names only, everything else is anonymous", () => {
  const labels = new ClientLabels(["office", "alice", "anonymous"]);
  assert.equal(labels.label("office"), "office");
  assert.equal(labels.label("alice"), "alice");
  assert.equal(labels.label("mallory-from-a-certificate"), "anonymous");
  assert.equal(labels.label(null), "anonymous");
  assert.equal(labels.label(undefined), "anonymous");
  assert.deepEqual(labels.all().sort(), ["alice", "anonymous", "office"]);
  const tooMany = Array.from({ length: MAX_NAMED_CLIENTS + 1 }, (_, i) => `c${i}`);
  assert.throws(() => new ClientLabels(tooMany), /more than 1000/);
});

Deno.test("client names: printable ASCII, spaces inside, no quotes, 253 characters at most", () => {
  for (
    const ok of [
      "alice",
      "Alice Smith",
      "alice@clients.test",
      "https://id.example/x",
      "a".repeat(253),
    ]
  ) {
    assert.equal(clientNameProblem(ok), null, ok);
  }
  for (
    const bad of ["", " alice", "alice ", 'a"b', "a\\b", "a\nb", "é", "a".repeat(254), "anonymous"]
  ) {
    assert.notEqual(clientNameProblem(bad), null, JSON.stringify(bad));
  }
});
