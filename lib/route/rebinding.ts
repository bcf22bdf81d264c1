/**
 * DNS rebinding protection (dnsmasq `stop-dns-rebind`, Unbound `private-address`): a public name
 * must not resolve to an address inside the network, or a web page from that name could reach
 * internal hosts with the browser's same-origin rules on its side. Off by default.
 *
 * For a forwarded answer whose name is not exempt, A and AAAA records holding private, loopback,
 * link-local, unique-local, shared (CGNAT) or unspecified addresses (IPv4-mapped IPv6 included)
 * are removed, as Unbound does, RR by RR (so are A/AAAA records whose RDATA has the wrong
 * length, which a lenient client might still read an address from); the rest of the answer (CNAMEs, public addresses)
 * stays. An answer left with no addresses is NOERROR with no data (NODATA), not SERVFAIL: as
 * Unbound notes, failing would break everyone with private space in public names. With
 * action `refuse`, such an answer is replaced by REFUSED instead (nothing of it reaches the
 * client), closer to dnsmasq.
 *
 * Exempt: names routed to an internal group (an explicit route to a group other than the
 * default: `ForwardDecision.allowPrivate`), and names under `allow` suffixes. The exemption is
 * decided on the question name, the name the client (browser) connects to: an exempt target
 * reached through a CNAME from a public name is still filtered, which closes the CNAME detour
 * around owner-name exemptions.
 *
 * A filtered reply is rebuilt: header, question, the kept answer-section records with names
 * written uncompressed, and the OPT record; the authority and additional sections are dropped
 * (both optional, and the additional section would need the same filtering). The pipeline stores
 * the filtered reply in the cache: a name belongs to one route, so the exemption cannot differ
 * between clients.
 */
import { type Message, type RecordInfo, RRType } from "../dns/message.ts";
import { decompressRdata } from "../dns/rdata_names.ts";
import { readName } from "../dns/wire.ts";
import { type Cidr, parseCidr, PrefixSet } from "../policy/acl.ts";
import { parseDomainName } from "./records.ts";
import { SuffixTable } from "./suffix_table.ts";

/**
 * The addresses a public name may not resolve to by default, declared once (docs derive):
 * "this network", RFC 1918, shared (RFC 6598), loopback, link-local, unspecified, unique-local.
 * IPv4-mapped IPv6 addresses are checked against the IPv4 ranges.
 */
export const DEFAULT_PRIVATE_RANGES: readonly string[] = Object.freeze([
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "::/128",
  "::1/128",
  "fc00::/7",
  "fe80::/10",
]);

/** What to do with an answer that has private addresses; see the module comment. */
export const REBINDING_ACTIONS = ["remove", "refuse"] as const;
/** One of REBINDING_ACTIONS. */
export type RebindingAction = (typeof REBINDING_ACTIONS)[number];

/** Settings of the filter (config `[routing]`). */
export interface RebindingOptions {
  /** Domains (and their subdomains) whose answers may hold private addresses. */
  allow?: readonly string[];
  /** Address ranges treated as private (default DEFAULT_PRIVATE_RANGES). */
  ranges?: readonly string[];
  action?: RebindingAction;
}

/** A rejected setting: which list, the value and why. */
export interface RebindingError {
  field: "allow" | "ranges";
  value: string;
  message: string;
}

/** The outcome for one reply. */
export type RebindingOutcome =
  /** Nothing private (or the name is exempt): send the reply as it is. */
  | { kind: "clean" }
  /** `removed` records were taken out; send `bytes` (decoded as `msg`). */
  | { kind: "filtered"; removed: number; bytes: Uint8Array }
  /** Action `refuse`: answer REFUSED (with EDE 15, Blocked) instead. */
  | { kind: "refuse"; removed: number };

const CLEAN: RebindingOutcome = Object.freeze({ kind: "clean" });
const words = new Uint32Array(4);
/** Largest DNS message; a rebuilt reply that would exceed it is refused instead. */
const MAX_MESSAGE = 0xffff;

/** Reads a 32-bit big-endian word. */
function u32(buf: Uint8Array, p: number): number {
  return ((buf[p] << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3]) >>> 0;
}

/** Removes private addresses from public names' answers; see the module comment. */
export class RebindingFilter {
  readonly action: RebindingAction;
  readonly #allow: SuffixTable<true>;
  readonly #ranges: PrefixSet;

  private constructor(allow: SuffixTable<true>, ranges: PrefixSet, action: RebindingAction) {
    this.#allow = allow;
    this.#ranges = ranges;
    this.action = action;
  }

