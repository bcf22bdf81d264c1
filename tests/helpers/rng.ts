/**
 * The one seeded random generator of the tests (xorshift32): the same sequence on every run with
 * the same seed, so fuzz and differential inputs reproduce from their seed. `seededRandom` in
 * fake_clock.ts adapts it to lib/sys's Random.
 */

/** xorshift32 with an explicit seed: the same inputs on every run with the same seed. */
export class Rng {
  #s: number;
  constructor(readonly seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  u32(): number {
    let s = this.#s;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.#s = s >>> 0;
    return this.#s;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}
