/**
 * Who is asking over DNS-over-HTTPS: a per-client token, as `Authorization: Bearer <token>`
 * (RFC 6750) or as a path segment `/dns-query/<token>` for clients that take only a URL
 * (browsers, OS settings; AdGuard's "client ID" idea). Decided before any DNS work: the HTTP
 * listener calls {@link DohAuthenticator.authenticate} with the path and header and, on refusal,
 * answers the status and headers given here with an empty body.
 *
 * - missing credential with `client_auth = "require"`: 401 with `WWW-Authenticate: Bearer`;
 * - wrong or malformed token in the header: 401 (`error="invalid_token"`);
 * - wrong or malformed token in the path: 404, as for any unknown path (no hint that the path
 *   carries a credential);
 * - an address blocked after repeated failures (lib/identity/failure_limiter.ts): 429 with
 *   `Retry-After`, before the token is looked at.
 *
 * The path form puts the token where URLs go: browser history, and the access logs of anything
 * in front. dotproxy must never log the path of such a request (phase 2: the listener logs the
 * base path only). Prefer the header where the client supports it.
 */
import type { FailureLimiter } from "./failure_limiter.ts";
import type { ClientAuthMode } from "./modes.ts";
import { MAX_TOKEN_LENGTH, type TokenStore } from "./tokens.ts";

/** Why a request was refused; one list, for counters. */
export const DOH_AUTH_REFUSALS = ["missing", "wrong", "malformed", "throttled"] as const;
export type DohAuthRefusal = typeof DOH_AUTH_REFUSALS[number];

/** Where a credential came from. */
export type CredentialSource = "header" | "path";

/** The decision on one request. `name` null: no credential, served anonymously. */
export type DohAuthOutcome =
  | { ok: true; name: string | null; via: CredentialSource | null }
  | {
    ok: false;
    reason: DohAuthRefusal;
    via: CredentialSource | null;
    status: 401 | 404 | 429;
    headers: Record<string, string>;
  };

/** What the path of a request is, for a DoH base path such as "/dns-query". */
export type DohPath =
  | { kind: "base" }
  | { kind: "token"; token: string }
  | { kind: "malformed_token" }
  | { kind: "other" };

const UNRESERVED = /^[A-Za-z0-9._~-]+$/;
const B64TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;
const BEARER = /^bearer +/i;

/**
 * Classifies a request path (without its query): the base path, the base path plus one token
 * segment (RFC 3986 unreserved characters only: tokens should be base64url), a segment that
 * cannot be a token, or anything else (404 for the listener).
 */
export function classifyDohPath(path: string, basePath: string): DohPath {
  if (path === basePath) return { kind: "base" };
  if (!path.startsWith(basePath + "/")) return { kind: "other" };
  const segment = path.slice(basePath.length + 1);
  if (segment === "" || segment.includes("/")) return { kind: "other" };
  if (segment.length > MAX_TOKEN_LENGTH || !UNRESERVED.test(segment)) {
    return { kind: "malformed_token" };
  }
  return { kind: "token", token: segment };
}

/** The bearer token of an Authorization header: none, a token, or a Bearer that is malformed. */
export function bearerToken(
  authorization: string | null,
): { kind: "none" } | { kind: "token"; token: string } | { kind: "malformed" } {
  if (authorization === null) return { kind: "none" };
  const value = authorization.trim();
  const scheme = BEARER.exec(value);
  if (!scheme) {
    // Another scheme (Basic, ...) carries no bearer token; "Bearer" without one is malformed.
    return /^bearer$/i.test(value) ? { kind: "malformed" } : { kind: "none" };
  }
  const token = value.slice(scheme[0].length);
  if (token.length > MAX_TOKEN_LENGTH || !B64TOKEN.test(token)) return { kind: "malformed" };
  return { kind: "token", token };
}

/** Settings of a listener's token check. */
export interface DohAuthOptions {
  mode: ClientAuthMode;
  /** Required unless mode is "none". */
  store: TokenStore | null;
  /** Per-address failure accounting; null disables blocking (failures are still refused). */
  limiter: FailureLimiter | null;
  /** The DoH path, e.g. "/dns-query". */
  basePath: string;
  /** Realm in WWW-Authenticate. Default "dotproxy". */
  realm?: string;
}

/** A listener's token check; immutable, shared by all requests. */
export class DohAuthenticator {
  readonly #opts: DohAuthOptions;
  readonly #challenge: string;

  /** Throws if a mode other than "none" has no token store. */
  constructor(opts: DohAuthOptions) {
    if (opts.mode !== "none" && opts.store === null) {
      throw new RangeError(`client_auth "${opts.mode}" needs tokens`);
    }
    this.#opts = opts;
    this.#challenge = `Bearer realm="${opts.realm ?? "dotproxy"}"`;
  }

  /** What the listener should do with a path: serve it as DoH (maybe with a token), or 404. */
  route(path: string): "doh" | "other" {
    const p = classifyDohPath(path, this.#opts.basePath);
    if (p.kind === "base") return "doh";
    if (p.kind === "other" || this.#opts.mode === "none") return "other";
    return "doh";
  }

  /**
   * Decides one request from `clientIp` with `path` (no query) and its Authorization header.
   * Meant for paths {@link route} serves as DoH; any other path gets a 404 here too (not counted
   * as a failure). Cheap when refusing: a blocked address is not hashed; nothing touches DNS.
   */
  authenticate(clientIp: string, path: string, authorization: string | null): DohAuthOutcome {
    const { mode, store, limiter } = this.#opts;
    if (mode === "none" || store === null) return { ok: true, name: null, via: null };
    const p = classifyDohPath(path, this.#opts.basePath);
    const header = bearerToken(authorization);
    const via: CredentialSource | null = p.kind === "token" || p.kind === "malformed_token"
      ? "path"
      : header.kind === "none"
      ? null
      : "header";
    const wait = limiter?.retryAfterMs(clientIp) ?? 0;
    if (wait > 0) {
      return {
        ok: false,
        reason: "throttled",
        via,
        status: 429,
        headers: { "retry-after": String(Math.ceil(wait / 1000)) },
      };
    }
    if (p.kind === "other") return this.#refuse("wrong", "path", clientIp, false);
    if (p.kind === "malformed_token") return this.#refuse("malformed", "path", clientIp, true);
    if (header.kind === "malformed") return this.#refuse("malformed", "header", clientIp, true);

    // Every presented token must be valid and name the same client.
    let name: string | null = null;
    for (
      const [token, source] of [
        [p.kind === "token" ? p.token : null, "path"],
        [header.kind === "token" ? header.token : null, "header"],
      ] as const
    ) {
      if (token === null) continue;
      const r = store.verify(token);
      if (!r.ok || (name !== null && r.name !== name)) {
        return this.#refuse("wrong", source, clientIp, true);
      }
      name = r.name;
    }
    if (name !== null) return { ok: true, name, via };
    if (mode === "optional") return { ok: true, name: null, via: null };
    return {
      ok: false,
      reason: "missing",
      via: null,
      status: 401,
      headers: { "www-authenticate": this.#challenge },
    };
  }

  #refuse(
    reason: DohAuthRefusal,
    via: CredentialSource,
    clientIp: string,
    countFailure: boolean,
  ): DohAuthOutcome {
    if (countFailure) this.#opts.limiter?.recordFailure(clientIp);
    if (via === "path") return { ok: false, reason, via, status: 404, headers: {} };
    return {
      ok: false,
      reason,
      via,
      status: 401,
      headers: { "www-authenticate": `${this.#challenge}, error="invalid_token"` },
    };
  }
}
