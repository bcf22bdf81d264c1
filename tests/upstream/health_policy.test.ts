/**
 * One health policy for every upstream kind (issue 10 item 2): the same table of cases runs
 * against a tls://, tcp://, udp:// and https:// upstream, each built by createUpstream and aimed
 * at its fake server on loopback, with every timeout on the fake clock. A slow name costs only its
 * own queries; an upstream that stops answering is down after the documented threshold and comes
 * back through probes; a refused connection marks it down at once (where a refusal can be seen).
 */
import assert from "node:assert/strict";
import { createUpstream, type ManagedUpstream } from "../../lib/upstream/create.ts";
import type { Transport as UpstreamProtocol } from "../../lib/dns/transport.ts";
import { DEFAULT_FAILURE_THRESHOLD } from "../../lib/upstream/health.ts";
import type { Exchange } from "../../lib/upstream/upstream.ts";
import { cryptoRandom } from "../../lib/sys/random.ts";
import { buildQuery } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { startFakeDoh } from "../helpers/fake_doh.ts";
import { expectedAddress, readFixture, startFakeDot } from "../helpers/fake_dot.ts";
import { addressesIn, questionOf, startFakePlain } from "../helpers/fake_plain.ts";

const CA = await readFixture("ca.pem");
const ATTEMPT_MS = 2000;
const CONNECT_MS = 2000;
const BACKOFF_MS = 1000;

/** A fake server of any kind, seen through what the cases need. */
interface Peer {
  hostname: string;
  port: number;
  /** Queries (or DoH requests) received so far, probes included. */
  received(): number;
  waitFor(n: number): Promise<void>;
  /** Silent: queries are received and never answered. */
  setSilent(silent: boolean): void;
  /** Sends the answers held back for slow names (late: after their queries timed out). */
  releaseSlow(): void;
  close(): Promise<void>;
}

/** One upstream kind: its scheme and its fake server. */
interface Kind {
  protocol: UpstreamProtocol;
  start(slow: (name: string) => boolean): Promise<Peer>;
  /**
   * Queries it takes a refused connection to mark the upstream down: 1 where the refusal is seen;
   * over UDP no ICMP error reaches an unconnected socket, so a refusal looks like loss and the
   * sustained rule applies.
   */
  refusedDownAfter: number;
}

const KINDS: Kind[] = [
  {
    protocol: "tls",
    refusedDownAfter: 1,
    async start(slow) {
      const s = await startFakeDot({ slow });
      return {
        ...s,
        received: () => s.queries.length,
        waitFor: (n) => s.waitForQueries(n),
        setSilent: (on) => s.setBehaviour(on ? "silent" : "answer"),
      };
    },
  },
  ...(["tcp", "udp"] as const).map((protocol): Kind => ({
    protocol,
    refusedDownAfter: protocol === "udp" ? DEFAULT_FAILURE_THRESHOLD : 1,
    start(slow) {
      const s = startFakePlain({ slow });
      return Promise.resolve({
        ...s,
        received: () => s.queries.length,
        waitFor: (n) => s.waitForQueries(n),
        setSilent: (on) => s.setBehaviour(on ? "silent" : "answer"),
      });
    },
  })),
  {
    protocol: "https",
    refusedDownAfter: 1,
    async start(slow) {
      const s = await startFakeDoh({ slow });
      return {
        ...s,
        received: () => s.requests.length,
        waitFor: (n) => s.waitForRequests(n),
        setSilent: (on) => s.setBehaviour(on ? "silent" : "answer"),
      };
    },
  },
];

function upstreamFor(kind: Kind, at: { hostname: string; port: number }, clock: FakeClock) {
  return createUpstream({
    url: `${kind.protocol}://${at.hostname}:${at.port}`,
    protocol: kind.protocol,
    hostname: at.hostname,
    port: at.port,
    caCerts: [CA],
  }, {
    clock,
    random: cryptoRandom(),
    attemptTimeoutMs: ATTEMPT_MS,
    connectTimeoutMs: CONNECT_MS,
    idleTimeoutMs: 60_000,
    // One connection: a second one dialled in the background could still be in its handshake
    // when the test moves the fake clock past connect_timeout.
    connectionsPerUpstream: 1,
    maxInFlightPerConnection: 64,
    failureBackoffMs: BACKOFF_MS,
    maxFailureBackoffMs: 10_000,
  });
}

function ask(u: ManagedUpstream, clock: FakeClock, name: string): Promise<Exchange> {
  const q = buildQuery(name, "A");
  return u.exchange(q, questionOf(q), clock.now() + ATTEMPT_MS);
}

/** Lets socket events land across event-loop turns (no fake time passes); bounded. */
async function poll(cond: () => boolean, turns = 2000): Promise<boolean> {
  for (let i = 0; i < turns && !cond(); i++) await new Promise((r) => setTimeout(r, 0));
  return cond();
}

