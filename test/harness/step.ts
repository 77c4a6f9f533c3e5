import { readFileSync } from "node:fs";
import { GOOD_INTERVAL_MS, h2Get, paceProblems } from "../support/attack.js";
import { startGoodClient } from "../support/good-client.js";
import { fdCount, rssMiB, until } from "../support/server-watch.js";
import { type Plan, runAttack } from "./attacks.js";
import type { Random } from "./random.js";

// One harness step and its checks: 1–3 generated attacks at once beside a
// good client, then the bounds: the process and its workers live (the same
// PIDs, none restarted), the good client kept its pace, /healthz on a fresh
// connection answered within 1 s, and RSS and fds come back to their
// baseline within RECOVER_MS and RSS_RECOVER_MS (polled with a deadline). The RSS baseline is
// taken after a warm-up step of every kind: V8 and malloc keep some of the
// memory a first burst made them take, and what a step must not do is add
// to it for good.

/** How long descriptors get to come back once a step's attackers left. */
export const RECOVER_MS = 15_000;
/**
 * How long memory gets. A step's garbage stays in V8's heap until something
 * allocates again or V8's memory reducer notices the process is idle, which
 * takes 10 to 30 s: after a step of floods with the fast path off, the heap
 * held 133 MiB used and 155 MiB in all; idle, 22 MiB used within 10 s and 23
 * MiB in all within 30 s, RSS back from 239 to 106 MiB. A leak stays.
 */
export const RSS_RECOVER_MS = 60_000;
/**
 * RSS may settle this far above its warmed-up baseline, per process: V8
 * sizes its heap for the garbage of the busiest recent step (756 zero-window
 * streams left 40 to 170 MiB of heap in use between collections, with no
 * growth over 15 rounds), and a leak passes this within a few steps.
 */
export const RSS_SLACK_MIB = 128;

/** The primary and its workers (the children /proc lists), so that figures sum over all. */
export function processTree(pid: number): number[] {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
  return [pid, ...(children === "" ? [] : children.split(/\s+/).map(Number))];
}

export const totalRss = (pids: number[]) => pids.reduce((a, p) => a + rssMiB(p), 0);
export const totalFds = (pids: number[]) => pids.reduce((a, p) => a + fdCount(p), 0);

export interface Baseline {
  pids: number[];
  rssMiB: number;
  fds: number;
}

export interface StepFigures {
  worstGapMs: number;
  worstHealthzMs: number;
  freshHealthzMs: number;
  rssPeakMiB: number;
  rssAfterMiB: number;
  fdsAfter: number;
  refusals: number;
}

/** `checkRss` false for the warm-up, whose end is the baseline the later steps return to. */
export async function runStep(
  url: string,
  base: Baseline,
  plans: Plan[],
  rnd: Random,
  checkRss = true,
): Promise<StepFigures> {
  const client = await startGoodClient(url, { intervalMs: GOOD_INTERVAL_MS });
  let rssPeakMiB = 0;
  const sampler = setInterval(() => {
    try {
      rssPeakMiB = Math.max(rssPeakMiB, totalRss(base.pids));
    } catch {}
  }, 100);
  const settled = await Promise.allSettled(
    plans.map(async (p) => {
      await new Promise((r) => setTimeout(r, rnd.int(0, 300)));
      return runAttack(url, p, rnd);
    }),
  );
  clearInterval(sampler);
  const pace = await client.stop();
  const problems = paceProblems(pace);
  for (const s of settled) if (s.status === "rejected") problems.push(`an attack threw: ${String(s.reason)}`);
  const alive = processTree(base.pids[0] ?? 0);
  if (alive.join(",") !== base.pids.join(",")) problems.push(`processes ${base.pids} became ${alive}`);
  const started = performance.now();
  const status = await h2Get(url, "/healthz").catch((e: unknown) => String(e));
  const freshHealthzMs = performance.now() - started;
  if (status !== 200 || freshHealthzMs >= 1000) problems.push(`fresh /healthz: ${status} in ${freshHealthzMs} ms`);
  const fdsAfter = await until(
    () => totalFds(base.pids),
    (n) => n <= base.fds,
    RECOVER_MS,
    `${base.fds} fds`,
  ).catch((e: unknown) => {
    problems.push(String(e));
    return totalFds(base.pids);
  });
  const rssAfterMiB = await until(
    () => totalRss(base.pids),
    (m) => !checkRss || m <= base.rssMiB + RSS_SLACK_MIB * base.pids.length,
    RSS_RECOVER_MS,
    `RSS back within ${RSS_SLACK_MIB * base.pids.length} MiB of ${base.rssMiB.toFixed(1)}`,
  ).catch((e: unknown) => {
    problems.push(String(e));
    return totalRss(base.pids);
  });
  if (problems.length > 0) throw new Error(problems.join("; "));
  const refusals = settled.reduce((a, s) => a + (s.status === "fulfilled" ? s.value.refusals : 0), 0);
  return {
    worstGapMs: pace.worstGapMs,
    worstHealthzMs: Math.max(pace.worstHealthzMs, freshHealthzMs),
    freshHealthzMs,
    rssPeakMiB,
    rssAfterMiB,
    fdsAfter,
    refusals,
  };
}
