import cluster, { type Worker } from "node:cluster";
import type { Config } from "../config/config.js";
import { GroupMetrics } from "../ops/group-metrics.js";
import type { Logger } from "../ops/log.js";
import { exitOnStopSignals } from "./shutdown.js";
import type { FromWorker, ToWorker } from "./worker-link.js";

// --workers N, N > 1: this process is the primary of a node:cluster group. It
// serves nothing itself. It forks N workers, each running the entry point
// again as a whole server; they share the one port (the primary accepts
// connections and hands each to a worker in turn, and every worker tells
// HTTP/1.1 from HTTP/2 on the sockets it gets). The primary:
// - starts a worker again when one exits, at once for the first exit, then
//   with a doubling wait, so that a crash loop does not spin; a worker that
//   served 30 s starts the count again. Workers that fail before any worker
//   ever served mean the configuration or the port is wrong: the primary
//   exits with the worker's status instead of looping;
// - on SIGTERM/SIGINT tells every worker to shut down as a single process
//   would (readiness 503, streams end UNAVAILABLE, within --shutdown-grace),
//   waits for them all, and exits 0; a second signal exits at once with 1;
// - passes SIGHUP on to every worker (each reloads --auth-token-file);
// - gathers GET /metrics for the worker that was asked (group-metrics.ts).
// A worker whose primary is gone exits: node:cluster ends a worker whose IPC
// channel closes.

/** The wait before starting a worker again after the n-th exit in a row (n from 1): none, then 0.5 s doubling to 30 s. */
function restartDelayMs(exitsInARow: number): number {
  if (exitsInARow <= 1) return 0;
  return Math.min(MAX_RESTART_DELAY_MS, FIRST_RESTART_DELAY_MS * 2 ** (exitsInARow - 2));
}

const FIRST_RESTART_DELAY_MS = 500;
const MAX_RESTART_DELAY_MS = 30_000;
/** A worker that lived this long was no crash loop: its exit counts as the first in a row. */
const STABLE_AFTER_MS = 30_000;
/** How long a gather of /metrics waits for the workers; one that does not answer counts with its last snapshot. */
const GATHER_TIMEOUT_MS = 2000;
/** Beyond --shutdown-grace, for the workers' last telemetry flush (1 s at least) and their exit. */
const EXIT_MARGIN_MS = 3000;

interface Gather {
  waiting: Set<number>;
  got(worker: number): void;
}

export function runPrimary(config: Config, logger: Logger): void {
  // Structured clone, not JSON, on the IPC channel: metric values may be NaN.
  cluster.setupPrimary({ serialization: "advanced" });
  const primary = new Primary(config, logger);
  cluster.on("message", (worker: Worker, message: FromWorker) => primary.onMessage(worker, message));
  cluster.on("exit", (worker: Worker, code: number | null, signal: NodeJS.Signals | null) =>
    primary.onExit(worker, code, signal),
  );
  // 1 when a worker did not exit 0: the group did not drain as it should.
  exitOnStopSignals(logger, () => primary.shutdown().then((ok) => (ok ? 0 : 1)));
  // Each worker reads --auth-token-file itself: SIGHUP to the primary reloads it everywhere.
  if (config.authTokenFile !== undefined) {
    process.on("SIGHUP", () => {
      for (const w of workers()) w.process.kill("SIGHUP");
    });
  }
  logger.info("primary started", { workers: config.workers });
  for (let i = 0; i < config.workers; i++) primary.fork();
}

function workers(): Worker[] {
  return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
}

function send(worker: Worker, message: ToWorker): void {
  if (worker.isConnected()) worker.send(message, undefined, undefined, () => {});
}

