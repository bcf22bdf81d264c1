/**
 * Waiting without sleeping: yields to the event loop (microtask turns first, then zero-delay
 * macrotask turns, never a timer of any length) until a condition holds, for state that socket
 * events change. Bounded: fails the test when the condition does not hold within the turns.
 */
import assert from "node:assert/strict";

/** Macrotask turns {@link waitFor} allows by default. */
export const WAIT_TURNS = 2000;

/**
 * Resolves once `cond()` holds; fails with "timed out waiting until `what`" after `turns`
 * event-loop turns (no fake time passes meanwhile).
 */
export async function waitFor(
  cond: () => boolean,
  what = "the condition holds",
  turns = WAIT_TURNS,
): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await Promise.resolve();
  for (let i = 0; i < turns && !cond(); i++) await new Promise((r) => setTimeout(r, 0));
  assert.ok(cond(), `timed out waiting until ${what}`);
}
