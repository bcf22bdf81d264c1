/**
 * SPKI pins: computed like the OpenSSL pipeline operators use, validated strictly, checked against
 * real node:tls chains on every connection, including a second connection offered the first
 * one's session. Tests that need openssl fail when it is missing under CI=true.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import { connect, type TLSSocket } from "node:tls";
import { fetchPins, formatPinReport, pinTargetFromUrl } from "../../lib/identity/print_pins.ts";
import {
  parsePin,
  type PeerCertificateLike,
  peerChain,
  PinSet,
  spkiPin,
} from "../../lib/identity/spki.ts";
import { systemClock } from "../../lib/sys/clock.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { fixturePath, fixtureText as pem } from "../helpers/fixtures.ts";
import { closeSocket, startTlsEcho, withSilentPeer } from "../helpers/tls_echo.ts";
import { toolTest } from "../helpers/tools.ts";

/** Runs a shell pipeline (fixed text, file names from this test only) and returns stdout. */
async function sh(script: string): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
}

const PIPE = "openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | " +
  "openssl dgst -sha256 -binary | openssl enc -base64";

await toolTest({
  name: "spkiPin equals the OpenSSL pipeline for every fixture certificate",
  tools: ["openssl"],
  async fn() {
    const certs = [
      "ca.pem",
      "server.pem",
      "wrong-name.pem",
      "other-ca.pem",
      "untrusted.pem",
      "client-ca.pem",
      "client.pem",
      "client-san.pem",
      "client-expired.pem",
    ];
    const pins = new Set<string>();
    for (const f of certs) {
      const expected = await sh(`< '${fixturePath(f)}' ${PIPE}`);
      assert.equal(spkiPin(pem(f)), expected, f);
      pins.add(expected);
    }
    assert.equal(pins.size, certs.length, "every fixture has its own key");
  },
});

Deno.test("spkiPin takes PEM, DER or a parsed certificate alike", () => {
  const x = new X509Certificate(pem("server.pem"));
  const der = new Uint8Array(x.raw);
  assert.equal(spkiPin(der), spkiPin(x));
  assert.equal(spkiPin(pem("server.pem")), spkiPin(x));
  assert.equal(parsePin(spkiPin(x)), spkiPin(x));
});

Deno.test("pins must be canonical base64 of exactly 32 bytes; errors name the value", () => {
  const good = spkiPin(pem("ca.pem"));
  assert.equal(parsePin(good), good);
  const bad = [
    "",
    good.slice(0, -1), // no padding
    good.slice(1), // 43 characters
    good.replace(/[+/]/g, "-").replace(/^./, "-"), // base64url alphabet
    btoa("x".repeat(33)), // 33 bytes
    btoa("x".repeat(31)) + "=", // 31 bytes, padded to look right
    "a".repeat(64), // a hex SHA-256
    ` ${good}`,
    "sha256/" + good,
  ];
  for (const b of bad) {
    const r = parsePin(b);
    assert.equal(typeof r, "object", `accepted ${JSON.stringify(b)}`);
    assert.ok(
      (r as { error: string }).error.includes(JSON.stringify(b)),
      (r as { error: string }).error,
    );
  }
  // Non-canonical: 43 characters carry 258 bits, so the last one's two low bits must be zero.
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const v = alphabet.indexOf(good[42]);
  assert.equal(v % 4, 0);
  const nonCanonical = good.slice(0, 42) + alphabet[v + 1] + "=";
  assert.equal(atob(nonCanonical).length, 32, "decodes to 32 bytes all the same");
  assert.equal(typeof parsePin(nonCanonical), "object");
});

Deno.test("a pin set matches any certificate of the chain and reports what it saw otherwise", () => {
  const leaf = pem("server.pem");
  const ca = pem("ca.pem");
  const caPin = spkiPin(ca);
  const set = new PinSet([caPin]);
  assert.deepEqual(set.check([leaf, ca]), { ok: true, pin: caPin, depth: 1 });
  const other = new PinSet([spkiPin(pem("other-ca.pem"))]);
  assert.deepEqual(other.check([leaf, ca]), {
    ok: false,
    reason: "no_match",
    presented: [spkiPin(leaf), caPin],
  });
  assert.deepEqual(set.check([]), { ok: false, reason: "no_chain", presented: [] });
  const garbage = set.check([Uint8Array.of(1, 2, 3), ca]);
  assert.equal(garbage.ok, true, "an unparseable certificate is skipped, not fatal");
  assert.throws(() => new PinSet([]), /at least one pin/);
  assert.throws(() => new PinSet(["nope"]), /"nope" is not a SPKI pin/);
});

