import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { measurePace } from "../test/support/fast-readers.js";
import { holdFleet } from "./fleet.js";
import { runLoad, startServer } from "./processes.js";
import { productionBuild } from "./production.js";

// npm run bench:capacity [-- --streams 100000] [-- --intervals 2000,10000] [-- --rows ours,grpcjs,raw]
//                        [-- --sweep 100:5000,1000:20000,...] [-- --ceiling 100000,150000,...]
//
// How many streams one process holds, as the production build runs. Three
// tables, each cell a fresh server:
// - the headline: for each server and interval, `--streams` gRPC streams
//   (100 to a connection) from the load core, then over a 10 s window the
//   memory per stream, the server's CPU, what was delivered and how late,
//   the first message of new calls and the pace of a good client made
//   meanwhile, and, for ours, the time a SIGTERM takes to drain them all;
// - the sweep: ours at intervals from 100 ms to 60 s, each with as many
//   streams as `interval:streams` says, for the cost of a stream at each;
// - the ceiling: ours at 2 s with more and more streams, until the p99
//   lateness passes 1 s or the load client itself runs out of core.
// Writes bench/results/capacity.{json,md}.

const { values: flags } = parseArgs({
  options: {
    streams: { type: "string", default: "100000" },
    intervals: { type: "string", default: "2000,10000" },
    rows: { type: "string", default: "ours,grpcjs,raw" },
    sweep: { type: "string", default: "100:5000,500:20000,2000:50000,10000:100000,60000:100000" },
    ceiling: { type: "string", default: "100000,150000,200000,250000,300000" },
  },
});
const streams = Number(flags.streams);
const intervals = String(flags.intervals).split(",").map(Number);
const PER_CONNECTION = 100;
const WINDOW_MS = 10_000;
const HOLD_MS = 60_000;

process.stderr.write("capacity: building the production build and the comparison servers\n");
const built = await productionBuild();
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const client = built.script("load-client");
const everyClientIsOne = ["--max-streams-per-client", "10000000", "--max-connections-per-client", "10000000"];
const servers: Record<string, { title: string; argv: string[] }> = {
  ours: { title: "ours (--max-streams auto, the default)", argv: [process.execPath, built.ours, ...everyClientIsOne] },
  grpcjs: { title: "plain @grpc/grpc-js", argv: [process.execPath, built.script("grpc-js-server")] },
  raw: { title: "raw node:http2", argv: [process.execPath, built.script("raw-http2-server")] },
};

interface Row {
  server: string;
  intervalMs: number;
  streams: number;
  held: number;
  openS: number;
  rssMiB: number;
  kibPerStream: number;
  cpuPct: number;
  deliveredPerSec: number;
  offeredPerSec: number;
  p99LatenessMs: number;
  maxLatenessMs: number;
  clientCpuPct: number;
  firstMessageP50Us?: number;
  firstMessageP99Us?: number;
  goodWorstGapMs?: number;
  goodWorstHealthzMs?: number;
  drainMs?: number;
  /** Every stream got its status within --shutdown-grace (the server's "shut down" line says clean). */
  drainClean?: boolean;
}

interface Cell {
  key: string;
  streams: number;
  intervalMs: number;
  /** The headline's extras: new calls and a good client during the window, and the drain. */
  probes: boolean;
}

async function measure({ key, streams, intervalMs, probes }: Cell): Promise<Row> {
  const spec = servers[key];
  if (spec === undefined) throw new Error(`no server ${key}`);
  const server = await startServer(spec.argv, {}, 30_000);
  let latency: Promise<{ p50Us: number; p99Us: number }> | undefined;
  let pace: ReturnType<typeof measurePace> | undefined;
  // A long interval gets a window of one interval, so that every stream sends in it.
  const windowMs = Math.max(WINDOW_MS, intervalMs);
  const task = {
    port: server.port,
    pid: server.pid,
    streams,
    perConnection: PER_CONNECTION,
    intervalMs,
    settleMs: Math.min(intervalMs * 5, 20_000),
    windowMs,
    holdMs: probes ? HOLD_MS : 0,
  };
  const result = await holdFleet(client, task, () => {
    if (!probes) return;
    // New calls while the fleet runs: how long the first message of each takes.
    const task = { mode: "latency", port: server.port, calls: 200, warmup: 20 };
    latency = runLoad([process.execPath, client, JSON.stringify(task)], 120_000).then(
      (r) => JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as { p50Us: number; p99Us: number },
    );
    // And, for ours, a client at 100 ms over plain HTTP, with /healthz probed on
    // fresh connections (the others serve neither).
    if (key === "ours") pace = measurePace(`http://127.0.0.1:${server.port}`, 100, 50);
  });
  const first = await latency;
  const good = await pace;
  let drainMs: number | undefined;
  let drainClean: boolean | undefined;
  const t0 = performance.now();
  // Ours drains: SIGTERM with every stream open, each gets its status, then it exits.
  await server.stop(key === "ours" && probes ? 120_000 : undefined);
  if (key === "ours" && probes) {
    drainMs = Math.round(performance.now() - t0);
    const last = server
      .stdoutTail()
      .split("\n")
      .find((l) => l.includes('"shut down"'));
    if (last !== undefined) drainClean = JSON.parse(last).clean === true;
  }
  const row: Row = {
    server: key,
    intervalMs,
    streams,
    held: result.started,
    openS: Math.round(result.openMs / 100) / 10,
    rssMiB: Math.round(result.rssKiBWith / 1024),
    kibPerStream: Math.round(((result.rssKiBWith - result.rssKiBBefore) / result.started) * 10) / 10,
    cpuPct: Math.round(result.cpuPct),
    deliveredPerSec: Math.round(result.deliveredPerSec),
    offeredPerSec: Math.round(result.offeredPerSec),
    p99LatenessMs: Math.round(result.p99LatenessMs),
    maxLatenessMs: Math.round(result.maxLatenessMs),
    clientCpuPct: Math.round(result.clientCpuPct),
  };
  if (good !== undefined) {
    row.goodWorstGapMs = Math.round(good.worstGapMs);
    row.goodWorstHealthzMs = Math.round(good.worstHealthzMs);
  }
  if (first !== undefined) {
    row.firstMessageP50Us = Math.round(first.p50Us);
    row.firstMessageP99Us = Math.round(first.p99Us);
  }
  if (drainMs !== undefined) row.drainMs = drainMs;
  if (drainClean !== undefined) row.drainClean = drainClean;
  process.stderr.write(`capacity: ${JSON.stringify(row)}\n`);
  return row;
}

