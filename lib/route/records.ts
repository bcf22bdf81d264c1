/**
 * Local data: records an operator declares (`[[records]]`, hosts files) and answers without any
 * upstream. A name with local data is answered here for every type — the data when the type has
 * some, NODATA otherwise — and never forwarded, like Unbound's local-data in a transparent zone.
 * Names below it are not covered (a record is one name, not a zone).
 *
 * CNAME: the CNAME is the answer for every other type, and the chain is followed through local
 * data only (at most MAX_CNAME_CHAIN links). A target outside local data ends the answer there:
 * the client (or a later pipeline step) asks for the target itself, so a local alias can never
 * pull an answer from one route into another's reply, and the cache never sees local names.
 */
import { CLASS_IN, type Message, RRType } from "../dns/message.ts";
import { nameFromString, namesEqual, nameToString } from "../dns/wire.ts";
import { parseIPv4, parseIPv6 } from "../net/ip.ts";
import {
  aaaaRdata,
  aRdata,
  localReply,
  type LocalRR,
  MAX_TTL,
  srvRdata,
  u16NameRdata,
} from "../dns/local_reply.ts";
import { SuffixTable } from "./suffix_table.ts";

/** The record types local data supports, declared once: config validation and docs derive. */
export const RECORD_TYPES = ["A", "AAAA", "CNAME", "TXT", "PTR", "MX", "SRV"] as const;
/** One of RECORD_TYPES. */
export type RecordType = (typeof RECORD_TYPES)[number];

/** TTL of local records that do not set one: short enough that edits reach clients soon. */
export const DEFAULT_RECORD_TTL = 300;
/** Links of a CNAME chain followed through local data before the answer stops. */
export const MAX_CNAME_CHAIN = 8;
/** Longest character-string in TXT data (RFC 1035 §3.3): longer text is split. */
const MAX_CHARACTER_STRING = 255;
/** Largest RDATA (its length is a 16-bit field). */
const MAX_RDATA = 0xffff;

/** A record as configured: `[[records]]` rows; hosts files produce the same. */
export interface RecordRow {
  name: string;
  type: string;
  data: string;
  ttl?: number;
}

/** Why a row was rejected: the field, its value, and what is wrong, for `--check` messages. */
export interface RecordError {
  field: "name" | "type" | "data" | "ttl";
  value: string | number;
  message: string;
}

/** A parsed record: wire-form owner and RDATA, ready to answer with. */
export interface LocalRecord extends LocalRR {
  /** The type's mnemonic, for logs. */
  readonly typeName: RecordType;
}

/** True for errors from the parsers in this module. */
export function isRecordError(v: unknown): v is RecordError {
  return typeof v === "object" && v !== null && "field" in v && "message" in v;
}

function lowerWire(wire: Uint8Array): Uint8Array {
  return wire.map((b) => (b >= 0x41 && b <= 0x5a ? b | 0x20 : b));
}

/**
 * A domain name from config text as lower-cased wire form, or an error message. `what` names the
 * value in messages ("name", "MX host"). Wildcard labels are refused rather than taken literally.
 */
export function parseDomainName(text: string, what: string): Uint8Array | string {
  const trimmed = text.trim();
  if (trimmed === "") return `${what} is empty`;
  let wire: Uint8Array;
  try {
    wire = nameFromString(trimmed);
  } catch (e) {
    return `${what} ${JSON.stringify(text)} is not a valid domain name: ${(e as Error).message}`;
  }
  for (let p = 0; wire[p] !== 0; p += 1 + wire[p]) {
    if (wire[p] === 1 && wire[p + 1] === 0x2a) {
      return `${what} ${JSON.stringify(text)}: wildcard labels ('*') are not supported`;
    }
  }
  return lowerWire(wire);
}

/** Splits `text` on runs of spaces and tabs. */
function fields(text: string): string[] {
  return text.trim().split(/[ \t]+/).filter((f) => f !== "");
}

/** A decimal 16-bit number or null. */
function u16(text: string): number | null {
  if (!/^[0-9]{1,5}$/.test(text)) return null;
  const n = Number(text);
  return n <= 0xffff ? n : null;
}

const encoder = new TextEncoder();

/**
 * TXT data: one or more quoted strings (`"v=spf1 -all" "second"`, with \" and \\ escapes), or
 * unquoted text taken whole. Each string longer than 255 bytes (UTF-8) is split into several.
 */
