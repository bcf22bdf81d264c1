/**
 * Client identity from TLS certificates: the naming rules on node:tls's certificate objects, and
 * mutual TLS in Deno's node:tls with real clients: kdig with and without a client certificate
 * (refused during the handshake under "require"), and openssl s_client resuming a TLS 1.2 session
 * (the certificate, and so the name, survives resumption). With CI=true a missing tool fails.
 */
import assert from "node:assert/strict";
import { createServer, type Server, type TLSSocket } from "node:tls";
import {
  certificateName,
  clientCertIdentity,
  type ClientCertOutcome,
  type ClientCertSource,
  tlsServerOptions,
} from "../../lib/identity/client_cert.ts";
import type { ClientAuthMode } from "../../lib/identity/modes.ts";
import { concatBytes } from "../helpers/proxy_header.ts";
import { fixturePath, fixtureText } from "../helpers/fixtures.ts";
import { kdigTls, toolTest } from "../helpers/tools.ts";

Deno.test("the name is the first usable CN, else the first DNS/email/URI SAN", () => {
  assert.equal(
    certificateName({ subject: { CN: "alice" }, subjectaltname: "DNS:x.test" }),
    "alice",
  );
  assert.equal(certificateName({ subject: { CN: ['a"b', "second"] } }), "second");
  assert.equal(
    certificateName({
      subject: {},
      subjectaltname: "IP Address:192.0.2.1, DNS:bob.test",
    }),
    "bob.test",
  );
  assert.equal(
    certificateName({ subjectaltname: "email:carol@example.test, DNS:c.test" }),
    "carol@example.test",
  );
  assert.equal(
    certificateName({ subjectaltname: 'URI:"https://id.test/a,b", DNS:d.test' }),
    "https://id.test/a,b",
  );
  assert.equal(
    certificateName({ subject: { CN: "" }, subjectaltname: "IP Address:192.0.2.1" }),
    null,
  );
  assert.equal(certificateName({}), null);
});

function fake(authorized: boolean, cert: object | null, error?: string): ClientCertSource {
  return { authorized, authorizationError: error, getPeerCertificate: () => cert as never };
}

Deno.test("modes: none ignores, optional admits no certificate, a bad one is always refused", () => {
  const alice = { raw: new Uint8Array(1), subject: { CN: "alice" } };
  assert.deepEqual(clientCertIdentity(fake(false, {}), "none"), { ok: true, name: null });
  assert.deepEqual(clientCertIdentity(fake(false, {}), "optional"), { ok: true, name: null });
  assert.deepEqual(clientCertIdentity(fake(true, alice), "optional"), { ok: true, name: "alice" });
  assert.deepEqual(clientCertIdentity(fake(true, alice), "require"), { ok: true, name: "alice" });
  const expired = clientCertIdentity(fake(false, alice, "CERT_HAS_EXPIRED"), "optional");
  assert.deepEqual(expired, {
    ok: false,
    reason: "invalid_certificate",
    message: 'client certificate "alice" not accepted: CERT_HAS_EXPIRED',
  });
  assert.equal(
    (clientCertIdentity(fake(false, {}), "require") as { reason: string }).reason,
    "no_certificate",
  );
  assert.equal(
    (clientCertIdentity(fake(false, null), "require") as { reason: string }).reason,
    "no_certificate",
  );
});

Deno.test("server options follow the mode; a mode that asks needs the CA", () => {
  assert.deepEqual(tlsServerOptions("none", null), {
    requestCert: false,
    rejectUnauthorized: false,
  });
  assert.deepEqual(tlsServerOptions("optional", "CA"), {
    requestCert: true,
    rejectUnauthorized: false,
    ca: "CA",
  });
  assert.deepEqual(tlsServerOptions("require", "CA"), {
    requestCert: true,
    rejectUnauthorized: true,
    ca: "CA",
  });
  assert.throws(() => tlsServerOptions("require", null), /client_ca_file/);
});

/** A DoT server in the shape phase 2 gives the listener: mTLS options, identity, then DNS. */
class MtlsServer {
  readonly decisions: (ClientCertOutcome & { reused: boolean })[] = [];
  readonly handshakeErrors: string[] = [];
  readonly server: Server;
  readonly #sockets = new Set<TLSSocket>();
  port = 0;

