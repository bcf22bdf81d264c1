/**
 * One DNS-over-HTTPS server (RFC 8484): each query is a POST of `application/dns-message` through
 * `fetch` with a `Deno.HttpClient` of its own, which keeps connections open between queries and
 * speaks HTTP/2 when the server offers it (ALPN), so queries are multiplexed like on a pipelined
 * DoT connection. The DNS ID is 0 on the wire (RFC 8484 §4.1, cache-friendly; HTTP pairs requests
 * and responses) and the pipeline maps the client's back. A hostname URL is reached through the
 * bootstrap resolver (see tunnel.ts); trust is Deno's roots plus the configured ca_file.
 */
import { decodeMessage, type Message, type Question } from "../dns/message.ts";
import type { HopEdns } from "../dns/edns.ts";
import { questionMatches, setId } from "../dns/reply.ts";
import { isIP } from "../net/ip.ts";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import type { Random } from "../sys/random.ts";
import type { AddressResolver } from "./resolver.ts";
import type { Health, HealthPolicy } from "./health.ts";
import { HealthMonitor, PROBE, PROBE_QUESTION } from "./monitor.ts";
import { ConnectTunnel } from "./tunnel.ts";
import { type Exchange, failure, forHop, type Upstream, type UpstreamStats } from "./upstream.ts";

/** The DoH media type (RFC 8484 §6). */
export const DNS_MESSAGE = "application/dns-message";

/** The largest DNS message; a longer body is not a DNS message. */
const MAX_MESSAGE = 65535;

/** Where one DoH server is, limits, collaborators. */
export interface DohUpstreamOptions {
  /** A stable label for logs and metrics, normally the URL as configured. */
  name: string;
  /** The endpoint, e.g. `https://cloudflare-dns.com/dns-query`. */
  url: string;
  clock: Clock;
  random: Random;
  /** Extra PEM trust anchors (`ca_file`). */
  caCerts?: string[];
  /** For the bootstrap tunnel: request head, resolution and TCP connect. */
  connectTimeoutMs: number;
  /** Idle pooled connections are closed after this (Deno's pool, on the real clock). */
  idleTimeoutMs: number;
  failureBackoffMs: number;
  maxFailureBackoffMs: number;
  /** How long a health probe may take in all. */
  probeTimeoutMs: number;
  /** EDNS for this hop (pad: true, as for any encrypted transport); unchanged queries without. */
  edns?: Omit<HopEdns, "keepalive">;
  /**
   * Resolves the URL's hostname (bootstrap). Without it a hostname URL is resolved by the system
   * resolver, which must then not be dotproxy itself.
   */
  resolver?: AddressResolver;
  /** The health policy's tuning (see health.ts); its defaults without. */
  health?: Partial<HealthPolicy>;
}

/** A DoH client for one server, with failure backoff. */
export class DohUpstream implements Upstream {
  readonly name: string;
  #url: string;
  #client: Deno.HttpClient;
  #tunnel: ConnectTunnel | null = null;
  #monitor: HealthMonitor;
  #inFlight = new Set<AbortController>();
  #closing = false;
  #closed: Promise<void> | null = null;
  #discarded = 0;

