/**
 * Fuzzing the wire codec with what the network can send: random bytes and mutated valid queries
 * and responses. Decoding must never throw and must fail only with a known DecodeErrorKind;
 * replies built from whatever decoded must be well-formed; truncation must respect the size
 * limit. The seed is fixed (override with FUZZ_SEED=0x...); a failure prints the seed, the input
 * number and the input as hex.
 */
import assert from "node:assert/strict";
import {
  decodeHeader,
  decodeMessage,
  decodeQuery,
  Flag,
  HEADER_SIZE,
  type Message,
  Rcode,
} from "../../lib/dns/message.ts";
import { errorReply, formErrFromHeader, truncateReply } from "../../lib/dns/reply.ts";
import type { Decoded, DecodeErrorKind } from "../../lib/dns/wire.ts";
import { fuzzFailure, fuzzInput, fuzzSeed, validQuery, validResponse } from "../helpers/fuzz.ts";
import { Rng } from "../helpers/rng.ts";

const SEED = fuzzSeed(0xd0c0de);
const INPUTS = 100_000;

/** Every kind, as a record so that the compiler flags a kind added to the codec but not here. */
const KINDS: Record<DecodeErrorKind, true> = {
  short_header: true,
  truncated: true,
  label_too_long: true,
  name_too_long: true,
  pointer_loop: true,
  pointer_out_of_range: true,
  too_many_pointers: true,
  bad_label_type: true,
  multiple_questions: true,
  opt_not_root: true,
  opt_duplicate: true,
  opt_malformed: true,
  trailing_bytes: true,
};

/** Runs `check` on INPUTS fuzz inputs; any exception becomes a failure naming seed and input. */
function forEachInput(check: (input: Uint8Array, rng: Rng) => void): void {
  const rng = new Rng(SEED);
  for (let i = 0; i < INPUTS; i++) {
    const input = fuzzInput(rng);
    try {
      check(input, rng);
    } catch (err) {
      throw fuzzFailure(SEED, i, input, err);
    }
  }
}

function assertKnownError<T>(d: Decoded<T>, input: Uint8Array): void {
  if (d.ok) return;
  assert.ok(Object.hasOwn(KINDS, d.error.kind), `unknown error kind ${d.error.kind}`);
  assert.ok(
    Number.isInteger(d.error.offset) && d.error.offset >= 0 && d.error.offset <= input.length,
    `error offset ${d.error.offset} outside the ${input.length}-byte input`,
  );
  assert.equal(typeof d.error.message, "string");
}

/** Every position a decoded message reports lies inside the buffer. */
function assertInBounds(m: Message, input: Uint8Array): void {
  assert.ok(m.end <= input.length, "a decoded message ends inside the input");
  if (m.question) assert.ok(m.question.end <= input.length, "question inside the input");
  for (const r of m.records) {
    assert.ok(r.ttlOffset + 4 <= input.length, "TTL inside the input");
    assert.ok(r.rdataOffset + r.rdataLength <= input.length, "rdata inside the input");
  }
  if (m.edns) assert.ok(m.edns.end <= input.length, "OPT inside the input");
}

Deno.test(`decoding ${INPUTS} random and mutated messages never throws and fails only with known kinds`, () => {
  let decoded = 0;
  forEachInput((input) => {
    const message = decodeMessage(input);
    assertKnownError(message, input);
    if (message.ok) {
      decoded++;
      assertInBounds(message.value, input);
    }
    const query = decodeQuery(input);
    assertKnownError(query, input);
    if (query.ok) assertInBounds(query.value, input);
    const header = decodeHeader(input);
    assertKnownError(header, input);
    assert.equal(header.ok, input.length >= HEADER_SIZE);
  });
  // The corpus must reach past the header checks, or this test proves little.
  assert.ok(decoded > INPUTS / 10, `only ${decoded} of ${INPUTS} inputs decoded`);
});

Deno.test(`truncateReply of ${INPUTS} fuzzed replies never exceeds the size limit and stays decodable`, () => {
  let truncated = 0;
  forEachInput((input, rng) => {
    for (const max of [512, rng.range(512, 4096)]) {
      const out = truncateReply(input, max);
      if (input.length <= max || input.length < HEADER_SIZE) {
        assert.equal(out, input, "a reply that fits (or has no header) is returned as it is");
        continue;
      }
      truncated++;
      assert.ok(out.length <= max, `truncated to ${out.length} bytes, limit ${max}`);
      assert.ok(out.length >= HEADER_SIZE);
      assert.equal(out[0], input[0], "ID kept");
      assert.equal(out[1], input[1], "ID kept");
      assert.ok(((out[2] << 8) | out[3]) & Flag.TC, "TC set");
      const again = decodeMessage(out);
      assert.ok(again.ok, `truncated reply does not decode: ${!again.ok && again.error.message}`);
    }
  });
  assert.ok(truncated > 1000, `only ${truncated} inputs needed truncation`);
});

Deno.test(`error replies to ${INPUTS} fuzzed messages that decode are well-formed`, () => {
  let replied = 0;
  forEachInput((input) => {
    const header = decodeHeader(input);
    if (header.ok) {
      const formErr = formErrFromHeader(header.value);
      const h = decodeHeader(formErr);
      assert.ok(h.ok && decodeMessage(formErr).ok);
      assert.equal(h.value.id, header.value.id);
      assert.equal(h.value.flags & 0xf, Rcode.FORMERR);
      assert.ok(h.value.flags & Flag.QR);
    }
    const q = decodeQuery(input);
    if (!q.ok) return;
    const rcodes: number[] = [Rcode.FORMERR, Rcode.SERVFAIL, Rcode.NOTIMP, Rcode.REFUSED];
    if (q.value.edns) rcodes.push(Rcode.BADVERS);
    for (const rcode of rcodes) {
      const reply = errorReply(q.value, input, rcode, { udpSize: 1232 });
      replied++;
      const d = decodeMessage(reply);
      assert.ok(d.ok, `error reply does not decode: ${!d.ok && d.error.message}`);
      assert.equal(d.value.header.id, q.value.header.id);
      assert.ok(d.value.header.flags & Flag.QR);
      assert.equal(d.value.rcode, rcode);
      assert.equal(d.value.question?.qtype, q.value.question?.qtype);
      assert.equal(d.value.edns !== null, q.value.edns !== null);
      assert.ok(reply.length <= 512, `error reply of ${reply.length} bytes`);
    }
  });
  assert.ok(replied > INPUTS / 10, `only ${replied} error replies built`);
});

Deno.test("the fuzz corpus starts from valid messages: unmutated queries and responses decode", () => {
  const rng = new Rng(SEED);
  for (let i = 0; i < 5000; i++) {
    for (const msg of [validQuery(rng), validResponse(rng)]) {
      const d = decodeMessage(msg);
      if (!d.ok) throw fuzzFailure(SEED, i, msg, d.error.message);
    }
  }
});
