/**
 * One timer for the deadlines of every query on a channel, instead of a timer per query: at tens
 * of thousands of queries a second, arming and cancelling a host timer for each (a `Timeout`
 * object, a closure, a cancel closure) was a visible share of the miss path's CPU and garbage.
 *
 * Deadlines sit in a binary min-heap of plain numbers (no object per entry). The owner never
 * removes an entry when its query is answered: an entry is a (deadline, key, token) triple, and
 * when it falls due the owner is asked whether that key still holds that token (the query is
 * still waiting). Answered entries are dropped when they reach the top, or all at once by
 * `compact`, which the owner calls when they outnumber the live ones, so the heap stays
 * proportional to the queries in flight. The one timer is armed for the earliest deadline in the
 * heap, re-armed only when an earlier one arrives, and every deadline fires exactly when due on
 * the injected clock; entries due at the same time fire in token order (owners use increasing
 * tokens, so that is the order they were added in).
 */
import type { Cancel, Clock } from "../sys/clock.ts";

/** Deadlines of many keyed entries, served by one timer on the injected clock. */
export class DeadlineQueue {
  #at: number[] = [];
  #key: number[] = [];
  #token: number[] = [];
  #cancel: Cancel | null = null;
  /** When the armed timer fires (Infinity when none is armed). */
  #armedAt = Infinity;

  /**
   * `onDue(key, token)` runs once for every entry whose deadline has come, earliest first; the
   * owner decides whether it still matters (it may add entries from inside the call).
   */
  constructor(
    private readonly clock: Clock,
    private readonly onDue: (key: number, token: number) => void,
  ) {}

  /** Entries held, answered ones included until they are dropped. */
  get size(): number {
    return this.#at.length;
  }

  /** Whether a host timer is armed (tests; none while the queue is empty). */
  get armed(): boolean {
    return this.#cancel !== null;
  }

  /** Adds an entry due at `deadline` (a time on the clock). */
  add(deadline: number, key: number, token: number): void {
    const at = this.#at;
    let i = at.length;
    at.push(deadline);
    this.#key.push(key);
    this.#token.push(token);
    // Sift up.
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!earlier(deadline, token, at[parent], this.#token[parent])) break;
      this.#move(parent, i);
      i = parent;
    }
    this.#set(i, deadline, key, token);
    if (deadline < this.#armedAt) this.#arm(deadline);
  }

  /** Drops every entry for which `live(key, token)` is false, in one pass. */
  compact(live: (key: number, token: number) => boolean): void {
    const at: number[] = [];
    const keys: number[] = [];
    const tokens: number[] = [];
    for (let i = 0; i < this.#at.length; i++) {
      if (!live(this.#key[i], this.#token[i])) continue;
      at.push(this.#at[i]);
      keys.push(this.#key[i]);
      tokens.push(this.#token[i]);
    }
    this.#at = at;
    this.#key = keys;
    this.#token = tokens;
    // Re-heapify (Floyd): O(n).
    for (let i = (at.length >> 1) - 1; i >= 0; i--) this.#siftDown(i);
    if (at.length === 0) this.clear();
    // A timer armed for a dropped entry fires early, finds nothing due and re-arms: cheaper
    // than re-arming here on every compaction.
  }

  /** Drops every entry and the timer. */
  clear(): void {
    this.#at = [];
    this.#key = [];
    this.#token = [];
    this.#disarm();
  }

  #fire(): void {
    this.#cancel = null;
    this.#armedAt = Infinity;
    const now = this.clock.now();
    while (this.#at.length > 0 && this.#at[0] <= now) {
      const key = this.#key[0];
      const token = this.#token[0];
      this.#pop();
      this.onDue(key, token);
    }
    if (this.#at.length > 0 && this.#at[0] < this.#armedAt) this.#arm(this.#at[0]);
  }

  #arm(deadline: number): void {
    this.#cancel?.();
    this.#armedAt = deadline;
    this.#cancel = this.clock.schedule(deadline - this.clock.now(), () => this.#fire());
  }

  #disarm(): void {
    this.#cancel?.();
    this.#cancel = null;
    this.#armedAt = Infinity;
  }

  #pop(): void {
    const at = this.#at;
    const last = at.length - 1;
    if (last > 0) this.#move(last, 0);
    at.pop();
    this.#key.pop();
    this.#token.pop();
    if (last > 1) this.#siftDown(0);
  }

  #siftDown(i: number): void {
    const at = this.#at;
    const n = at.length;
    const deadline = at[i];
    const key = this.#key[i];
    const token = this.#token[i];
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && earlier(at[right], this.#token[right], at[left], this.#token[left])
        ? right
        : left;
      if (!earlier(at[child], this.#token[child], deadline, token)) break;
      this.#move(child, i);
      i = child;
    }
    this.#set(i, deadline, key, token);
  }

  #move(from: number, to: number): void {
    this.#at[to] = this.#at[from];
    this.#key[to] = this.#key[from];
    this.#token[to] = this.#token[from];
  }

  #set(i: number, deadline: number, key: number, token: number): void {
    this.#at[i] = deadline;
    this.#key[i] = key;
    this.#token[i] = token;
  }
}

/** Heap order: by deadline, then by token. */
function earlier(at: number, token: number, otherAt: number, otherToken: number): boolean {
  return at < otherAt || (at === otherAt && token < otherToken);
}
