/** The TCP listener: a plain socket handed to the shared stream server (RFC 7766). */
import type { ProxyGate } from "../identity/proxy_gate.ts";
import type { Listener } from "./listener.ts";
import { IdentityRefusals } from "./refusals.ts";
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
  /** PROXY protocol from trusted load balancers (lib/identity/proxy_gate.ts); null: off. */
  proxy?: ProxyGate | null;
}

/** Binds a TCP listener; throws the OS error (e.g. AddrInUse) for the server to report. */
export function listenTcp(opts: TcpOptions): Listener {
  const listener = Deno.listen({ transport: "tcp", hostname: opts.hostname, port: opts.port });
  return new StreamListener(listener, {
    ...opts,
    transport: "tcp",
    refusals: opts.proxy ? new IdentityRefusals(opts.url, opts.clock) : null,
  });
}