  constructor(mode: ClientAuthMode) {
    this.server = createServer({
      cert: fixtureText("server.pem"),
      key: fixtureText("server-key.pem"),
      minVersion: "TLSv1.2",
      ...tlsServerOptions(mode, fixtureText("client-ca.pem")),
    }, (socket) => this.#serve(socket, mode));
    this.server.on("tlsClientError", (err: Error) => this.handshakeErrors.push(err.message));
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  #serve(socket: TLSSocket, mode: ClientAuthMode): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => {});
    const outcome = clientCertIdentity(socket, mode);
    this.decisions.push({ ...outcome, reused: socket.isSessionReused() });
    if (!outcome.ok) {
      socket.destroy();
      return;
    }
    let buf: Uint8Array = new Uint8Array(0);
    socket.on("data", (chunk: Uint8Array) => {
      buf = concatBytes(buf, chunk);
      while (buf.length >= 2 && buf.length >= 2 + ((buf[0] << 8) | buf[1])) {
        const len = (buf[0] << 8) | buf[1];
        const answer = buf.slice(0, 2 + len);
        answer[4] |= 0x80; // QR
        answer[5] = 0x80; // RA, NOERROR
        socket.write(answer);
        buf = buf.slice(2 + len);
      }
    });
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Runs `fn` against a started {@link MtlsServer} in `mode`, stopping it after. */
async function withMtlsServer(
  mode: ClientAuthMode,
  fn: (s: MtlsServer) => Promise<void>,
): Promise<void> {
  const s = new MtlsServer(mode);
  await s.start();
  try {
    await fn(s);
  } finally {
    await s.stop();
  }
}

/** kdig over TLS to the server, presenting client certificate fixture `cert` if given. */
const kdig = (bin: string, port: number, cert?: string) =>
  kdigTls(bin, port, ["example.test"], cert);

/** openssl s_client to the server, presenting client certificate fixture `cert`. */
function sClient(
  openssl: string,
  port: number,
  cert: string,
  extra: string[] = [],
): Promise<Deno.CommandOutput> {
  return new Deno.Command(openssl, {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-servername",
      "dns.test",
      "-CAfile",
      fixturePath("ca.pem"),
      "-cert",
      fixturePath(`${cert}.pem`),
      "-key",
      fixturePath(`${cert}-key.pem`),
      ...extra,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
}

const ANSWERED = /status: NOERROR/;

await toolTest({
  name: "require: kdig without a certificate, or with a bad one, is refused; alice gets her name",
  tools: ["kdig"],
  async fn({ kdig: bin }) {
    await withMtlsServer("require", async (s) => {
      assert.doesNotMatch(await kdig(bin, s.port), ANSWERED);
      assert.equal(s.decisions.length, 0, "refused during the handshake, before any decision");
      assert.ok(s.handshakeErrors.length >= 1, "the handshake failure is visible for counting");

      assert.match(await kdig(bin, s.port, "client"), ANSWERED);
      assert.match(await kdig(bin, s.port, "client-san"), ANSWERED);
      assert.deepEqual(s.decisions.map((d) => d.ok && d.name), ["alice", "bob.clients.test"]);

      for (const bad of ["client-untrusted", "client-expired", "client-wrong-eku"]) {
        assert.doesNotMatch(await kdig(bin, s.port, bad), ANSWERED, bad);
      }
      assert.equal(s.decisions.length, 2, "no bad certificate got past the handshake");
    });
  },
});

await toolTest({
  name: "optional: kdig without a certificate is served anonymously, a bad certificate is refused",
  tools: ["kdig"],
  async fn({ kdig: bin }) {
    await withMtlsServer("optional", async (s) => {
      assert.match(await kdig(bin, s.port), ANSWERED);
      assert.match(await kdig(bin, s.port, "client"), ANSWERED);
      // GnuTLS sends the expired one (its issuer is the CA the server asks for), then the
      // connection is closed after the handshake: no DNS answer.
      assert.doesNotMatch(await kdig(bin, s.port, "client-expired"), ANSWERED);
      const outcomes = s.decisions.map((d) => (d.ok ? d.name : d.reason));
      assert.deepEqual(outcomes, [null, "alice", "invalid_certificate"]);
    });
  },
});

await toolTest({
  name: "a resumed TLS 1.2 session keeps the client certificate (openssl s_client -sess_in)",
  tools: ["openssl"],
  async fn({ openssl }) {
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "dotproxy-mtls-" });
    try {
      await withMtlsServer("require", async (s) => {
        const run = async (extra: string[]) =>
          new TextDecoder().decode((await sClient(openssl, s.port, "client", extra)).stdout);
        assert.match(await run(["-tls1_2", "-sess_out", `${dir}/session`]), /New, TLSv1\.2/);
        assert.match(await run(["-tls1_2", "-sess_in", `${dir}/session`]), /Reused, TLSv1\.2/);
        assert.deepEqual(s.decisions, [
          { ok: true, name: "alice", reused: false },
          { ok: true, name: "alice", reused: true },
        ]);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

await toolTest({
  name: "require: certificates from another CA, expired or not for clientAuth fail the handshake",
  tools: ["openssl"],
  async fn({ openssl }) {
    // kdig (GnuTLS) does not even send a certificate whose issuer the server did not ask for;
    // openssl s_client sends whatever it is given, so the server's own check is what refuses.
    await withMtlsServer("require", async (s) => {
      for (const cert of ["client-untrusted", "client-expired", "client-wrong-eku"]) {
        const out = await sClient(openssl, s.port, cert);
        assert.ok(!out.success || s.decisions.length === 0, cert);
      }
      assert.deepEqual(s.decisions, [], "no connection got past the handshake");
      assert.equal(s.handshakeErrors.length, 3);
    });
  },
});
