/**
 * The DNS-over-HTTPS listener, driven directly with a fake handler (no proxy, no upstream): GET
 * and POST, the HTTP errors RFC 8484 implies, Cache-Control, HTTP/2, the plain-HTTP mode behind
 * a trusted proxy, the body deadline, and certificate reload. Interop with curl, dig and kdig.
 */
import assert from "node:assert/strict";
import net from "node:net";
import dnsPacket from "dns-packet";
import { cacheMaxAge, type HttpsListener, listenHttps } from "../../lib/listen/https.ts";
import type { Handler } from "../../lib/listen/listener.ts";
import type { StreamLimits } from "../../lib/listen/stream.ts";
import type { Query } from "../../lib/pipeline/pipeline.ts";
import { type Cidr, parseCidr } from "../../lib/policy/acl.ts";
import { buildQuery, parse } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { defaultAnswer, expectedAddress, readFixture } from "../helpers/fake_dot.ts";
import { digArgs, toolTest } from "../helpers/tools.ts";
import { waitFor as until } from "../helpers/wait.ts";

const CA = await readFixture("ca.pem");
const CERT = await readFixture("server.pem");
const KEY = await readFixture("server-key.pem");
const WRONG_NAME_CERT = await readFixture("wrong-name.pem");
const WRONG_NAME_KEY = await readFixture("wrong-name-key.pem");
const CA_PATH = new URL("../fixtures/ca.pem", import.meta.url).pathname;
const LIMITS: StreamLimits = {
  idleTimeoutMs: 10_000,
  readTimeoutMs: 5_000,
  maxConnections: 1_000,
  maxConnectionsPerClient: 32,
  maxPipelined: 100,
};
const DNS_MESSAGE = "application/dns-message";

type Answerer = (q: dnsPacket.Packet) => dnsPacket.Packet | null;

/** A handler answering like the fake upstream, or as `answer` says; `hold` delays answers. */
function fakeHandler(opts: { answer?: Answerer; hold?: boolean } = {}) {
  const queries: Query[] = [];
  const held: (() => void)[] = [];
  const handle: Handler = async (query) => {
    queries.push(query);
    const packet = parse(query.bytes);
    if (opts.hold) await new Promise<void>((resolve) => held.push(resolve));
    const reply = opts.answer ? opts.answer(packet) : defaultAnswer(packet);
    return reply && { bytes: new Uint8Array(dnsPacket.encode(reply)), maxUdpSize: 65535 };
  };
  return { handle, queries, held };
}

interface Doh {
  listener: HttpsListener;
  clock: FakeClock;
  /** The DoH URL, e.g. https://127.0.0.1:1234/dns-query. */
  url: string;
  /** fetch through a client trusting the test CA (closed after the test). */
  fetch(input: string, init?: RequestInit): Promise<Response>;
}

/** A trusted proxy as the config would have parsed it. */
function mustParseCidr(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c === "string") throw new Error(c);
  return c;
}

async function withDoh(
  handle: Handler,
  opts: {
    plain?: boolean;
    trustedProxies?: string[];
    clientHeader?: string;
    limits?: Partial<StreamLimits>;
  },
  fn: (doh: Doh) => Promise<void>,
): Promise<void> {
  const clock = new FakeClock();
  const listener = await listenHttps({
    url: "https://127.0.0.1:0",
    hostname: "127.0.0.1",
    port: 0,
    path: "/dns-query",
    handle,
    clock,
    ...(opts.plain ? {} : { cert: CERT, key: KEY }),
    trustedProxies: opts.trustedProxies?.map(mustParseCidr),
    clientHeader: opts.clientHeader,
    limits: { ...LIMITS, ...opts.limits },
  });
  const client = Deno.createHttpClient({ caCerts: [CA] });
  const scheme = opts.plain ? "http" : "https";
  try {
    await fn({
      listener,
      clock,
      url: `${scheme}://127.0.0.1:${listener.addr.port}/dns-query`,
      fetch: (input, init) => fetch(input, { ...init, client }),
    });
  } finally {
    client.close();
    await listener.close();
  }
}

/** A query as a fetch body (buildQuery copies into a fresh, non-shared ArrayBuffer). */
function query(...args: Parameters<typeof buildQuery>): Uint8Array<ArrayBuffer> {
  return buildQuery(...args) as Uint8Array<ArrayBuffer>;
}

function b64url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

function post(doh: Doh, body: BodyInit, type = DNS_MESSAGE): Promise<Response> {
  return doh.fetch(doh.url, { method: "POST", headers: { "content-type": type }, body });
}

async function dnsAnswer(res: Response): Promise<dnsPacket.Packet> {
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(res.headers.get("content-type"), DNS_MESSAGE);
  return parse(new Uint8Array(await res.arrayBuffer()));
}

