/**
 * Issue 11 with real clients and a genreport-style compliance run, against an in-process
 * dotproxy (UDP, TCP, DoT and DoH listeners; a scripted DoT upstream that answers like Unbound
 * with local data: AA set, SOA for the zone). dig and kdig are required when CI=true, ignored
 * elsewhere when missing; the genreport checks need no tool.
 */
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { type Server, startServer } from "../lib/server.ts";
import { cryptoRandom } from "../lib/sys/random.ts";
import { type Addr, parse, TcpDnsClient, udpQuery } from "./helpers/dns_client.ts";
import { FakeClock } from "./helpers/fake_clock.ts";
import { type FakeDot, startFakeDot } from "./helpers/fake_dot.ts";
import { testConfig } from "./helpers/proxy.ts";
import { digArgs, runTool as run, toolTest } from "./helpers/tools.ts";
import { freePort } from "./helpers/unbound.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const CA = `${FIXTURES}ca.pem`;

/** The zone the genreport checks run against, answered like Unbound's local data. */
const ZONE = "zone.test";

/** Like Unbound with local data: AA on every answer, the zone's SOA, ECS echoed with scope 24. */
function unboundLike(q: dnsPacket.Packet): Partial<dnsPacket.Packet> {
  const question = q.questions?.[0];
  const aa = dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE |
    ((q.flags ?? 0) & dnsPacket.RECURSION_DESIRED);
  const opt = q.additionals?.find((r: dnsPacket.Answer) => r.type === "OPT") as
    | { options?: { code: number; data: Buffer }[]; flags?: number }
    | undefined;
  const ecs = opt?.options?.find((o) => o.code === 8);
  const additionals = opt
    ? [{
      type: "OPT",
      name: ".",
      udpPayloadSize: 1232,
      flags: (opt.flags ?? 0) & dnsPacket.DNSSEC_OK,
      options: ecs
        ? [{ code: 8, data: Buffer.from([0, 1, 24, 24, ...ecs.data.subarray(4, 7)]) }]
        : [],
    } as unknown as dnsPacket.Answer]
    : [];
  if (question?.type === "SOA" && question.name.toLowerCase() === ZONE) {
    return {
      flags: aa,
      additionals,
      answers: [{
        type: "SOA",
        name: ZONE,
        ttl: 300,
        data: {
          mname: `ns.${ZONE}`,
          rname: `host.${ZONE}`,
          serial: 1,
          refresh: 3600,
          retry: 600,
          expire: 86400,
          minimum: 300,
        },
      }],
    };
  }
  if (question?.type === "A" && ecs) {
    return {
      flags: aa,
      additionals,
      answers: [{
        type: "A",
        name: question.name,
        ttl: 300,
        data: `${[...ecs.data.subarray(4, 7)].join(".")}.1`,
      }],
    };
  }
  return { flags: aa, additionals };
}

interface Proxy {
  server: Server;
  upstream: FakeDot;
  udp: Addr;
  tcp: Addr;
  tls: Addr;
  https: Addr;
}

async function withProxy(extraToml: string, fn: (p: Proxy) => Promise<void>): Promise<void> {
  const upstream = await startFakeDot({ answerFor: unboundLike });
  // Ports here only need to differ for validation; every listener is bound to port 0.
  const listeners = [["tls", 5054], ["https", 5055]].map(([kind, port]) =>
    `[[listeners]]\nurl = "${kind}://127.0.0.1:${port}${kind === "https" ? "/dns-query" : ""}"\n` +
    `cert_file = "${FIXTURES}server.pem"\nkey_file = "${FIXTURES}server-key.pem"`
  ).join("\n\n");
  const config = await testConfig(
    [{ hostname: upstream.hostname, port: upstream.port }],
    `${listeners}\n\n${extraToml}`,
  );
  // dig retries a truncated answer over TCP on the same port: UDP and TCP share one.
  const port = freePort();
  config.listeners[0].port = config.listeners[1].port = port;
  const server = await startServer(config, { clock: new FakeClock(), random: cryptoRandom() });
  const [udp, tcp, tls, https] = server.listeners.map((l) => ({
    hostname: l.addr.hostname,
    port: l.addr.port,
  }));
  try {
    await fn({ server, upstream, udp, tcp, tls, https });
  } finally {
    await server.stop();
    await upstream.close();
  }
}

const digAt = (a: Addr) => digArgs("dig", a.port);

