/**
 * dotproxy command line: parse flags, load and validate the config, start the server, and stop it
 * gracefully on SIGINT/SIGTERM. Exit codes: 0 normal, 1 runtime failure (e.g. port in use),
 * 2 usage or configuration error.
 */
import { parseArgs } from "node:util";
import denoJson from "./deno.json" with { type: "json" };
import { probe } from "./lib/admin/probe.ts";
import { fetchPins, formatPinReport, pinTargetFromUrl } from "./lib/identity/print_pins.ts";
import { configWarnings, formatConfigError, isConfigError, loadConfig } from "./lib/config/load.ts";
import { type Config, LOG_LEVELS } from "./lib/config/schema.ts";
import { openQueryLog, QueryLogError } from "./lib/metrics/log_sinks.ts";
import type { QueryLog } from "./lib/metrics/query_log.ts";
import { RoutingStartError } from "./lib/route/live.ts";
import { BindError, startServer } from "./lib/server.ts";
import { systemClock } from "./lib/sys/clock.ts";
import { errText } from "./lib/sys/errors.ts";
import { logger, setupLogging, teardownLogging } from "./lib/sys/log.ts";
import { cryptoRandom } from "./lib/sys/random.ts";

const USAGE =
  `dotproxy ${denoJson.version} — a DNS proxy: plain DNS in (UDP, TCP), DNS-over-TLS out.

Usage: dotproxy [--config PATH] [--check] [--log-level LEVEL]
       dotproxy --print-pins URL [--tls-name NAME] [--ca-file PATH]

Options:
  -c, --config PATH      configuration file (default: ./config.toml)
      --check            validate the configuration and exit (0 valid, 2 invalid)
      --log-level LEVEL  override [log] level: ${LOG_LEVELS.join(" | ")}
      --print-pins URL   connect to a tls:// or https:// server and print the SPKI pin of each
                         certificate it presents, for an upstream's spki_pins (exit 1 if it
                         cannot be reached); check out of band that it is the server you mean
      --tls-name NAME    with --print-pins: the name to ask for and verify (default: the host)
      --ca-file PATH     with --print-pins: PEM CA certificates to verify against instead of
                         the system's (the chain is printed either way)
  -h, --help             show this help
  -V, --version          show the version
`;

