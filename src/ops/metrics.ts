import type { ConnectError } from "@connectrpc/connect";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { codeName } from "../connect-internals/codes.js";
import type { Asked, CallInfo, StreamEnd, StreamObserver } from "../core/stream-service.js";
import type { NodeRequest, NodeResponse } from "../http/exchange.js";

// Prometheus metrics for GET /metrics. Everything here runs once per stream
// (the StreamObserver) or once per scrape, never once per message: the
// message count is the plain number GreetingStreams already keeps, read when
// Prometheus asks for it.

export interface MetricsOptions {
  /** Read at scrape time: messages sent by every stream since start. */
  messagesSent(): number;
  /** --max-streams as this process applies it (auto worked out). */
  maxStreams: number;
  /** The process group this process serves in (--workers). Default none: GET /metrics shows this process alone. */
  group?: MetricsGroup | undefined;
}

/** A process group's metrics (group-metrics.ts): every worker's, gathered by the primary. */
export interface MetricsGroup {
  /** Called once with this process's registry, which the group reads whenever it gathers. */
  join(registry: Registry): void;
  /** The whole group's metrics in the Prometheus text format. */
  render(): Promise<string>;
}

const unlintedDefaults = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/** prom-client's default process and Node metrics, less the three that do not lint. */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  // Gauges named like counters, which `promtool check metrics` rejects
  // (prometheus/client_js#283, open since 2019); the per-type
  // nodejs_active_{handles,requests,resources} gauges stay, and sum() gives the totals.
  for (const name of unlintedDefaults) registry.removeSingleMetric(name);
}

/** Upper bounds of the stream duration histogram, in seconds: streams last from milliseconds to hours. */
const durationBuckets = [0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 14_400, 86_400];

/** Counts by label value, kept as plain numbers and handed to prom-client when it is scraped. */
class Tally {
  readonly counts = new Map<string, number>();
  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }
}

/** Durations waiting for the histogram; handed over at a scrape, or when this many gathered. */
const DURATIONS_HELD = 4096;

export class Metrics implements StreamObserver {
  /** Its own registry: nothing global, so two servers in one process (the tests) do not collide. */
  readonly registry = new Registry();
  private readonly live = new Tally();
  private readonly started = new Tally();
  private readonly endings = new Tally();
  private readonly errors = new Tally();
  private durations: number[] = [];
  private readonly duration: Histogram;
  private readonly group: MetricsGroup | undefined;

  constructor(options: MetricsOptions) {
    const registers = [this.registry];
    collectProcessMetrics(this.registry);
    const { live, started, endings, errors } = this;
    new Gauge({
      name: "streams_live",
      help: "Streams open now.",
      labelNames: ["protocol"],
      registers,
      collect() {
        this.reset();
        for (const [protocol, n] of live.counts) this.set({ protocol }, n);
      },
    });
    new Gauge({
      name: "streams_max",
      help: "Streams this process takes at once (--max-streams, or what auto worked out from its memory).",
      registers,
    }).set(options.maxStreams);
    counter(registers, "streams_started_total", "Streams opened since start.", "protocol", started);
    counter(
      registers,
      "streams_ended_total",
      "Streams ended since start, by reason: limit, cancelled, deadline, shutdown, max_duration, max_age, send_timeout, error (includes rejected requests).",
      "reason",
      endings,
    );
    new Counter({
      name: "stream_messages_sent_total",
      help: "Stream messages sent since start, on every protocol.",
      registers,
      // Runs per scrape: the hot loop only increments a plain number.
      collect() {
        this.reset();
        this.inc(options.messagesSent());
      },
    });
    const held = () => this.takeDurations();
    this.duration = new Histogram({
      name: "stream_duration_seconds",
      help: "How long streams lasted, from the first message to the end.",
      buckets: durationBuckets,
      registers,
      collect() {
        for (const d of held()) this.observe(d);
      },
    });
    counter(
      registers,
      "request_errors_total",
      "Calls that ended with an error status the server chose (not client cancellations), by gRPC code.",
      "code",
      errors,
    );
    this.group = options.group;
    this.group?.join(this.registry);
  }

  // Per stream, these add to plain numbers: prom-client sees them when it is scraped.

  rejected(_call: CallInfo, _asked: Asked, error: ConnectError): void {
    this.endings.add("error");
    this.errors.add(codeName(error.code));
  }

  opened(call: CallInfo): void {
    this.live.add(call.protocol);
    this.started.add(call.protocol);
  }

  ended(call: CallInfo, _name: string, end: StreamEnd): void {
    this.live.add(call.protocol, -1);
    this.durations.push(end.durationMs / 1000);
    if (this.durations.length >= DURATIONS_HELD) for (const d of this.takeDurations()) this.duration.observe(d);
    this.endings.add(end.reason);
    if (end.error !== undefined && end.reason !== "cancelled" && end.reason !== "send_timeout") {
      this.errors.add(codeName(end.error.code));
    }
  }

  private takeDurations(): number[] {
    const taken = this.durations;
    this.durations = [];
    return taken;
  }

  /** GET /metrics: the Prometheus text format. */
  readonly handle = (_req: NodeRequest, res: NodeResponse): void => {
    (this.group ? this.group.render() : this.registry.metrics()).then(
      (body) => {
        res.writeHead(200, { "content-type": this.registry.contentType, "content-length": Buffer.byteLength(body) });
        res.end(body);
      },
      (e: unknown) => {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`metrics failed: ${e instanceof Error ? e.message : String(e)}\n`);
      },
    );
  };
}

/** A counter by one label, read from a Tally when it is scraped. */
function counter(registers: Registry[], name: string, help: string, label: string, tally: Tally): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers,
    collect() {
      this.reset();
      for (const [value, n] of tally.counts) this.inc({ [label]: value }, n);
    },
  });
}
