/**
 * Syslog output for the query log: RFC 5424 messages to a collector over UDP (RFC 5426, one
 * message per datagram) or TCP (RFC 6587 octet-counting framing), so query logs can go to a
 * central collector without a file or an agent on the host. Formatting is pure and tested on its
 * own; the transports only move bytes.
 */
import type { Clock } from "../sys/clock.ts";
import type { LogRecord, LogTransport } from "./query_log.ts";

/** The RFC 5424 header fields that do not change per message. */
export interface SyslogHeader {
  /** 0-23; 3 = daemon, 16-23 = local0-local7. */
  facility: number;
  /** 0-7; 6 = informational. */
  severity: number;
  /** This host's name, or "-" (NILVALUE) when it is not known. */
  hostname: string;
  appName: string;
  /** Usually the process id. */
  procId: string;
  msgId: string;
}

/** Defaults: daemon.info from "dotproxy", message id "query", host and process unknown. */
export const DEFAULT_SYSLOG_HEADER: SyslogHeader = Object.freeze({
  facility: 3,
  severity: 6,
  hostname: "-",
  appName: "dotproxy",
  procId: "-",
  msgId: "query",
});

/** RFC 5424 §6: header fields are PRINTUSASCII (33-126), of bounded length, "-" when empty. */
function headerField(value: string, maxLength: number): string {
  const clean = value.replace(/[^\x21-\x7e]/g, "_").slice(0, maxLength);
  return clean === "" ? "-" : clean;
}

/**
 * One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`, PRI = facility *
 * 8 + severity, TIMESTAMP in UTC with milliseconds, no structured data. Pure.
 */
export function formatSyslog(msg: string, timeMs: number, header: SyslogHeader): string {
  const facility = Math.min(23, Math.max(0, Math.trunc(header.facility)));
  const severity = Math.min(7, Math.max(0, Math.trunc(header.severity)));
  return `<${facility * 8 + severity}>1 ${new Date(timeMs).toISOString()} ` +
    `${headerField(header.hostname, 255)} ${headerField(header.appName, 48)} ` +
    `${headerField(header.procId, 128)} ${headerField(header.msgId, 32)} - ${msg}`;
}

const encoder = new TextEncoder();

/** RFC 6587 §3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`, the length in bytes. Pure. */
export function frameOctetCounting(message: string): Uint8Array {
  const body = encoder.encode(message);
  const prefix = encoder.encode(`${body.length} `);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix);
  out.set(body, prefix.length);
  return out;
}

/** A collector address. */
export interface SyslogTarget {
  transport: "udp" | "tcp";
  /** An IP address (a name is resolved by the OS on every connect or send). */
  hostname: string;
  port: number;
}

/** The local address a UDP socket binds to for reaching `target`: same family, loopback stays. */
function bindAddressFor(hostname: string): string {
  if (hostname === "::1") return "::1";
  if (hostname.includes(":")) return "::";
  if (hostname.startsWith("127.")) return "127.0.0.1";
  return "0.0.0.0";
}

/** Syslog over UDP (RFC 5426): one message per datagram; a failed send loses that message only. */
export class SyslogUdpTransport implements LogTransport {
  readonly #socket: Deno.DatagramConn;
  readonly #addr: Deno.NetAddr;

  /** Binds an ephemeral UDP port; throws the OS error if it cannot. */
  constructor(target: SyslogTarget, private readonly header: SyslogHeader) {
    this.#addr = { transport: "udp", hostname: target.hostname, port: target.port };
    this.#socket = Deno.listenDatagram({
      transport: "udp",
      hostname: bindAddressFor(target.hostname),
      port: 0,
    });
  }

  async send(records: readonly LogRecord[]): Promise<number> {
    let sent = 0;
    for (const r of records) {
      try {
        await this.#socket.send(
          encoder.encode(formatSyslog(r.line, r.timeMs, this.header)),
          this.#addr,
        );
        sent++;
      } catch {
        // ICMP unreachable and the like: this message is lost, the next may get through.
      }
    }
    return sent;
  }

  close(): Promise<void> {
    try {
      this.#socket.close();
    } catch { /* already closed */ }
    return Promise.resolve();
  }
}

/** Reconnection pacing of the TCP transport. */
export interface SyslogTcpOptions {
  clock: Clock;
  /** After a failed connect or a lost connection, records are dropped for this long. Default 1000. */
  reconnectDelayMs?: number;
  /** A connect that takes longer is abandoned. Default 2000. */
  connectTimeoutMs?: number;
}

/**
 * Syslog over TCP with octet-counting framing (RFC 6587). Connects on first use; when the
 * connection fails or the collector closes it, records are dropped until a reconnect, tried at
 * most once per `reconnectDelayMs`.
 */
export class SyslogTcpTransport implements LogTransport {
  #conn: Deno.TcpConn | null = null;
  #watcher: Promise<void> | null = null;
  #connecting: AbortController | null = null;
  #retryAt = -Infinity;
  #closed = false;
  readonly #reconnectDelayMs: number;
  readonly #connectTimeoutMs: number;

  constructor(
    private readonly target: SyslogTarget,
    private readonly header: SyslogHeader,
    private readonly opts: SyslogTcpOptions,
  ) {
    this.#reconnectDelayMs = opts.reconnectDelayMs ?? 1000;
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? 2000;
  }

  /** Whether a connection to the collector is open now. */
  get connected(): boolean {
    return this.#conn !== null;
  }

  async send(records: readonly LogRecord[]): Promise<number> {
    const conn = await this.#connection();
    if (!conn) return 0;
    const frames = records.map((r) =>
      frameOctetCounting(formatSyslog(r.line, r.timeMs, this.header))
    );
    const bytes = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of frames) {
      bytes.set(f, at);
      at += f.length;
    }
    try {
      await writeAll(conn, bytes);
      return records.length;
    } catch {
      this.#lost(conn);
      return 0;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#connecting?.abort();
    const conn = this.#conn;
    if (conn) this.#lost(conn);
    await this.#watcher;
  }

  async #connection(): Promise<Deno.TcpConn | null> {
    if (this.#conn) return this.#conn;
    const { clock } = this.opts;
    if (this.#closed || clock.now() < this.#retryAt) return null;
    const abort = new AbortController();
    this.#connecting = abort;
    const cancel = clock.schedule(this.#connectTimeoutMs, () => abort.abort());
    try {
      const conn = await Deno.connect({
        hostname: this.target.hostname,
        port: this.target.port,
        signal: abort.signal,
      });
      if (this.#closed) {
        conn.close();
        return null;
      }
      this.#conn = conn;
      this.#watcher = this.#watch(conn);
      return conn;
    } catch {
      this.#retryAt = clock.now() + this.#reconnectDelayMs;
      return null;
    } finally {
      cancel();
      this.#connecting = null;
    }
  }

  /** Reads (and ignores) until the collector closes, so a lost connection is noticed promptly. */
  async #watch(conn: Deno.TcpConn): Promise<void> {
    const buf = new Uint8Array(256);
    try {
      while ((await conn.read(buf)) !== null) { /* collectors send nothing; ignore it */ }
    } catch { /* reset, or closed by us */ }
    this.#lost(conn);
  }

  #lost(conn: Deno.TcpConn): void {
    if (this.#conn !== conn) return;
    this.#conn = null;
    this.#retryAt = this.opts.clock.now() + this.#reconnectDelayMs;
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

/** Writes all of `bytes`, however many calls the writer needs. */
export async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}