await toolTest({
  name: "dig told TC=1 by the rate limit retries over TCP and gets its answer (item 1)",
  tools: ["dig"],
  async fn({ dig }) {
    // The clock stands still: one query per prefix and transport, then limited.
    await withProxy(
      '[rate_limit]\nqps = 1\nburst = 1\naction = "truncate"\nslip = 1',
      async (p) => {
        assert.match(await run(dig, [...digAt(p.udp), "first.example.test"]), /status: NOERROR/);
        const out = await run(dig, [...digAt(p.udp), "retry.example.test"]);
        assert.match(out, /Truncated, retrying in TCP mode/);
        assert.match(out, /status: NOERROR/);
        assert.match(out, /ANSWER: 1,/);
      },
    );
  },
});

await toolTest({
  name: "dig shows the EDE of answers dotproxy decides: CH refused, RD=0 refused (items 3, 9, 10)",
  tools: ["dig"],
  async fn({ dig }) {
    await withProxy("", async (p) => {
      const ch = await run(dig, [...digAt(p.udp), "version.bind", "TXT", "CH"]);
      assert.match(ch, /status: REFUSED/);
      assert.match(ch, /EDE: 21 \(Not Supported\)/);
      const norec = await run(dig, [...digAt(p.udp), "+norec", "www.example.test"]);
      assert.match(norec, /status: REFUSED/);
      assert.match(norec, /EDE: 20 \(Not Authoritative\)/);
      assert.equal(p.upstream.queries.length, 0, "neither went upstream");
      // AA from the upstream's local data is not passed on (item 8).
      const a = await run(dig, [...digAt(p.udp), "www.example.test"]);
      assert.match(a, /flags: qr rd ra;/);
    });
  },
});

await toolTest({
  name: "dig shows EDE 23 with the error kind when the upstream cannot be reached (item 10)",
  tools: ["dig"],
  async fn({ dig }) {
    await withProxy("", async (p) => {
      await p.upstream.close(); // nothing listens there any more: connect fails at once
      const out = await run(dig, [...digAt(p.udp), "down.example.test"]);
      assert.match(out, /status: SERVFAIL/);
      assert.match(out, /EDE: 23 \(Network Error\): \(upstream connect\)/);
    });
  },
});

await toolTest({
  name: "kdig +padding over DoT and DoH gets answers padded to 468 bytes; over TCP none (item 4)",
  tools: ["kdig"],
  async fn({ kdig }) {
    await withProxy("", async (p) => {
      for (
        const [addr, transport] of [[p.tls, "+tls"], [p.https, "+https=/dns-query"]] as const
      ) {
        const out = await run(kdig, [
          transport,
          ...digArgs("kdig", addr.port, CA),
          "+padding",
          "pad.example.test",
        ]);
        assert.match(out, /PADDING: \d+ B/, out);
        assert.match(out, /Received 468 B/, out);
      }
      const tcp = await run(kdig, [
        "+tcp",
        ...digArgs("kdig", p.tcp.port),
        "+padding",
        "pad.example.test",
      ]);
      assert.doesNotMatch(tcp, /PADDING: [1-9]/, tcp);
    });
  },
});

await toolTest({
  name: "dig +subnet with ecs keep: each subnet its own answer, the option echoed (item 5)",
  tools: ["dig"],
  async fn({ dig }) {
    await withProxy('[forwarding]\necs = "keep"', async (p) => {
      for (const subnet of ["198.51.100", "203.0.113", "192.0.2", "198.51.100"]) {
        const out = await run(dig, [
          ...digAt(p.udp),
          `+subnet=${subnet}.0/24`,
          "ecs.example.test",
        ]);
        assert.match(
          out,
          new RegExp(`ecs\\.example\\.test\\.\\s+\\d+\\s+IN\\s+A\\s+${subnet}\\.1`),
        );
        assert.match(out, new RegExp(`CLIENT-SUBNET: ${subnet}\\.0/24/24`));
      }
      assert.equal(p.upstream.queries.length, 3, "the repeated subnet came from the cache");
    });
  },
});

// --- genreport (ISC DNS-Compliance-Testing) in recursive mode, reproduced --------------------

/** One genreport test: name, query flags and EDNS settings, as genreport's table has them. */
interface Check {
  name: string;
  type: number;
  udpsize?: number;
  ednsFlags?: number;
  version?: number;
  rdata?: number[];
  tcp?: boolean;
  ignore?: boolean;
  tc?: boolean;
  ra?: boolean;
  cd?: boolean;
  ad?: boolean;
  aa?: boolean;
  z?: boolean;
  opcode?: number;
  cookie?: boolean;
}

