import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import { createEnvelopeReader, envelope, grpcRequestHeaders, streamPath } from "../test/support/wire.js";
import { type BenchRequest, CONNECT_END_STREAM, decodeResponse, encodeRequest } from "./wire.js";

// The Node side of the load: correctness checks, time to first message,
// fan-out and idle streams, on plain node:http2 (no gRPC library, so the
// client costs the same against every server). Run by bench/run.ts as its own
// process pinned to the load core; takes one JSON argument, prints one JSON
// line, exits.
//
//   node --import tsx bench/load-client.ts '{"mode":"latency","port":8080,"calls":1000}'

export type ClientTask =
  | { mode: "check"; port: number; protocols: Protocol[] }
  | {
      mode: "latency";
      port: number;
      calls: number;
      warmup: number;
      /** gRPC (default), or Connect over HTTP/2 or HTTP/1.1 (one keep-alive connection). */
      protocol?: Protocol;
    }
  | {
      mode: "fanout";
      port: number;
      pid: number;
      /** The fleet's protocol. Default "grpc". */
      protocol?: FleetProtocol;
      streams: number;
      perConnection: number;
      intervalMs: number;
      windowMs: number;
      /** How long the streams run between the last one's start and the window. Default 5 intervals. */
      settleMs?: number;
      /**
       * For the capacity figure: print the result as soon as the window
       * ends (and `{"measuring":true}` when it starts), then keep the streams
       * open this long, so that the server can be stopped while they run.
       */
      holdMs?: number;
    }
  | {
      mode: "idle";
      port: number;
      pid: number;
      /** The fleet's protocol. Default "grpc". */
      protocol?: FleetProtocol;
      streams: number;
      perConnection: number;
      intervalMs: number;
      settleMs: number;
      windowMs: number;
    };

export type Protocol = "grpc" | "connect-h2" | "connect-h1";

/**
 * How a fleet's streams call: over HTTP/2, `perConnection` streams share a
 * connection; over HTTP/1.1 each stream is a connection of its own, as a
 * browser without HTTP/2 opens them.
 */
export type FleetProtocol =
  | "grpc"
  | "connect-h2"
  | "grpc-web-h2"
  | "connect-h1"
  | "grpc-web-h1"
  | "ndjson-h1"
  | "sse-h1";

const fleetContentTypes: Partial<Record<FleetProtocol, string>> = {
  grpc: "application/grpc",
  "connect-h2": "application/connect+proto",
  "grpc-web-h2": "application/grpc-web+proto",
  "connect-h1": "application/connect+proto",
  "grpc-web-h1": "application/grpc-web+proto",
};

/** What one call received, as the checks look at it. */
interface CallResult {
  messages: { message: string; counter: bigint; at: number }[];
  status: string | undefined;
  statusMessage: string | undefined;
  firstAt: number;
}

/** One gRPC call on `session`, every message decoded; `cancelAfter` resets the stream after that many messages. */
function grpcCall(session: http2.ClientHttp2Session, req: BenchRequest, cancelAfter?: number): Promise<CallResult> {
  return new Promise((resolve, reject) => {
    const result: CallResult = { messages: [], status: undefined, statusMessage: undefined, firstAt: 0 };
    const stream = session.request(grpcRequestHeaders());
    const onStatus = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) {
        result.status = String(h["grpc-status"]);
        result.statusMessage =
          h["grpc-message"] === undefined ? undefined : decodeURIComponent(String(h["grpc-message"]));
      }
    };
    stream.on("response", onStatus);
    stream.on("trailers", onStatus);
    const read = createEnvelopeReader((_flags, payload) => {
      const r = decodeResponse(payload);
      result.messages.push({ message: r.message, counter: r.counter, at: performance.now() });
      if (cancelAfter !== undefined && result.messages.length === cancelAfter)
        stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    stream.on("data", read);
    stream.on("error", reject);
    stream.on("close", () => resolve(result));
    stream.end(envelope(encodeRequest(req)));
  });
}

