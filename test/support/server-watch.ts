import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { scrapeMetrics, total } from "./metrics-text.js";

// What an attack costs a server process, read from /proc: resident memory,
// its peak, and open file descriptors; and its live streams from /metrics.

function statusKiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (match === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]);
}

/** Resident memory now, in MiB. */
export function rssMiB(pid: number): number {
  return statusKiB(pid, "VmRSS") / 1024;
}

/**
 * Starts a new peak: the kernel resets the process's high-water mark of
 * resident memory (VmHWM) to what it holds now. Reading the peak afterwards
 * misses nothing, unlike sampling from a test process that an attack keeps busy.
 */
export function resetPeakRss(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

/** The largest resident memory since the last resetPeakRss(), in MiB. */
export function peakRssMiB(pid: number): number {
  return statusKiB(pid, "VmHWM") / 1024;
}

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The descriptor count once it held still for 300 ms (connections just closed take a moment to go); at most 5 s. */
export async function settledFds(pid: number): Promise<number> {
  let seen = fdCount(pid);
  let since = performance.now();
  const deadline = since + 5000;
  while (performance.now() - since < 300 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const now = fdCount(pid);
    if (now !== seen) {
      seen = now;
      since = performance.now();
    }
  }
  return seen;
}

/** Open streams over every protocol, as /metrics reports them. */
export async function liveStreams(url: string): Promise<number> {
  return total(await scrapeMetrics(url), "streams_live");
}

/** Resolves once `check` holds (checked every 20 ms); rejects after `timeoutMs` with the last value seen. */
export async function until<T>(
  read: () => T | Promise<T>,
  check: (value: T) => boolean,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last seen ${JSON.stringify(value)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
