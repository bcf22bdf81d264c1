/**
 * A scriptable DNS-over-HTTPS server (RFC 8484) for tests: `Deno.serve` with the test
 * certificate (SAN dns.test, localhost, 127.0.0.1), answering POSTed `application/dns-message`
 * queries with the default answer of fake_dot.ts, and misbehaving on demand.
 */
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { defaultAnswer, readFixture } from "./fake_dot.ts";

/**
 * How the server answers (read when each request arrives):
 * - "answer": 200 with the default answer (or `answerFor`'s).
 * - "silent": hold the request unanswered until close().
 * - "status-500": 500 with an empty body.
 * - "wrong-type": 200 with the answer but content type text/plain.
 * - "malformed": 200, application/dns-message, bytes that are not a DNS message.
 * - "wrong-question": 200 with an answer for wrong-question.invalid.
 */
export type DohBehaviour =
  | "answer"
  | "silent"
  | "status-500"
  | "wrong-type"
  | "malformed"
  | "wrong-question";

/** What the server saw of one request. */
export interface DohRequest {
  method: string;
  path: string;
  contentType: string | null;
  accept: string | null;
  /** HTTP/2 requests carry `:authority` instead of a Host header. */
  http2: boolean;
  /** The client's source port: requests on one connection share it. */
  port: number;
}

export interface FakeDohOptions {
  behaviour?: DohBehaviour;
  answerFor?: (q: dnsPacket.Packet) => Partial<dnsPacket.Packet> | null;
  /** Names answered late: held (whatever the behaviour) until `releaseSlow()` or close(). */
  slow?: (name: string) => boolean;
}

export interface FakeDoh {
  hostname: string;
  port: number;
  /** `https://127.0.0.1:PORT/dns-query`. */
  url: string;
  requests: DohRequest[];
  /** Decoded queries, in order. */
  queries: dnsPacket.Packet[];
  /** The same queries as raw bytes. */
  rawQueries: Uint8Array[];
  /** Resolves once `n` requests have arrived; rejects if closed first. */
  waitForRequests(n: number): Promise<void>;
  setBehaviour(b: DohBehaviour): void;
  /** Lets the requests held for `slow` names go on (they are answered as the behaviour says). */
  releaseSlow(): void;
  /** Answers held requests, shuts the server down and waits for it. */
  close(): Promise<void>;
}

const DNS_MESSAGE = "application/dns-message";

export async function startFakeDoh(opts: FakeDohOptions = {}): Promise<FakeDoh> {
  let behaviour: DohBehaviour = opts.behaviour ?? "answer";
  const requests: DohRequest[] = [];
  const queries: dnsPacket.Packet[] = [];
  const rawQueries: Uint8Array[] = [];
  type Waiter = { n: number; resolve: () => void; reject: (e: Error) => void };
  let waiters: Waiter[] = [];
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  let releaseSlow = () => {};
  let slowGate = new Promise<void>((resolve) => (releaseSlow = resolve));
  let closed = false;

  const handler = async (req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => {
    const url = new URL(req.url);
    requests.push({
      method: req.method,
      path: url.pathname,
      contentType: req.headers.get("content-type"),
      accept: req.headers.get("accept"),
      http2: req.headers.get("host") === null,
      port: info.remoteAddr.port,
    });
    const body = new Uint8Array(await req.arrayBuffer());
    let q: dnsPacket.Packet | null = null;
    try {
      q = dnsPacket.decode(Buffer.from(body));
      rawQueries.push(body);
      queries.push(q);
    } catch { /* answered 400 below */ }
    waiters = waiters.filter((w) => {
      if (requests.length < w.n) return true;
      w.resolve();
      return false;
    });
    if (!q) return new Response("bad query", { status: 400 });
    if (opts.slow?.(q.questions?.[0]?.name ?? "")) await Promise.race([slowGate, released]);
    const b = behaviour;
    if (b === "silent") {
      await released;
      return new Response(null, { status: 503 });
    }
    if (b === "status-500") return new Response(null, { status: 500 });
    if (b === "malformed") {
      return new Response(new Uint8Array([0, 0, 0x81]), {
        headers: { "content-type": DNS_MESSAGE },
      });
    }
    let p = defaultAnswer(q);
    if (b === "wrong-question") {
      p = defaultAnswer({
        ...q,
        questions: [{ type: "A", class: "IN", name: "wrong-question.invalid" }],
      });
    } else if (opts.answerFor) {
      p = { ...p, ...(opts.answerFor(q) ?? {}) };
    }
    return new Response(new Uint8Array(dnsPacket.encode(p)), {
      headers: { "content-type": b === "wrong-type" ? "text/plain" : DNS_MESSAGE },
    });
  };

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await readFixture("server.pem"),
    key: await readFixture("server-key.pem"),
    onListen() {},
  }, handler);
  const port = server.addr.port;

  return {
    hostname: "127.0.0.1",
    port,
    url: `https://127.0.0.1:${port}/dns-query`,
    requests,
    queries,
    rawQueries,
    waitForRequests(n: number): Promise<void> {
      if (requests.length >= n) return Promise.resolve();
      if (closed) return Promise.reject(new Error("fake DoH server is closed"));
      return new Promise((resolve, reject) => waiters.push({ n, resolve, reject }));
    },
    setBehaviour(b: DohBehaviour) {
      behaviour = b;
    },
    releaseSlow() {
      const open = releaseSlow;
      slowGate = new Promise<void>((resolve) => (releaseSlow = resolve));
      open();
    },
    async close() {
      if (closed) return;
      closed = true;
      release();
      await server.shutdown();
      const pending = waiters;
      waiters = [];
      for (const w of pending) w.reject(new Error("fake DoH server closed"));
    },
  };
}
