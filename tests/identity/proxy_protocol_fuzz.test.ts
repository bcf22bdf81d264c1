/**
 * Fuzzing the PROXY protocol parser with what a peer can send: random bytes, valid v1/v2 headers
 * (some followed by DNS bytes) and mutations of them. Parsing must never throw, must consume no
 * more than it was given nor more than the bound, must ask only for bytes that make progress, and
 * must fail only with a known kind; valid headers must round-trip. The seed is fixed (override
 * with FUZZ_SEED=0x...); a failure prints the seed, the input number and the input as hex.
 */
import assert from "node:assert/strict";
import {
  DEFAULT_MAX_PROXY_HEADER_BYTES,
  parseProxyDatagram,
  parseProxyHeader,
  PROXY_ERROR_KINDS,
  type ProxyHeader,
  type ProxyParseResult,
} from "../../lib/identity/proxy_protocol.ts";
import { parseClientAddress } from "../../lib/net/ip.ts";
import { fuzzFailure, fuzzSeed, mutate, validQuery } from "../helpers/fuzz.ts";
import { Rng } from "../helpers/rng.ts";
import { concatBytes, encodeProxyV1, encodeProxyV2, type Tlv } from "../helpers/proxy_header.ts";

const SEED = fuzzSeed(0x9e0c5);
const INPUTS = 30_000;
const KINDS = new Set<string>(PROXY_ERROR_KINDS);
const words = new Uint32Array(4);

function ipv4(rng: Rng): string {
  return [0, 0, 0, 0].map(() => rng.int(256)).join(".");
}

/** Full, uncompressed groups (sometimes upper case): the parser must canonicalise. */
function ipv6(rng: Rng): string {
  const groups = Array.from({ length: 8 }, () => (rng.chance(0.3) ? 0 : rng.int(0x10000)));
  const t = groups.map((g) => g.toString(16)).join(":");
  return rng.chance(0.2) ? t.toUpperCase() : t;
}

function port(rng: Rng): number {
  return rng.pick([0, 53, 853, 65535, rng.int(65536)]);
}

/** A valid header, as the structure the parser should return and any TLVs to send with it. */
function randomHeader(rng: Rng): { header: ProxyHeader; tlvs: Tlv[]; crc: boolean } {
  const version = rng.chance(0.6) ? 2 : 1;
  const tlvs: Tlv[] = [];
  if (version === 2) {
    for (let n = rng.int(4); n > 0; n--) {
      tlvs.push({
        type: rng.pick([0x01, 0x02, 0x04, 0x05, 0x20, 0xe0]),
        value: rng.bytes(rng.int(60)),
      });
    }
  }
  const crc = version === 2 && rng.chance(0.3);
  if (version === 2 && rng.chance(0.1)) {
    return {
      header: { version, command: "local", transport: "unspec", addresses: { family: "unspec" } },
      tlvs,
      crc,
    };
  }
  const family = version === 1
    ? rng.pick(["inet", "inet6", "unspec"] as const)
    : rng.pick(["inet", "inet6", "unix", "unspec"] as const);
  const transport = version === 1
    ? (family === "unspec" ? "unspec" : "stream")
    : (family === "unspec" ? "unspec" : rng.pick(["stream", "dgram"] as const));
  const addr = family === "inet" ? ipv4 : ipv6;
  const addresses: ProxyHeader["addresses"] = family === "unspec"
    ? { family }
    : family === "unix"
    ? { family, source: "/run/lb-" + rng.int(1000), destination: "/run/dns.sock" }
    : {
      family,
      source: { address: addr(rng), port: port(rng) },
      destination: { address: addr(rng), port: port(rng) },
    };
  return { header: { version, command: "proxy", transport, addresses }, tlvs, crc };
}

function encode(h: ProxyHeader, tlvs: Tlv[] = [], crc = false): Uint8Array {
  return h.version === 1 ? encodeProxyV1(h) : encodeProxyV2(h, { tlvs, crc });
}

/** Header bytes, followed (mostly) by a DNS-over-TCP query as a load balancer would send. */
function validInput(rng: Rng): { bytes: Uint8Array; header: ProxyHeader; length: number } {
  const { header, tlvs, crc } = randomHeader(rng);
  const head = encode(header, tlvs, crc);
  const q = validQuery(rng);
  const tail = rng.chance(0.8) ? concatBytes(Uint8Array.of(q.length >> 8, q.length & 0xff), q) : q;
  return { bytes: rng.chance(0.1) ? head : concatBytes(head, tail), header, length: head.length };
}

