import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { holdFleet } from "./fleet.js";
import { kindsOf } from "./heap-snapshot.js";
import { runLoad, startServer } from "./processes.js";
import { productionBuild } from "./production.js";

// npm run bench:heap [-- --streams 10000] [-- --rows ours,grpcjs,raw]
//
// Where each KiB of an idle stream goes. For each server, as the production
// build runs: a V8 heap snapshot after warm-up calls, then `--streams` gRPC
// streams at 2 s (100 to a connection) and a second snapshot while they are
// open; the difference, by kind of object, divided by the streams, beside
// the resident memory each stream added. What is resident but not a live
// object is nghttp2's, the sockets', the heap's free space and the
// allocator's. Writes
// bench/results/heap.{json,md}.

const { values: flags } = parseArgs({
  options: {
    streams: { type: "string", default: "10000" },
    rows: { type: "string", default: "ours,grpcjs,raw" },
    top: { type: "string", default: "14" },
  },
});
const streams = Number(flags.streams);
const INTERVAL_MS = 2000;
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

process.stderr.write("heap: building the production build and the comparison servers\n");
const built = await productionBuild();
const client = built.script("load-client");
const servers: Record<string, { title: string; script: string; args: string[] }> = {
  ours: { title: "ours (defaults)", script: built.ours, args: [] },
  grpcjs: { title: "plain @grpc/grpc-js", script: built.script("grpc-js-server"), args: [] },
  raw: { title: "raw node:http2", script: built.script("raw-http2-server"), args: [] },
};

/** SIGUSR2 (the server runs with --heapsnapshot-signal), then the new file once Node finished writing it. */
async function snapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, "SIGUSR2");
  const deadline = performance.now() + 300_000;
  let last = -1;
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const made = readdirSync(dir).find((f) => f.endsWith(".heapsnapshot") && !before.has(f));
    if (made !== undefined) {
      const size = statSync(path.join(dir, made)).size;
      // Node writes the snapshot synchronously and ends it with the strings.
      if (size > 0 && size === last && readFileSync(path.join(dir, made)).subarray(-3).toString().includes("]}")) {
        return path.join(dir, made);
      }
      last = size;
    }
    if (performance.now() > deadline) throw new Error("no heap snapshot within 300 s");
  }
}

interface Row {
  server: string;
  streams: number;
  rssKiBPerStream: number;
  heapKiBPerStream: number;
  kinds: Array<{ kind: string; bytesPerStream: number; objectsPerStream: number }>;
}

async function measure(key: string): Promise<Row> {
  const spec = servers[key];
  if (spec === undefined) throw new Error(`no server ${key}`);
  const dir = mkdtempSync(path.join(tmpdir(), "heap-"));
  const server = await startServer(
    [process.execPath, "--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${dir}`, spec.script, ...spec.args],
    {},
    30_000,
  );
  try {
    // Warm-up calls (first connection, JIT), so that "before" is a served server's heap.
    const warm = { mode: "latency", port: server.port, calls: 50, warmup: 10 };
    await runLoad([process.execPath, client, JSON.stringify(warm)], 60_000);
    // Resident memory before the first snapshot: writing one makes the process take more for a while.
    const rssBefore = rssKiB(server.pid);
    const before = kindsOf(await snapshot(server.pid, dir));
    const result = await holdFleet(client, {
      port: server.port,
      pid: server.pid,
      streams,
      perConnection: 100,
      intervalMs: INTERVAL_MS,
      windowMs: 2000,
      holdMs: 600_000,
    });
    if (result.started !== streams) throw new Error(`${key}: ${result.started} of ${streams} streams started`);
    const during = kindsOf(await snapshot(server.pid, dir));
    const kinds = [...during.kinds]
      .map(([kind, k]) => {
        const b = before.kinds.get(kind) ?? { bytes: 0, count: 0 };
        return { kind, bytesPerStream: (k.bytes - b.bytes) / streams, objectsPerStream: (k.count - b.count) / streams };
      })
      .sort((a, b) => b.bytesPerStream - a.bytesPerStream);
    const row: Row = {
      server: key,
      streams,
      rssKiBPerStream: round((result.rssKiBWith - rssBefore) / streams),
      heapKiBPerStream: round((during.total - before.total) / 1024 / streams),
      kinds: kinds.map((k) => ({
        kind: k.kind,
        bytesPerStream: Math.round(k.bytesPerStream),
        objectsPerStream: round(k.objectsPerStream),
      })),
    };
    process.stderr.write(`heap: ${key}: ${row.rssKiBPerStream} KiB RSS, ${row.heapKiBPerStream} KiB heap a stream\n`);
    return row;
  } finally {
    // The fleet's client exits once the server is gone.
    await server.stop(10_000);
    rmSync(dir, { recursive: true, force: true });
  }
}

const round = (x: number) => Math.round(x * 10) / 10;

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? Number.NaN);
}

const rows: Row[] = [];
for (const key of String(flags.rows).split(",")) rows.push(await measure(key));

const top = Number(flags.top);
const table = (r: Row) => {
  const shown = r.kinds.slice(0, top);
  const rest = r.kinds.slice(top).reduce((a, k) => a + k.bytesPerStream, 0);
  return [
    `#### ${servers[r.server]?.title}: ${r.rssKiBPerStream} KiB resident a stream, ${r.heapKiBPerStream} KiB of it in V8's heap`,
    "",
    "| kind of object | bytes a stream | objects a stream |",
    "|---|---:|---:|",
    ...shown.map((k) => `| \`${k.kind}\` | ${k.bytesPerStream} | ${k.objectsPerStream} |`),
    `| everything else | ${Math.round(rest)} | |`,
    `| resident but not a live object on V8's heap: nghttp2's and the sockets' native memory, the heap's free space, the allocator's | ${Math.round((r.rssKiBPerStream - r.heapKiBPerStream) * 1024)} | |`,
    "",
  ].join("\n");
};
const md = [
  `### Where an idle stream's memory goes: ${streams.toLocaleString("en")} gRPC streams at 2 s`,
  "",
  `Run ${new Date().toISOString()} by \`npm run bench:heap\` on ${cpus().length} cores, the production build; each server pinned to core 0, the load (100 streams a connection) on core 1. A V8 heap snapshot after warm-up calls and another with the streams open; each row is the difference by kind (an object by its constructor, else V8's node type in parentheses), divided by the streams. Resident memory is the process's VmRSS before the first snapshot and with the streams open, before the second.`,
  "",
  ...rows.map(table),
].join("\n");
writeFileSync(path.join(root, "bench/results/heap.json"), `${JSON.stringify(rows, null, 2)}\n`);
writeFileSync(path.join(root, "bench/results/heap.md"), md);
process.stdout.write(md);
