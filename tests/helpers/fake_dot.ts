/**
 * A scriptable DNS-over-TLS upstream (RFC 7858) for tests: it records every query and answers
 * (or misbehaves) according to a {@link Behaviour} that can be changed at any time.
 */
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { Rcode } from "../../lib/dns/message.ts";
import { frame, writeAll } from "./dns_client.ts";
import { fixturePath } from "./fixtures.ts";

/**
 * How the server treats queries. Read when a query arrives (or, for "close-immediately" and
 * "stall-handshake", when a connection is accepted).
 *
 * - "answer": the default answer (see {@link defaultAnswer}) or `answerFor`'s.
 * - "silent": record the query, never reply.
 * - "reverse": hold replies per connection; once `batch` are held, send them in reverse order.
 * - "wrong-id": reply with id + 1.
 * - "wrong-question": reply with the right id but a different question (wrong-question.invalid).
 * - "large": reply with an RRset of TXT records of about 3000 bytes in all.
 * - "close-immediately": complete the TLS handshake, then close without reading.
 * - "stall-handshake": accept TCP but never do TLS. As the start-up behaviour the listener is
 *   plain TCP (client bytes are read and dropped, so a client close is noticed); set later, TLS
 *   connections are held without ever being read, until close().
 */
export type Behaviour =
  | "answer"
  | "silent"
  | "reverse"
  | "wrong-id"
  | "wrong-question"
  | "large"
  | "close-immediately"
  | "stall-handshake";

export interface FakeDotOptions {
  /** Which fixture certificate to present. Default "server". */
  cert?: "server" | "wrong-name" | "untrusted";
  /** Loopback address to listen on: "127.0.0.1" (default) or "::1". */
  hostname?: string;
  /** Default "answer". */
  behaviour?: Behaviour;
  /** For "reverse": how many replies to hold before releasing them. Default 2. */
  batch?: number;
  /** Close each connection once it has answered this many queries (later ones go unanswered). */
  closeAfter?: number;
  /**
   * Custom answers: the returned fields are laid over the default answer (`rcode` may be given
   * as a name, e.g. "NXDOMAIN"). Return null for the default answer.
   */
  answerFor?: (q: dnsPacket.Packet) => Partial<dnsPacket.Packet> | null;
  /** Names answered late: their replies are held until `releaseSlow()` (dropped on close). */
  slow?: (name: string) => boolean;
}

export interface FakeDot {
  port: number;
  hostname: string;
  /** Every query received, decoded, in order of arrival. */
  queries: dnsPacket.Packet[];
  /** The same queries as raw DNS messages (without the length prefix). */
  rawQueries: Uint8Array[];
  /** Connections accepted so far (counted at accept, before the TLS handshake). */
  readonly connections: number;
  /** Connections accepted and not yet closed. */
  openConnections(): number;
  /** Resolves when `n` queries in total have been received. Rejects if closed first. */
  waitForQueries(n: number): Promise<void>;
  /** Resolves when `n` connections in total have been accepted. Rejects if closed first. */
  waitForConnections(n: number): Promise<void>;
  setBehaviour(b: Behaviour): void;
  /** Sends the replies held for `slow` names, on connections still open. */
  releaseSlow(): void;
  /** Closes the listener and every connection, and waits until all their work has stopped. */
  close(): Promise<void>;
}

/** Reads a fixture PEM by file name, e.g. "ca.pem". */
export function readFixture(name: string): Promise<string> {
  return Deno.readTextFile(fixturePath(name));
}

/**
 * The address the default answer gives for `name`: 192.0.2.X for A, 2001:db8::X for AAAA,
 * where X = (sum of the bytes of the lower-cased name, without trailing dot) % 254 + 1.
 */
export function expectedAddress(name: string, type: "A" | "AAAA" = "A"): string {
  const bytes = new TextEncoder().encode(name.replace(/\.$/, "").toLowerCase());
  let sum = 0;
  for (const b of bytes) sum += b;
  const x = (sum % 254) + 1;
  return type === "A" ? `192.0.2.${x}` : `2001:db8::${x}`;
}

const OPCODE_MASK = 0x7800;

/**
 * `p` with what a fake server's `answerFor` returned laid over it; its `rcode` (a name such as
 * "SERVFAIL") sets the flags' rcode bits.
 */
export function withCustomAnswer(
  p: dnsPacket.Packet,
  custom: Partial<dnsPacket.Packet>,
): dnsPacket.Packet {
  const { rcode, ...rest } = custom as Partial<dnsPacket.Packet> & { rcode?: string };
  const out = { ...p, ...rest };
  if (rcode !== undefined) {
    const code = (Rcode as Record<string, number>)[rcode] ?? 0;
    out.flags = ((out.flags ?? 0) & ~0xf) | (code & 0xf);
  }
  return out;
}

