import assert from "node:assert/strict";
import { cacheKey } from "../../lib/cache/key.ts";
import {
  CLASS_IN,
  decodeMessage,
  HEADER_SIZE,
  type Message,
  RRType,
} from "../../lib/dns/message.ts";
import { encodeQuery } from "../../lib/dns/reply.ts";
import { nameKey } from "../../lib/dns/wire.ts";

function q(
  name: string,
  opts: { qtype?: number; qclass?: number; dnssecOk?: boolean; cd?: boolean } = {},
): Message {
  const r = decodeMessage(encodeQuery({
    id: 7,
    name,
    qtype: opts.qtype ?? RRType.A,
    qclass: opts.qclass,
    cd: opts.cd,
    edns: opts.dnssecOk === undefined ? undefined : { dnssecOk: opts.dnssecOk },
  }));
  if (!r.ok) assert.fail(r.error.message);
  return r.value;
}

Deno.test("names differing only in case get the same key", () => {
  assert.equal(cacheKey(q("WwW.ExAmPlE.CoM")), cacheKey(q("www.example.com")));
});

Deno.test("the key starts with the case-folded wire name, as nameKey gives it", () => {
  const m = q("Mail.Example.ORG");
  assert.ok(cacheKey(m).startsWith(nameKey(m.question!.name)));
});

Deno.test("qtype, qclass, DO and CD each change the key", () => {
  const base = cacheKey(q("www.example.com", { dnssecOk: false }));
  const variants = [
    cacheKey(q("www.example.com", { qtype: RRType.AAAA, dnssecOk: false })),
    cacheKey(q("www.example.com", { qclass: 3, dnssecOk: false })),
    cacheKey(q("www.example.com", { dnssecOk: true })),
    cacheKey(q("www.example.com", { cd: true, dnssecOk: false })),
    cacheKey(q("www.example.com", { cd: true, dnssecOk: true })),
  ];
  assert.equal(new Set([base, ...variants]).size, 6);
});

Deno.test("EDNS without DO keys like no EDNS at all", () => {
  assert.equal(cacheKey(q("www.example.com", { dnssecOk: false })), cacheKey(q("www.example.com")));
});

Deno.test("key chars stay below 256 even for large qtypes and qclasses", () => {
  const k = cacheKey(q("x.example", { qtype: 0xffff, qclass: CLASS_IN | 0xff00 }));
  for (let i = 0; i < k.length; i++) assert.ok(k.charCodeAt(i) < 256);
  assert.notEqual(k, cacheKey(q("x.example", { qtype: 0xff01, qclass: CLASS_IN | 0xff00 })));
});

Deno.test("a query without a question has the empty key", () => {
  const r = decodeMessage(new Uint8Array(HEADER_SIZE));
  if (!r.ok) assert.fail(r.error.message);
  assert.equal(cacheKey(r.value), "");
});