Deno.test("GET ?dns= is answered as application/dns-message, keeping the client's DNS ID", async () => {
  const h = fakeHandler();
  await withDoh(h.handle, {}, async (doh) => {
    for (const id of [0, 0x4242]) {
      const res = await doh.fetch(`${doh.url}?dns=${b64url(query("get.test", "A", id))}`);
      const answer = await dnsAnswer(res);
      assert.equal(answer.id, id);
      assert.equal(answer.answers?.[0].data, expectedAddress("get.test"));
    }
    assert.equal(h.queries[0].transport, "https");
    assert.equal(h.queries[0].client.hostname, "127.0.0.1");
  });
});

Deno.test("POST application/dns-message is answered", async () => {
  await withDoh(fakeHandler().handle, {}, async (doh) => {
    const answer = await dnsAnswer(await post(doh, query("post.test", "AAAA", 7)));
    assert.equal(answer.id, 7);
    assert.equal(answer.answers?.[0].data, expectedAddress("post.test", "AAAA"));
  });
});

Deno.test("GET with base64 padding, characters outside base64url, or no dns parameter is 400", async () => {
  const h = fakeHandler();
  await withDoh(h.handle, {}, async (doh) => {
    const padMe = query("pad.test"); // 26 bytes: base64 needs padding
    const padded = padMe.toBase64({ alphabet: "base64url" });
    assert.ok(padded.endsWith("="));
    const standard = query("std.test", "A", 0xfbff).toBase64(); // "+" or "/" in it
    assert.match(standard, /[+/]/);
    for (const search of [`?dns=${padded}`, `?dns=${encodeURIComponent(standard)}`, "", "?dns="]) {
      const res = await doh.fetch(`${doh.url}${search}`);
      assert.equal(res.status, 400, search);
      await res.body?.cancel();
    }
    assert.equal(h.queries.length, 0);
  });
});

Deno.test("POST with another content type is 415", async () => {
  await withDoh(fakeHandler().handle, {}, async (doh) => {
    const res = await post(doh, query("type.test"), "application/octet-stream");
    assert.equal(res.status, 415);
    await res.body?.cancel();
  });
});

Deno.test("a POST body over 65535 bytes is 413, declared or streamed", async () => {
  const h = fakeHandler();
  await withDoh(h.handle, {}, async (doh) => {
    const declared = await post(doh, new Uint8Array(65536));
    assert.equal(declared.status, 413);
    await declared.body?.cancel();
    const streamed = await post(
      doh,
      new ReadableStream({
        start(c) {
          for (let i = 0; i < 17; i++) c.enqueue(new Uint8Array(4096));
          c.close();
        },
      }),
    );
    assert.equal(streamed.status, 413);
    await streamed.body?.cancel();
    assert.equal(h.queries.length, 0);
  });
});

Deno.test("methods other than GET and POST are 405 with Allow", async () => {
  await withDoh(fakeHandler().handle, {}, async (doh) => {
    for (const method of ["PUT", "DELETE", "HEAD"]) {
      const res = await doh.fetch(doh.url, { method });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get("allow"), "GET, POST");
      await res.body?.cancel();
    }
  });
});

Deno.test("a path other than the configured one is 404", async () => {
  await withDoh(fakeHandler().handle, {}, async (doh) => {
    const q = b64url(query("path.test"));
    const res = await doh.fetch(doh.url.replace("/dns-query", `/resolve?dns=${q}`));
    assert.equal(res.status, 404);
    await res.body?.cancel();
  });
});

Deno.test("a query the pipeline drops is 400", async () => {
  await withDoh(fakeHandler({ answer: () => null }).handle, {}, async (doh) => {
    const res = await post(doh, query("dropped.test"));
    assert.equal(res.status, 400);
    await res.body?.cancel();
  });
});

/** An NXDOMAIN with an SOA whose TTL is `ttl` and MINIMUM is `minimum`. */
function negative(q: dnsPacket.Packet, ttl: number, minimum: number): dnsPacket.Packet {
  return {
    ...defaultAnswer(q),
    rcode: "NXDOMAIN",
    answers: [],
    authorities: [{
      name: "test",
      type: "SOA",
      ttl,
      data: {
        mname: "ns.test",
        rname: "hostmaster.test",
        serial: 1,
        refresh: 3600,
        retry: 600,
        expire: 86400,
        minimum,
      },
    }],
  } as dnsPacket.Packet;
}

