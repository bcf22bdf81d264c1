/** [[listeners]]: the sockets we accept client queries on, one union member per protocol. */

import { CLIENT_AUTH_MODES, type ClientAuthMode } from "../../identity/modes.ts";
import type { Cidr } from "../../policy/acl.ts";
import type { PlainTransport } from "../../dns/transport.ts";
import { LISTENER_PROTOCOLS } from "../enums.ts";
import { keyPath } from "../errors.ts";
import { type FileJobs, filePath, filePathString, pemCertificates, readKeyPair } from "../files.ts";
import { ipKey } from "../../net/ip.ts";
import type { KeyChecker } from "../keys.ts";
import {
  bool,
  cidrList,
  Invalid,
  nonEmptyString,
  notAllowed,
  oneOf,
  type Reader,
  required,
  type Table,
} from "../readers.ts";
import { declareSection, key, readRow, readSection } from "../table.ts";
import { type EndpointRules, parseEndpoint } from "../url.ts";
import { ACCESS, type AccessConfig } from "./access.ts";
import {
  DOH_AUTH_ROWS,
  type DohAuthConfig,
  type DohAuthFields,
  readDohAuth,
} from "./doh_tokens.ts";

/** The DoH path used when an https/http listener URL (or an https upstream URL) has none. */
export const DEFAULT_DOH_PATH = "/dns-query";

/** The header an http/https listener reads the client address from, behind trusted proxies. */
export const DEFAULT_CLIENT_HEADER = "x-forwarded-for";

/** What every listener has. */
interface ListenerBase {
  /** The URL as written, for messages. */
  url: string;
  /** IP literal without brackets ("127.0.0.1", "::1", "0.0.0.0", "::"). */
  hostname: string;
  port: number;
  /**
   * [listeners.access]: this listener's access rules, keys not set there taken from [access];
   * absent when the listener has no such table (then the global `Config.access` applies).
   */
  access?: AccessConfig;
}

/** Fields that only some protocols have, declared absent on the others. */
type Absent<K extends string> = { [P in K]?: undefined };
type TlsFields = "certFile" | "keyFile" | "cert" | "key";
type WebFields = "path" | "clientHeader";
type ProxyFields = "proxyProtocol";
type ClientCertFields = "clientCaFile" | "clientCa";

/** PROXY protocol (udp, tcp, tls): from whom a header is required and believed. */
interface ProxyFront {
  /** proxy_protocol: peers in trustedProxies must start with a PROXY header. Default false. */
  proxyProtocol: boolean;
  /** Peers that must send a PROXY header (trusted_proxies); non-empty when proxyProtocol. */
  trustedProxies: Cidr[];
}

/** Mutual TLS on a tls:// listener. */
interface ClientCertAuth {
  /** client_auth: whether a client certificate is asked for. Default "none". */
  clientAuth: ClientAuthMode;
  /** Resolved client_ca_file path, for messages; set unless clientAuth is "none". */
  clientCaFile?: string;
  /** The CERTIFICATE blocks of client_ca_file, PEM text; null when clientAuth is "none". */
  clientCa: string | null;
}

/** The certificate a tls:// or https:// listener presents. */
interface TlsMaterial {
  /** Resolved cert_file path, for messages. */
  certFile: string;
  /** Resolved key_file path, for messages. */
  keyFile: string;
  /** The CERTIFICATE blocks of cert_file (chain, leaf first), PEM text. */
  cert: string;
  /** The PRIVATE KEY block of key_file, PEM text; checked to match the leaf. */
  key: string;
}

/** What an https:// or http:// (DoH) listener serves and whom it believes. */
interface WebFront {
  /** The one URL path served, from the url; default "/dns-query". */
  path: string;
  /** Peers whose clientHeader is believed (trusted_proxies); default []. */
  trustedProxies: Cidr[];
  /** Lower-case header naming the client (client_header); default "x-forwarded-for". */
  clientHeader: string;
}

/** udp:// or tcp://: plain DNS. */
export interface PlainListenerConfig
  extends
    ListenerBase,
    ProxyFront,
    Absent<TlsFields | WebFields | ClientCertFields | DohAuthFields | "clientAuth"> {
  protocol: PlainTransport;
}

/** tls://: DNS-over-TLS (RFC 7858). */
export interface TlsListenerConfig
  extends ListenerBase, TlsMaterial, ProxyFront, ClientCertAuth, Absent<WebFields | DohAuthFields> {
  protocol: "tls";
}

