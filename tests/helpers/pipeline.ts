/** Shared pieces of the pipeline unit tests (tests/pipeline/): limits and client queries. */
import type { Query } from "../../lib/pipeline/pipeline.ts";

/** The pipeline limits the unit tests run with (the query timeout runs on a fake clock). */
export const TEST_LIMITS = {
  queryTimeoutMs: 5000,
  udpMaxSize: 1232,
  maxInFlight: 100,
  overload: "refuse",
} as const;

/** `bytes` as a listener hands them to the pipeline: over `transport`, from `client`:5353. */
export function clientQuery(
  bytes: Uint8Array,
  transport: Query["transport"] = "udp",
  client = "127.0.0.1",
): Query {
  return { bytes, transport, client: { hostname: client, port: 5353 } };
}
