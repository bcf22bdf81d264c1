/**
 * The DNS-over-HTTPS listener (RFC 8484): HTTP in, one DNS message to the pipeline, HTTP out.
 * It owns only HTTP: the path, GET `?dns=` (base64url without padding) and POST
 * `application/dns-message` (at most 65535 bytes), status codes, Cache-Control from the answer's
 * TTLs, and which client address to believe. `Deno.serve` does TLS, HTTP/1.1 and HTTP/2 (by
 * ALPN); without `cert`/`key` it serves plain HTTP (and h2c) for use behind a TLS-terminating
 * load balancer, whose X-Forwarded-For (or Forwarded) header is then believed from
 * `trustedProxies` only.
 *
 * A certificate reload starts a second server on the same port (SO_REUSEPORT) with the new
 * certificate and gracefully shuts the old one down: requests in flight on old connections are
 * answered, new connections get the new certificate. `Deno.serve` has no way to swap the
 * certificate of a running server. Caveat: a connection the kernel queued on the old listener in
 * the instant it closes is reset (the client retries); Linux ≥ 5.14 with
 * `net.ipv4.tcp_migrate_req=1` hands those to the new listener instead.
 *
 * Known limit: `Deno.serve` does not set TCP_NODELAY on the connections it accepts and offers no
 * way to. Over TLS, the first answer on a new connection can then wait ~40 ms for the client's
 * delayed ACK of the TLS 1.3 session tickets (reliably when the request follows the handshake at
 * once, intermittently for curl and HTTP/2 clients). The DoT listener avoids it by accepting
 * itself (lib/listen/node_conn.ts); here that would mean replacing Deno.serve (node:http2's
 * secure server can set no-delay, but binds asynchronously).
 */
import { CLASS_IN, decodeMessage, Rcode, RRType } from "../dns/message.ts";
import { isIP } from "../config/ip.ts";
import { Acl, parseCidr } from "../policy/acl.ts";
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { logger } from "../sys/log.ts";
import type { Handler, Listener } from "./listener.ts";
import { MAX_FRAMED_MESSAGE } from "../dns/framing.ts";
import { checkCertificate } from "./tls.ts";

const log = logger("listen", "https");

/** The media type of a DNS message in HTTP (RFC 8484 §6). */
export const DNS_MESSAGE = "application/dns-message";
/** The largest DNS message DoH carries (RFC 8484 §6: the same limit as TCP). */
export const MAX_DOH_MESSAGE = MAX_FRAMED_MESSAGE;
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
   * Peers whose client-address header is believed: addresses or prefixes ("10.0.0.0/8",
   * "2001:db8::/32"; an IPv4-mapped peer matches the IPv4 ones). Default none.
   */
  trustedProxies?: string[];
  /** The header naming the client: "x-forwarded-for" (default), or "forwarded" (RFC 7239). */
  clientHeader?: string;
  /** How long a POST body may take to arrive (slow clients); then 408. */
  queryTimeoutMs: number;
}

/** A DoH listener whose certificate can be replaced while it runs. */
export interface HttpsListener extends Listener {
  /**
   * Serves `cert`/`key` to connections accepted from now on; requests in flight on established
   * connections are still answered. Throws (and keeps serving the old certificate) if the pair
   * is unusable, the listener is plain HTTP, or it is stopping.
   */
  reloadCertificate(cert: string, key: string): void;
}

/**
 * Binds a DoH listener. Throws the OS error (e.g. AddrInUse) for the server to report, or an
 * error if `cert`/`key` are unusable or only one of them is given.
 */
export function listenHttps(opts: HttpsOptions): HttpsListener {
  return new DohListener(opts);
}

class DohListener implements HttpsListener {
  readonly url: string;
  readonly addr: Deno.NetAddr;
  #server: Deno.HttpServer<Deno.NetAddr>;
  /** Shutdowns of servers replaced by a certificate reload, and of the current one once stopped. */
  #shutdowns: Promise<void>[] = [];
  #stopped = false;
  #abort: () => void = () => {};
  #aborted: Promise<void>;
  #trusted: Acl | null;
  #clientHeader: string;

  constructor(private readonly opts: HttpsOptions) {
    if ((opts.cert === undefined) !== (opts.key === undefined)) {
      throw new Error("cert and key must be given together (neither: plain HTTP)");
    }
    if (opts.cert !== undefined) checkCertificate(opts.cert, opts.key!);
    const proxies = (opts.trustedProxies ?? []).map((text) => {
      const cidr = parseCidr(text);
      if (typeof cidr === "string") throw new Error(`trusted proxy ${cidr}`);
      return cidr;
    });
    this.#trusted = proxies.length > 0 ? new Acl(proxies, []) : null;
    this.#clientHeader = (opts.clientHeader ?? "x-forwarded-for").toLowerCase();
    this.#aborted = new Promise((resolve) => (this.#abort = resolve));
    this.url = opts.url;
    this.#server = this.#serve(opts.port, opts.cert, opts.key);
    this.addr = this.#server.addr;
  }

