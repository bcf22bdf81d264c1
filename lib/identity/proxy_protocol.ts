/**
 * HAProxy's PROXY protocol (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt), the
 * receiving side: a load balancer in front of dotproxy prepends one header to each TCP connection
 * (v1 text or v2 binary) or each UDP datagram (v2 only) saying who the client really is.
 *
 * Pure and distrustful like the DNS codec: bytes in, a typed result out, never a throw; every read
 * is bounds-checked and the header length is bounded before anything is buffered. On a stream the
 * input may be incomplete: the result then says how many bytes are needed at least, so the caller
 * reads more (up to the bound) and parses again from the start. Whether a header is expected at
 * all is the listener's policy (lib/identity/proxy_gate.ts), not the parser's.
 */
import { formatCidr } from "../policy/acl.ts";
import { parseIPv4, parseIPv6 } from "../net/ip.ts";
import { crc32c } from "./crc32c.ts";

/** The 12 bytes every v2 header starts with ("\r\n\r\n\0\r\nQUIT\n"). */
export const PROXY_V2_SIGNATURE: Uint8Array = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);

/** What every v1 header starts with. */
export const PROXY_V1_PREFIX: Uint8Array = new TextEncoder().encode("PROXY ");

/** The longest v1 line, CRLF included (the specification's worst case). */
export const PROXY_V1_MAX_BYTES = 107;

/** Signature, version/command, family/transport and the 16-bit length. */
export const PROXY_V2_FIXED_BYTES = 16;

/** Bytes of the v2 address block per family (sources, destinations, ports). */
export const PROXY_V2_ADDRESS_BYTES = { unspec: 0, inet: 12, inet6: 36, unix: 216 } as const;

/**
 * The default bound on a whole header, in bytes: 16 fixed bytes plus 512 bytes of addresses and
 * TLVs, the payload limit dnsdist applies by default (`setProxyProtocolMaximumPayloadSize`). It
 * holds v1 (107), v2 with any address family (at most 232) and a few hundred bytes of TLVs (what
 * HAProxy's `send-proxy-v2-ssl-cn` adds). A longer header is refused before it is buffered.
 */
export const DEFAULT_MAX_PROXY_HEADER_BYTES = PROXY_V2_FIXED_BYTES + 512;

/** The smallest bound allowed: a v2 header with AF_UNIX addresses (16 + 216) must fit. */
export const MIN_MAX_PROXY_HEADER_BYTES = PROXY_V2_FIXED_BYTES + PROXY_V2_ADDRESS_BYTES.unix;

/** The largest bound allowed: what the 16-bit v2 length field can express. */
export const MAX_MAX_PROXY_HEADER_BYTES = PROXY_V2_FIXED_BYTES + 0xffff;

/** Why a header was refused; one list, from which the type and metric labels derive. */
export const PROXY_ERROR_KINDS = [
  "not_proxy", // the bytes start with neither signature
  "bad_version", // v2 version nibble is not 2
  "bad_command", // v2 command is neither LOCAL nor PROXY
  "bad_family", // v2 family/transport byte is not one of the seven the specification allows
  "short_addresses", // v2 length is smaller than the family's address block
  "too_long", // longer than the bound (v2 length field, or no CRLF within 107 bytes for v1)
  "bad_tlv", // a v2 TLV runs past the end of the header
  "bad_checksum", // a v2 CRC32C TLV that does not match (or is not 4 bytes long)
  "bad_syntax", // v1 line does not follow the grammar
  "bad_address", // v1 address is not a valid address of the declared family
  "bad_port", // v1 port is not a decimal 0-65535 without leading zeros
  "v1_not_allowed", // v1 text where only v2 is accepted (datagrams)
  "truncated", // a datagram ends inside its header
] as const;

/** Why a header was refused. */
export type ProxyErrorKind = typeof PROXY_ERROR_KINDS[number];

/** An IP endpoint from a header: address text as lib/policy parses it, and port. */
export interface ProxyEndpoint {
  address: string;
  port: number;
}