/** Targeted damage: the v2 length and family bytes, and v1 characters. */
function damage(rng: Rng, b: Uint8Array): Uint8Array {
  const out = b.slice();
  if (out.length >= 16 && out[0] === 0x0d) {
    const which = rng.int(3);
    if (which === 0) out[14] = rng.int(256);
    else if (which === 1) out[15] = rng.int(256);
    else out[13] = rng.int(256);
  } else if (out.length > 6) {
    out[rng.range(6, out.length - 1)] = rng.pick([
      0x20,
      0x0d,
      0x0a,
      0x3a,
      0x2e,
      0x30,
      rng.int(128),
    ]);
  }
  return out;
}

function fuzzInput(rng: Rng): Uint8Array {
  const r = rng.u32() / 4294967296;
  if (r < 0.1) return rng.bytes(rng.chance(0.3) ? rng.int(20) : rng.int(700));
  const base = validInput(rng).bytes;
  if (r < 0.2) return base;
  if (r < 0.45) return damage(rng, base);
  return mutate(rng, base);
}

function assertSane(r: ProxyParseResult, input: Uint8Array, stream: boolean): void {
  if (r.status === "ok") {
    assert.ok(r.length > 0 && r.length <= input.length, `length ${r.length} of ${input.length}`);
    assert.ok(r.length <= DEFAULT_MAX_PROXY_HEADER_BYTES, `length ${r.length} over the bound`);
    const a = r.header.addresses;
    if (a.family === "inet" || a.family === "inet6") {
      for (const e of [a.source, a.destination]) {
        assert.equal(parseClientAddress(e.address, words) !== 0, true, `address ${e.address}`);
        assert.ok(Number.isInteger(e.port) && e.port >= 0 && e.port <= 65535, `port ${e.port}`);
      }
    }
    // Consuming exactly the header: the same header comes out of the header's bytes alone.
    const again = stream
      ? parseProxyHeader(input.subarray(0, r.length))
      : parseProxyDatagram(input.subarray(0, r.length));
    assert.deepEqual(again, r);
  } else if (r.status === "incomplete") {
    assert.ok(stream, "a datagram parse is never incomplete");
    assert.ok(r.need > input.length, `need ${r.need} with ${input.length} bytes at hand`);
    assert.ok(r.need <= DEFAULT_MAX_PROXY_HEADER_BYTES, `need ${r.need} over the bound`);
  } else {
    assert.ok(KINDS.has(r.kind), `unknown error kind ${r.kind}`);
    assert.equal(typeof r.message, "string");
  }
}

Deno.test("fuzz: the PROXY parser never throws and stays within its input and bound", () => {
  const rng = new Rng(SEED);
  for (let i = 0; i < INPUTS; i++) {
    const input = fuzzInput(rng);
    try {
      const s = parseProxyHeader(input);
      assertSane(s, input, true);
      const d = parseProxyDatagram(input);
      assertSane(d, input, false);
      // A datagram parse is the stream parse restricted to complete v2 headers.
      if (d.status === "ok") assert.deepEqual(s, d);
    } catch (err) {
      throw fuzzFailure(SEED, i, input, err);
    }
  }
});

Deno.test("fuzz: valid headers round-trip and report their exact length", () => {
  const rng = new Rng(SEED ^ 0x5a5a);
  for (let i = 0; i < INPUTS / 4; i++) {
    const { bytes, header, length } = validInput(rng);
    try {
      const r = parseProxyHeader(bytes);
      assert.equal(r.status, "ok");
      if (r.status !== "ok") continue;
      assert.equal(r.length, length);
      // The binary form is canonical whatever the address spelling: what was parsed encodes to
      // the same bytes as what was generated (TLVs are skipped, so both go without).
      assert.equal(r.header.version, header.version);
      assert.deepEqual(encodeProxyV2(r.header), encodeProxyV2(header));
      if (header.version === 2) {
        const d = parseProxyDatagram(bytes);
        assert.deepEqual(d, r);
      }
    } catch (err) {
      throw fuzzFailure(SEED ^ 0x5a5a, i, bytes, err);
    }
  }
});