  reloadCertificate(cert: string, key: string): void {
    if (this.opts.cert === undefined) throw new Error(`${this.url} is plain HTTP: no certificate`);
    if (this.#stopped) throw new Error(`${this.url} is stopping`);
    checkCertificate(cert, key);
    // Bind the successor first (the old one still serves if this throws), then retire the old.
    const next = this.#serve(this.addr.port, cert, key);
    this.#shutdowns.push(this.#server.shutdown());
    this.#server = next;
  }

  stopAccepting(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#shutdowns.push(this.#server.shutdown());
  }

  async close(): Promise<void> {
    this.stopAccepting();
    // Requests still waiting for the pipeline get 503, so the graceful shutdowns can complete.
    this.#abort();
    await Promise.all(this.#shutdowns);
  }

  #serve(port: number, cert?: string, key?: string): Deno.HttpServer<Deno.NetAddr> {
    const tls = cert !== undefined && key !== undefined ? { cert, key } : {};
    return Deno.serve({
      hostname: this.opts.hostname,
      port,
      ...tls,
      // A reload binds a second server to this port while the first finishes its requests.
      reusePort: cert !== undefined,
      onListen: () => {},
      onError: (err) => {
        log.warn("DoH request on {url} failed: {err}", { url: this.url, err: errText(err) });
        return status(500, "internal error");
      },
    }, (req, info) =>
      Promise.race([
        this.#respond(req, info.remoteAddr),
        this.#aborted.then(() => status(503, "server is shutting down")),
      ]));
  }

  async #respond(req: Request, peer: Deno.NetAddr): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname !== this.opts.path) return status(404, "not found");
    let query: Uint8Array | Response;
    if (req.method === "GET") query = fromGet(url);
    else if (req.method === "POST") query = await this.#fromPost(req);
    else return status(405, "use GET or POST", { allow: ALLOWED_METHODS });
    if (query instanceof Response) return query;

    const answer = await this.opts.handle({
      bytes: query,
      client: this.#clientOf(req, peer),
      transport: "https",
    });
    if (!answer) return status(400, "not a DNS query");
    // The pipeline's bytes live in an ordinary ArrayBuffer (never shared memory).
    return new Response(answer.bytes as Uint8Array<ArrayBuffer>, {
      headers: {
        "content-type": DNS_MESSAGE,
        "cache-control": `max-age=${cacheMaxAge(answer.bytes)}`,
      },
    });
  }

  /** The body of a POST, or the error response; the body is bounded in size and in time. */
  async #fromPost(req: Request): Promise<Uint8Array | Response> {
    const type = req.headers.get("content-type");
    if (type === null || mediaType(type) !== DNS_MESSAGE) {
      return status(415, `content-type must be ${DNS_MESSAGE}`);
    }
    const declared = req.headers.get("content-length");
    if (declared !== null && Number(declared) > MAX_DOH_MESSAGE) return tooLarge();
    if (!req.body) return status(400, "empty body");

    const reader = req.body.getReader();
    let timedOut = false;
    const cancel = this.opts.clock.schedule(this.opts.queryTimeoutMs, () => {
      timedOut = true;
      reader.cancel().catch(() => {});
    });
    const chunks: Uint8Array[] = [];
    let total = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.length;
        if (total > MAX_DOH_MESSAGE) {
          await reader.cancel().catch(() => {});
          return tooLarge();
        }
        chunks.push(value);
      }
    } catch (err) {
      if (!timedOut) return status(400, `request body: ${errText(err)}`);
    } finally {
      cancel();
    }
    if (timedOut) return status(408, "request body not received in time");
    if (total === 0) return status(400, "empty body");
    const body = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      body.set(c, at);
      at += c.length;
    }
    return body;
  }

  /**
   * The peer, unless it is a trusted proxy that names the client in the configured header: then
   * the first (original) address there. An absent or unreadable header leaves the peer.
   */
  #clientOf(req: Request, peer: Deno.NetAddr): { hostname: string; port: number } {
    if (!this.#trusted?.allows(peer.hostname)) return peer;
    const value = req.headers.get(this.#clientHeader);
    if (value === null) return peer;
    const named = this.#clientHeader === "forwarded" ? fromForwarded(value) : fromXff(value);
    if (!named) {
      log.debug("unusable {header} from proxy {peer}: {value}", {
        header: this.#clientHeader,
        peer: peer.hostname,
        value,
      });
    }
    return named ?? peer;
  }
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

/** The first address in an X-Forwarded-For list ("client, proxy1, ..."), port if given. */
function fromXff(value: string): { hostname: string; port: number } | null {
  return parseNode(value.split(",")[0].trim());
}

/** The `for=` of the first element of an RFC 7239 Forwarded header. */
function fromForwarded(value: string): { hostname: string; port: number } | null {
  const first = value.split(",")[0];
  for (const pair of first.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== "for") continue;
    return parseNode(pair.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1"));
  }
  return null;
}

/** "1.2.3.4", "1.2.3.4:5", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:5" → address. */
function parseNode(node: string): { hostname: string; port: number } | null {
  let host = node;
  let port = 0;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(node);
  const v4WithPort = /^([0-9.]+):(\d{1,5})$/.exec(node);
  if (bracketed) [host, port] = [bracketed[1], Number(bracketed[2] ?? 0)];
  else if (v4WithPort) [host, port] = [v4WithPort[1], Number(v4WithPort[2])];
  if (!isIP(host) || port > 65535) return null;
  return { hostname: host, port };
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