/**
 * The addresses a header carries. `unspec` when there are none to use: a LOCAL command, family
 * AF_UNSPEC, or v1 UNKNOWN. The receiver then uses the real connection's endpoints.
 */
export type ProxyAddresses =
  | { family: "inet" | "inet6"; source: ProxyEndpoint; destination: ProxyEndpoint }
  | { family: "unix"; source: string; destination: string }
  | { family: "unspec" };

/** A parsed header. */
export interface ProxyHeader {
  version: 1 | 2;
  /**
   * "local": the proxy speaks for itself (HAProxy's health checks); the connection's own peer is
   * the client. "proxy": relayed on behalf of the client in `addresses`.
   */
  command: "local" | "proxy";
  /**
   * The client's transport as the proxy saw it (v2; "stream" for v1 TCP4/TCP6). It describes the
   * client's side, which may differ from the proxy-to-us hop (dnsdist relays DoH over UDP), so
   * it is reported, not enforced.
   */
  transport: "unspec" | "stream" | "dgram";
  addresses: ProxyAddresses;
}

/** The outcome of parsing: a header and its length, more bytes needed, or a refusal. */
export type ProxyParseResult =
  | { status: "ok"; header: ProxyHeader; length: number }
  | { status: "incomplete"; need: number }
  | { status: "error"; kind: ProxyErrorKind; message: string };

/** Parser settings. */
export interface ProxyParseOptions {
  /** Accept the v1 text form (streams only; default true). */
  allowV1?: boolean;
  /**
   * The longest header accepted, in bytes (default {@link DEFAULT_MAX_PROXY_HEADER_BYTES},
   * clamped to [{@link MIN_MAX_PROXY_HEADER_BYTES}, {@link MAX_MAX_PROXY_HEADER_BYTES}]).
   */
  maxHeaderBytes?: number;
}

/** How the first bytes of a stream or datagram relate to the PROXY signatures. */
export type ProxySignatureMatch = "v1" | "v2" | "none" | "undecided";

/**
 * Whether `bytes` start with a PROXY signature: "v1"/"v2" once a whole signature is present,
 * "none" as soon as the bytes differ from both, "undecided" while they are a proper prefix of
 * one (at most 12 bytes decide). Used to refuse headers from peers that may not send one.
 */
export function matchProxySignature(bytes: Uint8Array): ProxySignatureMatch {
  const v1 = prefixMatch(bytes, PROXY_V1_PREFIX);
  if (v1 === "full") return "v1";
  const v2 = prefixMatch(bytes, PROXY_V2_SIGNATURE);
  if (v2 === "full") return "v2";
  return v1 === "partial" || v2 === "partial" ? "undecided" : "none";
}

/** "full" if `bytes` start with `sig`, "partial" if they are a proper prefix of it, else "no". */
function prefixMatch(bytes: Uint8Array, sig: Uint8Array): "full" | "partial" | "no" {
  const n = Math.min(bytes.length, sig.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== sig[i]) return "no";
  return bytes.length >= sig.length ? "full" : "partial";
}

function fail(kind: ProxyErrorKind, message: string): ProxyParseResult {
  return { status: "error", kind, message };
}

function boundOf(opts: ProxyParseOptions): number {
  const max = opts.maxHeaderBytes ?? DEFAULT_MAX_PROXY_HEADER_BYTES;
  if (!Number.isFinite(max)) return DEFAULT_MAX_PROXY_HEADER_BYTES;
  return Math.min(
    MAX_MAX_PROXY_HEADER_BYTES,
    Math.max(MIN_MAX_PROXY_HEADER_BYTES, Math.floor(max)),
  );
}

/**
 * Parses the header at the start of a stream. `bytes` may be incomplete: "incomplete" says how
 * many bytes in total are needed at least before parsing again (never more than the bound).
 * "ok" gives the header and its length; the DNS stream starts right after it.
 */
