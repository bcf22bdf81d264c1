/**
 * Upstream key pinning (RFC 7858 §4.2, Stubby's `tls_pubkey_pinset`, Knot Resolver's `pin_sha256`):
 * a pin is base64(SHA-256(SubjectPublicKeyInfo DER)) of a certificate's public key. A connection
 * to a pinned upstream is used only if some certificate in its chain matches a pin, in addition
 * to the normal CA and name checks. Pinning the key (not the certificate) survives renewals that
 * keep the key; pinning an intermediate's or the root's key survives leaf key rotation.
 *
 * Pure functions over certificates; reading the chain off a node:tls socket is one small adapter
 * ({@link peerChain}). The check runs after every handshake, on the chain the socket reports,
 * never in a verification callback that a resumed session could skip; an empty chain never
 * matches, so a session that reports no certificates fails closed.
 */
import { createHash, X509Certificate } from "node:crypto";

/** A pin is the SHA-256 digest of the key: 32 bytes, 44 base64 characters with padding. */
export const SPKI_PIN_BYTES = 32;

/** The deepest chain walked on a socket (leaf, intermediates, root): a loop guard. */
export const MAX_CHAIN_DEPTH = 16;

const PIN_SYNTAX = /^[A-Za-z0-9+/]{43}=$/;

/** A certificate as DER bytes, PEM text or a parsed X509Certificate. */
export type CertificateInput = Uint8Array | string | X509Certificate;

function toX509(cert: CertificateInput): X509Certificate {
  return cert instanceof X509Certificate ? cert : new X509Certificate(cert);
}

/**
 * The pin of a certificate: base64(SHA-256(DER SubjectPublicKeyInfo)), the value of
 * `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary |
 * openssl enc -base64`. Throws if `cert` is not a certificate (callers pass what TLS gave them).
 */
export function spkiPin(cert: CertificateInput): string {
  const spki = toX509(cert).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

/**
 * Checks one configured pin: base64 (standard alphabet, with padding) of exactly 32 bytes.
 * Returns the pin, or an error message naming the value and what a pin looks like.
 */
export function parsePin(text: string): string | { error: string } {
  const what = JSON.stringify(text);
  if (!PIN_SYNTAX.test(text)) {
    return {
      error: `${what} is not a SPKI pin: expected the base64 SHA-256 of a public key, ` +
        `44 characters ending in "=" (see --print-pins)`,
    };
  }
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  // Non-canonical base64 (stray low bits in the last character) decodes, but is not a digest
  // anyone computed: refuse it rather than compare against a different string.
  if (bytes.length !== SPKI_PIN_BYTES || btoa(String.fromCharCode(...bytes)) !== text) {
    return { error: `${what} is not a SPKI pin: it does not decode to exactly 32 bytes` };
  }
  return text;
}

/** The result of checking a chain against a pin set. */
export type PinCheck =
  | { ok: true; pin: string; depth: number }
  | {
    ok: false;
    /** "no_chain": the connection reported no certificate; "no_match": none matched. */
    reason: "no_chain" | "no_match";
    /** The pins of the chain that was presented, leaf first (for the log line). */
    presented: string[];
  };

/** The pins an upstream accepts; built once from configuration, checked on every connection. */
export class PinSet {
  readonly pins: readonly string[];
  readonly #set: ReadonlySet<string>;

  /** Throws with the offending value's message if a pin is invalid (config validates first). */
  constructor(pins: readonly string[]) {
    if (pins.length === 0) throw new RangeError("a pin set needs at least one pin");
    for (const p of pins) {
      const r = parsePin(p);
      if (typeof r !== "string") throw new RangeError(r.error);
    }
    this.pins = [...pins];
    this.#set = new Set(pins);
  }

  /**
   * Whether some certificate of `chain` (leaf first) has a pinned key. Certificates that do not
   * parse count as not matching. An empty chain is "no_chain": never a match.
   */
  check(chain: readonly CertificateInput[]): PinCheck {
    const presented: string[] = [];
    for (let depth = 0; depth < chain.length && depth < MAX_CHAIN_DEPTH; depth++) {
      let pin: string;
      try {
        pin = spkiPin(chain[depth]);
      } catch {
        presented.push("(unparseable certificate)");
        continue;
      }
      if (this.#set.has(pin)) return { ok: true, pin, depth };
      presented.push(pin);
    }
    return { ok: false, reason: chain.length === 0 ? "no_chain" : "no_match", presented };
  }
}

/** What node:tls reports for a peer certificate, as far as the chain walk needs it. */
export interface PeerCertificateLike {
  raw?: Uint8Array;
  fingerprint256?: string;
  issuerCertificate?: PeerCertificateLike;
}

/** The part of a node:tls socket that reports the peer's chain. */
export interface PeerChainSource {
  getPeerCertificate(detailed: true): PeerCertificateLike | null | undefined;
}

/**
 * The peer's certificate chain as DER, leaf first, from a node:tls socket after its handshake:
 * `getPeerCertificate(true)` and its `issuerCertificate` links (which node:tls ends with a root
 * that points to itself). Stops at a repeated certificate or {@link MAX_CHAIN_DEPTH}. Empty when
 * the socket reports no certificate (node:tls returns `{}` then).
 */
export function peerChain(socket: PeerChainSource): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<string>();
  let cert = socket.getPeerCertificate(true);
  while (cert && cert.raw && out.length < MAX_CHAIN_DEPTH) {
    const id = cert.fingerprint256 ?? createHash("sha256").update(cert.raw).digest("hex");
    if (seen.has(id)) break;
    seen.add(id);
    out.push(new Uint8Array(cert.raw));
    cert = cert.issuerCertificate;
  }
  return out;
}