/** One Connect streaming call over HTTP/2 or HTTP/1.1; status is "0" for an end-stream without error, else the error code. */
function connectCall(port: number, version: "h2" | "h1", req: BenchRequest): Promise<CallResult> {
  return new Promise((resolve, reject) => {
    const result: CallResult = { messages: [], status: undefined, statusMessage: undefined, firstAt: 0 };
    const read = createEnvelopeReader((flags, payload) => {
      if (flags & CONNECT_END_STREAM) {
        const end = JSON.parse(payload.toString("utf8")) as { error?: { code: string; message?: string } };
        result.status = end.error === undefined ? "0" : end.error.code;
        result.statusMessage = end.error?.message;
        return;
      }
      const r = decodeResponse(payload);
      result.messages.push({ message: r.message, counter: r.counter, at: performance.now() });
    });
    const headers = { "content-type": "application/connect+proto", "connect-protocol-version": "1" };
    const body = envelope(encodeRequest(req));
    if (version === "h1") {
      const r = http.request(
        { host: "127.0.0.1", port, method: "POST", path: streamPath, headers, agent: false },
        (res) => {
          res.on("data", read);
          res.on("end", () => resolve(result));
          res.on("error", reject);
        },
      );
      r.on("error", reject);
      r.end(body);
      return;
    }
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": streamPath, ...headers });
    stream.on("data", read);
    stream.on("error", reject);
    stream.on("close", () => {
      session.close();
      resolve(result);
    });
    stream.end(body);
  });
}

function connect(port: number): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.once("connect", () => resolve(session));
    session.once("error", reject);
  });
}

async function check(task: Extract<ClientTask, { mode: "check" }>): Promise<{ failures: string[] }> {
  const failures: string[] = [];
  const expect = (what: string, ok: boolean, detail: unknown) => {
    if (!ok) failures.push(`${what}: ${JSON.stringify(detail, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`);
  };
  const expectGreetings = (what: string, r: CallResult, name: string, first: number, count: number) => {
    expect(`${what}: status OK`, r.status === "0", { status: r.status, message: r.statusMessage });
    expect(`${what}: ${count} messages`, r.messages.length === count, r.messages.length);
    r.messages.forEach((m, i) => {
      const counter = first + i;
      const text = `Hello ${name}, this is ${counter} time stream message.`;
      if (m.message !== text || m.counter !== BigInt(counter)) {
        expect(`${what}: message ${i}`, false, { got: m.message, counter: m.counter, want: text });
      }
    });
  };
  for (const protocol of task.protocols) {
    const call = (req: BenchRequest) =>
      protocol === "grpc"
        ? connect(task.port).then(async (s) => {
            try {
              return await grpcCall(s, req);
            } finally {
              s.close();
            }
          })
        : connectCall(task.port, protocol === "connect-h2" ? "h2" : "h1", req);
    expectGreetings(
      `${protocol} flood`,
      await call({ name: "bench", intervalMs: 0, limit: 500, startAt: 7 }),
      "bench",
      7,
      500,
    );
    expectGreetings(`${protocol} empty name`, await call({ name: "", intervalMs: 0, limit: 2 }), "Anonymous", 0, 2);
    const t0 = performance.now();
    // Loose bounds: CI machines are noisy, and this asserts pacing exists, not how precise it is.
    const paced = await call({ name: "Zoë 🚀", intervalMs: 300, limit: 3, startAt: 1 });
    expectGreetings(`${protocol} paced`, paced, "Zoë 🚀", 1, 3);
    const first = paced.messages[0]?.at ?? t0;
    const last = paced.messages[2]?.at ?? t0;
    expect(`${protocol} paced: first message at once, not after an interval`, first - t0 < 250, first - t0);
    expect(`${protocol} paced: 3 messages 300 ms apart`, last - first >= 450 && last - first < 3000, last - first);
    const bad = await call({ name: "x".repeat(101), intervalMs: 0, limit: 1 });
    expect(
      `${protocol} too long name: INVALID_ARGUMENT`,
      bad.status === "3" || bad.status === "invalid_argument",
      bad.status,
    );
  }
  if (task.protocols.includes("grpc")) {
    // A cancelled stream must not stop the server from serving the next one on the same connection.
    const s = await connect(task.port);
    const cancelled = await grpcCall(s, { name: "c", intervalMs: 0, limit: 0 }, 3);
    expect("grpc cancel: got messages before cancelling", cancelled.messages.length >= 3, cancelled.messages.length);
    const unset = await grpcCall(s, { name: "d", intervalMs: undefined, limit: 2 }, 1);
    expect("grpc default interval: first message at once", unset.messages.length === 1, unset.messages.length);
    expectGreetings("grpc after cancel", await grpcCall(s, { name: "e", intervalMs: 0, limit: 5 }), "e", 0, 5);
    s.close();
  }
  return { failures };
}