/** https://: DNS-over-HTTPS (RFC 8484). */
export interface HttpsListenerConfig
  extends
    ListenerBase,
    TlsMaterial,
    WebFront,
    DohAuthConfig,
    Absent<ProxyFields | ClientCertFields> {
  protocol: "https";
}

/** http://: plain-HTTP DoH, for running behind a TLS-terminating load balancer. */
export interface HttpListenerConfig
  extends
    ListenerBase,
    WebFront,
    DohAuthConfig,
    Absent<TlsFields | ProxyFields | ClientCertFields> {
  protocol: "http";
}

/** A socket we accept client queries on; `protocol` tells which fields it has. */
export type ListenerConfig =
  | PlainListenerConfig
  | TlsListenerConfig
  | HttpsListenerConfig
  | HttpListenerConfig;

/** How a listener url is written. */
export const LISTENER_URL: EndpointRules = {
  schemes: LISTENER_PROTOCOLS,
  moreSchemesLater: false,
  pathSchemes: ["https", "http"],
  example: "udp://127.0.0.1:5053",
  hostnameHint: "listeners must bind an IP address, e.g. 127.0.0.1 or ::1",
};

const URL_HINT = `e.g. ${JSON.stringify(LISTENER_URL.example)}`;

/** An HTTP header name (RFC 9110 token), lower-cased. */
const headerName: Reader<string> = (v, path, name) => {
  const s = nonEmptyString(`an HTTP header name, e.g. "${DEFAULT_CLIENT_HEADER}"`)(v, path, name);
  if (s.endsWith(":")) throw new Invalid(path, s, `write the header name without ":"`);
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(s)) {
    throw new Invalid(
      path,
      s,
      `not an HTTP header name (letters, digits and - only), e.g. "${DEFAULT_CLIENT_HEADER}"`,
    );
  }
  return s.toLowerCase();
};

/** The [[listeners]] keys. [listeners.access] has the keys of [access]. */
export const LISTENERS = declareSection("listeners", "listeners", "array", {
  url: key(nonEmptyString(URL_HINT), {
    doc: "scheme://IP:port[/path]: what to serve and where",
    reloadable: false,
    field: ["protocol", "hostname", "port", "path"],
  }),
  cert_file: key(filePathString, {
    doc: "tls/https: the PEM certificate chain to present, leaf first",
    reloadable: true,
  }),
  key_file: key(filePathString, {
    doc: "tls/https: the PEM private key of cert_file",
    reloadable: true,
  }),
  trusted_proxies: key(cidrList(false), {
    default: [],
    defaultDoc: "[] (none)",
    doc: "udp/tcp/tls with proxy_protocol: peers that must send a PROXY header (and are " +
      "believed); https/http: peers whose client_header is believed",
    reloadable: false,
    field: "trustedProxies",
  }),
  proxy_protocol: key(bool, {
    default: false,
    doc: "udp/tcp/tls: connections and datagrams from trusted_proxies start with a PROXY " +
      "protocol header (v1 or v2; v2 over UDP) naming the client",
    reloadable: false,
    field: "proxyProtocol",
  }),
  client_auth: key(oneOf(CLIENT_AUTH_MODES), {
    default: "none",
    doc: `tls: ask for a client certificate; https/http: for a token (tokens, tokens_file): ` +
      `"none", "optional" or "require" (then a client without a valid one is refused)`,
    reloadable: true,
    field: "clientAuth",
  }),
  client_ca_file: key(filePathString, {
    doc: "tls with client_auth: PEM CA certificates that client certificates must chain to",
    reloadable: true,
  }),
  ...DOH_AUTH_ROWS,
  client_header: key(headerName, {
    default: DEFAULT_CLIENT_HEADER,
    doc: "https/http: the header naming the client behind a trusted proxy",
    reloadable: false,
    field: "clientHeader",
  }),
  // A sub-table, read by readListener with the [access] rows.
  access: key((v): unknown => v, {
    doc: "[listeners.access]: this listener's own allow, deny and action",
    reloadable: true,
  }),
}, addressKeyHint(LISTENER_URL.example));

