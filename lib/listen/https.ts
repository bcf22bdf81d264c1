/**
 * The DNS-over-HTTPS listener (RFC 8484): HTTP in, one DNS message to the pipeline, HTTP out.
 * It owns only HTTP: the path, GET `?dns=` (base64url without padding) and POST
 * `application/dns-message` (at most 65535 bytes), status codes, Cache-Control from the answer's
 * TTLs, and which client address to believe (lib/listen/forwarded.ts). Without `cert`/`key` it
 * serves plain HTTP (and h2c) for use behind a TLS-terminating load balancer, whose
 * X-Forwarded-For (or Forwarded) header is then believed from `trustedProxies` only.
 *
 * Sockets, TLS and the connection limits belong to the front (lib/listen/http_front.ts), which
 * relays each client connection to a `Deno.serve` server on loopback that speaks HTTP/1.1 and
 * HTTP/2: `Deno.serve` itself has no connection cap or timeouts. A certificate reload swaps the
 * TLS context of the front: new connections get the new certificate, established ones keep
 * theirs. Request bodies are bounded in size and time and settled before any answer
 * (lib/listen/http_body.ts).
 *
 * Client credentials (`client_auth` with tokens: lib/identity/doh_auth.ts): a request is checked
 * before any DNS work, after the client address is known (the failure limiter counts per client):
 * a missing or wrong token gets 401 (404 in the path form `/dns-query/<token>`), an address
 * blocked after repeated failures 429; each refusal is counted by reason and logged rate-limited,
 * never with the path (it may carry a token). The token's name becomes the query's clientName.
 */
import { createSecureContext, type SecureContext } from "node:tls";
import { MAX_FRAMED_MESSAGE } from "../dns/framing.ts";
import { CLASS_IN, decodeMessage, Rcode, RRType } from "../dns/message.ts";
import { DohAuthenticator } from "../identity/doh_auth.ts";
import { Acl, type Cidr } from "../policy/acl.ts";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import { ClientResolver } from "./forwarded.ts";
import { type BodyLimits, discardBody, readBody } from "./http_body.ts";
import { type ConnectionState, connectionState, type Handler, type Listener } from "./listener.ts";
import { IdentityRefusals, type IdentityState } from "./refusals.ts";
import type { StreamLimits } from "./stream.ts";
import { checkCertificate } from "./tls.ts";
import { type FrontStats, type HttpFront, INNER_HOST, startFront } from "./http_front.ts";

const log = logger("listen", "https");

/** The media type of a DNS message in HTTP (RFC 8484 §6). */
export const DNS_MESSAGE = "application/dns-message";
/** The largest DNS message DoH carries (RFC 8484 §6: the same limit as TCP). */
export const MAX_DOH_MESSAGE = MAX_FRAMED_MESSAGE;
/** The header read for the client address behind a trusted proxy when none is configured. */
export const DEFAULT_CLIENT_HEADER = "x-forwarded-for";
const ALLOWED_METHODS = "GET, POST";
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Where to bind, what to serve, and whom to believe about client addresses. */
export interface HttpsOptions {
  url: string;
  hostname: string;
  port: number;
  /** The one path served, e.g. "/dns-query"; any other path is 404. */
  path: string;
  handle: Handler;
  clock: Clock;
  /** PEM certificate chain; with `key`, HTTPS (h2 and HTTP/1.1). Both absent: plain HTTP. */
  cert?: string;
  key?: string;
  /**
   * Peers whose client-address header is believed: prefixes as the config parsed them (an
   * IPv4-mapped peer matches the IPv4 ones). Default none. Only the load balancers: a peer
   * listed here that sends no usable header gets 400 (lib/listen/forwarded.ts).
   */
  trustedProxies?: readonly Cidr[];
  /**
   * The header naming the client: "x-forwarded-for" (default), "forwarded" (RFC 7239), or a
   * single-address header such as "x-real-ip".
   */
  clientHeader?: string;
  /** Connection limits and timeouts, shared with the stream listeners. */
  limits: StreamLimits;
  /**
   * Token check (`client_auth` with tokens); absent: none, every client anonymous. Its base
   * path must be `path`.
   */
  auth?: DohAuthenticator | null;
}

