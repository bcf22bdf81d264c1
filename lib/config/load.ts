/**
 * Loading and validating dotproxy's TOML configuration: orchestration only. Each section's keys
 * are declared in its table (lib/config/sections/); this module parses the TOML, checks keys,
 * reads the sections in order, runs the checks that span sections, then reads the files the
 * config names. User mistakes come back as ConfigError values naming the key, the value and the
 * fix; only bugs throw. File access goes through an injected FileReader so every rule is
 * testable without a disk.
 */

import { parse, TomlError } from "smol-toml";
import { dirname } from "node:path";
import { formatConfigError, keyPath } from "./errors.ts";
import { parseDuration } from "./duration.ts";
import { FileJobs, type FileReader, osReason } from "./files.ts";
import { KeyChecker } from "./keys.ts";
import { describe, Invalid, isTable, type Table } from "./readers.ts";
import type { Config, ConfigError } from "./schema.ts";
import { ACCESS } from "./sections/access.ts";
import { readAdmin } from "./sections/admin.ts";
import { SECTIONS } from "./sections/all.ts";
import { CACHE, readCache } from "./sections/cache.ts";
import { checkClients, checkDeclaredNames, CLIENTS, readClient } from "./sections/clients.ts";
import { BOOTSTRAP_EXAMPLE, FORWARDING, readForwarding } from "./sections/forwarding.ts";
import { LIMITS } from "./sections/limits.ts";
import { checkListenerAddresses, LISTENERS, readListener } from "./sections/listeners.ts";
import { LOG } from "./sections/log.ts";
import { POLICY } from "./sections/policy.ts";
import { QUERY_LOG, readQueryLog } from "./sections/query_log.ts";
import { RATE_LIMIT, readRateLimit } from "./sections/rate_limit.ts";
import { SERVER } from "./sections/server.ts";
import { readUpstream, UPSTREAMS } from "./sections/upstreams.ts";
import { DEFAULT_GROUP, GROUPS, readGroup } from "./sections/groups.ts";
import {
  checkRouting,
  readRecord,
  readRoute,
  readRouting,
  RECORDS,
  ROUTES,
  ROUTING,
} from "./sections/routing.ts";
import type { LocalRecord } from "../route/records.ts";
import { readSection, type Section } from "./table.ts";

export * from "./schema.ts";
export { configWarnings } from "./warnings.ts";
export { restartNeeded } from "./reload.ts";
export { formatConfigError, parseDuration };
export type { FileReader };

/** Options for parseConfig. */
export interface ParseOptions {
  /** The config file path, used in messages. */
  path: string;
  /** Where relative paths (ca_file, cert_file, key_file, query_log.path) resolve from. */
  baseDir: string;
  /** How ca_file, cert_file and key_file contents are read. */
  readFile: FileReader;
}

/** Tells a loaded config from an error without inspecting fields by hand. */
export function isConfigError(x: Config | ConfigError): x is ConfigError {
  return !("listeners" in x) && "key" in x && "message" in x;
}

/** Every known key per section ("" is the top level), derived from the section tables. */
export const KNOWN_KEYS: Readonly<Record<string, readonly string[]>> = Object.freeze(
  Object.fromEntries([
    ["", SECTIONS.map((s) => s.name)],
    ...SECTIONS.map((s) => [s.name, Object.keys(s.rows)]),
  ]),
);

/** Reads `path` with Deno.readTextFile (the only Deno call, default reader) then parseConfig. */
export async function loadConfig(
  path: string,
  readFile: FileReader = (p) => Deno.readTextFile(p),
): Promise<Config | ConfigError> {
  let text: string;
  try {
    text = await readFile(path);
  } catch (e) {
    return { key: "config", value: undefined, message: `cannot read: ${osReason(e)}`, path };
  }
  return parseConfig(text, { path, baseDir: dirname(path), readFile });
}

/**
 * Parses and validates TOML text; relative file paths resolve against baseDir. Certificates and
 * keys are parsed and matched as the listeners will at start-up, so `--check` rejects the same.
 */
export async function parseConfig(
  text: string,
  opts: ParseOptions,
): Promise<Config | ConfigError> {
  try {
    return await validate(text, opts);
  } catch (e) {
    if (e instanceof Invalid) {
      return { key: e.key, value: e.value, message: e.message, path: opts.path };
    }
    throw e;
  }
}