/** "host" in [[listeners]] or [[upstreams]]: the address goes in url. */
export function addressKeyHint(example: string): (name: string) => string | undefined {
  return (name) =>
    /^(host(name)?|address|addr|ip|port|path|scheme|protocol)$/.test(name)
      ? `the address and port (and an https path) go in url, e.g. url = ${JSON.stringify(example)}`
      : undefined;
}

/** What a listener builder needs from the load. */
export interface ListenerContext {
  baseDir: string;
  files: FileJobs;
  keys: KeyChecker;
  /** [access], the base of every [listeners.access]. */
  access: AccessConfig;
}

/** Reads one [[listeners]] entry `t` at key path `at` (keys already checked). */
export function readListener(t: Table, at: string, ctx: ListenerContext): ListenerConfig {
  const rows = LISTENERS.rows;
  const url = required(t, at, "url", rows.url.read, URL_HINT);
  const r = parseEndpoint(url, LISTENER_URL);
  if (!r.ok) throw new Invalid(keyPath(at, "url"), url, r.message);
  const { hostname, port } = r.endpoint;
  const protocol = r.endpoint.scheme as ListenerConfig["protocol"];
  const what = `${protocol}:// listeners`;
  const base = { url, hostname, port };

  const web = (): WebFront => {
    notAllowed(
      t,
      at,
      "proxy_protocol",
      `not used by ${what}: behind a load balancer they take the client from client_header, ` +
        `believed from trusted_proxies`,
    );
    return {
      path: r.endpoint.path ?? DEFAULT_DOH_PATH,
      trustedProxies: readRow(rows.trusted_proxies, t, at, "trusted_proxies"),
      clientHeader: readRow(rows.client_header, t, at, "client_header"),
    };
  };
  const noWeb = () => {
    const why = `not used by ${what}; only https:// and http:// listeners see HTTP headers`;
    notAllowed(t, at, "client_header", why);
  };
  const proxy = (): ProxyFront => {
    const proxyProtocol = readRow(rows.proxy_protocol, t, at, "proxy_protocol");
    const trustedProxies = readRow(rows.trusted_proxies, t, at, "trusted_proxies");
    if (proxyProtocol && trustedProxies.length === 0) {
      throw new Invalid(
        keyPath(at, "proxy_protocol"),
        t.proxy_protocol,
        `PROXY protocol needs trusted_proxies: the load balancers whose headers are believed, ` +
          `e.g. trusted_proxies = ["10.0.0.0/24"] (a header is never taken from anyone else)`,
      );
    }
    if (!proxyProtocol && trustedProxies.length > 0) {
      throw new Invalid(
        keyPath(at, "trusted_proxies"),
        t.trusted_proxies,
        `on ${what} trusted proxies send a PROXY protocol header: set proxy_protocol = true`,
      );
    }
    return { proxyProtocol, trustedProxies };
  };
  const noClientCerts = (web: boolean) => {
    const why = web
      ? `not used by ${what}; client certificates are asked for by tls:// listeners (DoH ` +
        `clients authenticate with tokens)`
      : `not used by ${what}; only tls:// listeners ask for client certificates`;
    if (!web) notAllowed(t, at, "client_auth", why);
    notAllowed(t, at, "client_ca_file", why);
  };
  const noTokens = () => {
    for (const k of Object.keys(DOH_AUTH_ROWS)) {
      notAllowed(t, at, k, `not used by ${what}; only https:// and http:// listeners take tokens`);
    }
  };
  const dohAuth = () => readDohAuth(t, at, readRow(rows.client_auth, t, at, "client_auth"), ctx);
  const noTls = () => {
    const why = protocol === "http"
      ? "http:// is plain HTTP behind a TLS-terminating proxy; use https:// to serve TLS here"
      : `only tls:// and https:// listeners present a certificate`;
    notAllowed(t, at, "cert_file", `not used by ${what}; ${why}`);
    notAllowed(t, at, "key_file", `not used by ${what}; ${why}`);
  };

  let out: ListenerConfig;
  switch (protocol) {
    case "udp":
    case "tcp":
      noTls();
      noWeb();
      noClientCerts(false);
      noTokens();
      out = { ...base, protocol, ...proxy() };
      break;
    case "tls": {
      const tls: TlsListenerConfig = {
        ...base,
        protocol,
        ...tlsFiles(t, at, what, ctx),
        ...proxy(),
        ...clientCerts(t, at, ctx),
      };
      readKeyPair(ctx.files, t, at, tls, (cert, key) => Object.assign(tls, { cert, key }));
      readClientCa(t, at, ctx, tls);
      noWeb();
      noTokens();
      out = tls;
      break;
    }
    case "https": {
      noClientCerts(true);
      // The listener is built on the credentials object: the tokens file fills it in later.
      const https: HttpsListenerConfig = Object.assign(dohAuth(), {
        ...base,
        protocol,
        ...tlsFiles(t, at, what, ctx),
        ...web(),
      });
      readKeyPair(ctx.files, t, at, https, (cert, key) => Object.assign(https, { cert, key }));
      out = https;
      break;
    }
    case "http":
      noTls();
      noClientCerts(true);
      out = Object.assign(dohAuth(), { ...base, protocol, ...web() });
      break;
  }
  if (t.access !== undefined) {
    const a = keyPath(at, "access");
    out.access = readSection(ACCESS, ctx.keys.table(t.access, ACCESS, a), a, ctx.access);
  }
  return out;
}

