/**
 * Pinned upstream handshakes: a DoT server whose key matches a pin is used, one whose key does
 * not is refused after a handshake the CA and name checks passed; the CA and name checks still
 * apply; a self-signed server is reachable by giving its certificate as the CA plus a pin; the
 * check runs again on a connection offered the previous session; and a real DoT upstream
 * (unbound) answers over a pinned connection. With CI=true a missing unbound fails the test.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  pinnedTlsConnect,
  type PinnedTlsOptions,
  type PinnedTlsResult,
} from "../../lib/identity/pinned_tls.ts";
import { PinSet, spkiPin } from "../../lib/identity/spki.ts";
import { systemClock } from "../../lib/sys/clock.ts";
import { buildQuery, frame } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { fixtureText as pem } from "../helpers/fixtures.ts";
import { closeSocket as close, startTlsEcho, withSilentPeer } from "../helpers/tls_echo.ts";
import { toolTest } from "../helpers/tools.ts";
import { startUnbound, UNBOUND_A } from "../helpers/unbound.ts";

const SERVER_PIN = new PinSet([spkiPin(pem("server.pem"))]);
const CA_PIN = new PinSet([spkiPin(pem("ca.pem"))]);
const OTHER_PIN = new PinSet([spkiPin(pem("other-ca.pem"))]);

/**
 * A pinned handshake with 127.0.0.1:`port` as dns.test, trusting the test CA, within 5 s on the
 * system clock; `extra` overrides any of that (`ca: undefined`: the system roots).
 */
function dial(port: number, pins: PinSet, extra: Partial<PinnedTlsOptions> = {}) {
  return pinnedTlsConnect({
    host: "127.0.0.1",
    port,
    servername: "dns.test",
    ca: pem("ca.pem"),
    pins,
    clock: systemClock,
    timeoutMs: 5000,
    ...extra,
  });
}

function failure(r: PinnedTlsResult): { reason: string; message: string; presented?: string[] } {
  assert.equal(r.ok, false, "expected a refusal");
  return r as { ok: false; reason: string; message: string; presented?: string[] };
}

Deno.test("the leaf's or the CA's pin admits the connection; another pin refuses it", async () => {
  const { port, stop } = await startTlsEcho();
  try {
    for (const pins of [SERVER_PIN, CA_PIN]) {
      const r = await dial(port, pins);
      assert.ok(r.ok, r.ok ? "" : r.message); // never stringify a TLSSocket: it stalls it
      r.socket.write("ping");
      const echo = await new Promise<Buffer>((resolve) => r.socket.once("data", resolve));
      assert.equal(echo.toString(), "ping", "the pinned socket is usable");
      await close(r.socket);
    }
    const refused = failure(await dial(port, OTHER_PIN));
    assert.equal(refused.reason, "pin_mismatch");
    assert.deepEqual(refused.presented, [spkiPin(pem("server.pem")), spkiPin(pem("ca.pem"))]);
    assert.match(refused.message, /no certificate in the chain matches spki_pins/);
  } finally {
    await stop();
  }
});

Deno.test("a matching pin does not excuse a failed CA or name check", async () => {
  const untrusted = await startTlsEcho({
    cert: pem("untrusted.pem"),
    key: pem("untrusted-key.pem"),
  });
  const untrustedPin = new PinSet([spkiPin(pem("untrusted.pem"))]);
  try {
    assert.equal(failure(await dial(untrusted.port, untrustedPin)).reason, "tls", "wrong CA");
  } finally {
    await untrusted.stop();
  }
  const good = await startTlsEcho();
  try {
    const wrongName = failure(await dial(good.port, SERVER_PIN, { servername: "other.test" }));
    assert.equal(wrongName.reason, "tls");
  } finally {
    await good.stop();
  }
});

