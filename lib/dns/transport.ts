/**
 * The transports DNS messages travel over, declared once. Listener and upstream URL schemes
 * (lib/config), the pipeline's `Query.transport`, the listeners and the `protocol` label of the
 * metrics all derive from these arrays, so adding a transport is one edit here plus the code
 * that serves it.
 */

/** Plain DNS: datagrams (RFC 1035 §4.2.1) and length-prefixed streams (RFC 7766). */
export const PLAIN_TRANSPORTS = ["udp", "tcp"] as const;

/** One of PLAIN_TRANSPORTS. */
export type PlainTransport = typeof PLAIN_TRANSPORTS[number];

/** Encrypted DNS: DNS-over-TLS (RFC 7858) and DNS-over-HTTPS (RFC 8484). */
export const ENCRYPTED_TRANSPORTS = ["tls", "https"] as const;

/** Every transport, plain first: the order of the metrics' `protocol` series. */
export const TRANSPORTS = [...PLAIN_TRANSPORTS, ...ENCRYPTED_TRANSPORTS] as const;

/** One of TRANSPORTS: how a query arrived, or how an upstream is reached. */
export type Transport = typeof TRANSPORTS[number];