const headline: Row[] = [];
for (const intervalMs of intervals) {
  for (const key of String(flags.rows).split(",")) {
    headline.push(await measure({ key, streams, intervalMs, probes: true }));
  }
}

const sweep: Row[] = [];
for (const pair of String(flags.sweep).split(",").filter(Boolean)) {
  const [intervalMs, n] = pair.split(":").map(Number) as [number, number];
  sweep.push(await measure({ key: "ours", streams: n, intervalMs, probes: false }));
}

// Past 1 s of p99 lateness, or with the load client near a whole core (it,
// not the server, would then be what is measured), the search stops.
const ceiling: Row[] = [];
for (const n of String(flags.ceiling).split(",").filter(Boolean).map(Number)) {
  const row = await measure({ key: "ours", streams: n, intervalMs: 2000, probes: false });
  ceiling.push(row);
  if (row.held < n || row.p99LatenessMs > 1000 || row.clientCpuPct > 90) break;
}

const perMessageUs = (r: Row) => (r.deliveredPerSec > 0 ? Math.round((r.cpuPct * 10_000) / r.deliveredPerSec) : "–");
const md = [
  `### How many gRPC streams one process holds`,
  "",
  `Run ${new Date().toISOString()} by \`npm run bench:capacity\` on ${cpus().length} cores, the production build; each server pinned to core 0, the load (${PER_CONNECTION} streams a connection) on core 1. One run per cell, each a fresh server. Lateness is against the stream's own schedule (message k due at its first message + k × interval), at the client.`,
  "",
  `#### ${streams.toLocaleString("en")} streams`,
  "",
  "| server | interval | held | open (s) | RSS (MiB) | KiB/stream | CPU % | msg/s delivered of offered | p99 late (ms) | worst late (ms) | new call's first message p50 / p99 (µs) | good client's worst gap, /healthz (ms) | SIGTERM drain (ms) |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ...headline.map(
    (r) =>
      `| ${servers[r.server]?.title} | ${r.intervalMs / 1000} s | ${r.held} | ${r.openS} | ${r.rssMiB} | ${r.kibPerStream} | ${r.cpuPct} | ${r.deliveredPerSec} of ${r.offeredPerSec} | ${r.p99LatenessMs} | ${r.maxLatenessMs} | ${r.firstMessageP50Us ?? "–"} / ${r.firstMessageP99Us ?? "–"} | ${r.goodWorstGapMs ?? "–"}, ${r.goodWorstHealthzMs ?? "–"} | ${r.drainMs === undefined ? "–" : `${r.drainMs}${r.drainClean === false ? " (grace over)" : ""}`} |`,
  ),
  "",
  "#### The cost of a stream, by interval (ours)",
  "",
  "| interval | streams | KiB/stream | CPU % | CPU % per 10,000 streams | CPU µs per message | msg/s delivered of offered | p99 late (ms) |",
  "|---|---|---|---|---|---|---|---|",
  ...sweep.map(
    (r) =>
      `| ${r.intervalMs / 1000} s | ${r.held} of ${r.streams} | ${r.kibPerStream} | ${r.cpuPct} | ${Math.round((r.cpuPct * 100_000) / r.held) / 10} | ${perMessageUs(r)} | ${r.deliveredPerSec} of ${r.offeredPerSec} | ${r.p99LatenessMs} |`,
  ),
  "",
  "#### The most streams at 2 s (ours)",
  "",
  "| streams | held | open (s) | RSS (MiB) | KiB/stream | CPU % | msg/s delivered of offered | p99 late (ms) | worst late (ms) | load client's CPU % |",
  "|---|---|---|---|---|---|---|---|---|---|",
  ...ceiling.map(
    (r) =>
      `| ${r.streams} | ${r.held} | ${r.openS} | ${r.rssMiB} | ${r.kibPerStream} | ${r.cpuPct} | ${r.deliveredPerSec} of ${r.offeredPerSec} | ${r.p99LatenessMs} | ${r.maxLatenessMs} | ${r.clientCpuPct} |`,
  ),
  "",
].join("\n");
writeFileSync(
  path.join(root, "bench/results/capacity.json"),
  `${JSON.stringify({ headline, sweep, ceiling }, null, 2)}\n`,
);
writeFileSync(path.join(root, "bench/results/capacity.md"), md);
process.stdout.write(md);
