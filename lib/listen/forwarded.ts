/**
 * Which client a DoH request came from, when it arrives through a load balancer: the peer of
 * the TCP connection, unless that peer is a trusted proxy, in which case the client is read from
 * the header the proxy sets. Pure: no sockets, no clock.
 *
 * Proxies that pass the header on append to it (nginx `$proxy_add_x_forwarded_for`, cloud load
 * balancers, Envoy), so everything left of the entry our own proxy added was written by the
 * client and proves nothing. The chain is therefore walked from the right: each entry added by
 * a trusted proxy is skipped, and the first entry that is not a trusted proxy is the client.
 * Entries further left are never looked at. When every entry is a trusted proxy, the leftmost
 * is the client. An entry reached in this walk that is missing or is not an address (garbage,
 * RFC 7239 `unknown` or an obfuscated identifier) makes the request unattributable: it is
 * refused rather than charged to the proxy, whose address access rules usually allow (that
 * would fail open). A header from a peer that is not a trusted proxy is ignored.
 *
 * Header formats, chosen by the header's name:
 * - `forwarded` (RFC 7239): `for=` of each element, quoted IPv6 `"[2001:db8::1]:4711"` (an
 *   unquoted `for=192.0.2.1:80` is tolerated);
 * - a name ending in `forwarded-for` (X-Forwarded-For): comma-separated addresses, each
 *   optionally with a port (`192.0.2.1:5`, `[2001:db8::1]:5`) or a bare IPv6 address;
 * - any other name (`x-real-ip`, `cf-connecting-ip`, ...): exactly one address, set by the proxy.
 * Several header lines count as one comma-separated list in order (as `Headers.get` joins them).
 */
import type { Acl } from "../policy/acl.ts";
import { parseIPv4, parseIPv6 } from "../net/ip.ts";

/** An address and port (0 when not given), as the pipeline's client. */
export interface ClientAddress {
  hostname: string;
  port: number;
}

/** The client, or why the request cannot be attributed to one (answered with 400). */
export type ClientResult =
  | { ok: true; client: ClientAddress }
  | { ok: false; reason: string };

/** How a client-address header is written; derived from its name by `headerFormat`. */
export type HeaderFormat = "forwarded" | "list" | "single";

/** The format of the header called `name` (case-insensitive): see the module comment. */
export function headerFormat(name: string): HeaderFormat {
  const lower = name.toLowerCase();
  if (lower === "forwarded") return "forwarded";
  return lower.endsWith("forwarded-for") ? "list" : "single";
}

/** What the resolver needs: whom to trust, and which header they write the client into. */
export interface ClientResolverOptions {
  /** Peers whose header is believed; null or empty: none (the peer is always the client). */
  trusted: Acl | null;
  /** The header name, any case. */
  header: string;
}

/** Decides the client of each request from its peer and the configured header. */
export class ClientResolver {
  readonly header: string;
  readonly format: HeaderFormat;
  readonly #trusted: Acl | null;

  constructor(opts: ClientResolverOptions) {
    this.header = opts.header.toLowerCase();
    this.format = headerFormat(this.header);
    this.#trusted = opts.trusted;
  }

  /**
   * The client of a request from `peer` whose configured header is `value` (null if absent; the
   * lines of a repeated header joined by ", ").
   */
  resolve(peer: ClientAddress, value: string | null): ClientResult {
    if (!this.#isTrusted(peer.hostname)) return { ok: true, client: peer };
    if (value === null) return this.#refuse("is missing");
    if (this.format === "single") {
      const node = value.includes(",") ? null : parseListEntry(value.trim());
      return node ? { ok: true, client: node } : this.#refuse("is not one address");
    }
    const chain = this.format === "forwarded" ? forwardedChain(value) : listChain(value);
    // Right to left: skip our own proxies; the first other address is the client.
    let leftmost: ClientAddress | null = null;
    for (let i = chain.length - 1; i >= 0; i--) {
      const hop = chain[i];
      if (hop === null) {
        return this.#refuse(`has an entry that is not an address (${i + 1} of ${chain.length})`);
      }
      if (!this.#isTrusted(hop.hostname)) return { ok: true, client: hop };
      leftmost = hop;
    }
    return leftmost ? { ok: true, client: leftmost } : this.#refuse("is empty");
  }

  #isTrusted(ip: string): boolean {
    return this.#trusted?.allows(ip) ?? false;
  }

  #refuse(why: string): ClientResult {
    return { ok: false, reason: `${this.header} from a trusted proxy ${why}` };
  }
}

/** X-Forwarded-For entries, left to right; null for an entry that is not an address. */
export function listChain(value: string): (ClientAddress | null)[] {
  return value.split(",").map((entry) => parseListEntry(entry.trim()));
}

/**
 * An X-Forwarded-For entry: an IPv4 or IPv6 address, `1.2.3.4:5`, `[2001:db8::1]` or
 * `[2001:db8::1]:5`. No zone ids, no host names, nothing else.
 */
