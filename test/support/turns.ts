import assert from "node:assert/strict";

/**
 * Without the budget, streams that never wait hold the event loop for the
 * whole test: a timer that samples turns fires once, at the end. With it, a
 * turn is the slice (10 ms) and what else the loop did. The bound on the
 * median is loose on purpose: on a shared machine the process is also
 * descheduled, which lengthens turns as a wall clock sees them (measured
 * alone: 10-12 ms; with five other jobs on the two cores: up to 40 ms).
 */
export function assertTurns(turns: number[]): void {
  const sorted = [...turns].sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1] ?? Number.NaN;
  assert.ok(turns.length >= 5, `the event loop turned only ${turns.length} times`);
  assert.ok(median < 60, `the median turn took ${median.toFixed(1)} ms`);
}

/** Samples the turns of the event loop with a 1 ms timer: how long each one was, as /healthz would wait. */
export function turnProbe(): { turns: number[]; stop(): void } {
  const turns: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    turns.push(performance.now() - last);
    last = performance.now();
  }, 1);
  return { turns, stop: () => clearInterval(timer) };
}
