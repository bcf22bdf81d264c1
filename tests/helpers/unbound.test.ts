import assert from "node:assert/strict";
import { buildQuery, parse, TcpDnsClient } from "./dns_client.ts";
import { toolTest } from "./tools.ts";
import { startUnbound, UNBOUND_A, UNBOUND_AAAA } from "./unbound.ts";

const CA = await Deno.readTextFile(new URL("../fixtures/ca.pem", import.meta.url));

await toolTest({
  name: "unbound answers DoT queries from local data only",
  tools: ["unbound"],
  fn: async () => {
    const unbound = await startUnbound();
    let client: TcpDnsClient | undefined;
    try {
      client = await TcpDnsClient.connect(unbound, {
        tls: { caCerts: [CA], serverName: "dns.test" },
      });
      const ask = async (name: string, type: string, id: number) => {
        await client!.send(buildQuery(name, type, id));
        const msg = await client!.read();
        assert.ok(msg, `no reply for ${name} ${type}`);
        const p = parse(msg);
        assert.equal(p.id, id);
        return { p, size: msg.length };
      };

      const a = (await ask("anything.test", "A", 1)).p;
      assert.equal(a.rcode, "NOERROR");
      assert.deepEqual(a.answers?.map((r: { data: unknown }) => r.data), [UNBOUND_A]);

      const aaaa = (await ask("deep.name.test", "AAAA", 2)).p;
      assert.deepEqual(aaaa.answers?.map((r: { data: unknown }) => r.data), [UNBOUND_AAAA]);

      const large = await ask("large.test", "TXT", 3);
      assert.equal(large.p.answers?.length, 12);
      assert.ok(large.size > 2900, `large.test TXT is ${large.size} bytes`);

      const out = (await ask("example.com", "A", 4)).p;
      assert.equal(out.rcode, "REFUSED");
    } finally {
      client?.close();
      await unbound.stop();
    }
  },
});

await toolTest({
  name: "unbound rejects a client verifying another name",
  tools: ["unbound"],
  fn: async () => {
    const unbound = await startUnbound();
    try {
      await assert.rejects(
        TcpDnsClient.connect(unbound, { tls: { caCerts: [CA], serverName: "wrong.test" } }),
      );
    } finally {
      await unbound.stop();
    }
  },
});
