/** [server]: how we serve clients. */

import { DEFAULT_WILDCARD_RESCAN_MS } from "../../listen/udp.ts";
import { duration, integer } from "../readers.ts";
import { defineSection, type SectionValue, setting } from "../table.ts";

/** The [server] keys. */
export const SERVER = defineSection("server", "server", {
  query_timeout: setting("queryTimeoutMs", duration(), {
    default: 5_000,
    doc: "total time budget for one client query, across all upstream attempts; then SERVFAIL",
    reloadable: true,
  }),
  udp_max_size: setting("udpMaxSize", integer({ min: 512, max: 65535 }), {
    default: 1232, // avoids IP fragmentation (DNS flag day 2020)
    doc: "largest UDP response we send; bigger answers are truncated (TC)",
    reloadable: true,
  }),
  tcp_idle_timeout: setting("tcpIdleTimeoutMs", duration(), {
    default: 10_000,
    doc: "idle client TCP connections are closed after this long",
    reloadable: false,
  }),
  udp_rescan_interval: setting("udpRescanIntervalMs", duration({ allowZero: true }), {
    default: DEFAULT_WILDCARD_RESCAN_MS,
    doc: `how often wildcard UDP listeners re-read the host's addresses; "0s": only on SIGHUP`,
    reloadable: false,
  }),
  shutdown_grace: setting("shutdownGraceMs", duration(), {
    default: 3_000,
    doc: "how long in-flight queries may finish on shutdown",
    reloadable: true,
  }),
});

/** [server], durations in milliseconds. */
export type ServerConfig = SectionValue<typeof SERVER.rows>;

/** [server] defaults. */
export const DEFAULT_SERVER: Readonly<ServerConfig> = SERVER.defaults;
