/** [access] (and each listener's [listeners.access]): who may use the proxy. */

import { ACCESS_ACTIONS } from "../enums.ts";
import { DEFAULT_ALLOW } from "../../policy/acl.ts";
import { cidrList, oneOf } from "../readers.ts";
import { defineSection, type SectionValue, setting } from "../table.ts";
import { clientNameList } from "./clients.ts";

/** The [access] keys. Deny wins over allow. */
export const ACCESS = defineSection("access", "access", {
  allow: setting("allow", cidrList(true), {
    default: [...DEFAULT_ALLOW],
    defaultDoc: "loopback and private networks only",
    doc: "prefixes served",
    reloadable: true,
  }),
  deny: setting("deny", cidrList(false), {
    default: [],
    doc: "prefixes refused even when allowed",
    reloadable: true,
  }),
  allow_clients: setting("allowClients", clientNameList, {
    default: [],
    doc: "named clients served from any address not in deny (certificate, token, [[clients]])",
    reloadable: true,
  }),
  deny_clients: setting("denyClients", clientNameList, {
    default: [],
    doc: "named clients refused from every address",
    reloadable: true,
  }),
  action: setting("action", oneOf(ACCESS_ACTIONS), {
    default: "refuse",
    doc: `what refused clients get: "refuse" (REFUSED) or "drop" (nothing)`,
    reloadable: true,
  }),
});

/** [access] or [listeners.access] rules. */
export type AccessConfig = SectionValue<typeof ACCESS.rows>;

/** [access] defaults: loopback and private ranges only, never the public internet. */
export const DEFAULT_ACCESS: Readonly<AccessConfig> = ACCESS.defaults;
