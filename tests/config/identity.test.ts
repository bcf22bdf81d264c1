/**
 * The identity keys: [[clients]], [access] allow_clients / deny_clients, and the listener keys
 * proxy_protocol, trusted_proxies, client_auth, client_ca_file. Bad input names the key and the
 * value; good input reads to what the server uses.
 */
import assert from "node:assert/strict";
import {
  acceptedConfig as accepted,
  assertRejected,
  KEY,
  LISTENER,
  MINIMAL,
  PEM,
  type RejectedCase,
  UPSTREAM,
} from "./helpers.ts";

/** Registers a test that `c.toml` is refused as `c` says. */
function rejects(c: RejectedCase): void {
  Deno.test(`identity config rejects: ${c.name}`, () => assertRejected(c));
}

// ---- [[clients]] and names in [access] ----

rejects({
  name: "a [[clients]] entry without a name",
  toml: MINIMAL + `[[clients]]\nnetworks = ["10.0.0.0/8"]\n`,
  key: "clients[0].name",
  message: `required; e.g. name = "alice"`,
});
rejects({
  name: "a client name used twice",
  toml: MINIMAL + `[[clients]]\nname = "a"\n[[clients]]\nname = "b"\n[[clients]]\nname = "a"\n`,
  key: "clients[2].name",
  value: "a",
  message: `"a" appears twice`,
});
rejects({
  name: "one network given to two clients",
  toml: MINIMAL +
    `[[clients]]\nname = "a"\nnetworks = ["10.0.0.0/8"]\n` +
    `[[clients]]\nname = "b"\nnetworks = ["10.0.0.0/8"]\n`,
  key: "clients[1].networks",
  message: `10.0.0.0/8 belongs to both "a" and "b"`,
});
rejects({
  name: "a network with host bits",
  toml: MINIMAL + `[[clients]]\nname = "a"\nnetworks = ["10.1.2.3/8"]\n`,
  key: "clients[0].networks[0]",
  value: "10.1.2.3/8",
  message: "did you mean 10.0.0.0/8?",
});
rejects({
  name: "the reserved name anonymous",
  toml: MINIMAL + `[[clients]]\nname = "anonymous"\n`,
  key: "clients[0].name",
  message: "reserved for unnamed clients",
});
rejects({
  name: "burst without qps",
  toml: MINIMAL + `[[clients]]\nname = "a"\nburst = 10\n`,
  key: "clients[0].burst",
  message: "burst needs qps",
});
rejects({
  name: "a name with a quote in allow_clients",
  toml: MINIMAL + `[access]\nallow_clients = ["al\\"ice"]\n`,
  key: "access.allow_clients[0]",
  message: "without quotes or backslashes",
});
rejects({
  name: "deny_clients as a string",
  toml: MINIMAL + `[access]\ndeny_clients = "mallory"\n`,
  key: "access.deny_clients",
  message: `expected an array of client names, e.g. deny_clients = ["mallory"]`,
});

Deno.test("[[clients]]: networks in canonical form, burst twice qps by default", async () => {
  const c = await accepted(
    MINIMAL + `[[clients]]\nname = "Office 1"\nnetworks = ["10.0.0.1", "2001:DB8::/32"]\n` +
      `qps = 2.5\n[[clients]]\nname = "alice"\n` +
      `[listeners.access]\nallow_clients = ["alice"]\n`,
  );
  assert.deepEqual(c.clients, [
    { name: "Office 1", networks: ["10.0.0.1/32", "2001:db8::/32"], qps: 2.5, burst: 5 },
    { name: "alice", networks: [], qps: 0, burst: 0 },
  ]);
  assert.deepEqual(c.listeners[0].access?.allowClients, ["alice"]);
  assert.deepEqual(c.access.allowClients, []);
});

// ---- listeners: PROXY protocol and client certificates ----

const TLS =
  `[[listeners]]\nurl = "tls://127.0.0.1:853"\ncert_file = "cert.pem"\nkey_file = "key.pem"\n`;
const TLS_FILES = { "/etc/dotproxy/cert.pem": PEM, "/etc/dotproxy/key.pem": KEY };

