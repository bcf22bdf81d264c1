/**
 * The section tables against config.toml, the documented reference: every key of every table
 * appears there (commented or not) with its default, and every key written there exists in the
 * tables. A default changed in one place but not the other fails here.
 */
import assert from "node:assert/strict";
import { parse } from "smol-toml";
import { KNOWN_KEYS } from "../../lib/config/load.ts";
import { SECTIONS } from "../../lib/config/sections/all.ts";
import { ACCESS } from "../../lib/config/sections/access.ts";
import type { Row, Section } from "../../lib/config/table.ts";

const CONFIG_TOML = Deno.readTextFileSync(new URL("../../config.toml", import.meta.url));

/** A `key = value` line of config.toml, live or commented out, in the section it is under. */
interface Line {
  section: string;
  key: string;
  value: string;
  line: number;
}

/** The section headers and key lines of a config.toml text, commented ones included. */
function scan(text: string): { headers: string[]; lines: Line[] } {
  const headers: string[] = [];
  const lines: Line[] = [];
  let section = "";
  text.split("\n").forEach((raw, i) => {
    const header = raw.match(/^(?:# )?\[\[?([a-z_.]+)\]\]?$/);
    if (header) {
      section = header[1];
      headers.push(section);
      return;
    }
    const kv = raw.match(/^(?:# )?([a-z0-9_]+) = (.*)$/);
    if (kv) lines.push({ section, key: kv[1], value: kv[2], line: i + 1 });
  });
  return { headers, lines };
}

/** The sections by the name their header has in config.toml. */
const BY_HEADER = new Map<string, Section>([
  ...SECTIONS.map((s) => [s.name, s] as const),
  ["listeners.access", ACCESS],
]);

/** A value as written in TOML, or undefined when the line is prose that looks like a key. */
function tomlValue(text: string): { value: unknown } | undefined {
  try {
    return { value: parse(`v = ${text}`).v };
  } catch {
    return undefined;
  }
}

/** What a line's value reads to through its row, or undefined when it does not read. */
function readAs(row: Row<unknown>, l: Line): { value: unknown } | undefined {
  const v = tomlValue(l.value);
  if (!v) return undefined;
  try {
    return { value: row.read(v.value, `${l.section}.${l.key}`, l.key) };
  } catch {
    return undefined;
  }
}

/** Rows whose default config.toml shows as `key = <default>`. */
const shownDefaults = SECTIONS.flatMap((s) =>
  Object.entries(s.rows)
    .filter(([, row]) => row.default !== undefined && row.defaultDoc === undefined)
    .map(([key, row]) => ({ section: s.name, key, row }))
);

const { headers, lines } = scan(CONFIG_TOML);

Deno.test("config.toml has a header for every section, and no other", () => {
  for (const s of SECTIONS) assert.ok(headers.includes(s.name), `[${s.name}] missing`);
  for (const h of headers) assert.ok(BY_HEADER.has(h), `config.toml has unknown section [${h}]`);
});

Deno.test("every key written in config.toml, commented or not, exists in its section's table", () => {
  for (const l of lines) {
    const section = BY_HEADER.get(l.section);
    assert.ok(section, `line ${l.line}: ${l.key} is outside any section`);
    assert.ok(
      Object.hasOwn(section.rows, l.key),
      `line ${l.line}: ${l.key} is not a key of [${l.section}]; known: ${
        Object.keys(section.rows).join(", ")
      }`,
    );
  }
});

Deno.test("every key of every table appears in config.toml under its section", () => {
  for (const s of SECTIONS) {
    for (const key of Object.keys(s.rows)) {
      if (s.name === "listeners" && key === "access") {
        assert.ok(headers.includes("listeners.access"), "[listeners.access] missing");
        continue;
      }
      assert.ok(
        lines.some((l) => l.section === s.name && l.key === key),
        `${s.name}.${key} is not in config.toml`,
      );
    }
  }
});

Deno.test("config.toml shows each default the tables declare", () => {
  assert.ok(shownDefaults.length >= 40, `only ${shownDefaults.length} defaults found`);
  for (const { section, key, row } of shownDefaults) {
    const written = lines.filter((l) => l.section === section && l.key === key);
    const values = written.map((l) => readAs(row, l));
    assert.ok(
      values.some((v) => v !== undefined && isDeepStrictEqual(v.value, row.default)),
      `${section}.${key}: config.toml has ${
        written.map((l) => `line ${l.line}: ${l.value}`).join("; ") || "no line"
      }, the table's default is ${JSON.stringify(row.default)}`,
    );
  }
});

Deno.test("the check notices a default that differs from config.toml", () => {
  const edited = CONFIG_TOML.replace(`\nudp_max_size = 1232\n`, `\nudp_max_size = 1400\n`);
  assert.notEqual(edited, CONFIG_TOML);
  const row = SECTIONS.find((s) => s.name === "server")!.rows.udp_max_size;
  const written = scan(edited).lines.filter((l) => l.key === "udp_max_size");
  assert.deepEqual(written.map((l) => readAs(row, l)?.value), [1400]);
  assert.notEqual(row.default, 1400);
});

Deno.test("KNOWN_KEYS lists the tables' keys, sections in top-level order", () => {
  assert.deepEqual(KNOWN_KEYS[""], SECTIONS.map((s) => s.name));
  assert.deepEqual(KNOWN_KEYS.server, [
    "query_timeout",
    "udp_max_size",
    "tcp_idle_timeout",
    "udp_rescan_interval",
    "shutdown_grace",
  ]);
  for (const s of SECTIONS) assert.deepEqual(KNOWN_KEYS[s.name], Object.keys(s.rows));
});

Deno.test("every row has a doc line, and a key that needs a restart names the field it fills", () => {
  for (const s of SECTIONS) {
    for (const [key, row] of Object.entries(s.rows)) {
      assert.ok(row.doc.length > 5 && !row.doc.includes("\n"), `${s.name}.${key}: doc`);
      if (!row.reloadable) assert.ok(row.field !== undefined, `${s.name}.${key}: field`);
    }
  }
});

function isDeepStrictEqual(a: unknown, b: unknown): boolean {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}