/** A DoH listener whose certificate can be replaced while it runs. */
export interface HttpsListener extends Listener {
  /** Connection counters: open, refused or evicted at the caps, timed out, closed idle. */
  readonly stats: FrontStats;
  /**
   * Serves `cert`/`key` to connections accepted from now on; requests in flight on established
   * connections are still answered. Throws (and keeps serving the old certificate) if the pair
   * is unusable, the listener is plain HTTP, or it is stopping.
   */
  reloadCertificate(cert: string, key: string): void;
  /** Checks requests from now on with `auth` (new tokens, mode or failure limits). */
  reloadAuth(auth: DohAuthenticator | null): void;
}

/**
 * Binds a DoH listener. Rejects with the bind error (`inUse` set for an address in use) for the
 * server to report, or an error if `cert`/`key` are unusable or only one of them is given.
 */
export async function listenHttps(opts: HttpsOptions): Promise<HttpsListener> {
  const listener = new DohListener(opts);
  await listener.bind();
  return listener;
}

class DohListener implements HttpsListener {
  readonly url: string;
  #front: HttpFront | null = null;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #context: SecureContext | null;
  #shutdown: Promise<void> | null = null;
  #abort: () => void = () => {};
  #aborted: Promise<void>;
  #clients: ClientResolver;
  #auth: DohAuthenticator;
  readonly #refusals: IdentityRefusals;

