/**
 * Keeps hosts files loaded: reads them all at start-up (every problem reported as file:line),
 * re-reads them on SIGHUP (`reload`) and when one changes (polled through the injected Clock:
 * its modification time, size or inode differ from the last read). A reload that finds a missing
 * file or a bad line keeps the running data and reports why; nothing half-read is ever served.
 *
 * File access comes in through `HostsFs`, so tests drive it with a fake file system and clock.
 */
import type { Cancel, Clock } from "../sys/clock.ts";
import { type HostsProblem, parseHosts } from "./hosts.ts";
import type { LocalRecord } from "./records.ts";

/** How often files are checked for changes when not told otherwise. */
export const DEFAULT_HOSTS_POLL_MS = 5_000;
/** Largest hosts file read (a big blocklist is ~10 MB); larger is an error, not an OOM. */
export const DEFAULT_HOSTS_MAX_BYTES = 32 * 1024 * 1024;

/** What identifies a version of a file: any change means re-read. */
export interface FileVersion {
  mtimeMs: number | null;
  size: number;
  ino: number | null;
}

/** The file access the watcher needs; rejects (e.g. NotFound) on failure. */
export interface HostsFs {
  stat(path: string): Promise<FileVersion>;
  readText(path: string): Promise<string>;
}

/** The real file system through Deno (needs read permission for the files). */
export const denoHostsFs: HostsFs = {
  async stat(path) {
    const s = await Deno.stat(path);
    return { mtimeMs: s.mtime?.getTime() ?? null, size: s.size, ino: s.ino };
  },
  readText: (path) => Deno.readTextFile(path),
};

/** A problem with a file: `line` 0 when it concerns the whole file (missing, too large). */
export interface HostsFileProblem extends HostsProblem {
  file: string;
}

/** The outcome of reading every file. */
export interface HostsLoad {
  /** All files' records, in file order; empty when there are errors. */
  records: LocalRecord[];
  errors: HostsFileProblem[];
  warnings: HostsFileProblem[];
}

/** Collaborators and settings of a watcher. */
export interface HostsWatchOptions {
  paths: readonly string[];
  fs: HostsFs;
  clock: Clock;
  /** Time between change checks; 0 disables polling (SIGHUP only). */
  pollMs?: number;
  maxBytes?: number;
  ttl?: number;
  /** Called with the new records after a reload or change that read cleanly. */
  onChange?: (load: HostsLoad) => void;
  /** Called when a reload or change could not be applied; the old data stays. */
  onError?: (load: HostsLoad) => void;
}

/** Loads and watches a set of hosts files; see the module comment. */
export class HostsWatcher {
  readonly #opts: HostsWatchOptions;
  #versions = new Map<string, FileVersion>();
  #timer: Cancel | null = null;
  #stopped = true;
  /** The check or reload in progress, so they never overlap. */
  #busy: Promise<unknown> = Promise.resolve();

  constructor(opts: HostsWatchOptions) {
    this.#opts = opts;
  }

  /**
   * Reads every file now. Start-up and `--check` call this and refuse to start on errors; the
   * versions read become the baseline for change detection.
   */
  load(): Promise<HostsLoad> {
    return this.#serial(() => this.#readAll());
  }

  /** Re-reads every file (SIGHUP): onChange on success, onError (old data kept) otherwise. */
  reload(): Promise<HostsLoad> {
    return this.#serial(async () => {
      const load = await this.#readAll();
      this.#report(load);
      return load;
    });
  }

  /**
   * Re-reads the files if any changed since the last read; true when it did. Errors reading a
   * stat count as a change (a file removed), so they are reported once and then again only
   * after the next change.
   */
  check(): Promise<boolean> {
    return this.#serial(async () => {
      let changed = false;
      for (const path of this.#opts.paths) {
        const now = await this.#opts.fs.stat(path).catch(() => null);
        const then = this.#versions.get(path) ?? null;
        if (!sameVersion(now, then)) changed = true;
      }
      if (!changed) return false;
      this.#report(await this.#readAll());
      return true;
    });
  }

  /** Starts polling for changes (after `load`); a no-op when pollMs is 0. */
  start(): void {
    this.#stopped = false;
    this.#schedule();
  }

  /** Stops polling; a check already running finishes. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.();
    this.#timer = null;
  }

  #schedule(): void {
    const ms = this.#opts.pollMs ?? DEFAULT_HOSTS_POLL_MS;
    if (this.#stopped || ms <= 0 || this.#opts.paths.length === 0) return;
    this.#timer = this.#opts.clock.schedule(ms, () => {
      this.#timer = null;
      // The next check is scheduled when this one ends: one timer, no overlap.
      this.check().catch(() => {}).finally(() => this.#schedule());
    });
  }

  #report(load: HostsLoad): void {
    if (load.errors.length > 0) this.#opts.onError?.(load);
    else this.#opts.onChange?.(load);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#busy.then(fn, fn);
    this.#busy = run.catch(() => {});
    return run;
  }

  async #readAll(): Promise<HostsLoad> {
    const load: HostsLoad = { records: [], errors: [], warnings: [] };
    const versions = new Map<string, FileVersion>();
    const max = this.#opts.maxBytes ?? DEFAULT_HOSTS_MAX_BYTES;
    for (const file of this.#opts.paths) {
      try {
        // Stat before reading: a change during the read is seen at the next check.
        const version = await this.#opts.fs.stat(file);
        versions.set(file, version);
        if (version.size > max) {
          load.errors.push({
            file,
            line: 0,
            message: `${version.size} bytes is more than the limit of ${max}`,
          });
          continue;
        }
        const parsed = parseHosts(await this.#opts.fs.readText(file), this.#opts.ttl);
        for (const e of parsed.errors) load.errors.push({ file, ...e });
        for (const w of parsed.warnings) load.warnings.push({ file, ...w });
        for (const r of parsed.records) load.records.push(r);
      } catch (e) {
        load.errors.push({ file, line: 0, message: `cannot read: ${(e as Error).message}` });
      }
    }
    this.#versions = versions;
    if (load.errors.length > 0) load.records = [];
    return load;
  }
}

function sameVersion(a: FileVersion | null, b: FileVersion | null): boolean {
  if (a === null || b === null) return a === b;
  return a.mtimeMs === b.mtimeMs && a.size === b.size && a.ino === b.ino;
}

/** `file:line: message` (or `file: message` for whole-file problems), for logs and --check. */
export function formatHostsProblem(p: HostsFileProblem): string {
  return p.line > 0 ? `${p.file}:${p.line}: ${p.message}` : `${p.file}: ${p.message}`;
}
