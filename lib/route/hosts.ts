/**
 * Hosts files (`/etc/hosts` format) as local data: each line is an address and one or more names;
 * `#` starts a comment; blank lines are ignored. Every name gets an A or AAAA record, and the
 * address gets a reverse PTR to the first name of the first line that lists it (as dnsmasq and
 * glibc's reverse lookup do). Pure: takes the file's text; reading and watching it is
 * hosts_watch.ts.
 *
 * A line that cannot be used is an error with its line number, so `--check` and start-up can
 * report `file:line`. One case is a warning and the line is skipped: an address with a zone
 * (`fe80::1%lo0`, as macOS ships), which DNS cannot express.
 */
import { RRType } from "../dns/message.ts";
import { parseIPv4, parseIPv6 } from "../net/ip.ts";
import { aaaaRdata, aRdata } from "../dns/local_reply.ts";
import { DEFAULT_RECORD_TTL, type LocalRecord, parseDomainName } from "./records.ts";

/** A problem on one line (1-based), for `file:line: message`. */
export interface HostsProblem {
  line: number;
  message: string;
}

/** What a hosts file yields: records, and the lines that were rejected or skipped. */
export interface HostsParse {
  records: LocalRecord[];
  errors: HostsProblem[];
  warnings: HostsProblem[];
}

/** The reverse-lookup name of an IPv4 address (`d.c.b.a.in-addr.arpa.`), lower-case wire form. */
export function reverseNameV4(v4: number): Uint8Array {
  const octets = [v4 & 0xff, (v4 >>> 8) & 0xff, (v4 >>> 16) & 0xff, v4 >>> 24];
  return parseDomainName(`${octets.join(".")}.in-addr.arpa`, "reverse name") as Uint8Array;
}

/** The reverse-lookup name of an IPv6 address (32 nibbles under ip6.arpa, RFC 3596 §2.5). */
export function reverseNameV6(words: ArrayLike<number>): Uint8Array {
  const nibbles: string[] = [];
  for (let k = 3; k >= 0; k--) {
    for (let s = 0; s < 32; s += 4) nibbles.push(((words[k] >>> s) & 0xf).toString(16));
  }
  return parseDomainName(`${nibbles.join(".")}.ip6.arpa`, "reverse name") as Uint8Array;
}

function isUnspecified(rdata: Uint8Array): boolean {
  return rdata.every((b) => b === 0);
}

/**
 * Parses hosts-file text. `ttl` is the TTL of every record (default DEFAULT_RECORD_TTL). Records
 * are not deduplicated here (LocalData.add merges them); PTRs are made once per address, never
 * for the unspecified addresses (0.0.0.0, ::) that blocklist-style hosts files use.
 */
export function parseHosts(text: string, ttl = DEFAULT_RECORD_TTL): HostsParse {
  const out: HostsParse = { records: [], errors: [], warnings: [] };
  const ptrDone = new Set<string>();
  const words = new Uint32Array(4);
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const hash = lines[i].indexOf("#");
    const fields = (hash < 0 ? lines[i] : lines[i].slice(0, hash)).trim().split(/\s+/)
      .filter((f) => f !== "");
    if (fields.length === 0) continue;
    const [addr, ...names] = fields;
    if (addr.includes("%")) {
      out.warnings.push({
        line,
        message: `${addr}: an address with a zone cannot be served over DNS; line skipped`,
      });
      continue;
    }
    let type: number;
    let rdata: Uint8Array;
    let reverse: Uint8Array;
    const v4 = parseIPv4(addr);
    if (v4 >= 0) {
      type = RRType.A;
      rdata = aRdata(v4);
      reverse = reverseNameV4(v4);
    } else if (parseIPv6(addr, words)) {
      type = RRType.AAAA;
      rdata = aaaaRdata(words);
      reverse = reverseNameV6(words);
    } else {
      out.errors.push({ line, message: `${JSON.stringify(addr)} is not an IPv4 or IPv6 address` });
      continue;
    }
    if (names.length === 0) {
      out.errors.push({ line, message: `no host name after the address ${addr}` });
      continue;
    }
    const owners: Uint8Array[] = [];
    let bad = false;
    for (const name of names) {
      const owner = parseDomainName(name, "host name");
      if (typeof owner === "string") {
        out.errors.push({ line, message: owner });
        bad = true;
      } else if (owner.length === 1) {
        out.errors.push({ line, message: `host name ${JSON.stringify(name)} is the root` });
        bad = true;
      } else {
        owners.push(owner);
      }
    }
    if (bad) continue;
    const typeName = type === RRType.A ? "A" : "AAAA";
    for (const owner of owners) out.records.push({ owner, type, typeName, ttl, rdata });
    const key = reverse.join(",");
    if (!isUnspecified(rdata) && !ptrDone.has(key)) {
      ptrDone.add(key);
      out.records.push({
        owner: reverse,
        type: RRType.PTR,
        typeName: "PTR",
        ttl,
        rdata: owners[0],
      });
    }
  }
  return out;
}
