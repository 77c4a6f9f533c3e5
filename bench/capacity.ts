import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { pinned, runLoad, type ServerProcess, startServer } from "./processes.js";
import { productionBuild } from "./production.js";

// npm run bench:capacity [-- --streams 100000] [-- --intervals 2000,10000] [-- --rows ours,grpcjs,raw]
//
// How many streams one process holds, as the production build runs: for
// each server and interval, `--streams` gRPC streams (100 to a connection)
// from the load core, then over a 10 s window the memory per stream, the
// server's CPU, what was delivered and how late, the first message of new
// calls made meanwhile, and, for ours, the time a SIGTERM takes to drain
// them all. Writes bench/results/capacity.{json,md}.

const { values: flags } = parseArgs({
  options: {
    streams: { type: "string", default: "100000" },
    intervals: { type: "string", default: "2000,10000" },
    rows: { type: "string", default: "ours,grpcjs,raw" },
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

interface Fanout {
  started: number;
  openMs: number;
  rssKiBBefore: number;
  rssKiBWith: number;
  deliveredPerSec: number;
  offeredPerSec: number;
  p99LatenessMs: number;
  maxLatenessMs: number;
  cpuPct: number;
  errors: number;
}

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
  firstMessageP50Us?: number;
  firstMessageP99Us?: number;
  drainMs?: number;
}

/** Runs the fleet; calls `measuring` when its window opens and `done(result)` when it closes (the streams stay open). */
function fleet(server: ServerProcess, intervalMs: number, measuring: () => void): Promise<Fanout> {
  const task = {
    mode: "fanout",
    port: server.port,
    pid: server.pid,
    streams,
    perConnection: PER_CONNECTION,
    intervalMs,
    windowMs: WINDOW_MS,
    holdMs: HOLD_MS,
  };
  const [cmd, args] = pinned("1", [process.execPath, "--max-old-space-size=8192", client, JSON.stringify(task)]);
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

async function measure(key: string, intervalMs: number): Promise<Row> {
  const spec = servers[key];
  if (spec === undefined) throw new Error(`no server ${key}`);
  const server = await startServer(spec.argv, {}, 30_000);
  let latency: Promise<{ p50Us: number; p99Us: number }> | undefined;
  const result = await fleet(server, intervalMs, () => {
    // New calls while the fleet runs: how long the first message of each takes.
    const task = { mode: "latency", port: server.port, calls: 200, warmup: 20 };
    latency = runLoad([process.execPath, client, JSON.stringify(task)], 120_000).then(
      (r) => JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as { p50Us: number; p99Us: number },
    );
  });
  const first = await latency;
  let drainMs: number | undefined;
  const t0 = performance.now();
  // Ours drains: SIGTERM with every stream open, each gets its status, then it exits.
  await server.stop(key === "ours" ? 120_000 : undefined);
  if (key === "ours") drainMs = Math.round(performance.now() - t0);
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
  };
  if (first !== undefined) {
    row.firstMessageP50Us = Math.round(first.p50Us);
    row.firstMessageP99Us = Math.round(first.p99Us);
  }
  if (drainMs !== undefined) row.drainMs = drainMs;
  process.stderr.write(`capacity: ${JSON.stringify(row)}\n`);
  return row;
}

const rows: Row[] = [];
for (const intervalMs of intervals) {
  for (const key of String(flags.rows).split(",")) rows.push(await measure(key, intervalMs));
}

const md = [
  `# Capacity: ${streams.toLocaleString("en")} gRPC streams in one process`,
  "",
  `Run ${new Date().toISOString()} by \`npm run bench:capacity\` on ${cpus().length} cores, the production build; each server pinned to core 0, the load (${PER_CONNECTION} streams a connection) on core 1. One run per cell.`,
  "",
  "| server | interval | held | open (s) | RSS (MiB) | KiB/stream | CPU % | msg/s delivered of offered | p99 late (ms) | worst late (ms) | new call's first message p50 / p99 (µs) | SIGTERM drain (ms) |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ...rows.map(
    (r) =>
      `| ${servers[r.server]?.title} | ${r.intervalMs / 1000} s | ${r.held} | ${r.openS} | ${r.rssMiB} | ${r.kibPerStream} | ${r.cpuPct} | ${r.deliveredPerSec} of ${r.offeredPerSec} | ${r.p99LatenessMs} | ${r.maxLatenessMs} | ${r.firstMessageP50Us ?? "–"} / ${r.firstMessageP99Us ?? "–"} | ${r.drainMs ?? "–"} |`,
  ),
  "",
].join("\n");
writeFileSync(path.join(root, "bench/results/capacity.json"), `${JSON.stringify(rows, null, 2)}\n`);
writeFileSync(path.join(root, "bench/results/capacity.md"), md);
process.stdout.write(md);