export function parseListEntry(entry: string): ClientAddress | null {
  if (entry.startsWith("[")) return parseBracketed(entry);
  const colon = entry.indexOf(":");
  if (colon >= 0 && entry.indexOf(":", colon + 1) < 0) {
    // One colon: IPv4 with a port.
    const port = parsePort(entry.slice(colon + 1));
    const host = entry.slice(0, colon);
    return port !== null && parseIPv4(host) >= 0 ? { hostname: host, port } : null;
  }
  return isAddress(entry) ? { hostname: entry, port: 0 } : null;
}

/**
 * The `for=` node of each RFC 7239 element, left to right; null for an element whose `for` is
 * missing, repeated, `unknown`, obfuscated or malformed. A syntax error (an unterminated quoted
 * string, junk after a value) spoils the element it is in and, because the element boundaries
 * after it can no longer be trusted, every element to its right.
 */
export function forwardedChain(value: string): (ClientAddress | null)[] {
  const out: (ClientAddress | null)[] = [];
  let i = 0;
  const n = value.length;
  const skipOws = () => {
    while (i < n && (value[i] === " " || value[i] === "\t")) i++;
  };
  for (;;) {
    // One element: pairs separated by ";", up to "," or the end.
    let node: ClientAddress | null = null;
    let fors = 0;
    let broken = false;
    for (;;) {
      skipOws();
      if (i >= n || value[i] === "," || value[i] === ";") {
        // An empty pair is allowed by the grammar (`[ forwarded-pair ]`).
      } else {
        const nameStart = i;
        while (i < n && isTchar(value.charCodeAt(i))) i++;
        const name = value.slice(nameStart, i).toLowerCase();
        if (name.length === 0 || value[i] !== "=") {
          broken = true;
          break;
        }
        i++;
        let pairValue: string;
        if (value[i] === '"') {
          const quoted = readQuoted(value, i);
          if (quoted === null) {
            broken = true;
            break;
          }
          [pairValue, i] = quoted;
        } else {
          // Leniently, an unquoted value may hold ":" and brackets (RFC 7239 wants them quoted).
          const start = i;
          while (i < n && (isTchar(value.charCodeAt(i)) || ":[]".includes(value[i]))) i++;
          pairValue = value.slice(start, i);
        }
        skipOws();
        if (i < n && value[i] !== ";" && value[i] !== ",") {
          broken = true;
          break;
        }
        if (name === "for") {
          fors++;
          node = parseForwardedNode(pairValue);
        }
      }
      if (i < n && value[i] === ";") {
        i++;
        continue;
      }
      break;
    }
    if (broken) {
      // Element boundaries after a syntax error are guesswork: the rest is unusable.
      out.push(null);
      return out;
    }
    out.push(fors === 1 ? node : null);
    if (i >= n) return out;
    i++; // ","
  }
}

/**
 * An RFC 7239 node: `IPv4[:port]` or `"[IPv6]"[:port]` (quotes already removed). `unknown`,
 * obfuscated identifiers (`_hidden`) and bare IPv6 are not addresses; an obfuscated port
 * (`_p1`) leaves the port unknown (0).
 */
export function parseForwardedNode(node: string): ClientAddress | null {
  if (node.startsWith("[")) return parseBracketed(node, true);
  const colon = node.indexOf(":");
  const host = colon < 0 ? node : node.slice(0, colon);
  if (parseIPv4(host) < 0) return null;
  if (colon < 0) return { hostname: host, port: 0 };
  const port = parseForwardedPort(node.slice(colon + 1));
  return port === null ? null : { hostname: host, port };
}

/** `[IPv6]` or `[IPv6]:port`; with `obfuscatedPort`, RFC 7239's `_token` port counts as 0. */
function parseBracketed(text: string, obfuscatedPort = false): ClientAddress | null {
  const close = text.indexOf("]");
  if (close < 0) return null;
  const host = text.slice(1, close);
  if (!parseIPv6(host, scratch)) return null;
  const rest = text.slice(close + 1);
  if (rest.length === 0) return { hostname: host, port: 0 };
  if (rest[0] !== ":") return null;
  const port = obfuscatedPort ? parseForwardedPort(rest.slice(1)) : parsePort(rest.slice(1));
  return port === null ? null : { hostname: host, port };
}

const scratch = new Uint32Array(4);

function isAddress(text: string): boolean {
  return parseIPv4(text) >= 0 || parseIPv6(text, scratch);
}

/** A decimal port 0..65535 of at most five digits, or null. */
function parsePort(text: string): number | null {
  if (!/^[0-9]{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port <= 65535 ? port : null;
}

/** RFC 7239 node-port: a port, or an obfuscated one (`_` then [A-Za-z0-9._-]), which is 0. */
function parseForwardedPort(text: string): number | null {
  if (/^_[A-Za-z0-9._-]+$/.test(text)) return 0;
  return parsePort(text);
}

/**
 * The quoted-string starting at `value[at]` (a `"`): its unescaped text and the index after the
 * closing quote; null if it never closes.
 */
function readQuoted(value: string, at: number): [string, number] | null {
  let text = "";
  for (let i = at + 1; i < value.length; i++) {
    const c = value[i];
    if (c === '"') return [text, i + 1];
    if (c === "\\") {
      i++;
      if (i >= value.length) return null;
      text += value[i];
    } else {
      text += c;
    }
  }
  return null;
}

/** RFC 9110 tchar: the characters of a token. */
function isTchar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
    "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c));
}
