import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import {
  clientAnswer,
  forClient,
  keepaliveTimeoutMs,
  OptionCode,
  parseEcs,
  QUERY_PADDING_BLOCK,
  RESPONSE_PADDING_BLOCK,
  upstreamQuery,
} from "../../lib/dns/edns.ts";
import { decodeMessage, Flag, type Message } from "../../lib/dns/message.ts";

function decode(bytes: Uint8Array): Message {
  const d = decodeMessage(bytes);
  if (!d.ok) throw new Error(`does not decode: ${d.error.message}`);
  return d.value;
}

function encode(p: dnsPacket.Packet): Uint8Array {
  return new Uint8Array(dnsPacket.encode(p));
}

function parse(bytes: Uint8Array): dnsPacket.Packet {
  return dnsPacket.decode(Buffer.from(bytes));
}

type Opt = { code: number; data: Uint8Array };

/** The OPT of a message as dns-packet sees it. */
function optOf(bytes: Uint8Array): dnsPacket.OptAnswer | undefined {
  return parse(bytes).additionals?.find((r: dnsPacket.Answer) => r.type === "OPT") as
    | dnsPacket.OptAnswer
    | undefined;
}

function optionCodes(bytes: Uint8Array): number[] {
  return decode(bytes).edns?.options.map((o: Opt) => o.code) ?? [];
}

const ECS = { code: "CLIENT_SUBNET", family: 1, sourcePrefixLength: 24, ip: "198.51.100.0" };

/** A client query: RD, optional flags, optional OPT with options. */
function clientQuery(
  name: string,
  opts: { flags?: number; edns?: { do?: boolean; udpSize?: number; options?: unknown[] } } = {},
): Uint8Array {
  return encode({
    type: "query",
    id: 0xbeef,
    flags: dnsPacket.RECURSION_DESIRED | (opts.flags ?? 0),
    questions: [{ type: "A", class: "IN", name }],
    additionals: opts.edns
      ? [{
        type: "OPT",
        name: ".",
        udpPayloadSize: opts.edns.udpSize ?? 4096,
        flags: opts.edns.do ? dnsPacket.DNSSEC_OK : 0,
        options: opts.edns.options ?? [],
      }]
      : [],
  });
}

function rewrite(
  query: Uint8Array,
  opts: { udpSize?: number; pad?: boolean; keepEcs?: boolean; keepalive?: boolean } = {},
) {
  return upstreamQuery(query, decode(query), {
    udpSize: opts.udpSize ?? 1232,
    pad: opts.pad ?? false,
    keepEcs: opts.keepEcs ?? false,
    keepalive: opts.keepalive,
  });
}

Deno.test("padded upstream queries are a multiple of 128 bytes for names of every length", () => {
  const sizes = new Set<number>();
  for (let len = 1; len <= 250; len++) {
    // Labels of up to 63 characters joined with dots, `len` characters in all.
    const labels: string[] = [];
    for (let left = len; left > 0;) {
      const n = Math.min(63, left);
      labels.push("a".repeat(n));
      left -= n + 1;
    }
    const name = labels.join(".");
    for (const q of [clientQuery(name), clientQuery(name, { edns: { options: [ECS] } })]) {
      for (const keepalive of [false, true]) {
        const out = rewrite(q, { pad: true, keepEcs: true, keepalive });
        assert.equal(out.length % QUERY_PADDING_BLOCK, 0, `${name}: ${out.length} bytes`);
        const padding = decode(out).edns!.options.find((o: Opt) => o.code === OptionCode.PADDING);
        assert.ok(padding, "padding option present");
        assert.ok(padding.data.every((b: number) => b === 0), "padding octets are zero");
        sizes.add(out.length);
        assert.equal(parse(out).questions?.[0].name, name);
      }
    }
  }
  assert.deepEqual([...sizes].sort((a, b) => a - b), [128, 256, 384]);
});

