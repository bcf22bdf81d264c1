/**
 * EDNS per hop (RFC 6891 §6.1.1: OPT is hop-by-hop). The proxy never relays a client's OPT
 * upstream or an upstream's OPT to the client: each side gets an OPT built for that hop. Queries
 * are rewritten at byte level (header and question copied, a fresh OPT appended), never
 * re-encoded. Pure and bounds-checked: inputs are already-decoded messages.
 */

import { EDE_OPTION_CODE } from "./ede.ts";
import { type Edns, type EdnsOption, Flag, HEADER_SIZE, type Message, Rcode } from "./message.ts";
import { appendOpt, optSize, withoutOpt, writeOpt } from "./reply.ts";

/** EDNS option codes the proxy acts on (IANA "DNS EDNS0 Option Codes"). */
export const OptionCode = {
  /** RFC 7871 EDNS Client Subnet: end-to-end, but a privacy leak, so dropped unless configured. */
  ECS: 8,
  /** RFC 7873 DNS cookies: bound to one client/server pair, never forwarded. */
  COOKIE: 10,
  /** RFC 7828 edns-tcp-keepalive: how long a server keeps an idle stream open. */
  TCP_KEEPALIVE: 11,
  /** RFC 7830 padding: hides message sizes on encrypted transports. */
  PADDING: 12,
  /** RFC 8914 Extended DNS Error: why an answer is what it is (lib/dns/ede.ts). */
  EDE: EDE_OPTION_CODE,
} as const;

/** RFC 8467 §4.1 block-length padding: queries are padded to a multiple of 128 bytes. */
export const QUERY_PADDING_BLOCK = 128;

/** RFC 8467 §4.1: responses to padded queries are padded to a multiple of 468 bytes. */
export const RESPONSE_PADDING_BLOCK = 468;

/** The largest DNS message (a stream's 2-byte length prefix); padding never goes past it. */
const MAX_MESSAGE_SIZE = 65535;

/**
 * Longest valid ECS option data: family (2) + prefix lengths (2) + at most 16 address bytes.
 * Anything longer is malformed and is dropped rather than forwarded.
 */
const MAX_ECS_DATA = 20;

/** The header bits of a client query that carry meaning upstream (RFC 6840 §5.7-5.9). */
const FORWARDED_QUERY_FLAGS = 0x7800 /* opcode */ | Flag.RD | Flag.CD;

/** How the proxy states EDNS on one upstream hop. */
export interface HopEdns {
  /** Our own advertised UDP payload size towards this upstream (the client's is not relayed). */
  udpSize: number;
  /** Pad to a multiple of {@link QUERY_PADDING_BLOCK} bytes (encrypted transports only). */
  pad: boolean;
  /** Forward the client's EDNS Client Subnet option; RFC 7871 §11.1 privacy says default off. */
  keepEcs: boolean;
  /** Ask for the server's idle timeout (RFC 7828 §3.2.1: on TCP and TLS only, never UDP). */
  keepalive?: boolean;
}

/**
 * The query to send upstream: the client's header (opcode, RD, CD kept; AD always set, so the
 * upstream always says whether it validated: the answer is cached for every client and AD is
 * cleared per client on the way out; answer and authority counts zeroed) and question, then a new OPT with our UDP size, the client's DO bit, and only the
 * options that belong on the next hop: ECS if `keepEcs`, an empty edns-tcp-keepalive if asked, and
 * padding if `pad` (after everything else, so the padded total is a multiple of 128). The client's
 * cookies, padding, keepalive and any other option are dropped. The ID is left for the upstream to
 * set. Always adds an OPT, even when the client sent none: padding and keepalive need one, and
 * larger upstream answers make better cache entries.
 */
export function upstreamQuery(query: Uint8Array, msg: Message, opts: HopEdns): Uint8Array {
  const q = msg.question;
  const qLen = q ? q.name.length + 4 : 0;
  const options: EdnsOption[] = [];
  if (opts.keepEcs && msg.edns) {
    for (const o of msg.edns.options) {
      if (o.code === OptionCode.ECS && o.data.length <= MAX_ECS_DATA) {
        options.push({ code: o.code, data: o.data.slice() });
      }
    }
  }
  if (opts.keepalive) options.push(KEEPALIVE_REQUEST);
  if (opts.pad) {
    const unpadded = HEADER_SIZE + qLen + optSize(options) + 4;
    const fill = (QUERY_PADDING_BLOCK - (unpadded % QUERY_PADDING_BLOCK)) % QUERY_PADDING_BLOCK;
    options.push(QUERY_PADDING[fill]); // zero octets, RFC 7830 §4
  }
  if (opts.udpSize < 0 || opts.udpSize > 0xffff) throw new RangeError("udpSize out of range");
  // One buffer: header, question, OPT (the hop's query is built once per miss).
  const out = new Uint8Array(HEADER_SIZE + qLen + optSize(options));
  out.set(query.subarray(0, 2)); // ID; the upstream overwrites it
  const flags = (msg.header.flags & FORWARDED_QUERY_FLAGS) | Flag.AD;
  out[2] = flags >> 8;
  out[3] = flags & 0xff;
  if (q) {
    out[5] = 1; // QDCOUNT; AN/NS stay 0
    // Written from the decoded, uncompressed name: a pointer copied verbatim could dangle.
    out.set(q.name, HEADER_SIZE);
    const t = HEADER_SIZE + q.name.length;
    out[t] = q.qtype >> 8;
    out[t + 1] = q.qtype & 0xff;
    out[t + 2] = q.qclass >> 8;
    out[t + 3] = q.qclass & 0xff;
  }
  out[11] = 1; // ARCOUNT: our OPT
  writeOpt(out, HEADER_SIZE + qLen, opts.udpSize, 0, msg.edns?.dnssecOk ?? false, options);
  return out;
}

