/**
 * dotproxy command line: parse flags, load and validate the config, start the server, and stop it
 * gracefully on SIGINT/SIGTERM. Exit codes: 0 normal, 1 runtime failure (e.g. port in use),
 * 2 usage or configuration error.
 */
import { parseArgs } from "node:util";
import denoJson from "./deno.json" with { type: "json" };
import { formatConfigError, isConfigError, loadConfig } from "./lib/config/load.ts";
import { LOG_LEVELS } from "./lib/config/schema.ts";
import { BindError, startServer } from "./lib/server.ts";
import { systemClock } from "./lib/sys/clock.ts";
import { errText } from "./lib/sys/errors.ts";
import { logger, setupLogging, teardownLogging } from "./lib/sys/log.ts";
import { cryptoRandom } from "./lib/sys/random.ts";

const USAGE =
  `dotproxy ${denoJson.version} — a DNS proxy: plain DNS in (UDP, TCP), DNS-over-TLS out.

Usage: dotproxy [--config PATH] [--check] [--log-level LEVEL]

Options:
  -c, --config PATH      configuration file (default: ./config.toml)
      --check            validate the configuration and exit (0 valid, 2 invalid)
      --log-level LEVEL  override [log] level: ${LOG_LEVELS.join(" | ")}
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
  if (flags.check) {
    console.log(`${flags.config}: configuration is valid`);
    return 0;
  }
  if (level) config.log.level = level as typeof config.log.level;
  await setupLogging(config.log.level, config.log.format);
  const log = logger("main");

  let server;
  try {
    server = startServer(config, { clock: systemClock, random: cryptoRandom() });
  } catch (err) {
    if (!(err instanceof BindError)) throw err;
    log.error("{message}", { message: err.message });
    await teardownLogging();
    console.error(`dotproxy: ${err.message}`);
    return 1;
  }
  log.info("dotproxy {version} started with {upstreams} upstream(s)", {
    version: denoJson.version,
    upstreams: config.upstreams.length,
  });

  const stopped = new Promise<string>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      try {
        Deno.addSignalListener(signal, () => resolve(signal));
      } catch { /* SIGTERM is not available on Windows */ }
    }
  });
  const signal = await stopped;
  log.info("{signal} received, shutting down", { signal });
  await server.stop();
  log.info("stopped");
  await teardownLogging();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