Deno.test("unpadded queries carry just our OPT after the question", () => {
  const q = clientQuery("example.com");
  const out = rewrite(q);
  assert.equal(out.length, q.length + 11);
  assert.deepEqual(optionCodes(out), []);
});

Deno.test("the upstream OPT states our UDP size and EDNS version 0, whatever the client said", () => {
  const out = rewrite(clientQuery("size.test", { edns: { udpSize: 65000 } }), { udpSize: 1400 });
  const e = decode(out).edns!;
  assert.equal(e.udpSize, 1400);
  assert.equal(e.version, 0);
});

Deno.test("a client without EDNS still gets an OPT upstream, with DO clear", () => {
  const out = rewrite(clientQuery("plain.test"), { pad: true });
  const e = decode(out).edns!;
  assert.equal(e.dnssecOk, false);
  assert.equal(out.length % QUERY_PADDING_BLOCK, 0);
});

Deno.test("the client's DO bit and its RD, CD and AD header bits reach the upstream", () => {
  const q = clientQuery("dnssec.test", {
    flags: dnsPacket.CHECKING_DISABLED | dnsPacket.AUTHENTIC_DATA,
    edns: { do: true },
  });
  const out = parse(rewrite(q));
  assert.equal(out.flag_rd, true);
  assert.equal(out.flag_cd, true);
  assert.equal(out.flag_ad, true);
  assert.equal(optOf(rewrite(q))!.flag_do, true);
  const noRd = encode({
    type: "query",
    id: 1,
    flags: 0,
    questions: [{ type: "A", name: "x.test" }],
  });
  assert.equal(parse(rewrite(noRd)).flag_rd, false);
});

Deno.test("the client's cookie, padding, keepalive and NSID never reach the upstream", () => {
  const q = clientQuery("hop.test", {
    edns: {
      options: [
        { code: 10, data: Buffer.from("0123456789abcdef", "hex") },
        { code: "PADDING", length: 40 },
        { code: "TCP_KEEPALIVE" },
        { code: 3, data: Buffer.alloc(0) },
      ],
    },
  });
  assert.deepEqual(optionCodes(rewrite(q)), []);
  // Ours are added afresh: keepalive empty, then padding last.
  assert.deepEqual(optionCodes(rewrite(q, { keepalive: true, pad: true })), [
    OptionCode.TCP_KEEPALIVE,
    OptionCode.PADDING,
  ]);
  const ka = decode(rewrite(q, { keepalive: true })).edns!.options[0];
  assert.equal(ka.data.length, 0);
});

Deno.test("EDNS Client Subnet is stripped by default and kept when configured", () => {
  const q = clientQuery("ecs.test", {
    edns: { options: [ECS, { code: 10, data: Buffer.alloc(8) }] },
  });
  assert.deepEqual(optionCodes(rewrite(q)), []);
  const kept = rewrite(q, { keepEcs: true });
  assert.deepEqual(optionCodes(kept), [OptionCode.ECS]);
  const ecs = optOf(kept)!.options!.find((o: { code: number }) => o.code === 8) as unknown as {
    ip: string;
    sourcePrefixLength: number;
  };
  assert.equal(ecs.ip, "198.51.100.0");
  assert.equal(ecs.sourcePrefixLength, 24);
});

Deno.test("answer and authority records in a client query are not forwarded", () => {
  const q = encode({
    type: "query",
    id: 7,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: "A", name: "odd.test" }],
    answers: [{ type: "A", name: "odd.test", ttl: 1, data: "192.0.2.1" }],
  });
  const out = parse(rewrite(q));
  assert.equal(out.answers?.length ?? 0, 0);
  assert.equal(out.additionals?.length, 1);
});

