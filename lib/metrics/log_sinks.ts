/**
 * Query-log sinks and the one call that opens a configured query log. Stdout suits containers and
 * systemd (journald); a file needs `--allow-write` for its path; syslog sends to a collector
 * (see syslog.ts). Each sink is a LogTransport behind the QueryLog's bounded queue.
 */
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";
import { type LogRecord, type LogTransport, QueryLog, type QueryLogFormat } from "./query_log.ts";
import {
  DEFAULT_SYSLOG_HEADER,
  type SyslogHeader,
  type SyslogTarget,
  SyslogTcpTransport,
  SyslogUdpTransport,
  writeAll,
} from "./syslog.ts";

/** Where the query log goes. */
export type QueryLogSink =
  | { kind: "stdout" }
  | { kind: "file"; path: string }
  | ({ kind: "syslog" } & SyslogTarget);

/** A sink that could not be opened: names the sink and the OS reason, for a one-line message. */
export class QueryLogError extends Error {
  constructor(readonly sink: string, readonly reason: string) {
    super(`cannot open query log ${sink}: ${reason}`);
    this.name = "QueryLogError";
  }
}

/** Pipes are written atomically up to PIPE_BUF (4096 on Linux): lines never interleave. */
const PIPE_BUF = 4096;
const encoder = new TextEncoder();

/**
 * Newline-terminated lines to a byte stream, written in chunks of whole lines of at most
 * `chunkBytes` (a longer line goes alone), counting the records of every chunk fully written.
 */
export class LineTransport implements LogTransport {
  constructor(
    private readonly writer: { write(p: Uint8Array): Promise<number> },
    private readonly chunkBytes: number,
    private readonly onClose: () => void = () => {},
  ) {}

  async send(records: readonly LogRecord[]): Promise<number> {
    let delivered = 0;
    let i = 0;
    while (i < records.length) {
      const lines: Uint8Array[] = [];
      let size = 0;
      do {
        const line = encoder.encode(records[i].line + "\n");
        if (lines.length > 0 && size + line.length > this.chunkBytes) break;
        lines.push(line);
        size += line.length;
        i++;
      } while (i < records.length);
      const chunk = new Uint8Array(size);
      let at = 0;
      for (const l of lines) {
        chunk.set(l, at);
        at += l.length;
      }
      try {
        await writeAll(this.writer, chunk);
      } catch {
        return delivered;
      }
      delivered += lines.length;
    }
    return delivered;
  }

  close(): Promise<void> {
    try {
      this.onClose();
    } catch { /* already closed */ }
    return Promise.resolve();
  }
}

/** Standard output, in pipe-atomic chunks so lines never mix with other output; never closed. */
export function stdoutTransport(): LogTransport {
  return new LineTransport(Deno.stdout, PIPE_BUF);
}

/** Appends to `path` (created 0640 if missing); throws QueryLogError if it cannot be opened. */
export async function fileTransport(path: string): Promise<LogTransport> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { write: true, append: true, create: true, mode: 0o640 });
  } catch (err) {
    const hint = err instanceof Deno.errors.NotCapable ? ` (run with --allow-write=${path})` : "";
    throw new QueryLogError(`file ${path}`, errText(err) + hint);
  }
  return new LineTransport(file, 64 * 1024, () => file.close());
}

/** Everything `openQueryLog` needs: the sink, and the QueryLog options other than transport. */
export interface OpenQueryLogOptions {
  sink: QueryLogSink;
  format?: QueryLogFormat;
  /** Wall-clock ms since the epoch (main passes `Date.now`). */
  wallClock: () => number;
  clock: Clock;
  maxBuffered?: number;
  /** Syslog header fields; procId defaults to this process id. */
  syslog?: Partial<SyslogHeader>;
}

/** Opens the configured sink and returns a running QueryLog; throws QueryLogError on failure. */
export async function openQueryLog(opts: OpenQueryLogOptions): Promise<QueryLog> {
  const { sink } = opts;
  let transport: LogTransport;
  switch (sink.kind) {
    case "stdout":
      transport = stdoutTransport();
      break;
    case "file":
      transport = await fileTransport(sink.path);
      break;
    case "syslog": {
      const header = { ...DEFAULT_SYSLOG_HEADER, procId: String(Deno.pid), ...opts.syslog };
      if (sink.transport === "tcp") {
        transport = new SyslogTcpTransport(sink, header, { clock: opts.clock });
      } else {
        try {
          transport = new SyslogUdpTransport(sink, header);
        } catch (err) {
          throw new QueryLogError(`syslog udp://${sink.hostname}:${sink.port}`, errText(err));
        }
      }
      break;
    }
  }
  return new QueryLog({
    transport,
    wallClock: opts.wallClock,
    clock: opts.clock,
    format: opts.format,
    maxBuffered: opts.maxBuffered,
  });
}
