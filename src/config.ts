import { parseArgs } from "node:util";
import { parseDuration } from "./duration.js";
import type { LogFormat, LogLevel } from "./log.js";

// Every limit, timeout and default of the server, parsed from flags and the
// environment (a flag wins), validated before anything listens. The README's
// configuration table lists the same names.

export interface Config {
  /** Address to bind. Flag --host, env HOST. Default "0.0.0.0". */
  host: string;
  /** Port to bind; 0 picks a free one. Flag --port, env PORT. Default 8080. */
  port: number;
  /** PEM certificate; with tlsKey the port speaks TLS (ALPN h2, http/1.1). Flag --tls-cert, env TLS_CERT. */
  tlsCert: string | undefined;
  /** PEM private key. Flag --tls-key, env TLS_KEY. */
  tlsKey: string | undefined;
  /** Pause between messages when a request leaves interval unset. Flag --default-interval. Default 2s. */
  defaultIntervalMs: number;
  /** How long open streams and connections get to end on SIGINT/SIGTERM. Flag --shutdown-grace. Default 10s. */
  shutdownGraceMs: number;
  /** Largest request message accepted; larger gets RESOURCE_EXHAUSTED. Flag --max-request-bytes. Default 4096. */
  maxRequestBytes: number;
  /** Streams open at once, over all clients; past it RESOURCE_EXHAUSTED. Flag --max-streams. Default 50000. */
  maxStreams: number;
  /** HTTP/2 streams one connection may open at once (SETTINGS_MAX_CONCURRENT_STREAMS). Default 1000. */
  maxConcurrentStreams: number;
  /** HTTP/2 memory per session in MiB before Node refuses new streams. Default 32. */
  http2SessionMemoryMiB: number;
  /** A connection that sends no complete request head within this time is closed. Default 10s. */
  headersTimeoutMs: number;
  /** An idle HTTP/1.1 keep-alive connection is closed after this time. Default 5s. */
  keepAliveTimeoutMs: number;
  /** Log level. Flag --log-level, env LOG_LEVEL. Default info. */
  logLevel: LogLevel;
  /** json, pretty, or auto (pretty on a terminal). Flag --log-format, env LOG_FORMAT. Default auto. */
  logFormat: LogFormat | "auto";
  /** Serve GET /metrics and count streams for it; off lets a benchmark measure without it. Flag --metrics on|off, env METRICS. Default on. */
  metrics: boolean;
  /**
   * Browser origins (scheme://host[:port]) allowed to call the RPC and GET /stream; "*" allows any.
   * Flag --cors-origin (repeatable), env CORS_ORIGINS (comma-separated). Default none.
   */
  corsOrigins: string[];
  /** An SSE stream that sent nothing for this long gets a ": heartbeat" comment. Flag --heartbeat. Default 15s. */
  heartbeatMs: number;
  /**
   * Serve Stream over gRPC on HTTP/2 through the lean path (src/fast-path.ts) instead of connect-node;
   * every other request goes to connect-node either way. Flag --fast-path on|off, env FAST_PATH. Default on.
   */
  fastPath: boolean;
}

export const defaults: Config = {
  host: "0.0.0.0",
  port: 8080,
  tlsCert: undefined,
  tlsKey: undefined,
  defaultIntervalMs: 2000,
  shutdownGraceMs: 10_000,
  maxRequestBytes: 4096,
  maxStreams: 50_000,
  maxConcurrentStreams: 1000,
  http2SessionMemoryMiB: 32,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5000,
  logLevel: "info",
  logFormat: "auto",
  metrics: true,
  corsOrigins: [],
  heartbeatMs: 15_000,
  fastPath: true,
};

const options = {
  host: { type: "string", env: "HOST" },
  port: { type: "string", env: "PORT" },
  "tls-cert": { type: "string", env: "TLS_CERT" },
  "tls-key": { type: "string", env: "TLS_KEY" },
  "default-interval": { type: "string", env: "DEFAULT_INTERVAL" },
  "shutdown-grace": { type: "string", env: "SHUTDOWN_GRACE" },
  "max-request-bytes": { type: "string", env: "MAX_REQUEST_BYTES" },
  "max-streams": { type: "string", env: "MAX_STREAMS" },
  "max-concurrent-streams": { type: "string", env: "MAX_CONCURRENT_STREAMS" },
  "http2-session-memory": { type: "string", env: "HTTP2_SESSION_MEMORY" },
  "headers-timeout": { type: "string", env: "HEADERS_TIMEOUT" },
  "keep-alive-timeout": { type: "string", env: "KEEP_ALIVE_TIMEOUT" },
  "log-level": { type: "string", env: "LOG_LEVEL" },
  "log-format": { type: "string", env: "LOG_FORMAT" },
  metrics: { type: "string", env: "METRICS" },
  "cors-origin": { type: "string", env: "CORS_ORIGINS", multiple: true },
  heartbeat: { type: "string", env: "HEARTBEAT" },
  "fast-path": { type: "string", env: "FAST_PATH" },
} as const;