function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Sequential calls with limit 1 on one connection: the time from request to the first whole message. */
async function latency(task: Extract<ClientTask, { mode: "latency" }>) {
  const protocol = task.protocol ?? "grpc";
  const session = protocol === "connect-h1" ? undefined : await connect(task.port);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const body = envelope(encodeRequest({ name: "latency", intervalMs: 0, limit: 1 }));
  const samples = new Float64Array(task.calls);
  // One call: resolves with the microseconds to its first message, once it ended well.
  const call = (i: number) =>
    new Promise<number>((resolve, reject) => {
      const t0 = performance.now();
      let t1 = 0;
      let status: string | undefined;
      const read = createEnvelopeReader((flags, payload) => {
        if (flags === 0) {
          if (t1 === 0) t1 = performance.now();
          return;
        }
        // Connect's end-of-stream message: {} when the call ended well.
        const end = JSON.parse(payload.toString("utf8")) as { error?: { code: string } };
        status = end.error === undefined ? "0" : end.error.code;
      });
      const done = (detail: string) => {
        if (status === "0" && t1 > 0) resolve((t1 - t0) * 1000);
        else reject(new Error(`latency call ${i} of ${task.calls} did not end OK with its one message: ${detail}`));
      };
      if (session === undefined) {
        const r = http.request(
          {
            host: "127.0.0.1",
            port: task.port,
            method: "POST",
            path: streamPath,
            agent,
            headers: { "content-type": "application/connect+proto" },
          },
          (res) => {
            res.on("data", read);
            res.on("end", () => done(`status ${status ?? "missing"}`));
          },
        );
        r.on("error", reject);
        r.end(body);
        return;
      }
      const stream = session.request(
        protocol === "grpc"
          ? grpcRequestHeaders()
          : { ":method": "POST", ":path": streamPath, "content-type": "application/connect+proto" },
      );
      stream.on("data", read);
      stream.on("trailers", (h) => {
        status = String(h["grpc-status"]);
      });
      stream.on("error", reject);
      stream.on("close", () => done(`status ${status ?? "missing"}, RST code ${stream.rstCode}`));
      stream.end(body);
    });
  for (let i = -task.warmup; i < task.calls; i++) {
    const us = await call(i);
    if (i >= 0) samples[i] = us;
  }
  session?.close();
  agent.destroy();
  samples.sort();
  return { p50Us: percentile(samples, 50), p99Us: percentile(samples, 99), calls: task.calls };
}

const clockTicks = 100; // USER_HZ on Linux: /proc/PID/stat counts CPU time in 1/100 s.

/** utime + stime of a process, in milliseconds. */
/** CPU time of `pid` and every process under it (a server with --workers is a primary and its workers). */
function cpuMs(pid: number): number {
  let ms = 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
    for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(" ")) {
      if (child !== "") ms += cpuMs(Number(child));
    }
  } catch {
    // A process that exited between the two reads costs nothing more.
  }
  return ms;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : Number.NaN;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Fleet {
  /** Messages received per stream, the time of each stream's first message. */
  counts: Uint32Array;
  firsts: Float64Array;
  errors: number;
  close(): void;
}

/**
 * Opens `streams` streams of `protocol`, spread over one interval so the
 * offered load is smooth; onMessage sees each message's stream index, index
 * within the stream and arrival time.
 */