export function parseProxyHeader(
  bytes: Uint8Array,
  opts: ProxyParseOptions = {},
): ProxyParseResult {
  const match = matchProxySignature(bytes);
  const allowV1 = opts.allowV1 ?? true;
  if (match === "v2") return parseV2(bytes, boundOf(opts));
  if (match === "v1") {
    if (!allowV1) {
      return fail("v1_not_allowed", "a PROXY v1 (text) header where only v2 is accepted");
    }
    return parseV1(bytes);
  }
  if (match === "undecided") {
    // The signatures differ in their first byte, so at most one of them is still possible
    // (both only for empty input, where one more byte is all that is needed).
    if (allowV1 && prefixMatch(bytes, PROXY_V1_PREFIX) === "partial") {
      return { status: "incomplete", need: bytes.length + 1 };
    }
    if (prefixMatch(bytes, PROXY_V2_SIGNATURE) === "partial") {
      return { status: "incomplete", need: PROXY_V2_FIXED_BYTES };
    }
    return fail(
      "v1_not_allowed",
      "the start of a PROXY v1 (text) header where only v2 is accepted",
    );
  }
  return fail("not_proxy", "the data does not start with a PROXY protocol header");
}

/**
 * Parses the v2 header at the start of one datagram (RFC-less but what dnsdist and HAProxy send
 * over UDP: one header per datagram, the DNS message right after it). A datagram is complete, so
 * a header running past its end is "truncated", and v1 is refused.
 */
export function parseProxyDatagram(
  datagram: Uint8Array,
  opts: Omit<ProxyParseOptions, "allowV1"> = {},
): ProxyParseResult {
  const r = parseProxyHeader(datagram, { ...opts, allowV1: false });
  if (r.status !== "incomplete") return r;
  return fail(
    "truncated",
    `the datagram (${datagram.length} bytes) ends inside its PROXY header (${r.need} bytes needed)`,
  );
}

// --- v2 ---------------------------------------------------------------------------------------

const CMD_LOCAL = 0x0;
const CMD_PROXY = 0x1;
const TLV_CRC32C = 0x03;

/** The family/transport bytes the specification allows; every other value must be rejected. */
const FAMILIES: ReadonlyMap<
  number,
  { family: ProxyAddresses["family"]; transport: ProxyHeader["transport"] }
> = new Map([
  [0x00, { family: "unspec", transport: "unspec" }],
  [0x11, { family: "inet", transport: "stream" }],
  [0x12, { family: "inet", transport: "dgram" }],
  [0x21, { family: "inet6", transport: "stream" }],
  [0x22, { family: "inet6", transport: "dgram" }],
  [0x31, { family: "unix", transport: "stream" }],
  [0x32, { family: "unix", transport: "dgram" }],
]);