export class ConfigError extends Error {}

/** Parses argv (without node and script) and env into a Config; throws ConfigError on any bad value. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config {
  let values: Record<string, string | undefined>;
  try {
    const parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(
        Object.entries(options).map(([k, o]) => [k, { type: o.type, multiple: "multiple" in o }]),
      ),
      strict: true,
      allowPositionals: false,
    });
    // A repeated flag (multiple: true) arrives as an array; it reads like its comma-separated env form.
    values = Object.fromEntries(
      Object.entries(parsed.values).map(([k, v]) => [k, Array.isArray(v) ? v.join(",") : (v as string | undefined)]),
    );
  } catch (e) {
    throw new ConfigError(e instanceof Error ? e.message : String(e));
  }
  const get = (name: keyof typeof options) => values[name] ?? env[options[name].env] ?? undefined;
  const c: Config = { ...defaults };
  const host = get("host");
  if (host !== undefined) c.host = host;
  c.port = integer("port", get("port"), c.port, 0, 65535);
  c.tlsCert = get("tls-cert");
  c.tlsKey = get("tls-key");
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) {
    throw new ConfigError("--tls-cert and --tls-key go together");
  }
  c.defaultIntervalMs = duration("default-interval", get("default-interval"), c.defaultIntervalMs, 3_600_000);
  c.shutdownGraceMs = duration("shutdown-grace", get("shutdown-grace"), c.shutdownGraceMs, 600_000);
  c.maxRequestBytes = integer("max-request-bytes", get("max-request-bytes"), c.maxRequestBytes, 64, 1 << 20);
  c.maxStreams = integer("max-streams", get("max-streams"), c.maxStreams, 1, 10_000_000);
  c.maxConcurrentStreams = integer(
    "max-concurrent-streams",
    get("max-concurrent-streams"),
    c.maxConcurrentStreams,
    1,
    1 << 20,
  );
  c.http2SessionMemoryMiB = integer(
    "http2-session-memory",
    get("http2-session-memory"),
    c.http2SessionMemoryMiB,
    1,
    4096,
  );
  c.headersTimeoutMs = duration("headers-timeout", get("headers-timeout"), c.headersTimeoutMs, 600_000);
  c.keepAliveTimeoutMs = duration("keep-alive-timeout", get("keep-alive-timeout"), c.keepAliveTimeoutMs, 600_000);
  c.logLevel = oneOf("log-level", get("log-level"), c.logLevel, ["debug", "info", "warn", "error", "silent"]);
  c.logFormat = oneOf("log-format", get("log-format"), c.logFormat, ["json", "pretty", "auto"]);
  c.metrics = oneOf("metrics", get("metrics"), c.metrics ? "on" : "off", ["on", "off"]) === "on";
  c.corsOrigins = origins("cors-origin", get("cors-origin"));
  c.heartbeatMs = duration("heartbeat", get("heartbeat"), c.heartbeatMs, 3_600_000);
  if (c.heartbeatMs <= 0) throw new ConfigError("--heartbeat: must be longer than 0s");
  c.fastPath = oneOf("fast-path", get("fast-path"), c.fastPath ? "on" : "off", ["on", "off"]) === "on";
  return c;
}

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`--${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

function duration(name: string, raw: string | undefined, fallback: number, maxMs: number): number {
  if (raw === undefined) return fallback;
  const ms = parseDuration(raw);
  if (ms === undefined || ms > maxMs) {
    throw new ConfigError(
      `--${name}: expected a duration such as 250ms, 2s or 1m, at most ${maxMs / 1000}s, got ${JSON.stringify(raw)}`,
    );
  }
  return ms;
}

function oneOf<T extends string>(name: string, raw: string | undefined, fallback: T, allowed: readonly T[]): T {
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`--${name}: expected one of ${allowed.join(", ")}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}

/** Comma-separated origins, each exactly scheme://host[:port] as a browser sends it in Origin, or "*". */
function origins(name: string, raw: string | undefined): string[] {
  if (raw === undefined) return [];
  const list = raw
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  for (const o of list) {
    if (o === "*") continue;
    let origin: string | undefined;
    try {
      origin = new URL(o).origin;
    } catch {}
    // Origin headers carry no path and no trailing slash; a value that is not already in that form would never match.
    if (origin !== o || !/^https?:/.test(o)) {
      throw new ConfigError(`--${name}: expected an origin such as https://example.com:8443, got ${JSON.stringify(o)}`);
    }
  }
  return list;
}
