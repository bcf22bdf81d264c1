/**
 * What the listener tests (tests/listen/) run a real listener with instead of the pipeline: a
 * handler that answers every query like the fake upstream and records it (so a test sees the
 * client, transport and name each query arrived with), and stream limits roomy enough that only
 * the bound a test is about comes into play.
 */
import dnsPacket from "dns-packet";
import type { Handler } from "../../lib/listen/listener.ts";
import type { StreamLimits } from "../../lib/listen/stream.ts";
import type { Query } from "../../lib/pipeline/pipeline.ts";
import { parse } from "./dns_client.ts";
import { defaultAnswer } from "./fake_dot.ts";

/** A handler answering each query with fake_dot's default answer; `queries` as they came. */
export function recordingHandler(): { queries: Query[]; handle: Handler } {
  const queries: Query[] = [];
  const handle: Handler = (query) => {
    queries.push(query);
    const packet = parse(query.bytes);
    return { bytes: new Uint8Array(dnsPacket.encode(defaultAnswer(packet))), maxUdpSize: 65535 };
  };
  return { queries, handle };
}

/** Stream limits for listener tests: 3 s to read a message, 50 connections, 100 in flight each. */
export const TEST_STREAM_LIMITS: StreamLimits = {
  idleTimeoutMs: 10_000,
  readTimeoutMs: 3_000,
  maxConnections: 50,
  maxConnectionsPerClient: 50,
  maxPipelined: 100,
};