/**
 * client_auth and client_ca_file of a tls listener; the CA file is read by {@link readClientCa}
 * (its certificates are read and parsed with the rest of the config's files).
 */
function clientCerts(t: Table, at: string, ctx: ListenerContext): ClientCertAuth {
  const rows = LISTENERS.rows;
  const clientAuth = readRow(rows.client_auth, t, at, "client_auth");
  if (clientAuth === "none") {
    notAllowed(
      t,
      at,
      "client_ca_file",
      `not used with client_auth = "none": set client_auth = "optional" or "require" to ask ` +
        `clients for a certificate`,
    );
    return { clientAuth, clientCa: null };
  }
  if (t.client_ca_file === undefined) {
    throw new Invalid(
      keyPath(at, "client_auth"),
      clientAuth,
      `client_auth = "${clientAuth}" needs client_ca_file: the PEM CA certificates that ` +
        `client certificates must chain to, e.g. client_ca_file = "/etc/dotproxy/clients-ca.pem"`,
    );
  }
  const clientCaFile = filePath(t, at, "client_ca_file", ctx.baseDir, "");
  return { clientAuth, clientCaFile, clientCa: null };
}

/** Queues the read of a tls listener's client_ca_file into `l.clientCa`. */
function readClientCa(t: Table, at: string, ctx: ListenerContext, l: ClientCertAuth): void {
  if (l.clientCaFile === undefined) return;
  ctx.files.read({
    key: keyPath(at, "client_ca_file"),
    value: t.client_ca_file,
    path: l.clientCaFile,
    extract: pemCertificates,
    apply: (blocks) => l.clientCa = blocks.join(""),
  });
}

/**
 * cert_file and key_file of a tls/https listener. The PEM text is filled in by readKeyPair once
 * the files are read, after the whole config is valid (and the pair is checked to match).
 */
function tlsFiles(t: Table, at: string, what: string, ctx: ListenerContext): TlsMaterial {
  const certFile = filePath(
    t,
    at,
    "cert_file",
    ctx.baseDir,
    `required for ${what}: ` +
      `the PEM certificate chain to present, e.g. cert_file = "/etc/dotproxy/cert.pem"`,
  );
  const keyFile = filePath(
    t,
    at,
    "key_file",
    ctx.baseDir,
    `required for ${what}: ` +
      `the PEM private key of cert_file, e.g. key_file = "/etc/dotproxy/key.pem"`,
  );
  return { certFile, keyFile, cert: "", key: "" };
}

/**
 * Two listeners on one address and port cannot both bind. udp listeners bind UDP sockets; tcp,
 * tls, https and http listeners all bind TCP sockets, so they need distinct ports.
 */
export function checkListenerAddresses(listeners: readonly ListenerConfig[]): void {
  const seen = new Map<string, number>();
  listeners.forEach((l, i) => {
    const transport = l.protocol === "udp" ? "UDP" : "TCP";
    const id = `${transport} ${ipKey(l.hostname)} ${l.port}`;
    const first = seen.get(id);
    if (first !== undefined) {
      const other = listeners[first];
      const message = other.protocol === l.protocol
        ? `duplicate of listeners[${first}]`
        : `listeners[${first}] (${other.url}) already uses TCP port ${l.port} on this address; ` +
          `tcp, tls, https and http listeners each need their own port`;
      throw new Invalid(`listeners[${i}].url`, l.url, message);
    }
    seen.set(id, i);
  });
}
