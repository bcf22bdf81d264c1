/**
 * The pinned DoT dialer against a real TLS server whose key can change between connections: a
 * pinned key is used, and keeps being checked on every new connection (a server that comes back
 * with another key, valid for the name and CA, is refused); a pin on the CA's key survives the
 * change; a mismatch fails at the "tls" stage with the presented pins, logged.
 */
import assert from "node:assert/strict";
import { createServer, type Server, type TLSSocket } from "node:tls";
import { PinMismatch, pinnedDialer, type PinnedStream } from "../../lib/identity/pinned_dial.ts";
import { PinSet, spkiPin } from "../../lib/identity/spki.ts";
import { systemClock } from "../../lib/sys/clock.ts";
import { buildQuery, frame, parse } from "../helpers/dns_client.ts";
import { readFixture } from "../helpers/fake_dot.ts";
import { fixturePath } from "../helpers/fixtures.ts";
import { toolTest } from "../helpers/tools.ts";

const CA = await readFixture("ca.pem");
const CERT = await readFixture("server.pem");
const KEY = await readFixture("server-key.pem");

/** A DoT server answering every query with its own QR bit set; its certificate can be swapped. */
class SwappableDot {
  readonly server: Server;
  readonly sockets = new Set<TLSSocket>();
  handshakes = 0;
  port = 0;

  constructor(cert: string, key: string) {
    this.server = createServer({ cert, key }, (s) => this.#serve(s));
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as { port: number }).port;
  }

  swap(cert: string, key: string): void {
    this.server.setSecureContext({ cert, key });
  }

  /** Drops every connection (the upstream must reconnect). */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  #serve(s: TLSSocket): void {
    this.handshakes++;
    this.sockets.add(s);
    s.on("close", () => this.sockets.delete(s));
    s.on("error", () => {});
    s.on("data", (chunk: Uint8Array) => {
      const answer = chunk.slice();
      answer[4] |= 0x80;
      s.write(answer);
    });
  }

  async stop(): Promise<void> {
    this.dropAll();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

async function exchange(stream: PinnedStream, id: number): Promise<number> {
  await stream.write(frame(buildQuery("pin.test", "A", id)));
  const buf = new Uint8Array(512);
  let n = 0;
  while (n < 2 || n < 2 + ((buf[0] << 8) | buf[1])) {
    const got = await stream.read(buf.subarray(n));
    if (got === null) throw new Error("closed");
    n += got;
  }
  return parse(buf.slice(2, n)).id!;
}

function dialer(pins: string[], mismatches: string[][] = []) {
  return pinnedDialer({
    pins: new PinSet(pins),
    clock: systemClock,
    handshakeTimeoutMs: 5000,
    upstream: "tls://test",
    onMismatch: (p) => mismatches.push([...p]),
  });
}

const target = (port: number) => ({
  hostname: "127.0.0.1",
  port,
  tlsName: "dns.test",
  caCerts: [CA],
});

Deno.test("a pinned key is used, again after a reconnect; another pin refuses it at the tls stage", async () => {
  const dot = new SwappableDot(CERT, KEY);
  await dot.start();
  try {
    const dial = dialer([spkiPin(CERT)]);
    const first = await dial(target(dot.port)).done;
    assert.equal(await exchange(first, 1), 1);
    dot.dropAll();
    first.close();
    const second = await dial(target(dot.port)).done;
    assert.equal(await exchange(second, 2), 2);
    second.close();
    assert.equal(dot.handshakes, 2);

    const mismatches: string[][] = [];
    const wrong = dialer([spkiPin(await readFixture("other-ca.pem"))], mismatches);
    const d = wrong(target(dot.port));
    await assert.rejects(d.done, (err) => err instanceof PinMismatch);
    assert.equal(d.stage(), "tls", "a connection failure, as for a bad certificate");
    assert.deepEqual(mismatches, [[spkiPin(CERT), spkiPin(CA)]], "the presented chain");
  } finally {
    await dot.stop();
  }
});

Deno.test("a pin does not excuse a certificate that fails the CA or name check", async () => {
  const dot = new SwappableDot(
    await readFixture("untrusted.pem"),
    await readFixture("untrusted-key.pem"),
  );
  await dot.start();
  try {
    const pin = spkiPin(await readFixture("untrusted.pem"));
    const d = dialer([pin])(target(dot.port));
    await assert.rejects(d.done, (err) => !(err instanceof PinMismatch));
  } finally {
    await dot.stop();
  }
});

await toolTest({
  name: "a server back with a new key for the same name and CA is refused; a CA pin accepts it",
  tools: ["openssl"],
  async fn({ openssl }) {
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "dotproxy-pins-" });
    // Files under /tmp are written by openssl and read back through it (the tests may write
    // /tmp but read only the project).
    const run = async (args: string[]) => {
      const out = await new Deno.Command(openssl, { args, stdout: "piped", stderr: "piped" })
        .output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      return new TextDecoder().decode(out.stdout);
    };
    await run([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-subj",
      "/CN=dns.test",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/req.csr`,
    ]);
    await Deno.writeTextFile(`${dir}/ext.cnf`, "subjectAltName=DNS:dns.test\n");
    const newCert = await run([
      "x509",
      "-req",
      "-in",
      `${dir}/req.csr`,
      "-CA",
      fixturePath("ca.pem"),
      "-CAkey",
      fixturePath("ca-key.pem"),
      "-set_serial",
      "7",
      "-days",
      "2",
      "-extfile",
      `${dir}/ext.cnf`,
    ]);
    const newKey = await run(["pkey", "-in", `${dir}/key.pem`]);
    const dot = new SwappableDot(CERT, KEY);
    await dot.start();
    try {
      const leafPinned = dialer([spkiPin(CERT)]);
      const caPinned = dialer([spkiPin(CA)]);
      (await leafPinned(target(dot.port)).done).close();
      dot.swap(newCert, newKey);
      dot.dropAll();
      await assert.rejects(leafPinned(target(dot.port)).done, PinMismatch);
      const viaCa = await caPinned(target(dot.port)).done;
      assert.equal(await exchange(viaCa, 3), 3);
      viaCa.close();
    } finally {
      await dot.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
