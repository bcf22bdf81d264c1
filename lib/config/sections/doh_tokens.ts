/**
 * DoH credentials on https:// and http:// listeners: `client_auth` with per-client tokens kept as
 * SHA-256 digests (`tokens` inline, `tokens_file` one `name sha256hex` per line), and how repeated
 * failures from one address are slowed down (lib/identity/doh_auth.ts, failure_limiter.ts,
 * tokens.ts). The rows are part of the [[listeners]] table (listeners.ts spreads them in).
 */

import type { ClientAuthMode } from "../../identity/modes.ts";
import {
  DEFAULT_FAILURE_BLOCK_MS,
  DEFAULT_FAILURES_PER_MINUTE,
  DEFAULT_MAX_FAILURES,
} from "../../identity/failure_limiter.ts";
import {
  MAX_TOKEN_ENTRIES,
  parseTokenFile,
  type TokenEntry,
  tokenEntryProblem,
  tokenStoreProblem,
} from "../../identity/tokens.ts";
import { keyPath } from "../errors.ts";
import { type FileJobs, filePath, filePathString } from "../files.ts";
import {
  describe,
  duration,
  integer,
  Invalid,
  isTable,
  number,
  type Reader,
  type Table,
} from "../readers.ts";
import { key, readRow } from "../table.ts";

/** `tokens = [{ name = "alice", sha256 = "<64 hex digits>" }, ...]`. */
const tokenList: Reader<TokenEntry[]> = (v, path) => {
  const example = `[{ name = "alice", sha256 = "<printf %s \\"$TOKEN\\" | sha256sum>" }]`;
  if (!Array.isArray(v)) {
    throw new Invalid(
      path,
      v,
      `expected an array of tables such as ${example}, got ${describe(v)}`,
    );
  }
  if (v.length > MAX_TOKEN_ENTRIES) {
    throw new Invalid(path, v.length, `at most ${MAX_TOKEN_ENTRIES} tokens`);
  }
  return v.map((item, i) => {
    const at = keyPath(path, i);
    if (!isTable(item) || typeof item.name !== "string" || typeof item.sha256 !== "string") {
      throw new Invalid(at, item, `expected { name = "...", sha256 = "..." }`);
    }
    const extra = Object.keys(item).find((k) => k !== "name" && k !== "sha256");
    if (extra !== undefined) {
      throw new Invalid(keyPath(at, extra), item[extra], "a token has only name and sha256");
    }
    const entry = { name: item.name, sha256: item.sha256 };
    const problem = tokenEntryProblem(entry, at);
    if (problem) throw new Invalid(at, entry.sha256, problem.replace(`${at}: `, ""));
    return entry;
  });
};

/** The DoH credential rows of [[listeners]]. */
export const DOH_AUTH_ROWS = {
  tokens: key(tokenList, {
    default: [],
    defaultDoc: "[] (none)",
    doc: "https/http with client_auth: clients' names and the SHA-256 (hex) of their tokens",
    reloadable: true,
  }),
  tokens_file: key(filePathString, {
    doc: "https/http with client_auth: a file of `name sha256hex` lines (read at start and reload)",
    reloadable: true,
  }),
  auth_max_failures: key(integer({ min: 1, max: 1_000_000 }), {
    default: DEFAULT_MAX_FAILURES,
    doc: "https/http with client_auth: failed token checks an address may make in a burst",
    reloadable: true,
    field: "authMaxFailures",
  }),
  auth_failures_per_minute: key(number({ min: 0.001, max: 1_000_000 }), {
    default: DEFAULT_FAILURES_PER_MINUTE,
    doc: "https/http with client_auth: failures per minute an address earns back",
    reloadable: true,
    field: "authFailuresPerMinute",
  }),
  auth_block: key(duration({ allowZero: true }), {
    default: DEFAULT_FAILURE_BLOCK_MS,
    doc: "https/http with client_auth: how long an address over its failures gets 429",
    reloadable: true,
    field: "authBlockMs",
  }),
};

/** A DoH listener's credentials, as the server builds its check from them. */
export interface DohAuthConfig {
  /** client_auth: "none" (default), "optional" or "require". */
  clientAuth: ClientAuthMode;
  /** Inline `tokens`, then those of `tokens_file` (filled in once the file is read). */
  tokens: TokenEntry[];
  /** Resolved tokens_file path, for messages. */
  tokensFile?: string;
  authMaxFailures: number;
  authFailuresPerMinute: number;
  authBlockMs: number;
}

/** The DoH credential field names, absent on udp/tcp/tls listeners. */
export type DohAuthFields =
  | "tokens"
  | "tokensFile"
  | "authMaxFailures"
  | "authFailuresPerMinute"
  | "authBlockMs";

/**
 * Reads the credential keys of an https/http listener; `clientAuth` comes from the shared
 * client_auth row. The tokens file is queued on `files`; its entries join the inline ones in the
 * returned object's `tokens` once read (so build the listener on that object, not a copy), and
 * the whole store is checked (one name, one digest per client).
 */
export function readDohAuth(
  t: Table,
  at: string,
  clientAuth: ClientAuthMode,
  ctx: { baseDir: string; files: FileJobs },
): DohAuthConfig {
  const rows = DOH_AUTH_ROWS;
  const tokens = readRow(rows.tokens, t, at, "tokens");
  const out: DohAuthConfig = {
    clientAuth,
    tokens,
    authMaxFailures: readRow(rows.auth_max_failures, t, at, "auth_max_failures"),
    authFailuresPerMinute: readRow(
      rows.auth_failures_per_minute,
      t,
      at,
      "auth_failures_per_minute",
    ),
    authBlockMs: readRow(rows.auth_block, t, at, "auth_block"),
  };
  const given = t.tokens !== undefined || t.tokens_file !== undefined;
  if (clientAuth === "none") {
    if (given) {
      const k = t.tokens !== undefined ? "tokens" : "tokens_file";
      throw new Invalid(
        keyPath(at, k),
        t[k],
        `not used with client_auth = "none": set client_auth = "optional" or "require" to ask ` +
          `clients for a token`,
      );
    }
    return out;
  }
  if (!given) {
    throw new Invalid(
      keyPath(at, "client_auth"),
      clientAuth,
      `client_auth = "${clientAuth}" on a DoH listener needs tokens or tokens_file: each ` +
        `client's name and the SHA-256 of its token (see the README for how to make one)`,
    );
  }
  const check = (entries: TokenEntry[], where: string, value: unknown) => {
    const problem = tokenStoreProblem(entries);
    if (problem) throw new Invalid(keyPath(at, where), value, problem);
  };
  check(tokens, "tokens", t.tokens);
  if (t.tokens_file === undefined && tokens.length === 0) {
    throw new Invalid(keyPath(at, "tokens"), t.tokens, "no tokens: list at least one client");
  }
  if (t.tokens_file !== undefined) {
    const path = filePath(t, at, "tokens_file", ctx.baseDir, "");
    out.tokensFile = path;
    let fromFile: TokenEntry[] = [];
    ctx.files.read({
      key: keyPath(at, "tokens_file"),
      value: t.tokens_file,
      path,
      extract: (text, file) => {
        const r = parseTokenFile(text, file);
        if ("error" in r) return r.error;
        fromFile = r;
        return [];
      },
      apply: () => {},
    });
    ctx.files.then(() => {
      const all = [...tokens, ...fromFile];
      if (all.length === 0) {
        throw new Invalid(keyPath(at, "tokens_file"), t.tokens_file, `${path} has no tokens`);
      }
      check(all, "tokens_file", t.tokens_file);
      out.tokens = all;
    });
  }
  return out;
}
