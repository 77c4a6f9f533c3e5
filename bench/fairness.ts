import { measurePace, type Road, startFastReaders } from "../test/support/fast-readers.js";

// Figure 6: fairness. While N curl processes read interval-0 streams as fast
// as they can on one road, a well-behaved client streams at 100 ms and
// /healthz is probed every 50 ms on fresh connections: the worst gap between
// two of its messages and the worst /healthz round trip. The readers and the
// probe are the tests' own (test/support/fast-readers.ts), pinned here to the
// load core.

export const GOOD_INTERVAL_MS = 100;
const GOOD_MESSAGES = 20;

export interface FairnessSample {
  worstGapMs: number;
  worstHealthzMs: number;
}

/** One case on a running server: `count` fast readers on `road`. */
export async function measureFairness(
  port: number,
  road: Road,
  count: number,
  loadCore: string | undefined,
  streamsLive: () => Promise<number>,
): Promise<FairnessSample> {
  const url = `http://127.0.0.1:${port}`;
  const readers = startFastReaders(url, road, count, loadCore);
  try {
    const deadline = performance.now() + 30_000;
    // A poll that fails is polled again: while a hundred readers connect, one
    // scrape was seen to fail now and then, with the server serving on.
    let lastError: unknown;
    for (;;) {
      const live = await streamsLive().catch((e: unknown) => {
        lastError = e;
        return -1;
      });
      if (live >= count) break;
      if (performance.now() > deadline) {
        const why = lastError === undefined ? "" : ` (last scrape: ${String((lastError as Error).cause ?? lastError)})`;
        throw new Error(`${count} fast readers on ${road} did not all start${why}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const pace = await measurePace(url, GOOD_INTERVAL_MS, GOOD_MESSAGES);
    if (pace.messages !== GOOD_MESSAGES) {
      throw new Error(`the good client got ${pace.messages} of ${GOOD_MESSAGES} messages beside ${road} readers`);
    }
    return { worstGapMs: pace.worstGapMs, worstHealthzMs: pace.worstHealthzMs };
  } finally {
    await readers.stop();
  }
}
