import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { envelope, requestEnvelope, streamPath } from "./wire.js";

// Clients that read as fast as the network goes: curl, in processes of its
// own, on every road a call can take. What a careless user runs
// (`curl 'http://host/stream?interval=0s' -o /dev/null`) and what a hostile
// one runs a thousand times.

export type Road = "ndjson" | "sse" | "connect-h1" | "grpc-web-h1" | "connect-h2" | "grpc";

export const roads: readonly Road[] = ["ndjson", "sse", "connect-h1", "grpc-web-h1", "connect-h2", "grpc"];

/** curl's arguments for one endless stream at interval 0 on `road`, its request body written into `dir`. */
function curlArgs(url: string, road: Road, dir: string): string[] {
  const quiet = ["-s", "-o", "/dev/null", "--no-buffer"];
  switch (road) {
    case "ndjson":
      return [...quiet, `${url}/stream?name=fast&interval=0s`];
    case "sse":
      return [...quiet, "-H", "Accept: text/event-stream", `${url}/stream?name=fast&interval=0s`];
    case "connect-h1":
    case "connect-h2": {
      const file = path.join(dir, "connect.bin");
      writeFileSync(file, envelope(Buffer.from(JSON.stringify({ name: "fast", interval: "0s" }))));
      return [
        ...quiet,
        ...(road === "connect-h2" ? ["--http2-prior-knowledge"] : []),
        "-H",
        "Content-Type: application/connect+json",
        "--data-binary",
        `@${file}`,
        `${url}${streamPath}`,
      ];
    }
    case "grpc-web-h1":
    case "grpc": {
      const file = path.join(dir, "grpc.bin");
      writeFileSync(file, requestEnvelope({ name: "fast", interval: { seconds: 0n, nanos: 0 } }));
      const headers =
        road === "grpc"
          ? ["--http2-prior-knowledge", "-H", "Content-Type: application/grpc", "-H", "TE: trailers"]
          : ["-H", "Content-Type: application/grpc-web+proto"];
      return [...quiet, ...headers, "--data-binary", `@${file}`, `${url}${streamPath}`];
    }
  }
}

export interface Readers {
  /** Ends every reader this started, by PID, and waits for them. */
  stop(): Promise<void>;
}

/**
 * Starts `count` curl processes that each read an endless interval-0 stream
 * on `road` as fast as they can; `core` pins them there with taskset (the
 * benchmark keeps load off the server's core).
 */
export function startFastReaders(url: string, road: Road, count: number, core?: string): Readers {
  const dir = mkdtempSync(path.join(tmpdir(), "fast-readers-"));
  const args = curlArgs(url, road, dir);
  const [command, argv] = core === undefined ? ["curl", args] : ["taskset", ["-c", core, "curl", ...args]];
  const children: ChildProcess[] = [];
  for (let i = 0; i < count; i++) children.push(spawn(command, argv, { stdio: "ignore" }));
  return {
    async stop() {
      await Promise.all(
        children.map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) return resolve();
              child.once("exit", () => resolve());
              child.kill("SIGKILL");
            }),
        ),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Pace {
  /** Largest time between two messages of the well-behaved stream, in ms. */
  worstGapMs: number;
  /** Messages it received. */
  messages: number;
  /** Largest /healthz round trip, in ms, over every probe. */
  worstHealthzMs: number;
  /** /healthz probes that answered 200. */
  probes: number;
}

/**
 * A well-behaved client beside the readers: an NDJSON stream at `intervalMs`
 * for `messages` messages on its own connection, and a /healthz probe every
 * 50 ms, each on a fresh connection (so a new connection must be accepted
 * too). Gaps and latencies are measured here, at the client.
 */
export async function measurePace(url: string, intervalMs: number, messages: number): Promise<Pace> {
  let worstHealthzMs = 0;
  let probes = 0;
  let probing = true;
  const probeLoop = (async () => {
    while (probing) {
      const started = performance.now();
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.get(`${url}/healthz`, { agent: false }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.setTimeout(10_000, () => req.destroy(new Error("/healthz did not answer within 10 s")));
        req.on("error", reject);
      });
      if (status === 200) probes++;
      worstHealthzMs = Math.max(worstHealthzMs, performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  try {
    const arrivals: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const seconds = intervalMs / 1000;
      const req = http.get(
        `${url}/stream?name=good&interval=${seconds}s&limit=${messages}`,
        { agent: false },
        (res) => {
          let pending = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            pending += chunk;
            let nl = pending.indexOf("\n");
            while (nl !== -1) {
              arrivals.push(performance.now());
              pending = pending.slice(nl + 1);
              nl = pending.indexOf("\n");
            }
          });
          res.on("end", () => resolve());
          res.on("error", reject);
        },
      );
      req.setTimeout(messages * intervalMs + 10_000, () => req.destroy(new Error("the good stream stalled")));
      req.on("error", reject);
    });
    let worstGapMs = 0;
    for (let i = 1; i < arrivals.length; i++) {
      worstGapMs = Math.max(worstGapMs, (arrivals[i] ?? 0) - (arrivals[i - 1] ?? 0));
    }
    return { worstGapMs, messages: arrivals.length, worstHealthzMs, probes };
  } finally {
    probing = false;
    await probeLoop;
  }
}

/**
 * Opens `count` HTTP/1.1 connections that each ask GET /stream at interval 0,
 * endless, and never read a byte: the server fills the kernel's buffers and
 * then waits on 'drain' that never comes. Python holds them (Node cannot set
 * SO_RCVBUF), with 4 KiB receive buffers, so the kernel holds little for each.
 */
export async function openStalledReaders(port: number, count: number): Promise<Readers> {
  const script = fileURLToPath(new URL("../python/stalled_readers.py", import.meta.url));
  const child = spawn("python3", [script, String(port), String(count), "/stream?name=stalled&interval=0s"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.includes("ready")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`stalled readers exited with ${code} before they were ready`)));
  });
  return {
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.stdin?.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