/**
 * The default answer to `q`: id, question and opcode echoed, RD copied, RA set; one A or AAAA
 * record (TTL 300) for A/AAAA questions in class IN, no answers otherwise; an OPT record
 * (payload 1232, DO copied) if the query had one.
 */
export function defaultAnswer(q: dnsPacket.Packet): dnsPacket.Packet {
  const questions = q.questions ?? [];
  const answers: dnsPacket.Answer[] = [];
  const question = questions[0];
  if (question && (question.class ?? "IN") === "IN") {
    if (question.type === "A" || question.type === "AAAA") {
      answers.push({
        name: question.name,
        type: question.type,
        class: "IN",
        ttl: 300,
        data: expectedAddress(question.name, question.type),
      });
    }
  }
  const opt = (q.additionals ?? []).find((r: dnsPacket.Answer) => r.type === "OPT");
  return {
    type: "response",
    id: q.id ?? 0,
    flags: dnsPacket.RECURSION_AVAILABLE |
      ((q.flags ?? 0) & (dnsPacket.RECURSION_DESIRED | OPCODE_MASK)),
    questions,
    answers,
    authorities: [],
    additionals: opt
      ? [{
        type: "OPT",
        name: ".",
        udpPayloadSize: 1232,
        flags: (opt.flags ?? 0) & dnsPacket.DNSSEC_OK,
      }]
      : [],
  };
}

/** An RRset of 12 TXT records, ~3000 bytes on the wire, owned by `name`. */
function largeAnswers(name: string): dnsPacket.Answer[] {
  const answers: dnsPacket.Answer[] = [];
  for (let i = 0; i < 12; i++) {
    answers.push({
      name,
      type: "TXT",
      class: "IN",
      ttl: 300,
      data: [`record-${String(i).padStart(2, "0")} ${"x".repeat(240)}`],
    });
  }
  return answers;
}

function encode(p: dnsPacket.Packet): Uint8Array {
  return new Uint8Array(dnsPacket.encode(p));
}

interface ConnState {
  conn: Deno.Conn;
  open: boolean;
  /** Replies scheduled (for closeAfter). */
  scheduled: number;
  held: Uint8Array[];
  writing: Promise<void>;
}

