/**
 * The fake bootstrap server of the tests of upstreams given by hostname: plain DNS on loopback
 * (fake_plain.ts) that knows one name and its A and AAAA records and answers NXDOMAIN for any
 * other; and the Bootstrap resolver that asks such servers, on a fake clock.
 */
import type dnsPacket from "dns-packet";
import type { Clock } from "../../lib/sys/clock.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { Bootstrap, type BootstrapOptions } from "../../lib/upstream/bootstrap.ts";
import { type FakePlain, startFakePlain } from "./fake_plain.ts";

/** The records of the one name a bootstrap server knows (read at each query). */
export interface BootstrapRecords {
  a?: string[];
  aaaa?: string[];
  /** TTL of every record (default 300). */
  ttl?: number;
}

/**
 * Starts a bootstrap server answering A and AAAA queries for `hostname` (matched
 * case-insensitively; by default `dns.test`, the name in the test certificate) with `records`
 * (NOERROR and no answers for a type it has none of) and NXDOMAIN for every other name.
 */
export function startBootstrapServer(
  records: BootstrapRecords = {},
  hostname = "dns.test",
): FakePlain {
  const known = hostname.toLowerCase();
  return startFakePlain({
    answerFor: (q) => {
      const { name, type } = q.questions![0];
      if (name.toLowerCase() !== known) return { rcode: "NXDOMAIN", answers: [] };
      const data = type === "A" ? records.a ?? [] : type === "AAAA" ? records.aaaa ?? [] : [];
      return {
        answers: data.map((d) => ({
          name,
          type,
          class: "IN",
          ttl: records.ttl ?? 300,
          data: d,
        })) as dnsPacket.Answer[],
      };
    },
  });
}

/** A Bootstrap resolver on `clock` asking `servers` (2 s timeout), with `extra` laid over. */
export function bootstrapResolver(
  clock: Clock,
  servers: FakePlain[],
  extra: Partial<BootstrapOptions> = {},
): Bootstrap {
  return new Bootstrap({ servers, clock, random: cryptoRandom(), timeoutMs: 2000, ...extra });
}