  constructor(private readonly opts: HttpsOptions) {
    if ((opts.cert === undefined) !== (opts.key === undefined)) {
      throw new Error("cert and key must be given together (neither: plain HTTP)");
    }
    this.#context = opts.cert !== undefined ? secureContext(opts.cert, opts.key!) : null;
    const proxies = opts.trustedProxies ?? [];
    this.#clients = new ClientResolver({
      trusted: proxies.length > 0 ? new Acl(proxies, []) : null,
      header: opts.clientHeader ?? DEFAULT_CLIENT_HEADER,
    });
    this.#aborted = new Promise((resolve) => (this.#abort = resolve));
    this.url = opts.url;
    this.#auth = this.#authOrNone(opts.auth ?? null);
    this.#refusals = new IdentityRefusals(opts.url, opts.clock);
    this.#server = Deno.serve({
      hostname: INNER_HOST,
      port: 0,
      onListen: () => {},
      onError: (err) => {
        log.warn("DoH request on {url} failed: {err}", { url: this.url, err: errText(err) });
        return status(500, "internal error");
      },
    }, (req, info) => this.#serve(req, info.remoteAddr));
  }

  /** Binds the client-facing socket; on failure the inner server is shut down too. */
  async bind(): Promise<void> {
    try {
      this.#front = await startFront({
        url: this.opts.url,
        hostname: this.opts.hostname,
        port: this.opts.port,
        innerPort: this.#server.addr.port,
        context: this.#context,
        clock: this.opts.clock,
        limits: this.opts.limits,
      });
    } catch (err) {
      await this.#server.shutdown();
      throw err;
    }
  }

  get addr(): Deno.NetAddr {
    return this.#bound().addr;
  }

  get stats(): FrontStats {
    return this.#bound().stats;
  }

  connections(): ConnectionState {
    return connectionState(this.stats);
  }

  reloadCertificate(cert: string, key: string): void {
    if (this.opts.cert === undefined) throw new Error(`${this.url} is plain HTTP: no certificate`);
    if (this.#shutdown) throw new Error(`${this.url} is stopping`);
    this.#bound().setContext(secureContext(cert, key));
  }

  reloadAuth(auth: DohAuthenticator | null): void {
    this.#auth = this.#authOrNone(auth);
  }

  /** Refusals for credentials, by reason. */
  identity(): IdentityState {
    return this.#refusals.state();
  }

  /** `auth`, or the check that asks for nothing (the base path only, everyone anonymous). */
  #authOrNone(auth: DohAuthenticator | null): DohAuthenticator {
    return auth ??
      new DohAuthenticator({ mode: "none", store: null, limiter: null, basePath: this.opts.path });
  }

  stopAccepting(): void {
    if (this.#shutdown) return;
    this.#bound().stopAccepting();
    // No new requests on open connections either (HTTP/2 GOAWAY); those in flight finish.
    this.#shutdown = this.#server.shutdown();
  }

  async close(): Promise<void> {
    this.stopAccepting();
    // Requests still waiting for the pipeline get 503, so the graceful shutdown can complete.
    this.#abort();
    await this.#shutdown;
    await this.#bound().close();
  }

  #bound(): HttpFront {
    if (!this.#front) throw new Error(`${this.url} is not bound`);
    return this.#front;
  }

  /** One request from the inner server: found on its client connection, answered, counted. */
  async #serve(req: Request, relay: Deno.NetAddr): Promise<Response> {
    const conn = this.#front?.connection(relay.port);
    if (!conn) {
      // Someone connected to the inner port directly, not through the listener.
      await req.body?.cancel().catch(() => {});
      return status(403, "not accepted by the DoH listener", { connection: "close" });
    }
    if (conn.inFlight >= this.opts.limits.maxPipelined) {
      // Like a stream connection's pipelining cap: this connection waits for its own answers.
      await discardBody(req, this.#bodyLimits());
      return status(429, "too many requests in flight on this connection", { "retry-after": "1" });
    }
    const done = conn.beginRequest();
    try {
      return await Promise.race([
        this.#respond(req, conn.peer),
        this.#aborted.then(() => status(503, "server is shutting down")),
      ]);
    } finally {
      done();
    }
  }

  /** The answer to one request; its body is settled (read or cancelled) before it is answered. */
  async #respond(req: Request, peer: Deno.NetAddr): Promise<Response> {
    const bodyLimits = this.#bodyLimits();
    const response = await this.#answer(req, peer, bodyLimits);
    await discardBody(req, bodyLimits);
    return response;
  }

  #bodyLimits(): BodyLimits {
    return {
      maxBytes: MAX_DOH_MESSAGE,
      timeoutMs: this.opts.limits.readTimeoutMs,
      clock: this.opts.clock,
    };
  }

  async #answer(req: Request, peer: Deno.NetAddr, bodyLimits: BodyLimits): Promise<Response> {
    const url = new URL(req.url);
    const auth = this.#auth;
    // The DoH path, or (with tokens) the DoH path and one token segment; anything else is 404.
    if (auth.route(url.pathname) !== "doh") return status(404, "not found");
    if (req.method !== "GET" && req.method !== "POST") {
      return status(405, "use GET or POST", { allow: ALLOWED_METHODS });
    }
    const client = this.#clients.resolve(peer, req.headers.get(this.#clients.header));
    if (!client.ok) {
      log.debug("refusing a request from {peer}: {reason}", {
        peer: peer.hostname,
        reason: client.reason,
      });
      return status(400, client.reason);
    }
    // Credentials before any DNS work; the path is never logged (it may carry a token).
    const who = client.client.hostname;
    const decision = auth.authenticate(who, url.pathname, req.headers.get("authorization"));
    if (!decision.ok) {
      const where = decision.via === null ? "no token" : `token in the ${decision.via}`;
      this.#refusals.auth(decision.reason, who, `${where}: ${decision.reason}`);
      return new Response(null, { status: decision.status, headers: decision.headers });
    }
    const query = req.method === "GET" ? fromGet(url) : await fromPost(req, bodyLimits);
    if (query instanceof Response) return query;

    const answer = await this.opts.handle(
      decision.name === null
        ? { bytes: query, client: client.client, transport: "https" }
        : { bytes: query, client: client.client, transport: "https", clientName: decision.name },
    );
    if (!answer) return status(400, "not a DNS query");
    // The pipeline's bytes live in an ordinary ArrayBuffer (never shared memory).
    return new Response(answer.bytes as Uint8Array<ArrayBuffer>, {
      headers: {
        "content-type": DNS_MESSAGE,
        "cache-control": `max-age=${cacheMaxAge(answer.bytes)}`,
      },
    });
  }
}

