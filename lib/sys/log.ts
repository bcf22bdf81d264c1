/**
 * Logger set-up. Every module logs through LogTape's `getLogger(["dotproxy", ...])`, which is a
 * no-op until `setupLogging` runs, so library code and tests never depend on a configured sink.
 */
import {
  configure,
  getConsoleSink,
  getLogger,
  getTextFormatter,
  jsonLinesFormatter,
  type Logger,
  reset,
} from "@logtape/logtape";

/** The levels an operator can choose, in increasing severity. */
export type LogLevel = "debug" | "info" | "warning" | "error";
/** `text` for people at a terminal, `json` (one object a line) for collectors. */
export type LogFormat = "text" | "json";

/** Configures the single process-wide sink; safe to call again (a reload replaces it). */
export async function setupLogging(level: LogLevel, format: LogFormat): Promise<void> {
  const formatter = format === "json" ? jsonLinesFormatter : getTextFormatter({
    timestamp: "rfc3339",
    value: (v) => (typeof v === "string" ? v : JSON.stringify(v)),
  });
  await configure({
    reset: true,
    sinks: { console: getConsoleSink({ formatter }) },
    loggers: [
      { category: ["dotproxy"], sinks: ["console"], lowestLevel: level },
      { category: ["logtape", "meta"], sinks: ["console"], lowestLevel: "warning" },
    ],
  });
}

/** Flushes and removes the sink, so a test or a shutdown leaves nothing behind. */
export async function teardownLogging(): Promise<void> {
  await reset();
}

/** A logger under the project's category, e.g. `logger("upstream")`. */
export function logger(...category: string[]): Logger {
  return getLogger(["dotproxy", ...category]);
}
