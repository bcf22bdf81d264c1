/** The one certificate/key check shared by the config load and the TLS listeners. */
import assert from "node:assert/strict";
import {
  certificateProblem,
  checkCertificate,
  keyPairProblem,
} from "../../lib/sys/tls_material.ts";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`../fixtures/${name}`, import.meta.url));
const CERT = fixture("server.pem");
const KEY = fixture("server-key.pem");

Deno.test("a certificate and its own key are a pair, in PKCS#8, SEC1 and PKCS#1 form", () => {
  assert.equal(keyPairProblem(CERT, KEY), null);
  assert.equal(keyPairProblem(CERT, fixture("server-key-sec1.pem")), null);
  assert.equal(keyPairProblem(fixture("rsa.pem"), fixture("rsa-key.pem")), null);
  assert.equal(keyPairProblem(CERT + fixture("ca.pem"), KEY), null, "chain, leaf first");
  checkCertificate(CERT, KEY);
});

Deno.test("another certificate's key is the key's fault, naming the certificate", () => {
  const p = keyPairProblem(CERT, fixture("wrong-name-key.pem"));
  assert.equal(p?.part, "key");
  assert.match(p?.reason ?? "", /key does not belong to the certificate for CN=dns\.test/);
  assert.throws(() => checkCertificate(CERT, fixture("wrong-name-key.pem")), /does not belong/);
  assert.equal(keyPairProblem(fixture("rsa.pem"), KEY)?.part, "key", "RSA cert, EC key");
});

Deno.test("a block that does not parse is blamed on its half", () => {
  const garbage = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
  assert.equal(keyPairProblem(garbage, KEY)?.part, "cert");
  assert.match(keyPairProblem(garbage, KEY)?.reason ?? "", /not a PEM certificate/);
  const relabelled = KEY.replaceAll("PRIVATE KEY", "RSA PRIVATE KEY");
  assert.equal(keyPairProblem(CERT, relabelled)?.part, "key");
  assert.match(keyPairProblem(CERT, relabelled)?.reason ?? "", /not a PEM private key/);
  assert.notEqual(certificateProblem(garbage), null);
  assert.equal(certificateProblem(CERT), null);
});
