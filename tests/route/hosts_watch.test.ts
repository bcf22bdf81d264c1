import assert from "node:assert/strict";
import { nameToString } from "../../lib/dns/wire.ts";
import {
  DEFAULT_HOSTS_POLL_MS,
  formatHostsProblem,
  type HostsLoad,
  HostsWatcher,
} from "../../lib/route/hosts_watch.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { FakeHostsFs as FakeFs } from "../helpers/fake_hosts_fs.ts";

function names(load: HostsLoad): string[] {
  return load.records.filter((r) => r.type !== 12).map((r) => nameToString(r.owner));
}

/** Lets promise callbacks run (the fake fs resolves at once). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

function setup(pollMs?: number) {
  const fs = new FakeFs();
  const clock = new FakeClock();
  const changes: HostsLoad[] = [];
  const failures: HostsLoad[] = [];
  const w = new HostsWatcher({
    paths: ["/etc/hosts", "/etc/hosts.lan"],
    fs,
    clock,
    pollMs,
    onChange: (l) => changes.push(l),
    onError: (l) => failures.push(l),
  });
  return { fs, clock, w, changes, failures };
}

Deno.test("load reads every file, in order, and reports bad lines as file:line", async () => {
  const { fs, w } = setup();
  fs.write("/etc/hosts", "127.0.0.1 localhost\n");
  fs.write("/etc/hosts.lan", "192.168.1.10 nas.lan\nbogus line\n");
  const bad = await w.load();
  assert.deepEqual(bad.records, [], "no records are served from a set with errors");
  assert.deepEqual(bad.errors.map(formatHostsProblem), [
    '/etc/hosts.lan:2: "bogus" is not an IPv4 or IPv6 address',
  ]);
  fs.write("/etc/hosts.lan", "192.168.1.10 nas.lan\n");
  const good = await w.load();
  assert.deepEqual(good.errors, []);
  assert.deepEqual(names(good), ["localhost.", "nas.lan."]);
});

Deno.test("a missing or oversized file is an error naming the file", async () => {
  const { fs, clock } = setup();
  fs.write("/etc/hosts", "x".repeat(100));
  const w = new HostsWatcher({ paths: ["/etc/hosts", "/nope"], fs, clock, maxBytes: 50 });
  const load = await w.load();
  assert.deepEqual(load.errors.map(formatHostsProblem), [
    "/etc/hosts: 100 bytes is more than the limit of 50",
    "/nope: cannot read: no such file: /nope",
  ]);
  assert.equal(fs.reads, 0, "an oversized file is not read");
});

Deno.test("a changed file is re-read at the next poll; an unchanged one is not", async () => {
  const { fs, clock, w, changes } = setup();
  fs.write("/etc/hosts", "10.0.0.1 a.lan\n");
  fs.write("/etc/hosts.lan", "10.0.0.2 b.lan\n");
  await w.load();
  const readsAfterLoad = fs.reads;
  w.start();
  clock.advance(DEFAULT_HOSTS_POLL_MS);
  await settle();
  assert.equal(fs.reads, readsAfterLoad, "nothing changed: nothing read");
  assert.equal(changes.length, 0);
  fs.write("/etc/hosts.lan", "10.0.0.3 c.lan\n");
  clock.advance(DEFAULT_HOSTS_POLL_MS);
  await settle();
  assert.equal(changes.length, 1);
  assert.deepEqual(names(changes[0]), ["a.lan.", "c.lan."]);
  // A file replaced by rename (same mtime and size, another inode) is seen too.
  const f = fs.files.get("/etc/hosts")!;
  fs.files.set("/etc/hosts", { ...f, text: "10.0.0.9 z.lan\n", ino: 2 });
  clock.advance(DEFAULT_HOSTS_POLL_MS);
  await settle();
  assert.equal(changes.length, 2);
  assert.deepEqual(names(changes[1]), ["z.lan.", "c.lan."]);
  w.stop();
  assert.equal(clock.pending, 0, "stop leaves no timer behind");
});

Deno.test("a bad change keeps the old data, is reported once, and a fix applies", async () => {
  const { fs, clock, w, changes, failures } = setup();
  fs.write("/etc/hosts", "10.0.0.1 a.lan\n");
  fs.write("/etc/hosts.lan", "10.0.0.2 b.lan\n");
  await w.load();
  w.start();
  fs.write("/etc/hosts.lan", "10.0.0.300 broken.lan\n");
  clock.advance(DEFAULT_HOSTS_POLL_MS);
  await settle();
  assert.equal(failures.length, 1);
  assert.equal(changes.length, 0, "onChange not called: the running data stays");
  assert.equal(failures[0].errors[0].file, "/etc/hosts.lan");
  clock.advance(DEFAULT_HOSTS_POLL_MS);
  await settle();
  assert.equal(failures.length, 1, "an unchanged bad file is not reported again");
  fs.files.delete("/etc/hosts.lan");
  clock.advance(DEFAULT_HOSTS_POLL_MS);
  await settle();
  assert.equal(failures.length, 2, "a removed file is a change, reported");
  fs.write("/etc/hosts.lan", "10.0.0.4 d.lan\n");
  clock.advance(DEFAULT_HOSTS_POLL_MS);
  await settle();
  assert.equal(changes.length, 1);
  assert.deepEqual(names(changes[0]), ["a.lan.", "d.lan."]);
  w.stop();
});

Deno.test("reload re-reads unconditionally; polling off means no timer", async () => {
  const { fs, clock, w, changes } = setup(0);
  fs.write("/etc/hosts", "10.0.0.1 a.lan\n");
  fs.write("/etc/hosts.lan", "");
  await w.load();
  w.start();
  assert.equal(clock.pending, 0);
  const load = await w.reload();
  assert.deepEqual(names(load), ["a.lan."]);
  assert.equal(changes.length, 1);
  w.stop();
});
