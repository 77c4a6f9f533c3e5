import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import { type GoodClientOptions, type GoodClientReport, startGoodClient } from "./good-client.js";
import { scrapeMetrics } from "./metrics-text.js";
import { listening, type ServerProc, serverEntry, startCommand, stop } from "./process.js";
import { fdCount, liveStreams, peakRssMiB, resetPeakRss, rssMiB, settledFds, until } from "./server-watch.js";

// The frame of every test in test/attacks/: a server process, a
// well-behaved client beside the attack, and what the attack cost.
//
// The bounds every attack is held to, for a 2-core machine shared with the
// attacker: the good client's NDJSON stream at 100 ms never waits 1 s or
// more between two messages, and each /healthz probe (every 50 ms) answers
// 200 within 1 s. Memory bounds differ by attack and are stated in each test.

export const GOOD_INTERVAL_MS = 100;
export const MAX_GAP_MS = 1000;
export const MAX_HEALTHZ_MS = 1000;

export interface Target {
  readonly srv: ServerProc;
  readonly pid: number;
  /** Open descriptors once the server served its first requests on both HTTP versions. */
  readonly baselineFds: number;
  stop(): Promise<number | string>;
}

export interface TargetOptions {
  /** The server's limit of open files (ulimit -n), lower than the test's own. */
  maxOpenFiles?: number;
}

/** `npm start`'s entry as a process on 127.0.0.1 and a free port, with `args`. */
export async function startTarget(args: string[] = [], options: TargetOptions = {}): Promise<Target> {
  const server = ["--import", "tsx", serverEntry, "--host", "127.0.0.1", "--port", "0", ...args];
  const proc =
    options.maxOpenFiles === undefined
      ? startCommand(process.execPath, server, { env: { LOG_FORMAT: "json" } })
      : // exec: the process the test watches is the server itself, not a shell.
        startCommand(
          "bash",
          ["-c", `ulimit -n ${options.maxOpenFiles} && exec "$@"`, "bash", process.execPath, ...server],
          { env: { LOG_FORMAT: "json" } },
        );
  const srv = await listening(proc);
  const pid = srv.child.pid ?? 0;
  // Descriptors opened lazily by a first request of each kind belong in the baseline.
  assert.equal(await h2Get(srv.url, "/healthz"), 200);
  await scrapeMetrics(srv.url);
  const baselineFds = await settledFds(pid);
  return { srv, pid, baselineFds, stop: () => stop(srv) };
}

/** One GET over HTTP/2 on a connection of its own; resolves with the status. */
export function h2Get(url: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request({ ":path": path });
    let status = 0;
    req.on("response", (h) => {
      status = Number(h[":status"]);
    });
    req.on("error", reject);
    req.resume();
    req.on("close", () => {
      session.close();
      resolve(status);
    });
  });
}

export interface Outcome<T> {
  /** What the attack returned. */
  result: T;
  /** The good client's figures over the whole attack. */
  pace: GoodClientReport;
  /** The server's resident memory before the attack, in MiB. */
  rssBeforeMiB: number;
  /** Its peak during the attack, in MiB. */
  rssPeakMiB: number;
  /** Peak minus before. */
  growthMiB: number;
}

/** Runs `attack` with a good client beside it, and measures the server's memory peak meanwhile. */
export async function underAttack<T>(
  target: Target,
  attack: () => Promise<T>,
  good: GoodClientOptions = {},
): Promise<Outcome<T>> {
  const client = await startGoodClient(target.srv.url, { intervalMs: GOOD_INTERVAL_MS, ...good });
  const rssBeforeMiB = rssMiB(target.pid);
  resetPeakRss(target.pid);
  const settled = await attack().then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  // Stopped in any case: a failed attack must not leave the process behind.
  const pace = await client.stop();
  if (!settled.ok) throw settled.error;
  const rssPeakMiB = peakRssMiB(target.pid);
  return { result: settled.value, pace, rssBeforeMiB, rssPeakMiB, growthMiB: rssPeakMiB - rssBeforeMiB };
}