const SOA = 6, DNSKEY = 48;
const COOKIE = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
const CHECKS: Check[] = [
  { name: "dns", type: SOA },
  { name: "aa", type: SOA, aa: true },
  { name: "ad", type: SOA, ad: true },
  { name: "cd", type: SOA, cd: true },
  { name: "ra", type: SOA, ra: true },
  { name: "rd", type: SOA },
  { name: "tc", type: SOA, tc: true },
  { name: "zflag", type: SOA, z: true },
  { name: "opcode", type: 0, opcode: 15 },
  {
    name: "opcodeflg",
    type: 0,
    opcode: 15,
    tc: true,
    ra: true,
    cd: true,
    ad: true,
    aa: true,
    z: true,
  },
  { name: "type666", type: 666 },
  { name: "tcp", type: SOA, tcp: true },
  { name: "edns", type: SOA, udpsize: 4096 },
  { name: "edns1", type: SOA, udpsize: 4096, version: 1 },
  { name: "edns@512", type: DNSKEY, udpsize: 512, ednsFlags: 0x8000, ignore: true },
  { name: "ednsopt", type: SOA, udpsize: 4096, rdata: [0, 100, 0, 0] },
  { name: "edns1opt", type: SOA, udpsize: 4096, version: 1, rdata: [0, 100, 0, 0] },
  { name: "do", type: SOA, udpsize: 4096, ednsFlags: 0x8000 },
  { name: "docd", type: SOA, udpsize: 4096, ednsFlags: 0x8000, cd: true },
  { name: "edns1do", type: SOA, udpsize: 4096, ednsFlags: 0x8000, version: 1 },
  { name: "ednsflags", type: SOA, udpsize: 4096, ednsFlags: 0x0080 },
  {
    name: "optlist",
    type: SOA,
    udpsize: 4096,
    cookie: true,
    rdata: [0, 3, 0, 0, 0, 8, 0, 4, 0, 1, 0, 0, 0, 9, 0, 0, ...COOKIE],
  },
  { name: "ednsnsid", type: SOA, udpsize: 4096, rdata: [0, 3, 0, 0] },
  { name: "ednscookie", type: SOA, udpsize: 4096, cookie: true, rdata: COOKIE },
  { name: "ednsexpire", type: SOA, udpsize: 4096, rdata: [0, 9, 0, 0] },
  { name: "ednssubnet", type: SOA, udpsize: 4096, rdata: [0, 8, 0, 4, 0, 1, 0, 0] },
  { name: "edns1nsid", type: SOA, udpsize: 4096, version: 1, rdata: [0, 3, 0, 0] },
  { name: "edns1cookie", type: SOA, udpsize: 4096, version: 1, cookie: true, rdata: COOKIE },
  { name: "edns1expire", type: SOA, udpsize: 4096, version: 1, rdata: [0, 9, 0, 0] },
  {
    name: "edns1subnet",
    type: SOA,
    udpsize: 4096,
    version: 1,
    rdata: [0, 8, 0, 4, 0, 1, 0, 0],
  },
  { name: "ednstcp", type: DNSKEY, udpsize: 512, ednsFlags: 0x8000, tcp: true },
];

