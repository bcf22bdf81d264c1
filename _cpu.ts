import { startFakeDot } from "./tests/helpers/fake_dot.ts";
import { pin, startProxy } from "./bench/soak.ts";
const up = await startFakeDot();
const p = await startProxy(up.port);
await pin(p.pid, 0);
await Deno.writeTextFile("/tmp/udpx/qfile", Array.from({ length: 100 }, (_, i) => `hit${i}.test A`).join("\n") + "\n");
const dp = (args: string[]) => new Deno.Command("taskset", { args: ["-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", String(p.dns.port), "-d", "/tmp/udpx/qfile", ...args], stdout: "piped" }).output();
await dp(["-n", "1", "-q", "10"]);
const ticks = () => { const f = Deno.readTextFileSync(`/proc/${p.pid}/stat`).split(") ")[1].split(" "); return Number(f[11]) + Number(f[12]); };
const res: string[] = [];
for (const q of [20, 200]) {
  const t0 = ticks();
  const out = await dp(["-n", "1000", "-q", String(q), "-c", "10"]);
  const t = new TextDecoder().decode(out.stdout);
  const done = Number(t.match(/Queries completed:\s+(\d+)/)?.[1]);
  res.push(`q=${q} cpu µs/query ${((ticks() - t0) * 10000 / done).toFixed(1)} qps ${Number(t.match(/Queries per second:\s+([\d.]+)/)?.[1]).toFixed(0)} lost ${t.match(/Queries lost:\s+(\d+)/)?.[1]}`);
}
console.log(res.join(" | "));
await p.stop(); await up.close();