await toolTest({
  name: "a self-signed server: its certificate as the CA, plus its pin",
  tools: ["openssl", "sh"],
  async fn({ sh }) {
    // A throwaway self-signed leaf (no CA flag), as a small private resolver would have; the
    // shell prints certificate then key (the tests may read only the repository).
    const script = "d=$(mktemp -d) && trap 'rm -rf \"$d\"' EXIT && " +
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 " +
      "-subj /CN=private.test -addext subjectAltName=DNS:private.test " +
      '-addext basicConstraints=critical,CA:FALSE -keyout "$d/key.pem" -out "$d/cert.pem" ' +
      '2>/dev/null && cat "$d/cert.pem" "$d/key.pem"';
    const made = await new Deno.Command(sh, { args: ["-c", script], stdout: "piped" }).output();
    assert.ok(made.success, "openssl req failed");
    const text = new TextDecoder().decode(made.stdout);
    const cut = text.indexOf("-----END CERTIFICATE-----") + "-----END CERTIFICATE-----".length;
    const cert = text.slice(0, cut) + "\n";
    const key = text.slice(cut).trim() + "\n";
    const { port, stop } = await startTlsEcho({ cert, key });
    try {
      const pins = new PinSet([spkiPin(cert)]);
      const r = await dial(port, pins, { ca: cert, servername: "private.test" });
      assert.ok(r.ok, r.ok ? "" : r.message);
      await close(r.socket);
      // Without it as the CA, the system roots refuse it, pin or not.
      const noCa = await dial(port, pins, { ca: undefined, servername: "private.test" });
      assert.equal(failure(noCa).reason, "tls");
    } finally {
      await stop();
    }
  },
});

Deno.test("offered the previous connection's session, the pins are checked again", async () => {
  for (const maxVersion of ["TLSv1.2", "TLSv1.3"] as const) {
    const { port, stop } = await startTlsEcho({ maxVersion });
    try {
      const first = await dial(port, SERVER_PIN);
      assert.ok(first.ok);
      first.socket.write("x");
      await new Promise((resolve) => first.socket.once("data", resolve));
      const session = first.socket.getSession();
      await close(first.socket);
      const again = (pins: PinSet) => dial(port, pins, { session });
      assert.equal(failure(await again(OTHER_PIN)).reason, "pin_mismatch", maxVersion);
      const ok = await again(SERVER_PIN);
      assert.ok(ok.ok, maxVersion);
      await close(ok.socket);
    } finally {
      await stop();
    }
  }
});

Deno.test("a connection that never completes its handshake times out on the clock", async () => {
  await withSilentPeer(async (port, accepted) => {
    const clock = new FakeClock();
    const pending = dial(port, SERVER_PIN, { clock, timeoutMs: 2000 });
    await accepted();
    clock.advance(2000);
    assert.equal(failure(await pending).reason, "timeout");
  });
});

await toolTest({
  name: "unbound as a pinned DoT upstream: answers with the right pin, refused with a wrong one",
  tools: ["unbound"],
  async fn() {
    const unbound = await startUnbound();
    try {
      const refused = await dial(unbound.port, OTHER_PIN, { alpn: ["dot"] });
      assert.equal(failure(refused).reason, "pin_mismatch");

      const r = await dial(unbound.port, SERVER_PIN, { alpn: ["dot"] });
      assert.ok(r.ok, r.ok ? "" : r.message); // never stringify a TLSSocket: it stalls it
      r.socket.write(frame(buildQuery("www.example.test", "A", 0xabcd)));
      let got = Buffer.alloc(0);
      while (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) {
        const chunk = await new Promise<Buffer>((resolve) => r.socket.once("data", resolve));
        got = Buffer.concat([got, chunk]);
      }
      const answer = got.subarray(2);
      assert.equal(answer.readUInt16BE(0), 0xabcd);
      assert.equal(answer.readUInt16BE(6), 1, "one answer");
      assert.equal([...answer.subarray(answer.length - 4)].join("."), UNBOUND_A);
      await close(r.socket);
    } finally {
      await unbound.stop();
    }
  },
});
