/** Answered exchanges for fake upstreams, decoded as every real upstream decodes its replies. */
import { decodeMessage } from "../../lib/dns/message.ts";
import type { Exchange } from "../../lib/upstream/upstream.ts";

/** `reply` as an answered Exchange from `upstream`; throws if it does not decode (a test bug). */
export function answered(reply: Uint8Array, upstream: string): Exchange {
  const decoded = decodeMessage(reply);
  if (!decoded.ok) throw new Error(`fake reply does not decode: ${decoded.error.message}`);
  return { ok: true, reply, msg: decoded.value, upstream };
}