  /** Builds a filter, or every problem with the settings (bad domain, bad range). */
  static build(opts: RebindingOptions = {}): RebindingFilter | RebindingError[] {
    const errors: RebindingError[] = [];
    const allow = new SuffixTable<true>();
    for (const domain of opts.allow ?? []) {
      const wire = parseDomainName(domain, "domain");
      if (typeof wire === "string") errors.push({ field: "allow", value: domain, message: wire });
      else allow.set(wire, true);
    }
    const cidrs: Cidr[] = [];
    for (const text of opts.ranges ?? DEFAULT_PRIVATE_RANGES) {
      const c = parseCidr(text);
      if (typeof c === "string") errors.push({ field: "ranges", value: text, message: c });
      else cidrs.push(c);
    }
    if (errors.length > 0) return errors;
    return new RebindingFilter(allow, new PrefixSet(cidrs), opts.action ?? "remove");
  }

  /** True when `rdata` (4 or 16 bytes at `p`) is in a private range. Allocation-free. */
  isPrivate(buf: Uint8Array, p: number, length: number): boolean {
    if (length === 4) return this.#ranges.hasV4(u32(buf, p) | 0);
    if (length !== 16) return false;
    for (let k = 0; k < 4; k++) words[k] = u32(buf, p + 4 * k);
    if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) {
      return this.#ranges.hasV4(words[3] | 0);
    }
    return this.#ranges.hasV6(words);
  }

  /**
   * Whether `rec` is an address record this filter removes: a private address in any class
   * (a client may not check it), or an A/AAAA whose RDATA has the wrong length for one (a
   * lenient client could read an address out of it).
   */
  #bad(reply: Uint8Array, rec: RecordInfo): boolean {
    if (rec.type === RRType.A) {
      return rec.rdataLength !== 4 || this.isPrivate(reply, rec.rdataOffset, 4);
    }
    if (rec.type === RRType.AAAA) {
      return rec.rdataLength !== 16 || this.isPrivate(reply, rec.rdataOffset, 16);
    }
    return false;
  }

  /**
   * Applies the policy to an upstream reply (`msg` is its decoded view). `allowPrivate` comes
   * from the route (ForwardDecision.allowPrivate). The common case — nothing private — costs a
   * scan of the records and allocates nothing.
   */
  apply(reply: Uint8Array, msg: Message, allowPrivate: boolean): RebindingOutcome {
    if (allowPrivate || !msg.question) return CLEAN;
    let removed = 0;
    for (const rec of msg.records) if (this.#bad(reply, rec)) removed++;
    if (removed === 0 || this.#allow.lookup(msg.question.name)) return CLEAN;
    if (this.action === "refuse") return { kind: "refuse", removed };
    const bytes = this.#rebuild(reply, msg);
    return bytes ? { kind: "filtered", removed, bytes } : { kind: "refuse", removed };
  }

  /** The reply without private addresses (see the module comment), or null if unbuildable. */
  #rebuild(reply: Uint8Array, msg: Message): Uint8Array | null {
    const parts: Uint8Array[] = [];
    let kept = 0;
    let size = msg.answerStart;
    let ownerStart = msg.answerStart;
    for (const rec of msg.records) {
      const start = ownerStart;
      ownerStart = rec.rdataOffset + rec.rdataLength;
      if (msg.edns && ownerStart === msg.edns.start) ownerStart = msg.edns.end;
      if (rec.section !== 1 || this.#bad(reply, rec)) continue;
      const owner = readName(reply, start);
      if (!owner.ok) return null;
      const rdata = decompressRdata(reply, rec);
      if (!rdata) return null;
      const fixed = reply.subarray(rec.ttlOffset - 4, rec.ttlOffset + 4); // type, class, TTL
      const rr = new Uint8Array(owner.value.wire.length + 10 + rdata.length);
      rr.set(owner.value.wire, 0);
      rr.set(fixed, owner.value.wire.length);
      rr[rr.length - rdata.length - 2] = rdata.length >>> 8;
      rr[rr.length - rdata.length - 1] = rdata.length & 0xff;
      rr.set(rdata, rr.length - rdata.length);
      parts.push(rr);
      size += rr.length;
      kept++;
    }
    const opt = msg.edns ? reply.subarray(msg.edns.start, msg.edns.end) : null;
    if (opt) size += opt.length;
    if (size > MAX_MESSAGE) return null;
    const out = new Uint8Array(size);
    out.set(reply.subarray(0, msg.answerStart)); // header and question, as received
    out[6] = kept >>> 8;
    out[7] = kept & 0xff;
    out[8] = out[9] = 0;
    out[10] = 0;
    out[11] = opt ? 1 : 0;
    let p = msg.answerStart;
    for (const rr of parts) {
      out.set(rr, p);
      p += rr.length;
    }
    if (opt) out.set(opt, p);
    return out;
  }
}