class Primary {
  private readonly metrics: GroupMetrics | undefined;
  private readonly bornAt = new Map<number, number>();
  private readonly serving = new Set<number>();
  private readonly restarts = new Set<NodeJS.Timeout>();
  private readonly gathers = new Map<number, Gather>();
  private nextGather = 0;
  private everServed = false;
  private exitsInARow = 0;
  private drained: ((clean: boolean) => void) | undefined;
  private draining = false;
  private clean = true;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    this.metrics = config.metrics ? new GroupMetrics() : undefined;
  }

  fork(): void {
    const worker = cluster.fork();
    this.bornAt.set(worker.id, performance.now());
    // A failed send on a channel that just closed: the 'exit' that follows says what happened.
    worker.on("error", (e: Error) =>
      this.logger.debug("worker channel error", { worker: worker.id, error: e.message }),
    );
    this.logger.info("worker started", { worker: worker.id, worker_pid: worker.process.pid });
  }

  onMessage(worker: Worker, message: FromWorker): void {
    switch (message.type) {
      case "stream-service:serving":
        this.serving.add(worker.id);
        this.everServed = true;
        this.metrics?.setWorkers(this.serving.size);
        this.logger.info("worker serving", { worker: worker.id, worker_pid: worker.process.pid });
        // Forked before the drain began: it drains too.
        if (this.draining) send(worker, { type: "stream-service:shutdown" });
        break;
      case "stream-service:metrics-request":
        this.gather().then(
          (text) => send(worker, { type: "stream-service:metrics", id: message.id, text }),
          (e: unknown) =>
            send(worker, {
              type: "stream-service:metrics",
              id: message.id,
              error: e instanceof Error ? e.message : String(e),
            }),
        );
        break;
      case "stream-service:metrics-snapshot":
        this.metrics?.update(worker.id, message.snapshot);
        this.gathers.get(message.id)?.got(worker.id);
        break;
    }
  }

  onExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    const livedMs = Math.round(performance.now() - (this.bornAt.get(worker.id) ?? 0));
    this.bornAt.delete(worker.id);
    this.serving.delete(worker.id);
    this.metrics?.retire(worker.id);
    this.metrics?.setWorkers(this.serving.size);
    for (const g of this.gathers.values()) if (g.waiting.has(worker.id)) g.got(worker.id);
    const fields = {
      worker: worker.id,
      worker_pid: worker.process.pid,
      code: code ?? undefined,
      signal: signal ?? undefined,
    };
    if (this.draining) {
      // Those that did not serve yet got SIGTERM, and had no handler for it yet.
      if (code !== 0 && signal !== "SIGTERM") this.clean = false;
      this.logger.info("worker exited", { ...fields, lived_ms: livedMs });
      if (this.bornAt.size === 0) this.drained?.(this.clean);
      return;
    }
    if (!this.everServed) {
      this.logger.error("worker exited before any worker served; stopping", fields);
      // The other workers exit when this process does: their IPC channel closes.
      process.exit(typeof code === "number" && code !== 0 ? code : 1);
    }
    this.exitsInARow = livedMs >= STABLE_AFTER_MS ? 1 : this.exitsInARow + 1;
    const delayMs = restartDelayMs(this.exitsInARow);
    this.logger.warn("worker exited", { ...fields, lived_ms: livedMs, restart_in_ms: delayMs });
    const timer = setTimeout(() => {
      this.restarts.delete(timer);
      this.metrics?.workerRestarted();
      this.fork();
    }, delayMs);
    this.restarts.add(timer);
  }

  /** GET /metrics for the whole group: every serving worker's snapshot, or its last one after GATHER_TIMEOUT_MS. */
  private gather(): Promise<string> {
    const group = this.metrics;
    if (group === undefined) return Promise.reject(new Error("metrics are off"));
    const id = this.nextGather++;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.gathers.delete(id);
        resolve(group.render());
      };
      const timer = setTimeout(done, GATHER_TIMEOUT_MS);
      const waiting = new Set<number>();
      this.gathers.set(id, {
        waiting,
        got(worker) {
          waiting.delete(worker);
          if (waiting.size === 0) done();
        },
      });
      for (const w of workers()) {
        if (!this.serving.has(w.id) || !w.isConnected()) continue;
        waiting.add(w.id);
        send(w, { type: "stream-service:collect-metrics", id });
      }
      if (waiting.size === 0) done();
    });
  }

  shutdown(): Promise<boolean> {
    this.draining = true;
    for (const timer of this.restarts) clearTimeout(timer);
    this.restarts.clear();
    const started = performance.now();
    const { logger, config } = this;
    logger.info("shutting down", { workers: this.bornAt.size, grace_ms: config.shutdownGraceMs });
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        for (const w of workers()) {
          logger.warn("worker still running after the grace period, killing it", {
            worker: w.id,
            worker_pid: w.process.pid,
          });
          w.process.kill("SIGKILL");
        }
        finish(false);
      }, config.shutdownGraceMs + EXIT_MARGIN_MS);
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.drained = undefined;
        logger.info("shut down", { clean: ok, duration_ms: Math.round(performance.now() - started) });
        resolve(ok);
      };
      this.drained = finish;
      for (const w of workers()) {
        // One that does not serve yet has nothing to drain (and may not listen for the message yet).
        if (this.serving.has(w.id)) send(w, { type: "stream-service:shutdown" });
        else w.process.kill("SIGTERM");
      }
      if (this.bornAt.size === 0) finish(true);
    });
  }
}
