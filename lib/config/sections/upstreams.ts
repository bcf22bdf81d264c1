/** [[upstreams]]: the servers we forward queries to. */

import { parsePin } from "../../identity/spki.ts";
import { UPSTREAM_PROTOCOLS } from "../enums.ts";
import { keyPath } from "../errors.ts";
import { type FileJobs, filePath, filePathString, pemCertificates } from "../files.ts";
import { isIP } from "../../net/ip.ts";
import {
  describe,
  Invalid,
  nonEmptyString,
  notAllowed,
  type Reader,
  required,
  type Table,
} from "../readers.ts";
import { declareSection, key, readRow } from "../table.ts";
import { type EndpointRules, parseEndpoint } from "../url.ts";
import { DEFAULT_GROUP, groupName } from "./groups.ts";
import { addressKeyHint, DEFAULT_DOH_PATH } from "./listeners.ts";

/** Port used when a tls:// upstream URL has none (RFC 7858). */
export const DEFAULT_UPSTREAM_PORT = 853;

/** Port used when an upstream URL has none, per scheme. */
export const DEFAULT_UPSTREAM_PORTS: Readonly<Record<UpstreamConfig["protocol"], number>> = Object
  .freeze({ tls: DEFAULT_UPSTREAM_PORT, https: 443, udp: 53, tcp: 53 });

/** A server we forward queries to. */
export interface UpstreamConfig {
  /** The URL as written, for messages. */
  url: string;
  protocol: typeof UPSTREAM_PROTOCOLS[number];
  /**
   * IP literal without brackets, or (tls/https only) a lower-case DNS name without a trailing
   * dot, resolved through [forwarding] bootstrap.
   */
  hostname: string;
  /** False when `hostname` is a DNS name. */
  hostnameIsIp: boolean;
  /** From the url; defaults: DEFAULT_UPSTREAM_PORTS. */
  port: number;
  /** https only: the URL path, default "/dns-query". */
  path?: string;
  /**
   * Certificate name to verify (tls_name). tls/https: required when the host is an IP,
   * otherwise defaults to the hostname. udp/tcp: always "" (the key is rejected).
   */
  tlsName: string;
  /** tls/https: PEM certificates read from ca_file, one block per entry (empty when unset). */
  caCerts: string[];
  /** tls/https: resolved ca_file path, for messages. */
  caFile?: string;
  /** The upstream group it belongs to (split DNS); DEFAULT_GROUP when not set. */
  group: string;
  /** tls: SPKI pins (base64 SHA-256); empty: not pinned. */
  spkiPins: string[];
}

/** How an upstream url is written. */
export const UPSTREAM_URL: EndpointRules = {
  schemes: UPSTREAM_PROTOCOLS,
  moreSchemesLater: true,
  defaultPorts: DEFAULT_UPSTREAM_PORTS,
  pathSchemes: ["https"],
  nameSchemes: ["tls", "https"],
  example: "tls://1.1.1.1:853",
  hostnameHint: "udp:// and tcp:// upstreams need an IP address (only tls:// and https:// " +
    "upstreams may be named, resolved through [forwarding] bootstrap)",
};

const URL_HINT = `e.g. ${JSON.stringify(UPSTREAM_URL.example)}`;
const TLS_NAME_HINT = `the name to verify on the upstream's certificate, e.g. "cloudflare-dns.com"`;

/** tls_name is matched against the certificate, so it must be a DNS name or an IP literal. */
const tlsName = (v: unknown, path: string, name: string): string => {
  const s = nonEmptyString(TLS_NAME_HINT)(v, path, name);
  if (s.includes("://")) {
    throw new Invalid(path, s, `must be a bare name, not a URL, e.g. "cloudflare-dns.com"`);
  }
  if (isIP(s)) return s;
  const label = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
  if (s.length > 253 || !s.split(".").every((l) => label.test(l))) {
    throw new Invalid(path, s, `not a valid DNS name, e.g. "cloudflare-dns.com"`);
  }
  return s;
};

