// How long to wait before the next attempt, and a wait that an abort cuts
// short. Full jitter ("Exponential Backoff And Jitter", AWS Architecture
// Blog): a uniform wait in [0, cap) with a cap that doubles per failure, so
// that the clients a restart cut off do not all come back at the same moment.

export interface BackoffOptions {
  /** The cap of the first wait, in ms. */
  initialMs: number;
  /** The largest cap, in ms. */
  maxMs: number;
  /** Returns a number in [0, 1). */
  random: () => number;
}

/** The wait before attempt `failures + 1`, after `failures` (from 1) failed attempts in a row. */
export function backoffDelay(failures: number, options: BackoffOptions): number {
  const cap = Math.min(options.maxMs, options.initialMs * 2 ** (failures - 1));
  return Math.round(options.random() * cap);
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects, so the caller decides what an abort means. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}
