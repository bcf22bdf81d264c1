import assert from "node:assert/strict";
import { nameFromString } from "../../lib/dns/wire.ts";
import {
  fileTransport,
  LineTransport,
  openQueryLog,
  QueryLogError,
} from "../../lib/metrics/log_sinks.ts";
import {
  formatQueryLogLine,
  type LogRecord,
  type LogTransport,
  QueryLog,
  type QueryLogEntry,
} from "../../lib/metrics/query_log.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

const T0 = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

function entry(over: Partial<QueryLogEntry> = {}): QueryLogEntry {
  return {
    client: "192.0.2.7",
    protocol: "udp",
    name: nameFromString("www.example.com"),
    qtype: 1,
    rcode: 0,
    upstream: "tls://1.1.1.1:853",
    route: "default",
    cacheHit: false,
    durationMs: 12.3456,
    ...over,
  };
}

/** A transport that records what it got and answers each send when the test says so. */
class ScriptedTransport implements LogTransport {
  sent: LogRecord[][] = [];
  closed = false;
  /** When set, send() waits for the test to call `release`. */
  hold = false;
  fail = false;
  #waiting: (() => void)[] = [];

  async send(records: readonly LogRecord[]): Promise<number> {
    this.sent.push([...records]);
    if (this.hold) await new Promise<void>((r) => this.#waiting.push(r));
    if (this.fail) throw new Error("sink broken");
    return records.length;
  }

  release(): void {
    this.hold = false;
    for (const w of this.#waiting.splice(0)) w();
  }

  close(): Promise<void> {
    this.closed = true;
    this.release();
    return Promise.resolve();
  }

  get lines(): string[] {
    return this.sent.flat().map((r) => r.line);
  }
}

function makeLog(t: LogTransport, clock: FakeClock, over: { maxBuffered?: number } = {}) {
  let wall = T0;
  return new QueryLog({ transport: t, clock, wallClock: () => wall++, maxBatch: 4, ...over });
}

Deno.test("a query-log line is one JSON object with the documented keys in order", () => {
  const line = formatQueryLogLine(entry(), T0);
  assert.equal(
    line,
    '{"time":"2025-01-02T03:04:05.678Z","client":"192.0.2.7","client_name":null,' +
      '"protocol":"udp","name":"www.example.com.","type":"A","rcode":"NOERROR","upstream":"tls://1.1.1.1:853",' +
      '"route":"default","cache_hit":false,"duration_ms":12.346}',
  );
});

Deno.test("a named client's name follows its address, quoted in logfmt when it has a space", () => {
  const json = JSON.parse(formatQueryLogLine(entry({ clientName: "Alice Smith" }), T0));
  assert.equal(json.client_name, "Alice Smith");
  const text = formatQueryLogLine(entry({ clientName: "Alice Smith" }), T0, "text");
  assert.match(text, / client=192\.0\.2\.7 client_name="Alice Smith" protocol=udp /);
});

Deno.test("unknown types and rcodes are written in RFC 3597 style, a cache answer has no upstream", () => {
  const parsed = JSON.parse(
    formatQueryLogLine(
      entry({ qtype: 65280, rcode: 16, upstream: null, cacheHit: true, name: "a.example." }),
      T0,
    ),
  );
  assert.equal(parsed.type, "TYPE65280");
  assert.equal(parsed.rcode, "BADVERS");
  assert.equal(parsed.upstream, null);
  assert.equal(parsed.cache_hit, true);
  assert.equal(parsed.name, "a.example.");
  assert.equal(JSON.parse(formatQueryLogLine(entry({ rcode: 99 }), T0)).rcode, "RCODE99");
});

Deno.test("names with quotes or control bytes stay valid JSON and escaped logfmt", () => {
  const name = new Uint8Array([5, 0x61, 0x22, 0x20, 0x0a, 0x62, 0]); // a" \nb.
  const parsed = JSON.parse(formatQueryLogLine(entry({ name }), T0));
  assert.equal(parsed.name, 'a"\\032\\010b.');
  const text = formatQueryLogLine(entry({ name, upstream: null, route: null }), T0, "text");
  assert.equal(
    text,
    'time=2025-01-02T03:04:05.678Z client=192.0.2.7 client_name=- protocol=udp name="a\\"\\\\032\\\\010b." ' +
      "type=A rcode=NOERROR upstream=- route=- cache_hit=false duration_ms=12.346",
  );
});

Deno.test("logging only queues: nothing is formatted or written until the clock runs the flush", async () => {
  const clock = new FakeClock();
  const t = new ScriptedTransport();
  const log = makeLog(t, clock);
  for (let i = 0; i < 10; i++) log.log(entry());
  assert.equal(t.sent.length, 0);
  assert.equal(log.queued, 10);
  clock.advance(0);
  await log.flush();
  assert.deepEqual(t.sent.map((b) => b.length), [4, 4, 2], "written in batches of maxBatch");
  assert.equal(log.written, 10);
  assert.equal(log.dropped, 0);
  assert.equal(t.sent[0][1].timeMs, T0 + 1, "each record keeps the wall-clock time it was logged");
  await log.close();
});

Deno.test("a slow sink makes the log drop and count records instead of growing or waiting", async () => {
  const clock = new FakeClock();
  const t = new ScriptedTransport();
  t.hold = true;
  const log = makeLog(t, clock, { maxBuffered: 5 });
  log.log(entry());
  clock.advance(0); // the pump takes this record and waits on the sink
  for (let i = 0; i < 8; i++) log.log(entry());
  assert.equal(log.queued, 5);
  assert.equal(log.dropped, 3);
  t.release();
  await log.flush();
  assert.equal(log.written, 6);
  assert.equal(log.dropped, 3);
  await log.close();
});

Deno.test("records a failing sink could not take are counted as dropped", async () => {
  const clock = new FakeClock();
  const t = new ScriptedTransport();
  t.fail = true;
  const log = makeLog(t, clock);
  for (let i = 0; i < 6; i++) log.log(entry());
  await log.flush();
  assert.equal(log.written, 0);
  assert.equal(log.dropped, 6);
  await log.close();
});

Deno.test("a wire-form name is copied, so the caller may reuse its buffer", async () => {
  const clock = new FakeClock();
  const t = new ScriptedTransport();
  const log = makeLog(t, clock);
  const buf = nameFromString("before.example");
  log.log(entry({ name: buf }));
  buf.set(nameFromString("after0.example"));
  await log.flush();
  assert.equal(JSON.parse(t.lines[0]).name, "before.example.");
  await log.close();
});

Deno.test("close writes what is queued, closes the sink, and drops later records", async () => {
  const clock = new FakeClock();
  const t = new ScriptedTransport();
  const log = makeLog(t, clock);
  log.log(entry());
  log.log(entry());
  await log.close();
  assert.equal(log.written, 2);
  assert.equal(t.closed, true);
  log.log(entry());
  assert.equal(log.dropped, 1);
  assert.equal(clock.pending, 0, "no timer is left behind");
});

Deno.test("close gives up on a stuck sink after its timeout and counts what was left", async () => {
  const clock = new FakeClock();
  const t = new ScriptedTransport();
  t.hold = true;
  const log = new QueryLog({
    transport: t,
    clock,
    wallClock: () => T0,
    maxBatch: 2,
    closeTimeoutMs: 500,
  });
  for (let i = 0; i < 5; i++) log.log(entry());
  const closed = log.close();
  await Promise.resolve();
  clock.advance(500);
  await closed;
  assert.equal(t.closed, true);
  // One batch of 2 was in the sink's hands when close() released it; 3 never left the queue.
  assert.equal(log.written, 2);
  assert.equal(log.dropped, 3);
});

Deno.test("lines go out in whole-line chunks no bigger than the chunk size, across short writes", async () => {
  let out = "";
  const chunkSizes: number[] = [];
  let unwritten = 0;
  const t = new LineTransport({
    // A writer that takes at most 7 bytes per call, so every chunk needs several calls.
    write(p: Uint8Array): Promise<number> {
      if (unwritten === 0) chunkSizes.push(unwritten = p.length);
      const n = Math.min(p.length, 7);
      out += new TextDecoder().decode(p.subarray(0, n));
      unwritten -= n;
      return Promise.resolve(n);
    },
  }, 20);
  const records = ["aaaaaaaa", "bbbbbbbb", "cccccccc", "d".repeat(30)].map((line) => ({
    timeMs: 0,
    line,
  }));
  assert.equal(await t.send(records), 4);
  assert.equal(out, "aaaaaaaa\nbbbbbbbb\ncccccccc\n" + "d".repeat(30) + "\n");
  // Two 9-byte lines fit in 20, the third starts a new chunk, the long line goes alone.
  assert.deepEqual(chunkSizes, [18, 9, 31]);
});

Deno.test("a line transport reports how many records were written before the writer failed", async () => {
  let calls = 0;
  const t = new LineTransport({
    write: (p) => ++calls === 1 ? Promise.resolve(p.length) : Promise.reject(new Error("EIO")),
  }, 10);
  const records = ["123456789", "123456789", "123456789"].map((line) => ({ timeMs: 0, line }));
  assert.equal(await t.send(records), 1);
});

Deno.test("the file sink appends one line per query to the file", async () => {
  const path = await Deno.makeTempFile({ dir: "/tmp", prefix: "dotproxy-qlog-" });
  try {
    await Deno.writeTextFile(path, "existing\n");
    const clock = new FakeClock();
    const log = await openQueryLog({
      sink: { kind: "file", path },
      clock,
      wallClock: () => T0,
    });
    log.log(entry());
    log.log(entry({ qtype: 28, name: "b.example." }));
    await log.close();
    // The tests may write /tmp but not read it: let cat read the file back.
    const out = await new Deno.Command("cat", { args: [path], stdout: "piped" }).output();
    const lines = new TextDecoder().decode(out.stdout).split("\n");
    assert.equal(lines[0], "existing");
    assert.equal(JSON.parse(lines[1]).name, "www.example.com.");
    assert.equal(JSON.parse(lines[2]).type, "AAAA");
    assert.equal(lines[3], "");
    assert.equal(lines.length, 4);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("a file sink that cannot be opened is a QueryLogError naming the path", async () => {
  const path = "/tmp/dotproxy-no-such-dir-" + crypto.randomUUID() + "/q.log";
  await assert.rejects(fileTransport(path), (err) => {
    assert.ok(err instanceof QueryLogError);
    assert.match(err.message, /cannot open query log file \/tmp\/dotproxy-no-such-dir-.*q\.log: /);
    return true;
  });
});
