import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { GroupMetrics, type MetricsSnapshot } from "../src/ops/group-metrics.js";
import { sample } from "./support/metrics-text.js";

// How the primary of --workers adds up its workers' metrics
// (src/ops/group-metrics.ts); test/workers.test.ts does it over real processes.

/** A worker's registry as the primary gets it: streams started and live, durations, and its event loop lag. */
async function workerSnapshot(started: number, live: number, lagP99: number): Promise<MetricsSnapshot> {
  const registry = new Registry();
  const registers = [registry];
  new Counter({ name: "streams_started_total", help: "h", labelNames: ["protocol"], registers }).inc(
    { protocol: "grpc" },
    started,
  );
  new Gauge({ name: "streams_live", help: "h", labelNames: ["protocol"], registers }).set({ protocol: "grpc" }, live);
  new Histogram({ name: "stream_duration_seconds", help: "h", buckets: [1, 10], registers }).observe(5);
  // prom-client's own lag gauges are averaged across a cluster unless we say otherwise.
  new Gauge({ name: "nodejs_eventloop_lag_p99_seconds", help: "h", registers, aggregator: "average" }).set(lagP99);
  return (await registry.getMetricsAsJSON()) as unknown as MetricsSnapshot;
}

describe("GroupMetrics", () => {
  it("should sum counters, live streams and histograms, and report the worst event loop lag", async () => {
    const group = new GroupMetrics();
    group.setWorkers(2);
    group.update(1, await workerSnapshot(5, 3, 0.01));
    group.update(2, await workerSnapshot(7, 4, 0.2));
    const text = await group.render();
    assert.equal(sample(text, 'streams_started_total{protocol="grpc"}'), 12);
    assert.equal(sample(text, 'streams_live{protocol="grpc"}'), 7);
    assert.equal(sample(text, 'stream_duration_seconds_bucket{le="10"}'), 2);
    assert.equal(sample(text, "stream_duration_seconds_count"), 2);
    assert.equal(sample(text, "nodejs_eventloop_lag_p99_seconds"), 0.2);
    assert.equal(sample(text, "workers"), 2);
    // The primary's own process is part of the group.
    assert.match(text, /^process_resident_memory_bytes \d+/m);
    assert.match(text, /^process_start_time_seconds \d+/m);
  });

  it("should keep the counters and histograms of a worker that exited, and drop its gauges", async () => {
    const group = new GroupMetrics();
    group.update(1, await workerSnapshot(5, 3, 0.01));
    group.update(2, await workerSnapshot(7, 4, 0.2));
    group.retire(2);
    group.workerRestarted();
    group.update(3, await workerSnapshot(1, 1, 0.02));
    group.retire(1);
    group.update(4, await workerSnapshot(0, 0, 0.03));
    const text = await group.render();
    // 5 + 7 from the two that exited, 1 + 0 from the two alive: the total never went down.
    assert.equal(sample(text, 'streams_started_total{protocol="grpc"}'), 13);
    assert.equal(sample(text, 'streams_live{protocol="grpc"}'), 1);
    assert.equal(sample(text, "stream_duration_seconds_count"), 4);
    assert.equal(sample(text, "nodejs_eventloop_lag_p99_seconds"), 0.03);
    assert.equal(sample(text, "worker_restarts_total"), 1);
  });

  it("should keep a worker's last snapshot until a newer one comes", async () => {
    const group = new GroupMetrics();
    group.update(1, await workerSnapshot(5, 3, 0.01));
    group.update(1, await workerSnapshot(9, 2, 0.01));
    const text = await group.render();
    assert.equal(sample(text, 'streams_started_total{protocol="grpc"}'), 9);
    assert.equal(sample(text, 'streams_live{protocol="grpc"}'), 2);
  });
});
