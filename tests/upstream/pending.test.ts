/** Reply matching on one upstream channel: what settles a query and what is thrown away. */
import assert from "node:assert/strict";
import { decodeQuery, type Question } from "../../lib/dns/message.ts";
import { PendingQueries } from "../../lib/upstream/pending.ts";
import { buildQuery } from "../helpers/dns_client.ts";
import { FakeClock, seededRandom } from "../helpers/fake_clock.ts";

function questionOf(bytes: Uint8Array): Question {
  const d = decodeQuery(bytes);
  if (!d.ok) throw new Error(d.error.message);
  return d.value.question!;
}

/** The query for `name` turned into a reply with `id`: QR set unless `qr` is false. */
function replyTo(name: string, id: number, qr = true): Uint8Array {
  const b = buildQuery(name, "A", id);
  if (qr) b[2] |= 0x80;
  return b;
}

function setup() {
  const clock = new FakeClock();
  const pending = new PendingQueries({ clock, random: seededRandom() });
  const q = questionOf(buildQuery("pending.test"));
  const { id, result } = pending.add(q, clock.now() + 1000);
  let settled = false;
  result.then(() => settled = true);
  return { clock, pending, id, result, settled: () => settled };
}

const turn = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

Deno.test("an upstream message with QR=0 is discarded like a wrong ID, and the real reply still settles", async () => {
  const { pending, id, result, settled } = setup();
  assert.equal(pending.deliver(replyTo("pending.test", id, false)), null);
  await turn();
  assert.equal(settled(), false, "a query is not the answer");
  assert.equal(pending.discarded.mismatched, 1);
  assert.equal(pending.size, 1);
  assert.ok(pending.deliver(replyTo("pending.test", id)));
  const r = await result;
  assert.ok(r.ok);
});

Deno.test("a reply with bytes after the message is accepted and the extra bytes ignored", async () => {
  const { pending, id, result } = setup();
  const reply = replyTo("pending.test", id);
  const padded = new Uint8Array(reply.length + 5);
  padded.set(reply);
  padded.fill(0xee, reply.length);
  const msg = pending.deliver(padded);
  assert.ok(msg, "settled, not discarded as malformed");
  assert.equal(msg.end, reply.length);
  assert.equal(pending.discarded.malformed, 0);
  assert.ok((await result).ok);
});