Deno.test("Cache-Control max-age is the smallest answer TTL, or the SOA's for a negative answer", async () => {
  const answer: Answerer = (q) => {
    const name = q.questions![0].name;
    const base = defaultAnswer(q);
    if (name === "two.ttl.test") {
      return {
        ...base,
        answers: [
          { name, type: "A", ttl: 300, data: "192.0.2.1" },
          { name, type: "A", ttl: 60, data: "192.0.2.2" },
        ],
      };
    }
    if (name === "nx-minimum.ttl.test") return negative(q, 3600, 900);
    if (name === "nx-soa-ttl.ttl.test") return negative(q, 120, 900);
    return { ...base, rcode: "SERVFAIL", answers: [] } as dnsPacket.Packet;
  };
  await withDoh(fakeHandler({ answer }).handle, {}, async (doh) => {
    const expected: [string, string][] = [
      ["two.ttl.test", "max-age=60"],
      ["nx-minimum.ttl.test", "max-age=900"],
      ["nx-soa-ttl.ttl.test", "max-age=120"],
      ["servfail.ttl.test", "max-age=0"],
    ];
    for (const [name, cacheControl] of expected) {
      const res = await post(doh, query(name));
      assert.equal(res.headers.get("cache-control"), cacheControl, name);
      await dnsAnswer(res);
    }
  });
});

Deno.test("cacheMaxAge treats a TTL with the top bit set as zero and garbage as uncacheable", () => {
  const q = parse(query("big.test"));
  const reply = {
    ...defaultAnswer(q),
    answers: [{ name: "big.test", type: "A", ttl: 60, data: "192.0.2.1" }],
  };
  const bytes = new Uint8Array(dnsPacket.encode(reply as dnsPacket.Packet));
  assert.equal(cacheMaxAge(bytes), 60);
  // The TTL of the only answer record sits 10 bytes before the end (4-byte address, rdlength).
  bytes.set([0x80, 0, 0, 0], bytes.length - 10);
  assert.equal(cacheMaxAge(bytes), 0);
  assert.equal(cacheMaxAge(new Uint8Array([1, 2, 3])), 0);
});

Deno.test("HTTP/2 is used when the client supports it", async () => {
  await withDoh(fakeHandler().handle, {}, async (doh) => {
    const h2Only = Deno.createHttpClient({ caCerts: [CA], http2: true, http1: false });
    try {
      const q = b64url(query("h2.test"));
      const res = await fetch(`${doh.url}?dns=${q}`, { client: h2Only });
      assert.equal((await dnsAnswer(res)).answers?.[0].data, expectedAddress("h2.test"));
    } finally {
      h2Only.close();
    }
  });
});

/** POSTs a query for `name` with extra headers; the response. */
function postWith(doh: Doh, name: string, headers: Record<string, string>): Promise<Response> {
  return doh.fetch(doh.url, {
    method: "POST",
    headers: { "content-type": DNS_MESSAGE, ...headers },
    body: query(name),
  });
}

Deno.test("behind a trusted proxy, a client's own X-Forwarded-For value cannot name the client", async () => {
  // The client sent "X-Forwarded-For: 10.6.6.6"; the proxy (127.0.0.1) appended what it saw.
  const cases: [string[], string, string][] = [
    [["127.0.0.1"], "10.6.6.6, 203.0.113.5", "203.0.113.5"],
    [["127.0.0.0/8", "10.0.0.0/8"], "6.6.6.6, 203.0.113.5, 10.0.0.1", "203.0.113.5"],
    [["127.0.0.0/8", "10.0.0.0/8"], "10.0.0.9, 10.0.0.1", "10.0.0.9"],
    [["10.0.0.0/8"], "203.0.113.5", "127.0.0.1"],
  ];
  for (const [trusted, xff, expected] of cases) {
    const h = fakeHandler();
    await withDoh(h.handle, { plain: true, trustedProxies: trusted }, async (doh) => {
      await dnsAnswer(await postWith(doh, "xff.test", { "x-forwarded-for": xff }));
      assert.equal(h.queries[0].client.hostname, expected, `trusted ${trusted}, ${xff}`);
    });
  }
});

Deno.test("a trusted proxy's missing or unparseable client address is 400, never the proxy's", async () => {
  const h = fakeHandler();
  await withDoh(h.handle, { plain: true, trustedProxies: ["127.0.0.1"] }, async (doh) => {
    const cases: Record<string, string>[] = [
      {},
      { "x-forwarded-for": "garbage" },
      { "x-forwarded-for": "unknown" },
    ];
    for (const headers of cases) {
      const res = await postWith(doh, "garbage.xff.test", headers);
      assert.equal(res.status, 400, JSON.stringify(headers));
      assert.match(await res.text(), /x-forwarded-for from a trusted proxy/);
    }
    assert.equal(h.queries.length, 0);
  });
});

