/**
 * `dotproxy --probe URL`: fetch a URL and exit 0 on a 2xx answer, 1 otherwise. Minimal images
 * (distroless) have no curl or wget, so the binary itself is the container HEALTHCHECK command:
 * `dotproxy --probe http://127.0.0.1:9153/healthz`.
 */
import { type Clock, systemClock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";

/** Probe limits and where to say why it failed. */
export interface ProbeOptions {
  /** Give up (exit 1) after this long. Default 3000 ms. */
  timeoutMs?: number;
  clock?: Clock;
  /** Receives one line describing a failure (main passes console.error). */
  report?: (line: string) => void;
}

/** Fetches `url` (http or https) and resolves to the exit code: 0 for 2xx, 1 for anything else. */
export async function probe(url: string, opts: ProbeOptions = {}): Promise<number> {
  const { timeoutMs = 3000, clock = systemClock, report = () => {} } = opts;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    report(`probe: ${JSON.stringify(url)} is not a URL`);
    return 1;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    report(`probe: ${url}: only http:// and https:// URLs can be probed`);
    return 1;
  }
  const abort = new AbortController();
  let timedOut = false;
  const cancel = clock.schedule(timeoutMs, () => {
    timedOut = true;
    abort.abort();
  });
  try {
    const res = await fetch(parsed, { signal: abort.signal, redirect: "manual" });
    await res.body?.cancel();
    if (res.status >= 200 && res.status < 300) return 0;
    report(`probe: ${url}: HTTP ${res.status}`);
    return 1;
  } catch (err) {
    report(`probe: ${url}: ${timedOut ? `no answer within ${timeoutMs} ms` : errText(err)}`);
    return 1;
  } finally {
    cancel();
  }
}