/** `spki_pins = ["<base64 SHA-256 of a SubjectPublicKeyInfo>", ...]`, at least one. */
const pinList: Reader<string[]> = (v, path, name) => {
  if (typeof v === "string") {
    throw new Invalid(path, v, `expected an array of pins, e.g. ${name} = [${JSON.stringify(v)}]`);
  }
  if (!Array.isArray(v) || v.length === 0) {
    throw new Invalid(
      path,
      v,
      `expected a non-empty array of pins (see dotproxy --print-pins), got ${describe(v)}`,
    );
  }
  return v.map((item, i) => {
    const at = `${path}[${i}]`;
    if (typeof item !== "string") throw new Invalid(at, item, `expected a pin string`);
    const r = parsePin(item);
    if (typeof r !== "string") throw new Invalid(at, item, r.error.replace(/^"[^"]*" /, ""));
    return r;
  });
};

/** The [[upstreams]] keys. A reload rebuilds the upstreams, so every key is reloadable. */
export const UPSTREAMS = declareSection("upstreams", "upstreams", "array", {
  url: key(nonEmptyString(URL_HINT), {
    doc: "scheme://host[:port][/path] of the server",
    reloadable: true,
  }),
  tls_name: key(tlsName, {
    defaultDoc: "the url's hostname (required when it is an IP address)",
    doc: "tls/https: the name the server's certificate must match",
    reloadable: true,
  }),
  ca_file: key(filePathString, {
    doc: "tls/https: PEM CA certificates to trust instead of the system's store",
    reloadable: true,
  }),
  spki_pins: key(pinList, {
    default: [],
    defaultDoc: "[] (not pinned)",
    doc: "tls: the connection is used only if a certificate of the chain has one of these keys " +
      "(base64 SHA-256 of its SubjectPublicKeyInfo; dotproxy --print-pins), besides the CA and " +
      "name checks",
    reloadable: true,
  }),
  group: key(groupName, {
    default: DEFAULT_GROUP,
    doc: "the upstream group it serves; [[routes]] send names to groups, the rest go to default",
    reloadable: true,
  }),
}, addressKeyHint(UPSTREAM_URL.example));

/** Reads one [[upstreams]] entry `t` at key path `at`; ca_file is queued on `files`. */
export function readUpstream(
  t: Table,
  at: string,
  ctx: { baseDir: string; files: FileJobs },
): UpstreamConfig {
  const url = required(t, at, "url", UPSTREAMS.rows.url.read, URL_HINT);
  const r = parseEndpoint(url, UPSTREAM_URL);
  if (!r.ok) throw new Invalid(keyPath(at, "url"), url, r.message);
  const { scheme, hostname, hostnameIsIp, port, path } = r.endpoint;
  const protocol = scheme as UpstreamConfig["protocol"];
  const out: UpstreamConfig = {
    url,
    protocol,
    hostname,
    hostnameIsIp,
    port,
    tlsName: "",
    caCerts: [],
    group: readRow(UPSTREAMS.rows.group, t, at, "group"),
    spkiPins: [],
  };
  if (protocol === "https") out.path = path ?? DEFAULT_DOH_PATH;

  if (protocol === "udp" || protocol === "tcp") {
    const why = `not used by ${protocol}:// upstreams: plain DNS has no certificate to verify`;
    notAllowed(t, at, "tls_name", why);
    notAllowed(t, at, "ca_file", why);
    notAllowed(t, at, "spki_pins", why);
    return out;
  }
  if (protocol === "https") {
    notAllowed(
      t,
      at,
      "spki_pins",
      `not supported on https:// upstreams: their HTTP client (Deno's fetch) does not expose ` +
        `the certificate chain the server presents, so a pin could not be checked; pin a ` +
        `tls:// upstream of the same resolver instead`,
    );
  } else {
    out.spkiPins = readRow(UPSTREAMS.rows.spki_pins, t, at, "spki_pins");
  }

  out.tlsName = t.tls_name === undefined && !hostnameIsIp
    ? hostname
    : required(t, at, "tls_name", UPSTREAMS.rows.tls_name.read, TLS_NAME_HINT);

  if (t.ca_file !== undefined) {
    const caFile = filePath(t, at, "ca_file", ctx.baseDir, "");
    out.caFile = caFile;
    ctx.files.read({
      key: keyPath(at, "ca_file"),
      value: t.ca_file,
      path: caFile,
      extract: pemCertificates,
      apply: (blocks) => out.caCerts = [...blocks],
    });
  }
  return out;
}
