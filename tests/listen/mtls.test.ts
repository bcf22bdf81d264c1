/**
 * Mutual TLS on the real DoT listener (fake handler): client_auth "require" refuses a client
 * without a certificate chaining to the client CA during the handshake, "optional" serves it
 * anonymously but refuses a certificate that does not verify, and the certificate's name is every
 * query's clientName. Refusals are counted by reason. kdig, a real client, at the end.
 */
import assert from "node:assert/strict";
import { connect } from "node:tls";
import type { ClientAuthMode } from "../../lib/identity/modes.ts";
import { listenTls, type TlsListener } from "../../lib/listen/tls.ts";
import type { Query } from "../../lib/pipeline/pipeline.ts";
import { buildQuery, frame, parse } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { readFixture } from "../helpers/fake_dot.ts";
import { recordingHandler, TEST_STREAM_LIMITS } from "../helpers/listener.ts";
import { concatBytes } from "../helpers/proxy_header.ts";
import { kdigTls, toolTest } from "../helpers/tools.ts";
import { waitFor } from "../helpers/wait.ts";

const CA = await readFixture("ca.pem");
const CLIENT_CA = await readFixture("client-ca.pem");

async function withDot(
  mode: ClientAuthMode,
  fn: (dot: TlsListener, queries: Query[]) => Promise<void>,
): Promise<void> {
  const r = recordingHandler();
  const dot = listenTls({
    url: "tls://127.0.0.1:0",
    hostname: "127.0.0.1",
    port: 0,
    handle: r.handle,
    clock: new FakeClock(),
    limits: TEST_STREAM_LIMITS,
    cert: await readFixture("server.pem"),
    key: await readFixture("server-key.pem"),
    clientAuth: { mode, ca: mode === "none" ? null : CLIENT_CA },
  });
  try {
    await fn(dot, r.queries);
  } finally {
    await dot.close();
  }
}

/**
 * One query over DoT presenting `cert` (a fixture name) or none: the answer's id, or null when
 * the connection was refused or closed without an answer.
 */
async function ask(dot: TlsListener, cert: string | null, id = 1): Promise<number | null> {
  const material = cert
    ? { cert: await readFixture(`${cert}.pem`), key: await readFixture(`${cert}-key.pem`) }
    : {};
  return await new Promise<number | null>((resolve) => {
    let buf: Uint8Array = new Uint8Array(0);
    const s = connect({
      host: "127.0.0.1",
      port: dot.addr.port,
      servername: "dns.test",
      ca: CA,
      ALPNProtocols: ["dot"],
      ...material,
    });
    const done = (v: number | null) => {
      s.destroy();
      resolve(v);
    };
    s.on("secureConnect", () => s.write(frame(buildQuery("mtls.test", "A", id))));
    s.on("data", (chunk: Uint8Array) => {
      buf = concatBytes(buf, chunk);
      if (buf.length >= 2 && buf.length >= 2 + ((buf[0] << 8) | buf[1])) {
        done(parse(buf.slice(2)).id ?? null);
      }
    });
    s.on("error", () => done(null));
    s.on("close", () => done(null));
  });
}

const refused = (dot: TlsListener) => dot.identity!()!.authRefused;

Deno.test("require: a certificate from the client CA names the client; none is refused", async () => {
  await withDot("require", async (dot, queries) => {
    assert.equal(await ask(dot, "client", 1), 1);
    assert.equal(await ask(dot, "client-san", 2), 2);
    assert.deepEqual(queries.map((q) => q.clientName), ["alice", "bob.clients.test"]);
    assert.equal(await ask(dot, null), null);
    await waitFor(() => refused(dot).no_certificate === 1, "counted as no_certificate");
    assert.equal(queries.length, 2, "no DNS work for the refused client");
  });
});

Deno.test("require: another CA's, expired and serverAuth-only certificates are refused", async () => {
  await withDot("require", async (dot, queries) => {
    for (const cert of ["client-untrusted", "client-expired", "client-wrong-eku"]) {
      assert.equal(await ask(dot, cert), null, cert);
    }
    await waitFor(() => refused(dot).invalid_certificate === 3, "each counted");
    assert.equal(queries.length, 0);
  });
});

Deno.test("optional: no certificate is anonymous, a valid one named, an invalid one refused", async () => {
  await withDot("optional", async (dot, queries) => {
    assert.equal(await ask(dot, null, 1), 1);
    assert.equal(await ask(dot, "client", 2), 2);
    assert.equal(await ask(dot, "client-expired", 3), null);
    assert.equal(await ask(dot, "client-untrusted", 4), null);
    assert.deepEqual(queries.map((q) => q.clientName), [undefined, "alice"]);
    await waitFor(() => refused(dot).invalid_certificate === 2, "counted");
  });
});

Deno.test("none: no certificate is asked for; a reload to require applies to new connections", async () => {
  await withDot("none", async (dot, queries) => {
    assert.equal(await ask(dot, "client", 1), 1);
    assert.equal(queries[0].clientName, undefined, "not asked for, so not used");
    dot.reloadClientAuth({ mode: "require", ca: CLIENT_CA });
    assert.equal(await ask(dot, null, 2), null);
    assert.equal(await ask(dot, "client", 3), 3);
    assert.equal(queries[1].clientName, "alice");
    assert.throws(() => dot.reloadClientAuth({ mode: "require", ca: null }), /client_ca_file/);
  });
});

/** kdig over TLS to the listener, presenting client certificate fixture `cert` if given. */
const kdig = (bin: string, port: number, cert?: string) => kdigTls(bin, port, ["kdig.test"], cert);

await toolTest({
  name: "kdig +tls: refused without a client certificate, answered and named with one",
  tools: ["kdig"],
  async fn({ kdig: bin }) {
    await withDot("require", async (dot, queries) => {
      assert.doesNotMatch(await kdig(bin, dot.addr.port), /status: NOERROR/);
      await waitFor(() => refused(dot).no_certificate >= 1, "the refusal is counted");
      assert.match(await kdig(bin, dot.addr.port, "client"), /status: NOERROR/);
      assert.deepEqual(queries.map((q) => q.clientName), ["alice"]);
    });
  },
});