function parseV2(b: Uint8Array, bound: number): ProxyParseResult {
  if (b.length < PROXY_V2_FIXED_BYTES) return { status: "incomplete", need: PROXY_V2_FIXED_BYTES };
  const version = b[12] >>> 4;
  const command = b[12] & 0x0f;
  if (version !== 2) return fail("bad_version", `PROXY v2 header with version ${version}`);
  if (command !== CMD_LOCAL && command !== CMD_PROXY) {
    return fail("bad_command", `PROXY v2 header with unknown command 0x${command.toString(16)}`);
  }
  const total = PROXY_V2_FIXED_BYTES + ((b[14] << 8) | b[15]);
  if (total > bound) {
    return fail(
      "too_long",
      `PROXY v2 header of ${total} bytes is longer than the limit of ${bound}`,
    );
  }
  if (b.length < total) return { status: "incomplete", need: total };
  if (command === CMD_LOCAL) {
    // The specification: accept, use the real endpoints, discard the block (family included).
    return {
      status: "ok",
      header: {
        version: 2,
        command: "local",
        transport: "unspec",
        addresses: { family: "unspec" },
      },
      length: total,
    };
  }
  const fam = FAMILIES.get(b[13]);
  if (!fam) {
    return fail("bad_family", `PROXY v2 header with family/transport byte 0x${hex2(b[13])}`);
  }
  const addressBytes = PROXY_V2_ADDRESS_BYTES[fam.family];
  if (total - PROXY_V2_FIXED_BYTES < addressBytes) {
    return fail(
      "short_addresses",
      `PROXY v2 ${fam.family} header carries ${total - PROXY_V2_FIXED_BYTES} bytes, ` +
        `its addresses need ${addressBytes}`,
    );
  }
  const tlvs = checkTlvs(b, PROXY_V2_FIXED_BYTES + addressBytes, total);
  if (tlvs) return tlvs;
  return {
    status: "ok",
    header: {
      version: 2,
      command: "proxy",
      transport: fam.transport,
      addresses: v2Addresses(b, fam.family),
    },
    length: total,
  };
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

/** Checks that TLVs tile `[from, to)` exactly and that a CRC32C TLV, if any, matches. */
function checkTlvs(b: Uint8Array, from: number, to: number): ProxyParseResult | null {
  let p = from;
  while (p < to) {
    if (to - p < 3) return fail("bad_tlv", `PROXY v2 TLV header cut short at byte ${p}`);
    const type = b[p];
    const len = (b[p + 1] << 8) | b[p + 2];
    const value = p + 3;
    if (value + len > to) {
      return fail("bad_tlv", `PROXY v2 TLV 0x${hex2(type)} of ${len} bytes runs past the header`);
    }
    if (type === TLV_CRC32C) {
      if (len !== 4) return fail("bad_checksum", `PROXY v2 CRC32C TLV of ${len} bytes, not 4`);
      const expected = ((b[value] << 24) | (b[value + 1] << 16) | (b[value + 2] << 8) |
        b[value + 3]) >>> 0;
      if (crc32c(b, 0, to, value) !== expected) {
        return fail("bad_checksum", "PROXY v2 header does not match its CRC32C checksum");
      }
    }
    p = value + len;
  }
  return null;
}

function v2Addresses(b: Uint8Array, family: ProxyAddresses["family"]): ProxyAddresses {
  const a = PROXY_V2_FIXED_BYTES;
  switch (family) {
    case "unspec":
      return { family };
    case "inet":
      return {
        family,
        source: { address: ipv4Text(b, a), port: u16(b, a + 8) },
        destination: { address: ipv4Text(b, a + 4), port: u16(b, a + 10) },
      };
    case "inet6":
      return {
        family,
        source: { address: ipv6Text(b, a), port: u16(b, a + 32) },
        destination: { address: ipv6Text(b, a + 16), port: u16(b, a + 34) },
      };
    case "unix":
      return { family, source: unixPath(b, a), destination: unixPath(b, a + 108) };
  }
}

function u16(b: Uint8Array, at: number): number {
  return (b[at] << 8) | b[at + 1];
}

function ipv4Text(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** RFC 5952 text of 16 address bytes (the same formatter the ACL uses for its messages). */
function ipv6Text(b: Uint8Array, at: number): string {
  const w = (k: number) =>
    ((b[at + 4 * k] << 24) | (b[at + 4 * k + 1] << 16) | (b[at + 4 * k + 2] << 8) |
      b[at + 4 * k + 3]) >>> 0;
  const text = formatCidr({ family: 6, address: [w(0), w(1), w(2), w(3)], prefix: 128 });
  return text.slice(0, text.lastIndexOf("/"));
}

/** A NUL-padded 108-byte socket path, as Latin-1 text up to the first NUL. */
function unixPath(b: Uint8Array, at: number): string {
  let s = "";
  for (let i = at; i < at + 108 && b[i] !== 0; i++) s += String.fromCharCode(b[i]);
  return s;
}

// --- v1 ---------------------------------------------------------------------------------------

const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;

function parseV1(b: Uint8Array): ProxyParseResult {
  // Find CRLF within the first 107 bytes; refuse control bytes early rather than at the bound.
  const limit = Math.min(b.length, PROXY_V1_MAX_BYTES);
  let end = -1;
  for (let i = PROXY_V1_PREFIX.length; i < limit; i++) {
    const c = b[i];
    if (c === CR) {
      if (i + 1 >= b.length) break; // the LF may still come
      if (b[i + 1] !== LF) return fail("bad_syntax", "PROXY v1 line has a CR without LF");
      end = i;
      break;
    }
    if (c < SPACE || c > 0x7e) {
      return fail("bad_syntax", `PROXY v1 line contains the byte 0x${hex2(c)}`);
    }
  }
  if (end < 0) {
    if (b.length >= PROXY_V1_MAX_BYTES) {
      return fail(
        "too_long",
        `PROXY v1 line without CRLF in its first ${PROXY_V1_MAX_BYTES} bytes`,
      );
    }
    return { status: "incomplete", need: b.length + 1 };
  }
  const length = end + 2;
  if (length > PROXY_V1_MAX_BYTES) {
    return fail(
      "too_long",
      `PROXY v1 line of ${length} bytes is longer than ${PROXY_V1_MAX_BYTES}`,
    );
  }
  let line = "";
  for (let i = PROXY_V1_PREFIX.length; i < end; i++) line += String.fromCharCode(b[i]);
  const fields = line.split(" ");
  if (fields[0] === "UNKNOWN") {
    // "PROXY UNKNOWN" and anything after it up to CRLF: the receiver ignores the rest.
    return {
      status: "ok",
      header: {
        version: 1,
        command: "proxy",
        transport: "unspec",
        addresses: { family: "unspec" },
      },
      length,
    };
  }
  if (fields[0] !== "TCP4" && fields[0] !== "TCP6") {
    return fail(
      "bad_syntax",
      `PROXY v1 protocol ${JSON.stringify(fields[0])} is not TCP4, TCP6 or UNKNOWN`,
    );
  }
  if (fields.length !== 5) {
    return fail(
      "bad_syntax",
      `PROXY v1 ${fields[0]} line needs 4 fields after the protocol, separated by one space`,
    );
  }
  const v6 = fields[0] === "TCP6";
  const [, src, dst, sport, dport] = fields;
  const source = v1Address(src, v6);
  const destination = v1Address(dst, v6);
  if (source === null || destination === null) {
    return fail(
      "bad_address",
      `PROXY v1 ${fields[0]} address ${JSON.stringify(source === null ? src : dst)} is not an IPv${
        v6 ? 6 : 4
      } address`,
    );
  }
  const sp = v1Port(sport);
  const dp = v1Port(dport);
  if (sp < 0 || dp < 0) {
    return fail(
      "bad_port",
      `PROXY v1 port ${
        JSON.stringify(sp < 0 ? sport : dport)
      } is not a number 0-65535 without leading zeros`,
    );
  }
  return {
    status: "ok",
    header: {
      version: 1,
      command: "proxy",
      transport: "stream",
      addresses: {
        family: v6 ? "inet6" : "inet",
        source: { address: source, port: sp },
        destination: { address: destination, port: dp },
      },
    },
    length,
  };
}

const v6Words = new Uint32Array(4);

/** The address in canonical text, or null unless it is an address of the stated family. */
function v1Address(text: string, v6: boolean): string | null {
  if (!v6) return parseIPv4(text) >= 0 ? text : null;
  if (!parseIPv6(text, v6Words)) return null;
  const canonical = formatCidr({
    family: 6,
    address: [v6Words[0], v6Words[1], v6Words[2], v6Words[3]],
    prefix: 128,
  });
  return canonical.slice(0, canonical.lastIndexOf("/"));
}

/** A port 0-65535 in decimal without leading zeros, else -1. */
function v1Port(text: string): number {
  if (text.length === 0 || text.length > 5) return -1;
  if (text.length > 1 && text.charCodeAt(0) === 0x30) return -1;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const d = text.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n <= 0xffff ? n : -1;
}
