/**
 * Locally served zones and local data answer like Unbound's defaults: the same queries go to a
 * real unbound (its built-in local zones, plus the same records as local-data) and to the Router;
 * rcode, AA, answer and authority sections must match. Intended differences are not queried:
 * `.local` (Unbound does not serve it by default) and CNAMEs between local names (we follow
 * them through local data; this Unbound answers the CNAME alone).
 */
import assert from "node:assert/strict";
import { decodeQuery } from "../../lib/dns/message.ts";
import { encodeQuery } from "../../lib/dns/reply.ts";
import { isRecordError, LocalData, parseRecord, type RecordRow } from "../../lib/route/records.ts";
import { Router } from "../../lib/route/router.ts";
import { udpQuery } from "../helpers/dns_client.ts";
import { toolTest } from "../helpers/tools.ts";
import { startUnbound, unboundConf } from "../helpers/unbound.ts";
import { flagsOf, lines, read } from "./helpers.ts";

const RECORDS: RecordRow[] = [
  { name: "nas.home.arpa", type: "A", data: "192.168.1.10", ttl: 300 },
  { name: "a.b.home.arpa", type: "A", data: "192.168.1.11", ttl: 300 },
  { name: "10.1.168.192.in-addr.arpa", type: "PTR", data: "nas.home.arpa", ttl: 300 },
];

const V6_ZERO = "0.".repeat(31);
const QUERIES: [string, number][] = [
  ["localhost", 1],
  ["localhost", 28],
  ["localhost", 15],
  ["localhost", 6],
  ["localhost", 2],
  ["foo.localhost", 1],
  ["foo.localhost", 16],
  ["x.invalid", 1],
  ["invalid", 6],
  ["1.0.0.127.in-addr.arpa", 12],
  ["2.0.0.127.in-addr.arpa", 12],
  ["127.in-addr.arpa", 2],
  ["4.3.2.10.in-addr.arpa", 12],
  ["10.in-addr.arpa", 1],
  ["1.1.16.172.in-addr.arpa", 12],
  ["1.1.31.172.in-addr.arpa", 12],
  ["5.5.168.192.in-addr.arpa", 12],
  ["10.1.168.192.in-addr.arpa", 12],
  ["1.1.254.169.in-addr.arpa", 12],
  ["1.2.0.192.in-addr.arpa", 12],
  ["1.100.51.198.in-addr.arpa", 12],
  ["1.113.0.203.in-addr.arpa", 12],
  ["1.1.64.100.in-addr.arpa", 12],
  ["1.1.127.100.in-addr.arpa", 12],
  ["255.255.255.255.in-addr.arpa", 12],
  ["1.0.in-addr.arpa", 12],
  ["x.onion", 1],
  ["home.arpa", 6],
  ["nas.home.arpa", 1],
  ["nas.home.arpa", 15],
  ["b.home.arpa", 1],
  ["x.home.arpa", 1],
  ["1.d.f.ip6.arpa", 12],
  ["1.8.e.f.ip6.arpa", 12],
  ["1.b.e.f.ip6.arpa", 12],
  ["1.8.b.d.0.1.0.0.2.ip6.arpa", 12],
  [`1.${V6_ZERO}ip6.arpa`, 12],
  [`0.${V6_ZERO}ip6.arpa`, 12],
];

/** Unbound with its default local zones and `RECORDS` as local-data (only local names are asked). */
function parityConfig(port: number, dir: string): string {
  return unboundConf(port, dir, {
    server: RECORDS.map((r) => `  local-data: "${r.name}. ${r.ttl} IN ${r.type} ${r.data}"`),
  });
}

await toolTest({
  name: "local zones and local data answer as Unbound's defaults do",
  tools: ["unbound"],
  async fn() {
    const data = new LocalData();
    for (const row of RECORDS) {
      const rec = parseRecord(row);
      assert.ok(!isRecordError(rec));
      assert.equal(data.add(rec), null);
    }
    const router = Router.build({ data });
    assert.ok(router instanceof Router);
    const unbound = await startUnbound({ config: parityConfig });
    try {
      for (const [name, qtype] of QUERIES) {
        const bytes = encodeQuery({ id: 0x4242, name, qtype, rd: true });
        const d = decodeQuery(bytes);
        assert.ok(d.ok);
        const decision = router.route(d.value.question!.name);
        assert.notEqual(decision.kind, "forward", `${name} is local`);
        if (decision.kind === "forward") continue;
        const ours = read(decision.answer(d.value));
        const theirs = read(await udpQuery(unbound, bytes));
        const view = (p: ReturnType<typeof read>) => ({
          rcode: p.rcode,
          flags: flagsOf(p),
          answers: lines(p.answers),
          authorities: lines(p.authorities),
        });
        assert.deepEqual(view(ours), view(theirs), `${name} type ${qtype}`);
      }
    } finally {
      await unbound.stop();
    }
  },
});
