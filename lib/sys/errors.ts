/** A short, log-friendly description of a thrown value (never a stack trace). */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
