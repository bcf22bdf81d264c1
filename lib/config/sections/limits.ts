/** [limits]: bounds that keep load and abuse from exhausting the proxy. */

import { OVERLOAD_ACTIONS } from "../enums.ts";
import { DEFAULT_RECEIVE_CONCURRENCY } from "../../listen/udp.ts";
import { DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_QUEUED_ANSWERS } from "../../listen/stream.ts";
import { duration, integer, oneOf, size } from "../readers.ts";
import { defineSection, type SectionValue, setting } from "../table.ts";

const MANY = { min: 1, max: 1_000_000 };

/** The [limits] keys: generous for a busy resolver, small enough to bound memory. */
export const LIMITS = defineSection("limits", "limits", {
  max_in_flight: setting("maxInFlight", integer(MANY), {
    default: 10_000,
    doc: "client queries being answered at once, across all listeners",
    reloadable: true,
  }),
  overload: setting("overload", oneOf(OVERLOAD_ACTIONS), {
    default: "refuse",
    doc: `above max_in_flight: "refuse" answers REFUSED, "drop" sends nothing`,
    reloadable: true,
  }),
  udp_receive_concurrency: setting("udpReceiveConcurrency", integer({ min: 1, max: 64 }), {
    default: DEFAULT_RECEIVE_CONCURRENCY,
    doc: "receives kept pending per UDP socket, so one event-loop turn drains a burst",
    reloadable: false,
  }),
  tcp_max_connections: setting("tcpMaxConnections", integer(MANY), {
    default: 1_000,
    doc: "client connections open at once per stream listener",
    reloadable: false,
  }),
  tcp_max_connections_per_client: setting("tcpMaxConnectionsPerClient", integer(MANY), {
    default: 32,
    doc: "client connections open at once from one address",
    reloadable: false,
  }),
  tcp_max_pipelined: setting("tcpMaxPipelined", integer({ min: 1, max: 65535 }), {
    default: 100,
    doc: "queries in flight on one connection before reading pauses",
    reloadable: false,
  }),
  // At least 128 KiB, so that one answer of the largest size (64 KiB) always fits.
  tcp_max_output: setting("tcpMaxOutputBytes", size({ min: 128 * 1024, max: 64 * 1024 * 1024 }), {
    default: DEFAULT_MAX_OUTPUT_BYTES,
    doc: "answer bytes one connection may have unwritten; reading pauses at half, over it: closed",
    reloadable: false,
  }),
  tcp_max_queued_answers: setting("tcpMaxQueuedAnswers", integer({ min: 2, max: 65535 }), {
    default: DEFAULT_MAX_QUEUED_ANSWERS,
    doc: "answers one connection may have unwritten; reading pauses at half, over it: closed",
    reloadable: false,
  }),
  tcp_read_timeout: setting("tcpReadTimeoutMs", duration(), {
    default: 5_000,
    doc: "a message must arrive whole this long after its first byte",
    reloadable: false,
  }),
});

/** [limits], durations in milliseconds. */
export type LimitsConfig = SectionValue<typeof LIMITS.rows>;

/** [limits] defaults. */
export const DEFAULT_LIMITS: Readonly<LimitsConfig> = LIMITS.defaults;
