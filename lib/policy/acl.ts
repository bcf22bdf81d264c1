/**
 * Access control by client address: a resolver that answers anyone is an open resolver, usable
 * for amplification attacks and for probing what the upstream knows. Prefixes are parsed once
 * into integers; each query costs one allocation-free address parse and a linear scan of a few
 * dozen integer comparisons. Deny wins over allow; anything not allowed is refused.
 */
import { isMappedIPv4, parseClientAddress, parseIPv4, parseIPv6 } from "../net/ip.ts";

/**
 * An address prefix, pre-parsed so matching is integer arithmetic: IPv4 as one unsigned 32-bit
 * integer, IPv6 as four unsigned 32-bit words (most significant first). `address` is always the
 * network address (host bits zero). IPv4-mapped IPv6 prefixes (`::ffff:a.b.c.d/n`, n >= 96) are
 * stored as IPv4, because that is how mapped clients are matched.
 */
export type Cidr =
  | { readonly family: 4; readonly address: number; readonly prefix: number }
  | {
    readonly family: 6;
    readonly address: readonly [number, number, number, number];
    readonly prefix: number;
  };

const MAPPED_PREFIX = 96;
const scratch = new Uint32Array(4);

/** The mask of the top `bits` bits of a 32-bit word (bits clamped to 0..32), unsigned. */
function wordMask(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return 0xffffffff;
  return (0xffffffff << (32 - bits)) >>> 0;
}

/** Parses a prefix length: decimal digits, no sign, no leading zero, at most `max`. */
function parsePrefixLength(text: string, max: number): number | string {
  if (text.length === 0) return "the prefix length after '/' is missing";
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const d = text.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return `prefix length ${JSON.stringify(text)} is not a number`;
    n = n * 10 + d;
  }
  if (text.length > 1 && text.charCodeAt(0) === 0x30) {
    return `prefix length ${JSON.stringify(text)} has a leading zero`;
  }
  if (n > max) {
    return `prefix length ${text} is out of range 0-${max} for IPv${max === 32 ? 4 : 6}`;
  }
  return n;
}

/**
 * Parses `a.b.c.d/n`, an IPv6 prefix (`2001:db8::/32`, `::/0`, `::ffff:10.0.0.0/104`) or a bare
 * address (/32 or /128). Returns an error message naming the value and what is wrong, e.g. a
 * prefix with host bits set suggests the network address. Config parsers call this on user input.
 */
export function parseCidr(text: string): Cidr | string {
  const what = JSON.stringify(text);
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? null : text.slice(slash + 1);
  if (text.length === 0) return `${what} is not an IP address or prefix`;
  if (addrText.includes("%")) {
    return `${what}: zone ids (%...) are not allowed in an address prefix`;
  }
  const v4 = parseIPv4(addrText);
  if (v4 >= 0) {
    const prefix = lenText === null ? 32 : parsePrefixLength(lenText, 32);
    if (typeof prefix === "string") return `${what}: ${prefix}`;
    const network = (v4 & wordMask(prefix)) >>> 0;
    if (network !== v4) {
      return `${what}: host bits are set after /${prefix}; did you mean ${
        formatIPv4(network)
      }/${prefix}?`;
    }
    return { family: 4, address: network, prefix };
  }
  const words = new Uint32Array(4);
  if (!parseIPv6(addrText, words)) {
    return `${what}: ${JSON.stringify(addrText)} is not an IPv4 or IPv6 address`;
  }
  const prefix = lenText === null ? 128 : parsePrefixLength(lenText, 128);
  if (typeof prefix === "string") return `${what}: ${prefix}`;
  const net: [number, number, number, number] = [0, 0, 0, 0];
  let hostBits = false;
  for (let k = 0; k < 4; k++) {
    net[k] = (words[k] & wordMask(prefix - 32 * k)) >>> 0;
    if (net[k] !== words[k]) hostBits = true;
  }
  const mapped = isMappedIPv4(words) && prefix >= MAPPED_PREFIX;
  if (hostBits) {
    const suggestion = mapped
      ? `::ffff:${formatIPv4(net[3])}/${prefix}`
      : formatCidr({ family: 6, address: net, prefix });
    return `${what}: host bits are set after /${prefix}; did you mean ${suggestion}?`;
  }
  if (mapped) return { family: 4, address: net[3], prefix: prefix - MAPPED_PREFIX };
  return { family: 6, address: net, prefix };
}

