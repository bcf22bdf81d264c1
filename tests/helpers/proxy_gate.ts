/**
 * The PROXY gate as tests set it up (trusted proxies written as CIDR text) and read through it
 * (exactly n bytes from what follows the header).
 */
import { ProxyGate, type ProxyGateOptions } from "../../lib/identity/proxy_gate.ts";
import { parseCidrList } from "../../lib/policy/acl.ts";

/** A gate believing headers from `trusted` (e.g. ["127.0.0.1"]); throws on a bad CIDR. */
export function trustingGate(
  trusted: string[],
  opts: Omit<ProxyGateOptions, "trustedProxies"> = {},
): ProxyGate {
  const cidrs = parseCidrList(trusted);
  if (typeof cidrs === "string") throw new Error(cidrs);
  return new ProxyGate({ trustedProxies: cidrs, ...opts });
}

/** Reads exactly `n` bytes from `r` (e.g. a PrefixedConn); null if it ends first. */
export async function readExactly(
  r: { read(p: Uint8Array): Promise<number | null> },
  n: number,
): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const k = await r.read(out.subarray(got));
    if (k === null) return null;
    got += k;
  }
  return out;
}