Deno.test("peerChain follows issuerCertificate, stops at self-issued roots, loops and the cap", () => {
  const der = (f: string) => new Uint8Array(new X509Certificate(pem(f)).raw);
  const root: PeerCertificateLike = { raw: der("ca.pem"), fingerprint256: "R" };
  root.issuerCertificate = root;
  const leaf: PeerCertificateLike = {
    raw: der("server.pem"),
    fingerprint256: "L",
    issuerCertificate: root,
  };
  assert.equal(peerChain({ getPeerCertificate: () => leaf }).length, 2);
  assert.deepEqual(peerChain({ getPeerCertificate: () => ({}) }), []);
  assert.deepEqual(peerChain({ getPeerCertificate: () => null }), []);
  // A long cycle without fingerprints: bounded anyway.
  const a: PeerCertificateLike = { raw: der("server.pem") };
  const b: PeerCertificateLike = { raw: der("ca.pem"), issuerCertificate: a };
  a.issuerCertificate = b;
  assert.equal(peerChain({ getPeerCertificate: () => a }).length, 2);
  let deep: PeerCertificateLike = { raw: der("ca.pem"), fingerprint256: "0" };
  for (let i = 1; i < 40; i++) {
    deep = { raw: der("server.pem"), fingerprint256: String(i), issuerCertificate: deep };
  }
  assert.equal(peerChain({ getPeerCertificate: () => deep }).length, 16);
});

/** Connects, completes the handshake, waits for the session (if any) and one echo. */
async function dial(
  port: number,
  opts: { session?: Buffer; maxVersion?: "TLSv1.2" | "TLSv1.3" } = {},
): Promise<{ socket: TLSSocket; session: Buffer | undefined }> {
  const socket = connect({
    host: "127.0.0.1",
    port,
    servername: "dns.test",
    ca: pem("ca.pem"),
    session: opts.session,
    maxVersion: opts.maxVersion,
  });
  let session: Buffer | undefined;
  socket.on("session", (s: Buffer) => (session = s));
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", resolve);
    socket.once("error", reject);
  });
  socket.write("x");
  await new Promise((resolve) => socket.once("data", resolve));
  return { socket, session: session ?? socket.getSession() };
}

Deno.test("a node:tls connection reports the verified chain; pins are checked against it", async () => {
  const { port, stop } = await startTlsEcho();
  try {
    const { socket } = await dial(port);
    const chain = peerChain(socket);
    await closeSocket(socket);
    // The server sends its leaf only; node:tls completes the chain with the trusted root.
    assert.deepEqual(chain.map((c) => spkiPin(c)), [
      spkiPin(pem("server.pem")),
      spkiPin(pem("ca.pem")),
    ]);
    assert.equal(new PinSet([spkiPin(pem("server.pem"))]).check(chain).ok, true);
    assert.equal(new PinSet([spkiPin(pem("untrusted.pem"))]).check(chain).ok, false);
  } finally {
    await stop();
  }
});

Deno.test("pins hold on a second connection offered the first one's session (TLS 1.2 and 1.3)", async () => {
  const { port, stop } = await startTlsEcho();
  const right = new PinSet([spkiPin(pem("server.pem"))]);
  const wrong = new PinSet([spkiPin(pem("untrusted.pem"))]);
  try {
    for (const maxVersion of ["TLSv1.2", "TLSv1.3"] as const) {
      const first = await dial(port, { maxVersion });
      const firstChain = peerChain(first.socket);
      await closeSocket(first.socket);
      const second = await dial(port, { maxVersion, session: first.session });
      const reused = second.socket.isSessionReused();
      const chain = peerChain(second.socket);
      await closeSocket(second.socket);
      // Deno 2.9.6's node:tls client does not resume (reused is false), so the full handshake
      // runs every time. Should a later version resume, the chain must still be reported:
      // the check runs on it after every handshake, and an empty chain never matches.
      assert.equal(chain.length, firstChain.length, `${maxVersion}, reused=${reused}`);
      assert.equal(right.check(chain).ok, true, `${maxVersion}, reused=${reused}`);
      assert.equal(wrong.check(chain).ok, false, `${maxVersion}, reused=${reused}`);
    }
  } finally {
    await stop();
  }
});