/** Parses a list of prefixes (a config array); the first bad entry's message, else the list. */
export function parseCidrList(texts: readonly string[]): Cidr[] | string {
  const out: Cidr[] = [];
  for (const t of texts) {
    const c = parseCidr(t);
    if (typeof c === "string") return c;
    out.push(c);
  }
  return out;
}

function formatIPv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** RFC 5952 text: lower case, the longest run of two or more zero groups as "::". */
function formatIPv6(w: readonly number[]): string {
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) return `::ffff:${formatIPv4(w[3])}`;
  const g: number[] = [];
  for (const word of w) g.push(word >>> 16, word & 0xffff);
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) => g.slice(from, to).map((x) => x.toString(16)).join(":");
  if (bestAt < 0) return hex(0, 8);
  return `${hex(0, bestAt)}::${hex(bestAt + bestLen, 8)}`;
}

/** Canonical text of a prefix (`10.0.0.0/8`, `fc00::/7`), for logs and messages. */
export function formatCidr(c: Cidr): string {
  return c.family === 4
    ? `${formatIPv4(c.address)}/${c.prefix}`
    : `${formatIPv6(c.address)}/${c.prefix}`;
}

/**
 * Prefixes flattened into typed arrays: network and mask words side by side, scanned linearly.
 * Exported for other per-query address checks (rebinding protection in lib/route/).
 */
export class PrefixSet {
  /** Pairs (network, mask) as signed 32-bit values, so a match is `(ip & mask) === net`. */
  readonly #v4: Int32Array;
  /** Per prefix: 4 network words then 4 mask words. */
  readonly #v6: Int32Array;
  readonly #v4Count: number;
  readonly #v6Count: number;
  /** True when a /0 of either family is present. */
  readonly hasV4Any: boolean;
  readonly hasV6Any: boolean;

  constructor(cidrs: readonly Cidr[]) {
    const v4 = cidrs.filter((c) => c.family === 4);
    const v6 = cidrs.filter((c) => c.family === 6);
    this.#v4Count = v4.length;
    this.#v6Count = v6.length;
    this.#v4 = new Int32Array(2 * v4.length);
    this.#v6 = new Int32Array(8 * v6.length);
    v4.forEach((c, i) => {
      const mask = wordMask(c.prefix);
      this.#v4[2 * i] = c.address & mask;
      this.#v4[2 * i + 1] = mask;
    });
    v6.forEach((c, i) => {
      for (let k = 0; k < 4; k++) {
        const mask = wordMask(c.prefix - 32 * k);
        this.#v6[8 * i + k] = (c.address as readonly number[])[k] & mask;
        this.#v6[8 * i + 4 + k] = mask;
      }
    });
    this.hasV4Any = v4.some((c) => c.prefix === 0);
    this.hasV6Any = v6.some((c) => c.prefix === 0);
  }

  /** `ip` as a signed 32-bit value (`x | 0`). */
  hasV4(ip: number): boolean {
    const t = this.#v4;
    for (let i = 0, n = 2 * this.#v4Count; i < n; i += 2) {
      if ((ip & t[i + 1]) === t[i]) return true;
    }
    return false;
  }

  hasV6(w: Uint32Array): boolean {
    const t = this.#v6;
    // Signed views of the words, to compare with the Int32Array entries.
    const w0 = w[0] | 0, w1 = w[1] | 0, w2 = w[2] | 0, w3 = w[3] | 0;
    for (let i = 0, n = 8 * this.#v6Count; i < n; i += 8) {
      if (
        (w0 & t[i + 4]) === t[i] && (w1 & t[i + 5]) === t[i + 1] &&
        (w2 & t[i + 6]) === t[i + 2] && (w3 & t[i + 7]) === t[i + 3]
      ) return true;
    }
    return false;
  }
}

/** Named clients an ACL admits or refuses whatever their address (lib/identity names them). */
export interface ClientNameRules {
  /** Names served from any address outside `deny` (e.g. a client with a certificate). */
  allowClients?: Iterable<string>;
  /** Names refused from every address. */
  denyClients?: Iterable<string>;
}