Deno.test("repeated X-Forwarded-For lines are one list in order", async () => {
  const h = fakeHandler();
  await withDoh(h.handle, { plain: true, trustedProxies: ["127.0.0.1"] }, async (doh) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: doh.listener.addr.port });
    try {
      const body = query("lines.xff.test");
      const head =
        `POST /dns-query HTTP/1.1\r\nhost: dns.test\r\ncontent-type: ${DNS_MESSAGE}\r\n` +
        `x-forwarded-for: 10.6.6.6\r\nx-forwarded-for: 203.0.113.5\r\n` +
        `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
      await conn.write(new TextEncoder().encode(head));
      await conn.write(body);
      const reply = new Uint8Array(1024);
      const n = await conn.read(reply);
      assert.match(new TextDecoder().decode(reply.subarray(0, n ?? 0)), /^HTTP\/1\.1 200 /);
      assert.equal(h.queries[0].client.hostname, "203.0.113.5");
    } finally {
      conn.close();
    }
  });
});

Deno.test("a trusted proxy's RFC 7239 Forwarded header is read from the right when configured", async () => {
  const h = fakeHandler();
  const opts = {
    plain: true,
    trustedProxies: ["::ffff:127.0.0.1", "10.0.0.0/8"],
    clientHeader: "Forwarded",
  };
  await withDoh(h.handle, opts, async (doh) => {
    await dnsAnswer(
      await postWith(doh, "forwarded.test", {
        forwarded: 'for=10.6.6.6, for="[2001:db8::17]:4711";proto=https, for=10.0.0.1',
      }),
    );
    assert.deepEqual(h.queries[0].client, { hostname: "2001:db8::17", port: 4711 });
    for (
      const forwarded of ["for=unknown", "for=_hidden", 'for="[2001:db8::17]:4711', "proto=https"]
    ) {
      const res = await postWith(doh, "bad.forwarded.test", { forwarded });
      assert.equal(res.status, 400, forwarded);
      await res.body?.cancel();
    }
    assert.equal(h.queries.length, 1);
  });
});

Deno.test("a single-address client header (x-real-ip) takes one value; a list is 400", async () => {
  const h = fakeHandler();
  const opts = { plain: true, trustedProxies: ["127.0.0.1"], clientHeader: "X-Real-IP" };
  await withDoh(h.handle, opts, async (doh) => {
    await dnsAnswer(await postWith(doh, "real-ip.test", { "x-real-ip": "203.0.113.8" }));
    assert.equal(h.queries[0].client.hostname, "203.0.113.8");
    const res = await postWith(doh, "real-ip.test", { "x-real-ip": "10.6.6.6, 203.0.113.8" });
    assert.equal(res.status, 400);
    await res.body?.cancel();
  });
});

Deno.test("a POST body that does not arrive within the read timeout is 408", async () => {
  const h = fakeHandler();
  await withDoh(h.handle, { plain: true }, async (doh) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: doh.listener.addr.port });
    try {
      const head =
        `POST /dns-query HTTP/1.1\r\nhost: dns.test\r\ncontent-type: ${DNS_MESSAGE}\r\n` +
        `content-length: 40\r\n\r\n`;
      await conn.write(new TextEncoder().encode(head));
      await conn.write(query("slow.test").subarray(0, 10));
      // The connection's own timer, and the body deadline.
      await until(() => doh.clock.pending === 2, "the body deadline is scheduled");
      doh.clock.advance(LIMITS.readTimeoutMs);
      const buf = new Uint8Array(1024);
      const n = await conn.read(buf);
      assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 408 /);
      assert.equal(h.queries.length, 0);
    } finally {
      conn.close();
    }
  });
});

/**
 * Whether a TLS handshake with the listener succeeds when verifying `serverName`. A connection
 * reset is retried: right after a reload, a connection the kernel queued on the old listener
 * (SO_REUSEPORT) is reset when that listener closes (see lib/listen/https.ts).
 */
async function handshakes(port: number, serverName: string): Promise<boolean> {
  for (let attempt = 0;; attempt++) {
    let tls: Deno.TlsConn | null = null;
    try {
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
      tls = await Deno.startTls(tcp, { hostname: serverName, caCerts: [CA] });
      await tls.handshake();
      return true;
    } catch (err) {
      const reset = err instanceof Deno.errors.ConnectionReset ||
        err instanceof Deno.errors.UnexpectedEof || err instanceof Deno.errors.BrokenPipe;
      if (!reset) return false;
      if (attempt === 3) throw err;
    } finally {
      tls?.close();
    }
  }
}

Deno.test("after reloadCertificate new connections get the new certificate; a request in flight is answered", async () => {
  const h = fakeHandler({ hold: true });
  await withDoh(h.handle, {}, async (doh) => {
    const inFlight = post(doh, query("inflight.reload.test"));
    await until(() => h.held.length === 1, "the request reached the handler");
    doh.listener.reloadCertificate(WRONG_NAME_CERT, WRONG_NAME_KEY);
    const port = doh.listener.addr.port;
    assert.equal(await handshakes(port, "wrong.test"), true);
    assert.equal(await handshakes(port, "dns.test"), false);
    h.held.shift()!();
    const answer = await dnsAnswer(await inFlight);
    assert.equal(answer.answers?.[0].data, expectedAddress("inflight.reload.test"));
  });
});

Deno.test("reloadCertificate refuses a mismatched pair, and any pair in plain-HTTP mode", async () => {
  await withDoh(fakeHandler().handle, {}, async (doh) => {
    assert.throws(() => doh.listener.reloadCertificate(CERT, WRONG_NAME_KEY), /does not belong/);
    assert.equal(await handshakes(doh.listener.addr.port, "dns.test"), true);
  });
  await withDoh(fakeHandler().handle, { plain: true }, (doh) => {
    assert.throws(() => doh.listener.reloadCertificate(CERT, KEY), /plain HTTP/);
    return Promise.resolve();
  });
});

Deno.test("close() answers requests still waiting for the pipeline with 503", async () => {
  const h = fakeHandler({ hold: true });
  let pending: Promise<Response[]> | null = null;
  await withDoh(h.handle, {}, async (doh) => {
    pending = Promise.all([post(doh, query("a.close.test")), post(doh, query("b.close.test"))]);
    await until(() => h.held.length === 2, "both requests reached the handler");
    doh.listener.stopAccepting();
    await doh.listener.close();
    for (const res of await pending) {
      assert.equal(res.status, 503);
      await res.body?.cancel();
    }
  });
});

/**
 * A raw client connection that notices when the server closes it, and collects what it is sent.
 * Made with node:net when it must come from another loopback address (Deno.connect cannot bind
 * a source address).
 */
class Watched {
  closed = false;
  received = "";
  readonly #done: Promise<void>;
  readonly #write: (bytes: Uint8Array) => Promise<void>;
  readonly #close: () => void;

  private constructor(
    start: (onData: (b: Uint8Array) => void, onEnd: () => void) => {
      write: (bytes: Uint8Array) => Promise<void>;
      close: () => void;
    },
  ) {
    let ended: () => void = () => {};
    this.#done = new Promise((resolve) => (ended = resolve));
    const io = start((b) => (this.received += new TextDecoder().decode(b)), () => {
      this.closed = true;
      ended();
    });
    this.#write = io.write;
    this.#close = io.close;
  }

  /** A connection to `port` from 127.0.0.1 (Deno.connect). */
  static async deno(port: number): Promise<Watched> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    return new Watched((onData, onEnd) => {
      (async () => {
        const buf = new Uint8Array(4096);
        try {
          for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
            onData(buf.subarray(0, n));
          }
        } catch { /* reset: closed too */ }
        onEnd();
      })();
      return {
        write: async (bytes) => void await conn.write(bytes),
        close: () => {
          try {
            conn.close();
          } catch { /* already closed */ }
        },
      };
    });
  }

  /** A connection to 127.0.0.1:`port` from `localAddress` (node:net). */
  static node(port: number, localAddress: string): Promise<Watched> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port, localAddress });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        socket.on("error", () => {});
        resolve(
          new Watched((onData, onEnd) => {
            socket.on("data", onData);
            socket.on("close", onEnd);
            return {
              write: (bytes) => new Promise((ok) => socket.write(bytes, () => ok())),
              close: () => socket.destroy(),
            };
          }),
        );
      });
    });
  }

  write(text: string | Uint8Array): Promise<void> {
    return this.#write(typeof text === "string" ? new TextEncoder().encode(text) : text);
  }

  /** Closes it from the client side (if still open) and waits until it is. */
  async close(): Promise<void> {
    this.#close();
    await this.#done;
  }
}

/** Closes every connection, even if some test step failed. */
async function closeAll(conns: Watched[]): Promise<void> {
  await Promise.all(conns.map((c) => c.close()));
}

/**
 * Advances the fake clock in `stepMs` steps, letting I/O run between steps, until `cond` holds;
 * returns how much fake time that took. Fails after `maxMs`.
 */
async function advanceUntil(
  clock: FakeClock,
  cond: () => boolean,
  what: string,
  { stepMs = 250, maxMs = 60_000 } = {},
): Promise<number> {
  const start = clock.now();
  for (let t = 0; t <= maxMs && !cond(); t += stepMs) {
    clock.advance(stepMs);
    for (let i = 0; i < 20 && !cond(); i++) await new Promise((r) => setTimeout(r, 0));
  }
  assert.ok(cond(), `timed out waiting until ${what}`);
  return clock.now() - start;
}

const GET_HEAD = (name: string) =>
  `GET /dns-query?dns=${b64url(query(name))} HTTP/1.1\r\nhost: dns.test\r\n\r\n`;

Deno.test("hundreds of idle connections: the total cap holds, newcomers evict the longest idle, the rest close when idle", async () => {
  const limits = { maxConnections: 50, maxConnectionsPerClient: 1_000 };
  await withDoh(fakeHandler().handle, { plain: true, limits }, async (doh) => {
    const stats = doh.listener.stats;
    const conns: Watched[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        conns.push(await Watched.deno(doh.listener.addr.port));
        await until(() => stats.open + stats.evictedIdle === i + 1, `connection ${i} accepted`);
        doh.clock.advance(1); // a distinct age for each
      }
      assert.equal(stats.open, 50);
      assert.equal(stats.evictedIdle, 250);
      await until(() => conns.slice(0, 250).every((c) => c.closed), "the oldest are closed");
      assert.ok(conns.slice(250).every((c) => !c.closed), "the newest 50 are open");

      // The newest connection is served.
      const newest = conns[conns.length - 1];
      await newest.write(GET_HEAD("newest.cap.test"));
      await until(() => /^HTTP\/1\.1 200 /.test(newest.received), "the newest is answered");

      const waited = await advanceUntil(doh.clock, () => stats.open === 0, "all are closed");
      assert.ok(
        waited >= LIMITS.idleTimeoutMs,
        `closed after ${waited} ms, before the idle timeout`,
      );
      await until(() => conns.every((c) => c.closed), "clients see every connection closed");
      assert.equal(stats.idleClosed, 50);
    } finally {
      await closeAll(conns);
    }
  });
});

Deno.test("a client at its connection cap evicts its own idle connections, never another client's", async () => {
  const limits = { maxConnections: 1_000, maxConnectionsPerClient: 8 };
  await withDoh(fakeHandler().handle, { plain: true, limits }, async (doh) => {
    const stats = doh.listener.stats;
    const conns: Watched[] = [];
    try {
      const other = await Watched.node(doh.listener.addr.port, "127.0.0.2");
      conns.push(other);
      await until(() => stats.open === 1, "the other client is accepted");
      for (let i = 0; i < 100; i++) {
        conns.push(await Watched.deno(doh.listener.addr.port));
        await until(() => stats.open + stats.evictedIdle === i + 2, `connection ${i} accepted`);
        doh.clock.advance(1);
      }
      assert.equal(stats.open, 9);
      assert.equal(stats.evictedIdle, 92);
      await until(() => conns.filter((c) => c.closed).length === 92, "evictions reach clients");
      assert.equal(other.closed, false);
      await other.write(GET_HEAD("other.cap.test"));
      await until(() => /^HTTP\/1\.1 200 /.test(other.received), "the other client is answered");
    } finally {
      await closeAll(conns);
    }
  });
});

Deno.test("when a client's connections are all busy, its newcomer is refused and others are admitted", async () => {
  const h = fakeHandler({ hold: true });
  const limits = { maxConnections: 1_000, maxConnectionsPerClient: 2 };
  await withDoh(h.handle, { plain: true, limits }, async (doh) => {
    const stats = doh.listener.stats;
    const conns: Watched[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const busy = await Watched.deno(doh.listener.addr.port);
        conns.push(busy);
        await busy.write(GET_HEAD(`busy${i}.cap.test`));
        await until(() => h.held.length === i + 1, "the request reached the handler");
      }
      const refused = await Watched.deno(doh.listener.addr.port);
      conns.push(refused);
      await until(() => refused.closed, "the newcomer is closed");
      assert.equal(stats.rejected, 1);
      const other = await Watched.node(doh.listener.addr.port, "127.0.0.2");
      conns.push(other);
      await until(() => stats.open === 3, "another client is admitted");
      for (const release of h.held.splice(0)) release();
      await until(
        () => conns.slice(0, 2).every((c) => /^HTTP\/1\.1 200 /.test(c.received)),
        "the busy connections are answered",
      );
    } finally {
      await closeAll(conns);
    }
  });
});

Deno.test("a partial TLS ClientHello is closed after the read timeout", async () => {
  await withDoh(fakeHandler().handle, {}, async (doh) => {
    const conn = await Watched.deno(doh.listener.addr.port);
    try {
      // A TLS record header announcing a ClientHello, and one byte of it.
      await conn.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
      const waited = await advanceUntil(doh.clock, () => conn.closed, "the server closes it");
      assert.ok(waited >= LIMITS.readTimeoutMs, `closed after ${waited} ms`);
      assert.ok(waited < LIMITS.idleTimeoutMs, `closed after ${waited} ms: idle, not read timeout`);
      assert.equal(doh.listener.stats.timedOut, 1);
    } finally {
      await conn.close();
    }
  });
});

/** The HTTP/2 client preface, SETTINGS, and a HEADERS frame that leaves its header block open. */
function h2OpenHeaderBlock(): Uint8Array {
  const preface = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  const settings = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
  const headers = [0, 0, 1, 0x1, 0x1, /* END_STREAM, no END_HEADERS */ 0, 0, 0, 1, 0x82];
  return new Uint8Array([...preface, ...settings, ...headers]);
}

Deno.test("a partial request head (HTTP/1.1, or an open HTTP/2 header block) is closed after the read timeout", async () => {
  const heads: [string, string | Uint8Array][] = [
    ["HTTP/1.1", "GET /dns-query HTTP/1.1\r\nhost: dns.test\r\nx-slow: "],
    ["HTTP/2", h2OpenHeaderBlock()],
  ];
  for (const [what, head] of heads) {
    await withDoh(fakeHandler().handle, { plain: true }, async (doh) => {
      const conn = await Watched.deno(doh.listener.addr.port);
      try {
        await conn.write(head);
        const waited = await advanceUntil(doh.clock, () => conn.closed, `${what} head closed`);
        assert.ok(waited >= LIMITS.readTimeoutMs, `${what}: closed after ${waited} ms`);
        assert.ok(waited < LIMITS.idleTimeoutMs, `${what}: closed after ${waited} ms (idle)`);
        assert.equal(doh.listener.stats.timedOut, 1, what);
      } finally {
        await conn.close();
      }
    });
  }
});

Deno.test("a keep-alive connection that was answered closes after the idle timeout, not before", async () => {
  await withDoh(fakeHandler().handle, {}, async (doh) => {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: doh.listener.addr.port });
    const tls = await Deno.startTls(tcp, { hostname: "dns.test", caCerts: [CA] });
    try {
      await tls.write(new TextEncoder().encode(GET_HEAD("keepalive.test")));
      const buf = new Uint8Array(4096);
      const n = await tls.read(buf);
      assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 200 /);
      let closed = false;
      const reading = (async () => {
        try {
          while ((await tls.read(buf)) !== null) { /* nothing more is sent */ }
        } catch { /* reset */ }
        closed = true;
      })();
      const waited = await advanceUntil(doh.clock, () => closed, "the idle connection closes");
      assert.ok(waited >= LIMITS.idleTimeoutMs, `closed after ${waited} ms`);
      assert.equal(doh.listener.stats.idleClosed, 1);
      await reading;
    } finally {
      tls.close();
    }
  });
});

Deno.test("requests beyond maxPipelined in flight on one HTTP/2 connection are 429", async () => {
  const h = fakeHandler({ hold: true });
  await withDoh(h.handle, { limits: { maxPipelined: 3 } }, async (doh) => {
    const h2 = Deno.createHttpClient({ caCerts: [CA], http2: true, http1: false });
    try {
      const get = (name: string) => fetch(`${doh.url}?dns=${b64url(query(name))}`, { client: h2 });
      // One request first, so that the others share its connection.
      const first = get("first.pipelined.test");
      await until(() => h.held.length === 1, "the first request is held");
      const more = Array.from({ length: 4 }, (_, i) => get(`${i}.pipelined.test`));
      await until(() => h.held.length === 3, "three requests are held");
      const refused = await Promise.race(more);
      assert.equal(refused.status, 429);
      assert.equal(refused.headers.get("retry-after"), "1");
      await refused.body?.cancel();
      for (const release of h.held.splice(0)) release();
      const statuses = [];
      for (const res of [first, ...more]) {
        const r = await res;
        statuses.push(r.status);
        await r.body?.cancel();
      }
      assert.deepEqual(statuses.sort(), [200, 200, 200, 429, 429]);
      assert.equal(doh.listener.stats.open, 1);
    } finally {
      h2.close();
    }
  });
});

Deno.test("a port in use is a bind error marked inUse, leaving nothing running", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const err = await listenHttps({
      url: "https://127.0.0.1",
      hostname: "127.0.0.1",
      port: taken.addr.port,
      path: "/dns-query",
      handle: fakeHandler().handle,
      clock: new FakeClock(),
      cert: CERT,
      key: KEY,
      limits: LIMITS,
    }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof Error && "inUse" in err && err.inUse === true, String(err));
  } finally {
    taken.close();
  }
});

Deno.test("a client that never reads its answers is closed after the read timeout", async () => {
  // 60 kB answers, pipelined requests, nothing read: the socket buffers fill, output stalls.
  const big: Handler = () => ({ bytes: new Uint8Array(60_000), maxUdpSize: 65535 });
  await withDoh(big, { plain: true }, async (doh) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: doh.listener.addr.port });
    try {
      const head = GET_HEAD("unread.test");
      await conn.write(new TextEncoder().encode(head.repeat(400)));
      const stats = doh.listener.stats;
      const waited = await advanceUntil(doh.clock, () => stats.open === 0, "the reader is cut", {
        stepMs: 500,
      });
      assert.equal(stats.writeTimedOut, 1);
      assert.equal(stats.timedOut, 0);
      assert.equal(stats.idleClosed, 0);
      assert.ok(waited >= LIMITS.readTimeoutMs, `closed after ${waited} ms`);
    } finally {
      conn.close();
    }
  });
});

async function run(bin: string, args: string[], stdin?: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command(bin, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  assert.ok(out.success, `${bin} failed: ${new TextDecoder().decode(out.stderr)}`);
  return out.stdout;
}

await toolTest({
  name: "curl GET and POST over HTTP/2 and HTTP/1.1 get answers from the DoH listener",
  tools: ["curl"],
  async fn({ curl }) {
    await withDoh(fakeHandler().handle, {}, async (doh) => {
      const port = doh.listener.addr.port;
      const base = [
        "--silent",
        "--show-error",
        "--fail",
        "--max-time",
        "10",
        "--cacert",
        CA_PATH,
        "--resolve",
        `dns.test:${port}:127.0.0.1`,
      ];
      const url = `https://dns.test:${port}/dns-query`;
      for (const version of ["--http2", "--http1.1"]) {
        const get = await run(curl, [
          ...base,
          version,
          "--write-out",
          "%{stderr}%{http_version}",
          `${url}?dns=${b64url(query("curl-get.test", "A", 0))}`,
        ]);
        assert.equal(parse(get).answers?.[0].data, expectedAddress("curl-get.test"));
        const posted = await run(curl, [
          ...base,
          version,
          "--header",
          `content-type: ${DNS_MESSAGE}`,
          "--data-binary",
          "@-",
          url,
        ], query("curl-post.test", "AAAA", 9));
        assert.equal(parse(posted).id, 9);
        assert.equal(parse(posted).answers?.[0].data, expectedAddress("curl-post.test", "AAAA"));
      }
      const version = await run(curl, [
        ...base,
        "--http2",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_version}",
        `${url}?dns=${b64url(query("curl-version.test"))}`,
      ]);
      assert.equal(new TextDecoder().decode(version), "2");
    });
  },
});

