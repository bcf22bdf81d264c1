import assert from "node:assert/strict";
import { formatSize, parseSize, sizeHint } from "../../lib/config/size.ts";

const sizes: { text: string; bytes: number | null }[] = [
  { text: "1KiB", bytes: 1024 },
  { text: "256MiB", bytes: 268_435_456 },
  { text: "2GiB", bytes: 2_147_483_648 },
  { text: " 64MiB ", bytes: 67_108_864 },
  { text: "0MiB", bytes: 0 },
  { text: "256", bytes: null },
  { text: "256MB", bytes: null },
  { text: "256M", bytes: null },
  { text: "256mib", bytes: null },
  { text: "256 MiB", bytes: null },
  { text: "1.5GiB", bytes: null },
  { text: "-1MiB", bytes: null },
  { text: "1TiB", bytes: null },
  { text: "MiB", bytes: null },
  { text: "", bytes: null },
];

for (const c of sizes) {
  Deno.test(`parseSize(${JSON.stringify(c.text)}) = ${c.bytes}`, () => {
    assert.equal(parseSize(c.text), c.bytes);
  });
}

const hints: { text: string; want: string }[] = [
  { text: "256", want: `missing unit; write "256MiB"` },
  { text: "256MB", want: `unknown unit "MB"; did you mean "256MiB"?` },
  { text: "256m", want: `did you mean "256MiB"?` },
  { text: "2gb", want: `did you mean "2GiB"?` },
  { text: "512kB", want: `did you mean "512KiB"?` },
  { text: "1.5GiB", want: `must be a whole number; write "1536MiB"` },
  { text: "0.5MiB", want: `must be a whole number; write "512KiB"` },
  { text: "1.5KiB", want: "must be a whole number of KiB" },
  { text: "1.1GiB", want: "must be a whole number of GiB" },
  { text: "1TiB", want: `unknown unit "TiB"; use KiB, MiB or GiB` },
  { text: "lots", want: "not a size; use a whole number with a unit KiB, MiB or GiB" },
  { text: "-1MiB", want: "not a size" },
];

for (const c of hints) {
  Deno.test(`sizeHint(${JSON.stringify(c.text)})`, () => {
    const got = sizeHint(c.text);
    assert.ok(got.includes(c.want), got);
  });
}

const formats: { bytes: number; text: string }[] = [
  { bytes: 1024 ** 2, text: "1MiB" },
  { bytes: 1536 * 1024, text: "1536KiB" },
  { bytes: 64 * 1024 ** 3, text: "64GiB" },
  { bytes: 100, text: "100B" },
];

for (const c of formats) {
  Deno.test(`formatSize(${c.bytes}) = ${JSON.stringify(c.text)}`, () => {
    assert.equal(formatSize(c.bytes), c.text);
  });
}