/**
 * Decides per query whether a client may use the proxy. Deny wins over allow; an address in
 * neither list, or one that does not parse, is refused (fail closed). IPv4-mapped IPv6 clients
 * (`::ffff:1.2.3.4`, how dual-stack sockets report IPv4 peers) are matched against the IPv4
 * prefixes only, so an IPv6 rule such as `::/0` never admits or blocks an IPv4 client.
 *
 * A named client (a certificate, a token, a `[[clients]]` entry) is decided by {@link admits}
 * in this order: a name in `denyClients` is refused; an address in `deny` is refused; a name in
 * `allowClients` is served; then the address must be in `allow`. Unnamed clients: as `allows`.
 */
export class Acl {
  readonly #allow: PrefixSet;
  readonly #deny: PrefixSet;
  readonly #allowClients: ReadonlySet<string>;
  readonly #denyClients: ReadonlySet<string>;
  /** The lists as given, for logs and the start-up warning. */
  readonly allow: readonly Cidr[];
  readonly deny: readonly Cidr[];

  constructor(allow: readonly Cidr[], deny: readonly Cidr[], names: ClientNameRules = {}) {
    this.allow = [...allow];
    this.deny = [...deny];
    this.#allow = new PrefixSet(allow);
    this.#deny = new PrefixSet(deny);
    this.#allowClients = new Set(names.allowClients ?? []);
    this.#denyClients = new Set(names.denyClients ?? []);
  }

  /** True when `ip` (a socket's peer address) may be served. Cheap: no allocation. */
  allows(ip: string): boolean {
    const family = parseClientAddress(ip, scratch);
    if (family === 4) {
      const v4 = scratch[3] | 0;
      return !this.#deny.hasV4(v4) && this.#allow.hasV4(v4);
    }
    if (family === 6) return !this.#deny.hasV6(scratch) && this.#allow.hasV6(scratch);
    return false;
  }

  /**
   * True when the client at `ip`, named `name` (null: unnamed), may be served; see the class
   * comment for the order. Cheap: two set lookups at most besides {@link allows}.
   */
  admits(ip: string, name: string | null): boolean {
    if (name === null) return this.allows(ip);
    if (this.#denyClients.has(name)) return false;
    if (!this.#allowClients.has(name)) return this.allows(ip);
    const family = parseClientAddress(ip, scratch);
    if (family === 4) return !this.#deny.hasV4(scratch[3] | 0);
    if (family === 6) return !this.#deny.hasV6(scratch);
    return true;
  }

  /**
   * True when the allow list contains 0.0.0.0/0 or ::/0: on a listener reachable from the
   * internet this is an open resolver, which start-up should warn about.
   */
  allowsEveryone(): boolean {
    return this.#allow.hasV4Any || this.#allow.hasV6Any;
  }
}

/** The default allow list's prefixes, as text (for the config reference and docs). */
export const DEFAULT_ALLOW_TEXT: readonly string[] = Object.freeze([
  "127.0.0.0/8", // loopback
  "::1/128",
  "10.0.0.0/8", // RFC 1918
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10", // RFC 6598 shared address space (carrier-grade NAT)
  "fc00::/7", // unique local addresses (RFC 4193)
  "169.254.0.0/16", // link-local
  "fe80::/10",
]);

function mustParse(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c === "string") throw new Error(`built-in prefix invalid: ${c}`);
  return c;
}

/**
 * Who may use the proxy when the configuration says nothing: loopback and the private,
 * shared (CGNAT), unique-local and link-local ranges, never the public internet. Safe to expose
 * on a LAN address; a public address needs an explicit, deliberate allow list.
 */
export const DEFAULT_ALLOW: readonly Cidr[] = Object.freeze(DEFAULT_ALLOW_TEXT.map(mustParse));

const NON_PUBLIC = new PrefixSet(DEFAULT_ALLOW);
const words = new Uint32Array(4);

/**
 * True when `ip` (a listener address) is reachable from the internet: the unspecified address
 * (0.0.0.0, ::, which bind every interface) or any address outside loopback, private, shared,
 * unique-local and link-local space. False for anything that is not an IP address. With an ACL
 * that allowsEveryone(), start-up should warn that this makes an open resolver.
 */
export function isPublicAddress(ip: string): boolean {
  const family = parseClientAddress(ip, words);
  if (family === 4) return !NON_PUBLIC.hasV4(words[3] | 0);
  if (family === 6) return !NON_PUBLIC.hasV6(words);
  return false;
}
