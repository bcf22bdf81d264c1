/**
 * Strict IP literal checks. Listeners bind and upstreams connect to these verbatim, so we accept
 * only unambiguous forms: no shorthand IPv4 ("1.1"), no leading zeros (octal on some systems),
 * no IPv6 zone ids.
 */

/** True for a dotted-quad IPv4 address, each part 0-255 without leading zeros. */
export function isIPv4(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && +p <= 255);
}

/** True for an IPv6 address (without brackets), including `::` forms and embedded IPv4. */
export function isIPv6(text: string): boolean {
  return ipv6Groups(text) !== null;
}

/** True for either family. */
export function isIP(text: string): boolean {
  return isIPv4(text) || isIPv6(text);
}

/**
 * The eight 16-bit groups of an IPv6 address, or null if it is not one. Used to compare
 * addresses written differently ("::1" and "0:0:0:0:0:0:0:1").
 */
export function ipv6Groups(text: string): number[] | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  if (halves.length === 1) {
    const groups = parseGroups(halves[0], true);
    return groups && groups.length === 8 ? groups : null;
  }
  const head = parseGroups(halves[0], false);
  const tail = parseGroups(halves[1], true);
  if (!head || !tail || head.length + tail.length > 7) return null;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/** A canonical text for comparing two IP literals of the same family. */
export function ipKey(text: string): string {
  const groups = ipv6Groups(text);
  return groups ? groups.map((g) => g.toString(16)).join(":") : text;
}

function parseGroups(part: string, allowIPv4Tail: boolean): number[] | null {
  if (part === "") return [];
  const groups = part.split(":");
  const out: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i];
    if (allowIPv4Tail && i === groups.length - 1 && g.includes(".")) {
      if (!isIPv4(g)) return null;
      const [a, b, c, d] = g.split(".").map(Number);
      out.push((a << 8) | b, (c << 8) | d);
    } else if (/^[0-9A-Fa-f]{1,4}$/.test(g)) {
      out.push(parseInt(g, 16));
    } else {
      return null;
    }
  }
  return out;
}
