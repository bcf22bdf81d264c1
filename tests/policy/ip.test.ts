/**
 * The allocation-free address parsers used per query must agree exactly with the config layer's
 * strict IP literal rules (lib/config/ip.ts), on hand-picked cases and on random strings.
 */
import assert from "node:assert/strict";
import { ipv6Groups, isIPv4 } from "../../lib/config/ip.ts";
import { isMappedIPv4, parseClientAddress, parseIPv4, parseIPv6 } from "../../lib/policy/ip.ts";
import { Rng } from "../helpers/rng.ts";

/** What lib/config/ip.ts says `text` is, in the policy parsers' terms. */
function reference(text: string): { v4: number; v6: number[] | null } {
  let v4 = -1;
  if (isIPv4(text)) v4 = text.split(".").reduce((acc, p) => acc * 256 + Number(p), 0);
  const g = ipv6Groups(text);
  const v6 = g && [0, 1, 2, 3].map((k) => ((g[2 * k] << 16) | g[2 * k + 1]) >>> 0);
  return { v4, v6 };
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
  Deno.test(`policy IP parsers agree with the config rules on ${JSON.stringify(text)}`, () => {
    assert.deepEqual(parsed(text), reference(text));
  });
}

Deno.test("policy IP parsers agree with the config rules on 200,000 random strings", () => {
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
    assert.deepEqual(parsed(text), reference(text), `seed 0x${seed.toString(16)}: ${text}`);
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
