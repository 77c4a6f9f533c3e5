import { type Aggregator, AggregatorRegistry, Counter, Gauge, Registry } from "prom-client";
import { collectProcessMetrics } from "./metrics.js";

// GET /metrics of a process group (--workers): the primary holds each
// worker's last snapshot (its registry as JSON, sent over IPC) and adds them
// up with prom-client's AggregatorRegistry.aggregate(), with its own process
// and the group's two metrics of its own. Counters, histograms and
// streams_live are summed. Two choices prom-client leaves to us:
// - a worker that exits takes its gauges with it, but its counters and
//   histograms stay in the sums, so they never go down while the primary
//   lives (a drop would read as a counter reset, and rate() would count the
//   whole total again);
// - event loop lag is the worst worker's (max), where prom-client averages:
//   one stalled worker stalls its streams, whatever the others do.

/** One metric as Registry.getMetricsAsJSON() gives it (prom-client's types call `type` an enum; it is a string). */
export interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator: Aggregator;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

export type MetricsSnapshot = MetricJson[];

/** Where the group's figure is not prom-client's default for the metric. */
const groupAggregators: Record<string, Aggregator> = {
  nodejs_eventloop_lag_seconds: "max",
  nodejs_eventloop_lag_mean_seconds: "max",
  nodejs_eventloop_lag_stddev_seconds: "max",
  nodejs_eventloop_lag_p50_seconds: "max",
  nodejs_eventloop_lag_p90_seconds: "max",
  nodejs_eventloop_lag_p99_seconds: "max",
  // prom-client omits it; the primary's is when the group started.
  process_start_time_seconds: "min",
  // A per-process limit, the same in each: a sum would mean nothing.
  process_max_fds: "max",
};

const cumulative = (m: MetricJson) => m.type === "counter" || m.type === "histogram";

export class GroupMetrics {
  /** The primary's own: its process metrics and the group's. */
  readonly registry = new Registry();
  private readonly workersGauge: Gauge;
  private readonly restarts: Counter;
  /** Each live worker's last snapshot, by cluster worker id. */
  private readonly latest = new Map<number, MetricsSnapshot>();
  /** The counters and histograms of the workers that exited, summed. */
  private retired: MetricsSnapshot = [];

  constructor() {
    collectProcessMetrics(this.registry);
    const registers = [this.registry];
    this.workersGauge = new Gauge({ name: "workers", help: "Worker processes serving now (--workers).", registers });
    this.restarts = new Counter({
      name: "worker_restarts_total",
      help: "Workers the primary started again after one exited.",
      registers,
    });
  }

  /** How many workers serve now. */
  setWorkers(count: number): void {
    this.workersGauge.set(count);
  }

  workerRestarted(): void {
    this.restarts.inc();
  }

  /** A worker's fresh snapshot; one that does not answer a gather keeps its last. */
  update(worker: number, snapshot: MetricsSnapshot): void {
    this.latest.set(worker, snapshot);
  }

  /** The worker exited: its gauges leave the group, its counters and histograms stay in the sums. */
  retire(worker: number): void {
    const last = this.latest.get(worker);
    this.latest.delete(worker);
    if (last === undefined) return;
    this.retired = aggregateSnapshots([this.retired, last.filter(cumulative)]);
  }

  /** The group's metrics, in the Prometheus text format. */
  async render(): Promise<string> {
    const own = (await this.registry.getMetricsAsJSON()) as unknown as MetricsSnapshot;
    return AggregatorRegistry.aggregate(withGroupAggregators([own, ...this.latest.values(), this.retired])).metrics();
  }
}

function withGroupAggregators(snapshots: MetricsSnapshot[]): MetricsSnapshot[] {
  return snapshots.map((s) =>
    s.map((m) => {
      const aggregator = groupAggregators[m.name];
      return aggregator === undefined ? m : { ...m, aggregator };
    }),
  );
}

function aggregateSnapshots(snapshots: MetricsSnapshot[]): MetricsSnapshot {
  // aggregate() builds metrics whose get() answers at once: no collect runs here.
  const registry = AggregatorRegistry.aggregate(snapshots);
  const metrics = registry.getMetricsAsArray() as unknown as { get(): MetricJson }[];
  return metrics.map((m) => m.get());
}
