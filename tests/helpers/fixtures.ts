/**
 * The test certificates and keys in tests/fixtures/ (made by make-certs.sh; the server
 * certificate is for `dns.test`, client certificates come from client-ca.pem): their paths for
 * tools and config files, their text for TLS servers and clients in the tests.
 */
const DIR = new URL("../fixtures/", import.meta.url);

/** The file-system path of fixture `name` (e.g. "ca.pem"), for tools and config files. */
export function fixturePath(name: string): string {
  return decodeURIComponent(new URL(name, DIR).pathname);
}

/** Fixture `name`'s text, read synchronously (for module-level constants and test tables). */
export function fixtureText(name: string): string {
  return Deno.readTextFileSync(new URL(name, DIR));
}
