import { readFileSync } from "node:fs";

// How many files the process may open: every connection costs one. Node
// raises the soft limit to the hard one at start, so this is usually the
// hard limit (1,048,576 under Docker and containerd, 524,288 under systemd),
// but a container or a shell may set it far lower.

/** The soft limit on open files, from /proc/self/limits; undefined where that cannot be read (not Linux) or says unlimited. */
export function openFilesLimit(limitsFile = "/proc/self/limits"): number | undefined {
  let text: string;
  try {
    text = readFileSync(limitsFile, "utf8");
  } catch {
    return undefined;
  }
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
  const n = Number(soft);
  return soft === undefined || !Number.isSafeInteger(n) ? undefined : n;
}

/** Descriptors kept for what is not a connection: stdio, the listening socket, the page's files, DNS. */
const RESERVED_FILES = 128;

/** --max-connections, lowered when the open files limit would run out first. */
export function connectionLimit(configured: number, openFiles: number | undefined): number {
  if (openFiles === undefined) return configured;
  return Math.max(1, Math.min(configured, openFiles - RESERVED_FILES));
}
