/**
 * Parses listener, upstream and collector URLs (`udp://127.0.0.1:5053`, `tls://[2606:4700::1111]`,
 * `https://cloudflare-dns.com/dns-query`) and bare `IP[:port]` addresses (`9.9.9.9`,
 * `[2620:fe::fe]:53`). Hand-written rather than WHATWG `URL`, which silently rewrites hosts
 * ("1.1" → "0.0.0.1") and treats the host of unknown schemes as opaque; we want every surprise
 * reported instead.
 */

import { isIPv4, isIPv6 } from "../net/ip.ts";

/** What a URL names: scheme, bare IP literal or DNS name, port and (for some schemes) a path. */
export interface Endpoint {
  scheme: string;
  /** IP literal without brackets, or a lower-case DNS name without a trailing dot. */
  hostname: string;
  /** False when `hostname` is a DNS name (only for `rules.nameSchemes`). */
  hostnameIsIp: boolean;
  port: number;
  /** The path as written (starting with "/"), for `rules.pathSchemes`; absent when none. */
  path?: string;
}

/** How one kind of URL is checked. */
export interface EndpointRules {
  /** Accepted schemes, lowercase. */
  schemes: readonly string[];
  /** Whether unsupported schemes may come later ("not supported yet"). */
  moreSchemesLater: boolean;
  /** Used when the URL has no port; undefined makes the port required (unless defaultPorts). */
  defaultPort?: number;
  /** Per-scheme default ports; wins over defaultPort. */
  defaultPorts?: Readonly<Record<string, number>>;
  /** Schemes whose URL may carry a path (no query, no fragment). Default: none. */
  pathSchemes?: readonly string[];
  /** Schemes whose host may be a DNS name instead of an IP address. Default: none. */
  nameSchemes?: readonly string[];
  /** A well-formed example, shown in hints. */
  example: string;
  /** Explains why a hostname is not accepted in place of an IP. */
  hostnameHint: string;
}

/** An Endpoint, or the reason the URL is not acceptable (a message without the key). */
export type EndpointResult = { ok: true; endpoint: Endpoint } | { ok: false; message: string };

