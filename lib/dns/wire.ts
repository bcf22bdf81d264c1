/**
 * Domain names on the wire (RFC 1035 §3.1, §4.1.4). A forwarder needs only a few name operations:
 * read the question name (following compression pointers), skip owner names in place, compare
 * names case-insensitively and turn them into cache keys. Everything here is pure, bounds-checked
 * and never throws while decoding untrusted bytes: errors come back as values.
 */

/** Longest wire form of a name, root label included (RFC 1035 §3.1); longer is malformed. */
export const MAX_NAME_LENGTH = 255;
/** Longest label (RFC 1035 §2.3.4): a length byte has only 6 bits for it. */
export const MAX_LABEL_LENGTH = 63;
/** Pointers followed per name before giving up (like miekg/dns): bounds the work per name. */
export const MAX_POINTER_HOPS = 10;

/** Why a message could not be decoded, and where: enough to log and to answer FORMERR. */
export interface DecodeError {
  kind: DecodeErrorKind;
  offset: number;
  message: string;
}

/** Every way decoding can fail; callers may switch on it exhaustively. */
export type DecodeErrorKind =
  | "short_header"
  | "truncated"
  | "label_too_long"
  | "name_too_long"
  | "pointer_loop"
  | "pointer_out_of_range"
  | "too_many_pointers"
  | "bad_label_type"
  | "multiple_questions"
  | "opt_not_root"
  | "opt_duplicate"
  | "opt_malformed"
  | "trailing_bytes";

/** Result of decoding untrusted bytes: a value, or a typed error instead of an exception. */
export type Decoded<T> = { ok: true; value: T } | { ok: false; error: DecodeError };

/** Builds the failure arm of `Decoded`; shared by every decoder so errors look the same. */
export function fail(kind: DecodeErrorKind, offset: number, message: string): {
  ok: false;
  error: DecodeError;
} {
  return { ok: false, error: { kind, offset, message } };
}

// Scratch space for assembling a decompressed name, so that it is copied out with one allocation
// of exactly its length. Decoding is synchronous, so one module-level buffer is safe.
const scratch = new Uint8Array(MAX_NAME_LENGTH);

/**
 * Classifies the byte at `at`, which must be a label length or pointer byte.
 * 0x40..0x7F is reported as `label_too_long` (a length of 64..127: the extended label types of
 * RFC 6891 §5 are obsolete, so in practice this is an encoder writing an overlong label);
 * 0x80..0xBF is the reserved label type and reported as `bad_label_type`.
 */
function labelTypeError(b: number, at: number): { ok: false; error: DecodeError } {
  return b < 0x80
    ? fail("label_too_long", at, `label length ${b} exceeds ${MAX_LABEL_LENGTH}`)
    : fail("bad_label_type", at, `unsupported label type 0x${(b & 0xc0).toString(16)}`);
}

/**
 * Checks a compression pointer found at `at` (its first byte) whose target is `target`, while
 * reading a run of labels that began at `runStart`. Only targets before `runStart` are allowed:
 * each hop then lands strictly earlier than the last, so no chain of pointers can loop.
 */
function pointerError(
  target: number,
  runStart: number,
  at: number,
): { ok: false; error: DecodeError } | null {
  if (target < runStart) return null;
  return target > at
    ? fail("pointer_out_of_range", at, `pointer to ${target} does not point backwards`)
    : fail("pointer_loop", at, `pointer to ${target} points into the name being read`);
}

/**
 * Reads a possibly-compressed name at `offset`. Pointers must point strictly backwards: before the
 * start of the run of labels that contains them (and so before the pointer itself). That alone
 * makes loops impossible; hops are counted too (at most MAX_POINTER_HOPS).
 * `wire` is the uncompressed wire form, letter case exactly as sent, ending with the 0 root byte;
 * `end` is the offset just after the name in place (after the first pointer if any).
 */