export async function startFakeDot(opts: FakeDotOptions = {}): Promise<FakeDot> {
  const hostname = opts.hostname ?? "127.0.0.1";
  const batch = opts.batch ?? 2;
  let behaviour: Behaviour = opts.behaviour ?? "answer";
  const certName = opts.cert ?? "server";

  const plain = behaviour === "stall-handshake";
  const listener: Deno.Listener = plain ? Deno.listen({ hostname, port: 0 }) : Deno.listenTls({
    hostname,
    port: 0,
    cert: await readFixture(`${certName}.pem`),
    key: await readFixture(`${certName}-key.pem`),
  });
  const port = (listener.addr as Deno.NetAddr).port;

  const queries: dnsPacket.Packet[] = [];
  const rawQueries: Uint8Array[] = [];
  const conns = new Set<ConnState>();
  const tasks = new Set<Promise<void>>();
  type Waiter = { n: number; resolve: () => void; reject: (e: Error) => void };
  let waiters: Waiter[] = [];
  let connWaiters: Waiter[] = [];
  let accepted = 0;
  let closed = false;
  /** Replies held for slow names, with their connection. */
  let slowHeld: { st: ConnState; msg: Uint8Array }[] = [];
  let signalClosed = () => {};
  const closedSignal = new Promise<void>((resolve) => signalClosed = resolve);

  const closeConn = (st: ConnState) => {
    if (!st.open) return;
    st.open = false;
    try {
      st.conn.close();
    } catch { /* already closed */ }
  };

  const reply = (st: ConnState, msg: Uint8Array) => {
    st.writing = st.writing
      .then(() => st.open ? writeAll(st.conn, frame(msg)) : undefined)
      .catch(() => closeConn(st));
  };

  const buildReply = (q: dnsPacket.Packet, b: Behaviour): Uint8Array => {
    let p = defaultAnswer(q);
    if (b === "large") {
      p.answers = largeAnswers(q.questions?.[0]?.name ?? ".");
    } else if (b === "wrong-id") {
      p.id = ((q.id ?? 0) + 1) & 0xffff;
    } else if (b === "wrong-question") {
      const orig = q.questions?.[0];
      p = defaultAnswer({
        ...q,
        questions: [{ type: orig?.type ?? "A", class: "IN", name: "wrong-question.invalid" }],
      });
    } else if (opts.answerFor) {
      const custom = opts.answerFor(q);
      if (custom) p = withCustomAnswer(p, custom);
    }
    return encode(p);
  };

  const onQuery = (st: ConnState, raw: Uint8Array) => {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(Buffer.from(raw));
    } catch {
      closeConn(st); // not DNS: hang up
      return;
    }
    rawQueries.push(raw);
    queries.push(q);
    waiters = waiters.filter((w) => {
      if (queries.length < w.n) return true;
      w.resolve();
      return false;
    });

    const b = behaviour;
    if (b === "silent") return;
    if (opts.closeAfter !== undefined && st.scheduled >= opts.closeAfter) return;
    st.scheduled++;
    const msg = buildReply(q, b);
    if (b === "reverse") {
      st.held.push(msg);
      if (st.held.length >= batch) {
        const out = st.held.reverse();
        st.held = [];
        for (const m of out) reply(st, m);
      }
    } else if (opts.slow?.(q.questions?.[0]?.name ?? "")) {
      slowHeld.push({ st, msg });
    } else {
      reply(st, msg);
    }
    if (opts.closeAfter !== undefined && st.scheduled >= opts.closeAfter) {
      st.writing = st.writing.then(() => closeConn(st));
    }
  };

  const serve = async (st: ConnState, b: Behaviour) => {
    try {
      if (b === "close-immediately") {
        await (st.conn as Deno.TlsConn).handshake();
        return;
      }
      if (b === "stall-handshake" && !plain) {
        await closedSignal; // never read, so the TLS handshake never starts
        return;
      }
      const chunk = new Uint8Array(65536 + 2);
      let buf = new Uint8Array(0);
      while (st.open) {
        const n = await st.conn.read(chunk);
        if (n === null) break;
        if (b === "stall-handshake") continue; // discard; never speak TLS
        const next = new Uint8Array(buf.length + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.length);
        buf = next;
        let off = 0;
        while (buf.length - off >= 2) {
          const len = (buf[off] << 8) | buf[off + 1];
          if (buf.length - off < len + 2) break;
          onQuery(st, buf.slice(off + 2, off + 2 + len));
          off += len + 2;
        }
        buf = buf.slice(off);
      }
    } catch {
      // reset by the client, closed by us, or a failed handshake: all just end the connection
    } finally {
      await st.writing; // flush replies already due (never rejects)
      closeConn(st);
      conns.delete(st);
    }
  };

  const track = (p: Promise<void>) => {
    tasks.add(p);
    p.finally(() => tasks.delete(p));
  };

  const acceptLoop = async () => {
    try {
      for (;;) {
        const conn = await listener.accept();
        if (closed) {
          conn.close();
          break;
        }
        accepted++;
        connWaiters = connWaiters.filter((w) => {
          if (accepted < w.n) return true;
          w.resolve();
          return false;
        });
        const st: ConnState = {
          conn,
          open: true,
          scheduled: 0,
          held: [],
          writing: Promise.resolve(),
        };
        conns.add(st);
        track(serve(st, plain ? "stall-handshake" : behaviour));
      }
    } catch {
      // listener closed
    }
  };
  const acceptTask = acceptLoop();

  return {
    port,
    hostname,
    queries,
    rawQueries,
    get connections() {
      return accepted;
    },
    openConnections: () => conns.size,
    waitForQueries(n: number): Promise<void> {
      if (queries.length >= n) return Promise.resolve();
      if (closed) return Promise.reject(new Error("fake DoT server is closed"));
      return new Promise((resolve, reject) => waiters.push({ n, resolve, reject }));
    },
    waitForConnections(n: number): Promise<void> {
      if (accepted >= n) return Promise.resolve();
      if (closed) return Promise.reject(new Error("fake DoT server is closed"));
      return new Promise((resolve, reject) => connWaiters.push({ n, resolve, reject }));
    },
    setBehaviour(b: Behaviour) {
      behaviour = b;
    },
    releaseSlow() {
      const due = slowHeld;
      slowHeld = [];
      for (const { st, msg } of due) reply(st, msg);
    },
    async close() {
      if (closed) return;
      closed = true;
      slowHeld = [];
      signalClosed();
      try {
        listener.close();
      } catch { /* already closed */ }
      for (const st of conns) closeConn(st);
      await acceptTask;
      while (tasks.size > 0) await Promise.all([...tasks]);
      const pending = [...waiters, ...connWaiters];
      waiters = [];
      connWaiters = [];
      for (const w of pending) w.reject(new Error("fake DoT server closed"));
    },
  };
}