rejects({
  name: "proxy_protocol without trusted_proxies",
  toml: `[[listeners]]\nurl = "udp://127.0.0.1:53"\nproxy_protocol = true\n` + UPSTREAM,
  key: "listeners[0].proxy_protocol",
  value: true,
  message: "PROXY protocol needs trusted_proxies",
});
rejects({
  name: "trusted_proxies on tls without proxy_protocol",
  toml: TLS + `trusted_proxies = ["10.0.0.0/8"]\n` + UPSTREAM,
  files: TLS_FILES,
  key: "listeners[0].trusted_proxies",
  message: "set proxy_protocol = true",
});
rejects({
  name: "proxy_protocol on an https listener",
  toml: `[[listeners]]\nurl = "http://127.0.0.1:80"\nproxy_protocol = true\n` + UPSTREAM,
  key: "listeners[0].proxy_protocol",
  message: "take the client from client_header",
});
rejects({
  name: "proxy_protocol as a string",
  toml: `[[listeners]]\nurl = "tcp://127.0.0.1:53"\nproxy_protocol = "v2"\n` + UPSTREAM,
  key: "listeners[0].proxy_protocol",
  value: "v2",
  message: "expected true or false",
});
rejects({
  name: "client_auth require without client_ca_file",
  toml: TLS + `client_auth = "require"\n` + UPSTREAM,
  files: TLS_FILES,
  key: "listeners[0].client_auth",
  value: "require",
  message: `client_auth = "require" needs client_ca_file`,
});
rejects({
  name: "client_auth misspelt",
  toml: TLS + `client_auth = "required"\n` + UPSTREAM,
  files: TLS_FILES,
  key: "listeners[0].client_auth",
  message: `did you mean "require"?`,
});
rejects({
  name: "client_ca_file that cannot be read",
  toml: TLS + `client_auth = "optional"\nclient_ca_file = "clients.pem"\n` + UPSTREAM,
  files: TLS_FILES,
  key: "listeners[0].client_ca_file",
  value: "clients.pem",
  message: "cannot read /etc/dotproxy/clients.pem",
});
rejects({
  name: "client_ca_file without a certificate",
  toml: TLS + `client_auth = "require"\nclient_ca_file = "key.pem"\n` + UPSTREAM,
  files: TLS_FILES,
  key: "listeners[0].client_ca_file",
  message: "contains no PEM certificate",
});
rejects({
  name: "client_ca_file with client_auth none",
  toml: TLS + `client_ca_file = "cert.pem"\n` + UPSTREAM,
  files: TLS_FILES,
  key: "listeners[0].client_ca_file",
  message: `set client_auth = "optional" or "require"`,
});
rejects({
  name: "client_auth on a tcp listener",
  toml: `[[listeners]]\nurl = "tcp://127.0.0.1:53"\nclient_auth = "require"\n` + UPSTREAM,
  key: "listeners[0].client_auth",
  message: "only tls:// listeners ask for client certificates",
});

Deno.test("tls listener: client_auth with its CA, PROXY protocol from a load balancer", async () => {
  const c = await accepted(
    TLS + `client_auth = "optional"\nclient_ca_file = "/etc/dotproxy/ca/clients.pem"\n` +
      `proxy_protocol = true\ntrusted_proxies = ["10.0.0.0/24", "::1"]\n` + UPSTREAM,
    { ...TLS_FILES, "/etc/dotproxy/ca/clients.pem": `${PEM}\n${PEM}\n` },
  );
  const l = c.listeners[0];
  assert.equal(l.protocol, "tls");
  assert.equal(l.clientAuth, "optional");
  assert.equal(l.clientCaFile, "/etc/dotproxy/ca/clients.pem");
  assert.equal(l.clientCa, `${PEM}\n${PEM}\n`);
  assert.equal(l.proxyProtocol, true);
  assert.equal(l.trustedProxies?.length, 2);
});

// ---- DoH tokens ----

const DOH = `[[listeners]]\nurl = "http://127.0.0.1:8080/dns-query"\n`;
const HEX = "ab".repeat(32);