/** The body of a POST, or the error response; the body is bounded in size and in time. */
async function fromPost(req: Request, limits: BodyLimits): Promise<Uint8Array | Response> {
  const type = req.headers.get("content-type");
  if (type === null || mediaType(type) !== DNS_MESSAGE) {
    return status(415, `content-type must be ${DNS_MESSAGE}`);
  }
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > MAX_DOH_MESSAGE) return tooLarge();
  if (!req.body) return status(400, "empty body");
  const body = await readBody(req.body, limits);
  switch (body.kind) {
    case "too-large":
      return tooLarge();
    case "timeout":
      return status(408, "request body not received in time");
    case "error":
      return status(400, `request body: ${body.message}`);
  }
  return body.bytes.length === 0 ? status(400, "empty body") : body.bytes;
}

/** The DNS message in `?dns=`, or the error response. RFC 8484 §6: base64url, no padding. */
function fromGet(url: URL): Uint8Array | Response {
  const text = url.searchParams.get("dns");
  if (text === null) return status(400, "missing dns parameter");
  // A length of 1 mod 4 is no whole byte; "=" (padding) and other characters are not base64url.
  if (!BASE64URL.test(text) || text.length % 4 === 1) {
    return status(400, "dns parameter is not base64url without padding");
  }
  if (Math.floor(text.length * 3 / 4) > MAX_DOH_MESSAGE) return status(414, "query too long");
  if (text.length === 0) return status(400, "empty dns parameter");
  return Uint8Array.fromBase64(text, { alphabet: "base64url" });
}

/**
 * Freshness of a DoH answer (RFC 8484 §5.1): the smallest TTL in the answer section; for a
 * negative answer (NXDOMAIN, or NOERROR without answers) the SOA's negative-caching TTL, the
 * smaller of its own TTL and its MINIMUM field (RFC 2308 §5); anything else 0.
 */
export function cacheMaxAge(answer: Uint8Array): number {
  const decoded = decodeMessage(answer);
  if (!decoded.ok) return 0;
  const { rcode, records } = decoded.value;
  if (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN) return 0;
  let min = Infinity;
  for (const r of records) if (r.section === 1) min = Math.min(min, ttlValue(r.ttl));
  if (min !== Infinity) return min;
  for (const r of records) {
    // SOA rdata ends with five 32-bit fields; MINIMUM is the last.
    if (r.section === 2 && r.type === RRType.SOA && r.class === CLASS_IN && r.rdataLength >= 20) {
      const end = r.rdataOffset + r.rdataLength;
      const minimum = new DataView(answer.buffer, answer.byteOffset).getUint32(end - 4);
      return Math.min(ttlValue(r.ttl), ttlValue(minimum));
    }
  }
  return 0;
}

/** RFC 2181 §8: a TTL with the top bit set is treated as zero. */
function ttlValue(ttl: number): number {
  return ttl > 0x7fffffff ? 0 : ttl;
}

/** `type/subtype` of a Content-Type value, lower-cased, without parameters. */
function mediaType(value: string): string {
  return value.split(";")[0].trim().toLowerCase();
}

/** A checked certificate and key, parsed once for every handshake that uses them. */
function secureContext(cert: string, key: string): SecureContext {
  checkCertificate(cert, key);
  return createSecureContext({ cert, key });
}

function tooLarge(): Response {
  return status(413, `a DNS message is at most ${MAX_DOH_MESSAGE} bytes`);
}

function status(code: number, text: string, headers: Record<string, string> = {}): Response {
  return new Response(`${text}\n`, {
    status: code,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}