/** The edns-tcp-keepalive option a query carries to ask for the server's timeout (no data). */
const KEEPALIVE_REQUEST: EdnsOption = { code: OptionCode.TCP_KEEPALIVE, data: new Uint8Array(0) };

/** Padding options of every length a query can need, made once (their data is never written). */
const QUERY_PADDING: readonly EdnsOption[] = Array.from(
  { length: QUERY_PADDING_BLOCK },
  (_, n) => ({ code: OptionCode.PADDING, data: new Uint8Array(n) }),
);

/** What the client's query said, and what its answer should carry, on the client's own hop. */
export interface ClientEdns {
  /** The client's OPT, or null when it did not use EDNS (then the answer carries no OPT). */
  edns: Edns | null;
  /** The client query's header flags word (its RD is echoed, its AD matters, RFC 6840 §5.7). */
  flags: number;
  /** The UDP size we advertise to clients (`[server] udp_max_size`). */
  udpSize: number;
  /** Rcode bits above the header's 4 (BADVERS, an upstream's extended rcode). Default 0. */
  extendedRcode?: number;
  /** Options for the client's OPT: EDE, the ECS echo, the upstream's EDEs (never padding). */
  options?: readonly EdnsOption[];
  /**
   * Pad to a multiple of {@link RESPONSE_PADDING_BLOCK} (RFC 7830 §4, RFC 8467): the caller
   * sets it on encrypted transports for a query that was padded, never on plain UDP/TCP.
   */
  pad?: boolean;
  /** Keep AA: data served locally that we are the authority for (our CHAOS identity). */
  authoritative?: boolean;
}

const NO_OPTIONS: readonly EdnsOption[] = [];

/**
 * Finishes an OPT-less answer (relayed, cached or built here) for the client's hop, the one
 * place that does: AA cleared (dotproxy is not authoritative for what it relays or caches,
 * unless `authoritative`), RD echoing the query's, AD cleared unless the client set AD or DO
 * (RFC 6840 §5.8: only a client that asked may rely on it); then, if the client used EDNS, our
 * OPT (our UDP size, the client's DO echoed, the extended rcode, `options`, padding last). A
 * rcode needing EDNS (above 15) for a client without EDNS becomes SERVFAIL, since the client
 * could not read it. Changes the header of `answer` in place (callers own it: a copy) and
 * returns the answer to send.
 */
export function forClient(answer: Uint8Array, client: ClientEdns): Uint8Array {
  const qflags = client.flags;
  let hi = answer[2] & ~(Flag.RD >> 8);
  if (!client.authoritative) hi &= ~(Flag.AA >> 8);
  answer[2] = hi | ((qflags & Flag.RD) >> 8);
  const edns = client.edns;
  const askedForAd = (qflags & Flag.AD) !== 0 || (edns?.dnssecOk ?? false);
  if (!askedForAd) answer[3] &= ~Flag.AD & 0xff;
  const extendedRcode = client.extendedRcode ?? 0;
  if (!edns) {
    if (extendedRcode !== 0) answer[3] = (answer[3] & 0xf0) | Rcode.SERVFAIL;
    return answer;
  }
  let options = client.options ?? NO_OPTIONS;
  if (client.pad) {
    const unpadded = answer.length + optSize(options) + 4;
    const padded = Math.min(
      Math.ceil(unpadded / RESPONSE_PADDING_BLOCK) * RESPONSE_PADDING_BLOCK,
      MAX_MESSAGE_SIZE,
    );
    if (padded >= unpadded) {
      // Zero octets (RFC 7830 §4), after every other option.
      options = [...options, { code: OptionCode.PADDING, data: new Uint8Array(padded - unpadded) }];
    }
  }
  return appendOpt(answer, {
    udpSize: client.udpSize,
    dnssecOk: edns.dnssecOk,
    extendedRcode,
    options,
  });
}

/**
 * An upstream reply for the client: the upstream's OPT removed (EDNS is per hop) and
 * {@link forClient} applied, with the reply's extended rcode. Returns a new buffer; `reply` is
 * not modified.
 */
export function clientAnswer(reply: Uint8Array, replyMsg: Message, client: ClientEdns): Uint8Array {
  return forClient(optless(reply, replyMsg), { ...client, extendedRcode: replyMsg.rcode >> 4 });
}

