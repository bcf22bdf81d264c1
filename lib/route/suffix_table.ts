/**
 * Domain suffix → value, longest match wins: the lookup behind split DNS, run for every query.
 *
 * Matching is on label boundaries (`corp.example` matches `corp.example` and `a.corp.example`,
 * never `xcorp.example`), ASCII case-insensitive (RFC 4343; other bytes exactly), and the root
 * `.` is a suffix of every name. Names are the codec's uncompressed wire form (lib/dns/wire.ts),
 * so a lookup needs no string.
 *
 * It is a hashed trie: each stored suffix and each of its ancestors is a node keyed by a 30-bit
 * hash of its lower-cased labels (a small integer, so the Map lookup allocates nothing). A lookup
 * hashes the query name one label at a time from the root outwards and stops at the first depth
 * with no node: for a name under no stored suffix (most names, with only built-in zones) that is
 * one Map miss. A node with a value is confirmed byte by byte before it counts, so a hash
 * collision costs a comparison, never a wrong answer.
 */
import { MAX_LABEL_LENGTH, MAX_NAME_LENGTH, nameFromString } from "../dns/wire.ts";

/** Most labels a wire name can have: 255 bytes of 1-byte labels plus the root. */
const MAX_LABELS = 128;

/** One stored suffix or an ancestor of one (value undefined); `next` chains hash collisions. */
interface Node<V> {
  /** Lower-cased wire form of this suffix. */
  readonly wire: Uint8Array;
  readonly depth: number;
  value: V | undefined;
  hasValue: boolean;
  next: Node<V> | null;
}

// Label start offsets of the name being looked up; lookups are synchronous, so one is enough.
const labelStarts = new Int32Array(MAX_LABELS);

