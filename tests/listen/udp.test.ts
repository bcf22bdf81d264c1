/**
 * The UDP listener on its own: whatever its handler does — throw, reject — the receive loop keeps
 * answering the next query (the server's handler is also guarded, lib/listen/guard.ts).
 */
import assert from "node:assert/strict";
import type { Handler } from "../../lib/listen/listener.ts";
import { listenUdp } from "../../lib/listen/udp.ts";
import { buildQuery, parse, udpQuery } from "../helpers/dns_client.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

/** Answers with the query's bytes and QR set, except for names that trigger `fault`. */
function faultyHandler(fault: (name: string) => never | Promise<never> | null): Handler {
  return (q) => {
    const name = parse(q.bytes).questions?.[0]?.name ?? "";
    const f = fault(name);
    if (f) return f;
    const bytes = q.bytes.slice();
    bytes[2] |= 0x80;
    return { bytes, maxUdpSize: 512 };
  };
}

for (const hostname of ["127.0.0.1", "0.0.0.0"]) {
  Deno.test(`a UDP listener on ${hostname} keeps answering after its handler throws or rejects`, async () => {
    const handle = faultyHandler((name) => {
      if (name === "throw.example") throw new Error("injected synchronous fault");
      if (name === "reject.example") return Promise.reject(new Error("injected rejection"));
      // An answer whose bytes cannot be truncated to fit: the reply path itself throws.
      if (name === "unfit.example") {
        return Promise.resolve({ bytes: null as unknown as Uint8Array, maxUdpSize: 512 }) as never;
      }
      return null;
    });
    const l = listenUdp({
      url: `udp://${hostname}:0`,
      hostname,
      port: 0,
      handle,
      clock: new FakeClock(),
      wildcard: { loopback: [] },
    });
    const to = { hostname: "127.0.0.1", port: l.addr.port };
    try {
      for (const name of ["throw.example", "reject.example", "unfit.example"]) {
        // The faulty query gets no answer from an unguarded handler; send it, then prove the
        // loop is alive with the next one (answers come in order from one loop).
        const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
        await sock.send(buildQuery(name), { transport: "udp", ...to });
        sock.close();
        const reply = parse(await udpQuery(to, buildQuery("ok.example", "A", 0x4321)));
        assert.equal(reply.id, 0x4321);
        assert.equal(reply.type, "response");
      }
    } finally {
      await l.close();
    }
  });
}
