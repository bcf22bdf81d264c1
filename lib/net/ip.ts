/**
 * The one IP literal parser: configuration checks, upstream and listener addresses, and the
 * per-query policy checks (ACL, rate limiting, identity) all read addresses here. Every query's
 * client address goes through it, so it is allocation-free: IPv4 becomes one 32-bit integer and
 * IPv6 four 32-bit words written into a caller-owned array (no regex, no split, no BigInt).
 *
 * The syntax is strict, because listeners bind and upstreams connect to these literals verbatim:
 * dotted quads without shorthand ("1.1") or leading zeros (octal on some systems), IPv6 with at
 * most one `::` and an optional dotted-quad tail, no zone ids (parseClientAddress alone ignores
 * one, as sockets report it).
 */

const DOT = 0x2e;
const COLON = 0x3a;

/** Value of a hex digit char code, or -1. */
function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57; // a-f
  if (c >= 0x41 && c <= 0x46) return c - 0x37; // A-F
  return -1;
}

/**
 * The dotted quad in `text[start, end)` as an unsigned 32-bit integer, or -1 if it is not one
 * (wrong number of parts, a part above 255, a leading zero, any other character).
 */
export function parseIPv4Range(text: string, start: number, end: number): number {
  let value = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    const first = i;
    let octet = 0;
    while (i < end) {
      const d = text.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) break;
      octet = octet * 10 + d;
      i++;
    }
    const digits = i - first;
    if (digits === 0 || digits > 3 || octet > 255) return -1;
    if (digits > 1 && text.charCodeAt(first) === 0x30) return -1; // leading zero (octal elsewhere)
    value = value * 256 + octet;
    parts++;
    if (parts < 4) {
      if (i >= end || text.charCodeAt(i) !== DOT) return -1;
      i++;
    }
  }
  return i === end ? value : -1;
}

/** `text` as an unsigned 32-bit IPv4 address, or -1; the hot-path form of `isIPv4`. */
export function parseIPv4(text: string): number {
  return parseIPv4Range(text, 0, text.length);
}

// Groups of the address being parsed; parsing is synchronous, so one module buffer is safe.
const groups = new Uint16Array(8);

/**
 * Parses the IPv6 address in `text[0, end)` into `out` (four 32-bit words, most significant
 * first). Returns false, leaving `out` unspecified, when it is not an IPv6 address.
 */
export function parseIPv6Range(text: string, end: number, out: Uint32Array): boolean {
  let n = 0; // groups written
  let gap = -1; // group index where "::" stands
  let i = 0;
  if (end >= 2 && text.charCodeAt(0) === COLON) {
    if (text.charCodeAt(1) !== COLON) return false;
    gap = 0;
    i = 2;
  }
  if (i < end) {
    for (;;) {
      const start = i;
      let value = 0;
      while (i < end && i - start < 4) {
        const d = hexDigit(text.charCodeAt(i));
        if (d < 0) break;
        value = value * 16 + d;
        i++;
      }
      if (i === start) return false;
      if (i < end && text.charCodeAt(i) === DOT) {
        // A dotted-quad tail stands for the last two groups.
        if (n > 6) return false;
        const v4 = parseIPv4Range(text, start, end);
        if (v4 < 0) return false;
        groups[n++] = v4 >>> 16;
        groups[n++] = v4 & 0xffff;
        break;
      }
      if (n === 8) return false;
      groups[n++] = value;
      if (i === end) break;
      if (text.charCodeAt(i) !== COLON) return false; // a fifth hex digit or a stray character
      i++;
      if (i < end && text.charCodeAt(i) === COLON) {
        if (gap >= 0) return false; // a second "::"
        gap = n;
        i++;
        if (i === end) break;
      } else if (i === end) {
        return false; // a trailing single colon
      }
    }
  } else if (gap < 0) {
    return false; // empty
  }
  if (gap < 0) {
    if (n !== 8) return false;
  } else {
    if (n > 7) return false; // "::" must stand for at least one group
    const tail = n - gap;
    for (let k = 0; k < tail; k++) groups[7 - k] = groups[n - 1 - k];
    for (let k = gap; k < 8 - tail; k++) groups[k] = 0;
  }
  out[0] = (groups[0] << 16 | groups[1]) >>> 0;
  out[1] = (groups[2] << 16 | groups[3]) >>> 0;
  out[2] = (groups[4] << 16 | groups[5]) >>> 0;
  out[3] = (groups[6] << 16 | groups[7]) >>> 0;
  return true;
}

/** `text` as an IPv6 address written into `out` (four 32-bit words); false if it is not one. */
export function parseIPv6(text: string, out: Uint32Array): boolean {
  return parseIPv6Range(text, text.length, out);
}

/** True when four IPv6 words are an IPv4-mapped address (::ffff:a.b.c.d, RFC 4291 2.5.5.2). */
export function isMappedIPv4(words: Uint32Array): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

/**
 * A client address as the policy sees it, parsed into `out`: 4 with the IPv4 address in
 * `out[3]` (plain IPv4, or IPv4-mapped IPv6 as dual-stack sockets report IPv4 peers), 6 with
 * the IPv6 words in `out`, 0 if `ip` is neither. A zone suffix (`fe80::1%eth0`), which some
 * systems attach to link-local peers, is ignored: it names an interface, not an address.
 */
export function parseClientAddress(ip: string, out: Uint32Array): 0 | 4 | 6 {
  const v4 = parseIPv4(ip);
  if (v4 >= 0) {
    out[3] = v4;
    return 4;
  }
  const zone = ip.indexOf("%");
  const end = zone < 0 ? ip.length : zone;
  if (!parseIPv6Range(ip, end, out)) return 0;
  return isMappedIPv4(out) ? 4 : 6;
}

// Words of an address parsed only to be checked or compared; synchronous, so one buffer is safe.
const checked = new Uint32Array(4);

/** True for a dotted-quad IPv4 address, each part 0-255 without leading zeros. */
export function isIPv4(text: string): boolean {
  return parseIPv4(text) >= 0;
}

/** True for an IPv6 address (without brackets), including `::` forms and embedded IPv4. */
export function isIPv6(text: string): boolean {
  return parseIPv6(text, checked);
}

/** True for either family. */
export function isIP(text: string): boolean {
  return isIPv4(text) || isIPv6(text);
}

/**
 * A canonical text for comparing two IP literals of the same family ("::1" and
 * "0:0:0:0:0:0:0:1" have the same key); anything not IPv6 is its own key.
 */
export function ipKey(text: string): string {
  if (!parseIPv6(text, checked)) return text;
  const groups: string[] = [];
  for (const w of checked) groups.push((w >>> 16).toString(16), (w & 0xffff).toString(16));
  return groups.join(":");
}
