/**
 * PROXY protocol headers built byte by byte for tests (what HAProxy and dnsdist send): the v2
 * binary form with optional TLVs and CRC32C, and the v1 text line. Written from the specification,
 * not from lib/identity/proxy_protocol.ts, so a round trip through the parser checks both.
 */
import { crc32c } from "../../lib/identity/crc32c.ts";
import type { ProxyHeader } from "../../lib/identity/proxy_protocol.ts";

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const FAMILY_NIBBLE = { unspec: 0, inet: 1, inet6: 2, unix: 3 } as const;
const TRANSPORT_NIBBLE = { unspec: 0, stream: 1, dgram: 2 } as const;

/** One TLV: type byte and value. */
export interface Tlv {
  type: number;
  value: Uint8Array;
}

/** Extras of a v2 header beyond what ProxyHeader describes. */
export interface V2Extras {
  tlvs?: Tlv[];
  /** Append a PP2_TYPE_CRC32C TLV with the right checksum. */
  crc?: boolean;
  /** Override the family/transport byte (to build invalid headers). */
  familyByte?: number;
}

function ipv4Bytes(text: string): number[] {
  return text.split(".").map(Number);
}

/** Expands an IPv6 text (at most one "::", optionally a dotted-quad tail) to 16 bytes. */
function ipv6Bytes(text: string): number[] {
  const [head, tail] = text.includes("::") ? text.split("::") : [text, null];
  const parse = (s: string) =>
    s === "" ? [] : s.split(":").flatMap((g) => {
      if (!g.includes(".")) return [parseInt(g, 16)];
      const [a, b, c, d] = ipv4Bytes(g);
      return [(a << 8) | b, (c << 8) | d];
    });
  const h = parse(head);
  const t = tail === null ? [] : parse(tail);
  const groups = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  return groups.flatMap((g) => [g >>> 8, g & 0xff]);
}

function pathBytes(path: string): number[] {
  const out = new Array(108).fill(0);
  for (let i = 0; i < path.length && i < 108; i++) out[i] = path.charCodeAt(i);
  return out;
}

function u16(n: number): number[] {
  return [(n >>> 8) & 0xff, n & 0xff];
}

/** A v2 header for `h` (its `version` is ignored), with optional TLVs and checksum. */
export function encodeProxyV2(
  h: Omit<ProxyHeader, "version">,
  extras: V2Extras = {},
): Uint8Array {
  const body: number[] = [];
  const a = h.addresses;
  if (a.family === "inet") {
    body.push(...ipv4Bytes(a.source.address), ...ipv4Bytes(a.destination.address));
    body.push(...u16(a.source.port), ...u16(a.destination.port));
  } else if (a.family === "inet6") {
    body.push(...ipv6Bytes(a.source.address), ...ipv6Bytes(a.destination.address));
    body.push(...u16(a.source.port), ...u16(a.destination.port));
  } else if (a.family === "unix") {
    body.push(...pathBytes(a.source), ...pathBytes(a.destination));
  }
  for (const t of extras.tlvs ?? []) body.push(t.type, ...u16(t.value.length), ...t.value);
  let crcAt = -1;
  if (extras.crc) {
    crcAt = 16 + body.length + 3;
    body.push(0x03, 0, 4, 0, 0, 0, 0);
  }
  const command = h.command === "local" ? 0x20 : 0x21;
  const fam = extras.familyByte ??
    ((FAMILY_NIBBLE[a.family] << 4) | TRANSPORT_NIBBLE[h.transport]);
  const out = Uint8Array.from([...SIGNATURE, command, fam, ...u16(body.length), ...body]);
  if (crcAt >= 0) {
    const c = crc32c(out);
    out.set([c >>> 24, (c >>> 16) & 0xff, (c >>> 8) & 0xff, c & 0xff], crcAt);
  }
  return out;
}

/** A v1 line for `h`: TCP4/TCP6 with its addresses, or UNKNOWN. */
export function encodeProxyV1(h: ProxyHeader): Uint8Array {
  const a = h.addresses;
  const line = a.family === "inet" || a.family === "inet6"
    ? `PROXY ${a.family === "inet" ? "TCP4" : "TCP6"} ${a.source.address} ` +
      `${a.destination.address} ${a.source.port} ${a.destination.port}\r\n`
    : "PROXY UNKNOWN\r\n";
  return new TextEncoder().encode(line);
}

/** `a` followed by `b`, as one buffer. */
export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
