/**
 * A tiny DNS client for tests, independent of lib/: one-shot UDP queries, and a TCP client
 * (optionally inside TLS, for DNS-over-TLS) speaking RFC 1035 2-byte length framing.
 */
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";

/** Where to send queries. */
export interface Addr {
  hostname: string;
  port: number;
}

const isV6 = (hostname: string) => hostname.includes(":");

/**
 * Sends one UDP datagram to `addr` and resolves with the first datagram that comes back from
 * that address. Rejects after `timeoutMs` (default 2000); the socket and timer are always freed.
 */
export async function udpQuery(addr: Addr, msg: Uint8Array, timeoutMs = 2000): Promise<Uint8Array> {
  const sock = Deno.listenDatagram({
    transport: "udp",
    hostname: isV6(addr.hostname) ? "::1" : "127.0.0.1",
    port: 0,
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    sock.close(); // rejects the pending receive()
  }, timeoutMs);
  try {
    await sock.send(msg, { transport: "udp", hostname: addr.hostname, port: addr.port });
    for (;;) {
      const [data, from] = await sock.receive();
      const f = from as Deno.NetAddr;
      if (f.port === addr.port) return data;
    }
  } catch (err) {
    if (timedOut) throw new Error(`UDP query to ${addr.hostname}:${addr.port} timed out`);
    throw err;
  } finally {
    clearTimeout(timer);
    if (!timedOut) sock.close();
  }
}

/** TLS settings for {@link TcpDnsClient.connect}: enables DNS-over-TLS. */
export interface ClientTlsOptions {
  /** PEM CA certificates to trust (in addition to the system roots). */
  caCerts?: string[];
  /** Name to verify the server certificate against (and send as SNI). Default: addr.hostname. */
  serverName?: string;
}

/** Writes all of `data` to `w`, looping over partial writes. */
export async function writeAll(w: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await w.write(data.subarray(off));
}

/** Prefixes a DNS message with its 2-byte big-endian length. */
export function frame(msg: Uint8Array): Uint8Array {
  if (msg.length > 0xffff) throw new RangeError(`DNS message too long: ${msg.length}`);
  const out = new Uint8Array(msg.length + 2);
  out[0] = msg.length >> 8;
  out[1] = msg.length & 0xff;
  out.set(msg, 2);
  return out;
}

/** A DNS-over-TCP (or, with `tls`, DNS-over-TLS) client connection. */
export class TcpDnsClient {
  #conn: Deno.Conn;
  #buf = new Uint8Array(0);
  #closed = false;
  #eof = false;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** A client on a connection already open (e.g. one that sent a PROXY header before TLS). */
  static over(conn: Deno.Conn): TcpDnsClient {
    return new TcpDnsClient(conn);
  }

  /** The underlying connection (a `Deno.TlsConn` when connected with `tls`). */
  get conn(): Deno.Conn {
    return this.#conn;
  }

  /**
   * Connects to `addr`. With `opts.tls`, runs a TLS handshake verifying the server against
   * `caCerts` and `serverName`; the returned promise rejects if verification fails.
   */
  static async connect(addr: Addr, opts: { tls?: ClientTlsOptions } = {}): Promise<TcpDnsClient> {
    const tcp = await Deno.connect({ hostname: addr.hostname, port: addr.port });
    tcp.setNoDelay(true);
    if (!opts.tls) return new TcpDnsClient(tcp);
    let tls: Deno.TlsConn;
    try {
      tls = await Deno.startTls(tcp, {
        hostname: opts.tls.serverName ?? addr.hostname,
        caCerts: opts.tls.caCerts,
      });
    } catch (err) {
      try {
        tcp.close();
      } catch { /* already consumed */ }
      throw err;
    }
    try {
      await tls.handshake();
    } catch (err) {
      try {
        tls.close();
      } catch { /* already closed */ }
      throw err;
    }
    return new TcpDnsClient(tls);
  }

  /** Sends one DNS message, framed with its 2-byte length. */
  async send(msg: Uint8Array): Promise<void> {
    await writeAll(this.#conn, frame(msg));
  }

  /** Sends raw bytes as they are (for framing tests: split frames, several per write...). */
  async sendRaw(bytes: Uint8Array): Promise<void> {
    await writeAll(this.#conn, bytes);
  }

  /**
   * Resolves with the next framed message, or null when the peer closed the connection cleanly
   * between messages (or this client was closed). Rejects if the stream ends mid-message.
   */
  async read(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#buf.length >= 2) {
        const len = (this.#buf[0] << 8) | this.#buf[1];
        if (this.#buf.length >= len + 2) {
          const msg = this.#buf.slice(2, len + 2);
          this.#buf = this.#buf.slice(len + 2);
          return msg;
        }
      }
      if (this.#eof || this.#closed) break;
      const chunk = new Uint8Array(65536 + 2);
      let n: number | null;
      try {
        n = await this.#conn.read(chunk);
      } catch (err) {
        if (this.#closed) return null;
        if (err instanceof Deno.errors.ConnectionReset) n = null;
        else throw err;
      }
      if (n === null) {
        this.#eof = true;
        break;
      }
      const next = new Uint8Array(this.#buf.length + n);
      next.set(this.#buf);
      next.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = next;
    }
    if (this.#buf.length > 0 && !this.#closed) {
      throw new Error(`connection ended inside a message (${this.#buf.length} bytes pending)`);
    }
    return null;
  }

  /** Half-closes the connection: the peer sees EOF, replies can still be read. */
  async closeWrite(): Promise<void> {
    await this.#conn.closeWrite();
  }

  /** Closes the connection; safe to call twice. A pending read() resolves to null. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}

/** Builds a query with RD set; `opts.udpSize` / `opts.do` add an EDNS OPT record. */
export function buildQuery(
  name: string,
  type = "A",
  id = 0x1234,
  opts: { udpSize?: number; do?: boolean } = {},
): Uint8Array {
  const additionals = opts.udpSize !== undefined || opts.do
    ? [{
      type: "OPT",
      name: ".",
      udpPayloadSize: opts.udpSize ?? 1232,
      flags: opts.do ? dnsPacket.DNSSEC_OK : 0,
    }]
    : [];
  const buf: Buffer = dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: "IN" }],
    additionals,
  });
  return new Uint8Array(buf); // a copy, not a view into Buffer's shared pool
}

/** Decodes a DNS message. */
export function parse(msg: Uint8Array): dnsPacket.Packet {
  return dnsPacket.decode(Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength));
}
