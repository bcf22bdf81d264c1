/**
 * A DoT upstream is the generic stream upstream with the TLS dialer (its default); this module
 * keeps the original names importable. New code should import from `stream_upstream.ts`.
 */
export {
  StreamUpstream as DotUpstream,
  type StreamUpstreamOptions as DotUpstreamOptions,
} from "./stream_upstream.ts";
