/**
 * The fault barrier between the listeners and the pipeline (house rule 7: an unexpected throw
 * costs one query, never the process). In Deno an unhandled promise rejection ends the process,
 * and a synchronous throw inside a listener's receive loop ends that listener; the guard turns
 * either into a SERVFAIL for the one query (or no answer when its header cannot be read), counts
 * it and logs it at a bounded rate, as CoreDNS's server recovers a panicking plugin. Answers given
 * synchronously (cache hits, refusals) stay synchronous: no promise is added on that path.
 */
import { decodeHeader, decodeQuery, isResponse, type Message, Rcode } from "../dns/message.ts";
import { DEFAULT_EDNS_UDP_SIZE, errorReply } from "../dns/reply.ts";
import type { Answer, Query } from "../pipeline/pipeline.ts";
import type { Transport } from "../dns/transport.ts";
import type { Clock } from "../sys/clock.ts";
import { logger } from "../sys/log.ts";
import { LogThrottle } from "../sys/log_throttle.ts";
import type { Handler } from "./listener.ts";

/** At most one log line per this many milliseconds about internal errors (the rest are counted). */
export const DEFAULT_FAULT_LOG_INTERVAL_MS = 10_000;

/** Classic DNS limit: every answer the guard builds fits in it (header + question + OPT). */
const CLASSIC_UDP_SIZE = 512;

const log = logger("listen", "guard");

/** What the guard needs: a clock for the log rate, and where to count faults. */
export interface QueryGuardOptions {
  clock: Clock;
  /** Called once per query lost to an internal error (e.g. `Metrics.internalError`). */
  onFault?: (transport: Transport) => void;
  /** The UDP size advertised in the OPT of a SERVFAIL to an EDNS query. Default 1232. */
  udpSize?: number;
  /** Default DEFAULT_FAULT_LOG_INTERVAL_MS. */
  logIntervalMs?: number;
  /** Where a report goes; default the `dotproxy.listen.guard` logger at error level. */
  report?: (report: FaultReport) => void;
}

/** One log line about an internal error, with how many were left unlogged before it. */
export interface FaultReport {
  transport: Transport;
  client: string;
  error: unknown;
  /** Faults since the previous report that were counted but not logged. */
  suppressed: number;
}

/**
 * The SERVFAIL for a query whose handling failed, built from its bytes: the question and OPT
 * echoed when the query decodes, the header alone when only that can be read; null (no answer)
 * for a response, or bytes too short to hold a header.
 */
export function servfailFor(bytes: Uint8Array, udpSize = DEFAULT_EDNS_UDP_SIZE): Answer | null {
  if (isResponse(bytes)) return null;
  const decoded = decodeQuery(bytes);
  let msg: Message;
  if (decoded.ok) {
    msg = decoded.value;
  } else {
    const header = decodeHeader(bytes);
    if (!header.ok) return null;
    msg = {
      header: header.value,
      question: null,
      edns: null,
      records: [],
      rcode: 0,
      answerStart: 0,
      authorityStart: 0,
      additionalStart: 0,
      end: 0,
    };
  }
  return {
    bytes: errorReply(msg, bytes, Rcode.SERVFAIL, { udpSize }),
    maxUdpSize: CLASSIC_UDP_SIZE,
  };
}

/** Wraps pipeline handlers so that nothing they throw or reject escapes to a listener. */
export class QueryGuard {
  readonly #throttle: LogThrottle;
  readonly #udpSize: number;
  readonly #onFault: (transport: Transport) => void;
  readonly #report: (r: FaultReport) => void;

  constructor(opts: QueryGuardOptions) {
    this.#throttle = new LogThrottle(
      opts.clock,
      opts.logIntervalMs ?? DEFAULT_FAULT_LOG_INTERVAL_MS,
    );
    this.#udpSize = opts.udpSize ?? DEFAULT_EDNS_UDP_SIZE;
    this.#onFault = opts.onFault ?? (() => {});
    this.#report = opts.report ?? logFault;
  }

  /**
   * The same handler, except that a synchronous throw or a rejected promise becomes the query's
   * SERVFAIL (see servfailFor). The returned handler never throws and its promises never reject.
   */
  wrap(handle: Handler): Handler {
    return (query) => {
      let answer: ReturnType<Handler>;
      try {
        answer = handle(query);
      } catch (err) {
        return this.#fault(query, err);
      }
      if (answer instanceof Promise) return answer.catch((err) => this.#fault(query, err));
      return answer;
    };
  }

  /** Counts, maybe logs, and answers; nothing here may throw (it runs in catch handlers). */
  #fault(query: Query, error: unknown): Answer | null {
    try {
      this.#onFault(query.transport);
      const suppressed = this.#throttle.take();
      if (suppressed !== null) {
        this.#report({
          transport: query.transport,
          client: query.client.hostname,
          error,
          suppressed,
        });
      }
    } catch { /* a failing counter or sink must not cost the answer */ }
    try {
      return servfailFor(query.bytes, this.#udpSize);
    } catch {
      return null;
    }
  }
}

function logFault(r: FaultReport): void {
  log.error(
    "internal error on a {transport} query from {client}, which got SERVFAIL if readable " +
      "({suppressed} more since the last report): {error}",
    {
      transport: r.transport,
      client: r.client,
      suppressed: r.suppressed,
      error: r.error instanceof Error ? (r.error.stack ?? r.error.message) : String(r.error),
    },
  );
}
