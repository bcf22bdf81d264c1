/**
 * DoH bearer tokens: each client gets its own random token; dotproxy keeps only the token's
 * SHA-256, so neither the configuration nor a tokens file discloses a usable credential. A
 * presented token is hashed and compared with every stored digest in constant time, with no early
 * exit, so timing reveals neither whether nor which entry matched.
 *
 * Making a token and its entry (the token goes to the client, the line to dotproxy):
 *
 *   TOKEN=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
 *   printf '%s %s\n' alice "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" >> tokens
 *
 * The tokens file holds one `name sha256hex` per line; blank lines and lines starting with `#`
 * are ignored. It holds no secrets, but keep it writable by root only (0644 root:root, or 0600):
 * whoever can write it can add a client. Tokens must be long and random (the command above gives
 * 256 bits): a digest of a short or guessable token can be brute-forced offline.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { clientNameProblem } from "./names.ts";

/** A stored credential: the client's name and the SHA-256 of its token, in hex. */
export interface TokenEntry {
  name: string;
  sha256: string;
}

/** Longest token accepted (longer ones are refused before hashing). */
export const MAX_TOKEN_LENGTH = 512;

/** Most entries in one store (config entries and file lines together). */
export const MAX_TOKEN_ENTRIES = 10_000;

const HEX64 = /^[0-9a-f]{64}$/;

/** Why an entry is unusable (naming `where` and the value), or null. */
export function tokenEntryProblem(e: TokenEntry, where: string): string | null {
  const nameProblem = clientNameProblem(e.name);
  if (nameProblem) return `${where}: ${nameProblem}`;
  if (!HEX64.test(e.sha256)) {
    return `${where}: sha256 ${JSON.stringify(e.sha256)} for ${JSON.stringify(e.name)} is not ` +
      `64 lower-case hex digits (make it with: printf %s "$TOKEN" | sha256sum)`;
  }
  return null;
}

/**
 * Parses a tokens file (`name sha256hex` per line). Errors name the source, the line and the
 * value; a name may contain spaces, so the digest is the last field.
 */
export function parseTokenFile(text: string, source: string): TokenEntry[] | { error: string } {
  const entries: TokenEntry[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const where = `${source} line ${i + 1}`;
    const cut = line.lastIndexOf(" ");
    if (cut < 0) {
      return { error: `${where}: expected "name sha256hex", got ${JSON.stringify(line)}` };
    }
    const entry = { name: line.slice(0, cut).trim(), sha256: line.slice(cut + 1) };
    const problem = tokenEntryProblem(entry, where);
    if (problem) return { error: problem };
    entries.push(entry);
  }
  return entries;
}

/** The outcome of checking one presented token. */
export type TokenCheck = { ok: true; name: string } | { ok: false };

/** The tokens a listener accepts; immutable (a reload builds a new store). */
export class TokenStore {
  readonly #names: string[];
  readonly #digests: Uint8Array[];

  /**
   * Throws with a message naming the entry if one is invalid, if two entries share a name, or
   * two share a digest (one token for two clients: which is it?). Config validation calls
   * {@link tokenStoreProblem} first, so users see the message, not a throw.
   */
  constructor(entries: readonly TokenEntry[]) {
    const problem = tokenStoreProblem(entries);
    if (problem) throw new RangeError(problem);
    this.#names = entries.map((e) => e.name);
    this.#digests = entries.map((e) =>
      Uint8Array.from(e.sha256.match(/../g)!, (h) => parseInt(h, 16))
    );
  }

  /** Number of entries. */
  get size(): number {
    return this.#names.length;
  }

  /** Names of the clients, for the bounded metrics label set. */
  get names(): readonly string[] {
    return this.#names;
  }

  /**
   * Checks a presented token: SHA-256 of it, compared with every digest in constant time (all
   * entries, always). Tokens longer than {@link MAX_TOKEN_LENGTH} are refused unhashed.
   */
  verify(token: string): TokenCheck {
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return { ok: false };
    const digest = createHash("sha256").update(token, "utf8").digest();
    let found = -1;
    for (let i = 0; i < this.#digests.length; i++) {
      // No branch on the secret beyond selecting the index: every entry is compared.
      const equal = timingSafeEqual(digest, this.#digests[i]);
      found = equal ? i : found;
    }
    return found < 0 ? { ok: false } : { ok: true, name: this.#names[found] };
  }
}

/** Why a set of entries cannot form a store (first problem, naming the value), or null. */
export function tokenStoreProblem(entries: readonly TokenEntry[]): string | null {
  if (entries.length > MAX_TOKEN_ENTRIES) {
    return `${entries.length} tokens is more than the limit of ${MAX_TOKEN_ENTRIES}`;
  }
  const names = new Set<string>();
  const digests = new Map<string, string>();
  for (const e of entries) {
    const problem = tokenEntryProblem(e, "tokens");
    if (problem) return problem;
    if (names.has(e.name)) return `tokens: the name ${JSON.stringify(e.name)} appears twice`;
    names.add(e.name);
    const other = digests.get(e.sha256);
    if (other !== undefined) {
      return `tokens: ${JSON.stringify(other)} and ${JSON.stringify(e.name)} have the same ` +
        `token (sha256 ${e.sha256})`;
    }
    digests.set(e.sha256, e.name);
  }
  return null;
}
