import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { options as serverOptions } from "../src/config/config.js";
import { roads as fairnessRoads, type Road } from "../test/support/fast-readers.js";
import { envelope, streamPath } from "../test/support/wire.js";
import { GOOD_INTERVAL_MS, measureFairness } from "./fairness.js";
import { runH2load } from "./h2load.js";
import type { ClientTask, FleetProtocol, Protocol } from "./load-client.js";
import { BOTH_CORES, LOAD_CORE, pinning, runLoad, type ServerProcess, startServer } from "./processes.js";
import { productionBuild } from "./production.js";
import { type FigureSpec, type RowSpec, type Samples, summarize, table } from "./report.js";
import { encodeRequest, encodeResponseFrame, maxFrameSize } from "./wire.js";

// npm run bench [-- --quick] [-- --runs N] [-- --only workers]
//
// Our server, our server with its fast path off, a plain @grpc/grpc-js server
// and a raw node:http2 ceiling, each its own process pinned to core 0, under
// the same load from core 1 (h2load for floods, bench/load-client.ts for the
// rest). Every figure is the median of the runs and a ratio to grpc-js from
// the same runs; figure 9 (--workers 2 against 1, everything on both cores)
// is a ratio to --workers 1. Exits 1 when any server answered wrongly; speed
// never fails it.

const usage = `usage: npm run bench -- [--quick] [--runs N]

  --quick    1 run at small sizes: proves every server answers correctly, measures nothing
  --runs N   runs per figure, whose median is reported (default 3; 1 with --quick)
  --only workers
             figure 9 alone (--workers 2 against 1), into bench/results/only-workers.{json,md}.tmp
  --rows ours,grpcjs,raw
             only these servers (keys: ours, nolog, quiet, traceDrop, traceAll, stock, grpcjs, raw),
             into bench/results/rows.{json,md}.tmp: for looking at a change, not for the docs

A full run writes bench/results/latest.{json,md}; a quick one bench/results/quick.{json,md}.tmp.
Exits 1 when a server answered wrongly, never because of speed.
`;