function txtRdata(data: string): Uint8Array | string {
  const strings: Uint8Array[] = [];
  const trimmed = data.trim();
  if (trimmed.startsWith('"')) {
    let i = 0;
    while (i < trimmed.length) {
      if (trimmed[i] === " " || trimmed[i] === "\t") {
        i++;
        continue;
      }
      if (trimmed[i] !== '"') {
        return `TXT data must be quoted strings or plain text; unexpected ${
          JSON.stringify(trimmed[i])
        } at ${i}`;
      }
      let s = "";
      let j = i + 1;
      for (; j < trimmed.length && trimmed[j] !== '"'; j++) {
        if (trimmed[j] === "\\" && j + 1 < trimmed.length) j++;
        s += trimmed[j];
      }
      if (j >= trimmed.length) return `TXT data has an unterminated quoted string at ${i}`;
      strings.push(encoder.encode(s));
      i = j + 1;
    }
  } else {
    strings.push(encoder.encode(data));
  }
  const chunks: Uint8Array[] = [];
  for (const s of strings) {
    if (s.length === 0) chunks.push(s);
    for (let p = 0; p < s.length; p += MAX_CHARACTER_STRING) {
      chunks.push(s.subarray(p, p + MAX_CHARACTER_STRING));
    }
  }
  const size = chunks.reduce((n, c) => n + 1 + c.length, 0);
  if (size > MAX_RDATA) return `TXT data is ${size} bytes; at most ${MAX_RDATA} fit in a record`;
  const out = new Uint8Array(size);
  let p = 0;
  for (const c of chunks) {
    out[p] = c.length;
    out.set(c, p + 1);
    p += 1 + c.length;
  }
  return out;
}

/** RDATA for `type` from its presentation-form `data`, or an error message naming the value. */
function parseRdata(type: RecordType, data: string): Uint8Array | string {
  const shown = JSON.stringify(data);
  switch (type) {
    case "A": {
      const v4 = parseIPv4(data.trim());
      return v4 < 0 ? `A data must be an IPv4 address such as 192.0.2.1, got ${shown}` : aRdata(v4);
    }
    case "AAAA": {
      const words = new Uint32Array(4);
      return parseIPv6(data.trim(), words)
        ? aaaaRdata(words)
        : `AAAA data must be an IPv6 address such as 2001:db8::1, got ${shown}`;
    }
    case "CNAME":
    case "PTR":
      return parseDomainName(data, `${type} target`);
    case "MX": {
      const f = fields(data);
      const pref = f.length === 2 ? u16(f[0]) : null;
      if (pref === null) {
        return `MX data must be 'PREFERENCE HOST' (e.g. '10 mail.example'), got ${shown}`;
      }
      const host = parseDomainName(f[1], "MX host");
      return typeof host === "string" ? host : u16NameRdata(pref, host);
    }
    case "SRV": {
      const f = fields(data);
      const nums = f.length === 4 ? f.slice(0, 3).map(u16) : [];
      if (nums.length !== 3 || nums.includes(null)) {
        return `SRV data must be 'PRIORITY WEIGHT PORT TARGET' (e.g. '0 5 5060 sip.example'), got ${shown}`;
      }
      const target = parseDomainName(f[3], "SRV target");
      return typeof target === "string" ? target : srvRdata(nums[0]!, nums[1]!, nums[2]!, target);
    }
    case "TXT":
      return txtRdata(data);
  }
}

/** Checks a TTL from config: an integer in [0, 2^31 - 1] (RFC 2181 §8). */
export function checkTtl(ttl: number): string | null {
  return Number.isInteger(ttl) && ttl >= 0 && ttl <= MAX_TTL
    ? null
    : `ttl must be an integer in [0, ${MAX_TTL}], got ${ttl}`;
}

/**
 * Parses one configured record. Errors name the field and the value, e.g. for type MX with data
 * "mail": "MX data must be 'PREFERENCE HOST' (e.g. '10 mail.example'), got \"mail\"".
 */