/** An upstream reply: answers compressed against the question, OPT with upstream options. */
function upstreamReply(
  opts: { ad?: boolean; do?: boolean; rcode?: number; extra?: boolean } = {},
): Uint8Array {
  return encode({
    type: "response",
    id: 0,
    flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED |
      (opts.ad ? dnsPacket.AUTHENTIC_DATA : 0) | ((opts.rcode ?? 0) & 0xf),
    questions: [{ type: "A", name: "answer.test" }],
    answers: [
      { type: "CNAME", name: "answer.test", ttl: 60, data: "target.answer.test" },
      { type: "A", name: "target.answer.test", ttl: 60, data: "192.0.2.7" },
    ],
    additionals: [
      {
        type: "OPT",
        name: ".",
        udpPayloadSize: 4096,
        extendedRcode: (opts.rcode ?? 0) >> 4,
        flags: opts.do ? dnsPacket.DNSSEC_OK : 0,
        options: [{ code: "PADDING", length: 30 }, { code: "TCP_KEEPALIVE", timeout: 100 }],
      },
      ...(opts.extra ? [{ type: "A", name: "target.answer.test", ttl: 5, data: "192.0.2.8" }] : []),
    ],
  } as dnsPacket.Packet);
}

const ednsClient = (q: Uint8Array) => {
  const m = decode(q);
  return { edns: m.edns, flags: m.header.flags, udpSize: 1232 };
};

Deno.test("the client's answer carries our OPT, not the upstream's, with its DO echoed", () => {
  const reply = upstreamReply({ do: true });
  const out = clientAnswer(
    reply,
    decode(reply),
    ednsClient(clientQuery("a.test", { edns: { do: true } })),
  );
  const opt = optOf(out)!;
  assert.equal(opt.udpPayloadSize, 1232);
  assert.equal(opt.flag_do, true);
  assert.deepEqual(opt.options ?? [], []);
  const p = parse(out);
  assert.deepEqual(p.answers?.map((a: dnsPacket.Answer) => "data" in a && a.data), [
    "target.answer.test",
    "192.0.2.7",
  ]);
  const noDo = clientAnswer(reply, decode(reply), ednsClient(clientQuery("a.test", { edns: {} })));
  assert.equal(optOf(noDo)!.flag_do, false);
});

Deno.test("a client without EDNS gets an answer without OPT", () => {
  const reply = upstreamReply({ extra: true });
  const out = clientAnswer(reply, decode(reply), ednsClient(clientQuery("a.test")));
  const p = parse(out);
  assert.equal(optOf(out), undefined);
  assert.equal(p.additionals?.length, 1, "other additional records stay");
  assert.equal(p.answers?.length, 2);
});

Deno.test("an extended rcode is kept for EDNS clients and becomes SERVFAIL for others", () => {
  const reply = upstreamReply({ rcode: 23 }); // BADCOOKIE: 7 in the header, 1 in the OPT
  const m = decode(reply);
  const edns = clientAnswer(reply, m, ednsClient(clientQuery("a.test", { edns: {} })));
  assert.equal(decode(edns).rcode, 23);
  const plain = clientAnswer(reply, m, ednsClient(clientQuery("a.test")));
  assert.equal(decode(plain).rcode, 2);
});

Deno.test("AD reaches only a client that asked with AD or DO (RFC 6840 5.8)", () => {
  const reply = upstreamReply({ ad: true });
  const m = decode(reply);
  const ad = (q: Uint8Array) => parse(clientAnswer(reply, m, ednsClient(q))).flag_ad;
  assert.equal(ad(clientQuery("a.test")), false);
  assert.equal(ad(clientQuery("a.test", { edns: {} })), false);
  assert.equal(ad(clientQuery("a.test", { flags: dnsPacket.AUTHENTIC_DATA })), true);
  assert.equal(ad(clientQuery("a.test", { edns: { do: true } })), true);
});

Deno.test("clientAnswer leaves the upstream reply untouched", () => {
  const reply = upstreamReply({ ad: true });
  const copy = reply.slice();
  clientAnswer(reply, decode(reply), ednsClient(clientQuery("a.test")));
  assert.deepEqual(reply, copy);
});

