import assert from "node:assert/strict";
import { crc32c } from "../../lib/identity/crc32c.ts";
import {
  DEFAULT_MAX_PROXY_HEADER_BYTES,
  matchProxySignature,
  parseProxyDatagram,
  parseProxyHeader,
  PROXY_V1_MAX_BYTES,
  type ProxyErrorKind,
  type ProxyHeader,
  type ProxyParseResult,
} from "../../lib/identity/proxy_protocol.ts";
import { fromHex } from "../helpers/fuzz.ts";
import { concatBytes, encodeProxyV1, encodeProxyV2 } from "../helpers/proxy_header.ts";

const text = (s: string) => new TextEncoder().encode(s);

function ok(r: ProxyParseResult): { header: ProxyHeader; length: number } {
  assert.equal(r.status, "ok", r.status === "error" ? `${r.kind}: ${r.message}` : r.status);
  return r as { status: "ok"; header: ProxyHeader; length: number };
}

function errorKind(r: ProxyParseResult): ProxyErrorKind {
  assert.equal(r.status, "error", `expected an error, got ${JSON.stringify(r)}`);
  return (r as { kind: ProxyErrorKind }).kind;
}

const TCP4: ProxyHeader = {
  version: 2,
  command: "proxy",
  transport: "stream",
  addresses: {
    family: "inet",
    source: { address: "192.0.2.10", port: 51234 },
    destination: { address: "198.51.100.1", port: 853 },
  },
};

// A header as HAProxy's documentation lays it out, written as hex so the test does not depend
// on the encoder: TCP over IPv4, 192.0.2.10:51234 -> 198.51.100.1:853, no TLVs.
const TCP4_HEX = "0d0a0d0a000d0a515549540a" + "21" + "11" + "000c" + "c000020a" + "c6336401" +
  "c822" + "0355";

