/**
 * The one gate for tests that need an external tool (unbound, dig, kdig, curl, nslookup,
 * openssl, ...): {@link toolTest}. Where a tool is missing the test is ignored, except with
 * env CI=true: CI installs every tool, so there a missing tool fails the test, and `.ci/run`
 * fails the run if any test was ignored at all.
 */
import { fixturePath } from "./fixtures.ts";

/** Absolute path of the tool if it is on PATH (or in /usr/sbin, /sbin), else null. */
export async function findTool(name: string): Promise<string | null> {
  if (!/^[A-Za-z0-9._+-]+$/.test(name)) throw new Error(`bad tool name: ${name}`);
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", 'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1"', "sh", name],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const path = new TextDecoder().decode(out.stdout).trim();
    return out.success && path.startsWith("/") ? path : null;
  } catch {
    return null;
  }
}

/** Runs a tool to completion (no stdin); its stdout then stderr as text, whatever its exit code. */
export async function runTool(bin: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(bin, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return dec.decode(out.stdout) + dec.decode(out.stderr);
}

/**
 * The arguments that point dig or kdig at 127.0.0.1:`port` for one try of at most 5 s, and with
 * `caFile` verify the server as `dns.test` (the test certificate) over TLS. Transport flags
 * (`+tcp`, `+https=…`) go before them, the question after.
 */
export function digArgs(tool: "dig" | "kdig", port: number, caFile?: string): string[] {
  return [
    "@127.0.0.1",
    "-p",
    String(port),
    "+time=5",
    tool === "kdig" ? "+retry=0" : "+tries=1",
    ...(caFile ? [`+tls-ca=${caFile}`, "+tls-hostname=dns.test"] : []),
  ];
}

/**
 * kdig over TLS to 127.0.0.1:`port` for `question` (e.g. ["a.test"]), verifying the test
 * certificate and presenting client certificate fixture `cert` (`cert`.pem with `cert`-key.pem)
 * when given: kdig's output.
 */
export function kdigTls(
  bin: string,
  port: number,
  question: string[],
  cert?: string,
): Promise<string> {
  const clientCert = cert
    ? [
      `+tls-certfile=${fixturePath(`${cert}.pem`)}`,
      `+tls-keyfile=${fixturePath(`${cert}-key.pem`)}`,
    ]
    : [];
  return runTool(bin, [
    ...digArgs("kdig", port, fixturePath("ca.pem")),
    ...clientCert,
    ...question,
  ]);
}

/** Whether env CI is "true": then a missing tool fails a test instead of skipping it. */
export function inCi(): boolean {
  return Deno.env.get("CI") === "true";
}

/** What {@link toolGate} found for a test's tools. */
export interface ToolGate<T extends string> {
  /** Absolute path of each tool found. */
  bins: Partial<Record<T, string>>;
  /** The tools not installed. */
  missing: T[];
  /** Ignore the test: a tool is missing and this is not CI. */
  ignore: boolean;
}

/** Looks the tools up and decides, from env CI, whether a test needing them is ignored. */
export async function toolGate<T extends string>(tools: readonly T[]): Promise<ToolGate<T>> {
  const bins: Partial<Record<T, string>> = {};
  const missing: T[] = [];
  for (const tool of tools) {
    const bin = await findTool(tool);
    if (bin) bins[tool] = bin;
    else missing.push(tool);
  }
  return { bins, missing, ignore: missing.length > 0 && !inCi() };
}

/** A Deno test definition that names the tools it needs; `fn` gets each tool's absolute path. */
export interface ToolTestDefinition<T extends string>
  extends Omit<Deno.TestDefinition, "fn" | "ignore"> {
  tools: readonly T[];
  fn: (bin: Record<T, string>, t: Deno.TestContext) => void | Promise<void>;
}

/**
 * Registers a test that needs `def.tools`. Missing a tool, the test is ignored, or under CI=true
 * runs and fails naming what is missing. Await it at the top level of the test module (the tools
 * are looked up before the test is registered):
 *
 *   await toolTest({ name: "dig gets answers", tools: ["dig"], async fn({ dig }) { ... } });
 */
export async function toolTest<T extends string>(def: ToolTestDefinition<T>): Promise<void> {
  const { tools, fn, ...rest } = def;
  const gate = await toolGate(tools);
  Deno.test({ ...rest, ignore: gate.ignore, fn: gatedBody(gate, fn) });
}

/** The body toolTest registers: fails naming the missing tools, else runs `fn` with their paths. */
export function gatedBody<T extends string>(
  gate: ToolGate<T>,
  fn: ToolTestDefinition<T>["fn"],
): (t: Deno.TestContext) => Promise<void> {
  return async (t) => {
    if (gate.missing.length > 0) {
      throw new Error(
        `required tools not installed: ${gate.missing.join(", ")} (CI=true: failing, not skipping)`,
      );
    }
    await fn(gate.bins as Record<T, string>, t);
  };
}
