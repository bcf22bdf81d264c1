/**
 * Split DNS with real tools: dotproxy as a process started the way the README says, unbound as
 * both the public DoT upstream (logging every query) and the internal plain-DNS resolver for
 * corp.test, dig as the client; `--check` on bad split-DNS input. With CI=true a missing tool
 * fails these tests; elsewhere they are ignored.
 */
import assert from "node:assert/strict";
import { freeUdpPort, runCli, spawnCli } from "./helpers/process.ts";
import { digArgs, runTool, toolTest } from "./helpers/tools.ts";
import {
  CORP_ROUTE_TOML,
  CORP_ZONE,
  corpUpstreamToml,
  internalUnboundConfig,
  loggingUnboundConfig,
  startUnbound,
  UNBOUND_A,
} from "./helpers/unbound.ts";

const CA = new URL("./fixtures/ca.pem", import.meta.url).pathname;

/** Runs dig (at `bin`) against 127.0.0.1:`port`; its stdout and stderr. */
function dig(bin: string, port: number, args: string[]): Promise<string> {
  return runTool(bin, [...digArgs("dig", port), ...args]);
}

function config(port: number, publicPort: number, internalPort: number, hosts: string): string {
  return `[[listeners]]
url = "udp://127.0.0.1:${port}"
[[listeners]]
url = "tcp://127.0.0.1:${port}"

[[upstreams]]
url = "tls://127.0.0.1:${publicPort}"
tls_name = "dns.test"
ca_file = "${CA}"

${corpUpstreamToml(internalPort)}
${CORP_ROUTE_TOML}
[[routes]]
domains = ["blocked.test"]
action = "nxdomain"

[[records]]
name = "nas.home.arpa"
type = "A"
data = "192.168.1.10"

[routing]
hosts_files = ["${hosts}"]
hosts_poll = "0s"
`;
}

await toolTest({
  name: "dig through dotproxy: internal names from the internal unbound only, local data, reload",
  tools: ["unbound", "dig"],
  async fn(bin) {
    const pub = await startUnbound({ config: loggingUnboundConfig });
    const internal = await startUnbound({ config: internalUnboundConfig });
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "dotproxy-split-" });
    const hosts = `${dir}/hosts`;
    const path = `${dir}/config.toml`;
    await Deno.writeTextFile(hosts, "192.168.1.2 printer.lan\n");
    const port = freeUdpPort();
    await Deno.writeTextFile(path, config(port, pub.port, internal.port, hosts));
    const proxy = spawnCli(["--config", path], [path, CA, hosts]);
    try {
      await proxy.waitFor(/started/);
      const short = async (...args: string[]) =>
        (await dig(bin.dig, port, ["+short", ...args])).trim();

      assert.equal(await short("www.corp.test"), CORP_ZONE.www);
      assert.equal(await short("+tcp", "DB.corp.TEST"), CORP_ZONE.db);
      assert.equal(await short("-x", CORP_ZONE.www), "www.corp.test.");
      assert.equal(await short("www.example.test"), UNBOUND_A);
      assert.equal(await short("localhost"), "127.0.0.1");
      assert.equal(await short("nas.home.arpa"), "192.168.1.10");
      assert.equal(await short("printer.lan"), "192.168.1.2");
      assert.equal(await short("-x", "192.168.1.2"), "printer.lan.");
      const local = await dig(bin.dig, port, ["nas.home.arpa"]);
      assert.match(local, /flags:[^;]* aa/);
      const blocked = await dig(bin.dig, port, ["x.blocked.test"]);
      assert.match(blocked, /status: NXDOMAIN/);
      assert.match(blocked, /EDE: 15 \(Blocked\)/);
      assert.match(await dig(bin.dig, port, ["printer.local"]), /status: NXDOMAIN/);

      // The public resolver never saw an internal, local or blocked name.
      const seen = pub.log();
      assert.match(seen, /www\.example\.test\. A IN/);
      assert.doesNotMatch(seen, /corp\.test|home\.arpa|printer|blocked|localhost|10\.in-addr/i);
      assert.match(internal.log(), /www\.corp\.test\. A IN/);

      // SIGHUP re-reads the hosts file and the config.
      await Deno.writeTextFile(hosts, "192.168.1.3 printer.lan\n");
      await Deno.writeTextFile(
        path,
        config(port, pub.port, internal.port, hosts).replace("192.168.1.10", "192.168.1.11"),
      );
      proxy.child.kill("SIGHUP");
      await proxy.waitFor(/configuration reloaded/);
      assert.equal(await short("printer.lan"), "192.168.1.3");
      assert.equal(await short("nas.home.arpa"), "192.168.1.11");
    } finally {
      await proxy.stop();
      await pub.stop();
      await internal.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("--check names the key and value of a bad route, and the file:line of a bad hosts line", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "dotproxy-check-" });
  try {
    const base = `[[listeners]]\nurl = "udp://127.0.0.1:5053"\n` +
      `[[upstreams]]\nurl = "tls://1.1.1.1"\ntls_name = "cloudflare-dns.com"\n`;
    const bad = `${dir}/bad.toml`;
    await Deno.writeTextFile(
      bad,
      base + `[[routes]]\ndomains = ["corp.example"]\ngroup = "corp"\n`,
    );
    const r1 = await runCli(["--check", "--config", bad], [bad]);
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /routes\[0\]\.group = "corp": no upstream has group = "corp"/);

    const hosts = `${dir}/hosts`;
    await Deno.writeTextFile(hosts, "127.0.0.1 localhost\n10.0.0.999 ok.lan\n");
    const withHosts = `${dir}/hosts.toml`;
    await Deno.writeTextFile(withHosts, base + `[routing]\nhosts_files = ["hosts"]\n`);
    const r2 = await runCli(["--check", "--config", withHosts], [withHosts, hosts]);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, new RegExp(`routing\\.hosts_files\\[0\\] = "hosts": ${hosts}:2: `));

    // Without read permission for the hosts file: the fix is named.
    const r3 = await runCli(["--check", "--config", withHosts], [withHosts]);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /not given read permission for it: add it to --allow-read/);

    // A group no route uses is a warning; the config is valid.
    const unused = `${dir}/unused.toml`;
    await Deno.writeTextFile(
      unused,
      base + `[[upstreams]]\nurl = "udp://10.0.0.53"\ngroup = "lab"\n`,
    );
    const r4 = await runCli(["--check", "--config", unused], [unused]);
    assert.equal(r4.code, 0, r4.stderr);
    assert.match(r4.stderr, /warning: upstreams group = "lab" .*no \[\[routes\]\] entry/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