/** A fresh copy of a reply without its OPT (see withoutOpt; the fallback below when it cannot). */
export function optless(reply: Uint8Array, msg: Message): Uint8Array {
  return withoutOpt(reply, msg)?.bytes ?? cutAtOpt(reply, msg);
}

/**
 * The options of an upstream's OPT that belong to the client too: its Extended DNS Errors
 * (RFC 8914: the reason travels with the answer) and, with `keepEcs`, its ECS option (whose
 * scope the client's echo carries). Null when there are none, so most replies allocate nothing.
 * The data are views into the reply: copy them to keep them.
 */
export function relayedOptions(edns: Edns | null, keepEcs: boolean): EdnsOption[] | null {
  if (!edns) return null;
  let out: EdnsOption[] | null = null;
  for (const o of edns.options) {
    if (o.code === OptionCode.EDE || (keepEcs && o.code === OptionCode.ECS)) (out ??= []).push(o);
  }
  return out;
}

/** Whether an OPT carries an option with `code` (e.g. the client padded its query). */
export function hasOption(edns: Edns | null, code: number): boolean {
  if (!edns) return false;
  for (const o of edns.options) if (o.code === code) return true;
  return false;
}

/** An EDNS Client Subnet option as sent (RFC 7871 §6), checked. */
export interface ClientSubnet {
  /** 1 = IPv4, 2 = IPv6 (IANA address family numbers). */
  family: 1 | 2;
  sourcePrefix: number;
  scopePrefix: number;
  /** The address bytes as sent: ceil(sourcePrefix / 8) of them, bits past the prefix zero. */
  address: Uint8Array;
}

/**
 * Reads an ECS option's data. Null when malformed by RFC 7871 §6 (an unknown family, a prefix
 * longer than the family's address, an address of the wrong length or with bits set past the
 * source prefix): such a query is answered FORMERR (§7.1.1), never forwarded.
 */
export function parseEcs(data: Uint8Array): ClientSubnet | null {
  if (data.length < 4 || data.length > MAX_ECS_DATA) return null;
  const family = (data[0] << 8) | data[1];
  if (family !== 1 && family !== 2) return null;
  const sourcePrefix = data[2];
  const scopePrefix = data[3];
  const maxBits = family === 1 ? 32 : 128;
  if (sourcePrefix > maxBits || scopePrefix > maxBits) return null;
  const address = data.subarray(4);
  if (address.length !== Math.ceil(sourcePrefix / 8)) return null;
  const spare = address.length * 8 - sourcePrefix;
  if (spare > 0 && (address[address.length - 1] & ((1 << spare) - 1)) !== 0) return null;
  return { family, sourcePrefix, scopePrefix, address };
}

/** The client's ECS option, checked: undefined when it sent none, null when it is malformed. */
export function clientSubnet(edns: Edns | null): ClientSubnet | null | undefined {
  if (!edns) return undefined;
  for (const o of edns.options) if (o.code === OptionCode.ECS) return parseEcs(o.data);
  return undefined;
}

/** The ECS scope prefix among an upstream's options (0 without an ECS option: not tailored). */
export function ecsScope(options: readonly EdnsOption[] | null): number {
  for (const o of options ?? NO_OPTIONS) {
    if (o.code === OptionCode.ECS && o.data.length >= 4) return o.data[3];
  }
  return 0;
}

/**
 * The ECS option for the answer to a client that sent `client` (RFC 7871 §7.2.1): its family,
 * source prefix and address echoed, and the scope the upstream answered with (0 when the
 * upstream sent no ECS: the answer was not tailored).
 */
export function ecsEcho(client: ClientSubnet, upstream: readonly EdnsOption[] | null): EdnsOption {
  const data = new Uint8Array(4 + client.address.length);
  data[1] = client.family;
  data[2] = client.sourcePrefix;
  data[3] = ecsScope(upstream);
  data.set(client.address, 4);
  return { code: OptionCode.ECS, data };
}

/**
 * The idle timeout a server announced in a reply's edns-tcp-keepalive option, in milliseconds
 * (the option counts units of 100 ms), or null when it announced none or the option is malformed.
 */
export function keepaliveTimeoutMs(edns: Edns | null): number | null {
  if (!edns) return null;
  for (const o of edns.options) {
    if (o.code === OptionCode.TCP_KEEPALIVE && o.data.length === 2) {
      return ((o.data[0] << 8) | o.data[1]) * 100;
    }
  }
  return null;
}

/**
 * Fallback when the OPT cannot be cut out cleanly (a record after it compresses a name into it):
 * the message up to the OPT, so the additional records after it go too. Additional data is
 * optional, and the records before the OPT (answer and authority among them) are untouched.
 */
function cutAtOpt(reply: Uint8Array, msg: Message): Uint8Array {
  const edns = msg.edns;
  if (!edns) return reply.slice(0, msg.end);
  const out = reply.slice(0, edns.start);
  let additional = 0;
  for (const r of msg.records) if (r.section === 3 && r.ttlOffset < edns.start) additional++;
  out[10] = additional >> 8;
  out[11] = additional & 0xff;
  return out;
}
