import { runLoad } from "./processes.js";

// Floods through h2load (nghttp2-client): a load generator that is not ours,
// in C, pinned to the load core. It cannot read gRPC trailers, so a flood is
// only counted when every request succeeded and the DATA bytes received
// match what `limit` messages per stream weigh.

export interface FloodOptions {
  port: number;
  /** Concurrent streams; each is one request that ends after its `limit` messages. */
  streams: number;
  /** HTTP/1.1 instead of HTTP/2 (one connection per stream: h2load does not pipeline POSTs). */
  http1: boolean;
  method: "POST" | "GET";
  path: string;
  /** File with the request body (POST only). */
  bodyFile?: string;
  headers: Record<string, string>;
  timeoutMs: number;
  /** HTTP/2 connections the streams spread over. Default 1, as a gRPC client multiplexes them. */
  connections?: number;
  /** Cores h2load runs on. Default the load core. */
  cores?: string;
}

export interface H2loadResult {
  seconds: number;
  succeeded: number;
  status2xx: number;
  dataBytes: number;
}

export function parseH2load(out: string): H2loadResult {
  const finished = /finished in ([\d.]+)(ms|s),/.exec(out);
  const requests = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded/.exec(out);
  const status = /status codes: (\d+) 2xx/.exec(out);
  const traffic = /traffic: .*?, [^,]*\((\d+)\) data/.exec(out);
  if (!finished || !requests || !status || !traffic) throw new Error(`cannot read h2load output:\n${out}`);
  const value = Number(finished[1]);
  return {
    seconds: finished[2] === "ms" ? value / 1000 : value,
    succeeded: Number(requests[1]),
    status2xx: Number(status[1]),
    dataBytes: Number(traffic[1]),
  };
}

export async function runH2load(o: FloodOptions): Promise<H2loadResult> {
  const args = ["h2load", "-n", String(o.streams)];
  // HTTP/2: every stream on one connection, as a gRPC client multiplexes them, unless asked otherwise.
  const connections = o.connections ?? 1;
  if (o.http1) args.push("--h1", "-c", String(o.streams), "-m", "1");
  else args.push("-c", String(connections), "-m", String(Math.ceil(o.streams / connections)));
  if (o.method === "POST") {
    if (o.bodyFile === undefined) throw new Error("POST needs a body file");
    args.push("-d", o.bodyFile);
  }
  for (const [k, v] of Object.entries(o.headers)) args.push("-H", `${k}: ${v}`);
  args.push(`http://127.0.0.1:${o.port}${o.path}`);
  const r = await runLoad(args, o.timeoutMs, o.cores);
  if (r.timedOut) throw new Error(`h2load timed out after ${o.timeoutMs} ms: ${args.join(" ")}`);
  if (r.code !== 0) throw new Error(`h2load exited ${r.code}: ${args.join(" ")}\n${r.stdout}\n${r.stderr}`);
  const result = parseH2load(r.stdout);
  if (result.succeeded !== o.streams || result.status2xx !== o.streams) {
    throw new Error(
      `h2load: ${result.succeeded} of ${o.streams} requests succeeded, ${result.status2xx} with 2xx: ${args.join(" ")}\n${r.stdout}`,
    );
  }
  return result;
}