export function readName(
  buf: Uint8Array,
  offset: number,
): Decoded<{ wire: Uint8Array; end: number }> {
  if (offset < 0) return fail("truncated", 0, "negative offset");
  let p = offset;
  let runStart = offset;
  let end = -1;
  let hops = 0;
  let w = 0;
  for (;;) {
    if (p >= buf.length) return fail("truncated", p, "name runs past end of message");
    const b = buf[p];
    if (b === 0) {
      scratch[w++] = 0;
      if (end < 0) end = p + 1;
      return { ok: true, value: { wire: scratch.slice(0, w), end } };
    }
    if (b < 0x40) {
      const next = p + 1 + b;
      if (next >= buf.length) return fail("truncated", p, "label runs past end of message");
      if (w + b + 2 > MAX_NAME_LENGTH) {
        return fail("name_too_long", p, `name longer than ${MAX_NAME_LENGTH} bytes`);
      }
      for (let i = p; i < next; i++) scratch[w++] = buf[i];
      p = next;
      continue;
    }
    if (b < 0xc0) return labelTypeError(b, p);
    if (p + 1 >= buf.length) return fail("truncated", p, "pointer runs past end of message");
    if (++hops > MAX_POINTER_HOPS) {
      return fail("too_many_pointers", p, `more than ${MAX_POINTER_HOPS} compression pointers`);
    }
    const target = ((b & 0x3f) << 8) | buf[p + 1];
    const bad = pointerError(target, runStart, p);
    if (bad) return bad;
    if (end < 0) end = p + 2;
    p = runStart = target;
  }
}

/**
 * Skips a name in place without following pointers, for walking RRs whose owner we never need.
 * Validates label lengths and types, the length of the in-place part, and that a final pointer
 * points backwards (not into the name itself). Returns the offset just after the name.
 */
export function skipName(buf: Uint8Array, offset: number): Decoded<number> {
  if (offset < 0) return fail("truncated", 0, "negative offset");
  let p = offset;
  for (;;) {
    if (p >= buf.length) return fail("truncated", p, "name runs past end of message");
    const b = buf[p];
    if (b === 0) return { ok: true, value: p + 1 };
    if (b < 0x40) {
      const next = p + 1 + b;
      if (next >= buf.length) return fail("truncated", p, "label runs past end of message");
      if (next - offset + 1 > MAX_NAME_LENGTH) {
        return fail("name_too_long", p, `name longer than ${MAX_NAME_LENGTH} bytes`);
      }
      p = next;
      continue;
    }
    if (b < 0xc0) return labelTypeError(b, p);
    if (p + 1 >= buf.length) return fail("truncated", p, "pointer runs past end of message");
    const bad = pointerError(((b & 0x3f) << 8) | buf[p + 1], offset, p);
    return bad ?? { ok: true, value: p + 2 };
  }
}

/** ASCII lower-casing of one byte; label length bytes (< 64) are never letters, so safe anywhere. */
function lower(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

/**
 * ASCII case-insensitive equality of two uncompressed wire names: the 0x20 rule (resolvers may
 * randomise query case, RFC 4343 says names compare case-insensitively, non-ASCII bytes exactly).
 */
export function namesEqual(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length;
  if (n !== b.length) return false;
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x !== y && lower(x) !== lower(y)) return false;
  }
  return true;
}

/** Bytes written as themselves in presentation form; everything else is \DDD-escaped. */
function isPlain(b: number): boolean {
  return b > 0x20 && b < 0x7f;
}

/**
 * Presentation form "www.example.com." (root = "."), for logs and config: non-printable bytes
 * (space included) become \DDD and '.' or '\' inside a label are backslash-escaped, so the
 * result parses back to the same name with nameFromString.
 */
