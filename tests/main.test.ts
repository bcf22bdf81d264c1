/** The command line as operators meet it: flags, exit codes, one-line errors, signals. */
import assert from "node:assert/strict";
import { buildQuery, parse, udpQuery } from "./helpers/dns_client.ts";
import { expectedAddress, startFakeDot } from "./helpers/fake_dot.ts";
import { freeUdpPort, runCli, spawnCli } from "./helpers/process.ts";

const CA = new URL("./fixtures/ca.pem", import.meta.url).pathname;

async function writeConfig(toml: string): Promise<string> {
  const path = await Deno.makeTempFile({ dir: "/tmp", prefix: "dotproxy-test-", suffix: ".toml" });
  await Deno.writeTextFile(path, toml);
  return path;
}

Deno.test("--version prints the version and exits 0", async () => {
  const r = await runCli(["--version"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^dotproxy \d+\.\d+\.\d+/);
});

Deno.test("--help shows usage and exits 0", async () => {
  const r = await runCli(["--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /--config PATH/);
});

Deno.test("an unknown flag is a usage error with exit code 2", async () => {
  const r = await runCli(["--bogus"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /bogus/);
});

Deno.test("--check accepts the shipped config.toml", async () => {
  const r = await runCli(["--check", "--config", "config.toml"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /valid/);
});

Deno.test("--check rejects a bad config with one line naming key and value, exit 2", async () => {
  const path = await writeConfig(
    `[[listeners]]\nurl = "udp://127.0.0.1:99999"\n[[upstreams]]\nurl = "tls://1.1.1.1"\ntls_name = "x"\n`,
  );
  try {
    const r = await runCli(["--check", "--config", path], [path]);
    assert.equal(r.code, 2);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /listeners\[0\]\.url/);
    assert.match(lines[0], /99999/);
    assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/); // no stack trace
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("--check and start-up both reject a key that does not match its certificate", async () => {
  const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
  const [cert, key, wrongKey] = ["server.pem", "server-key.pem", "wrong-name-key.pem"].map(fixture);
  const toml = (k: string) =>
    `[[listeners]]\nurl = "tls://127.0.0.1:${freeUdpPort()}"\ncert_file = "${cert}"\n` +
    `key_file = "${k}"\n[[upstreams]]\nurl = "tls://127.0.0.1:853"\ntls_name = "dns.test"\n`;
  const path = await writeConfig(toml(wrongKey));
  const reads = [path, cert, key, wrongKey];
  try {
    for (const args of [["--check", "--config", path], ["--config", path]]) {
      const r = await runCli(args, reads);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(
        lines[0].includes(`listeners[0].key_file = "${wrongKey}": `) &&
          lines[0].includes("key does not belong to the certificate for CN=dns.test"),
        lines[0],
      );
    }
    await Deno.writeTextFile(path, toml(key));
    const ok = await runCli(["--check", "--config", path], reads);
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("a missing config file is reported in one line with exit code 2", async () => {
  const r = await runCli(["--config", "/tmp/does-not-exist.toml"], ["/tmp/does-not-exist.toml"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /does-not-exist\.toml/);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
});

Deno.test("an invalid --log-level is rejected with exit code 2", async () => {
  const r = await runCli(["--log-level", "loud", "--check"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /log-level/);
});

Deno.test("a port already in use gives a clear message and exit code 1", async () => {
  const busy = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  const path = await writeConfig(
    `[[listeners]]\nurl = "udp://127.0.0.1:${port}"\n` +
      `[[upstreams]]\nurl = "tls://127.0.0.1:853"\ntls_name = "dns.test"\n`,
  );
  try {
    const r = await runCli(["--config", path], [path]);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(r.stderr, new RegExp(`udp://127\\.0\\.0\\.1:${port}.*already in use`));
  } finally {
    busy.close();
    await Deno.remove(path);
  }
});

Deno.test("the proxy answers, then exits 0 on SIGTERM after closing its connections", async () => {
  const upstream = await startFakeDot();
  const port = freeUdpPort();
  const path = await writeConfig(
    `[[listeners]]\nurl = "udp://127.0.0.1:${port}"\n` +
      `[[upstreams]]\nurl = "tls://127.0.0.1:${upstream.port}"\ntls_name = "dns.test"\n` +
      `ca_file = "${CA}"\n[log]\nlevel = "info"\nformat = "json"\n`,
  );
  const proxy = spawnCli(["--config", path], [path, CA]);
  try {
    await proxy.waitFor(/started/);
    const reply = await udpQuery({ hostname: "127.0.0.1", port }, buildQuery("cli.test"));
    const answer = parse(reply).answers?.[0];
    assert.equal(answer && "data" in answer ? answer.data : undefined, expectedAddress("cli.test"));
    assert.equal(await proxy.stop("SIGTERM"), 0);
    const lines = proxy.output().trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => /connected to upstream/.test(l.message)));
    assert.ok(lines.some((l) => /SIGTERM/.test(l.message)));
    // Privacy: the query name is not logged at info level.
    assert.doesNotMatch(proxy.output(), /cli\.test/);
    assert.equal(upstream.openConnections(), 0);
  } finally {
    await proxy.stop("SIGKILL");
    await upstream.close();
    await Deno.remove(path);
  }
});

Deno.test("SIGHUP applies a valid new config and rejects an invalid one, keeping the old", async () => {
  const first = await startFakeDot();
  const second = await startFakeDot();
  const port = freeUdpPort();
  const toml = (u: number, extra = "") =>
    `[[listeners]]\nurl = "udp://127.0.0.1:${port}"\n` +
    `[[upstreams]]\nurl = "tls://127.0.0.1:${u}"\ntls_name = "dns.test"\n` +
    `ca_file = "${CA}"\n[log]\nformat = "json"\n${extra}`;
  const path = await writeConfig(toml(first.port));
  const proxy = spawnCli(["--config", path], [path, CA]);
  const ask = async (name: string) => {
    const answer = parse(await udpQuery({ hostname: "127.0.0.1", port }, buildQuery(name)))
      .answers?.[0];
    return answer && "data" in answer ? answer.data : undefined;
  };
  try {
    await proxy.waitFor(/started/);
    assert.equal(await ask("before.test"), expectedAddress("before.test"));

    await Deno.writeTextFile(path, toml(second.port));
    proxy.child.kill("SIGHUP");
    await proxy.waitFor(/configuration reloaded/);
    assert.equal(await ask("after.test"), expectedAddress("after.test"));
    assert.equal(second.queries.length, 1, "the new upstream answered");
    assert.equal(await ask("before.test"), expectedAddress("before.test"), "cache kept");
    assert.equal(first.queries.length, 1);

    await Deno.writeTextFile(path, toml(second.port, `[cache]\nmax_ttl = "soon"\n`));
    proxy.child.kill("SIGHUP");
    await proxy.waitFor(/reload rejected/);
    assert.match(proxy.output(), /cache\.max_ttl/);
    assert.equal(await ask("still.test"), expectedAddress("still.test"));
    assert.equal(await proxy.stop("SIGTERM"), 0);
  } finally {
    await proxy.stop("SIGKILL");
    await first.close();
    await second.close();
    await Deno.remove(path);
  }
});
