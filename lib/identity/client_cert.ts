/**
 * The client's identity from its TLS certificate (mutual TLS on the DoT listener): after the
 * handshake, whether the connection may proceed under the listener's `client_auth` mode, and the
 * client's name, taken from the certificate's subject CN, else its first DNS, email or URI
 * subject alternative name (in the order the certificate lists them).
 *
 * Modes (node:tls options the listener derives from them: {@link tlsServerOptions}):
 * - "none": no certificate is requested; every client is anonymous.
 * - "optional": a certificate is requested, not required. None: anonymous. One that does not
 *   verify against the client CA (expired, wrong CA, not for clientAuth): the connection is
 *   refused after the handshake, so a client that believes it is authenticated never silently
 *   runs as anonymous.
 * - "require": node:tls refuses the handshake unless the client presents a certificate chaining
 *   to the client CA; the check here confirms it (defence in depth).
 *
 * Checked in Deno 2.9.6: node:tls with `requestCert` reports `authorized` and the certificate,
 * also on a resumed TLS 1.2 session (the session keeps the client certificate).
 */
import type { ClientAuthMode } from "./modes.ts";
import { clientNameProblem } from "./names.ts";

/** What node:tls reports for the peer's certificate, as far as naming needs it. */
export interface PeerCertificateFields {
  /** node:tls gives one string per attribute; an array when the attribute repeats. */
  subject?: { CN?: string | string[] };
  subjectaltname?: string;
  raw?: Uint8Array;
}

/** The part of a node:tls server socket that says who the client is. */
export interface ClientCertSource {
  authorized: boolean;
  authorizationError?: unknown;
  getPeerCertificate(detailed?: false): PeerCertificateFields | null | undefined;
}

/** Why a connection was refused after its handshake; one list, for counters. */
export const CLIENT_CERT_REFUSALS = ["no_certificate", "invalid_certificate"] as const;
export type ClientCertRefusal = typeof CLIENT_CERT_REFUSALS[number];

/** The decision on one connection; `name` null: anonymous (or a certificate without a name). */
export type ClientCertOutcome =
  | { ok: true; name: string | null }
  | { ok: false; reason: ClientCertRefusal; message: string };

/** The node:tls server options for a mode and client CA (PEM). */
export function tlsServerOptions(
  mode: ClientAuthMode,
  clientCa: string | null,
): { requestCert: boolean; rejectUnauthorized: boolean; ca?: string } {
  if (mode === "none") return { requestCert: false, rejectUnauthorized: false };
  if (clientCa === null) throw new RangeError(`client_auth "${mode}" needs client_ca_file`);
  return { requestCert: true, rejectUnauthorized: mode === "require", ca: clientCa };
}

const SAN_TYPES = new Set(["DNS", "email", "URI"]);

/**
 * The name a certificate gives its holder: the first usable subject CN, else the first usable
 * DNS/email/URI SAN. "Usable" means a valid client name (lib/identity/names.ts). Null if none.
 */
export function certificateName(cert: PeerCertificateFields): string | null {
  const cn = cert.subject?.CN;
  for (const c of Array.isArray(cn) ? cn : cn === undefined ? [] : [cn]) {
    if (typeof c === "string" && clientNameProblem(c) === null) return c;
  }
  for (const entry of splitSan(cert.subjectaltname ?? "")) {
    const colon = entry.indexOf(":");
    if (colon < 0 || !SAN_TYPES.has(entry.slice(0, colon))) continue;
    const value = unquote(entry.slice(colon + 1));
    if (value !== null && clientNameProblem(value) === null) return value;
  }
  return null;
}

/** Splits node's "DNS:a, email:b, URI:\"c,d\"" at the ", " that are not inside quotes. */
function splitSan(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\\" && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (c === "," && !quoted && text[i + 1] === " ") {
      out.push(text.slice(start, i));
      start = i + 2;
      i++;
    }
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

/** Node quotes SAN values that contain separators as JSON strings; null if that fails. */
function unquote(v: string): string | null {
  if (!v.startsWith('"')) return v;
  try {
    const s = JSON.parse(v);
    return typeof s === "string" ? s : null;
  } catch {
    return null;
  }
}

/** Decides a connection after its handshake, under the listener's mode. */
export function clientCertIdentity(
  socket: ClientCertSource,
  mode: ClientAuthMode,
): ClientCertOutcome {
  if (mode === "none") return { ok: true, name: null };
  const cert = socket.getPeerCertificate();
  const present = cert !== null && cert !== undefined && cert.raw !== undefined;
  if (!present) {
    if (mode === "optional") return { ok: true, name: null };
    return { ok: false, reason: "no_certificate", message: "no client certificate" };
  }
  if (!socket.authorized) {
    return {
      ok: false,
      reason: "invalid_certificate",
      message: `client certificate ${describe(cert)} not accepted: ${
        String(socket.authorizationError ?? "not verified")
      }`,
    };
  }
  return { ok: true, name: certificateName(cert) };
}

function describe(cert: PeerCertificateFields): string {
  const name = certificateName(cert);
  return name === null ? "(no usable name)" : JSON.stringify(name);
}
