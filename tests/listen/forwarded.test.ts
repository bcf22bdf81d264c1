/**
 * Client addresses behind load balancers (lib/listen/forwarded.ts): chains are walked from the
 * right, so what a client writes into the header itself cannot name another client; a value our
 * proxy cannot vouch for is refused, never charged to the proxy.
 */
import assert from "node:assert/strict";
import {
  ClientResolver,
  forwardedChain,
  headerFormat,
  listChain,
  parseForwardedNode,
  parseListEntry,
} from "../../lib/listen/forwarded.ts";
import { Acl, parseCidr } from "../../lib/policy/acl.ts";

const PROXY = { hostname: "10.1.2.3", port: 40000 };
const CLIENT_PEER = { hostname: "198.51.100.9", port: 5353 };

function resolver(trusted: string[], header = "x-forwarded-for"): ClientResolver {
  const cidrs = trusted.map((t) => {
    const c = parseCidr(t);
    assert.ok(typeof c !== "string", c as string);
    return c;
  });
  return new ClientResolver({ trusted: new Acl(cidrs, []), header });
}

function clientOf(r: ClientResolver, value: string | null, peer = PROXY): string {
  const result = r.resolve(peer, value);
  return result.ok ? result.client.hostname : `refused: ${result.reason}`;
}

Deno.test("a client's own X-Forwarded-For value left of the proxy's entry is ignored", () => {
  const r = resolver(["10.0.0.0/8"]);
  // The client sent "X-Forwarded-For: 10.6.6.6"; nginx appended the address it saw.
  assert.equal(clientOf(r, "10.6.6.6, 203.0.113.5"), "203.0.113.5");
  // Rotating spoofed values changes nothing.
  for (const spoof of ["10.9.9.9", "192.0.2.1", "garbage", "", "unknown, 10.0.0.1"]) {
    assert.equal(clientOf(r, `${spoof}, 203.0.113.5`), "203.0.113.5", spoof);
  }
});

Deno.test("entries added by a chain of trusted proxies are skipped from the right", () => {
  const r = resolver(["10.0.0.0/8", "2001:db8:ffff::/48"]);
  assert.equal(clientOf(r, "6.6.6.6, 203.0.113.5, 10.0.0.7, 2001:db8:ffff::2"), "203.0.113.5");
  // Stops at the first untrusted entry even if a later-left one is also untrusted.
  assert.equal(clientOf(r, "198.51.100.1, 203.0.113.5, 10.0.0.7"), "203.0.113.5");
});

Deno.test("when every entry is a trusted proxy, the leftmost is the client", () => {
  const r = resolver(["10.0.0.0/8"]);
  assert.equal(clientOf(r, "10.0.0.5, 10.0.0.6"), "10.0.0.5");
});

Deno.test("a missing, empty or unparseable value from a trusted proxy is refused, never the proxy", () => {
  const r = resolver(["10.0.0.0/8"]);
  for (const value of [null, "", "garbage", "203.0.113.5, not-an-ip", "203.0.113.5,", "unknown"]) {
    assert.match(clientOf(r, value), /^refused: x-forwarded-for from a trusted proxy/, `${value}`);
  }
  // Garbage reached only after a trusted hop is still reached: refused.
  assert.match(clientOf(r, "bogus, 10.0.0.9"), /^refused/);
});

Deno.test("a header from a peer that is not a trusted proxy is ignored", () => {
  const r = resolver(["10.0.0.0/8"]);
  assert.equal(clientOf(r, "10.6.6.6", CLIENT_PEER), CLIENT_PEER.hostname);
  assert.equal(clientOf(r, "garbage", CLIENT_PEER), CLIENT_PEER.hostname);
  assert.equal(clientOf(r, null, CLIENT_PEER), CLIENT_PEER.hostname);
  const none = new ClientResolver({ trusted: null, header: "x-forwarded-for" });
  assert.equal(clientOf(none, "203.0.113.5"), PROXY.hostname);
});