export function nameToString(wire: Uint8Array): string {
  let out = "";
  let p = 0;
  while (p < wire.length) {
    const len = wire[p];
    if (len === 0 || len > MAX_LABEL_LENGTH) break;
    const end = Math.min(p + 1 + len, wire.length);
    for (let i = p + 1; i < end; i++) {
      const b = wire[i];
      if (b === 0x2e || b === 0x5c) out += "\\" + String.fromCharCode(b);
      else if (isPlain(b)) out += String.fromCharCode(b);
      else out += "\\" + String(b).padStart(3, "0");
    }
    out += ".";
    p = end;
  }
  return out === "" ? "." : out;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * Parses presentation form (trailing dot optional, \DDD and \X escapes) into wire form, for names
 * that come from config, tests and probes. Throws RangeError on empty labels, labels over 63 or
 * names over 255 bytes, bad escapes and non-ASCII characters. "." (or "") is the root.
 */
export function nameFromString(name: string): Uint8Array {
  if (name === "." || name === "") return new Uint8Array(1);
  const out = new Uint8Array(MAX_NAME_LENGTH);
  let w = 1; // out[0] is the first label's length, filled in when the label ends
  let labelStart = 0;
  const closeLabel = (at: number) => {
    const len = w - labelStart - 1;
    if (len === 0) throw new RangeError(`empty label at ${at} in ${JSON.stringify(name)}`);
    if (len > MAX_LABEL_LENGTH) {
      throw new RangeError(`label longer than ${MAX_LABEL_LENGTH} in ${JSON.stringify(name)}`);
    }
    out[labelStart] = len;
    labelStart = w++;
  };
  const put = (b: number) => {
    // Room must remain for this byte and the root byte.
    if (w + 1 >= MAX_NAME_LENGTH) {
      throw new RangeError(`name longer than ${MAX_NAME_LENGTH} bytes: ${JSON.stringify(name)}`);
    }
    out[w++] = b;
  };
  let i = 0;
  while (i < name.length) {
    const c = name.charCodeAt(i);
    if (c > 0x7e || c < 0x20) {
      throw new RangeError(`non-ASCII or control character at ${i} in ${JSON.stringify(name)}`);
    }
    if (c === 0x2e) {
      closeLabel(i++);
      continue;
    }
    if (c !== 0x5c) {
      put(c);
      i++;
      continue;
    }
    const d0 = name.charCodeAt(i + 1);
    if (Number.isNaN(d0)) throw new RangeError(`dangling backslash in ${JSON.stringify(name)}`);
    if (isDigit(d0)) {
      const d1 = name.charCodeAt(i + 2);
      const d2 = name.charCodeAt(i + 3);
      const v = (d0 - 0x30) * 100 + (d1 - 0x30) * 10 + (d2 - 0x30);
      if (!isDigit(d1) || !isDigit(d2) || v > 255) {
        throw new RangeError(`bad \\DDD escape at ${i} in ${JSON.stringify(name)}`);
      }
      put(v);
      i += 4;
    } else {
      if (d0 > 0x7e || d0 < 0x20) {
        throw new RangeError(
          `non-ASCII or control character at ${i + 1} in ${JSON.stringify(name)}`,
        );
      }
      put(d0);
      i += 2;
    }
  }
  if (w > labelStart + 1) closeLabel(name.length); // no trailing dot
  out[labelStart] = 0; // the label slot left open becomes the root
  return out.slice(0, labelStart + 1);
}

/**
 * Lower-cased copy of a wire name as a string key, for maps and caches: one char per wire byte
 * (length bytes included, so it is unambiguous), ASCII letters folded, nothing else changed.
 * Not presentation form. Built in one call, not per byte.
 */
export function nameKey(wire: Uint8Array): string {
  const n = Math.min(wire.length, MAX_NAME_LENGTH);
  keyCodes.length = n;
  for (let i = 0; i < n; i++) keyCodes[i] = lower(wire[i]);
  return String.fromCharCode.apply(null, keyCodes);
}

// Reused char codes for nameKey: String.fromCharCode.apply is fastest on a plain array.
const keyCodes: number[] = [];
