/**
 * Minimal reproducers of bugs the fuzzers ran into in code outside lib/policy. Each test is named
 * after the bug and fails until the bug is fixed; the fix belongs to the code's owner.
 */
import assert from "node:assert/strict";
import { frame, TcpDnsClient } from "../helpers/dns_client.ts";
import { startFakeDot } from "../helpers/fake_dot.ts";
import { fromHex } from "../helpers/fuzz.ts";
import { startProxy } from "../helpers/proxy.ts";

/** An IQUERY for "test." A/IN with this ID: answered NOTIMP by the proxy itself, no upstream. */
const iquery = (id: number) =>
  fromHex(`${id.toString(16).padStart(4, "0")}0900000100000000000004746573740000010001`);

/*
 * lib/listen/stream.ts, StreamSession.#read: after each read, `#partialSince` becomes
 * `pendingBytes > 0 ? (this.#partialSince ?? now) : null`. When one read ends inside message B
 * and the next completes B but ends inside message C, C inherits B's start time. A client whose
 * reads keep ending mid-message (any steady pipelining client; TCP segments rarely align with
 * DNS messages) is closed as "message not completed in time" tcp_read_timeout after the first
 * partial, although every message completed well within the limit; its later queries are lost.
 * Bytes sent, each write after the previous answer arrived (fake clock, tcp_read_timeout 5 s):
 *   t=0s  0016000109000001000000000000047465737400000100010016000209  (Q1 whole, Q2 begins)
 *   t=3s  000001000000000000047465737400000100010016000309            (Q2 ends, Q3 begins)
 *   t=6s  00000100000000000004746573740000010001                      (Q3 ends)
 * Expected: NOTIMP answers to Q1, Q2 and Q3. Actual: Q1 and Q2 answered, then at t=5s the
 * connection is closed (Q3 is timed from Q2's first byte) and Q3 is never answered.
 */
Deno.test({
  name: "BUG stream.ts: a message inherits the read deadline of an earlier partial message, " +
    "closing a client whose every message arrived within tcp_read_timeout",
  async fn() {
    const upstream = await startFakeDot();
    const p = await startProxy([upstream]); // tcp_read_timeout = 5s
    const c = await TcpDnsClient.connect(p.tcp);
    try {
      const [q1, q2, q3] = [1, 2, 3].map((id) => frame(iquery(id)));
      await c.sendRaw(Uint8Array.of(...q1, ...q2.subarray(0, 5)));
      assert.equal((await c.read())?.[1], 1, "Q1 answered");
      p.clock.advance(3000);
      await c.sendRaw(Uint8Array.of(...q2.subarray(5), ...q3.subarray(0, 5)));
      assert.equal((await c.read())?.[1], 2, "Q2 answered");
      p.clock.advance(3000); // Q3 began 3 s ago: within the 5 s read deadline
      await c.sendRaw(q3.subarray(5)).catch(() => {});
      const answer = await c.read();
      assert.ok(answer, "connection closed: Q3 was timed from Q2's first byte, 6 s ago");
      assert.equal(answer[1], 3, "Q3 answered");
    } finally {
      c.close();
      await p.stop();
      await upstream.close();
    }
  },
});
