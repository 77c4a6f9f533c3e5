import { type ChildProcess, spawn } from "node:child_process";
import * as net from "node:net";
import * as os from "node:os";

// Child processes of the benchmark: servers on one core, load on the other,
// every one of them killed by PID when the run ends, however it ends.

const children = new Set<ChildProcess>();

function killAll(): void {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}

process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

/** taskset pins only when there is a second core to pin the load to. */
export const pinning = os.cpus().length >= 2;
export const SERVER_CORE = "0";
export const LOAD_CORE = "1";
/** Figure 9's: servers with several workers, and the load beside them, on both cores. */
export const BOTH_CORES = `${SERVER_CORE},${LOAD_CORE}`;

export function pinned(core: string, argv: string[]): [string, string[]] {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error("empty command");
  return pinning ? ["taskset", ["-c", core, cmd, ...args]] : [cmd, args];
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a load generator pinned to `cores` (default the load core); kills it after `timeoutMs`. */
export function runLoad(argv: string[], timeoutMs: number, cores = LOAD_CORE): Promise<RunResult> {
  const [cmd, args] = pinned(cores, argv);
  const child = track(spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }));
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  return new Promise((resolve) => {
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Environment variables our server reads that would change a row's configuration behind the harness's back. */
const serverEnv = [
  "HOST",
  "PORT",
  "LOG_LEVEL",
  "LOG_FORMAT",
  "FAST_PATH",
  "METRICS",
  "MAX_STREAMS",
  "MAX_CONCURRENT_STREAMS",
  "WORKERS",
  "MAX_CONNECTION_AGE",
];

/** OpenTelemetry's variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, ...) configure tracing: a row sets its own. */
const isServerEnv = (name: string) => serverEnv.includes(name) || name.startsWith("OTEL_");

export interface ServerProcess {
  readonly pid: number;
  readonly port: number;
  /** The last lines the server wrote to stderr, for error reports. */
  stderrTail(): string;
  /** The last lines it wrote to stdout (our log's last words: "shut down", clean or not). */
  stdoutTail(): string;
  /** SIGTERM, then SIGKILL after `graceMs` (default 3 s); resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts a server pinned to `cores` (default the server core), configured by its flags and
 * `rowEnv` only, on a free port chosen here (our server prints no
 * "listening" line at --log-level silent), and waits until the port accepts
 * connections. Its stdout (our request logs) is read
 * and dropped, as a log shipper would, so logging costs what it costs.
 */
export async function startServer(
  argv: string[],
  rowEnv: Record<string, string> = {},
  readyTimeoutMs = 30_000,
  cores = SERVER_CORE,
): Promise<ServerProcess> {
  const port = await freePort();
  const [cmd, args] = pinned(cores, [...argv, "--host", "127.0.0.1", "--port", String(port)]);
  // The row alone configures the server: settings the caller's environment may carry stay out.
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (isServerEnv(name)) delete env[name];
  Object.assign(env, rowEnv);
  const child = track(spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env }));
  let tail = "";
  let outTail = "";
  child.stdout?.on("data", (d: Buffer) => {
    outTail = (outTail + d.toString("latin1")).slice(-4000);
  });
  child.stderr?.on("data", (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4000);
  });
  // 'close' rather than 'exit': the last log line (how the drain ended) may still be in the pipe at 'exit'.
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const deadline = performance.now() + readyTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `server ${argv.join(" ")} exited (${child.exitCode ?? child.signalCode}) before listening:\n${tail}`,
      );
    }
    if (await canConnect(port)) break;
    if (performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`server ${argv.join(" ")} did not listen on ${port} within ${readyTimeoutMs} ms:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error("server has no pid");
  return {
    pid,
    port,
    stderrTail: () => tail,
    stdoutTail: () => outTail,
    async stop(graceMs = 3000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
