/**
 * Shared fuzzing tools: the seed (so every failure reproduces from it; the generator is rng.ts),
 * valid DNS queries and responses built byte by byte (independent of lib/), and the mutations
 * that find parser bugs in practice: bit flips, byte insertions and deletions, truncation, inflated
 * section counts, injected compression pointers and corrupted label lengths.
 */
import type { Rng } from "./rng.ts";

/**
 * The seed to fuzz with: FUZZ_SEED from the environment (decimal or 0x hex) when set and
 * readable, else `fallback`, so a failure reported with its seed can be replayed exactly.
 */
export function fuzzSeed(fallback: number): number {
  const env = Deno.permissions.querySync({ name: "env", variable: "FUZZ_SEED" });
  const text = env.state === "granted" ? Deno.env.get("FUZZ_SEED") : undefined;
  if (text === undefined || text === "") return fallback;
  const seed = Number(text);
  if (!Number.isInteger(seed)) {
    throw new Error(`FUZZ_SEED ${JSON.stringify(text)} is not an integer`);
  }
  return seed >>> 0;
}

/** Lower-case hex of a buffer, to paste into a reproducer (`fromHex`). */
export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** The bytes of a hex string (whitespace ignored). */
export function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, "");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The error a fuzz test fails with: seed, input number and the input as hex, to reproduce. */
export function fuzzFailure(
  seed: number,
  index: number,
  input: Uint8Array,
  problem: unknown,
): Error {
  const why = problem instanceof Error ? `${problem.name}: ${problem.message}` : String(problem);
  return new Error(
    `fuzz failure (seed 0x${seed.toString(16)}, input #${index}, ${input.length} bytes): ${why}\n` +
      `input hex: ${toHex(input)}`,
    { cause: problem },
  );
}