/** The query genreport -R sends for `c` (RD always set in recursive mode). */
function genreportQuery(c: Check, id: number): Uint8Array {
  const b: number[] = [id >> 8, id & 0xff, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
  if (c.opcode) {
    b[2] = (c.opcode << 3) | 0x01;
    b[5] = 0; // header only: genreport zeroes the question section for opcode 15
  } else {
    for (const label of ZONE.split(".")) b.push(label.length, ...new TextEncoder().encode(label));
    b.push(0, c.type >> 8, c.type & 0xff, 0, 1);
  }
  if (c.tc) b[2] |= 0x02;
  if (c.aa) b[2] |= 0x04;
  if (c.ra) b[3] |= 0x80;
  if (c.z) b[3] |= 0x40;
  if (c.ad) b[3] |= 0x20;
  if (c.cd) b[3] |= 0x10;
  if (c.udpsize && !c.opcode) {
    const rdata = c.rdata ?? [];
    const ttl = ((c.version ?? 0) << 16) | (c.ednsFlags ?? 0);
    b.push(0, 0, 41, c.udpsize >> 8, c.udpsize & 0xff);
    b.push(ttl >>> 24, (ttl >> 16) & 0xff, (ttl >> 8) & 0xff, ttl & 0xff);
    b.push(rdata.length >> 8, rdata.length & 0xff, ...rdata);
    b[11] = 1;
  }
  return new Uint8Array(b);
}

/** genreport's verdict on a reply to `c` in recursive mode: the tags it would print ("ok" alone when clean). */
function genreportVerdict(c: Check, r: Uint8Array): string[] {
  const tags: string[] = [];
  const opcode = (r[2] >> 3) & 0xf;
  const [aa, tc, rd] = [r[2] & 4, r[2] & 2, r[2] & 1];
  const [ra, z, ad, cd] = [r[3] & 0x80, r[3] & 0x40, r[3] & 0x20, r[3] & 0x10];
  let rcode = r[3] & 0xf;
  const counts = [4, 6, 8, 10].map((o) => (r[o] << 8) | r[o + 1]);
  const p = parse(r);
  const opt = p.additionals?.find((x: dnsPacket.Answer) => x.type === "OPT") as
    | { extendedRcode?: number; version?: number; flags?: number; options?: { code: number }[] }
    | undefined;
  const want = c.opcode ?? 0;
  if (want !== 0) {
    ["question", "answer", "authority", "additional"].forEach((s, i) => {
      if (counts[i] !== 0) tags.push(`non-empty-${s}-section`);
    });
  }
  if (opt) rcode += (opt.extendedRcode ?? 0) << 4;
  const version = c.version ?? 0;
  if (opcode !== want) tags.push(`opcode${opcode}`);
  if (version === 0) {
    if (want === 0 && rcode !== 0) tags.push(`rcode${rcode}`);
    if (want !== 0 && rcode !== 4) tags.push(`rcode${rcode}`);
  } else if (rcode !== 16) tags.push(`rcode${rcode}`);
  const ednsVersion = opt?.version ?? 0;
  if (opt && ednsVersion !== 0) tags.push("version-not-zero");
  if (!opt && c.udpsize && !c.opcode) tags.push("noopt");
  if (opt && !c.udpsize) tags.push("opt");
  const seenSoa = (p.answers ?? []).some((x: dnsPacket.Answer) =>
    x.type === "SOA" && x.name.toLowerCase() === ZONE
  );
  if (c.type === SOA && version === 0 && !c.ignore && !seenSoa && rcode === 0) tags.push("nosoa");
  if (c.type === SOA && seenSoa && (version !== 0 || rcode !== 0)) tags.push("soa");
  if (opt?.options?.some((o) => o.code === 100)) tags.push("echoed");
  if (aa) tags.push("aa"); // recursive mode: AA is never right
  if (ra && want) tags.push("ra");
  if (!rd && want === 0) tags.push("nord");
  if (ad && (want || (!c.ad && ((c.ednsFlags ?? 0) & 0x8000) === 0))) tags.push("ad");
  if (cd && (want || !c.cd)) tags.push("cd");
  if (z) tags.push("z");
  if (opt && ((opt.flags ?? 0) & 0x7fff) !== 0) tags.push("mbz");
  if (c.ignore && r.length > (c.udpsize || 512)) tags.push("toobig");
  if (tc && !c.ignore) tags.push("tc-on-tcp");
  return tags.length ? tags : ["ok"];
}

Deno.test("genreport -R checks: every test ok through dotproxy forwarding to an AA-setting resolver (item 8)", async () => {
  await withProxy("", async (p) => {
    const results: Record<string, string> = {};
    let id = 0x100;
    for (const c of CHECKS) {
      const q = genreportQuery(c, id++);
      let reply: Uint8Array | null = null;
      if (!c.tcp) {
        reply = await udpQuery(p.udp, q);
        // genreport follows TC=1 over TCP unless the test ignores it.
        if ((reply[2] & 2) && !c.ignore) reply = null;
      }
      if (!reply) {
        const conn = await TcpDnsClient.connect(p.tcp);
        try {
          await conn.send(q);
          reply = await conn.read();
        } finally {
          conn.close();
        }
      }
      results[c.name] = genreportVerdict(c, reply!).join(",");
    }
    const failed = Object.entries(results).filter(([, v]) => v !== "ok");
    assert.deepEqual(failed, [], JSON.stringify(results));
  });
});