Deno.test("CRC-32C matches the standard check value", () => {
  assert.equal(crc32c(text("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
});

Deno.test("v2: a TCP4 header gives the client address and port and its own length", () => {
  const dns = Uint8Array.of(0, 29, 1, 2, 3);
  const r = ok(parseProxyHeader(concatBytes(fromHex(TCP4_HEX), dns)));
  assert.equal(r.length, 28);
  assert.deepEqual(r.header, TCP4);
  assert.deepEqual(encodeProxyV2(TCP4), fromHex(TCP4_HEX));
});

Deno.test("v2: TCP6, UDP4, UDP6 and UNIX headers decode their addresses", () => {
  const tcp6 = ok(parseProxyHeader(encodeProxyV2({
    command: "proxy",
    transport: "stream",
    addresses: {
      family: "inet6",
      source: { address: "2001:db8:0:0:0:0:0:1", port: 1 },
      destination: { address: "::ffff:192.0.2.1", port: 65535 },
    },
  })));
  assert.deepEqual(tcp6.header.addresses, {
    family: "inet6",
    source: { address: "2001:db8::1", port: 1 },
    destination: { address: "::ffff:192.0.2.1", port: 65535 },
  });
  assert.equal(tcp6.length, 16 + 36);

  const udp4 = ok(parseProxyDatagram(encodeProxyV2({ ...TCP4, transport: "dgram" })));
  assert.equal(udp4.header.transport, "dgram");
  assert.deepEqual(udp4.header.addresses, TCP4.addresses);

  const unix = ok(parseProxyHeader(encodeProxyV2({
    command: "proxy",
    transport: "stream",
    addresses: { family: "unix", source: "/run/lb.sock", destination: "/run/dns.sock" },
  })));
  assert.deepEqual(unix.header.addresses, {
    family: "unix",
    source: "/run/lb.sock",
    destination: "/run/dns.sock",
  });
  assert.equal(unix.length, 16 + 216);
});

Deno.test("v2: LOCAL (health checks) carries no address, whatever its family byte says", () => {
  const local = fromHex("0d0a0d0a000d0a515549540a" + "20" + "00" + "0000");
  const r = ok(parseProxyHeader(local));
  assert.deepEqual(r, {
    status: "ok",
    header: { version: 2, command: "local", transport: "unspec", addresses: { family: "unspec" } },
    length: 16,
  });
  // The specification: LOCAL discards the block, family included, so a filled block is fine.
  const withBlock = encodeProxyV2({ ...TCP4, command: "local" });
  assert.equal(ok(parseProxyHeader(withBlock)).header.addresses.family, "unspec");
  assert.equal(ok(parseProxyHeader(withBlock)).length, withBlock.length);
});

Deno.test("v2: PROXY with AF_UNSPEC is accepted without addresses", () => {
  const r = ok(parseProxyHeader(fromHex("0d0a0d0a000d0a515549540a" + "21" + "00" + "0000")));
  assert.deepEqual(r.header.addresses, { family: "unspec" });
});

Deno.test("v2: TLVs are skipped but must tile the header exactly", () => {
  const tlvs = [
    { type: 0x02, value: text("dns.example") }, // PP2_TYPE_AUTHORITY
    { type: 0x04, value: new Uint8Array(0) }, // PP2_TYPE_NOOP
    { type: 0xe0, value: new Uint8Array(300) }, // custom (dnsdist)
  ];
  const h = encodeProxyV2(TCP4, { tlvs });
  const r = ok(parseProxyHeader(concatBytes(h, Uint8Array.of(0, 12))));
  assert.equal(r.length, h.length);
  assert.deepEqual(r.header, TCP4);

  // The last TLV claims one byte more than the header holds.
  const overrun = h.slice();
  overrun[overrun.length - 300 - 1] += 1;
  assert.equal(errorKind(parseProxyHeader(concatBytes(overrun, new Uint8Array(8)))), "bad_tlv");
  // Two stray bytes after the TLVs: too short for a TLV header.
  const stray = encodeProxyV2(TCP4, { tlvs: [{ type: 0x02, value: text("x") }] });
  const grown = concatBytes(stray, Uint8Array.of(0x04, 0x00));
  grown[15] += 2;
  assert.equal(errorKind(parseProxyHeader(grown)), "bad_tlv");
});

Deno.test("v2: a CRC32C TLV is verified", () => {
  const h = encodeProxyV2(TCP4, { tlvs: [{ type: 0x02, value: text("a") }], crc: true });
  assert.deepEqual(ok(parseProxyHeader(h)).header, TCP4);
  const corrupt = h.slice();
  corrupt[20] ^= 1; // one bit of the source address
  assert.equal(errorKind(parseProxyHeader(corrupt)), "bad_checksum");
  const wrongSize = encodeProxyV2(TCP4, { tlvs: [{ type: 0x03, value: new Uint8Array(2) }] });
  assert.equal(errorKind(parseProxyHeader(wrongSize)), "bad_checksum");
});

Deno.test("v2: invalid version, command, family/transport and short address blocks are refused", () => {
  const base = encodeProxyV2(TCP4);
  const withByte = (at: number, v: number) => {
    const b = base.slice();
    b[at] = v;
    return b;
  };
  assert.equal(errorKind(parseProxyHeader(withByte(12, 0x11))), "bad_version");
  assert.equal(errorKind(parseProxyHeader(withByte(12, 0x31))), "bad_version");
  assert.equal(errorKind(parseProxyHeader(withByte(12, 0x22))), "bad_command");
  for (const fam of [0x01, 0x10, 0x13, 0x40, 0xff]) {
    assert.equal(errorKind(parseProxyHeader(withByte(13, fam))), "bad_family", `0x${fam}`);
  }
  // An IPv6 family byte on an IPv4-sized block (12 < 36).
  assert.equal(errorKind(parseProxyHeader(withByte(13, 0x21))), "short_addresses");
  const unixShort = encodeProxyV2(TCP4, { familyByte: 0x31, tlvs: [] });
  assert.equal(errorKind(parseProxyHeader(unixShort)), "short_addresses");
});

Deno.test("v2: a header longer than the bound is refused from its first 16 bytes", () => {
  const big = encodeProxyV2(TCP4, { tlvs: [{ type: 0xe0, value: new Uint8Array(600) }] });
  assert.ok(big.length > DEFAULT_MAX_PROXY_HEADER_BYTES);
  assert.equal(errorKind(parseProxyHeader(big.subarray(0, 16))), "too_long");
  // A larger configured bound admits it; bounds are clamped to what v2 can express.
  assert.equal(ok(parseProxyHeader(big, { maxHeaderBytes: 1024 })).length, big.length);
  assert.equal(errorKind(parseProxyHeader(big, { maxHeaderBytes: 1 })), "too_long");
  const max = encodeProxyV2(TCP4, { tlvs: [{ type: 0xe0, value: new Uint8Array(65535 - 15) }] });
  assert.equal(ok(parseProxyHeader(max, { maxHeaderBytes: 1e9 })).length, 16 + 65535);
});

Deno.test("every proper prefix of a header is incomplete, with a need that makes progress", () => {
  const headers = [
    encodeProxyV2(TCP4, { tlvs: [{ type: 0x02, value: text("abc") }], crc: true }),
    encodeProxyV1({ ...TCP4, version: 1 }),
    text("PROXY UNKNOWN\r\n"),
  ];
  for (const h of headers) {
    for (let n = 0; n < h.length; n++) {
      const r = parseProxyHeader(h.subarray(0, n));
      assert.equal(r.status, "incomplete", `prefix of ${n}/${h.length} bytes`);
      const need = (r as { need: number }).need;
      assert.ok(need > n && need <= h.length, `need ${need} for a prefix of ${n}/${h.length}`);
    }
    assert.equal(ok(parseProxyHeader(h)).length, h.length);
  }
});

Deno.test("v1: TCP4, TCP6 and UNKNOWN lines", () => {
  const r4 = ok(parseProxyHeader(text("PROXY TCP4 192.0.2.10 198.51.100.1 51234 853\r\n\0\x1d")));
  assert.deepEqual(r4.header, { ...TCP4, version: 1 });
  assert.equal(r4.length, 46);

  const r6 = ok(parseProxyHeader(text("PROXY TCP6 2001:DB8::0:1 ::1 0 65535\r\n")));
  assert.deepEqual(r6.header.addresses, {
    family: "inet6",
    source: { address: "2001:db8::1", port: 0 },
    destination: { address: "::1", port: 65535 },
  });

  for (const line of ["PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"]) {
    const r = ok(parseProxyHeader(text(line)));
    assert.deepEqual(r.header.addresses, { family: "unspec" });
    assert.equal(r.length, line.length);
  }

  // The specification's longest line is accepted.
  const longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff " +
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  assert.equal(ok(parseProxyHeader(text(longest))).length, longest.length);
});

Deno.test("v1: lines that break the grammar are refused with their kind", () => {
  const cases: [string, ProxyErrorKind][] = [
    ["PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "bad_syntax"],
    ["PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad_syntax"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "bad_syntax"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "bad_syntax"],
    ["PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "bad_syntax"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bad_syntax"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "bad_syntax"],
    ["PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "bad_syntax"],
    ["PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "bad_address"],
    ["PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "bad_address"],
    ["PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad_address"],
    ["PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad_address"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad_port"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "bad_port"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad_port"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n", "bad_port"],
    ["PROXY UNKNOWN \u00e9\r\n", "bad_syntax"],
  ];
  for (const [line, kind] of cases) {
    assert.equal(errorKind(parseProxyHeader(text(line))), kind, JSON.stringify(line));
  }
});

Deno.test("v1: no CRLF within 107 bytes is refused; a 108-byte line too", () => {
  const noEnd = "PROXY UNKNOWN " + "x".repeat(200);
  assert.equal(errorKind(parseProxyHeader(text(noEnd.slice(0, PROXY_V1_MAX_BYTES)))), "too_long");
  assert.equal(parseProxyHeader(text(noEnd.slice(0, PROXY_V1_MAX_BYTES - 1))).status, "incomplete");
  const line107 = "PROXY UNKNOWN " + "x".repeat(PROXY_V1_MAX_BYTES - 16) + "\r\n";
  assert.equal(line107.length, 107);
  assert.equal(ok(parseProxyHeader(text(line107))).length, 107);
  const line108 = "PROXY UNKNOWN " + "x".repeat(PROXY_V1_MAX_BYTES - 15) + "\r\n";
  assert.equal(errorKind(parseProxyHeader(text(line108))), "too_long");
});

Deno.test("data that is not a header is not_proxy at its first differing byte", () => {
  assert.equal(errorKind(parseProxyHeader(Uint8Array.of(0, 29))), "not_proxy");
  assert.equal(errorKind(parseProxyHeader(Uint8Array.of(0x16, 3, 1))), "not_proxy"); // TLS
  assert.equal(errorKind(parseProxyHeader(text("PROXZ"))), "not_proxy");
  assert.equal(errorKind(parseProxyHeader(fromHex("0d0a0d0a000d0a5155495400"))), "not_proxy");
});

Deno.test("signature matching decides within 12 bytes", () => {
  assert.equal(matchProxySignature(new Uint8Array(0)), "undecided");
  assert.equal(matchProxySignature(text("PROX")), "undecided");
  assert.equal(matchProxySignature(text("PROXY ")), "v1");
  assert.equal(matchProxySignature(fromHex("0d0a0d0a000d0a5155")), "undecided");
  assert.equal(matchProxySignature(fromHex("0d0a0d0a000d0a515549540a")), "v2");
  assert.equal(matchProxySignature(Uint8Array.of(0, 29, 0x0d)), "none");
  assert.equal(matchProxySignature(Uint8Array.of(0x16)), "none");
});

Deno.test("datagrams: v2 only, and a header cut short is truncated", () => {
  assert.equal(
    errorKind(parseProxyDatagram(text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))),
    "v1_not_allowed",
  );
  assert.equal(errorKind(parseProxyDatagram(text("PRO"))), "v1_not_allowed");
  const h = encodeProxyV2({ ...TCP4, transport: "dgram" });
  assert.equal(errorKind(parseProxyDatagram(h.subarray(0, 20))), "truncated");
  assert.equal(errorKind(parseProxyDatagram(h.subarray(0, 5))), "truncated");
  assert.equal(errorKind(parseProxyDatagram(new Uint8Array(0))), "truncated");
  assert.equal(errorKind(parseProxyDatagram(Uint8Array.of(0x12, 0x34, 1, 0))), "not_proxy");
  const dns = Uint8Array.of(0x12, 0x34, 1, 0, 0, 1);
  const r = ok(parseProxyDatagram(concatBytes(h, dns)));
  assert.equal(r.length, h.length);
});