Deno.test("a server's keepalive timeout is read in units of 100 ms", () => {
  const reply = upstreamReply();
  assert.equal(keepaliveTimeoutMs(decode(reply).edns), 10_000);
  assert.equal(keepaliveTimeoutMs(null), null);
  const q = clientQuery("a.test", { edns: { options: [{ code: "TCP_KEEPALIVE" }] } });
  assert.equal(keepaliveTimeoutMs(decode(q).edns), null, "an empty option announces nothing");
});

Deno.test("when the OPT cannot be cut out, it goes with the additional records after it", () => {
  const base = upstreamReply();
  const optStart = decode(base).edns!.start;
  // An A record after the OPT whose owner is a pointer to the OPT's root owner byte.
  const rr = [0xc0 | (optStart >> 8), optStart & 0xff, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 192, 0, 2, 9];
  const reply = new Uint8Array(base.length + rr.length);
  reply.set(base);
  reply.set(rr, base.length);
  reply[11] += 1; // ARCOUNT
  const m = decode(reply);
  const out = clientAnswer(reply, m, ednsClient(clientQuery("a.test", { edns: {} })));
  const p = parse(out);
  assert.equal(p.answers?.length, 2);
  assert.deepEqual(p.additionals?.map((r: dnsPacket.Answer) => r.type), ["OPT"]);
  assert.equal(optOf(out)!.udpPayloadSize, 1232);
});

// --- issue 11: the client hop --------------------------------------------------------------

Deno.test("forClient clears AA, echoes RD and pads to 468-byte blocks, never past 65535", () => {
  const q = decode(clientQuery("pad.test", { edns: {} }));
  const answer = new Uint8Array(40);
  answer[2] = 0x84; // QR, AA, RD clear
  const out = forClient(answer.slice(), {
    edns: q.edns,
    flags: q.header.flags,
    udpSize: 1232,
    pad: true,
  });
  assert.equal(out.length, RESPONSE_PADDING_BLOCK);
  assert.equal(out[2] & 0x04, 0, "AA cleared");
  assert.equal(out[2] & 0x01, 0x01, "RD echoed from the query");
  const kept = forClient(answer.slice(), {
    edns: q.edns,
    flags: q.header.flags,
    udpSize: 1232,
    authoritative: true,
  });
  assert.equal(kept[2] & 0x04, 0x04, "AA kept for our own data");
  const big = new Uint8Array(65535 - 20);
  const capped = forClient(big, { edns: q.edns, flags: q.header.flags, udpSize: 1232, pad: true });
  assert.ok(capped.length <= 65535, `${capped.length}`);
});

Deno.test("parseEcs accepts well-formed subnets and rejects what RFC 7871 section 6 forbids", () => {
  assert.deepEqual(parseEcs(new Uint8Array([0, 1, 24, 0, 192, 0, 2])), {
    family: 1,
    sourcePrefix: 24,
    scopePrefix: 0,
    address: new Uint8Array([192, 0, 2]),
  });
  assert.ok(parseEcs(new Uint8Array([0, 1, 0, 0])), "0.0.0.0/0");
  assert.ok(parseEcs(new Uint8Array([0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0])));
  for (
    const bad of [
      [0, 1, 24, 0, 192, 0], // address too short
      [0, 1, 24, 0, 192, 0, 2, 0], // too long
      [0, 1, 23, 0, 192, 0, 3], // a bit set past the prefix
      [0, 3, 8, 0, 1], // unknown family
      [0, 1, 33, 0, 1, 2, 3, 4, 5], // prefix longer than IPv4
      [0, 1],
    ]
  ) assert.equal(parseEcs(new Uint8Array(bad)), null, JSON.stringify(bad));
});

Deno.test("the upstream query always asks for AD, whatever the client set", () => {
  const plain = clientQuery("ad.test");
  const m = decode(plain);
  assert.equal(m.header.flags & Flag.AD, 0);
  const up = decode(upstreamQuery(plain, m, { udpSize: 1232, pad: false, keepEcs: false }));
  assert.equal(up.header.flags & Flag.AD, Flag.AD);
});
