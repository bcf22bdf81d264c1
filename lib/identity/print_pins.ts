/**
 * The core of `dotproxy --print-pins URL`: connect to a DoT (`tls://`) or DoH (`https://`) server,
 * take the certificate chain it presents and print each certificate's subject and SPKI pin, ready
 * to paste into an upstream's `spki_pins`. The operator must check out of band that this is the
 * server they mean (the point of pinning is not to trust the network blindly); the report says
 * whether the chain verified against the given CA (or the system's) for the name.
 *
 * The same value comes from OpenSSL:
 *   openssl s_client -connect 1.1.1.1:853 -servername cloudflare-dns.com </dev/null 2>/dev/null |
 *     openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
 *     openssl dgst -sha256 -binary | openssl enc -base64
 * (that pipeline prints the leaf's pin only; add `-showcerts` and split the output for the rest).
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { connect, type TLSSocket } from "node:tls";
import { parseEndpoint } from "../config/url.ts";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { peerChain, spkiPin } from "./spki.ts";

/** Where to connect and which name to ask for. */
export interface PinTarget {
  /** IP literal or DNS name. */
  hostname: string;
  port: number;
  /** SNI and the name the certificate is verified for; none for a bare IP without tls_name. */
  servername?: string;
}

/** One certificate of the chain, leaf first. */
export interface ChainEntry {
  subject: string;
  issuer: string;
  notAfter: string;
  pin: string;
}

/** What the server presented, and whether it verified. */
export interface PinReport {
  target: PinTarget;
  /** True when the chain verified against the CA and the name (what an upstream requires). */
  verified: boolean;
  /** Why it did not verify (node:tls's reason), or null. */
  verifyError: string | null;
  chain: ChainEntry[];
}

/** The default time for connect and handshake. */
export const DEFAULT_PRINT_PINS_TIMEOUT_MS = 10_000;

/**
 * Reads `tls://host[:port]` (853 by default) or `https://host[:port][/path]` (443). The
 * certificate name is `tlsName` if given, else the host when it is a name; a bare IP without
 * `tlsName` is connected to without SNI and verified for the IP.
 */
export function pinTargetFromUrl(url: string, tlsName?: string): PinTarget | { error: string } {
  const r = parseEndpoint(url, {
    schemes: ["tls", "https"],
    moreSchemesLater: false,
    defaultPorts: { tls: 853, https: 443 },
    pathSchemes: ["https"],
    nameSchemes: ["tls", "https"],
    example: "tls://1.1.1.1:853",
    hostnameHint: "",
  });
  if (!r.ok) return { error: `--print-pins ${JSON.stringify(url)}: ${r.message}` };
  const { hostname, hostnameIsIp, port } = r.endpoint;
  const servername = tlsName ?? (hostnameIsIp ? undefined : hostname);
  return servername === undefined ? { hostname, port } : { hostname, port, servername };
}

/**
 * Connects once, reads the presented chain and closes. `ca` (PEM) replaces the system trust
 * store for the verification verdict; the chain is reported either way. Rejects on connection
 * failure or timeout, with the target in the message.
 */
export function fetchPins(
  target: PinTarget,
  opts: { clock: Clock; timeoutMs?: number; ca?: string },
): Promise<PinReport> {
  const where = `${target.hostname}:${target.port}`;
  return new Promise<PinReport>((resolve, reject) => {
    const socket: TLSSocket = connect({
      host: target.hostname,
      port: target.port,
      servername: target.servername,
      ca: opts.ca,
      // The verdict is reported, not enforced: the operator may be pinning a self-signed key.
      rejectUnauthorized: false,
    });
    const timeoutMs = opts.timeoutMs ?? DEFAULT_PRINT_PINS_TIMEOUT_MS;
    const cancel = opts.clock.schedule(timeoutMs, () => {
      socket.destroy();
      reject(new Error(`${where}: no TLS handshake within ${timeoutMs} ms`));
    });
    socket.once("error", (err) => {
      cancel();
      socket.destroy();
      reject(new Error(`${where}: ${errText(err)}`));
    });
    socket.once("secureConnect", () => {
      cancel();
      try {
        const ders = peerChain(socket);
        const verifyError = socket.authorized
          ? nameProblem(ders[0], target)
          : String(socket.authorizationError ?? "not verified");
        resolve({ target, verified: verifyError === null, verifyError, chain: ders.map(describe) });
      } catch (err) {
        reject(new Error(`${where}: ${errText(err)}`));
      } finally {
        socket.destroy();
      }
    });
  });
}

/**
 * The name check of the verdict, done here because with rejectUnauthorized off node:tls may not
 * make it: the leaf must be valid for the servername (or, without one, for the IP connected to).
 */
function nameProblem(leafDer: Uint8Array | undefined, target: PinTarget): string | null {
  if (!leafDer) return "no certificate";
  const leaf = new X509Certificate(leafDer);
  const name = target.servername ?? target.hostname;
  const matches = isIP(name) ? leaf.checkIP(name) : leaf.checkHost(name);
  return matches ? null : `the certificate is not valid for ${name}`;
}

function describe(der: Uint8Array): ChainEntry {
  const x = new X509Certificate(der);
  return {
    subject: oneLine(x.subject),
    issuer: oneLine(x.issuer),
    notAfter: x.validTo,
    pin: spkiPin(x),
  };
}

/** node:crypto prints distinguished names one attribute per line. */
function oneLine(dn: string): string {
  return dn.split("\n").filter((s) => s !== "").join(", ");
}

/**
 * The report as operators read it: one block per certificate, then the config line pinning the
 * leaf's key. Pinning an issuer's key instead survives leaf key changes, but then any certificate
 * that issuer signs matches the pin (the CA and name checks still apply).
 */
export function formatPinReport(r: PinReport): string {
  const t = r.target;
  const host = t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname;
  const lines = [
    `# ${host}:${t.port}${t.servername ? ` (name ${t.servername})` : ""}: ` +
    (r.verified ? "chain verified" : `chain NOT verified: ${r.verifyError}`),
  ];
  r.chain.forEach((c, i) => {
    const role = i === 0 ? "leaf" : i === r.chain.length - 1 ? "root" : "intermediate";
    lines.push(`# ${i} ${role}: ${c.subject}`);
    lines.push(`#   issuer: ${c.issuer}; expires ${c.notAfter}`);
    lines.push(`#   pin: ${c.pin}`);
  });
  if (r.chain.length > 0) lines.push(`spki_pins = [${JSON.stringify(r.chain[0].pin)}]`);
  return lines.join("\n") + "\n";
}