async function openFleet(
  port: number,
  protocol: FleetProtocol,
  streams: number,
  perConnection: number,
  intervalMs: number,
  onMessage: (stream: number, k: number, at: number) => void,
): Promise<Fleet> {
  const h1 = protocol.endsWith("-h1");
  const sessions: http2.ClientHttp2Session[] = [];
  const requests: http.ClientRequest[] = [];
  if (!h1) for (let i = 0; i < Math.ceil(streams / perConnection); i++) sessions.push(await connect(port));
  let closing = false;
  const fleet: Fleet = {
    counts: new Uint32Array(streams),
    firsts: new Float64Array(streams),
    errors: 0,
    close: () => {
      closing = true;
      for (const s of sessions) s.destroy();
      for (const r of requests) r.destroy();
    },
  };
  const seconds = intervalMs / 1000;
  const path =
    protocol === "ndjson-h1" || protocol === "sse-h1" ? `/stream?name=fleet&interval=${seconds}s` : streamPath;
  const body = envelope(encodeRequest({ name: "fleet", intervalMs, limit: 0 }));
  const contentType = fleetContentTypes[protocol];
  const start = performance.now();
  // Evenly over one interval, giving the event loop back at every connection
  // even when behind: a client on one core that made 150,000 requests in a
  // row sent none of them (1.2 GB of requests queued, then errors), and the
  // server was measured against nothing.
  for (let i = 0; i < streams; i++) {
    const wait = start + (i / streams) * intervalMs - performance.now();
    if (wait > 1) await sleep(wait);
    else if (i % perConnection === 0) await new Promise((r) => setImmediate(r));
    const seen = () => {
      const at = performance.now();
      const k = fleet.counts[i] ?? 0;
      if (k === 0) fleet.firsts[i] = at;
      fleet.counts[i] = k + 1;
      onMessage(i, k, at);
    };
    // Envelopes with flags 0 are messages; text streams count lines (NDJSON) or blank-line-ended events (SSE).
    const read: (chunk: Buffer) => void =
      protocol === "ndjson-h1" || protocol === "sse-h1"
        ? textCounter(protocol === "sse-h1" ? "\n\n" : "\n", seen)
        : createEnvelopeReader((flags) => {
            if (flags === 0) seen();
          });
    if (h1) {
      const headers: http.OutgoingHttpHeaders =
        contentType === undefined
          ? protocol === "sse-h1"
            ? { accept: "text/event-stream" }
            : {}
          : { "content-type": contentType };
      const r = http.request(
        { host: "127.0.0.1", port, method: contentType === undefined ? "GET" : "POST", path, headers, agent: false },
        (res) => {
          res.on("data", read);
          res.on("error", () => {});
        },
      );
      r.on("error", () => {
        if (!closing) fleet.errors++;
      });
      requests.push(r);
      r.end(contentType === undefined ? undefined : body);
      continue;
    }
    const session = sessions[Math.floor(i / perConnection)];
    if (session === undefined) throw new Error("no session");
    const stream = session.request(grpcRequestHeaders({ "content-type": contentType }));
    stream.on("data", read);
    stream.on("error", () => {});
    stream.on("close", () => {
      if (!closing && stream.rstCode !== http2.constants.NGHTTP2_CANCEL) fleet.errors++;
    });
    stream.end(body);
  }
  return fleet;
}

/** Counts the records of a text stream, each ended by `separator`, across chunks. */
function textCounter(separator: string, seen: () => void): (chunk: Buffer) => void {
  let tail = "";
  return (chunk) => {
    const text = tail + chunk.toString("latin1");
    let from = 0;
    for (let at = text.indexOf(separator); at !== -1; at = text.indexOf(separator, from)) {
      seen();
      from = at + separator.length;
    }
    tail = text.slice(from);
  };
}

async function waitAllStarted(fleet: Fleet, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const started = fleet.counts.filter((c) => c > 0).length;
    if (started === fleet.counts.length || performance.now() > deadline) return started;
    await sleep(50);
  }
}

/** Waits `ms`, or until the server `pid` is gone: a fleet outlives its window, not its server. */
async function holdWhileAlive(pid: number, ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(Math.min(200, until - performance.now()));
  }
}

