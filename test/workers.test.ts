import assert from "node:assert/strict";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { StreamService } from "../gen/stream/v1/stream_pb.js";
import { durationFromMs } from "../src/shared/duration.js";
import { sample, scrapeMetrics, total } from "./support/metrics-text.js";
import { type Proc, type ServerProc, serverEntry, startProcess, startServerProcess, stop } from "./support/process.js";
import { promtool } from "./support/prometheus.js";

// --workers (src/server/workers.ts, worker-link.ts): a primary and its
// workers as real processes on one port. Which worker a connection lands on
// is node:cluster's round robin, so each stream below opens a connection of
// its own, and the log lines (each with its process's pid) say who served it.

interface Line {
  msg: string;
  time: string;
  pid?: number;
  worker?: number;
  worker_pid?: number;
  name?: string;
  restart_in_ms?: number;
  signal?: string;
  clean?: boolean;
  [key: string]: unknown;
}

function logOf(proc: Proc): Line[] {
  return proc.lines.flatMap((l) => {
    try {
      return [JSON.parse(l) as Line];
    } catch {
      return [];
    }
  });
}

/** Worker pids that said they serve and have not exited, oldest first. */
function servingPids(proc: Proc): number[] {
  const log = logOf(proc);
  const exited = new Set(log.filter((l) => l.msg === "worker exited").map((l) => l.worker_pid));
  return log.filter((l) => l.msg === "worker serving" && !exited.has(l.worker_pid)).map((l) => l.worker_pid as number);
}

const transports: Record<"grpc" | "connect", (url: string) => Transport> = {
  // A transport per stream: a connection per stream, so that the streams spread over the workers.
  grpc: (baseUrl) => createGrpcTransport({ baseUrl }),
  connect: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }),
};

interface OpenStream {
  name: string;
  abort: AbortController;
  /** Settles with the error that ended the stream, undefined for a clean end or an abort. */
  ended: Promise<ConnectError | undefined>;
}

/** `perProtocol` endless streams over gRPC and as many over Connect on HTTP/1.1, each on its own connection. */
function openStreams(url: string, prefix: string, perProtocol: number): OpenStream[] {
  return (["grpc", "connect"] as const).flatMap((protocol) =>
    Array.from({ length: perProtocol }, (_, i) => {
      const name = `${prefix}-${protocol}-${i}`;
      const abort = new AbortController();
      const client = createClient(StreamService, transports[protocol](url));
      const ended = (async () => {
        try {
          for await (const _ of client.stream({ name, interval: durationFromMs(100) }, { signal: abort.signal })) {
          }
          return undefined;
        } catch (e) {
          return abort.signal.aborted ? undefined : ConnectError.from(e);
        }
      })();
      return { name, abort, ended };
    }),
  );
}

/** A short stream on a fresh connection, every message checked. */
async function shortStream(url: string, protocol: "grpc" | "connect", name: string): Promise<void> {
  const client = createClient(StreamService, transports[protocol](url));
  const got: string[] = [];
  for await (const m of client.stream({ name, limit: 3n, interval: durationFromMs(0) })) got.push(m.message);
  assert.deepEqual(
    got,
    [0, 1, 2].map((n) => `Hello ${name}, this is ${n} time stream message.`),
  );
}

