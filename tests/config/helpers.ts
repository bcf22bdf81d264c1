/** Shared fixtures for the config tests: a minimal valid config and an in-memory file reader. */

import assert from "node:assert/strict";
import {
  type FileReader,
  formatConfigError,
  isConfigError,
  parseConfig,
} from "../../lib/config/load.ts";
import type { Config, ConfigError } from "../../lib/config/schema.ts";

/** One listener and one upstream: the smallest valid config. */
export const LISTENER = `[[listeners]]\nurl = "udp://127.0.0.1:5053"\n`;
/** The upstream half of the minimal config. */
export const UPSTREAM = `[[upstreams]]\nurl = "tls://1.1.1.1"\ntls_name = "cloudflare-dns.com"\n`;
/** The smallest valid config. */
export const MINIMAL = LISTENER + UPSTREAM;

/** Where the fake config lives; ca_file paths resolve against its directory. */
export const CONFIG_PATH = "/etc/dotproxy/config.toml";
/** The directory of CONFIG_PATH. */
export const BASE_DIR = "/etc/dotproxy";

/** A file of tests/fixtures, without its final newline. */
export const fixture = (name: string): string =>
  Deno.readTextFileSync(new URL(`../fixtures/${name}`, import.meta.url)).trim();

/**
 * A real PEM certificate (tests/fixtures/server.pem, without its final newline): the load parses
 * certificates and checks keys against them, as start-up does.
 */
export const PEM = fixture("server.pem");

/** The PKCS#8 PEM private key of PEM. */
export const KEY = fixture("server-key.pem");

/** A tls:// listener with cert_file and key_file, and the files it needs (see TLS_FILES). */
export const TLS_LISTENER = `[[listeners]]\nurl = "tls://127.0.0.1:853"\n` +
  `cert_file = "cert.pem"\nkey_file = "key.pem"\n`;
/** The files TLS_LISTENER (and other cert_file = "cert.pem" listeners) read. */
export const TLS_FILES: Record<string, string> = {
  "/etc/dotproxy/cert.pem": PEM,
  "/etc/dotproxy/key.pem": KEY,
};

/** A FileReader over a fixed map that fails like Deno does for missing files. */
export function fakeFiles(files: Record<string, string>): FileReader & { reads: string[] } {
  const reads: string[] = [];
  const reader = (path: string) => {
    reads.push(path);
    if (path in files) return Promise.resolve(files[path]);
    return Promise.reject(
      new Deno.errors.NotFound(`No such file or directory (os error 2): readfile '${path}'`),
    );
  };
  return Object.assign(reader, { reads });
}

/** parseConfig on `toml` as if read from CONFIG_PATH, with `files` the only other files. */
export async function parseWithFiles(
  toml: string,
  files: Record<string, string> = {},
): Promise<Config | ConfigError> {
  return await parseConfig(toml, {
    path: CONFIG_PATH,
    baseDir: BASE_DIR,
    readFile: fakeFiles(files),
  });
}

/** The config `toml` reads to; fails the test with the one-line error if it is refused. */
export async function acceptedConfig(
  toml: string,
  files: Record<string, string> = {},
): Promise<Config> {
  const result = await parseWithFiles(toml, files);
  if (isConfigError(result)) assert.fail(formatConfigError(result));
  return result;
}

/** A configuration the load must refuse, and what its error must say. */
export interface RejectedCase {
  name: string;
  toml: string;
  files?: Record<string, string>;
  key: string;
  /** Compared with deepEqual when present (use null for "missing", i.e. undefined). */
  value?: unknown;
  /** Substring or pattern the message must match. */
  message: string | RegExp;
}

/**
 * Asserts that `c.toml` is refused with `c`'s key, value and message, on one line that starts
 * with the config path and the key (as --check and start-up print it).
 */
export async function assertRejected(c: RejectedCase): Promise<void> {
  const result = await parseWithFiles(c.toml, c.files);
  assert.ok(isConfigError(result), `expected an error, got ${JSON.stringify(result)}`);
  assert.equal(result.key, c.key, formatConfigError(result));
  assert.equal(result.path, CONFIG_PATH);
  if (c.value !== undefined) assert.deepEqual(result.value, c.value ?? undefined);
  if (typeof c.message === "string") {
    assert.ok(result.message.includes(c.message), result.message);
  } else assert.match(result.message, c.message);
  const line = formatConfigError(result);
  assert.ok(line.startsWith(`${CONFIG_PATH}: ${c.key}`), line);
  assert.ok(!line.includes("\n"), line);
}
