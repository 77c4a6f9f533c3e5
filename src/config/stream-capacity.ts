import { totalmem } from "node:os";
import { getHeapStatistics } from "node:v8";

// --max-streams auto: as many streams as the memory this process may use
// holds, at what a stream was measured to cost (docs/capacity.md), with room
// to spare. Two ceilings, the lower wins: the memory of the process's cgroup
// (a container's limit), else the machine's, shared by the workers; and
// V8's heap limit, since a stream's objects live on the heap. A fixed 50,000
// refused half of what a 24 GiB machine holds, and on a 512 MiB container
// would let streams run it out of memory.

/** Resident memory one stream takes, the costliest protocol (a connection each over HTTP/1.1), rounded up. */
export const RSS_KIB_PER_STREAM = 24;
/** Of it, what lives on V8's heap. */
export const HEAP_KIB_PER_STREAM = 8;
/** The share of the memory streams may take: the rest is the runtime, garbage between collections, buffers. */
const MEMORY_SHARE = 0.5;
/** The share of V8's heap limit streams may take, before collections run back to back. */
const HEAP_SHARE = 0.6;

export interface StreamCapacity {
  maxStreams: number;
  /** The memory the process group may use, and where that figure came from. */
  memoryBytes: number;
  memorySource: "cgroup" | "machine";
  /** Processes sharing it (--workers). */
  workers: number;
  heapLimitBytes: number;
  /** Which ceiling decided. */
  bound: "memory" | "heap";
}

export interface MemoryReading {
  /** process.constrainedMemory(): the cgroup's limit, or a huge number or undefined without one. */
  constrained: number | undefined;
  total: number;
  heapLimit: number;
}

export function readMemory(): MemoryReading {
  return {
    constrained: process.constrainedMemory?.(),
    total: totalmem(),
    heapLimit: getHeapStatistics().heap_size_limit,
  };
}

export function streamCapacity(workers: number, m: MemoryReading = readMemory()): StreamCapacity {
  const cgroup = m.constrained !== undefined && m.constrained > 0 && m.constrained < m.total;
  const memoryBytes = cgroup ? (m.constrained as number) : m.total;
  const byMemory = (memoryBytes * MEMORY_SHARE) / Math.max(1, workers) / (RSS_KIB_PER_STREAM * 1024);
  const byHeap = (m.heapLimit * HEAP_SHARE) / (HEAP_KIB_PER_STREAM * 1024);
  const bound = byHeap < byMemory ? "heap" : "memory";
  // In thousands, and never fewer than a thousand: a tiny container still serves.
  const maxStreams = Math.max(1000, Math.floor(Math.min(byMemory, byHeap) / 1000) * 1000);
  return {
    maxStreams,
    memoryBytes,
    memorySource: cgroup ? "cgroup" : "machine",
    workers,
    heapLimitBytes: m.heapLimit,
    bound,
  };
}

/** For --help and the docs: how `auto` is worked out. */
export const capacityRule =
  `auto: half the memory the process may use (its cgroup limit, else the machine's), shared by the workers, ` +
  `at ${RSS_KIB_PER_STREAM} KiB a stream, and at most ${HEAP_SHARE * 100}% of V8's heap limit at ${HEAP_KIB_PER_STREAM} KiB a stream; in thousands`;
