import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Debian's `prometheus` package (scripts/setup.sh): promtool, and a real
// Prometheus server on loopback that a test starts, queries and kills by PID.
// No skip when they are missing: a machine without them must fail here.

export interface ToolResult {
  /** Exit code, or the signal's name. */
  code: number | string;
  stdout: string;
  stderr: string;
}

/** Runs promtool with `args`, writing `stdin` to it; never rejects on a non-zero exit. */
export function promtool(args: string[], stdin = "", cwd?: string): Promise<ToolResult> {
  const child = spawn("promtool", args, { cwd, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
  });
  child.stdin.end(stdin);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code: code ?? String(signal), stdout, stderr }));
  });
}

/** One sample of one series, as /api/v1/query returns it. */
export interface Sample {
  metric: Record<string, string>;
  /** Seconds since the epoch: the scrape's time in a range vector, the evaluation time in an instant one. */
  time: number;
  value: number;
}

export interface PrometheusOptions {
  /** host:port of each target of the job "stream-service". */
  targets: string[];
  /** Rule files to load, absolute paths. Default none. */
  ruleFiles?: string[];
}

export interface Prometheus {
  readonly child: ChildProcess;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** Instant query through the HTTP API; rejects unless the status is "success". */
  query(expr: string): Promise<Sample[]>;
  /**
   * The first sample of each series of `selector` scraped after `since`
   * (seconds since the epoch), all from that one scrape; waits for it up to
   * `timeoutMs`. Read from a range vector, so value and time cannot come
   * from two different scrapes.
   */
  scrapedAfter(selector: string, since: number, timeoutMs?: number): Promise<Sample[]>;
  /** GET a path of the HTTP API and return `data` of a "success" answer. */
  api(path: string): Promise<unknown>;
  /** Kills the process by its PID, waits for its exit, removes its storage. */
  close(): Promise<void>;
}

/**
 * A Prometheus on 127.0.0.1 with its own storage in a temp dir, scraping and
 * evaluating rules every second. Resolves once /-/ready answers 200.
 */
export async function startPrometheus(options: PrometheusOptions): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), "prometheus-"));
  const config = join(dir, "prometheus.yml");
  writeFileSync(
    config,
    [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "  evaluation_interval: 1s",
      `rule_files: ${JSON.stringify(options.ruleFiles ?? [])}`,
      "scrape_configs:",
      "  - job_name: stream-service",
      "    static_configs:",
      `      - targets: ${JSON.stringify(options.targets)}`,
      "",
    ].join("\n"),
  );
  // Prometheus cannot report a port it picked itself, so take a free one
  // from the kernel and hand it over; a lost race shows as an early exit.
  const port = await freePort();
  const child = spawn(
    "prometheus",
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
  });
  const exited = once(child, "exit");
  const url = `http://127.0.0.1:${port}`;
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deadline = performance.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${stderr}`);
      if (performance.now() > deadline) throw new Error(`prometheus not ready after 30 s:\n${stderr}`);
      const res = await get(`${url}/-/ready`).catch(() => undefined);
      if (res?.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (e) {
    await close();
    throw e;
  }
  const api = async (path: string): Promise<unknown> => {
    const res = await get(`${url}${path}`);
    const body = JSON.parse(res.body) as { status: string; data?: unknown; error?: string };
    if (body.status !== "success") throw new Error(`${path}: ${res.status} ${body.error ?? res.body}`);
    return body.data;
  };
  const query = async (expr: string) => {
    const data = (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as {
      resultType: string;
      result: { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] }[];
    };
    return data.result.flatMap((r) =>
      (r.values ?? (r.value ? [r.value] : [])).map(([time, value]) => ({
        metric: r.metric,
        time,
        value: Number(value),
      })),
    );
  };
  return {
    child,
    url,
    api,
    query,
    async scrapedAfter(selector, since, timeoutMs = 15_000) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const after = (await query(`${selector}[1m]`)).filter((s) => s.time > since);
        const first = Math.min(...after.map((s) => s.time));
        if (after.length > 0) return after.filter((s) => s.time === first);
        if (performance.now() > deadline) throw new Error(`no scrape of ${selector} after ${since} in ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    close,
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** GET over a connection that closes after the response. */
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}
