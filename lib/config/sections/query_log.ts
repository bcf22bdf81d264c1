/** [query_log]: one line per answered query, to stdout, a file or syslog. */

import { QUERY_LOG_FORMATS, QUERY_LOG_SINKS } from "../enums.ts";
import { filePath, filePathString } from "../files.ts";
import {
  bool,
  Invalid,
  nonEmptyString,
  notAllowed,
  oneOf,
  requiredString,
  type Table,
} from "../readers.ts";
import { declareSection, key, readRow } from "../table.ts";
import { type EndpointRules, parseEndpoint } from "../url.ts";

/** Port of a syslog_address written without one (RFC 5426). */
export const DEFAULT_SYSLOG_PORT = 514;

const SYSLOG_URL: EndpointRules = {
  schemes: ["udp", "tcp"],
  moreSchemesLater: false,
  defaultPort: DEFAULT_SYSLOG_PORT,
  example: "udp://192.0.2.10:514",
  hostnameHint: "use the collector's IP address: a name would be looked up through the " +
    "system resolver, which may be this proxy",
};

/** The [query_log] keys. The log is opened once at start-up: nothing here is reloadable. */
export const QUERY_LOG = declareSection("query_log", "queryLog", "table", {
  enabled: key(bool, {
    default: false,
    doc: "log one line per answered query",
    reloadable: false,
    field: "enabled",
  }),
  sink: key(oneOf(QUERY_LOG_SINKS), {
    default: "stdout",
    doc: "where lines go",
    reloadable: false,
    field: "sink",
  }),
  path: key(filePathString, {
    doc: `sink = "file" only (required there): the file to append to`,
    reloadable: false,
    field: "path",
  }),
  syslog_address: key(nonEmptyString(`e.g. syslog_address = "${SYSLOG_URL.example}"`), {
    doc: `sink = "syslog" only (required there): udp:// or tcp://, IP, port 514 by default`,
    reloadable: false,
    field: "syslog",
  }),
  format: key(oneOf(QUERY_LOG_FORMATS), {
    default: "json",
    doc: "line format",
    reloadable: false,
    field: "format",
  }),
});

/** Where a syslog sink sends its lines. */
export interface SyslogAddress {
  transport: "udp" | "tcp";
  hostname: string;
  port: number;
}

/** What every query log setting has. */
interface QueryLogBase {
  enabled: boolean;
  format: typeof QUERY_LOG_FORMATS[number];
}

/** Lines to standard output. */
export interface StdoutQueryLogConfig extends QueryLogBase {
  sink: "stdout";
  path?: undefined;
  syslog?: undefined;
}

/** Lines appended to a file. */
export interface FileQueryLogConfig extends QueryLogBase {
  sink: "file";
  /** Resolved against the config's directory. */
  path: string;
  syslog?: undefined;
}

/** Lines sent to a syslog collector (RFC 5424 over RFC 5426 UDP or RFC 6587 TCP). */
export interface SyslogQueryLogConfig extends QueryLogBase {
  sink: "syslog";
  syslog: SyslogAddress;
  path?: undefined;
}

/** [query_log]; `sink` tells which fields it has. */
export type QueryLogConfig = StdoutQueryLogConfig | FileQueryLogConfig | SyslogQueryLogConfig;

/** [query_log] defaults. */
export const DEFAULT_QUERY_LOG: Readonly<QueryLogConfig> = Object.freeze({
  enabled: QUERY_LOG.rows.enabled.default,
  sink: "stdout",
  format: QUERY_LOG.rows.format.default,
});

/** Reads [query_log] `q` (keys already checked); a file path resolves against `baseDir`. */
export function readQueryLog(q: Table, baseDir: string): QueryLogConfig {
  const rows = QUERY_LOG.rows;
  const at = "query_log";
  const enabled = readRow(rows.enabled, q, at, "enabled");
  const sink = readRow(rows.sink, q, at, "sink");
  const format = readRow(rows.format, q, at, "format");
  const only = (s: string) => `only used with sink = "${s}" (sink is "${sink}")`;
  const path = sink === "file"
    ? filePath(
      q,
      at,
      "path",
      baseDir,
      `required with sink = "file", e.g. path = "/var/log/dotproxy/queries.log"`,
    )
    : notAllowed(q, at, "path", only("file"));
  const syslog = sink === "syslog"
    ? syslogAddress(q, at)
    : notAllowed(q, at, "syslog_address", only("syslog"));
  if (path !== undefined) return { enabled, sink: "file", format, path };
  if (syslog !== undefined) return { enabled, sink: "syslog", format, syslog };
  return { enabled, sink: "stdout", format };
}

function syslogAddress(q: Table, at: string): SyslogAddress {
  const address = requiredString(
    q,
    at,
    "syslog_address",
    `required with sink = "syslog", e.g. syslog_address = "${SYSLOG_URL.example}"`,
  );
  const r = parseEndpoint(address, SYSLOG_URL);
  if (!r.ok) throw new Invalid("query_log.syslog_address", address, r.message);
  const { scheme, hostname, port } = r.endpoint;
  return { transport: scheme as SyslogAddress["transport"], hostname, port };
}
