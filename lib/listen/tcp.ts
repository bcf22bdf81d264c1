/** The TCP listener: a plain socket handed to the shared stream server (RFC 7766). */
import type { Listener } from "./listener.ts";
import { type StreamLimits, StreamListener } from "./stream.ts";
import type { Handler } from "./listener.ts";
import type { Clock } from "../sys/clock.ts";

/** Where to bind and how to guard it. */
export interface TcpOptions {
  url: string;
  hostname: string;
  port: number;
  handle: Handler;
  clock: Clock;
  limits: StreamLimits;
}

/** Binds a TCP listener; throws the OS error (e.g. AddrInUse) for the server to report. */
export function listenTcp(opts: TcpOptions): Listener {
  const listener = Deno.listen({ transport: "tcp", hostname: opts.hostname, port: opts.port });
  return new StreamListener(listener, { ...opts, transport: "tcp" });
}
