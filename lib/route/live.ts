/**
 * Split DNS while the server runs: the current generation (routing.ts), rebuilt when a hosts file
 * changes (HostsWatcher, polled through the Clock) and on SIGHUP (`reload`, with the new
 * configuration's settings). Whatever goes wrong on the way — a missing file, a bad line, a hosts
 * name that clashes with a CNAME record — the running generation stays and the reason is logged
 * and returned; nothing half-built is ever served. At start-up the same problems are fatal.
 */
import type { Clock } from "../sys/clock.ts";
import { logger } from "../sys/log.ts";
import {
  denoHostsFs,
  formatHostsProblem,
  type HostsFs,
  type HostsLoad,
  HostsWatcher,
} from "./hosts_watch.ts";
import type { LocalRecord } from "./records.ts";
import {
  buildRouting,
  isRoutingProblem,
  type Routing,
  type RoutingProblem,
  type RoutingSettings,
} from "./routing.ts";

/** Where local data from hosts files comes from ([routing] hosts_files, hosts_poll). */
export interface HostsSource {
  paths: readonly string[];
  /** 0: re-read on `reload` only. */
  pollMs: number;
}

/** Collaborators of a LiveRouting. */
export interface LiveRoutingOptions {
  clock: Clock;
  /** File access for hosts files (default: the real file system). */
  fs?: HostsFs;
  /** Told each new generation made by a hosts-file change (not by `reload`, which returns it). */
  onUpdate: (routing: Routing) => void;
}

/** Split DNS could not start: every reason, one line each. */
export class RoutingStartError extends Error {
  constructor(readonly problems: string[]) {
    super(`split DNS cannot start: ${problems.join("; ")}`);
  }
}

const log = logger("route");

/** One line for a problem building a generation. */
export function formatRoutingProblem(p: RoutingProblem): string {
  switch (p.where) {
    case "routes":
      return `routes[${p.error.route}].${p.error.field} = ${JSON.stringify(p.error.value)}: ` +
        p.error.message;
    case "records":
      return `records[${p.index}].${p.error.field} = ${JSON.stringify(p.error.value)}: ` +
        p.error.message;
    case "hosts":
      return `hosts files: ${p.message}`;
    case "rebinding":
      return `routing.rebinding_allow ${JSON.stringify(p.error.value)}: ${p.error.message}`;
  }
}

/** The running split-DNS generation; see the module comment. */
export class LiveRouting {
  #settings: RoutingSettings;
  #records: LocalRecord[];
  #current: Routing;
  #watcher: HostsWatcher | null;
  readonly #opts: LiveRoutingOptions;
  /** Bumped by every new generation (for logs and tests). */
  generation = 1;

  private constructor(
    settings: RoutingSettings,
    records: LocalRecord[],
    current: Routing,
    watcher: HostsWatcher | null,
    opts: LiveRoutingOptions,
  ) {
    this.#settings = settings;
    this.#records = records;
    this.#current = current;
    this.#watcher = watcher;
    this.#opts = opts;
  }

  /** Reads the hosts files and builds the first generation; throws RoutingStartError. */
  static async start(
    settings: RoutingSettings,
    hosts: HostsSource,
    opts: LiveRoutingOptions,
  ): Promise<LiveRouting> {
    let watcher: HostsWatcher | null = null;
    let records: LocalRecord[] = [];
    let live: LiveRouting | null = null;
    if (hosts.paths.length > 0) {
      watcher = LiveRouting.#watch(hosts, opts, () => live);
      const load = await watcher.load();
      if (load.errors.length > 0) throw new RoutingStartError(load.errors.map(formatHostsProblem));
      warn(load);
      records = load.records;
    }
    const built = buildRouting(settings, records);
    if (isRoutingProblem(built)) throw new RoutingStartError([formatRoutingProblem(built)]);
    live = new LiveRouting(settings, records, built, watcher, opts);
    watcher?.start();
    return live;
  }

  /** The generation in use. */
  get current(): Routing {
    return this.#current;
  }

  /**
   * Applies new settings and re-reads the hosts files (SIGHUP). Returns the problems (each one
   * line) for which the running generation, or the running hosts data, was kept.
   */
  async reload(settings: RoutingSettings, hosts: HostsSource): Promise<string[]> {
    const problems: string[] = [];
    this.#watcher?.stop();
    this.#watcher = null;
    let records = this.#records;
    if (hosts.paths.length > 0) {
      this.#watcher = LiveRouting.#watch(hosts, this.#opts, () => this);
      const load = await this.#watcher.load();
      if (load.errors.length > 0) {
        for (const e of load.errors) {
          problems.push(`${formatHostsProblem(e)} (running hosts data kept)`);
        }
      } else {
        warn(load);
        records = load.records;
      }
    } else {
      records = [];
    }
    const built = buildRouting(settings, records);
    if (isRoutingProblem(built)) {
      problems.push(`${formatRoutingProblem(built)} (running routes kept)`);
    } else {
      this.#settings = settings;
      this.#records = records;
      this.#use(built);
    }
    this.#watcher?.start();
    return problems;
  }

  /** Stops watching hosts files. */
  stop(): void {
    this.#watcher?.stop();
    this.#watcher = null;
  }

  #use(routing: Routing): void {
    this.#current = routing;
    this.generation++;
  }

  /** A hosts file changed and read cleanly: rebuild with the running settings. */
  #hostsChanged(load: HostsLoad): void {
    warn(load);
    const built = buildRouting(this.#settings, load.records);
    if (isRoutingProblem(built)) {
      log.error("hosts files changed but cannot be used, keeping the running data: {reason}", {
        reason: formatRoutingProblem(built),
      });
      return;
    }
    this.#records = load.records;
    this.#use(built);
    log.info("hosts files reloaded: {n} records", { n: load.records.length });
    this.#opts.onUpdate(built);
  }

  static #watch(
    hosts: HostsSource,
    opts: LiveRoutingOptions,
    live: () => LiveRouting | null,
  ): HostsWatcher {
    return new HostsWatcher({
      paths: hosts.paths,
      fs: opts.fs ?? denoHostsFs,
      clock: opts.clock,
      pollMs: hosts.pollMs,
      onChange: (load) => {
        const l = live();
        if (l) l.#hostsChanged(load);
      },
      onError: (load) => {
        for (const e of load.errors) {
          log.error("hosts file problem, keeping the running data: {reason}", {
            reason: formatHostsProblem(e),
          });
        }
      },
    });
  }
}

function warn(load: HostsLoad): void {
  for (const w of load.warnings) log.warn("{warning}", { warning: formatHostsProblem(w) });
}
