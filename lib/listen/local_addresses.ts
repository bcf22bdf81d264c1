/**
 * Which addresses a wildcard UDP listener binds one socket each to. Deno gives a datagram socket
 * no IP_PKTINFO, so a socket bound to 0.0.0.0 cannot tell which local address a query was sent
 * to, and its reply leaves from whatever address the route to the client prefers: a client that
 * asked 127.0.0.2 (or a secondary address, or a VIP) gets its answer from another address and
 * drops it. A socket bound to one address always replies from that address, so a wildcard is
 * served by one socket per local address, as BIND and NSD do. Pure: the caller reads the
 * interfaces.
 */
import { parseCidr } from "../policy/acl.ts";
import { parseIPv6 } from "../net/ip.ts";

/** Loopback addresses a wildcard binds besides the interfaces' own (see loopbackAddresses). */
export const DEFAULT_WILDCARD_LOOPBACK: readonly string[] = Object.freeze(["127.0.0.0/24"]);

/** Sockets one wildcard listener opens at most (interface and loopback addresses together). */
export const MAX_WILDCARD_SOCKETS = 1024;

/** The part of `Deno.NetworkInterfaceInfo` used here (tests pass their own lists). */
export interface InterfaceAddress {
  family: "IPv4" | "IPv6";
  address: string;
  /** IPv6 scope (interface index): needed to bind a link-local address. */
  scopeid: number | null;
}

/** One address to bind: `hostname` as Deno.listenDatagram takes it (with `%scope` if needed). */
export interface BindTarget {
  hostname: string;
  /** From the configured loopback list rather than an interface: may be taken by another service. */
  loopback: boolean;
}

function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * Expands the configured loopback list (addresses or prefixes inside 127.0.0.0/8) into
 * addresses, without a prefix's network and broadcast addresses. On Linux the whole of 127/8 is
 * local, but only 127.0.0.1 is listed as an interface address, so a query to 127.0.0.2 on a
 * wildcard could not be answered from 127.0.0.2 without this. Returns an error message for
 * anything outside 127/8 or more than `max` addresses.
 */
export function loopbackAddresses(
  list: readonly string[],
  max = MAX_WILDCARD_SOCKETS,
): string[] | string {
  const out = new Set<string>();
  for (const text of list) {
    const cidr = parseCidr(text);
    if (typeof cidr === "string") return cidr;
    if (cidr.family !== 4 || cidr.prefix < 8 || (cidr.address >>> 24) !== 127) {
      return `${JSON.stringify(text)} is not inside 127.0.0.0/8`;
    }
    const size = 2 ** (32 - cidr.prefix);
    const skipEnds = cidr.prefix < 31;
    if (size - (skipEnds ? 2 : 0) + out.size > max) {
      return `${JSON.stringify(text)} makes more than ${max} loopback addresses`;
    }
    for (let i = skipEnds ? 1 : 0; i < (skipEnds ? size - 1 : size); i++) {
      out.add(formatIPv4(cidr.address + i));
    }
  }
  return [...out];
}

/**
 * The addresses a wildcard binds: every interface address of its family (for "::" the IPv4 ones
 * too unless `ipv4` is false, as a dual-stack socket received IPv4), then the loopback list for
 * IPv4. Duplicates and `exclude` are dropped; at most `max`, interface addresses first.
 */
export function wildcardTargets(
  wildcard: "0.0.0.0" | "::",
  interfaces: readonly InterfaceAddress[],
  opts: {
    loopback: readonly string[];
    ipv4?: boolean;
    max?: number;
    /** Addresses served by listeners of their own on the same port: left to them. */
    exclude?: readonly string[];
  },
): BindTarget[] {
  const v6 = wildcard === "::";
  const v4 = !v6 || (opts.ipv4 ?? true);
  const max = opts.max ?? MAX_WILDCARD_SOCKETS;
  const seen = new Set<string>(opts.exclude ?? []);
  const out: BindTarget[] = [];
  const add = (hostname: string, loopback: boolean) => {
    if (out.length >= max || seen.has(hostname)) return;
    seen.add(hostname);
    out.push({ hostname, loopback });
  };
  for (const i of interfaces) {
    if (i.family === "IPv6" && v6) {
      // A link-local address can only be bound with its scope (the interface index).
      const scoped = i.address.toLowerCase().startsWith("fe80:") && i.scopeid;
      add(scoped ? `${i.address}%${i.scopeid}` : i.address, false);
    } else if (i.family === "IPv4" && v4) add(i.address, false);
  }
  if (v4) { for (const a of opts.loopback) add(a, true); }
  return out;
}

/** "0.0.0.0" or "::" when `hostname` is the IPv4 or IPv6 wildcard (any spelling), else null. */
export function wildcardOf(hostname: string): "0.0.0.0" | "::" | null {
  if (hostname === "0.0.0.0") return "0.0.0.0";
  const words = new Uint32Array(4);
  if (hostname.includes(":") && parseIPv6(hostname, words) && words.every((w) => w === 0)) {
    return "::";
  }
  return null;
}
