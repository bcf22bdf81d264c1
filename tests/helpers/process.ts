/**
 * Runs the real CLI (`deno run … main.ts`) as a child process, with the same narrow permissions
 * the README gives operators, for tests of exit codes, messages, signals and real-tool interop.
 */
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;

/** The permission flags the README documents for running dotproxy. */
export function runFlags(readPaths: string[]): string[] {
  return [
    "run",
    "--allow-net",
    `--allow-read=${[ROOT, ...readPaths].join(",")}`,
    "--allow-sys=networkInterfaces",
    MAIN,
  ];
}

function cliCommand(args: string[], readPaths: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [...runFlags(readPaths), ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

/** A UDP port that was free a moment ago on 127.0.0.1. */
export function freeUdpPort(): number {
  const s = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (s.addr as Deno.NetAddr).port;
  s.close();
  return port;
}

/** Runs the CLI to completion and returns exit code and output. */
export async function runCli(
  args: string[],
  readPaths: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await cliCommand(args, readPaths).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A CLI process that keeps running; its output is collected as it comes. */
export interface RunningProxy {
  child: Deno.ChildProcess;
  output(): string;
  /** Resolves when a line matching `pattern` has been printed (rejects if the process exits). */
  waitFor(pattern: RegExp): Promise<void>;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/** Starts the CLI with `args`, collecting stdout and stderr together. */
export function spawnCli(args: string[], readPaths: string[] = []): RunningProxy {
  const child = cliCommand(args, readPaths).spawn();
  let text = "";
  let waiters: { pattern: RegExp; resolve: () => void; reject: (e: Error) => void }[] = [];
  const check = () => {
    waiters = waiters.filter((w) => {
      if (!w.pattern.test(text)) return true;
      w.resolve();
      return false;
    });
  };
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      text += dec.decode(chunk, { stream: true });
      check();
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const exited = child.status.then(async (s) => {
    await pumps;
    for (const w of waiters) w.reject(new Error(`process exited (${s.code}):\n${text}`));
    waiters = [];
    return s.code;
  });
  return {
    child,
    output: () => text,
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve, reject });
        check();
      });
    },
    async stop(signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
      return await exited;
    },
  };
}