await toolTest({
  name: "fetchPins: the chain and verdict of a live server, equal to openssl s_client's pin",
  tools: ["openssl"],
  async fn() {
    const { port, stop } = await startTlsEcho({ cert: pem("server.pem") + pem("ca.pem") });
    try {
      const target = { hostname: "127.0.0.1", port, servername: "dns.test" };
      const r = await fetchPins(target, { clock: systemClock, ca: pem("ca.pem") });
      assert.equal(r.verified, true, String(r.verifyError));
      assert.deepEqual(r.chain.map((c) => c.pin), [
        spkiPin(pem("server.pem")),
        spkiPin(pem("ca.pem")),
      ]);
      assert.match(r.chain[0].subject, /CN=dns\.test/);
      const viaOpenssl = await sh(
        `openssl s_client -connect 127.0.0.1:${port} -servername dns.test </dev/null 2>/dev/null | ${PIPE}`,
      );
      assert.equal(r.chain[0].pin, viaOpenssl);
      const text = formatPinReport(r);
      assert.ok(text.includes(`spki_pins = ["${viaOpenssl}"]`), text);
      assert.match(text, /chain verified/);

      const wrongName = await fetchPins({ ...target, servername: "other.test" }, {
        clock: systemClock,
        ca: pem("ca.pem"),
      });
      assert.equal(wrongName.verified, false);
      // node:tls's own name check (Deno sets it even with rejectUnauthorized off), or ours.
      assert.match(String(wrongName.verifyError), /ALTNAME_INVALID|not valid for other\.test/);
      assert.equal(wrongName.chain[0].pin, viaOpenssl, "reported even when not verified");

      const otherCa = await fetchPins(target, { clock: systemClock, ca: pem("other-ca.pem") });
      assert.equal(otherCa.verified, false);
      assert.match(formatPinReport(otherCa), /chain NOT verified/);
    } finally {
      await stop();
    }
  },
});

Deno.test("fetchPins fails with the target named: refused connection, no handshake in time", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = closed.addr.port;
  closed.close();
  await assert.rejects(
    fetchPins({ hostname: "127.0.0.1", port }, { clock: systemClock }),
    new RegExp(`127\\.0\\.0\\.1:${port}`),
  );

  await withSilentPeer(async (port, accepted) => {
    const clock = new FakeClock();
    const pending = fetchPins({ hostname: "127.0.0.1", port }, { clock, timeoutMs: 3000 });
    await accepted();
    clock.advance(3000);
    await assert.rejects(pending, /no TLS handshake within 3000 ms/);
  });
});

Deno.test("pinTargetFromUrl: tls:// and https:// with default ports and the name to verify", () => {
  assert.deepEqual(pinTargetFromUrl("tls://1.1.1.1"), { hostname: "1.1.1.1", port: 853 });
  assert.deepEqual(pinTargetFromUrl("tls://1.1.1.1", "cloudflare-dns.com"), {
    hostname: "1.1.1.1",
    port: 853,
    servername: "cloudflare-dns.com",
  });
  assert.deepEqual(pinTargetFromUrl("https://dns.example.net/dns-query"), {
    hostname: "dns.example.net",
    port: 443,
    servername: "dns.example.net",
  });
  assert.deepEqual(pinTargetFromUrl("tls://[2606:4700::1111]:8853"), {
    hostname: "2606:4700::1111",
    port: 8853,
  });
  const bad = pinTargetFromUrl("udp://1.1.1.1");
  assert.ok("error" in bad && bad.error.includes('"udp://1.1.1.1"'), JSON.stringify(bad));
});