/** Many streams at a short interval: what is delivered, how late against the schedule, at what server CPU. */
async function fanout(task: Extract<ClientTask, { mode: "fanout" }>) {
  let measuring = false;
  let delivered = 0;
  const lateness: number[] = [];
  let firsts: Float64Array | undefined;
  const rssKiBBefore = rssKiB(task.pid);
  const fleet = await openFleet(
    task.port,
    task.protocol ?? "grpc",
    task.streams,
    task.perConnection,
    task.intervalMs,
    (i, k, at) => {
      if (!measuring || firsts === undefined) return;
      delivered++;
      lateness.push(at - ((firsts[i] ?? at) + k * task.intervalMs));
    },
  );
  firsts = fleet.firsts;
  const openedAt = performance.now();
  const started = await waitAllStarted(fleet, 120_000);
  const openMs = performance.now() - openedAt;
  await sleep(task.settleMs ?? task.intervalMs * 5);
  const rssKiBWith = rssKiB(task.pid);
  if (task.holdMs !== undefined) process.stdout.write(`${JSON.stringify({ measuring: true })}\n`);
  const cpu0 = cpuMs(task.pid);
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await sleep(task.windowMs);
  measuring = false;
  const elapsed = performance.now() - t0;
  const cpu1 = cpuMs(task.pid);
  const own = process.cpuUsage(own0);
  const errors = fleet.errors;
  lateness.sort((a, b) => a - b);
  const result = {
    streams: task.streams,
    started,
    openMs,
    rssKiBBefore,
    rssKiBWith,
    offeredPerSec: (task.streams * 1000) / task.intervalMs,
    deliveredPerSec: (delivered * 1000) / elapsed,
    p50LatenessMs: percentile(lateness, 50),
    p90LatenessMs: percentile(lateness, 90),
    p99LatenessMs: percentile(lateness, 99),
    maxLatenessMs: lateness[lateness.length - 1] ?? Number.NaN,
    cpuPct: ((cpu1 - cpu0) / elapsed) * 100,
    // Past ~90 %, the client, not the server, limits what is delivered.
    clientCpuPct: ((own.user + own.system) / 1000 / elapsed) * 100,
    errors,
  };
  if (task.holdMs !== undefined) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    await holdWhileAlive(task.pid, task.holdMs);
  }
  fleet.close();
  return result;
}

/** Many streams at a long interval: memory per open stream and the CPU of keeping them. */
async function idle(task: Extract<ClientTask, { mode: "idle" }>) {
  // Warm the server up first (first connection, first calls, JIT), so that "before" is a served server's baseline.
  const warm = await connect(task.port);
  for (let i = 0; i < 20; i++) await grpcCall(warm, { name: "warm-up", intervalMs: 0, limit: 2 });
  warm.close();
  await sleep(500);
  const rssBefore = rssKiB(task.pid);
  let received = 0;
  const fleet = await openFleet(
    task.port,
    task.protocol ?? "grpc",
    task.streams,
    task.perConnection,
    task.intervalMs,
    () => {
      received++;
    },
  );
  const started = await waitAllStarted(fleet, 60_000);
  await sleep(task.settleMs);
  const rssWith = rssKiB(task.pid);
  const cpu0 = cpuMs(task.pid);
  const received0 = received;
  const t0 = performance.now();
  await sleep(task.windowMs);
  const elapsed = performance.now() - t0;
  const cpu1 = cpuMs(task.pid);
  const deliveredPerSec = ((received - received0) * 1000) / elapsed;
  const errors = fleet.errors;
  fleet.close();
  return {
    streams: task.streams,
    started,
    rssBeforeKiB: rssBefore,
    rssWithKiB: rssWith,
    perStreamKiB: (rssWith - rssBefore) / task.streams,
    cpuPct: ((cpu1 - cpu0) / elapsed) * 100,
    deliveredPerSec,
    expectedPerSec: (task.streams * 1000) / task.intervalMs,
    errors,
  };
}

async function main(): Promise<void> {
  const task = JSON.parse(process.argv[2] ?? "{}") as ClientTask;
  let result: unknown;
  switch (task.mode) {
    case "check":
      result = await check(task);
      break;
    case "latency":
      result = await latency(task);
      break;
    case "fanout":
      result = await fanout(task);
      break;
    case "idle":
      result = await idle(task);
      break;
    default:
      throw new Error(`unknown mode in ${process.argv[2]}`);
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

try {
  await main();
} catch (e) {
  // One line for the runner's failure list; the stack stays on stderr.
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.stdout.write(`${JSON.stringify({ error: e instanceof Error ? e.message : String(e) })}\n`);
  process.exit(1);
}
