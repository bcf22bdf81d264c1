/**
 * Prototype, not shipped (issue #15, "how far one process can go on more cores"): N Workers, each
 * with its own `Deno.listen({ reusePort: true })` TCP socket on the same port, its own pipeline,
 * response cache and DoT upstream pool — dotproxy's real code, minus config and metrics. The
 * kernel spreads new connections over the Workers' sockets (SO_REUSEPORT). Measured by
 * `BENCH_SERVERS="workers1 workers2" BENCH_WORKLOADS="tcp-hits tcp-misses" bash bench/run.sh`.
 *
 *   deno run --allow-net --allow-read=CA bench/workers_proto.ts --port P --workers N \
 *     --upstream 127.0.0.1:UP --tls-name dns.test --ca CA
 *
 * Design notes (BENCHMARKS.md, "A Worker per core"): each Worker has its own cache (a name cached
 * by one Worker is a miss in the other), its own upstream connections and its own limits; UDP
 * cannot be spread this way (Deno.listenDatagram has no reusePort), so UDP would stay on one
 * Worker, or use the FFI recvmmsg path of DESIGN.md.
 */
import { ResponseCache } from "../lib/cache/cache.ts";
import { Pipeline } from "../lib/pipeline/pipeline.ts";
import { StreamListener } from "../lib/listen/stream.ts";
import { QueryGuard } from "../lib/listen/guard.ts";
import { systemClock } from "../lib/sys/clock.ts";
import { cryptoRandom } from "../lib/sys/random.ts";
import { dialTls } from "../lib/upstream/dial.ts";
import { StreamUpstream } from "../lib/upstream/stream_upstream.ts";

interface Args {
  port: number;
  workers: number;
  upstream: string;
  tlsName: string;
  ca: string;
}

function parse(argv: string[]): Args {
  const get = (flag: string, fallback?: string) => {
    const i = argv.indexOf(flag);
    const v = i >= 0 ? argv[i + 1] : fallback;
    if (v === undefined) throw new Error(`missing ${flag}`);
    return v;
  };
  return {
    port: Number(get("--port")),
    workers: Number(get("--workers", "2")),
    upstream: get("--upstream"),
    tlsName: get("--tls-name", "dns.test"),
    ca: get("--ca"),
  };
}

/** One Worker: the stream listener → pipeline (cache) → DoT upstream, as lib/server.ts wires it. */
async function serve(args: Args, index: number): Promise<void> {
  const clock = systemClock;
  const [host, port] = args.upstream.split(":");
  const upstream = new StreamUpstream({
    name: `tls://${args.upstream}`,
    target: {
      hostname: host,
      port: Number(port),
      tlsName: args.tlsName,
      caCerts: [await Deno.readTextFile(args.ca)],
    },
    clock,
    random: cryptoRandom(),
    connectTimeoutMs: 5000,
    idleTimeoutMs: 8000,
    maxConnections: 4,
    maxInFlightPerConnection: 1000,
    failureBackoffMs: 1000,
    maxFailureBackoffMs: 60_000,
    probeTimeoutMs: 2000,
    dial: dialTls,
    edns: { udpSize: 1232, pad: true, keepEcs: false },
  });
  const pipeline = new Pipeline({
    upstream,
    clock,
    queryTimeoutMs: 5000,
    udpMaxSize: 1232,
    maxInFlight: 10_000,
    overload: "refuse",
    cache: new ResponseCache({ clock }),
  });
  const listener = Deno.listen({
    transport: "tcp",
    hostname: "127.0.0.1",
    port: args.port,
    reusePort: true,
  });
  new StreamListener(listener, {
    url: `tcp://127.0.0.1:${args.port}`,
    transport: "tcp",
    handle: new QueryGuard({ clock }).wrap((q) => pipeline.handle(q)),
    clock,
    limits: {
      idleTimeoutMs: 10_000,
      readTimeoutMs: 5000,
      maxConnections: 1000,
      maxConnectionsPerClient: 1000,
      maxPipelined: 1000,
    },
  });
  console.log(`worker ${index} listening on 127.0.0.1:${args.port}`);
}

const self = globalThis as unknown as { onmessage: ((e: MessageEvent) => void) | null };
if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined") {
  self.onmessage = (e: MessageEvent) => {
    const { args, index } = e.data as { args: Args; index: number };
    serve(args, index).catch((err) => {
      console.error(`worker ${index}:`, err);
      Deno.exit(1);
    });
  };
} else {
  const args = parse(Deno.args);
  for (let i = 0; i < args.workers; i++) {
    const w = new Worker(import.meta.url, { type: "module" });
    w.postMessage({ args, index: i });
  }
}
