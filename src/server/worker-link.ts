import type { Registry } from "prom-client";
import type { MetricsSnapshot } from "../ops/group-metrics.js";
import type { MetricsGroup } from "../ops/metrics.js";

// A worker's side of --workers: what it says to the primary over the cluster's
// IPC channel, and what it answers. The primary's side is workers.ts.

/** From the primary to a worker. */
export type ToWorker =
  | { type: "stream-service:shutdown" }
  | { type: "stream-service:collect-metrics"; id: number }
  | { type: "stream-service:metrics"; id: number; text?: string; error?: string };

/** From a worker to the primary. */
export type FromWorker =
  | { type: "stream-service:serving" }
  | { type: "stream-service:metrics-request"; id: number }
  | { type: "stream-service:metrics-snapshot"; id: number; snapshot: MetricsSnapshot };

/** How long GET /metrics waits for the primary's gather, which itself waits 2 s at most for the workers. */
const SCRAPE_TIMEOUT_MS = 5000;

export interface WorkerLink {
  /** This worker's part in the group's GET /metrics. */
  readonly metrics: MetricsGroup;
  /** Tells the primary this worker serves; `onShutdown` runs when the primary drains the group. */
  serving(onShutdown: () => void): void;
}

export function joinPrimary(): WorkerLink {
  const send = (message: FromWorker) => {
    // A primary that is gone ends this worker (node:cluster exits on 'disconnect'); nothing to report.
    if (process.connected) process.send?.(message, undefined, undefined, () => {});
  };
  let registry: Registry | undefined;
  let onShutdown: (() => void) | undefined;
  let nextScrape = 0;
  const scrapes = new Map<number, (answer: { text?: string; error?: string }) => void>();

  process.on("message", (message: ToWorker) => {
    switch (message.type) {
      case "stream-service:collect-metrics":
        // The primary waits for every worker: answer even with nothing to report.
        void (registry?.getMetricsAsJSON() ?? Promise.resolve([])).then(
          (snapshot) =>
            send({
              type: "stream-service:metrics-snapshot",
              id: message.id,
              snapshot: snapshot as unknown as MetricsSnapshot,
            }),
          () => send({ type: "stream-service:metrics-snapshot", id: message.id, snapshot: [] }),
        );
        break;
      case "stream-service:metrics":
        scrapes.get(message.id)?.(message);
        break;
      case "stream-service:shutdown":
        onShutdown?.();
        break;
    }
  });

  return {
    metrics: {
      join(r) {
        registry = r;
      },
      render() {
        return new Promise((resolve, reject) => {
          const id = nextScrape++;
          const timer = setTimeout(
            () => answer({ error: `no answer from the primary within ${SCRAPE_TIMEOUT_MS} ms` }),
            SCRAPE_TIMEOUT_MS,
          ).unref();
          const answer = ({ text, error }: { text?: string; error?: string }) => {
            clearTimeout(timer);
            scrapes.delete(id);
            if (text === undefined) reject(new Error(error ?? "no metrics from the primary"));
            else resolve(text);
          };
          scrapes.set(id, answer);
          send({ type: "stream-service:metrics-request", id });
        });
      },
    },
    serving(shutdown) {
      onShutdown = shutdown;
      send({ type: "stream-service:serving" });
    },
  };
}