async function validate(text: string, opts: ParseOptions): Promise<Config> {
  const root = parseToml(text);
  const keys = new KeyChecker(SECTIONS);
  keys.checkTop(root);
  const files = new FileJobs();
  const { baseDir } = opts;
  const section = (s: Section) => keys.table(root[s.name], s, s.name);

  const access = readSection(ACCESS, section(ACCESS), "access");
  const listeners = entries(root, LISTENERS, keys).map(([t, at]) =>
    readListener(t, at, { baseDir, files, keys, access })
  );
  checkListenerAddresses(listeners);
  const upstreams = entries(root, UPSTREAMS, keys).map(([t, at]) =>
    readUpstream(t, at, { baseDir, files })
  );

  const s = section(SERVER);
  const server = readSection(SERVER, s, "server");
  const forwarding = readForwarding(section(FORWARDING), s, server.queryTimeoutMs);
  if (forwarding.bootstrap.length === 0) {
    const i = upstreams.findIndex((u) => !u.hostnameIsIp);
    if (i >= 0) {
      throw new Invalid(
        `upstreams[${i}].url`,
        upstreams[i].url,
        `a hostname upstream needs [forwarding] bootstrap servers to look up its address, ` +
          `e.g. ${BOOTSTRAP_EXAMPLE}; or write an IP address and set tls_name`,
      );
    }
  }
  const limits = readSection(LIMITS, section(LIMITS), "limits");
  const log = readSection(LOG, section(LOG), "log");
  const cache = readCache(section(CACHE), s, server.queryTimeoutMs);
  const rateLimit = readRateLimit(section(RATE_LIMIT));
  const policy = readSection(POLICY, section(POLICY), "policy");
  const admin = readAdmin(root, keys, listeners);
  const queryLog = readQueryLog(section(QUERY_LOG), baseDir);

  // Split DNS: groups, routes, local data.
  const groupNames = new Set(upstreams.map((u) => u.group));
  const groups = entries(root, GROUPS, keys, false).map(([t, at]) => {
    const g = readGroup(t, at, forwarding);
    if (!groupNames.has(g.name)) {
      throw new Invalid(
        keyPath(at, "name"),
        g.name,
        `no [[upstreams]] has group = ${JSON.stringify(g.name)}; add group = ` +
          `${JSON.stringify(g.name)} to the upstreams of this group`,
      );
    }
    return g;
  });
  groups.forEach((g, i) => {
    const first = groups.findIndex((o) => o.name === g.name);
    if (first < i) {
      throw new Invalid(`groups[${i}].name`, g.name, `duplicate of groups[${first}].name`);
    }
  });
  const routes = entries(root, ROUTES, keys, false).map(([t, at]) => readRoute(t, at));
  const records = entries(root, RECORDS, keys, false).map(([t, at]) => readRecord(t, at));
  if (!groupNames.has(DEFAULT_GROUP) && !routes.some((r) => r.domains.includes("."))) {
    throw new Invalid(
      "upstreams",
      undefined,
      `every upstream has a group, so names no route covers would have nowhere to go: ` +
        `leave group out on the upstreams for them (the "${DEFAULT_GROUP}" group), or ` +
        `add a route for domains = ["."]`,
    );
  }
  const hosts: LocalRecord[][] = [];
  const hostsWarnings: string[] = [];
  const routing = readRouting(section(ROUTING), {
    baseDir,
    files,
    hosts,
    warnings: hostsWarnings,
  });
  const clients = entries(root, CLIENTS, keys, false).map(([t, at]) => readClient(t, at));
  checkClients(clients);
  files.then(() => checkDeclaredNames(clients, listeners));
  const parts = { routes, records, routing, groups: groupNames };
  files.then(() => checkRouting(parts, hosts));

  await files.run(opts.readFile);
  return {
    listeners,
    upstreams,
    server,
    forwarding,
    limits,
    log,
    cache,
    access,
    rateLimit,
    policy,
    admin,
    queryLog,
    groups,
    routes,
    records,
    routing,
    clients,
    hostsWarnings,
    path: opts.path,
  };
}

function parseToml(text: string): Table {
  try {
    return parse(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const reason = e.message.split("\n")[0].replace(/^Invalid TOML document:\s*/, "");
      throw new Invalid(
        "config",
        undefined,
        `TOML syntax error at line ${e.line}, column ${e.column}: ${reason}`,
      );
    }
    throw e;
  }
}

/**
 * The entries of an [[array of tables]], each with its key path; at least one is required unless
 * `needed` is false.
 */
function entries(
  root: Table,
  section: Section,
  keys: KeyChecker,
  needed = true,
): [Table, string][] {
  const name = section.name;
  const v = root[name];
  const required = `at least one [[${name}]] entry is required`;
  if (v === undefined && !needed) return [];
  if (v === undefined) throw new Invalid(name, v, required);
  if (!Array.isArray(v)) {
    const hint = isTable(v) ? `; write [[${name}]] with double brackets` : "";
    throw new Invalid(name, v, `expected an array of tables, got ${describe(v)}${hint}`);
  }
  if (v.length === 0 && needed) throw new Invalid(name, v, required);
  return v.map((item, i) => {
    const at = keyPath(name, i);
    if (!isTable(item)) {
      const first = Object.keys(section.rows)[0];
      throw new Invalid(at, item, `expected a table with a ${first} key, got ${describe(item)}`);
    }
    keys.check(item, section, at);
    return [item, at];
  });
}