async function main(args: string[]): Promise<number> {
  let flags;
  try {
    flags = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c", default: "config.toml" },
        check: { type: "boolean", default: false },
        "log-level": { type: "string" },
        probe: { type: "string" },
        "print-pins": { type: "string" },
        "tls-name": { type: "string" },
        "ca-file": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
        version: { type: "boolean", short: "V", default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    console.error(`dotproxy: ${errText(err)}\n\n${USAGE}`);
    return 2;
  }
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  if (flags.version) {
    console.log(`dotproxy ${denoJson.version} (deno ${Deno.version.deno})`);
    return 0;
  }
  if (flags.probe !== undefined) {
    return await probe(flags.probe, { report: (line) => console.error(line) });
  }
  if (flags["print-pins"] !== undefined) {
    return await printPins(flags["print-pins"], flags["tls-name"], flags["ca-file"]);
  }
  if (flags["tls-name"] !== undefined || flags["ca-file"] !== undefined) {
    console.error(`dotproxy: --tls-name and --ca-file go with --print-pins\n\n${USAGE}`);
    return 2;
  }
  const level = flags["log-level"];
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level)) {
    console.error(
      `dotproxy: --log-level = "${level}": must be one of ${LOG_LEVELS.join(", ")}`,
    );
    return 2;
  }

  const config = await loadConfig(flags.config);
  if (isConfigError(config)) {
    console.error(`dotproxy: ${formatConfigError(config)}`);
    return 2;
  }
  const warnings = configWarnings(config);
  if (flags.check) {
    for (const w of warnings) console.error(`warning: ${w}`);
    console.log(`${flags.config}: configuration is valid`);
    return 0;
  }
  const applyLevel = (c: Config) => {
    if (level) c.log.level = level as Config["log"]["level"];
  };
  applyLevel(config);
  await setupLogging(config.log.level, config.log.format);
  const log = logger("main");
  for (const w of warnings) log.warn("{warning}", { warning: w });

  let queryLog: QueryLog | null = null;
  let server;
  try {
    queryLog = await openConfiguredQueryLog(config);
    server = await startServer(config, {
      clock: systemClock,
      random: cryptoRandom(),
      queryLog,
      version: denoJson.version,
    });
  } catch (err) {
    if (
      !(err instanceof BindError || err instanceof QueryLogError ||
        err instanceof RoutingStartError)
    ) {
      throw err;
    }
    log.error("{message}", { message: err.message });
    await queryLog?.close();
    await teardownLogging();
    console.error(`dotproxy: ${err.message}`);
    return 1;
  }
  log.info("dotproxy {version} started with {upstreams} upstream(s)", {
    version: denoJson.version,
    upstreams: config.upstreams.length,
  });

  // SIGHUP: re-read the config; an invalid one is logged and the running one stays.
  const reload = async () => {
    const next = await loadConfig(flags.config);
    if (isConfigError(next)) {
      log.error("reload rejected, keeping the running configuration: {reason}", {
        reason: formatConfigError(next),
      });
      return;
    }
    applyLevel(next);
    await setupLogging(next.log.level, next.log.format);
    for (const w of configWarnings(next)) log.warn("{warning}", { warning: w });
    const skipped = await server.reload(next);
    log.info("configuration reloaded{note}", {
      note: skipped.length ? `; restart to apply: ${skipped.join(", ")}` : "",
    });
  };
  let reloading = Promise.resolve();
  try {
    Deno.addSignalListener("SIGHUP", () => {
      reloading = reloading.then(reload).catch((err) =>
        log.error("reload failed: {err}", { err: errText(err) })
      );
    });
  } catch { /* no SIGHUP on Windows */ }

  const stopped = new Promise<string>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      try {
        Deno.addSignalListener(signal, () => resolve(signal));
      } catch { /* SIGTERM is not available on Windows */ }
    }
  });
  const signal = await stopped;
  log.info("{signal} received, shutting down", { signal });
  await reloading;
  await server.stop();
  await queryLog?.close();
  log.info("stopped");
  await teardownLogging();
  return 0;
}

/**
 * `--print-pins URL`: the chain the server presents, each certificate with its pin, and the
 * spki_pins line for its leaf. Exit 0, 1 when the server cannot be reached, 2 on bad usage.
 */
async function printPins(url: string, tlsName?: string, caFile?: string): Promise<number> {
  const target = pinTargetFromUrl(url, tlsName);
  if ("error" in target) {
    console.error(`dotproxy: ${target.error}`);
    return 2;
  }
  let ca: string | undefined;
  if (caFile !== undefined) {
    try {
      ca = await Deno.readTextFile(caFile);
    } catch (err) {
      console.error(`dotproxy: --ca-file ${caFile}: cannot read: ${errText(err)}`);
      return 2;
    }
  }
  try {
    const report = await fetchPins(target, { clock: systemClock, ca });
    console.log(formatPinReport(report).trimEnd());
    return 0;
  } catch (err) {
    console.error(`dotproxy: --print-pins: ${errText(err)}`);
    return 1;
  }
}

/** The query log the config asks for, or null when it is off. */
function openConfiguredQueryLog(config: Config): Promise<QueryLog> | null {
  const q = config.queryLog;
  if (!q.enabled) return null;
  const sink = q.sink === "file"
    ? { kind: "file" as const, path: q.path }
    : q.sink === "syslog"
    ? { kind: "syslog" as const, ...q.syslog }
    : { kind: "stdout" as const };
  return openQueryLog({ sink, format: q.format, wallClock: Date.now, clock: systemClock });
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
