/** Command-line and timing helpers shared by the bench scripts (soak.ts, flood.ts). */

/** Reads `--name N` (a non-negative number) from `args`, or returns the default. Exits 2 if bad. */
export function numArg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(args[i + 1]);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${name} needs a non-negative number`);
    Deno.exit(2);
  }
  return n;
}

/** Resolves after `ms` milliseconds (the bench scripts pace real traffic; tests never sleep). */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A hard stop in case anything hangs: after `seconds`, says so on stderr, runs `stopAll` and
 * exits 1. Returns the cancel function.
 */
export function startWatchdog(
  script: string,
  seconds: number,
  stopAll: () => Promise<void>,
): () => void {
  const timer = setTimeout(async () => {
    console.error(`${script}: watchdog fired, stopping everything`);
    await stopAll();
    Deno.exit(1);
  }, seconds * 1000);
  return () => clearTimeout(timer);
}