function parseFlags() {
  try {
    const { values } = parseArgs({
      options: {
        quick: { type: "boolean", default: false },
        runs: { type: "string" },
        only: { type: "string" },
        rows: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.runs !== undefined && !/^[1-9]\d{0,2}$/.test(values.runs)) {
      throw new Error(`--runs: expected a whole number from 1 to 999, got ${JSON.stringify(values.runs)}`);
    }
    if (values.only !== undefined && values.only !== "workers") {
      throw new Error(`--only: expected workers, got ${JSON.stringify(values.only)}`);
    }
    return values;
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n${usage}`);
    process.exit(2);
  }
}
const flags = parseFlags();
if (flags.help) {
  process.stdout.write(usage);
  process.exit(0);
}

const root = fileURLToPath(new URL("..", import.meta.url));
const quick = flags.quick === true;
const onlyWorkers = flags.only === "workers";
const sizes = quick
  ? {
      runs: 1,
      flood1Limit: 20_000,
      flood100Limit: 300,
      latencyCalls: 200,
      latencyWarmup: 20,
      fanoutStreams: 1000,
      fanoutWindowMs: 2000,
      idleStreams: 1000,
      idleSettleMs: 1000,
      idleWindowMs: 2000,
      fairnessReaders: [1],
      timeoutMs: 30_000,
    }
  : {
      runs: 3,
      flood1Limit: 200_000,
      flood100Limit: 2000,
      latencyCalls: 1000,
      latencyWarmup: 100,
      fanoutStreams: 10_000,
      fanoutWindowMs: 10_000,
      idleStreams: 10_000,
      idleSettleMs: 3000,
      idleWindowMs: 10_000,
      fairnessReaders: [1, 10, 100],
      timeoutMs: 120_000,
    };
if (flags.runs !== undefined) sizes.runs = Number(flags.runs);
const FANOUT_INTERVAL_MS = 100;
const IDLE_INTERVAL_MS = 2000;
const STREAMS_PER_CONNECTION = 100;

// Rows pass --fast-path and --metrics only while the server declares them; the notes say when one is gone.
const serverFlags = new Set(Object.values(serverOptions).map((o) => o.flag));
const hasFastPathFlag = serverFlags.has("fast-path");
const hasMetricsFlag = serverFlags.has("metrics");

// Every server and the load client as compiled JavaScript (production.ts): ours is `node dist/main.js`.
process.stderr.write("bench: building the production build and the comparison servers\n");
const built = await productionBuild();
const guard = pathToFileURL(built.script("orphan-guard")).href;
// All the load comes from 127.0.0.1: one client, as the limits per client count (when the server has them).
const oneClient = ["max-streams-per-client", "max-connections-per-client"]
  .filter((f) => serverFlags.has(f))
  .flatMap((f) => [`--${f}`, "10000000"]);
const node = (script: string) => {
  if (script === "src/main.ts") return [process.execPath, "--import", guard, built.ours, ...oneClient];
  return [process.execPath, "--import", guard, built.script(path.basename(script, ".ts"))];
};

interface Row extends RowSpec {
  argv: string[];
  /** Environment the server gets (OpenTelemetry's variables); nothing else of ours leaks in. */
  env?: Record<string, string>;
  /** Protocols the correctness check covers. */
  protocols: Protocol[];
  /** Connect floods (HTTP/2 and HTTP/1.1), and NDJSON when our server has it. */
  connect: boolean;
  /** Latency, fan-out and idle; false for the rows of figures 5 and 7, which only repeat the gRPC floods. */
  full: boolean;
  /** Where the server and its load run (taskset -c). Default: the server on core 0, the load on core 1. */
  cores?: string;
  /** --workers: the run waits for all of them to serve before it measures. */
  workers?: number;
}

// Where the tracing rows export: a sink on loopback that answers every
// OTLP/HTTP request with an empty success and counts what it got.
const sink = { requests: 0, bytes: 0 };
const sinkServer = http.createServer((req, res) => {
  req.on("data", (c: Buffer) => {
    sink.bytes += c.byteLength;
  });
  req.on("end", () => {
    sink.requests++;
    res.writeHead(200, { "content-type": "application/x-protobuf" });
    res.end();
  });
});
sinkServer.listen(0, "127.0.0.1");
await once(sinkServer, "listening");
sinkServer.unref();
const sinkUrl = `http://127.0.0.1:${(sinkServer.address() as AddressInfo).port}`;

const allRows: Row[] = [
  {
    key: "ours",
    title: "ours (default flags)",
    argv: node("src/main.ts"),
    protocols: ["grpc", "connect-h2", "connect-h1"],
    connect: true,
    full: true,
  },
  {
    key: "nolog",
    title: "ours, --log-level silent",
    argv: [...node("src/main.ts"), "--log-level", "silent"],
    protocols: ["grpc"],
    connect: false,
    full: false,
  },
  {
    key: "quiet",
    title: `ours, --log-level silent${hasMetricsFlag ? " --metrics off" : ""}`,
    argv: [...node("src/main.ts"), "--log-level", "silent", ...(hasMetricsFlag ? ["--metrics", "off"] : [])],
    protocols: ["grpc"],
    connect: false,
    full: false,
  },
  {
    key: "traceDrop",
    title: "ours, tracing on, sampler drops every span (OTEL_TRACES_SAMPLER=always_off)",
    argv: node("src/main.ts"),
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, OTEL_TRACES_SAMPLER: "always_off" },
    protocols: ["grpc"],
    connect: false,
    full: false,
  },
  {
    key: "traceAll",
    title: "ours, tracing on, every span exported (default sampler)",
    argv: node("src/main.ts"),
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl },
    protocols: ["grpc"],
    connect: false,
    full: false,
  },
  {
    key: "stock",
    title: hasFastPathFlag ? "ours, --fast-path off (stock connect-node)" : "ours again (no --fast-path flag yet)",
    argv: [...node("src/main.ts"), ...(hasFastPathFlag ? ["--fast-path", "off"] : [])],
    protocols: ["grpc", "connect-h2", "connect-h1"],
    connect: true,
    full: true,
  },
  {
    key: "grpcjs",
    title: "plain @grpc/grpc-js",
    argv: node("bench/grpc-js-server.ts"),
    protocols: ["grpc"],
    connect: false,
    full: true,
  },
  {
    key: "raw",
    title: "raw node:http2, 16 KiB batches (ceiling)",
    argv: node("bench/raw-http2-server.ts"),
    protocols: ["grpc"],
    connect: false,
    full: true,
  },
];

const onlyRows = flags.rows?.split(",").map((r) => r.trim());
const rows = onlyRows === undefined ? allRows : allRows.filter((r) => onlyRows.includes(r.key));
if (rows.length === 0) {
  process.stderr.write(`--rows names none of ${allRows.map((r) => r.key).join(", ")}\n`);
  process.exit(2);
}

const msgs = "msg/s";
const floodFigures: FigureSpec[] = [
  { key: "grpc1", title: "gRPC, 1 stream", unit: msgs, better: "higher", digits: 0 },
  { key: "grpc100", title: "gRPC, 100 streams", unit: msgs, better: "higher", digits: 0 },
  { key: "connectH2_1", title: "Connect h2, 1", unit: msgs, better: "higher", digits: 0 },
  { key: "connectH2_100", title: "Connect h2, 100", unit: msgs, better: "higher", digits: 0 },
  { key: "connectH1_1", title: "Connect HTTP/1.1, 1", unit: msgs, better: "higher", digits: 0 },
  { key: "connectH1_100", title: "Connect HTTP/1.1, 100", unit: msgs, better: "higher", digits: 0 },
  { key: "grpcWebH1_1", title: "gRPC-Web HTTP/1.1, 1", unit: msgs, better: "higher", digits: 0 },
  { key: "grpcWebH1_100", title: "gRPC-Web HTTP/1.1, 100", unit: msgs, better: "higher", digits: 0 },
  { key: "ndjson1", title: "NDJSON h2, 1", unit: msgs, better: "higher", digits: 0 },
  { key: "ndjson100", title: "NDJSON h2, 100", unit: msgs, better: "higher", digits: 0 },
];
const latencyFigures: FigureSpec[] = [
  { key: "firstP50", title: "first message p50", unit: "µs", better: "lower", digits: 0 },
  { key: "firstP99", title: "first message p99", unit: "µs", better: "lower", digits: 0 },
  { key: "fanoutDelivered", title: "fan-out delivered", unit: msgs, better: "higher", digits: 0 },
  { key: "fanoutP99Late", title: "fan-out p99 lateness", unit: "ms", better: "lower", digits: 1 },
  { key: "fanoutCpu", title: "fan-out server CPU", unit: "% of a core", better: "lower", digits: 0 },
  { key: "fanoutCpuPerMsg", title: "fan-out server CPU per message", unit: "µs", better: "lower", digits: 1 },
  { key: "idleKiB", title: "idle memory per stream", unit: "KiB", better: "lower", digits: 1 },
  { key: "idleCpu", title: "idle server CPU", unit: "% of a core", better: "lower", digits: 1 },
];

/** Figure 8: what one stream costs on each protocol our server speaks; a connection per stream over HTTP/1.1. */
const idleProtocols: FleetProtocol[] = ["grpc", "connect-h2", "connect-h1", "grpc-web-h1", "ndjson-h1", "sse-h1"];
const protocolTitles: Record<string, string> = {
  grpc: "gRPC (h2)",
  "connect-h2": "Connect h2",
  "connect-h1": "Connect HTTP/1.1",
  "grpc-web-h1": "gRPC-Web HTTP/1.1",
  "ndjson-h1": "NDJSON HTTP/1.1",
  "sse-h1": "SSE HTTP/1.1",
};
/** Figure 2 per protocol: the first message over gRPC and over Connect on both HTTP versions. */
const latencyProtocols: Protocol[] = ["grpc", "connect-h2", "connect-h1"];

/** Figures 2 and 8 as tables: a line per protocol of ours, then grpc-js and raw (gRPC only). */
function protocolTable(
  columns: Array<[key: (p: string) => string, title: string, digits: number]>,
  protocols: readonly string[],
  summary: ReturnType<typeof summarize>,
  baseline: string,
): string {
  const value = (row: string, key: string) => summary[row]?.[key]?.median;
  const head = `| server, protocol | ${columns.map(([, t]) => t).join(" | ")} |`;
  const rule = `|---|${columns.map(() => "---:").join("|")}|`;
  const line = (row: string, title: string, p: string) => {
    const cells = columns.map(([key, , digits]) => {
      const v = value(row, key(p));
      const base = value("ours", key(baseline));
      if (v === undefined) return "n/a";
      const r = base === undefined || base === 0 ? "" : ` (${(v / base).toFixed(2)}x)`;
      return `${v.toFixed(digits)}${r}`;
    });
    return `| ${title} | ${cells.join(" | ")} |`;
  };
  const lines = protocols.map((p) => line("ours", `ours, ${protocolTitles[p] ?? p}`, p));
  lines.push(line("grpcjs", "plain @grpc/grpc-js, gRPC", baseline));
  lines.push(line("raw", "raw node:http2, gRPC (ceiling)", baseline));
  return [head, rule, ...lines].join("\n");
}
const idleKey = (what: "KiB" | "Cpu") => (p: string) => (p === "grpc" ? `idle${what}` : `idle${what}_${p}`);
const firstKey = (what: "P50" | "P99") => (p: string) => (p === "grpc" ? `first${what}` : `first${what}_${p}`);

/** Figure 6 runs on our server only; with --fast-path off only gRPC takes another road. */
function fairnessRoadsFor(row: Row): readonly Road[] {
  if (row.key === "ours") return fairnessRoads;
  if (row.key === "stock") return ["grpc"];
  return [];
}
const fairKey = (road: Road, count: number, what: "gap" | "healthz") => `fair_${road}_${count}_${what}`;

/** Figure 6 as a table: a line per road (and row), a column pair per reader count. */
function fairnessTable(summary: ReturnType<typeof summarize>): string {
  const head = `| road | ${sizes.fairnessReaders.map((n) => `${n} reader${n === 1 ? "" : "s"}: worst gap, ms ↓ | worst /healthz, ms ↓`).join(" | ")} |`;
  const rule = `|---|${sizes.fairnessReaders.map(() => "---:|---:").join("|")}|`;
  const lines: string[] = [];
  for (const row of rows) {
    for (const road of fairnessRoadsFor(row)) {
      const cells = sizes.fairnessReaders.flatMap((n) =>
        (["gap", "healthz"] as const).map((w) => {
          const v = summary[row.key]?.[fairKey(road, n, w)]?.median;
          return v === undefined ? "n/a" : v.toFixed(0);
        }),
      );
      lines.push(`| ${road}${row.key === "stock" ? " (--fast-path off)" : ""} | ${cells.join(" | ")} |`);
    }
  }
  return [head, rule, ...lines].join("\n");
}

const samples: Samples = Object.fromEntries(rows.map((r) => [r.key, {}]));
const failures: string[] = [];
const notes: string[] = [];
const record = (row: string, figure: string, value: number) => {
  const byRow = samples[row] ?? {};
  samples[row] = byRow;
  byRow[figure] ??= [];
  byRow[figure].push(value);
};
const log = (line: string) => process.stderr.write(`${line}\n`);

const tmp = mkdtempSync(path.join(os.tmpdir(), "stream-bench-"));
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));

