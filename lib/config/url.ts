/**
 * Parses listener and upstream URLs (`udp://127.0.0.1:5053`, `tls://[2606:4700::1111]:853`).
 * Hand-written rather than WHATWG `URL`, which silently rewrites hosts ("1.1" → "0.0.0.1") and
 * treats the host of unknown schemes as opaque; we want every surprise reported instead.
 */

import { isIPv4, isIPv6 } from "./ip.ts";

/** What a URL names: scheme, bare IP literal and port. */
export interface Endpoint {
  scheme: string;
  hostname: string;
  port: number;
}

/** How one kind of URL is checked. */
export interface EndpointRules {
  /** Accepted schemes, lowercase. */
  schemes: readonly string[];
  /** Whether unsupported schemes may come later ("not supported yet"). */
  moreSchemesLater: boolean;
  /** Used when the URL has no port; undefined makes the port required. */
  defaultPort?: number;
  /** A well-formed example, shown in hints. */
  example: string;
  /** Explains why a hostname is not accepted in place of an IP. */
  hostnameHint: string;
}

/** An Endpoint, or the reason the URL is not acceptable (a message without the key). */
export type EndpointResult = { ok: true; endpoint: Endpoint } | { ok: false; message: string };

/** Splits and checks `scheme://IP[:port]`, rejecting userinfo, paths, queries and fragments. */
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
  const cut = rest.search(/[/?#]/);
  const authority = cut < 0 ? rest : rest.slice(0, cut);
  if (authority.includes("@")) return fail(`user info ("user@") is not allowed`);
  if (cut >= 0) {
    return fail(
      `paths, queries and fragments are not allowed (found ${JSON.stringify(rest.slice(cut))})`,
    );
  }

  let host: string;
  let portText: string | undefined;
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
      return fail(
        `IPv6 addresses must be in brackets, e.g. "${scheme}://${bracketed(authority)}"`,
      );
    }
    const colon = authority.indexOf(":");
    host = colon < 0 ? authority : authority.slice(0, colon);
    portText = colon < 0 ? undefined : authority.slice(colon + 1);
    if (host === "") return fail("missing IP address");
    if (!isIPv4(host)) {
      if (/^[0-9.]+$/.test(host)) {
        return fail(`${JSON.stringify(host)} is not a valid IPv4 address`);
      }
      if (/^[A-Za-z0-9_.-]+$/.test(host)) {
        return fail(`${JSON.stringify(host)} is a hostname; ${rules.hostnameHint}`);
      }
      return fail(`${JSON.stringify(host)} is not a valid IP address`);
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
  return { ok: true, endpoint: { scheme, hostname: host, port } };
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