/** A growable byte writer for building messages. */
class Writer {
  bytes: number[] = [];
  u8(v: number): void {
    this.bytes.push(v & 0xff);
  }
  u16(v: number): void {
    this.bytes.push((v >>> 8) & 0xff, v & 0xff);
  }
  u32(v: number): void {
    this.u16(v >>> 16);
    this.u16(v & 0xffff);
  }
  raw(b: ArrayLike<number>): void {
    for (let i = 0; i < b.length; i++) this.bytes.push(b[i]);
  }
  get length(): number {
    return this.bytes.length;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const LABEL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

/** A random uncompressed wire name (root included), 1-5 labels, occasionally long ones. */
export function randomWireName(rng: Rng): Uint8Array {
  if (rng.chance(0.03)) return Uint8Array.of(0);
  const w = new Writer();
  const labels = rng.range(1, 5);
  for (let i = 0; i < labels; i++) {
    const len = rng.range(1, rng.chance(0.05) ? 63 : 12);
    w.u8(len);
    for (let j = 0; j < len; j++) w.u8(LABEL_CHARS.charCodeAt(rng.int(LABEL_CHARS.length)));
  }
  w.u8(0);
  return w.done();
}

const QTYPES = [1, 2, 5, 6, 12, 15, 16, 28, 33, 43, 48, 65, 255];

function writeOpt(rng: Rng, w: Writer, opts: { version?: number } = {}): void {
  w.u8(0); // root owner
  w.u16(41);
  w.u16(rng.pick([512, 1232, 4096, rng.int(65536)]));
  w.u8(0); // extended rcode
  w.u8(opts.version ?? (rng.chance(0.05) ? rng.int(256) : 0));
  w.u16(rng.chance(0.5) ? 0x8000 : 0);
  const options = new Writer();
  for (let i = rng.int(3); i > 0; i--) {
    const data = rng.bytes(rng.int(16));
    options.u16(rng.pick([8, 10, 12, 15, rng.int(65536)]));
    options.u16(data.length);
    options.raw(data);
  }
  w.u16(options.length);
  w.raw(options.bytes);
}

/**
 * A valid query: header with QR=0 (opcode QUERY mostly), one question, sometimes an OPT RR
 * (options included). What stub resolvers send, and what the mutations start from.
 */
export function validQuery(rng: Rng): Uint8Array {
  const w = new Writer();
  const edns = rng.chance(0.6);
  w.u16(rng.int(65536));
  const opcode = rng.chance(0.9) ? 0 : rng.pick([1, 2, 4, 5]);
  w.u16((opcode << 11) | (rng.chance(0.9) ? 0x0100 : 0) | (rng.chance(0.1) ? 0x0010 : 0));
  w.u16(1);
  w.u16(0);
  w.u16(0);
  w.u16(edns ? 1 : 0);
  w.raw(randomWireName(rng));
  w.u16(rng.pick(QTYPES));
  w.u16(rng.chance(0.95) ? 1 : rng.pick([3, 4, 255]));
  if (edns) writeOpt(rng, w);
  return w.done();
}

/**
 * A valid response: QR=1, one question, answers/authority/additional records of common types,
 * owner and rdata names often compressed to a pointer at the question name (offset 12), and
 * sometimes an OPT RR. Sizes range from a few dozen bytes to several kilobytes.
 */
export function validResponse(rng: Rng): Uint8Array {
  const w = new Writer();
  const qname = randomWireName(rng);
  const counts = [rng.int(4), rng.int(3), rng.int(3)];
  if (rng.chance(0.1)) counts[0] += rng.range(10, 40); // large: exercises truncation
  const edns = rng.chance(0.5);
  w.u16(rng.int(65536));
  w.u16(0x8000 | 0x0100 | 0x0080 | (rng.chance(0.2) ? rng.int(6) : 0));
  w.u16(1);
  w.u16(counts[0]);
  w.u16(counts[1]);
  w.u16(counts[2] + (edns ? 1 : 0));
  w.raw(qname);
  w.u16(rng.pick(QTYPES));
  w.u16(1);
  const name = () => {
    if (rng.chance(0.6)) w.u16(0xc00c);
    else w.raw(randomWireName(rng));
  };
  for (let section = 0; section < 3; section++) {
    for (let i = 0; i < counts[section]; i++) {
      name();
      const type = rng.pick([1, 28, 5, 16, 15, 6]);
      w.u16(type);
      w.u16(1);
      w.u32(rng.u32());
      const rdata = new Writer();
      if (type === 1) rdata.raw(rng.bytes(4));
      else if (type === 28) rdata.raw(rng.bytes(16));
      else if (type === 16) {
        const s = rng.bytes(rng.int(200));
        rdata.u8(s.length);
        rdata.raw(s);
      } else if (type === 15) {
        rdata.u16(rng.int(100));
        rdata.raw(randomWireName(rng));
      } else if (type === 6) {
        rdata.raw(randomWireName(rng));
        rdata.raw(randomWireName(rng));
        for (let k = 0; k < 5; k++) rdata.u32(rng.u32());
      } else {
        if (rng.chance(0.5)) rdata.u16(0xc00c);
        else rdata.raw(randomWireName(rng));
      }
      w.u16(rdata.length);
      w.raw(rdata.bytes);
    }
  }
  if (edns) writeOpt(rng, w, { version: 0 });
  return w.done();
}

/** Offsets of the label length bytes of the name at `start` (stops at a pointer or the end). */
function labelOffsets(msg: Uint8Array, start: number): number[] {
  const out: number[] = [];
  let p = start;
  while (p < msg.length && out.length < 128) {
    const len = msg[p];
    out.push(p);
    if (len === 0 || len >= 0xc0) break;
    p += len + 1;
  }
  return out;
}

/** The mutations applied by {@link mutate}, by name (reported with a failing input). */
export const MUTATIONS = [
  "bit_flip",
  "byte_set",
  "insert",
  "delete",
  "truncate",
  "inflate_count",
  "pointer",
  "label_length",
  "splice",
  "grow_name",
  "append_opt",
] as const;
export type Mutation = typeof MUTATIONS[number];

/** Applies one named mutation; returns a new buffer (the input is not modified). */
export function applyMutation(rng: Rng, msg: Uint8Array, m: Mutation): Uint8Array {
  const len = msg.length;
  const at = (extra = 0) => rng.int(len + extra);
  switch (m) {
    case "bit_flip": {
      if (len === 0) return msg;
      const out = msg.slice();
      for (let n = rng.range(1, 4); n > 0; n--) out[at()] ^= 1 << rng.int(8);
      return out;
    }
    case "byte_set": {
      if (len === 0) return msg;
      const out = msg.slice();
      out[at()] = rng.pick([0, 0xff, 0x3f, 0x40, 0xc0, rng.int(256)]);
      return out;
    }
    case "insert": {
      const p = at(1);
      const ins = rng.bytes(rng.range(1, 8));
      const out = new Uint8Array(len + ins.length);
      out.set(msg.subarray(0, p));
      out.set(ins, p);
      out.set(msg.subarray(p), p + ins.length);
      return out;
    }
    case "delete": {
      if (len === 0) return msg;
      const p = at();
      const n = Math.min(len - p, rng.range(1, 8));
      const out = new Uint8Array(len - n);
      out.set(msg.subarray(0, p));
      out.set(msg.subarray(p + n), p);
      return out;
    }
    case "truncate":
      return msg.slice(0, at());
    case "inflate_count": {
      if (len < 12) return msg;
      const out = msg.slice();
      const field = 4 + 2 * rng.int(4);
      const v = rng.pick([0xffff, ((out[field] << 8) | out[field + 1]) + rng.range(1, 3), 2]);
      out[field] = (v >>> 8) & 0xff;
      out[field + 1] = v & 0xff;
      return out;
    }
    case "pointer": {
      if (len < 14) return msg;
      const out = msg.slice();
      const p = rng.range(12, len - 2);
      // Targets: itself (a loop), the header, just past the end, anywhere, a near pointer.
      const target = rng.pick([p, rng.int(12), len, rng.int(0x4000), Math.max(0, p - 2), 12]);
      out[p] = 0xc0 | ((target >>> 8) & 0x3f);
      out[p + 1] = target & 0xff;
      return out;
    }
    case "label_length": {
      if (len < 13) return msg;
      const out = msg.slice();
      const offsets = labelOffsets(out, 12);
      const p = rng.pick(offsets);
      out[p] = rng.pick([0, 63, 64, 0x80, 0xbf, rng.int(256), out[p] + 1, Math.max(0, out[p] - 1)]);
      return out;
    }
    case "grow_name": {
      // Long labels at the front of the question name: past 255 bytes it is too long.
      if (len < 12) return msg;
      const ins = new Writer();
      for (let n = rng.range(1, 5); n > 0; n--) {
        ins.u8(63);
        ins.raw(rng.bytes(63).map((b) => LABEL_CHARS.charCodeAt(b % LABEL_CHARS.length)));
      }
      const out = new Uint8Array(len + ins.length);
      out.set(msg.subarray(0, 12));
      out.set(ins.bytes, 12);
      out.set(msg.subarray(12), 12 + ins.length);
      return out;
    }
    case "append_opt": {
      // Another OPT RR at the end, ARCOUNT + 1: a second one is a duplicate.
      if (len < 12) return msg;
      const opt = new Writer();
      writeOpt(rng, opt);
      const out = new Uint8Array(len + opt.length);
      out.set(msg);
      out.set(opt.bytes, len);
      const ar = (((out[10] << 8) | out[11]) + 1) & 0xffff;
      out[10] = ar >>> 8;
      out[11] = ar & 0xff;
      return out;
    }
    case "splice": {
      // Duplicate a random run of the message somewhere else in it.
      if (len === 0) return msg;
      const from = at();
      const run = msg.subarray(from, from + rng.range(1, 32));
      const p = at(1);
      const out = new Uint8Array(len + run.length);
      out.set(msg.subarray(0, p));
      out.set(run, p);
      out.set(msg.subarray(p), p + run.length);
      return out;
    }
  }
}

/** One to three random mutations of `msg`. */
export function mutate(rng: Rng, msg: Uint8Array): Uint8Array {
  let out = msg;
  for (let n = rng.range(1, 3); n > 0; n--) out = applyMutation(rng, out, rng.pick(MUTATIONS));
  return out;
}

/** Random bytes, biased towards lengths around and just past a DNS header. */
export function randomBytes(rng: Rng): Uint8Array {
  const len = rng.chance(0.3) ? rng.int(16) : rng.int(600);
  return rng.bytes(len);
}

/**
 * One fuzz input: random bytes (20%), a mutated query (45%) or a mutated response (35%); a few
 * valid messages pass through unmutated, so the success paths are exercised too.
 */
export function fuzzInput(rng: Rng): Uint8Array {
  const r = rng.u32() / 4294967296;
  if (r < 0.2) return randomBytes(rng);
  const base = r < 0.65 ? validQuery(rng) : validResponse(rng);
  return rng.chance(0.05) ? base : mutate(rng, base);
}
