/**
 * The one IP parser (lib/net/ip.ts) must agree exactly with the strict IP literal rules written
 * the obvious way (regexes and splits, below: the rules the config layer used to apply itself),
 * on hand-picked cases and on random strings; and its string checks must agree with its parsers.
 */
import assert from "node:assert/strict";
import {
  ipKey,
  isIP,
  isIPv4,
  isIPv6,
  isMappedIPv4,
  parseClientAddress,
  parseIPv4,
  parseIPv6,
} from "../../lib/net/ip.ts";
import { Rng } from "../helpers/rng.ts";

/** Reference: a dotted-quad IPv4 address, each part 0-255 without leading zeros. */
function referenceIPv4(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && +p <= 255);
}

/** Reference: the eight 16-bit groups of an IPv6 address, or null if it is not one. */
function referenceGroups(text: string): number[] | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  if (halves.length === 1) {
    const groups = referenceParts(halves[0], true);
    return groups && groups.length === 8 ? groups : null;
  }
  const head = referenceParts(halves[0], false);
  const tail = referenceParts(halves[1], true);
  if (!head || !tail || head.length + tail.length > 7) return null;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

function referenceParts(part: string, allowIPv4Tail: boolean): number[] | null {
  if (part === "") return [];
  const groups = part.split(":");
  const out: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i];
    if (allowIPv4Tail && i === groups.length - 1 && g.includes(".")) {
      if (!referenceIPv4(g)) return null;
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

/** What the reference rules say `text` is, in the parsers' terms. */
function reference(text: string): { v4: number; v6: number[] | null } {
  let v4 = -1;
  if (referenceIPv4(text)) v4 = text.split(".").reduce((acc, p) => acc * 256 + Number(p), 0);
  const g = referenceGroups(text);
  const v6 = g && [0, 1, 2, 3].map((k) => ((g[2 * k] << 16) | g[2 * k + 1]) >>> 0);
  return { v4, v6 };
}

/** Reference: the comparison key of an IP literal (IPv6 as its eight groups in hex). */
function referenceKey(text: string): string {
  const g = referenceGroups(text);
  return g ? g.map((x) => x.toString(16)).join(":") : text;
}

function parsed(text: string): { v4: number; v6: number[] | null } {
  const out = new Uint32Array(4);
  return { v4: parseIPv4(text), v6: parseIPv6(text, out) ? [...out] : null };
}

const cases = [
  "0.0.0.0",
  "127.0.0.1",
  "255.255.255.255",
  "256.0.0.0",
  "1.2.3",
  "1.2.3.4.5",
  "01.2.3.4",
  "1.2.3.04",
  "1.2.3.",
  ".1.2.3",
  "1..2.3",
  "1.2.3.4 ",
  "1.2.3.-4",
  "1234.1.1.1",
  "::",
  "::1",
  "1::",
  "1::1",
  "2001:db8::",
  "2001:DB8:0:0:0:0:0:1",
  "1:2:3:4:5:6:7:8",
  "1:2:3:4:5:6:7::",
  "::2:3:4:5:6:7:8",
  "1:2:3:4:5:6:7:8:9",
  "1:2:3:4:5:6:7",
  "1:2:3:4:5:6:7:8::",
  "::1:2:3:4:5:6:7:8",
  ":::",
  "::1::",
  ":1::2",
  "1::2:",
  ":",
  "1:",
  "12345::",
  "g::1",
  "::ffff:192.0.2.1",
  "::192.0.2.1",
  "64:ff9b::192.0.2.1",
  "1:2:3:4:5:6:1.2.3.4",
  "1:2:3:4:5:6:7:1.2.3.4",
  "1.2.3.4::",
  "::1.2.3.4:1",
  "::ffff:1.2.3",
  "::ffff:01.2.3.4",
  "fe80::1%eth0",
  "[::1]",
  "",
];

for (const text of cases) {
  Deno.test(`the IP parser agrees with the strict literal rules on ${JSON.stringify(text)}`, () => {
    assert.deepEqual(parsed(text), reference(text));
    const r = reference(text);
    assert.deepEqual(
      { v4: isIPv4(text), v6: isIPv6(text), ip: isIP(text), key: ipKey(text) },
      { v4: r.v4 >= 0, v6: r.v6 !== null, ip: r.v4 >= 0 || r.v6 !== null, key: referenceKey(text) },
    );
  });
}

Deno.test("the IP parser agrees with the strict literal rules on 200,000 random strings", () => {
  const seed = 0x1b2c3d;
  const rng = new Rng(seed);
  const alphabet = "0123456789abcdefABCDEF:.:.::0f%x ";
  for (let i = 0; i < 200_000; i++) {
    let text = "";
    if (rng.chance(0.3)) {
      // Start from a valid address and damage it a little.
      text = rng.chance(0.5)
        ? [0, 0, 0, 0].map(() => rng.int(300)).join(".")
        : Array.from({ length: 8 }, () => rng.int(0x10000).toString(16)).join(":")
          .replace(/(^|:)0(:0)+(:|$)/, "::");
      for (let n = rng.int(3); n > 0; n--) {
        const at = rng.int(text.length + 1);
        text = text.slice(0, at) + rng.pick([...alphabet]) + text.slice(at + rng.int(2));
      }
    } else {
      for (let n = rng.int(20); n > 0; n--) text += rng.pick([...alphabet]);
    }
    const r = reference(text);
    assert.deepEqual(parsed(text), r, `seed 0x${seed.toString(16)}: ${text}`);
    assert.equal(isIP(text), r.v4 >= 0 || r.v6 !== null, `seed 0x${seed.toString(16)}: ${text}`);
  }
});

const clients: [string, 0 | 4 | 6, number[]][] = [
  ["192.0.2.1", 4, [0xc0000201]],
  ["::ffff:192.0.2.1", 4, [0xc0000201]],
  ["::FFFF:c000:201", 4, [0xc0000201]],
  ["2001:db8::1", 6, [0x20010db8, 0, 0, 1]],
  ["fe80::1%eth0", 6, [0xfe800000, 0, 0, 1]],
  ["fe80::1%", 6, [0xfe800000, 0, 0, 1]],
  ["%eth0", 0, []],
  ["1.2.3.4%eth0", 0, []],
  ["::ffff:1.2.3.4:53", 0, []],
  ["localhost", 0, []],
];

for (const [ip, family, words] of clients) {
  Deno.test(`parseClientAddress(${JSON.stringify(ip)}) is family ${family}`, () => {
    const out = new Uint32Array(4);
    const got = parseClientAddress(ip, out);
    assert.equal(got, family);
    if (family === 4) assert.equal(out[3], words[0]);
    if (family === 6) assert.deepEqual([...out], words);
  });
}

Deno.test("isMappedIPv4 recognises only ::ffff:0:0/96", () => {
  assert.equal(isMappedIPv4(Uint32Array.of(0, 0, 0xffff, 1)), true);
  assert.equal(isMappedIPv4(Uint32Array.of(0, 0, 0, 1)), false);
  assert.equal(isMappedIPv4(Uint32Array.of(0, 1, 0xffff, 1)), false);
  assert.equal(isMappedIPv4(Uint32Array.of(0, 0, 0xfffe, 1)), false);
});
