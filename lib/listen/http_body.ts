/**
 * Reading DoH request bodies with bounds on size and time, and settling every body before its
 * request is answered.
 *
 * Why settle: over HTTP/2, a response sent while the client is still uploading makes the server
 * end the stream with RST_STREAM(NO_ERROR) (RFC 9113 §8.1), and common clients (curl 7.88 with
 * nghttp2 1.52, for one) then report a stream error instead of the status: a 415, 405 or 413
 * was lost about half the time. Reading the rest of the body (discarding it, up to a bound)
 * before answering lets the upload finish, so the status arrives. A body beyond the bound is
 * cancelled: that client may see a reset, the others are unaffected.
 */
import type { Clock } from "../sys/clock.ts";
import { errText } from "../sys/errors.ts";

/**
 * The most a request body may carry, in total, for the server to read it to its end before
 * answering; beyond this it is cancelled. 256 KiB, as Go's net/http reads after a handler
 * (maxPostHandlerReadBytes). Read bytes past the message limit are discarded, not kept.
 */
export const MAX_DRAINED_BODY = 256 * 1024;

/** The outcome of reading a body: the bytes, or why there are none. */
export type BodyResult =
  | { kind: "ok"; bytes: Uint8Array }
  | { kind: "too-large" }
  | { kind: "timeout" }
  | { kind: "error"; message: string };

/** Size and time bounds for one body. */
export interface BodyLimits {
  /** Bytes kept; a longer body is "too-large" (and the rest is drained or cancelled). */
  maxBytes: number;
  /** The body must have arrived (or been drained) this long after reading started. */
  timeoutMs: number;
  clock: Clock;
}

/**
 * Reads `body` whole, keeping at most `maxBytes`. Whatever the outcome, the body is settled when
 * this resolves: read to its end, or cancelled (too slow, or longer than MAX_DRAINED_BODY).
 */
export async function readBody(
  body: ReadableStream<Uint8Array>,
  limits: BodyLimits,
): Promise<BodyResult> {
  const reader = body.getReader();
  let timedOut = false;
  const cancelTimer = limits.clock.schedule(limits.timeoutMs, () => {
    timedOut = true;
    reader.cancel().catch(() => {});
  });
  const chunks: Uint8Array[] = [];
  let kept = 0;
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > MAX_DRAINED_BODY) {
        await reader.cancel().catch(() => {});
        break;
      }
      if (total <= limits.maxBytes) {
        chunks.push(value);
        kept = total;
      }
    }
  } catch (err) {
    if (!timedOut) return { kind: "error", message: errText(err) };
  } finally {
    cancelTimer();
  }
  if (timedOut) return { kind: "timeout" };
  if (total > limits.maxBytes) return { kind: "too-large" };
  const bytes = new Uint8Array(kept);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return { kind: "ok", bytes };
}

/**
 * Reads and discards what is left of a request body the answer does not need, so the client's
 * upload completes before the answer goes out (see the module comment). Bounded like
 * `readBody`; a body declared longer than MAX_DRAINED_BODY is cancelled without reading.
 */
export async function discardBody(req: Request, limits: BodyLimits): Promise<void> {
  if (req.body === null || req.bodyUsed || req.body.locked) return;
  const declared = Number(req.headers.get("content-length") ?? 0);
  if (declared > MAX_DRAINED_BODY) {
    await req.body.cancel().catch(() => {});
    return;
  }
  await readBody(req.body, { ...limits, maxBytes: 0 });
}
