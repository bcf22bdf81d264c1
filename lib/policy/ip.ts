/**
 * Transitional re-export (issue 12): the IP parser lives in lib/net/ip.ts. The DoH listener's
 * rewrite on another branch imports it from here until it lands; then this file goes.
 */
export { parseIPv4, parseIPv6 } from "../net/ip.ts";
