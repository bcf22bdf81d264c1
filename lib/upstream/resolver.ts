/**
 * How upstreams named by hostname get addresses to dial: the interface the stream, DoH and
 * tunnel code depend on, apart from its implementation (bootstrap.ts, which itself queries plain
 * upstreams), so that neither imports the other.
 */

/** The outcome of resolving a hostname: IP literals, IPv4 first, or why there are none. */
export type Lookup = { ok: true; addresses: string[] } | { ok: false; message: string };

/** Anything that turns an upstream's hostname into addresses to dial. */
export interface AddressResolver {
  lookup(hostname: string): Promise<Lookup>;
}

/** A resolver that always answers one IP (a DoH upstream by IP with a tls_name). */
export function fixedAddress(ip: string): AddressResolver {
  return { lookup: () => Promise.resolve({ ok: true, addresses: [ip] }) };
}
