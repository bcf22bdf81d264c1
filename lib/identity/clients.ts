/**
 * Named clients by network (`[[clients]]` entries: a name and the prefixes it owns), and the
 * bounded set of names metrics may use as labels.
 *
 * A named client can be used by the ACL and the rate limiter and appears in the query log; the
 * name from a certificate or a token wins over one from the address (it is proven, an address is
 * only where the query came from). Lookup is longest-prefix: "office" = 10.0.0.0/8 and
 * "lab" = 10.9.0.0/16 make 10.9.1.1 the lab's. Unnamed clients keep today's address-based
 * behaviour.
 */
import { type Cidr, formatCidr, parseCidr } from "../policy/acl.ts";
import { parseClientAddress } from "../net/ip.ts";
import { ANONYMOUS_LABEL, clientNameProblem } from "./names.ts";

/** One `[[clients]]` entry as configured. */
export interface ClientEntry {
  name: string;
  networks: readonly string[];
}

/** Most clients in a configuration, and so most metric label values (plus "anonymous"). */
export const MAX_NAMED_CLIENTS = 1_000;

/**
 * Why the entries are unusable (the first problem, naming the entry and value), or null:
 * invalid names or prefixes, a name used twice, one prefix given to two clients, too many.
 */
export function clientsProblem(entries: readonly ClientEntry[]): string | null {
  if (entries.length > MAX_NAMED_CLIENTS) {
    return `clients: ${entries.length} entries is more than the limit of ${MAX_NAMED_CLIENTS}`;
  }
  const names = new Set<string>();
  const owners = new Map<string, string>();
  for (const [i, e] of entries.entries()) {
    const where = `clients[${i}]`;
    const nameProblem = clientNameProblem(e.name);
    if (nameProblem) return `${where}.name: ${nameProblem}`;
    if (names.has(e.name)) return `${where}.name: ${JSON.stringify(e.name)} appears twice`;
    names.add(e.name);
    for (const n of e.networks) {
      const c = parseCidr(n);
      if (typeof c === "string") return `${where}.networks (${JSON.stringify(e.name)}): ${c}`;
      const key = formatCidr(c);
      const owner = owners.get(key);
      if (owner !== undefined) {
        return `${where}.networks: ${key} belongs to both ${JSON.stringify(owner)} and ` +
          `${JSON.stringify(e.name)}`;
      }
      owners.set(key, e.name);
    }
  }
  return null;
}

function wordMask(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return 0xffffffff;
  return (0xffffffff << (32 - bits)) >>> 0;
}

/** Client names by network, longest prefix first; immutable (a reload builds a new one). */
export class ClientDirectory {
  /** Network, mask and owner index per IPv4 prefix, longest prefix first. */
  readonly #v4: Uint32Array;
  readonly #v4Owner: Int32Array;
  /** 4 network words, 4 mask words per IPv6 prefix, longest prefix first. */
  readonly #v6: Uint32Array;
  readonly #v6Owner: Int32Array;
  readonly #names: string[];
  readonly #words = new Uint32Array(4);

  /** Throws RangeError with {@link clientsProblem}'s message for invalid entries. */
  constructor(entries: readonly ClientEntry[]) {
    const problem = clientsProblem(entries);
    if (problem) throw new RangeError(problem);
    this.#names = entries.map((e) => e.name);
    const prefixes: { cidr: Cidr; owner: number }[] = [];
    entries.forEach((e, owner) => {
      for (const n of e.networks) prefixes.push({ cidr: parseCidr(n) as Cidr, owner });
    });
    prefixes.sort((a, b) => b.cidr.prefix - a.cidr.prefix);
    const v4 = prefixes.filter((p) => p.cidr.family === 4);
    const v6 = prefixes.filter((p) => p.cidr.family === 6);
    this.#v4 = new Uint32Array(2 * v4.length);
    this.#v4Owner = Int32Array.from(v4, (p) => p.owner);
    v4.forEach((p, i) => {
      this.#v4[2 * i] = p.cidr.address as number;
      this.#v4[2 * i + 1] = wordMask(p.cidr.prefix);
    });
    this.#v6 = new Uint32Array(8 * v6.length);
    this.#v6Owner = Int32Array.from(v6, (p) => p.owner);
    v6.forEach((p, i) => {
      const address = p.cidr.address as readonly number[];
      for (let k = 0; k < 4; k++) {
        this.#v6[8 * i + k] = address[k];
        this.#v6[8 * i + 4 + k] = wordMask(p.cidr.prefix - 32 * k);
      }
    });
  }

  /** The configured names, in configuration order. */
  get names(): readonly string[] {
    return this.#names;
  }

  /** The name owning the longest prefix that contains `ip`, or null. Allocation-free. */
  lookup(ip: string): string | null {
    const w = this.#words;
    const family = parseClientAddress(ip, w);
    if (family === 4) {
      const a = w[3];
      const t = this.#v4;
      for (let i = 0; i < this.#v4Owner.length; i++) {
        if (((a & t[2 * i + 1]) >>> 0) === t[2 * i]) return this.#names[this.#v4Owner[i]];
      }
    } else if (family === 6) {
      const t = this.#v6;
      for (let i = 0; i < this.#v6Owner.length; i++) {
        const o = 8 * i;
        if (
          ((w[0] & t[o + 4]) >>> 0) === t[o] && ((w[1] & t[o + 5]) >>> 0) === t[o + 1] &&
          ((w[2] & t[o + 6]) >>> 0) === t[o + 2] && ((w[3] & t[o + 7]) >>> 0) === t[o + 3]
        ) return this.#names[this.#v6Owner[i]];
      }
    }
    return null;
  }
}

/**
 * Metric label values for clients with bounded cardinality: a declared name (a `[[clients]]`
 * entry or a token's name) is its own label; everything else, including certificate names not
 * declared anywhere, is "anonymous". Declare a `[[clients]]` entry (networks may be empty) to
 * give a certificate client its own label.
 */
export class ClientLabels {
  readonly #known: ReadonlySet<string>;

  /** Throws RangeError beyond {@link MAX_NAMED_CLIENTS} distinct names. */
  constructor(names: Iterable<string>) {
    const known = new Set(names);
    known.delete(ANONYMOUS_LABEL);
    if (known.size > MAX_NAMED_CLIENTS) {
      throw new RangeError(`${known.size} client names is more than ${MAX_NAMED_CLIENTS} labels`);
    }
    this.#known = known;
  }

  /** The label for a query's client name (undefined/null: unnamed). */
  label(name: string | null | undefined): string {
    return name !== null && name !== undefined && this.#known.has(name) ? name : ANONYMOUS_LABEL;
  }

  /** Every label this can return, for pre-registering series. */
  all(): string[] {
    return [...this.#known, ANONYMOUS_LABEL];
  }
}