rejects({
  name: "client_auth require on DoH without tokens",
  toml: DOH + `client_auth = "require"\n` + UPSTREAM,
  key: "listeners[0].client_auth",
  value: "require",
  message: "needs tokens or tokens_file",
});
rejects({
  name: "a token digest that is not SHA-256 hex",
  toml: DOH + `client_auth = "require"\ntokens = [{ name = "alice", sha256 = "secret" }]\n` +
    UPSTREAM,
  key: "listeners[0].tokens[0]",
  value: "secret",
  message: "is not 64 lower-case hex digits",
});
rejects({
  name: "two clients with one token",
  toml: DOH + `client_auth = "optional"\n` +
    `tokens = [{ name = "a", sha256 = "${HEX}" }, { name = "b", sha256 = "${HEX}" }]\n` +
    UPSTREAM,
  key: "listeners[0].tokens",
  message: `"a" and "b" have the same token`,
});
rejects({
  name: "a tokens file that cannot be read",
  toml: DOH + `client_auth = "require"\ntokens_file = "tokens"\n` + UPSTREAM,
  key: "listeners[0].tokens_file",
  value: "tokens",
  message: "cannot read /etc/dotproxy/tokens",
});
rejects({
  name: "a bad line in the tokens file",
  toml: DOH + `client_auth = "require"\ntokens_file = "tokens"\n` + UPSTREAM,
  files: { "/etc/dotproxy/tokens": `alice ${HEX}\nbob\n` },
  key: "listeners[0].tokens_file",
  message: `/etc/dotproxy/tokens line 2: expected "name sha256hex"`,
});
rejects({
  name: "tokens with client_auth none",
  toml: DOH + `tokens = [{ name = "a", sha256 = "${HEX}" }]\n` + UPSTREAM,
  key: "listeners[0].tokens",
  message: `set client_auth = "optional" or "require"`,
});
rejects({
  name: "tokens on a tls listener",
  toml: TLS + `tokens = []\n` + UPSTREAM,
  files: TLS_FILES,
  key: "listeners[0].tokens",
  message: "only https:// and http:// listeners take tokens",
});
rejects({
  name: "client_ca_file on a DoH listener",
  toml: DOH + `client_ca_file = "ca.pem"\n` + UPSTREAM,
  key: "listeners[0].client_ca_file",
  message: "DoH clients authenticate with tokens",
});

Deno.test("DoH tokens: inline and from the file, with the failure limits", async () => {
  const c = await accepted(
    DOH + `client_auth = "optional"\ntokens = [{ name = "alice", sha256 = "${HEX}" }]\n` +
      `tokens_file = "tokens"\nauth_max_failures = 3\nauth_block = "5m"\n` + UPSTREAM,
    { "/etc/dotproxy/tokens": `# clients\n\nBob Smith ${"cd".repeat(32)}\n` },
  );
  const l = c.listeners[0];
  assert.equal(l.clientAuth, "optional");
  assert.deepEqual(l.tokens, [
    { name: "alice", sha256: HEX },
    { name: "Bob Smith", sha256: "cd".repeat(32) },
  ]);
  assert.equal(l.tokensFile, "/etc/dotproxy/tokens");
  assert.equal(l.authMaxFailures, 3);
  assert.equal(l.authBlockMs, 300_000);
});

// ---- upstream SPKI pins ----

const PIN = "qZo8d6qOu4N0vgWPx9gW+zfCrbZ/QRnNTUw6qT9mgy4=";
const pinned = (url: string, pins: string) =>
  LISTENER + `[[upstreams]]\nurl = "${url}"\ntls_name = "dns.example"\nspki_pins = ${pins}\n`;

rejects({
  name: "a pin that is not base64 SHA-256",
  toml: pinned("tls://192.0.2.1", `["${PIN}", "sha256/abc"]`),
  key: "upstreams[0].spki_pins[1]",
  value: "sha256/abc",
  message: "is not a SPKI pin: expected the base64 SHA-256 of a public key",
});
rejects({
  name: "a pin of the wrong length",
  toml: pinned("tls://192.0.2.1", `["${btoa("x".repeat(31))}="]`),
  key: "upstreams[0].spki_pins[0]",
  message: "is not a SPKI pin",
});
rejects({
  name: "an empty pin list",
  toml: pinned("tls://192.0.2.1", `[]`),
  key: "upstreams[0].spki_pins",
  message: "expected a non-empty array of pins",
});
rejects({
  name: "pins on an https upstream",
  toml: pinned("https://192.0.2.1/dns-query", `["${PIN}"]`),
  key: "upstreams[0].spki_pins",
  message: "does not expose the certificate chain the server presents",
});
rejects({
  name: "pins on a udp upstream",
  toml: LISTENER + `[[upstreams]]\nurl = "udp://192.0.2.1"\nspki_pins = ["${PIN}"]\n`,
  key: "upstreams[0].spki_pins",
  message: "plain DNS has no certificate to verify",
});

Deno.test("spki_pins on a tls upstream are read as given", async () => {
  const c = await accepted(pinned("tls://192.0.2.1", `["${PIN}"]`));
  assert.deepEqual(c.upstreams[0].spkiPins, [PIN]);
});