function bodyFile(name: string, limit: number): string {
  const file = path.join(tmp, `${name}-${limit}.bin`);
  writeFileSync(file, envelope(encodeRequest({ name: "bench", intervalMs: 0, limit })));
  return file;
}

/**
 * Bounds on the gRPC/Connect DATA bytes of one stream of `limit` greetings:
 * only the timestamp's nanos vary (absent at a whole second, up to 5 bytes).
 */
function bytesPerStream(limit: number): { min: number; max: number } {
  const scratch = Buffer.alloc(maxFrameSize(5));
  const second = 1_764_000_000_000;
  let min = 0;
  let max = 0;
  for (let c = 0; c < limit; c++) {
    min += encodeResponseFrame(scratch, 0, "bench", c, second);
    max += encodeResponseFrame(scratch, 0, "bench", c, second + 999);
  }
  return { min, max };
}

interface Flood {
  key: string;
  streams: number;
  limit: number;
  http1: boolean;
  kind: "grpc" | "connect" | "grpc-web" | "ndjson";
  /** HTTP/2 connections the streams spread over; default 1. */
  connections?: number;
}

function floodsFor(row: Row, ndjson: boolean): Flood[] {
  const two = (key: string, kind: Flood["kind"], http1: boolean): Flood[] => [
    { key: `${key}1`, streams: 1, limit: sizes.flood1Limit, http1, kind },
    { key: `${key}100`, streams: 100, limit: sizes.flood100Limit, http1, kind },
  ];
  const list = [...two("grpc", "grpc", false)];
  if (row.connect) {
    list.push(...two("connectH2_", "connect", false), ...two("connectH1_", "connect", true));
    list.push(...two("grpcWebH1_", "grpc-web", true));
  }
  if (row.connect && ndjson) list.push(...two("ndjson", "ndjson", false));
  return list;
}

