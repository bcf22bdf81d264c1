/**
 * Risky but valid setups. A warning is not an error: the proxy starts, and these lines are logged
 * so that an operator who did not mean it notices (an open resolver is the classic one).
 */

import { type Cidr, formatCidr, isPublicAddress } from "../policy/acl.ts";
import { formatValue } from "./errors.ts";
import { ipKey } from "../net/ip.ts";
import { type AccessConfig, type Config, DEFAULT_GROUP } from "./schema.ts";

/** One human line per risky setting in `config`, in config order; empty when there is none. */
export function configWarnings(config: Config): string[] {
  const out: string[] = [];
  config.listeners.forEach((l, i) => {
    const at = `listeners[${i}].url = ${formatValue(l.url)}`;
    const src = l.access ? `listeners[${i}].access` : "access";
    const everyone = admitsEveryone(l.access ?? config.access);
    const where = exposure(l.hostname);
    if (where !== null && everyone.length > 0) {
      out.push(
        `${at}: open resolver: it listens on ${where} and ${src}.allow admits everyone ` +
          `(${everyone.join(", ")}), so anyone on the internet can use it, e.g. for ` +
          `amplification attacks; list only your clients' networks in ${src}.allow`,
      );
      if (config.rateLimit.qps === 0) {
        out.push(
          `${at}: rate limiting is off (rate_limit.qps = 0) on an open resolver; ` +
            `set [rate_limit] qps, e.g. qps = 50`,
        );
      }
    }
    if (l.protocol === "http" && where !== null) {
      out.push(
        `${at}: plain-HTTP DoH on ${where}: queries and answers cross the network unencrypted; ` +
          `bind it to the load balancer's private network, or use https://`,
      );
    }
    const trusted = l.trustedProxies ?? [];
    const anyProxy = trusted.filter((c) => c.prefix === 0);
    if (anyProxy.length > 0) {
      out.push(
        `listeners[${i}].trusted_proxies includes ${anyProxy.map(formatCidr).join(", ")}: ` +
          `any client may claim any address in ${
            l.clientHeader ?? "its PROXY protocol header"
          }, escaping access rules and rate limits; list only your load balancers`,
      );
    }
    if (l.protocol === "http" && trusted.length === 0) {
      out.push(
        `${at}: no trusted_proxies, so every query seems to come from the load balancer and ` +
          `access rules and rate limits apply to it rather than to clients; set trusted_proxies`,
      );
    }
  });

  out.push(...unmatchableNames(config));

  if (!config.forwarding.padding) {
    const encrypted = config.upstreams.filter((u) =>
      u.protocol === "tls" || u.protocol === "https"
    );
    if (encrypted.length > 0) {
      const names = encrypted.map((u) => u.url).join(", ");
      out.push(
        `forwarding.padding = false: queries to encrypted upstreams (${names}) are not padded, ` +
          `so their sizes can reveal the names looked up (RFC 8467); remove padding = false`,
      );
    }
  }

  // Split DNS: a group that no route sends names to only costs connections.
  const routed = new Set([DEFAULT_GROUP, ...config.routes.map((r) => r.group)]);
  const unused = [...new Set(config.upstreams.map((u) => u.group))].filter((g) => !routed.has(g));
  for (const g of unused) {
    const urls = config.upstreams.filter((u) => u.group === g).map((u) => u.url).join(", ");
    out.push(
      `upstreams group = ${formatValue(g)} (${urls}): no [[routes]] entry has group = ` +
        `${formatValue(g)}, so these upstreams get no queries; add a route or remove them`,
    );
  }
  for (const w of config.hostsWarnings) out.push(w);

  const admin = config.admin;
  if (admin !== null) {
    const where = exposure(admin.hostname);
    if (where !== null) {
      const host = admin.hostname.includes(":") ? `[${admin.hostname}]` : admin.hostname;
      out.push(
        `admin.address = ${formatValue(`${host}:${admin.port}`)}: the admin endpoint ` +
          `(metrics, health) listens on ${where}; bind it to 127.0.0.1 or a private network`,
      );
    }
  }
  return out;
}

/** "every interface" for 0.0.0.0 and ::, "a public address" for a public one, null otherwise. */
function exposure(hostname: string): string | null {
  if (hostname === "0.0.0.0" || ipKey(hostname) === ipKey("::")) return "every interface";
  return isPublicAddress(hostname) ? "a public address" : null;
}

/** The /0 prefixes the rules admit (a /0 that is also denied does not count). */
function admitsEveryone(access: Readonly<AccessConfig>): string[] {
  const denied = (c: Cidr) => access.deny.some((d) => d.family === c.family && d.prefix === 0);
  return access.allow.filter((c) => c.prefix === 0 && !denied(c)).map(formatCidr);
}

/**
 * Names in allow_clients / deny_clients that nothing can ever give a client: not a [[clients]]
 * entry, and no listener asks for client certificates (whose names cannot be known here).
 */
function unmatchableNames(config: Config): string[] {
  const declared = new Set(config.clients.map((c) => c.name));
  const certificates = config.listeners.some((l) => l.clientAuth && l.clientAuth !== "none");
  if (certificates) return [];
  const out: string[] = [];
  const check = (access: AccessConfig, at: string) => {
    for (const key of ["allowClients", "denyClients"] as const) {
      const toml = key === "allowClients" ? "allow_clients" : "deny_clients";
      for (const name of access[key]) {
        if (declared.has(name)) continue;
        out.push(
          `${at}.${toml} names ${formatValue(name)}, but no [[clients]] entry has that name and ` +
            `no listener asks for client certificates, so it never matches`,
        );
      }
    }
  };
  check(config.access, "access");
  config.listeners.forEach((l, i) => {
    if (l.access) check(l.access, `listeners[${i}].access`);
  });
  return out;
}
