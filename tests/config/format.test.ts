import assert from "node:assert/strict";
import { TomlDate } from "smol-toml";
import { closest, formatValue } from "../../lib/config/errors.ts";
import { formatConfigError } from "../../lib/config/load.ts";

const lines: { name: string; value: unknown; message?: string; want: string }[] = [
  {
    name: "string value quoted",
    value: "tls://1.1.1.1:99999",
    want: `c.toml: k = "tls://1.1.1.1:99999": oops`,
  },
  { name: "missing value omitted", value: undefined, want: "c.toml: k: oops" },
  { name: "integer", value: 5, want: "c.toml: k = 5: oops" },
  { name: "float", value: 1.5, want: "c.toml: k = 1.5: oops" },
  {
    name: "nan and inf",
    value: [NaN, Infinity, -Infinity],
    want: "c.toml: k = [nan, inf, -inf]: oops",
  },
  { name: "boolean", value: false, want: "c.toml: k = false: oops" },
  { name: "empty array", value: [], want: "c.toml: k = []: oops" },
  {
    name: "table with quoted key",
    value: { url: "x", "a b": 1 },
    want: `c.toml: k = { url = "x", "a b" = 1 }: oops`,
  },
  { name: "empty table", value: {}, want: "c.toml: k = {}: oops" },
  { name: "date", value: new TomlDate("1979-05-27"), want: "c.toml: k = 1979-05-27: oops" },
  { name: "string escapes stay on one line", value: "a\nb", want: `c.toml: k = "a\\nb": oops` },
  {
    name: "multi-line message folded",
    value: 1,
    message: "first\n  second",
    want: "c.toml: k = 1: first second",
  },
];

for (const c of lines) {
  Deno.test(`formatConfigError: ${c.name}`, () => {
    const line = formatConfigError({
      key: "k",
      value: c.value,
      message: c.message ?? "oops",
      path: "c.toml",
    });
    assert.equal(line, c.want);
  });
}

Deno.test("formatValue shortens long values to 80 characters", () => {
  const text = formatValue("x".repeat(200));
  assert.equal(text.length, 80);
  assert.ok(text.endsWith("…"));
});

const suggestions: { name: string; candidates: string[]; want: string | undefined }[] = [
  { name: "upstream", candidates: ["listeners", "upstreams"], want: "upstreams" },
  { name: "listener", candidates: ["listeners", "upstreams"], want: "listeners" },
  { name: "tlsName", candidates: ["url", "tls_name", "ca_file"], want: "tls_name" },
  { name: "TLS-NAME", candidates: ["url", "tls_name", "ca_file"], want: "tls_name" },
  { name: "ca_flie", candidates: ["url", "tls_name", "ca_file"], want: "ca_file" },
  { name: "uri", candidates: ["url"], want: "url" },
  { name: "warn", candidates: ["debug", "info", "warning", "error"], want: "warning" },
  { name: "hostname", candidates: ["url"], want: undefined },
  { name: "foo", candidates: ["query_timeout", "udp_max_size"], want: undefined },
  { name: "timeout", candidates: ["query_timeout", "shutdown_grace"], want: undefined },
];

for (const c of suggestions) {
  Deno.test(`closest(${JSON.stringify(c.name)}) = ${c.want}`, () => {
    assert.equal(closest(c.name, c.candidates), c.want);
  });
}