async function flood(
  server: ServerProcess,
  f: Flood,
  ndjsonBytes: Map<number, number>,
  cores?: string,
): Promise<number> {
  const common = {
    port: server.port,
    streams: f.streams,
    http1: f.http1,
    timeoutMs: sizes.timeoutMs,
    ...(f.connections === undefined ? {} : { connections: f.connections }),
    ...(cores === undefined ? {} : { cores }),
  };
  let r: Awaited<ReturnType<typeof runH2load>>;
  let bounds: { min: number; max: number };
  if (f.kind === "ndjson") {
    r = await runH2load({
      ...common,
      method: "GET",
      path: `/stream?name=bench&interval=0s&limit=${f.limit}`,
      headers: {},
    });
    const reference = ndjsonBytes.get(f.limit) ?? Number.NaN;
    bounds = { min: reference * 0.97, max: reference * 1.03 };
  } else {
    const grpc = f.kind === "grpc";
    r = await runH2load({
      ...common,
      method: "POST",
      path: streamPath,
      bodyFile: bodyFile(f.kind, f.limit),
      headers: grpc
        ? { "content-type": "application/grpc", te: "trailers" }
        : f.kind === "grpc-web"
          ? { "content-type": "application/grpc-web+proto" }
          : { "content-type": "application/connect+proto" },
    });
    bounds = bytesPerStream(f.limit);
    // Connect ends a stream with a JSON end-of-stream envelope in the body: "{}" or metadata, never kilobytes.
    if (!grpc) bounds = { min: bounds.min + 7, max: bounds.max + 1024 };
  }
  const min = bounds.min * f.streams;
  const max = bounds.max * f.streams;
  if (!(r.dataBytes >= min && r.dataBytes <= max)) {
    throw new Error(
      `${f.key}: received ${r.dataBytes} DATA bytes, expected ${Math.round(min)}..${Math.round(max)} for ${f.streams} x ${f.limit} messages`,
    );
  }
  return (f.streams * f.limit) / r.seconds;
}

async function loadClient<T>(task: ClientTask, timeoutMs: number, cores?: string): Promise<T> {
  const r = await runLoad([...node("bench/load-client.ts"), JSON.stringify(task)], timeoutMs, cores);
  if (r.timedOut) throw new Error(`load client ${task.mode} timed out after ${timeoutMs} ms`);
  if (r.code !== 0) {
    let reason = r.stderr.slice(-2000);
    try {
      reason = (JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as { error: string }).error;
    } catch {
      // no one-line reason: the tail of stderr it is
    }
    throw new Error(`load client ${task.mode} exited ${r.code}: ${reason}`);
  }
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "null") as T;
}

