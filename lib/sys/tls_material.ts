/**
 * The one check that a certificate and private key can be served together, shared by the config
 * load (so `--check` rejects what start-up rejects) and the TLS listeners (start-up and
 * certificate reload). node:tls in Deno accepts anything in `createSecureContext` and would only
 * fail each handshake, so the pair is parsed and matched here instead.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { errText } from "./errors.ts";

/** Why a certificate/key pair cannot be served: which half is at fault, and the reason. */
export interface KeyPairProblem {
  part: "cert" | "key";
  reason: string;
}

/** Why `pem` (one PEM certificate, or a chain: the first is checked) does not parse, or null. */
export function certificateProblem(pem: string): string | null {
  try {
    new X509Certificate(pem);
    return null;
  } catch (err) {
    return errText(err);
  }
}

/**
 * Null when `cert` starts with a parseable certificate whose public key matches the private key
 * `key`; otherwise what is wrong and with which half.
 */
export function keyPairProblem(cert: string, key: string): KeyPairProblem | null {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    return { part: "cert", reason: `certificate is not a PEM certificate: ${errText(err)}` };
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    return { part: "key", reason: `key is not a PEM private key: ${errText(err)}` };
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    return { part: "key", reason: `key does not belong to the certificate for ${leaf.subject}` };
  }
  return null;
}

/** Throws (with keyPairProblem's reason) unless `cert` and `key` can be served together. */
export function checkCertificate(cert: string, key: string): void {
  const problem = keyPairProblem(cert, key);
  if (problem) throw new Error(problem.reason);
}
