/** An in-memory file system for hosts files (lib/route/hosts_watch.ts HostsFs). */
import type { FileVersion, HostsFs } from "../../lib/route/hosts_watch.ts";

/** Files by path; every write bumps the file's mtime, so a watcher sees the change. */
export class FakeHostsFs implements HostsFs {
  files = new Map<string, { text: string; mtimeMs: number; ino: number }>();
  reads = 0;
  #tick = 0;

  write(path: string, text: string, ino = 1): void {
    this.files.set(path, { text, mtimeMs: ++this.#tick, ino });
  }

  stat(path: string): Promise<FileVersion> {
    const f = this.files.get(path);
    if (!f) return Promise.reject(new Deno.errors.NotFound(`no such file: ${path}`));
    return Promise.resolve({ mtimeMs: f.mtimeMs, size: f.text.length, ino: f.ino });
  }

  readText(path: string): Promise<string> {
    this.reads++;
    const f = this.files.get(path);
    return f ? Promise.resolve(f.text) : Promise.reject(new Deno.errors.NotFound(path));
  }

  /** The same files as a config FileReader (what --check and start-up read). */
  readFile = (path: string): Promise<string> => {
    const f = this.files.get(path);
    return f ? Promise.resolve(f.text) : Deno.readTextFile(path);
  };
}