/** Splits and checks `scheme://host[:port][/path]`, rejecting userinfo, queries and fragments. */
export function parseEndpoint(url: string, rules: EndpointRules): EndpointResult {
  const fail = (message: string): EndpointResult => ({ ok: false, message });
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(url);
  if (!m) return fail(`expected a URL like ${JSON.stringify(rules.example)}`);
  const scheme = m[1].toLowerCase();
  if (!rules.schemes.includes(scheme)) {
    const yet = rules.moreSchemesLater ? " yet" : "";
    return fail(
      `scheme "${scheme}" is not supported${yet}; supported: ${rules.schemes.join(", ")}`,
    );
  }
  const rest = m[2];
  const template = /\{\?[^}]*\}$/.exec(rest);
  if (template) {
    return fail(
      `${JSON.stringify(template[0])} is a URI template; write the URL without it, e.g. ` +
        `${JSON.stringify(url.slice(0, -template[0].length))}`,
    );
  }
  const cut = rest.search(/[/?#]/);
  const authority = cut < 0 ? rest : rest.slice(0, cut);
  if (authority.includes("@")) return fail(`user info ("user@") is not allowed`);
  let path: string | undefined;
  if (cut >= 0) {
    const tail = rest.slice(cut);
    if (!rules.pathSchemes?.includes(scheme)) {
      return fail(`paths, queries and fragments are not allowed (found ${JSON.stringify(tail)})`);
    }
    const extra = tail.search(/[?#]/);
    if (extra >= 0) {
      return fail(
        `queries and fragments are not allowed, only a path (found ${
          JSON.stringify(tail.slice(extra))
        })`,
      );
    }
    const problem = pathProblem(tail);
    if (problem) return fail(problem);
    path = tail;
  }

  const defaultPort = rules.defaultPorts?.[scheme] ?? rules.defaultPort;
  const r = parseHostPort(authority, {
    defaultPort,
    example: rules.example,
    scheme,
    allowName: rules.nameSchemes?.includes(scheme) ?? false,
    hostnameHint: rules.hostnameHint,
  });
  if (!r.ok) return r;
  const endpoint: Endpoint = { scheme, ...r.address };
  if (path !== undefined) endpoint.path = path;
  return { ok: true, endpoint };
}

/** A host and port, without a scheme. */
export interface HostPort {
  hostname: string;
  hostnameIsIp: boolean;
  port: number;
}

/** How a bare `host[:port]` is checked. */
export interface HostPortRules {
  /** Used when there is no port; undefined makes the port required. */
  defaultPort?: number;
  /** A well-formed example, shown in hints. */
  example: string;
  /** Written before the address in the brackets hint ("udp" gives "udp://[::1]:53"). */
  scheme?: string;
  /** Whether a DNS name is accepted in place of an IP address. */
  allowName?: boolean;
  /** Explains why a hostname is not accepted in place of an IP. */
  hostnameHint: string;
}

/** A HostPort, or the reason the text is not acceptable. */
export type HostPortResult = { ok: true; address: HostPort } | { ok: false; message: string };

/** Checks `IP[:port]`, `[IPv6][:port]` or (with allowName) `name[:port]`. */
export function parseHostPort(authority: string, rules: HostPortRules): HostPortResult {
  const fail = (message: string): HostPortResult => ({ ok: false, message });
  const prefix = rules.scheme === undefined ? "" : `${rules.scheme}://`;
  if (rules.scheme === undefined && authority.includes("://")) {
    return fail(`write the address without a scheme, e.g. ${JSON.stringify(rules.example)}`);
  }
  let host: string;
  let portText: string | undefined;
  let hostnameIsIp = true;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) return fail(`missing "]" after the IPv6 address`);
    host = authority.slice(1, close);
    const after = authority.slice(close + 1);
    if (after.startsWith(":")) portText = after.slice(1);
    else if (after !== "") return fail(`unexpected ${JSON.stringify(after)} after "]"`);
    if (host.includes("%")) return fail(`IPv6 zone ids ("%eth0") are not supported`);
    if (!isIPv6(host)) return fail(`${JSON.stringify(host)} is not a valid IPv6 address`);
  } else {
    const colons = authority.split(":").length - 1;
    if (colons > 1) {
      return fail(`IPv6 addresses must be in brackets, e.g. "${prefix}${bracketed(authority)}"`);
    }
    const colon = authority.indexOf(":");
    host = colon < 0 ? authority : authority.slice(0, colon);
    portText = colon < 0 ? undefined : authority.slice(colon + 1);
    if (host === "") {
      return fail(rules.allowName ? "missing host name or IP address" : "missing IP address");
    }
    if (!isIPv4(host)) {
      if (/^[0-9.]+$/.test(host)) {
        return fail(`${JSON.stringify(host)} is not a valid IPv4 address`);
      }
      if (!/^[A-Za-z0-9_.-]+$/.test(host)) {
        return fail(`${JSON.stringify(host)} is not a valid IP address`);
      }
      if (!rules.allowName) {
        return fail(`${JSON.stringify(host)} is a hostname; ${rules.hostnameHint}`);
      }
      const problem = hostnameProblem(host);
      if (problem) return fail(`${JSON.stringify(host)} is not a valid host name: ${problem}`);
      host = host.toLowerCase().replace(/\.$/, "");
      hostnameIsIp = false;
    }
  }

  let port: number;
  if (portText === undefined) {
    if (rules.defaultPort === undefined) {
      return fail(`port is required, e.g. ${JSON.stringify(rules.example)}`);
    }
    port = rules.defaultPort;
  } else if (portText === "") {
    return fail(`port is missing after ":"`);
  } else if (!/^[0-9]+$/.test(portText)) {
    return fail(`port ${JSON.stringify(portText)} is not a number; port must be 1-65535`);
  } else {
    port = Number(portText);
    if (port < 1 || port > 65535) return fail("port must be 1-65535");
  }
  return { ok: true, address: { hostname: host, hostnameIsIp, port } };
}

/**
 * Why `name` is not a resolvable host name (letters, digits and hyphens in dot-separated labels
 * of 1-63 characters, at least two labels, a top-level label that is not all digits), or null.
 * One trailing dot is accepted.
 */
export function hostnameProblem(name: string): string | null {
  const bare = name.endsWith(".") ? name.slice(0, -1) : name;
  if (bare.length > 253) return "longer than 253 characters";
  const labels = bare.split(".");
  if (labels.some((l) => l === "")) return "empty label";
  if (labels.length < 2) return "a single-label name cannot be looked up; use a full name";
  for (const l of labels) {
    if (l.length > 63) return `label "${l.slice(0, 20)}…" is longer than 63 characters`;
    if (!/^[A-Za-z0-9-]+$/.test(l)) return `label "${l}" has characters other than a-z, 0-9, -`;
    if (l.startsWith("-") || l.endsWith("-")) return `label "${l}" starts or ends with "-"`;
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1])) return "the last label is all digits";
  return null;
}

/** Why a URL path is unusable (RFC 3986 path characters, percent-escapes well formed), or null. */
function pathProblem(path: string): string | null {
  const bad = /[^A-Za-z0-9\-._~!$&'()*+,;=:@%/]/.exec(path);
  if (bad) {
    return `path ${JSON.stringify(path)} contains ${JSON.stringify(bad[0])}; percent-encode it`;
  }
  if (/%(?![0-9A-Fa-f]{2})/.test(path)) {
    return `path ${JSON.stringify(path)} has a "%" that is not followed by two hex digits`;
  }
  return null;
}

/**
 * Brackets an unbracketed IPv6 authority for the hint. "::1:5053" is itself a valid address, so
 * a final all-digit group after a valid address is taken to be the intended port.
 */
function bracketed(authority: string): string {
  const i = authority.lastIndexOf(":");
  const last = authority.slice(i + 1);
  if (/^[0-9]{1,5}$/.test(last) && isIPv6(authority.slice(0, i))) {
    return `[${authority.slice(0, i)}]:${last}`;
  }
  return `[${authority}]`;
}
