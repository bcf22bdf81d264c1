/**
 * The DoT connection is the generic stream connection over a TLS stream; this module keeps the
 * original names importable. New code should import from `stream_connection.ts`.
 */
export {
  type ConnectionOptions,
  type ConnectionResult,
  type DiscardCounts,
  StreamConnection as DotConnection,
} from "./stream_connection.ts";