function assertAnswered(r: Exchange, name: string): void {
  assert.ok(r.ok, r.ok ? "" : `${name}: ${r.error.kind}: ${r.error.message}`);
  assert.deepEqual(addressesIn(r.reply), [expectedAddress(name)]);
}

async function withKind(
  kind: Kind,
  fn: (peer: Peer, u: ManagedUpstream, clock: FakeClock) => Promise<void>,
): Promise<void> {
  const peer = await kind.start((name) => name.startsWith("slow"));
  const clock = new FakeClock();
  const u = upstreamFor(kind, peer, clock);
  try {
    await fn(peer, u, clock);
  } finally {
    await u.close();
    await peer.close();
  }
}

for (const kind of KINDS) {
  const p = kind.protocol;

  Deno.test(`${p}: a slow name costs only its own queries; other names are answered and the upstream stays up`, async () => {
    await withKind(kind, async (peer, u, clock) => {
      assertAnswered(await ask(u, clock, "warm.test"), "warm.test");
      // One slow query at a time, more of them than the threshold, other names answered meanwhile.
      for (let i = 0; i < 2 * DEFAULT_FAILURE_THRESHOLD; i++) {
        const slow = ask(u, clock, `slow${i}.test`);
        await peer.waitFor(peer.received() + 1);
        assertAnswered(await ask(u, clock, `during${i}.test`), `during${i}.test`);
        clock.advance(ATTEMPT_MS);
        const r = await slow;
        assert.equal(!r.ok && r.error.kind, "timeout", "the slow name fails on its own");
        assertAnswered(await ask(u, clock, `after${i}.test`), `after${i}.test`);
        assert.equal(u.health.available(), true, `still up after ${i + 1} slow names`);
      }
      // A burst of slow names sent at once, timing out together, cannot add up either.
      const burst = Array.from(
        { length: 3 * DEFAULT_FAILURE_THRESHOLD },
        (_, i) => ask(u, clock, `slow-burst${i}.test`),
      );
      await peer.waitFor(peer.received() + burst.length);
      assertAnswered(await ask(u, clock, "during-burst.test"), "during-burst.test");
      clock.advance(ATTEMPT_MS);
      for (const r of await Promise.all(burst)) assert.equal(!r.ok && r.error.kind, "timeout");
      assert.equal(u.health.available(), true, "up after a burst of slow names");
      peer.releaseSlow(); // the late answers arrive and are thrown away
      for (const name of ["after-burst1.test", "after-burst2.test"]) {
        assertAnswered(await ask(u, clock, name), name);
      }
      assert.equal(u.health.available(), true);
    });
  });

  Deno.test(`${p}: an upstream that stops answering is down after ${DEFAULT_FAILURE_THRESHOLD} timeouts, then a probe brings it back`, async () => {
    await withKind(kind, async (peer, u, clock) => {
      assertAnswered(await ask(u, clock, "warm.test"), "warm.test");
      peer.setSilent(true);
      for (let i = 1; i <= DEFAULT_FAILURE_THRESHOLD; i++) {
        const pending = ask(u, clock, `dead${i}.test`);
        await peer.waitFor(peer.received() + 1);
        clock.advance(ATTEMPT_MS);
        const r = await pending;
        assert.equal(!r.ok && r.error.kind, "timeout");
        assert.equal(u.health.available(), i < DEFAULT_FAILURE_THRESHOLD, `after ${i} timeouts`);
      }
      // The upstream is probed at once (". NS"); silent too, so it stays down.
      const beforeProbe = peer.received();
      clock.advance(0);
      await peer.waitFor(beforeProbe + 1);
      assert.equal(u.health.available(), false);
      peer.setSilent(false);
      // The probe's budget and the backoff pass on the fake clock; a later probe is answered.
      for (let step = 0; step < 20 && !u.health.available(); step++) {
        const seen = peer.received();
        clock.advance(BACKOFF_MS);
        if (await poll(() => peer.received() > seen, 50)) await poll(() => u.health.available());
      }
      assert.equal(u.health.available(), true, "a probe found it answering again");
      assertAnswered(await ask(u, clock, "back.test"), "back.test");
    });
  });

  Deno.test(
    `${p}: a refused connection marks the upstream down after ${kind.refusedDownAfter} ${
      kind.refusedDownAfter === 1 ? "query" : "queries"
    }`,
    async () => {
      const gone = await kind.start(() => false);
      const at = { hostname: gone.hostname, port: gone.port };
      await gone.close(); // nothing listens there any more
      const clock = new FakeClock();
      const u = upstreamFor(kind, at, clock);
      try {
        for (let i = 1; i <= kind.refusedDownAfter; i++) {
          const pending = ask(u, clock, `refused${i}.test`);
          if (kind.refusedDownAfter > 1) {
            await poll(() => u.stats().inFlight > 0);
            clock.advance(ATTEMPT_MS);
          }
          const r = await pending;
          assert.equal(r.ok, false);
          assert.equal(u.health.available(), i < kind.refusedDownAfter, `after ${i} queries`);
        }
      } finally {
        await u.close();
      }
    },
  );
}
