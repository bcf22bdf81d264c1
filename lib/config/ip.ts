/**
 * Transitional re-export (issue 12): the IP literal checks live in lib/net/ip.ts. lib/upstream
 * and lib/listen/https.ts still import them from here until their rewrites on other branches
 * land; then this file goes.
 */
export { ipKey, isIP, isIPv6 } from "../net/ip.ts";