/** ASCII lower-casing of one byte. */
function lower(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
/** Keeps hashes within V8's small-integer range, so Map keys never box. */
const HASH_MASK = 0x3fffffff;

/** Hash of one more label (bytes `[start, start + 1 + len)` of `wire`) on top of `h`. */
function hashLabel(h: number, wire: Uint8Array, start: number): number {
  const len = wire[start];
  h = Math.imul(h ^ len, FNV_PRIME);
  for (let i = start + 1, end = start + 1 + len; i < end; i++) {
    h = Math.imul(h ^ lower(wire[i]), FNV_PRIME);
  }
  return h;
}

/**
 * Records where each label of `wire` starts, left to right, in `labelStarts`; returns the number
 * of labels (root excluded), or -1 when `wire` is not a well-formed uncompressed name.
 */
function splitLabels(wire: Uint8Array): number {
  let p = 0;
  let n = 0;
  const end = Math.min(wire.length, MAX_NAME_LENGTH);
  while (p < end) {
    const len = wire[p];
    if (len === 0) return p + 1 === wire.length ? n : -1;
    if (len > MAX_LABEL_LENGTH || n === MAX_LABELS - 1) return -1;
    labelStarts[n++] = p;
    p += 1 + len;
  }
  return -1;
}

/** True when `node.wire` equals `wire` from offset `at` to its end, ignoring ASCII case. */
function matchesAt<V>(node: Node<V>, wire: Uint8Array, at: number): boolean {
  const stored = node.wire;
  const n = stored.length;
  if (wire.length - at !== n) return false;
  for (let i = 0; i < n; i++) if (lower(wire[at + i]) !== stored[i]) return false;
  return true;
}

/** The wire form of a name given as text or wire, lower-cased and checked. */
function toWire(name: Uint8Array | string): Uint8Array {
  const wire = typeof name === "string" ? nameFromString(name) : name;
  if (splitLabels(wire) < 0) throw new RangeError("not an uncompressed wire name");
  return wire.map(lower);
}

/** What matched: the value and how many labels the matching suffix has (0 for the root). */
export interface SuffixMatch<V> {
  value: V;
  depth: number;
}

/** A longest-suffix table over domain names; see the module comment. */
export class SuffixTable<V> {
  #nodes = new Map<number, Node<V>>();
  #root: V | undefined = undefined;
  #hasRoot = false;
  #size = 0;
  // Reused result of `match`, so the hot path allocates nothing.
  #match: SuffixMatch<V> = { value: undefined as V, depth: 0 };

  /** Number of suffixes with a value (the root included). */
  get size(): number {
    return this.#size;
  }

  /**
   * Stores `value` for the suffix `name` (text like "corp.example" or "." for the root, or wire
   * form); replaces and returns the previous value, if any. Throws RangeError on an invalid name.
   */
  set(name: Uint8Array | string, value: V): V | undefined {
    const wire = toWire(name);
    const labels = splitLabels(wire);
    if (labels === 0) {
      const old = this.#root;
      if (!this.#hasRoot) this.#size++;
      this.#root = value;
      this.#hasRoot = true;
      return old;
    }
    let h = FNV_OFFSET;
    let node: Node<V> | null = null;
    for (let d = 1; d <= labels; d++) {
      const at = labelStarts[labels - d];
      h = hashLabel(h, wire, at);
      node = this.#nodeAt(h & HASH_MASK, wire, at, d);
    }
    const old = node!.value;
    if (!node!.hasValue) this.#size++;
    node!.value = value;
    node!.hasValue = true;
    return old;
  }

  /** The value stored for exactly the suffix `name`, if any (no suffix matching). */
  get(name: Uint8Array | string): V | undefined {
    const wire = toWire(name);
    const m = this.match(wire);
    return m && m.depth === splitLabels(wire) ? m.value : undefined;
  }

  /** The value of the longest stored suffix of `wire`, or undefined. Allocation-free. */
  lookup(wire: Uint8Array): V | undefined {
    const m = this.match(wire);
    return m === null ? undefined : m.value;
  }

  /**
   * The longest stored suffix of `wire` with its depth, or null. The returned object is reused
   * by the next call: read it at once. A malformed name matches only the root.
   */
  match(wire: Uint8Array): SuffixMatch<V> | null {
    const out = this.#match;
    let found = false;
    if (this.#hasRoot) {
      out.value = this.#root!;
      out.depth = 0;
      found = true;
    }
    const labels = this.#nodes.size === 0 ? 0 : splitLabels(wire);
    let h = FNV_OFFSET;
    for (let d = 1; d <= labels; d++) {
      const at = labelStarts[labels - d];
      h = hashLabel(h, wire, at);
      const head = this.#nodes.get(h & HASH_MASK);
      if (head === undefined) break; // nothing stored at or below this suffix
      for (let node: Node<V> | null = head; node !== null; node = node.next) {
        if (node.hasValue && node.depth === d && matchesAt(node, wire, at)) {
          out.value = node.value!;
          out.depth = d;
          found = true;
          break;
        }
      }
    }
    return found ? out : null;
  }

  /**
   * The value stored for exactly `wire` (no suffix matching), or undefined: for data that
   * belongs to one name, such as local records. Allocation-free.
   */
  exact(wire: Uint8Array): V | undefined {
    const node = this.#fullNode(wire);
    if (node === null) return splitLabels(wire) === 0 && this.#hasRoot ? this.#root : undefined;
    return node.hasValue ? node.value : undefined;
  }

  /**
   * True when `wire` is a stored name or an ancestor of one: a name that exists in the table's
   * tree (an empty non-terminal when it has no value of its own).
   */
  covers(wire: Uint8Array): boolean {
    return this.#fullNode(wire) !== null || (splitLabels(wire) === 0 && this.#nodes.size > 0);
  }

  /** The node (valued or not) for exactly `wire`, or null; never the root. */
  #fullNode(wire: Uint8Array): Node<V> | null {
    const labels = this.#nodes.size === 0 ? 0 : splitLabels(wire);
    let h = FNV_OFFSET;
    let at = 0;
    for (let d = 1; d <= labels; d++) {
      at = labelStarts[labels - d];
      h = hashLabel(h, wire, at);
      if (!this.#nodes.has(h & HASH_MASK)) return null;
    }
    if (labels === 0) return null;
    for (let n = this.#nodes.get(h & HASH_MASK) ?? null; n !== null; n = n.next) {
      if (n.depth === labels && matchesAt(n, wire, 0)) return n;
    }
    return null;
  }

  /** Every stored suffix (presentation form is the caller's business) with its value. */
  *entries(): IterableIterator<[Uint8Array, V]> {
    if (this.#hasRoot) yield [new Uint8Array(1), this.#root!];
    for (const head of this.#nodes.values()) {
      for (let n: Node<V> | null = head; n !== null; n = n.next) {
        if (n.hasValue) yield [n.wire, n.value!];
      }
    }
  }

  /** The node for the suffix of `wire` starting at `at` (depth `depth`), created if missing. */
  #nodeAt(key: number, wire: Uint8Array, at: number, depth: number): Node<V> {
    const head = this.#nodes.get(key);
    for (let n = head ?? null; n !== null; n = n.next) {
      if (n.depth === depth && matchesAt(n, wire, at)) return n;
    }
    const node: Node<V> = {
      wire: wire.slice(at),
      depth,
      value: undefined,
      hasValue: false,
      next: head ?? null,
    };
    this.#nodes.set(key, node);
    return node;
  }
}
