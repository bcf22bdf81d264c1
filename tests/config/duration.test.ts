import assert from "node:assert/strict";
import { formatDuration } from "../../lib/config/duration.ts";
import { parseDuration } from "../../lib/config/load.ts";

const cases: { text: string; ms: number | null }[] = [
  { text: "250ms", ms: 250 },
  { text: "5s", ms: 5_000 },
  { text: "1.5s", ms: 1_500 },
  { text: "1.1s", ms: 1_100 },
  { text: "0.3s", ms: 300 },
  { text: "2m", ms: 120_000 },
  { text: "1h", ms: 3_600_000 },
  { text: "1m30s", ms: 90_000 },
  { text: "1h0m0.5s", ms: 3_600_500 },
  { text: " 5s ", ms: 5_000 },
  { text: "0s", ms: 0 },
  { text: "-1s", ms: -1_000 },
  { text: "0.5ms", ms: 0.5 },
  { text: "5", ms: null },
  { text: "5000", ms: null },
  { text: "", ms: null },
  { text: "s", ms: null },
  { text: "-", ms: null },
  { text: "5 s", ms: null },
  { text: "5S", ms: null },
  { text: "5sec", ms: null },
  { text: "5d", ms: 432_000_000 },
  { text: "1d12h", ms: 129_600_000 },
  { text: "0.5d", ms: 43_200_000 },
  { text: "0d", ms: 0 },
  { text: "5D", ms: null },
  { text: "5day", ms: null },
  { text: "1w", ms: null },
  { text: ".5s", ms: null },
  { text: "5.s", ms: null },
  { text: "1e3ms", ms: null },
  { text: "5s5", ms: null },
  { text: "+5s", ms: null },
];

for (const c of cases) {
  Deno.test(`parseDuration(${JSON.stringify(c.text)}) = ${c.ms}`, () => {
    assert.equal(parseDuration(c.text), c.ms);
  });
}

const formats: { ms: number; text: string }[] = [
  { ms: 0, text: "0ms" },
  { ms: 250, text: "250ms" },
  { ms: 1_500, text: "1.5s" },
  { ms: 90_000, text: "90s" },
  { ms: 120_000, text: "2m" },
  { ms: 3_600_000, text: "1h" },
  { ms: 5_400_000, text: "90m" },
  { ms: 86_400_000, text: "1d" },
  { ms: 129_600_000, text: "36h" },
  { ms: 2_147_483_647_000, text: "2147483647s" },
];

for (const c of formats) {
  Deno.test(`formatDuration(${c.ms}) = ${JSON.stringify(c.text)}, which parses back`, () => {
    assert.equal(formatDuration(c.ms), c.text);
    assert.equal(parseDuration(c.text), c.ms);
  });
}
