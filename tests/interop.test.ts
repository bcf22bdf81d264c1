/**
 * Interop with real tools: unbound as the DNS-over-TLS upstream, dig and nslookup as clients,
 * dotproxy as a real process started the way the README says. With CI=true a missing tool fails
 * these tests; elsewhere they are ignored.
 */
import assert from "node:assert/strict";
import { freeUdpPort, spawnCli } from "./helpers/process.ts";
import { digArgs, runTool as run, toolTest } from "./helpers/tools.ts";
import { startUnbound, UNBOUND_A } from "./helpers/unbound.ts";

const CA = new URL("./fixtures/ca.pem", import.meta.url).pathname;

await toolTest({
  name: "dig and nslookup get unbound's answers through dotproxy over UDP and TCP",
  tools: ["unbound", "dig", "nslookup"],
  async fn({ dig, nslookup }) {
    const unbound = await startUnbound();
    const port = freeUdpPort();
    const config = await Deno.makeTempFile({ dir: "/tmp", suffix: ".toml" });
    await Deno.writeTextFile(
      config,
      `[[listeners]]\nurl = "udp://127.0.0.1:${port}"\n[[listeners]]\nurl = "tcp://127.0.0.1:${port}"\n` +
        `[[upstreams]]\nurl = "tls://127.0.0.1:${unbound.port}"\ntls_name = "dns.test"\nca_file = "${CA}"\n`,
    );
    const proxy = spawnCli(["--config", config], [config, CA]);
    try {
      await proxy.waitFor(/started/);
      const at = digArgs("dig", port);

      assert.equal(
        (await run(dig, [...at, "+short", "www.example.test", "A"])).trim(),
        UNBOUND_A,
      );
      assert.equal(
        (await run(dig, [...at, "+short", "+tcp", "MiXeD.example.test", "AAAA"])).trim(),
        "2001:db8::53",
      );

      // 0x20: the answer echoes the client's spelling.
      const mixed = await run(dig, [...at, "+noall", "+question", "MiXeD.example.test"]);
      assert.match(mixed, /;MiXeD\.example\.test\./);

      // A ~3 KB answer: truncated over UDP (dig +ignore shows TC), complete when dig retries on TCP.
      const truncated = await run(dig, [...at, "+ignore", "+bufsize=1232", "large.test", "TXT"]);
      assert.match(truncated, /flags:[^;]* tc/);
      const full = await run(dig, [...at, "+bufsize=1232", "large.test", "TXT"]);
      assert.match(full, /ANSWER: 12,/);
      assert.doesNotMatch(full, /flags:[^;]* tc/);

      const ns = await run(nslookup, [`-port=${port}`, "host.example.test", "127.0.0.1"]);
      assert.match(ns, new RegExp(`Address: ${UNBOUND_A.replaceAll(".", "\\.")}`));

      // unbound refuses names outside its zone; the rcode is passed through unchanged.
      assert.match(await run(dig, [...at, "example.com"]), /status: REFUSED/);
    } finally {
      await proxy.stop();
      await unbound.stop();
      await Deno.remove(config);
    }
  },
});
