/**
 * EDNS per hop (RFC 6891 §6.1.1: OPT is hop-by-hop). The proxy never relays a client's OPT
 * upstream or an upstream's OPT to the client: each side gets an OPT built for that hop. Queries
 * are rewritten at byte level (header and question copied, a fresh OPT appended), never
 * re-encoded. Pure and bounds-checked: inputs are already-decoded messages.
 */

import { type Edns, type EdnsOption, Flag, HEADER_SIZE, type Message, Rcode } from "./message.ts";
import { appendOpt, withoutOpt } from "./reply.ts";

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
} as const;

/** RFC 8467 §4.1 block-length padding: queries are padded to a multiple of 128 bytes. */
export const QUERY_PADDING_BLOCK = 128;

/**
 * Longest valid ECS option data: family (2) + prefix lengths (2) + at most 16 address bytes.
 * Anything longer is malformed and is dropped rather than forwarded.
 */
const MAX_ECS_DATA = 20;

/** The header bits of a client query that carry meaning upstream (RFC 6840 §5.7-5.9). */
const FORWARDED_QUERY_FLAGS = 0x7800 /* opcode */ | Flag.RD | Flag.AD | Flag.CD;

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
 * The query to send upstream: the client's header (opcode, RD, AD, CD kept; answer and authority
 * counts zeroed) and question, then a new OPT with our UDP size, the client's DO bit, and only the
 * options that belong on the next hop: ECS if `keepEcs`, an empty edns-tcp-keepalive if asked, and
 * padding if `pad` (after everything else, so the padded total is a multiple of 128). The client's
 * cookies, padding, keepalive and any other option are dropped. The ID is left for the upstream to
 * set. Always adds an OPT, even when the client sent none: padding and keepalive need one, and
 * larger upstream answers make better cache entries.
 */
export function upstreamQuery(query: Uint8Array, msg: Message, opts: HopEdns): Uint8Array {
  const q = msg.question;
  const qLen = q ? q.name.length + 4 : 0;
  const base = new Uint8Array(HEADER_SIZE + qLen);
  base.set(query.subarray(0, 2)); // ID; the upstream overwrites it
  const flags = msg.header.flags & FORWARDED_QUERY_FLAGS;
  base[2] = flags >> 8;
  base[3] = flags & 0xff;
  if (q) {
    base[5] = 1; // QDCOUNT; AN/NS/AR stay 0, appendOpt sets AR to 1
    // Written from the decoded, uncompressed name: a pointer copied verbatim could dangle.
    base.set(q.name, HEADER_SIZE);
    const t = HEADER_SIZE + q.name.length;
    base[t] = q.qtype >> 8;
    base[t + 1] = q.qtype & 0xff;
    base[t + 2] = q.qclass >> 8;
    base[t + 3] = q.qclass & 0xff;
  }
  const options: EdnsOption[] = [];
  if (opts.keepEcs && msg.edns) {
    for (const o of msg.edns.options) {
      if (o.code === OptionCode.ECS && o.data.length <= MAX_ECS_DATA) {
        options.push({ code: o.code, data: o.data.slice() });
      }
    }
  }
  if (opts.keepalive) options.push({ code: OptionCode.TCP_KEEPALIVE, data: new Uint8Array(0) });
  if (opts.pad) {
    const unpadded = base.length + optLength(options) + 4;
    const fill = (QUERY_PADDING_BLOCK - (unpadded % QUERY_PADDING_BLOCK)) % QUERY_PADDING_BLOCK;
    options.push({ code: OptionCode.PADDING, data: new Uint8Array(fill) }); // zero octets, §4
  }
  return appendOpt(base, {
    udpSize: opts.udpSize,
    dnssecOk: msg.edns?.dnssecOk ?? false,
    options,
  });
}

/** What the client's query said, for answering it on its own hop. */
export interface ClientEdns {
  /** The client's OPT, or null when it did not use EDNS (then the answer carries no OPT). */
  edns: Edns | null;
  /** The client query's header flags word (its AD bit matters, RFC 6840 §5.7). */
  flags: number;
  /** The UDP size we advertise to clients (`[server] udp_max_size`). */
  udpSize: number;
}

/**
 * The answer for the client: the upstream's OPT removed and, if the client used EDNS, ours added
 * (our UDP size, the client's DO echoed, the reply's extended rcode kept, no options). AD is
 * cleared unless the client set AD or DO (RFC 6840 §5.8: only a client that asked may rely on it).
 * A reply whose rcode needs EDNS (above 15) going to a client without EDNS becomes SERVFAIL, since
 * the client could not read it. Returns a new buffer; `reply` is not modified.
 */
export function clientAnswer(reply: Uint8Array, replyMsg: Message, client: ClientEdns): Uint8Array {
  const stripped = withoutOpt(reply, replyMsg)?.bytes ?? cutAtOpt(reply, replyMsg);
  const out = client.edns
    ? appendOpt(stripped, {
      udpSize: client.udpSize,
      dnssecOk: client.edns.dnssecOk,
      extendedRcode: replyMsg.rcode >> 4,
    })
    : stripped;
  if (!client.edns && replyMsg.rcode > 0xf) {
    out[3] = (out[3] & 0xf0) | Rcode.SERVFAIL;
  }
  const askedForAd = (client.flags & Flag.AD) !== 0 || (client.edns?.dnssecOk ?? false);
  if (!askedForAd) out[3] &= ~Flag.AD & 0xff;
  return out;
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

function optLength(options: readonly EdnsOption[]): number {
  let n = 11; // root owner, type, class, TTL, rdlength
  for (const o of options) n += 4 + o.data.length;
  return n;
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
