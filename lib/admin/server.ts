/**
 * The admin HTTP listener (off unless configured): `/metrics` for Prometheus, `/healthz` for
 * liveness (200 while the process serves HTTP at all) and `/readyz` for readiness (200 only while
 * the proxy should receive traffic, e.g. not during shutdown), so orchestrators and scrapers need
 * nothing but HTTP. It is separate from the DNS listeners and should stay on a private address.
 */
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";

/** Whether the proxy should receive traffic now, and if not, why (shown by /readyz). */
export interface Readiness {
  ready: boolean;
  reason?: string;
}

/** What /metrics serves; `Metrics` from lib/metrics/metrics.ts fits. */
export interface MetricsSource {
  render(): Promise<string>;
  readonly contentType: string;
}

/** Where to listen and what to serve. */
export interface AdminOptions {
  /** An IP address; port 0 picks a free port (see `addr`). */
  hostname: string;
  port: number;
  metrics: MetricsSource;
  /** Called on every /readyz request; keep it cheap. */
  ready: () => Readiness;
}

/** A running admin listener. */
export interface AdminServer {
  /** The address actually bound. */
  readonly addr: Deno.NetAddr;
  /** Stops accepting, finishes requests in progress, releases the port. */
  close(): Promise<void>;
}

/** The admin address could not be bound: address and OS reason, for a one-line message. */
export class AdminBindError extends Error {
  constructor(readonly address: string, readonly reason: string, readonly inUse: boolean) {
    super(`cannot listen on admin address ${address}: ${reason}`);
    this.name = "AdminBindError";
  }
}

const log = logger("admin");

const TEXT = "text/plain; charset=utf-8";

function reply(req: Request, status: number, body: string, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  if (!h.has("content-type")) h.set("content-type", TEXT);
  h.set("cache-control", "no-store");
  return new Response(req.method === "HEAD" ? null : body, { status, headers: h });
}

/**
 * Answers one admin request. Exported so routing is testable without a socket; `startAdmin`
 * serves exactly this.
 */
export async function handleAdmin(
  req: Request,
  opts: Pick<AdminOptions, "metrics" | "ready">,
): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return reply(req, 405, "method not allowed\n", { allow: "GET, HEAD" });
  }
  switch (new URL(req.url).pathname) {
    case "/metrics": {
      let text: string;
      try {
        text = await opts.metrics.render();
      } catch (err) {
        log.error("rendering metrics failed: {reason}", { reason: errText(err) });
        return reply(req, 500, "metrics unavailable\n");
      }
      return reply(req, 200, text, { "content-type": opts.metrics.contentType });
    }
    case "/healthz":
      return reply(req, 200, "ok\n");
    case "/readyz": {
      const r = opts.ready();
      return r.ready
        ? reply(req, 200, "ready\n")
        : reply(req, 503, `not ready: ${r.reason ?? "unknown"}\n`);
    }
    default:
      return reply(req, 404, "not found\n");
  }
}

/** Starts the admin listener; throws AdminBindError if the address cannot be bound. */
export function startAdmin(opts: AdminOptions): AdminServer {
  const shown = opts.hostname.includes(":") ? `[${opts.hostname}]` : opts.hostname;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: opts.hostname,
      port: opts.port,
      onListen: () => {},
      onError: (err) => {
        log.error("admin request failed: {reason}", { reason: errText(err) });
        return new Response("internal error\n", { status: 500, headers: { "content-type": TEXT } });
      },
    }, (req) => handleAdmin(req, opts));
  } catch (err) {
    const inUse = err instanceof Deno.errors.AddrInUse;
    throw new AdminBindError(
      `${shown}:${opts.port}`,
      inUse ? "address already in use" : errText(err),
      inUse,
    );
  }
  let closing: Promise<void> | null = null;
  return {
    addr: server.addr,
    close: () =>
      closing ??= (async () => {
        await server.shutdown();
        await server.finished;
      })(),
  };
}
