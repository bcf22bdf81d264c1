/**
 * The rebinding filter rebuilds upstream replies, so it gets the codec's distrust: for valid and
 * mutated responses that decode, it never throws, and what it rebuilds decodes, keeps the
 * question, and holds no address from the private ranges. Replay a failure with FUZZ_SEED.
 */
import assert from "node:assert/strict";
import { decodeMessage } from "../../lib/dns/message.ts";
import { namesEqual } from "../../lib/dns/wire.ts";
import { RebindingFilter } from "../../lib/route/rebinding.ts";
import { fuzzFailure, fuzzSeed, mutate, validResponse } from "../helpers/fuzz.ts";
import { Rng } from "../helpers/rng.ts";

const SEED = fuzzSeed(0x5eb1d);
const INPUTS = 4000;

Deno.test("rebinding never throws on decodable replies and rebuilds only decodable ones", () => {
  const rng = new Rng(SEED);
  // Half of all addresses count as private, so most replies with addresses get rebuilt.
  const f = RebindingFilter.build({ ranges: ["0.0.0.0/1", "::/1"] });
  assert.ok(f instanceof RebindingFilter);
  let rebuilt = 0;
  for (let i = 0; i < INPUTS; i++) {
    const valid = validResponse(rng);
    const input = rng.chance(0.5) ? valid : mutate(rng, valid);
    const d = decodeMessage(input);
    if (!d.ok) continue;
    try {
      const out = f.apply(input, d.value, false);
      if (out.kind !== "filtered") continue;
      rebuilt++;
      const back = decodeMessage(out.bytes);
      if (!back.ok) throw new Error(`rebuilt reply does not decode: ${back.error.message}`);
      const m = back.value;
      assert.ok(m.question && namesEqual(m.question.name, d.value.question!.name));
      for (const r of m.records) {
        assert.equal(r.section, 1, "only the answer section is kept");
        if (r.type === 1 || r.type === 28) {
          assert.ok(!f.isPrivate(out.bytes, r.rdataOffset, r.rdataLength), "private address left");
        }
      }
    } catch (err) {
      throw fuzzFailure(SEED, i, input, err);
    }
  }
  assert.ok(rebuilt > INPUTS / 10, `only ${rebuilt} replies were rebuilt`);
});
