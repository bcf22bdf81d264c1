/**
 * RFC 8914 Extended DNS Errors: an EDNS option (code 15) telling the client why it got the
 * answer it got — a stale answer, an unreachable upstream, a policy refusal. The codes dotproxy
 * uses are declared here once (IANA "Extended DNS Error Codes"); the pipeline picks them, this
 * module builds the option, metrics label their counters from the same table.
 */
import type { EdnsOption } from "./message.ts";

/** The EDNS option code of an Extended DNS Error (RFC 8914 §2). */
export const EDE_OPTION_CODE = 15;

/** The Extended DNS Error codes dotproxy sends (a subset of the IANA registry). */
export const EdeCode = {
  /** 0: none of the others; EXTRA-TEXT says what (a malformed query's reason). */
  OTHER: 0,
  /** 3: an expired cache entry served because the upstreams failed (RFC 8767). */
  STALE_ANSWER: 3,
  /** 13: a SERVFAIL remembered from an earlier failure (servfail_ttl). */
  CACHED_ERROR: 13,
  /** 14: the proxy sheds load (max_in_flight) or every upstream connection is at its cap. */
  NOT_READY: 14,
  /** 15: blocked by a local block list (routing, once it can block). */
  BLOCKED: 15,
  /** 17: filtered on the client's behalf (routing, once it can block). */
  FILTERED: 17,
  /** 18: refused by policy: the ACL, or the per-client rate limit ("rate limited"). */
  PROHIBITED: 18,
  /** 19: a stale NXDOMAIN (RFC 8767). */
  STALE_NXDOMAIN_ANSWER: 19,
  /** 20: a query with RD=0: dotproxy is authoritative for nothing it forwards. */
  NOT_AUTHORITATIVE: 20,
  /** 21: meta-types, ANY with `any_queries = "refuse"`, class CH, opcodes other than QUERY. */
  NOT_SUPPORTED: 21,
  /** 22: every upstream timed out or is down (backing off). */
  NO_REACHABLE_AUTHORITY: 22,
  /** 23: the upstreams failed at the transport: connect, TLS, closed, a malformed reply. */
  NETWORK_ERROR: 23,
} as const;

/** One of the {@link EdeCode} values. */
export type EdeCode = typeof EdeCode[keyof typeof EdeCode];

/** Every code of the table with its metric label ("stale_answer"), in table order. */
export const EDE_LABELS: ReadonlyMap<EdeCode, string> = new Map(
  Object.entries(EdeCode).map(([name, code]) => [code, name.toLowerCase()]),
);

/** One Extended DNS Error ready to put in an OPT, with its code for counting. */
export interface Ede {
  code: EdeCode;
  option: EdnsOption;
}

/**
 * Builds an EDE option: INFO-CODE then EXTRA-TEXT as UTF-8 (RFC 8914 §2: not NUL-terminated,
 * for humans, may be empty). Build fixed ones once at module load; the data is copied into each
 * answer, never changed.
 */
export function ede(code: EdeCode, text = ""): Ede {
  const utf8 = new TextEncoder().encode(text);
  const data = new Uint8Array(2 + utf8.length);
  data[0] = code >> 8;
  data[1] = code & 0xff;
  data.set(utf8, 2);
  return { code, option: { code: EDE_OPTION_CODE, data } };
}
