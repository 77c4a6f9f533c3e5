import { spawn } from "node:child_process";
import * as path from "node:path";
import { LOAD_CORE, pinned } from "./processes.js";

// A fleet of streams held open while something is measured beside it: the
// load client's fan-out with a hold, on the load core. bench/capacity.ts
// measures new calls and a drain against it; bench/heap.ts snapshots the
// server's heap while it runs.

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

export interface FleetTask {
  port: number;
  pid: number;
  streams: number;
  perConnection: number;
  intervalMs: number;
  /** How long the streams run between the last one's start and the window. Default 5 intervals. */
  settleMs?: number;
  /** The window over which delivery, lateness and CPU are measured. */
  windowMs: number;
  /** How long the streams stay open after the window closed (the fleet then exits by itself). */
  holdMs: number;
}

/** What the load client measured over the window (bench/load-client.ts fanout()). */
export interface Fanout {
  started: number;
  openMs: number;
  rssKiBBefore: number;
  rssKiBWith: number;
  deliveredPerSec: number;
  offeredPerSec: number;
  p99LatenessMs: number;
  maxLatenessMs: number;
  cpuPct: number;
  clientCpuPct: number;
  errors: number;
}

/**
 * Opens the fleet with `client` (the compiled load client); calls `measuring`
 * when its window opens, and resolves with the window's figures when it
 * closes, the streams still open for `holdMs`.
 */
export function holdFleet(client: string, task: FleetTask, measuring: () => void = () => {}): Promise<Fanout> {
  const [cmd, args] = pinned(LOAD_CORE, [
    process.execPath,
    "--max-old-space-size=8192",
    client,
    JSON.stringify({ mode: "fanout", ...task }),
  ]);
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"], cwd: root });
  return new Promise((resolve, reject) => {
    let pending = "";
    child.stdout.on("data", (d: Buffer) => {
      pending += d.toString();
      let nl = pending.indexOf("\n");
      while (nl !== -1) {
        const line = JSON.parse(pending.slice(0, nl)) as { measuring?: true; error?: string } & Fanout;
        pending = pending.slice(nl + 1);
        if (line.error !== undefined) reject(new Error(line.error));
        else if (line.measuring === true) measuring();
        else resolve(line);
        nl = pending.indexOf("\n");
      }
    });
    child.once("exit", () => reject(new Error("the fleet exited before its window closed")));
  });
}
