/**
 * Whether a listener asks clients for credentials: one setting with the same words for the DoT
 * listener (client certificates) and the DoH listener (tokens).
 * - "none": never asked; every client is anonymous (today's behaviour).
 * - "optional": a client may present one; if it does, it must be valid.
 * - "require": a client without a valid credential is refused before any DNS work.
 */
export const CLIENT_AUTH_MODES = ["none", "optional", "require"] as const;

/** Whether a listener asks clients for credentials. */
export type ClientAuthMode = typeof CLIENT_AUTH_MODES[number];
