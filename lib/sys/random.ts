/**
 * Randomness enters the program only through a Random source. Query IDs sent upstream are
 * a defence against spoofed replies, so the system source is cryptographic.
 */

/** A source of random 16-bit values (DNS message IDs) and unit floats (jitter). */
export interface Random {
  /** A uniformly random integer in [0, 65535]. */
  uint16(): number;
  /** A uniformly random float in [0, 1), for backoff jitter. */
  float(): number;
}

const BATCH = 4096;

/** Draws from `crypto.getRandomValues` in batches, so each ID costs an array read. */
export function cryptoRandom(): Random {
  const words = new Uint16Array(BATCH);
  let next = BATCH;
  const word = () => {
    if (next === BATCH) {
      crypto.getRandomValues(words);
      next = 0;
    }
    return words[next++];
  };
  return {
    uint16: word,
    float: () => (word() * 65536 + word()) / 4294967296,
  };
}
