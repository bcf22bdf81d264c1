/** [admin]: the HTTP endpoint for /metrics, /healthz and /readyz; off unless the section is set. */

import { ipKey } from "../../net/ip.ts";
import type { KeyChecker } from "../keys.ts";
import { Invalid, nonEmptyString, required, type Table } from "../readers.ts";
import { declareSection, key } from "../table.ts";
import { parseHostPort } from "../url.ts";
import type { ListenerConfig } from "./listeners.ts";

const EXAMPLE = "127.0.0.1:9153";
const ADDRESS_HINT = `e.g. address = "${EXAMPLE}"`;

/** The [admin] keys. */
export const ADMIN = declareSection("admin", "admin", "table", {
  address: key(nonEmptyString(ADDRESS_HINT), {
    doc: "IP:port to serve /metrics, /healthz and /readyz on",
    reloadable: false,
    field: ["hostname", "port"],
  }),
});

/** [admin] as parsed. */
export interface AdminConfig {
  /** IP literal without brackets, from address = "127.0.0.1:9153". */
  hostname: string;
  port: number;
}

/** [admin]: null when absent; address is IP:port and must not collide with a TCP listener. */
export function readAdmin(
  root: Table,
  keys: KeyChecker,
  listeners: readonly ListenerConfig[],
): AdminConfig | null {
  if (root.admin === undefined) return null;
  const a = keys.table(root.admin, ADMIN, "admin");
  const address = required(a, "admin", "address", ADMIN.rows.address.read, ADDRESS_HINT);
  const r = parseHostPort(address, {
    example: EXAMPLE,
    hostnameHint: `the admin endpoint must bind an IP address, e.g. "${EXAMPLE}"`,
  });
  if (!r.ok) throw new Invalid("admin.address", address, r.message);
  const { hostname, port } = r.address;
  const i = listeners.findIndex((l) =>
    l.protocol !== "udp" && l.port === port && ipKey(l.hostname) === ipKey(hostname)
  );
  if (i >= 0) {
    throw new Invalid(
      "admin.address",
      address,
      `listeners[${i}] (${listeners[i].url}) already uses this TCP address and port`,
    );
  }
  return { hostname, port };
}
