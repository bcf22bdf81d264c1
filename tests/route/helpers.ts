/**
 * Shared helpers for the route tests: queries as the pipeline sees them (decoded Message), and
 * replies read back with dns-packet, an independent decoder, so the tests check real wire bytes.
 */
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { decodeQuery, type Message, RRType } from "../../lib/dns/message.ts";
import { encodeQuery } from "../../lib/dns/reply.ts";

/** A decoded query for `name`/`qtype` (a type mnemonic or number), RD set, ID 0x1234. */
export function query(
  name: string,
  qtype: keyof typeof RRType | number = "A",
  opts: { qclass?: number; cd?: boolean } = {},
): Message {
  const t = typeof qtype === "number" ? qtype : RRType[qtype];
  const bytes = encodeQuery({ id: 0x1234, name, qtype: t, qclass: opts.qclass, cd: opts.cd });
  const d = decodeQuery(bytes);
  if (!d.ok) throw new Error(d.error.message);
  return d.value;
}

/** A reply decoded by dns-packet; throws on null (no reply). */
export function read(bytes: Uint8Array | null): dnsPacket.Packet {
  if (!bytes) throw new Error("no reply");
  return dnsPacket.decode(Buffer.from(bytes));
}

/** "name TYPE data" lines of a section, for compact assertions. */
export function lines(answers: dnsPacket.Answer[] | undefined): string[] {
  return (answers ?? []).map((a) => {
    const data = a.type === "TXT"
      ? (a.data as Buffer[]).map((b) => b.toString()).join("|")
      : a.type === "SOA"
      ? `${(a.data as dnsPacket.SoaData).mname} ${(a.data as dnsPacket.SoaData).rname}`
      : a.type === "MX"
      ? `${(a.data as { preference: number }).preference} ${
        (a.data as { exchange: string }).exchange
      }`
      : a.type === "SRV"
      ? (() => {
        const s = a.data as dnsPacket.SrvData;
        return `${s.priority} ${s.weight} ${s.port} ${s.target}`;
      })()
      : String(a.data);
    return `${a.name} ${a.ttl} ${a.type} ${data}`;
  });
}

/** The flag names dns-packet reports that a local answer is judged by. */
export function flagsOf(p: dnsPacket.Packet): string {
  const f = p.flags ?? 0;
  return [
    p.type === "response" ? "qr" : "",
    f & 0x0400 ? "aa" : "",
    f & 0x0100 ? "rd" : "",
    f & 0x0080 ? "ra" : "",
    f & 0x0010 ? "cd" : "",
  ].filter((s) => s).join(" ");
}