/** Whether our server answers GET /stream with NDJSON yet; its body size per limit, for the byte check. */
async function probeNdjson(port: number, limits: number[]): Promise<Map<number, number> | undefined> {
  try {
    const url = (limit: number) => `http://127.0.0.1:${port}/stream?name=bench&interval=0s&limit=${limit}`;
    const res = await fetch(url(3), { signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    if (res.status !== 200 || !(res.headers.get("content-type") ?? "").includes("application/x-ndjson"))
      return undefined;
    const lines = text.trim().split("\n");
    const ok =
      lines.length === 3 && lines.every((l, i) => l.includes(`Hello bench, this is ${i} time stream message.`));
    if (!ok) {
      failures.push(`ours: GET /stream answered NDJSON, but not the 3 greetings asked for: ${text.slice(0, 300)}`);
      return undefined;
    }
    const bytes = new Map<number, number>();
    for (const limit of limits) {
      const body = await (await fetch(url(limit), { signal: AbortSignal.timeout(30_000) })).arrayBuffer();
      bytes.set(limit, body.byteLength);
    }
    return bytes;
  } catch {
    return undefined;
  }
}

async function withServer<T>(row: Row, what: string, fn: (s: ServerProcess) => Promise<T>): Promise<T | undefined> {
  let server: ServerProcess | undefined;
  try {
    server = await startServer(row.argv, row.env, 30_000, row.cores);
    if ((row.workers ?? 1) > 1) await allWorkersServe(server.port, row.workers ?? 1);
    return await fn(server);
  } catch (e) {
    const tail = server?.stderrTail().trim();
    failures.push(
      `${row.key} ${what}: ${e instanceof Error ? e.message : String(e)}${tail ? `\n  server stderr: ${tail}` : ""}`,
    );
    log(`  FAILED ${row.key} ${what}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
    return undefined;
  } finally {
    await server?.stop();
  }
}

/** The port accepts as soon as one worker listens: wait until the group's /metrics says they all serve. */
async function allWorkersServe(port: number, workers: number): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      const text = await (
        await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })
      ).text();
      if (text.split("\n").includes(`workers ${workers}`)) return;
    } catch {
      // not yet
    }
    if (performance.now() > deadline) throw new Error(`${workers} workers did not all serve within 30 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface FanoutResult {
  started: number;
  deliveredPerSec: number;
  p99LatenessMs: number;
  cpuPct: number;
  clientCpuPct: number;
  errors: number;
}

/** Figure 3 on a server: sizes.fanoutStreams streams at FANOUT_INTERVAL_MS; the load on `cores`. */
async function measureFanout(server: ServerProcess, cores?: string): Promise<FanoutResult> {
  const r = await loadClient<FanoutResult>(
    {
      mode: "fanout",
      port: server.port,
      pid: server.pid,
      streams: sizes.fanoutStreams,
      perConnection: STREAMS_PER_CONNECTION,
      intervalMs: FANOUT_INTERVAL_MS,
      windowMs: sizes.fanoutWindowMs,
    },
    sizes.fanoutWindowMs + 90_000,
    cores,
  );
  if (r.started !== sizes.fanoutStreams || r.errors > 0) {
    throw new Error(`fan-out: ${r.started} of ${sizes.fanoutStreams} streams started, ${r.errors} failed`);
  }
  return r;
}

function fmt(v: number): string {
  return Number.isFinite(v) ? (Math.abs(v) >= 10_000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(1)) : "n/a";
}

let ndjsonBytes: Map<number, number> | undefined;
const started = performance.now();
log(
  `bench: ${quick ? "quick" : "full"}, ${sizes.runs} run(s), ${pinning ? "servers on core 0, load on core 1" : "one core: no pinning"}`,
);
// --only workers: figure 9 alone.
const mainRuns = onlyWorkers ? 0 : sizes.runs;
for (let run = 1; run <= mainRuns; run++) {
  // Each run starts with a different row, so that a machine that slows down over time favours no one.
  const order = [...rows.slice((run - 1) % rows.length), ...rows.slice(0, (run - 1) % rows.length)];
  for (const row of order) {
    log(`[run ${run}/${sizes.runs}] ${row.title}`);
    await withServer(row, "floods", async (server) => {
      if (run === 1) {
        const result = await loadClient<{ failures: string[] }>(
          { mode: "check", port: server.port, protocols: row.protocols },
          sizes.timeoutMs,
        );
        for (const f of result.failures) failures.push(`${row.key}: ${f}`);
        log(`  check ${row.protocols.join(", ")}: ${result.failures.length === 0 ? "ok" : result.failures.join("; ")}`);
        if (row.key === "ours" && ndjsonBytes === undefined) {
          ndjsonBytes = await probeNdjson(server.port, [sizes.flood1Limit, sizes.flood100Limit]);
          if (ndjsonBytes === undefined) ndjsonBytes = new Map();
        }
      }
      for (const f of floodsFor(row, (ndjsonBytes?.size ?? 0) > 0)) {
        try {
          const rate = await flood(server, f, ndjsonBytes ?? new Map());
          record(row.key, f.key, rate);
          log(`  flood ${f.key}: ${fmt(rate)} msg/s`);
        } catch (e) {
          failures.push(`${row.key} flood ${f.key}: ${e instanceof Error ? e.message : String(e)}`);
          log(`  FAILED flood ${f.key}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
        }
      }
      if (!row.full) return;
      const lat = await loadClient<{ p50Us: number; p99Us: number }>(
        { mode: "latency", port: server.port, calls: sizes.latencyCalls, warmup: sizes.latencyWarmup },
        sizes.timeoutMs,
      );
      record(row.key, "firstP50", lat.p50Us);
      record(row.key, "firstP99", lat.p99Us);
      log(`  first message: p50 ${fmt(lat.p50Us)} µs, p99 ${fmt(lat.p99Us)} µs`);
      if (row.key !== "ours") return;
      for (const protocol of latencyProtocols.filter((p) => p !== "grpc")) {
        const l = await loadClient<{ p50Us: number; p99Us: number }>(
          { mode: "latency", port: server.port, calls: sizes.latencyCalls, warmup: sizes.latencyWarmup, protocol },
          sizes.timeoutMs,
        );
        record(row.key, firstKey("P50")(protocol), l.p50Us);
        record(row.key, firstKey("P99")(protocol), l.p99Us);
        log(`  first message over ${protocol}: p50 ${fmt(l.p50Us)} µs, p99 ${fmt(l.p99Us)} µs`);
      }
    });
    if (!row.full) continue;
    // Fan-out and idle each get a fresh process, so neither inherits the other's heap.
    await withServer(row, "fan-out", async (server) => {
      const r = await measureFanout(server);
      record(row.key, "fanoutDelivered", r.deliveredPerSec);
      record(row.key, "fanoutP99Late", r.p99LatenessMs);
      record(row.key, "fanoutCpu", r.cpuPct);
      // What a delivered message costs the server, whatever the machine let it deliver.
      record(row.key, "fanoutCpuPerMsg", (r.cpuPct / 100 / r.deliveredPerSec) * 1e6);
      record(row.key, "fanoutClientCpu", r.clientCpuPct);
      log(
        `  fan-out ${sizes.fanoutStreams} x ${FANOUT_INTERVAL_MS} ms: ${fmt(r.deliveredPerSec)} msg/s, p99 late ${fmt(r.p99LatenessMs)} ms, CPU ${fmt(r.cpuPct)}% (client ${fmt(r.clientCpuPct)}%)`,
      );
    });
    // Figure 4 over gRPC for every server; figure 8 over every other protocol of ours, each on a fresh process.
    for (const protocol of row.key === "ours" ? idleProtocols : (["grpc"] as const)) {
      await withServer(row, `idle ${protocol}`, async (server) => {
        const r = await loadClient<{
          started: number;
          perStreamKiB: number;
          cpuPct: number;
          deliveredPerSec: number;
          expectedPerSec: number;
          errors: number;
        }>(
          {
            mode: "idle",
            port: server.port,
            pid: server.pid,
            protocol,
            streams: sizes.idleStreams,
            perConnection: STREAMS_PER_CONNECTION,
            intervalMs: IDLE_INTERVAL_MS,
            settleMs: sizes.idleSettleMs,
            windowMs: sizes.idleWindowMs,
          },
          sizes.idleSettleMs + sizes.idleWindowMs + 90_000,
        );
        if (r.started !== sizes.idleStreams || r.errors > 0) {
          throw new Error(`idle ${protocol}: ${r.started} of ${sizes.idleStreams} streams started, ${r.errors} failed`);
        }
        // An idle stream that does not send on time is a broken stream, not a slow one.
        if (Math.abs(r.deliveredPerSec - r.expectedPerSec) > r.expectedPerSec * 0.25) {
          throw new Error(
            `idle ${protocol}: ${fmt(r.deliveredPerSec)} msg/s delivered, expected ${fmt(r.expectedPerSec)}`,
          );
        }
        record(row.key, idleKey("KiB")(protocol), r.perStreamKiB);
        record(row.key, idleKey("Cpu")(protocol), r.cpuPct);
        log(
          `  idle ${protocol} ${sizes.idleStreams} x ${IDLE_INTERVAL_MS} ms: ${fmt(r.perStreamKiB)} KiB/stream, CPU ${fmt(r.cpuPct)}%`,
        );
      });
    }
    const fairRoads = fairnessRoadsFor(row);
    if (fairRoads.length === 0) continue;
    await withServer(row, "fairness", async (server) => {
      const live = async () => {
        const text = await scrapeOnce(`http://127.0.0.1:${server.port}/metrics`);
        return text
          .split("\n")
          .filter((l) => l.startsWith("streams_live{"))
          .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
      };
      for (const road of fairRoads) {
        for (const count of sizes.fairnessReaders) {
          const r = await measureFairness(server.port, road, count, pinning ? LOAD_CORE : undefined, live);
          record(row.key, fairKey(road, count, "gap"), r.worstGapMs);
          record(row.key, fairKey(road, count, "healthz"), r.worstHealthzMs);
          log(
            `  fairness ${road} x ${count}: worst gap ${fmt(r.worstGapMs)} ms, worst /healthz ${fmt(r.worstHealthzMs)} ms`,
          );
        }
      }
    });
  }
}

/**
 * GET on a connection of its own. fetch() keeps its connection for the next
 * poll, and between two fairness cases it idles as long as the server's
 * keep-alive timeout: the server closed it as fetch reused it ("fetch failed").
 */
function scrapeOnce(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve(body));
      res.on("error", reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`${url} did not answer within 10 s`)));
    req.on("error", reject);
  });
}

// Figure 9: every core. --workers 2 against --workers 1, the server and every
// load generator on both cores: the load shares the cores the workers run on,
// as it would not in production, so the figure bounds what a second worker
// gives rather than measuring it alone.
const WORKER_FLOOD_CONNECTIONS = 10;
const workerRows: Row[] = [1, 2].map((n) => ({
  key: `w${n}`,
  title: `ours, --workers ${n}`,
  argv: [...node("src/main.ts"), "--workers", String(n)],
  protocols: ["grpc", "connect-h2", "connect-h1"],
  connect: true,
  full: true,
  cores: BOTH_CORES,
  workers: n,
}));
const workerFigures: FigureSpec[] = [
  {
    key: "grpc100x10",
    title: `gRPC, 100 streams on ${WORKER_FLOOD_CONNECTIONS} connections`,
    unit: msgs,
    better: "higher",
    digits: 0,
  },
  { key: "connectH1_100", title: "Connect HTTP/1.1, 100", unit: msgs, better: "higher", digits: 0 },
  { key: "fanoutDelivered", title: "fan-out delivered", unit: msgs, better: "higher", digits: 0 },
  { key: "fanoutP99Late", title: "fan-out p99 lateness", unit: "ms", better: "lower", digits: 1 },
  { key: "fanoutCpu", title: "fan-out CPU, all server processes", unit: "% of a core", better: "lower", digits: 0 },
];
const workerSamples: Samples = { w1: {}, w2: {} };
const recordWorkers = (row: string, figure: string, value: number) => {
  const byRow = workerSamples[row] ?? {};
  workerSamples[row] = byRow;
  byRow[figure] ??= [];
  byRow[figure].push(value);
};
// --rows looks at a few servers: no figure 9.
const workerRuns = onlyRows === undefined ? sizes.runs : 0;
for (let run = 1; run <= workerRuns; run++) {
  // Alternate which row goes first, as the main runs rotate theirs.
  for (const row of run % 2 === 1 ? workerRows : [...workerRows].reverse()) {
    log(`[figure 9, run ${run}/${sizes.runs}] ${row.title}`);
    await withServer(row, "floods", async (server) => {
      if (run === 1) {
        const result = await loadClient<{ failures: string[] }>(
          { mode: "check", port: server.port, protocols: row.protocols },
          sizes.timeoutMs,
          BOTH_CORES,
        );
        for (const f of result.failures) failures.push(`${row.key}: ${f}`);
        log(`  check ${row.protocols.join(", ")}: ${result.failures.length === 0 ? "ok" : result.failures.join("; ")}`);
      }
      const floods: Flood[] = [
        {
          key: "grpc100x10",
          streams: 100,
          limit: sizes.flood100Limit,
          http1: false,
          kind: "grpc",
          connections: WORKER_FLOOD_CONNECTIONS,
        },
        { key: "connectH1_100", streams: 100, limit: sizes.flood100Limit, http1: true, kind: "connect" },
      ];
      for (const f of floods) {
        try {
          const rate = await flood(server, f, new Map(), BOTH_CORES);
          recordWorkers(row.key, f.key, rate);
          log(`  flood ${f.key}: ${fmt(rate)} msg/s`);
        } catch (e) {
          failures.push(`${row.key} flood ${f.key}: ${e instanceof Error ? e.message : String(e)}`);
          log(`  FAILED flood ${f.key}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
        }
      }
    });
    await withServer(row, "fan-out", async (server) => {
      const r = await measureFanout(server, BOTH_CORES);
      recordWorkers(row.key, "fanoutDelivered", r.deliveredPerSec);
      recordWorkers(row.key, "fanoutP99Late", r.p99LatenessMs);
      recordWorkers(row.key, "fanoutCpu", r.cpuPct);
      recordWorkers(row.key, "fanoutClientCpu", r.clientCpuPct);
      log(
        `  fan-out ${sizes.fanoutStreams} x ${FANOUT_INTERVAL_MS} ms: ${fmt(r.deliveredPerSec)} msg/s, p99 late ${fmt(r.p99LatenessMs)} ms, CPU ${fmt(r.cpuPct)}% (client ${fmt(r.clientCpuPct)}%)`,
      );
    });
  }
}
const workerSummary = summarize(workerSamples, "w1");
const elapsedS = (performance.now() - started) / 1000;

if (!hasFastPathFlag)
  notes.push("src/config.ts declares no --fast-path flag: the second row runs the same server as the first.");
if (!hasMetricsFlag)
  notes.push("src/config.ts declares no --metrics flag: the logging-off row only sets --log-level silent.");
if (!onlyWorkers && (ndjsonBytes?.size ?? 0) === 0)
  notes.push("GET /stream does not answer application/x-ndjson yet: no NDJSON flood.");
if (!pinning) notes.push("Only one CPU: servers and load share it (no taskset).");

const summary = summarize(samples, "grpcjs");
let h2loadVersion = "unknown";
try {
  h2loadVersion = execFileSync("h2load", ["--version"], { encoding: "utf8" }).trim();
} catch {
  // reported as unknown
}
const machine = {
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.cpus().length,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  os: `${os.type()} ${os.release()}`,
  node: process.version,
  h2load: h2loadVersion,
};
const date = new Date().toISOString();
const loggingRows = rows.filter((r) => ["ours", "nolog", "quiet"].includes(r.key));
const tracingRows = rows.filter((r) => ["ours", "traceDrop", "traceAll"].includes(r.key));
const mainRows = rows.filter((r) => r.key === "ours" || !(loggingRows.includes(r) || tracingRows.includes(r)));
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined ? "n/a" : `${(a / b).toFixed(2)}x`;
/** "1 stream 0.98x, 100 streams 1.01x": a row's gRPC floods over another's. */
const floodRatios = (row: string, base: string) =>
  `1 stream ${ratio(summary[row]?.grpc1?.median, summary[base]?.grpc1?.median)}, 100 streams ${ratio(summary[row]?.grpc100?.median, summary[base]?.grpc100?.median)}`;
// The every-span row must have exported: a tracing that sends nothing would measure nothing.
if (summary.traceAll?.grpc1 !== undefined && sink.requests === 0) {
  failures.push("traceAll: the OTLP sink received no export request");
}
const workersRatio = (figure: string) => ratio(workerSummary.w2?.[figure]?.median, workerSummary.w1?.[figure]?.median);
const workersSection = [
  `**9. Every core** (\`--workers 2\` against \`--workers 1\`; each cell: median, then (ratio to --workers 1). The servers and every load generator run on both cores (taskset -c ${BOTH_CORES}), so the load shares the cores the workers run on. h2load: 100 gRPC streams x ${sizes.flood100Limit} messages on ${WORKER_FLOOD_CONNECTIONS} connections, 100 Connect streams on HTTP/1.1, a connection each; fan-out as in figure 3, ${sizes.fanoutStreams / STREAMS_PER_CONNECTION} connections)`,
  "",
  table(workerRows, workerFigures, workerSummary),
  "",
  `--workers 2 / --workers 1: gRPC flood ${workersRatio("grpc100x10")}, Connect HTTP/1.1 flood ${workersRatio("connectH1_100")}, fan-out delivered ${workersRatio("fanoutDelivered")}`,
];
const mainSections = [
  "Each cell: median, then (ratio to plain grpc-js in the same run). ↑ higher is better, ↓ lower is better. n/a: the server does not speak that protocol.",
  "",
  `**1. Flood, interval 0** (h2load; 1 stream x ${sizes.flood1Limit} messages, 100 streams x ${sizes.flood100Limit} on one connection; HTTP/1.1: a connection per stream)`,
  "",
  table(mainRows, floodFigures, summary),
  "",
  `**2-4. First message** (${sizes.latencyCalls} sequential calls, one connection) · **fan-out** (${sizes.fanoutStreams} streams at ${FANOUT_INTERVAL_MS} ms = ${(sizes.fanoutStreams * 1000) / FANOUT_INTERVAL_MS} msg/s offered, ${sizes.fanoutWindowMs / 1000} s window) · **idle** (${sizes.idleStreams} streams at ${IDLE_INTERVAL_MS / 1000} s, ${STREAMS_PER_CONNECTION} per connection)`,
  "",
  table(mainRows, latencyFigures, summary),
  "",
  `to the raw node:http2 ceiling: flood ${floodRatios("ours", "raw")} · fan-out delivered ${ratio(summary.ours?.fanoutDelivered?.median, summary.raw?.fanoutDelivered?.median)}, p99 lateness ${ratio(summary.ours?.fanoutP99Late?.median, summary.raw?.fanoutP99Late?.median)}, CPU per message ${ratio(summary.ours?.fanoutCpuPerMsg?.median, summary.raw?.fanoutCpuPerMsg?.median)} · first message p50 ${ratio(summary.ours?.firstP50?.median, summary.raw?.firstP50?.median)}, p99 ${ratio(summary.ours?.firstP99?.median, summary.raw?.firstP99?.median)}`,
  "",
  `**2, per protocol. First message** (the same calls; ratios to ours over gRPC)`,
  "",
  protocolTable(
    [
      [firstKey("P50"), "first message p50, µs ↓", 0],
      [firstKey("P99"), "first message p99, µs ↓", 0],
    ],
    latencyProtocols,
    summary,
    "grpc",
  ),
  "",
  `**8. Idle, per protocol** (${sizes.idleStreams} streams at ${IDLE_INTERVAL_MS / 1000} s; HTTP/2: ${STREAMS_PER_CONNECTION} per connection; HTTP/1.1: a connection per stream, as a browser without HTTP/2 opens them; ratios to ours over gRPC)`,
  "",
  protocolTable(
    [
      [idleKey("KiB"), "memory per stream, KiB ↓", 1],
      [idleKey("Cpu"), "server CPU, % of a core ↓", 1],
    ],
    idleProtocols,
    summary,
    "grpc",
  ),
  "",
  "**5. Cost of logging and metrics** (figure 1 over gRPC, ours with defaults vs. switched off; logs are pino's JSON lines on stdout, read and dropped)",
  "",
  table(loggingRows, floodFigures.slice(0, 2), summary),
  "",
  `logging on/off: ${floodRatios("ours", "nolog")} · logging and metrics on/off: ${floodRatios("ours", "quiet")}`,
  "",
  `**6. Fairness** (N curl processes read interval-0 streams on one road as fast as they can; beside them a client streams at ${GOOD_INTERVAL_MS} ms and /healthz is probed every 50 ms on fresh connections; a 100 ms gap is on time)`,
  "",
  fairnessTable(summary),
  "",
  `**7. Cost of tracing** (figure 1 over gRPC; ours with defaults has no OTLP endpoint set, so no tracer at all; the tracing rows export to a sink on loopback, which got ${sink.requests} request(s), ${sink.bytes} bytes)`,
  "",
  table(tracingRows, floodFigures.slice(0, 2), summary),
  "",
  `vs. tracing off: spans dropped ${floodRatios("traceDrop", "ours")} · every span exported ${floodRatios("traceAll", "ours")}`,
  "",
];
const md = [
  `### ${quick ? "Quick run (--quick: 1 run, small sizes; a smoke test, not a measurement)" : `Full run (median of ${sizes.runs})`}${onlyWorkers ? ", figure 9 only (--only workers)" : ""}`,
  "",
  `${date.slice(0, 16).replace("T", " ")} UTC · ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB · ${machine.os} · Node ${machine.node} · ${machine.h2load} · took ${elapsedS.toFixed(0)} s`,
  "",
  ...(onlyWorkers ? [] : mainSections),
  ...workersSection,
  ...(notes.length > 0 ? ["", ...notes.map((n) => `- ${n}`)] : []),
  ...(failures.length > 0 ? ["", "**Failures:**", ...failures.map((f) => `- ${f.split("\n")[0]}`)] : []),
  "",
].join("\n");

const resultsDir = path.join(root, "bench/results");
mkdirSync(resultsDir, { recursive: true });
// A quick run is CI's smoke test, and --only workers a partial run: their files are git-ignored (*.tmp).
// Only a full run of every figure replaces latest.*.
const base = onlyWorkers
  ? `only-workers${quick ? "-quick" : ""}`
  : onlyRows !== undefined
    ? "rows"
    : quick
      ? "quick"
      : "latest";
const suffix = quick || onlyWorkers || onlyRows !== undefined ? ".tmp" : "";
const json = {
  date,
  mode: `${quick ? "quick" : "full"}${onlyWorkers ? ", figure 9 only" : ""}`,
  machine,
  sizes,
  notes,
  failures,
  elapsedS,
  figures: summary,
  workersFigures: workerSummary,
};
writeFileSync(path.join(resultsDir, `${base}.json${suffix}`), `${JSON.stringify(json, null, 2)}\n`);
writeFileSync(path.join(resultsDir, `${base}.md${suffix}`), md);
process.stdout.write(`\n${md}`);
log(`bench: wrote bench/results/${base}.json${suffix} and ${base}.md${suffix} in ${elapsedS.toFixed(0)} s`);
if (failures.length > 0) {
  log(`bench: ${failures.length} failure(s):\n${failures.map((f) => `  - ${f}`).join("\n")}`);
  process.exit(1);
}
process.exit(0);