/** The bounds the good client broke, if any: a message late, a probe failed or late. */
export function paceProblems(pace: GoodClientReport): string[] {
  const problems: string[] = [];
  if (pace.streamError !== undefined) problems.push(`the good client's stream failed: ${pace.streamError}`);
  if (pace.probeFailures > 0) {
    problems.push(`${pace.probeFailures} /healthz probes failed, the first with: ${pace.firstProbeFailure}`);
  }
  if (pace.probes === 0) problems.push("no /healthz probe answered");
  if (pace.worstGapMs >= MAX_GAP_MS) problems.push(`the good client's worst gap was ${pace.worstGapMs} ms`);
  if (pace.worstHealthzMs >= MAX_HEALTHZ_MS) problems.push(`/healthz took up to ${pace.worstHealthzMs} ms`);
  return problems;
}

/** The server's memory grew by less than `boundMiB`, or why not. */
export function memoryProblems(outcome: Outcome<unknown>, boundMiB: number): string[] {
  if (outcome.growthMiB < boundMiB) return [];
  return [
    `resident memory grew by ${outcome.growthMiB.toFixed(1)} MiB (from ${outcome.rssBeforeMiB.toFixed(1)} ` +
      `to a peak of ${outcome.rssPeakMiB.toFixed(1)}), bound ${boundMiB} MiB`,
  ];
}

/** Fails naming every bound broken, so that one report shows all of them. */
export function assertNone(problems: string[]): void {
  assert.ok(problems.length === 0, problems.join("; "));
}

/**
 * The good client kept its pace, the server's memory grew by less than
 * `memoryBoundMiB`, and once the attacker left everything was freed; fails
 * naming every bound broken, `also` among them.
 */
export async function assertHeld(
  target: Target,
  outcome: Outcome<unknown>,
  memoryBoundMiB: number,
  also: string[] = [],
): Promise<void> {
  const freed = await assertFreed(target).then(
    () => [],
    (e: unknown) => [e instanceof Error ? e.message : String(e)],
  );
  assertNone([...also, ...paceProblems(outcome.pace), ...memoryProblems(outcome, memoryBoundMiB), ...freed]);
}

/** Once the attacker left: no stream left open, descriptors back to the baseline. */
export async function assertFreed(target: Target, timeoutMs = 5000): Promise<void> {
  await until(
    () => liveStreams(target.srv.url),
    (n) => n === 0,
    timeoutMs,
    "streams_live 0",
  );
  await until(
    () => fdCount(target.pid),
    (n) => n <= target.baselineFds,
    timeoutMs,
    `${target.baselineFds} fds`,
  );
}

/** The figures of an outcome, one line, for the test's diagnostics. */
export function figures(outcome: Outcome<unknown>, extra: Record<string, unknown> = {}): string {
  const { pace } = outcome;
  return JSON.stringify({
    worstGapMs: pace.worstGapMs,
    worstHealthzMs: pace.worstHealthzMs,
    messages: pace.messages,
    probes: pace.probes,
    probeFailures: pace.probeFailures,
    rssBeforeMiB: round(outcome.rssBeforeMiB),
    rssPeakMiB: round(outcome.rssPeakMiB),
    growthMiB: round(outcome.growthMiB),
    ...extra,
  });
}

const round = (n: number) => Math.round(n * 10) / 10;

/** Resolves with how long `closed` took to settle, from now; rejects after `timeoutMs`, naming `what`. */
export async function closedWithin(closed: Promise<void>, timeoutMs: number, what: string): Promise<number> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    closed,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} was still open after ${timeoutMs} ms`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  return performance.now() - started;
}

/** The soft limit of open files of this process (`ulimit -n`); a server it starts inherits it. */
export function maxOpenFiles(): number {
  const line = readFileSync("/proc/self/limits", "utf8")
    .split("\n")
    .find((l) => l.startsWith("Max open files"));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === undefined || soft === "unlimited" ? Number.POSITIVE_INFINITY : Number(soft);
}