Deno.test("X-Forwarded-For entries may carry ports and brackets", () => {
  assert.deepEqual(parseListEntry("192.0.2.1"), { hostname: "192.0.2.1", port: 0 });
  assert.deepEqual(parseListEntry("192.0.2.1:853"), { hostname: "192.0.2.1", port: 853 });
  assert.deepEqual(parseListEntry("2001:db8::1"), { hostname: "2001:db8::1", port: 0 });
  assert.deepEqual(parseListEntry("[2001:db8::1]"), { hostname: "2001:db8::1", port: 0 });
  assert.deepEqual(parseListEntry("[2001:db8::1]:443"), { hostname: "2001:db8::1", port: 443 });
  for (
    const bad of ["", "1.2.3", "192.0.2.1:", "192.0.2.1:65536", "[2001:db8::1", "fe80::1%eth0"]
  ) {
    assert.equal(parseListEntry(bad), null, bad);
  }
  for (const bad of ["dns.example", "01.2.3.4", "[192.0.2.1]", "[2001:db8::1]x", "unknown"]) {
    assert.equal(parseListEntry(bad), null, bad);
  }
  assert.deepEqual(listChain(" 192.0.2.1 ,bogus"), [{ hostname: "192.0.2.1", port: 0 }, null]);
});

Deno.test("Forwarded: for= of each element, quoted IPv6 with port, other parameters ignored", () => {
  assert.deepEqual(
    forwardedChain('for="[2001:db8::1]:4711";proto=https;by=10.0.0.1, for=192.0.2.60:80'),
    [{ hostname: "2001:db8::1", port: 4711 }, { hostname: "192.0.2.60", port: 80 }],
  );
  assert.deepEqual(forwardedChain('For="192.0.2.43:_p1" ; Proto=http'), [
    { hostname: "192.0.2.43", port: 0 },
  ]);
  assert.deepEqual(forwardedChain('for="\\[2001:db8::2\\]"'), [
    { hostname: "2001:db8::2", port: 0 },
  ]);
});

Deno.test("Forwarded: unknown, obfuscated, bare IPv6, repeated or missing for= are not addresses", () => {
  for (const node of ["unknown", "_hidden", "_SEVKISEK", "2001:db8::1", "[2001:db8::1", "x"]) {
    assert.equal(parseForwardedNode(node), null, node);
  }
  assert.deepEqual(forwardedChain("proto=https;by=10.0.0.1"), [null]);
  assert.deepEqual(forwardedChain("for=192.0.2.1;for=192.0.2.2"), [null]);
  assert.deepEqual(forwardedChain("for=unknown, for=_hidden"), [null, null]);
});

Deno.test("Forwarded: a syntax error spoils its element and everything right of it", () => {
  // An unterminated quote from the client swallows the proxy's element: refused, not spoofed.
  assert.deepEqual(forwardedChain('for="10.6.6.6, for=203.0.113.5'), [null]);
  assert.deepEqual(forwardedChain('for="x", for="[2001:db8::5]"junk, for=192.0.2.1'), [null, null]);
  assert.deepEqual(forwardedChain("for=192.0.2.1, =x, for=192.0.2.2"), [
    { hostname: "192.0.2.1", port: 0 },
    null,
  ]);
});

Deno.test("Forwarded chains are walked from the right like X-Forwarded-For", () => {
  const r = resolver(["10.0.0.0/8"], "Forwarded");
  assert.equal(r.format, "forwarded");
  assert.equal(
    clientOf(r, 'for=10.6.6.6, for="[2001:db8::9]:1234";proto=https, for=10.0.0.2'),
    "2001:db8::9",
  );
  // A trusted proxy that hides its client cannot be attributed: refused.
  assert.match(clientOf(r, "for=203.0.113.5, for=unknown"), /^refused: forwarded/);
  assert.match(clientOf(r, "for=_hidden"), /^refused/);
  assert.match(clientOf(r, 'for="10.6.6.6, for=203.0.113.5'), /^refused/);
  assert.equal(clientOf(r, "for=garbage!, for=203.0.113.5"), "203.0.113.5");
});

Deno.test("a single-value header (x-real-ip) must hold exactly one address", () => {
  const r = resolver(["10.0.0.0/8"], "X-Real-IP");
  assert.equal(r.format, "single");
  assert.equal(clientOf(r, "203.0.113.5"), "203.0.113.5");
  assert.equal(clientOf(r, " 2001:db8::7 "), "2001:db8::7");
  // Two lines (joined by ", "), a list, garbage or nothing: refused.
  for (const value of ["203.0.113.5, 10.6.6.6", "garbage", "", null]) {
    assert.match(clientOf(r, value), /^refused: x-real-ip/, `${value}`);
  }
});

Deno.test("the header format follows the header's name", () => {
  assert.equal(headerFormat("Forwarded"), "forwarded");
  assert.equal(headerFormat("X-Forwarded-For"), "list");
  assert.equal(headerFormat("x-original-forwarded-for"), "list");
  assert.equal(headerFormat("cf-connecting-ip"), "single");
});