  constructor(private readonly opts: DohUpstreamOptions) {
    this.name = opts.name;
    const url = new URL(opts.url);
    this.#url = url.href;
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    if (opts.resolver && !isIP(host)) {
      this.#tunnel = new ConnectTunnel({
        host,
        port: url.port === "" ? 443 : Number(url.port),
        resolver: opts.resolver,
        clock: opts.clock,
        connectTimeoutMs: opts.connectTimeoutMs,
      });
    }
    this.#client = Deno.createHttpClient({
      caCerts: opts.caCerts?.length ? opts.caCerts : undefined,
      poolIdleTimeout: opts.idleTimeoutMs,
      ...(this.#tunnel ? { proxy: { url: this.#tunnel.proxyUrl } } : {}),
    });
    this.#monitor = new HealthMonitor({
      name: opts.name,
      clock: opts.clock,
      random: opts.random,
      backoff: { baseMs: opts.failureBackoffMs, maxMs: opts.maxFailureBackoffMs },
      probe: (deadline) => this.#post(forHop(PROBE, opts.edns), PROBE_QUESTION, deadline),
      probeBudgetMs: opts.probeTimeoutMs,
      policy: opts.health,
    });
  }

  /** Failure backoff state; the group orders members by it. */
  get health(): Health {
    return this.#monitor.health;
  }

  /** Numbers for logs and metrics (the HTTP pool's connections are not visible: reported 0). */
  stats(): UpstreamStats {
    return {
      openConnections: 0,
      inFlight: this.#inFlight.size,
      reconnects: 0,
      discarded: this.#discarded,
    };
  }

  /** Connections made through the bootstrap tunnel (0 without one), for tests and logs. */
  get tunnelled(): number {
    return this.#tunnel?.opened ?? 0;
  }

  async exchange(
    query: Uint8Array,
    question: Question,
    deadline: number,
    decoded?: Message,
  ): Promise<Exchange> {
    if (this.#closing) return failure("closed", this.name, "upstream is shutting down");
    // Like a stream upstream with no open connection: while failing, only the probe asks.
    const answeredAtSend = this.health.answered;
    if (!this.health.available()) {
      const down = failure("down", this.name, "backing off after failures");
      this.#monitor.record(down, answeredAtSend); // may bring the probe forward
      return down;
    }
    const wire = forHop(query, this.opts.edns, decoded);
    let result = await this.#post(wire, question, deadline);
    // As on a stream upstream, a connection that failed under the query (a pooled connection
    // the server had just closed, a reset) gets one retry on a fresh one, if time allows. A TLS
    // failure would only fail again.
    if (!result.ok && result.error.kind === "connect" && this.opts.clock.now() < deadline) {
      result = await this.#post(wire, question, deadline);
    }
    this.#monitor.record(result, answeredAtSend);
    return result;
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true;
      this.#monitor.close();
      for (const ac of this.#inFlight) ac.abort();
      this.#client.close();
      await this.#tunnel?.close();
    })();
    return this.#closed;
  }

  async #post(query: Uint8Array, question: Question, deadline: number): Promise<Exchange> {
    const { clock } = this.opts;
    const body = query.slice();
    setId(body, 0); // RFC 8484 §4.1
    const ac = new AbortController();
    let timedOut = false;
    const cancel = clock.schedule(deadline - clock.now(), () => {
      timedOut = true;
      ac.abort();
    });
    this.#inFlight.add(ac);
    try {
      const res = await fetch(this.#url, {
        method: "POST",
        headers: { "content-type": DNS_MESSAGE, accept: DNS_MESSAGE },
        body,
        client: this.#client,
        signal: ac.signal,
      });
      if (res.status !== 200) {
        await res.body?.cancel();
        return this.#protocol(`HTTP status ${res.status}`);
      }
      const type = (res.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
      if (type !== DNS_MESSAGE) {
        await res.body?.cancel();
        return this.#protocol(`content type ${JSON.stringify(type)}, not ${DNS_MESSAGE}`);
      }
      const reply = await readBody(res);
      if (!reply) return this.#protocol(`body longer than ${MAX_MESSAGE} bytes`);
      const decoded = decodeMessage(reply); // bytes after the message are ignored
      if (!decoded.ok) return this.#protocol(`malformed DNS message: ${decoded.error.message}`);
      if (!questionMatches(question, decoded.value.question)) {
        return this.#protocol("the answer is for another question");
      }
      return { ok: true, reply, msg: decoded.value, upstream: this.name };
    } catch (err) {
      if (timedOut) return failure("timeout", this.name, "no reply before the deadline");
      if (this.#closing) return failure("closed", this.name, "upstream is shutting down");
      const message = errText(err) + causeText(err);
      return failure(
        /certificate|tls|handshake|ssl/i.test(message) ? "tls" : "connect",
        this.name,
        message,
      );
    } finally {
      cancel();
      this.#inFlight.delete(ac);
    }
  }

  #protocol(message: string): Exchange {
    this.#discarded++;
    return failure("protocol", this.name, message);
  }
}

/** The whole body, or null as soon as it exceeds one DNS message. */
async function readBody(res: Response): Promise<Uint8Array | null> {
  const reader = res.body?.getReader();
  if (!reader) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_MESSAGE) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** fetch wraps the reason (refused, certificate...) in `cause`; logs need it. */
function causeText(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined;
  return cause ? `: ${errText(cause)}` : "";
}
