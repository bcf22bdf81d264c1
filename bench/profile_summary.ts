/**
 * Summarises a V8 .cpuprofile (from `deno run --cpu-prof`): where the main (JavaScript) thread's
 * time went, by category, by file and by function (self time), plus the functions with the most
 * inclusive time. Time spent in Deno's Rust ops while called from JavaScript counts toward the
 * calling function; "(program)" is native work outside any JavaScript frame (the event loop, I/O
 * polling, async op completion); "(idle)" is the thread waiting for events.
 *
 *   deno run --allow-read=DIR bench/profile_summary.ts DIR/CPU.xxx.cpuprofile [--top N] [--root SRC]
 *
 * --root: the directory dotproxy ran from (default: this repository), to shorten file names.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const path = Deno.args[0];
if (!path) {
  console.error("usage: profile_summary.ts FILE.cpuprofile [--top N]");
  Deno.exit(2);
}
const topIndex = Deno.args.indexOf("--top");
const TOP = topIndex >= 0 ? Number(Deno.args[topIndex + 1]) : 25;

const profile: Profile = JSON.parse(await Deno.readTextFile(path));
const byId = new Map<number, ProfileNode>();
const parent = new Map<number, number>();
for (const n of profile.nodes) byId.set(n.id, n);
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const rootIndex = Deno.args.indexOf("--root");
const root = rootIndex >= 0
  ? Deno.args[rootIndex + 1].replace(/\/?$/, "/")
  : decodeURIComponent(new URL("..", import.meta.url).pathname);

function shortUrl(url: string): string {
  if (!url) return "";
  let u = url;
  try {
    if (u.startsWith("file://")) u = decodeURIComponent(new URL(u).pathname);
  } catch { /* keep as is */ }
  if (u.startsWith(root)) return u.slice(root.length);
  const npm = u.indexOf("/npm/registry.npmjs.org/");
  if (npm >= 0) return "npm:" + u.slice(npm + "/npm/registry.npmjs.org/".length);
  return u;
}

function category(frame: CallFrame): string {
  const name = frame.functionName;
  if (!frame.url) {
    if (name === "(idle)" || name === "(program)" || name === "(garbage collector)") return name;
    return "native / builtin";
  }
  const u = shortUrl(frame.url);
  if (u.startsWith("lib/") || u === "main.ts") return "dotproxy (lib/, main.ts)";
  if (u.startsWith("npm:")) return "npm packages";
  if (u.startsWith("ext:") || u.startsWith("node:")) return "Deno runtime JS (ext:)";
  return "other JS";
}

const fnKey = (f: CallFrame) =>
  `${f.functionName || "(anonymous)"}  ${shortUrl(f.url)}${f.url ? `:${f.lineNumber + 1}` : ""}`;

const self = new Map<string, number>();
const inclusive = new Map<string, number>();
const byCategory = new Map<string, number>();
const byFile = new Map<string, number>();
let total = 0;
const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);

for (let i = 0; i < profile.samples.length; i++) {
  // timeDeltas[i] is the time since the previous sample; attribute it to this sample's stack.
  const dt = profile.timeDeltas[i] ?? 0;
  const node = byId.get(profile.samples[i]);
  if (!node || dt <= 0) continue;
  total += dt;
  const f = node.callFrame;
  add(self, fnKey(f), dt);
  add(byCategory, category(f), dt);
  add(byFile, f.url ? shortUrl(f.url) : f.functionName, dt);
  const seen = new Set<string>();
  for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
    const n = byId.get(id);
    if (!n || n.callFrame.functionName === "(root)") continue;
    const k = fnKey(n.callFrame);
    if (!seen.has(k)) {
      seen.add(k);
      add(inclusive, k, dt);
    }
  }
}

const busy = total - (byCategory.get("(idle)") ?? 0);
const pct = (v: number, of = total) => `${(100 * v / of).toFixed(1).padStart(5)}%`;
const ms = (v: number) => `${(v / 1000).toFixed(0).padStart(7)} ms`;
function section(title: string, m: Map<string, number>, n: number, showBusy = true) {
  console.log(`\n${title}`);
  const entries = [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n);
  for (const [k, v] of entries) {
    const ofBusy = showBusy && !k.startsWith("(idle)")
      ? ` ${pct(v, busy)} of busy`
      : " ".repeat(14);
    console.log(`  ${ms(v)} ${pct(v)}${ofBusy}  ${k}`);
  }
}

console.log(`profile: ${path.split("/").pop()}`);
console.log(
  `sampled ${(total / 1e6).toFixed(2)} s of the main thread, ${profile.samples.length} samples; ` +
    `busy (not idle) ${(busy / 1e6).toFixed(2)} s = ${pct(busy).trim()}`,
);
section("by category (self time)", byCategory, 20);
section("by file (self time)", byFile, 20);
section(`top ${TOP} functions by self time`, self, TOP);
section(`top ${TOP} functions by inclusive time`, inclusive, TOP);
