/**
 * Request coalescing: while a query is in flight upstream, identical queries wait for the same
 * answer instead of sending their own. Saves upstream work under bursts, and narrows cache
 * poisoning (a spoofer gets one race per question in flight, not one per client query).
 */

/** Shares one in-flight call to `work` among all callers with the same key. */
export class Coalescer<T> {
  #inFlight = new Map<string, Promise<T>>();

  /** Number of distinct keys whose work has not settled yet. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Runs `work` unless a call for `key` is already in flight, in which case the caller gets that
   * call's promise. The key is forgotten as soon as the work settles, fulfilled or rejected (a
   * synchronous throw counts as a rejection), so a failure is never replayed to later callers.
   */
  run(key: string, work: () => Promise<T>): Promise<T> {
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    let started: Promise<T>;
    try {
      started = work();
    } catch (e) {
      return Promise.reject(e);
    }
    // then(ok, fail) rather than finally(): finally costs two more promises per call.
    const forget = () => {
      if (this.#inFlight.get(key) === shared) this.#inFlight.delete(key);
    };
    const shared: Promise<T> = Promise.resolve(started).then(
      (value) => {
        forget();
        return value;
      },
      (err) => {
        forget();
        throw err;
      },
    );
    this.#inFlight.set(key, shared);
    return shared;
  }
}