function pidsThatStarted(proc: Proc, names: readonly string[]): Set<number> {
  return new Set(
    logOf(proc)
      .filter((l) => l.msg === "stream started" && names.includes(l.name ?? ""))
      .map((l) => l.pid as number),
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("--workers 2", () => {
  let srv: ServerProc;
  before(async () => {
    srv = await startServerProcess(["--workers", "2", "--shutdown-grace", "5s"], 0, {}, 30_000);
    await srv.waitUntil(() => servingPids(srv).length === 2, 30_000);
  });
  after(() => stop(srv, "SIGKILL"));

  it("should serve gRPC and Connect streams from both workers, and count them all in /metrics", async () => {
    const streams = openStreams(srv.url, "both", 4);
    const names = streams.map((s) => s.name);
    await srv.waitUntil(() => logOf(srv).filter((l) => l.msg === "stream started").length >= names.length);
    assert.deepEqual([...pidsThatStarted(srv, names)].sort(), [...servingPids(srv)].sort(), "each worker served");
    // Each scrape is a new connection, so they land on both workers: every one sees the whole group.
    for (let i = 0; i < 4; i++) {
      const text = await scrapeMetrics(srv.url);
      assert.equal(sample(text, 'streams_live{protocol="grpc"}'), 4, text);
      assert.equal(sample(text, 'streams_live{protocol="connect"}'), 4);
      assert.equal(sample(text, "workers"), 2);
      assert.ok(total(text, "streams_started_total") >= 8);
      assert.match(text, /^nodejs_eventloop_lag_p99_seconds \d/m);
      assert.match(text, /^process_start_time_seconds \d+/m);
    }
    // What the primary adds up is as clean as one process's.
    assert.deepEqual(await promtool(["check", "metrics"], await scrapeMetrics(srv.url)), {
      code: 0,
      stdout: "",
      stderr: "",
    });
    const ready = await fetch(`${srv.url}/readyz`);
    assert.equal(ready.status, 200);
    for (const s of streams) s.abort.abort();
    for (const s of streams) assert.equal(await s.ended, undefined, s.name);
  });

  it("should replace a worker killed with SIGKILL, waiting longer each time it dies again, and serve meanwhile", async () => {
    const startedBefore = total(await scrapeMetrics(srv.url), "streams_started_total");
    const delays: number[] = [];
    for (let kill = 0; kill < 3; kill++) {
      const [victim, survivor] = kill === 0 ? servingPids(srv) : servingPids(srv).reverse();
      assert.ok(victim !== undefined && survivor !== undefined);
      process.kill(victim, "SIGKILL");
      const exited = await srv.waitForLine(
        (l) => l.includes('"worker exited"') && l.includes(`"worker_pid":${victim}`),
      );
      const exit = JSON.parse(exited) as Line;
      assert.equal(exit.signal, "SIGKILL");
      delays.push(exit.restart_in_ms as number);
      if (kill === 0) {
        // The other worker holds the port: new streams go on while the replacement starts.
        await Promise.all(
          ["grpc", "connect", "grpc", "connect"].map((p, i) => shortStream(srv.url, p as "grpc", `meanwhile-${i}`)),
        );
      }
      await srv.waitUntil(() => servingPids(srv).length === 2 && !servingPids(srv).includes(victim), 30_000);
      const started = logOf(srv).find((l) => l.msg === "worker started" && Date.parse(l.time) >= Date.parse(exit.time));
      assert.ok(started, "no worker started after the exit");
      const waited = Date.parse(started.time) - Date.parse(exit.time);
      assert.ok(waited >= (exit.restart_in_ms as number), `started ${waited} ms after the exit`);
    }
    // At once, then 0.5 s, then 1 s: each replacement died before it had served 30 s.
    assert.deepEqual(delays, [0, 500, 1000]);

    const newest = servingPids(srv).at(-1) as number;
    const names = Array.from({ length: 6 }, (_, i) => `after-${i}`);
    await Promise.all(names.map((name, i) => shortStream(srv.url, i % 2 === 0 ? "grpc" : "connect", name)));
    await srv.waitUntil(() => pidsThatStarted(srv, names).size === 2);
    assert.ok(pidsThatStarted(srv, names).has(newest), "the replacement serves");
    const text = await scrapeMetrics(srv.url);
    assert.equal(sample(text, "workers"), 2);
    assert.equal(sample(text, "worker_restarts_total"), 3);
    // The dead workers' counts stay in the sum: a counter of the group never goes down.
    assert.ok(
      total(text, "streams_started_total") >= startedBefore + 4 + names.length,
      `${total(text, "streams_started_total")} after ${startedBefore}`,
    );
  });

  it("should drain every worker on SIGTERM to the primary, end their streams with UNAVAILABLE, free the port and exit 0", async () => {
    const workers = servingPids(srv);
    assert.equal(workers.length, 2);
    const streams = openStreams(srv.url, "drain", 3);
    const names = streams.map((s) => s.name);
    await srv.waitUntil(
      () =>
        pidsThatStarted(srv, names).size === 2 &&
        logOf(srv).filter((l) => l.msg === "stream started" && names.includes(l.name ?? "")).length === names.length,
    );
    const signalled = performance.now();
    // Exactly the primary: the process this test started.
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    const tookMs = performance.now() - signalled;
    assert.ok(tookMs < 5000, `exited after ${tookMs.toFixed(0)} ms`);
    for (const s of streams) {
      const error = await s.ended;
      assert.equal(error?.code, Code.Unavailable, `${s.name}: ${error?.message}`);
      assert.equal(error?.rawMessage, "server is shutting down");
    }
    for (const pid of workers) assert.equal(alive(pid), false, `worker ${pid} still runs`);
    const log = logOf(srv);
    for (const pid of workers) {
      assert.ok(
        log.some((l) => l.msg === "shut down" && l.pid === pid && l.clean === true),
        `worker ${pid} drained`,
      );
    }
    assert.ok(
      log.some((l) => l.msg === "shut down" && l.worker === undefined && l.clean === true),
      "the primary's line",
    );
    await new Promise<void>((resolve, reject) => {
      const probe = net.createServer();
      probe.once("error", reject);
      probe.listen(srv.port, "127.0.0.1", () => probe.close(() => resolve()));
    });
  });
});

describe("--workers 2 when no worker can start", () => {
  it("should exit with the workers' status instead of starting them again and again", async () => {
    const proc = startProcess(serverEntry, ["--host", "127.0.0.1", "--port", "0", "--workers", "2"], {
      LOG_FORMAT: "json",
      // Nothing is sent there: the exporter is refused before any span.
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9",
      OTEL_TRACES_EXPORTER: "zipkin",
    });
    try {
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([
        proc.exited,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`still running after 30 s:\n${proc.lines.join("\n")}`)), 30_000);
        }),
      ]).finally(() => clearTimeout(timer));
      assert.equal(code, 2);
      assert.match(proc.stderr(), /configuration error: OTEL_TRACES_EXPORTER/);
      assert.ok(proc.lines.some((l) => l.includes('"worker exited before any worker served; stopping"')));
    } finally {
      await stop(proc, "SIGKILL");
    }
  });
});