await toolTest({
  name: "dig +https gets answers from the DoH listener, verifying its certificate",
  tools: ["dig"],
  async fn({ dig }) {
    await withDoh(fakeHandler().handle, {}, async (doh) => {
      const out = await run(dig, [
        "+https=/dns-query",
        ...digArgs("dig", doh.listener.addr.port, CA_PATH),
        "+short",
        "dig.doh.test",
        "A",
      ]);
      assert.equal(new TextDecoder().decode(out).trim(), expectedAddress("dig.doh.test"));
    });
  },
});

await toolTest({
  name: "kdig +https gets answers from the DoH listener, verifying its certificate",
  tools: ["kdig"],
  async fn({ kdig }) {
    await withDoh(fakeHandler().handle, {}, async (doh) => {
      const out = await run(kdig, [
        "+https=/dns-query",
        ...digArgs("kdig", doh.listener.addr.port, CA_PATH),
        "+short",
        "kdig.doh.test",
        "AAAA",
      ]);
      assert.equal(
        new TextDecoder().decode(out).trim(),
        expectedAddress("kdig.doh.test", "AAAA"),
      );
    });
  },
});

await toolTest({
  name: "curl over HTTP/2 and HTTP/1.1 gets 415, 405 and 413 every time, with the body unread",
  tools: ["curl"],
  async fn({ curl }) {
    const bodyFile = await Deno.makeTempFile({ dir: "/tmp", prefix: "doh-70k-" });
    try {
      await Deno.writeFile(bodyFile, new Uint8Array(70_000));
      await withDoh(fakeHandler().handle, {}, async (doh) => {
        const port = doh.listener.addr.port;
        const url = `https://dns.test:${port}/dns-query`;
        const cases: [string, string[]][] = [
          ["415", ["--header", "content-type: text/plain", "--data-binary", "@-"]],
          ["405", ["--request", "PUT", "--data-binary", "@-"]],
          ["413", ["--header", `content-type: ${DNS_MESSAGE}`, "--data-binary", `@${bodyFile}`]],
        ];
        const outcomes: string[] = [];
        for (const version of ["--http2", "--http1.1"]) {
          for (const [expected, args] of cases) {
            for (let i = 0; i < (version === "--http2" ? 10 : 3); i++) {
              const out = await new Deno.Command(curl, {
                args: [
                  "--silent",
                  "--show-error",
                  "--max-time",
                  "10",
                  "--cacert",
                  CA_PATH,
                  "--resolve",
                  `dns.test:${port}:127.0.0.1`,
                  version,
                  "--output",
                  "/dev/null",
                  "--write-out",
                  "%{http_code}",
                  ...args,
                  url,
                ],
                stdin: "piped",
                stdout: "piped",
                stderr: "piped",
              }).spawn();
              const w = out.stdin.getWriter();
              await w.write(query("curl-error.test"));
              await w.close();
              const result = await out.output();
              const got = new TextDecoder().decode(result.stdout);
              if (got !== expected) {
                outcomes.push(
                  `${version} ${args.join(" ")}: ${got} ${new TextDecoder().decode(result.stderr)}`,
                );
              }
            }
          }
        }
        assert.deepEqual(outcomes, []);
      });
    } finally {
      await Deno.remove(bodyFile);
    }
  },
});
