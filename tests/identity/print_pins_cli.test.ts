/**
 * `dotproxy --print-pins URL` as operators run it (the real CLI against a DoT server with a
 * test-CA certificate): the leaf's pin as an spki_pins line, the verdict on the chain, exit codes,
 * and the same value from the openssl pipeline the README gives.
 */
import assert from "node:assert/strict";
import { spkiPin } from "../../lib/identity/spki.ts";
import { startFakeDot } from "../helpers/fake_dot.ts";
import { fixturePath, fixtureText } from "../helpers/fixtures.ts";
import { freeUdpPort, runCli } from "../helpers/process.ts";
import { toolTest } from "../helpers/tools.ts";

const SERVER_PIN = spkiPin(fixtureText("server.pem"));

/** `dotproxy --print-pins` for a fake DoT server (the dns.test certificate), `args` after it. */
async function printPins(args: string[]): ReturnType<typeof runCli> {
  const dot = await startFakeDot();
  try {
    return await runCli(["--print-pins", `tls://127.0.0.1:${dot.port}`, ...args]);
  } finally {
    await dot.close();
  }
}

Deno.test("--print-pins prints the leaf's pin as an spki_pins line, and the chain verified", async () => {
  const r = await printPins(["--tls-name", "dns.test", "--ca-file", fixturePath("ca.pem")]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /chain verified/);
  assert.match(r.stdout, /# 0 leaf: CN=dns\.test/);
  assert.ok(r.stdout.includes(`spki_pins = ["${SERVER_PIN}"]`), r.stdout);
});

Deno.test("--print-pins without the CA still prints the chain, and says it is not verified", async () => {
  const r = await printPins(["--tls-name", "dns.test"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /chain NOT verified/);
  assert.ok(r.stdout.includes(SERVER_PIN));
});

Deno.test("--print-pins: a bad URL is a usage error (2), an unreachable server a failure (1)", async () => {
  const bad = await runCli(["--print-pins", "udp://127.0.0.1:53"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--print-pins "udp:\/\/127\.0\.0\.1:53"/);
  const down = await runCli([
    "--print-pins",
    `tls://127.0.0.1:${freeUdpPort()}`,
    "--tls-name",
    "x",
  ]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /--print-pins: 127\.0\.0\.1:\d+/);
  const stray = await runCli(["--tls-name", "dns.test"]);
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /go with --print-pins/);
});

await toolTest({
  name: "the README's openssl pipeline gives the pin --print-pins prints",
  tools: ["openssl", "sh"],
  async fn({ sh }) {
    const dot = await startFakeDot();
    try {
      // The pipeline as the README writes it, with this server's address and name.
      const pipeline = `openssl s_client -connect 127.0.0.1:${dot.port} -servername dns.test ` +
        `</dev/null 2>/dev/null | openssl x509 -pubkey -noout | ` +
        `openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64`;
      const out = await new Deno.Command(sh, { args: ["-c", pipeline], stdout: "piped" }).output();
      assert.equal(new TextDecoder().decode(out.stdout).trim(), SERVER_PIN);
    } finally {
      await dot.close();
    }
  },
});