export function parseRecord(
  row: RecordRow,
  defaultTtl = DEFAULT_RECORD_TTL,
): LocalRecord | RecordError {
  const owner = parseDomainName(row.name, "name");
  if (typeof owner === "string") return { field: "name", value: row.name, message: owner };
  if (owner.length === 1) {
    return { field: "name", value: row.name, message: "a record's name cannot be the root" };
  }
  const typeName = row.type.trim().toUpperCase() as RecordType;
  if (!RECORD_TYPES.includes(typeName)) {
    return {
      field: "type",
      value: row.type,
      message: `type ${JSON.stringify(row.type)} is not one of ${RECORD_TYPES.join(", ")}`,
    };
  }
  const ttl = row.ttl ?? defaultTtl;
  const badTtl = checkTtl(ttl);
  if (badTtl) return { field: "ttl", value: ttl, message: badTtl };
  const rdata = parseRdata(typeName, row.data);
  if (typeof rdata === "string") return { field: "data", value: row.data, message: rdata };
  return { owner, type: RRType[typeName], typeName, ttl, rdata };
}

/** Everything stored at one name. */
export interface NameData {
  readonly name: Uint8Array;
  /** RRsets by type; all RRs of one set share the lowest TTL given for it (RFC 2181 §5.2). */
  readonly rrsets: Map<number, LocalRR[]>;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The local records by name; see the module comment for how they answer. */
export class LocalData {
  #names = new SuffixTable<NameData>();

  /** Names with data. */
  get size(): number {
    return this.#names.size;
  }

  /**
   * Adds a record; a duplicate (same name, type and data) is ignored. Returns an error message
   * when the record cannot coexist with what the name already has: a CNAME and other data at
   * one name, or two CNAMEs (RFC 1034 §3.6.2, RFC 2181 §10.1).
   */
  add(rec: LocalRR): string | null {
    let data = this.#names.exact(rec.owner);
    if (!data) {
      data = { name: rec.owner, rrsets: new Map() };
      this.#names.set(rec.owner, data);
    }
    const cname = data.rrsets.get(RRType.CNAME);
    const conflict = rec.type === RRType.CNAME
      ? data.rrsets.size > (cname ? 1 : 0) || (cname && !sameBytes(cname[0].rdata, rec.rdata))
      : cname !== undefined;
    if (conflict) {
      return `${nameToString(rec.owner)} cannot have a CNAME and other data (RFC 1034 §3.6.2)`;
    }
    const set = data.rrsets.get(rec.type);
    if (!set) {
      data.rrsets.set(rec.type, [{ ...rec }]);
      return null;
    }
    if (set.some((r) => sameBytes(r.rdata, rec.rdata))) return null;
    const ttl = Math.min(set[0].ttl, rec.ttl);
    set.push({ ...rec });
    for (let i = 0; i < set.length; i++) set[i] = { ...set[i], ttl };
    return null;
  }

  /** The data at exactly `name` (wire form, any case). Allocation-free. */
  get(name: Uint8Array): NameData | undefined {
    return this.#names.exact(name);
  }

  /** True when `name` has data or is an ancestor of a name that does (an empty non-terminal). */
  covers(name: Uint8Array): boolean {
    return this.#names.covers(name);
  }

  /** Every name with data. */
  *names(): IterableIterator<NameData> {
    for (const [, data] of this.#names.entries()) yield data;
  }

  /**
   * The authoritative answer for `query` at a name that has data: the RRset of its type (all
   * RRsets for ANY), else its CNAME chain through local data, else NODATA with `soa` (the
   * enclosing local zone's, when there is one) in the authority section.
   */
  answer(query: Message, data: NameData, soa: LocalRR | null): Uint8Array | null {
    const q = query.question;
    if (!q) return null;
    const answer: LocalRR[] = [];
    if (q.qclass === CLASS_IN || q.qclass === RRType.ANY) this.#collect(data, q.qtype, answer);
    return localReply(query, 0, answer, answer.length === 0 && soa ? [soa] : []);
  }

  /** Appends to `out` what `data` holds for `qtype`, following CNAMEs through local data. */
  #collect(data: NameData, qtype: number, out: LocalRR[]): void {
    let at: NameData | undefined = data;
    for (let link = 0; at && link <= MAX_CNAME_CHAIN; link++) {
      if (qtype === RRType.ANY) {
        for (const set of at.rrsets.values()) out.push(...set);
        return;
      }
      const set = at.rrsets.get(qtype);
      if (set) {
        out.push(...set);
        return;
      }
      const cname = at.rrsets.get(RRType.CNAME);
      if (!cname) return;
      out.push(cname[0]);
      const target = cname[0].rdata;
      // A chain that loops back on itself ends at the repeat.
      if (out.some((r, i) => i < out.length - 1 && namesEqual(r.owner, target))) return;
      at = this.#names.exact(target);
    }
  }
}
