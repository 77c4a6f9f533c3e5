import { execFile } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { scrapeMetrics, total } from "./metrics-text.js";

// What an attack costs a server process, read from /proc: resident memory,
// its peak, open file descriptors and CPU time; what the kernel holds for
// its connections (ss); and its live streams from /metrics.

const run = promisify(execFile);

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

/** CPU time the process has used, user and system, in ms (from /proc/PID/stat, in clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The share of one core the process used over the next `ms`, in percent. */
export async function cpuPercentOver(pid: number, ms: number): Promise<number> {
  const before = cpuMs(pid);
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return ((cpuMs(pid) - before) / (performance.now() - started)) * 100;
}

/**
 * What the kernel holds unsent or unacknowledged in the send queues of the
 * server's side of its connections on `port`, in bytes (ss's Send-Q).
 */
export async function serverSendQueueBytes(port: number): Promise<{ total: number; largest: number; sockets: number }> {
  const { stdout } = await run("ss", ["-Htn", "state", "established", `( sport = :${port} )`], {
    maxBuffer: 64 * 1024 * 1024,
  });
  let total = 0;
  let largest = 0;
  let sockets = 0;
  for (const line of stdout.split("\n")) {
    const sendQ = Number(line.trim().split(/\s+/)[1]);
    if (!Number.isFinite(sendQ) || line.trim() === "") continue;
    total += sendQ;
    largest = Math.max(largest, sendQ);
    sockets++;
  }
  return { total, largest, sockets };
}
