import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import type { LogFormat, LogLevel } from "../ops/log.js";
import { parseDuration, formatDuration as showMs } from "../shared/duration.js";
import { parseIpBlock } from "./ip-blocks.js";
import { capacityRule } from "./stream-capacity.js";

// Every limit, timeout and default of the server, each declared once in
// `options`: the Config type, the parsing, `npm start -- --help` and the table
// in docs/operations.md (`npm run docs:generate`) are all derived from it. A
// flag wins over its environment variable; every value is checked before
// anything listens.

export class ConfigError extends Error {}

/** How an option's text becomes its value. */
interface ValueKind<T> {
  /** The values it takes, for --help and the docs: "1 to 4096", "on or off". */
  readonly accepts: string;
  /** Throws a ConfigError that names `--flag`. */
  parse(raw: string, flag: string): T;
  /** A value as a user would write it, for the default column. */
  show(value: T): string;
}

export interface OptionSpec<T> {
  readonly flag: string;
  readonly env: string;
  readonly default: T;
  readonly kind: ValueKind<T>;
  /** One line, for --help and the docs. */
  readonly doc: string;
  /** The flag may be given more than once; its values join with commas, as in the environment variable. */
  readonly repeatable?: boolean;
}

// NoInfer: the kind alone decides T, so a default outside it ("loud" for a log level) fails to compile.
function option<T>(kind: ValueKind<T>, spec: Omit<OptionSpec<NoInfer<T>>, "kind">): OptionSpec<T> {
  return { ...spec, kind };
}

const text = (accepts: string): ValueKind<string> => ({ accepts, parse: (raw) => raw, show: (v) => v });

const optionalText = (accepts: string): ValueKind<string | undefined> => ({
  accepts,
  parse: (raw) => raw,
  show: (v) => v ?? "none",
});

function wholeNumber(min: number, max: number): ValueKind<number> {
  return {
    accepts: `${min} to ${max}`,
    parse(raw, flag) {
      const n = Number(raw);
      if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
        throw new ConfigError(`--${flag}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
      }
      return n;
    },
    show: String,
  };
}

function duration(maxMs: number, { positive = false } = {}): ValueKind<number> {
  return {
    accepts: `a duration ${positive ? "above 0s and " : ""}at most ${showMs(maxMs)}`,
    parse(raw, flag) {
      const ms = parseDuration(raw);
      if (ms === undefined || ms > maxMs) {
        throw new ConfigError(
          `--${flag}: expected a duration such as 250ms, 2s or 1m, at most ${maxMs / 1000}s, got ${JSON.stringify(raw)}`,
        );
      }
      if (positive && ms <= 0) throw new ConfigError(`--${flag}: must be longer than 0s`);
      return ms;
    },
    show: showMs,
  };
}

function oneOf<const T extends string>(allowed: readonly T[]): ValueKind<T> {
  return {
    accepts: `${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)}`,
    parse(raw, flag) {
      if (!(allowed as readonly string[]).includes(raw)) {
        throw new ConfigError(`--${flag}: expected one of ${allowed.join(", ")}, got ${JSON.stringify(raw)}`);
      }
      return raw as T;
    },
    show: (v) => v,
  };
}

/** A whole number, or "auto": worked out when the server starts (config/stream-capacity.ts). */
function countOrAuto(min: number, max: number, rule: string): ValueKind<number | "auto"> {
  const count = wholeNumber(min, max);
  return {
    accepts: `${min} to ${max}, or ${rule}`,
    parse: (raw, flag) => (raw.trim() === "auto" ? "auto" : count.parse(raw, flag)),
    show: String,
  };
}

/** A process count, or "auto": one per CPU this process may run on (os.availableParallelism()). */
function processCount(max: number): ValueKind<number> {
  const count = wholeNumber(1, max);
  return {
    accepts: `1 to ${max}, or auto (one per available CPU)`,
    parse: (raw, flag) => (raw.trim() === "auto" ? Math.min(availableParallelism(), max) : count.parse(raw, flag)),
    show: String,
  };
}

const onOff: ValueKind<boolean> = {
  accepts: "on or off",
  parse: (raw, flag) => oneOf(["on", "off"]).parse(raw, flag) === "on",
  show: (v) => (v ? "on" : "off"),
};

/** Comma-separated origins, each exactly scheme://host[:port] as a browser sends it in Origin, or "*". */
const origins: ValueKind<string[]> = {
  accepts: "origins such as https://example.com:8443, or * for any",
  parse(raw, flag) {
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
        throw new ConfigError(
          `--${flag}: expected an origin such as https://example.com:8443, got ${JSON.stringify(o)}`,
        );
      }
    }
    return list;
  },
  show: (v) => (v.length === 0 ? "none" : v.join(",")),
};

/** Comma-separated IP addresses and CIDR blocks. */
const addresses: ValueKind<string[]> = {
  accepts: "IP addresses and CIDR blocks such as 10.0.0.0/8,::1",
  parse(raw, flag) {
    const list = raw
      .split(",")
      .map((a) => a.trim())
      .filter((a) => a !== "");
    for (const a of list) {
      try {
        parseIpBlock(a);
      } catch (e) {
        throw new ConfigError(`--${flag}: ${(e as Error).message}`);
      }
    }
    return list;
  },
  show: (v) => (v.length === 0 ? "none" : v.join(",")),
};

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export const options = {
  host: option(text("an IP address or host name"), {
    flag: "host",
    env: "HOST",
    default: "0.0.0.0",
    doc: "address to bind",
  }),
  port: option(wholeNumber(0, 65535), {
    flag: "port",
    env: "PORT",
    default: 8080,
    doc: "port to bind (0 picks a free one)",
  }),
  tlsCert: option(optionalText("a PEM file"), {
    flag: "tls-cert",
    env: "TLS_CERT",
    default: undefined,
    doc: "certificate; with --tls-key the port speaks TLS, ALPN picks h2 or http/1.1",
  }),
  tlsKey: option(optionalText("a PEM file"), {
    flag: "tls-key",
    env: "TLS_KEY",
    default: undefined,
    doc: "private key of --tls-cert",
  }),
  tlsClientCa: option(optionalText("a PEM file"), {
    flag: "tls-client-ca",
    env: "TLS_CLIENT_CA",
    default: undefined,
    doc: "CA certificates; with it the TLS port requires a client certificate that one of them signed (mTLS), on every route",
  }),
  defaultIntervalMs: option(duration(HOUR), {
    flag: "default-interval",
    env: "DEFAULT_INTERVAL",
    default: 2000,
    doc: "pause between messages for requests that leave interval unset",
  }),
  shutdownGraceMs: option(duration(10 * MINUTE), {
    flag: "shutdown-grace",
    env: "SHUTDOWN_GRACE",
    default: 10_000,
    doc: "time open streams and connections get to end on SIGINT/SIGTERM",
  }),
  shutdownDelayMs: option(duration(MINUTE), {
    flag: "shutdown-delay",
    env: "SHUTDOWN_DELAY",
    default: 0,
    doc: "on SIGINT/SIGTERM, serve this long more with /readyz at 503 (and health NOT_SERVING) before closing, for load balancers that poll readiness",
  }),
  maxRequestBytes: option(wholeNumber(64, 1 << 20), {
    flag: "max-request-bytes",
    env: "MAX_REQUEST_BYTES",
    default: 4096,
    doc: "largest request message; larger gets RESOURCE_EXHAUSTED",
  }),
  maxStreams: option(countOrAuto(1, 10_000_000, capacityRule), {
    flag: "max-streams",
    env: "MAX_STREAMS",
    default: "auto",
    doc: "streams open at once over all clients, per worker process (--workers N allows N times this); past it RESOURCE_EXHAUSTED",
  }),
  maxStreamsPerClient: option(wholeNumber(0, 10_000_000), {
    flag: "max-streams-per-client",
    env: "MAX_STREAMS_PER_CLIENT",
    default: 0,
    doc: "streams open at once from one client address (IPv6: its /64; behind --trusted-proxy, the address it forwards), per worker; past it RESOURCE_EXHAUSTED / 429; 0 is a tenth of --max-streams (at least 100)",
  }),
  workers: option(processCount(256), {
    flag: "workers",
    env: "WORKERS",
    default: 1,
    doc: "processes serving the one port (node:cluster); 1 serves in this process, more fork workers that a primary restarts and drains",
  }),
  maxConnections: option(wholeNumber(1, 10_000_000), {
    flag: "max-connections",
    env: "MAX_CONNECTIONS",
    default: 50_000,
    doc: "TCP connections open at once; past it a new one is closed at once (lowered to fit the open files limit)",
  }),
  maxConnectionsPerClient: option(wholeNumber(0, 10_000_000), {
    flag: "max-connections-per-client",
    env: "MAX_CONNECTIONS_PER_CLIENT",
    default: 0,
    doc: "TCP connections open at once from one client address (IPv6: its /64); a trusted proxy's are not counted; past it a new one is closed at once; 0 is a tenth of --max-connections (at least 100)",
  }),
  trustedProxies: option(addresses, {
    flag: "trusted-proxy",
    env: "TRUSTED_PROXIES",
    default: [],
    repeatable: true,
    doc: "proxies (nginx in front of the fleet) whose X-Forwarded-For names the client that the per-client limits count",
  }),
  sendTimeoutMs: option(duration(HOUR), {
    flag: "send-timeout",
    env: "SEND_TIMEOUT",
    default: 60_000,
    doc: "a stream whose client takes nothing for this long is closed, as nginx's send_timeout; 0s never",
  }),
  tcpNotSentLowat: option(wholeNumber(0, 1 << 30), {
    flag: "tcp-notsent-lowat",
    env: "TCP_NOTSENT_LOWAT",
    default: 131_072,
    doc: "bytes the kernel may hold unsent per connection (TCP_NOTSENT_LOWAT, Linux), so a client that stops reading holds that much, not the 4 MiB send buffer Linux grows to; 0 leaves the kernel's default",
  }),
  maxStreamDurationMs: option(duration(7 * 24 * HOUR), {
    flag: "max-stream-duration",
    env: "MAX_STREAM_DURATION",
    default: 0,
    doc: "a stream open this long ends with UNAVAILABLE, which resuming clients retry from the next counter; 0s never",
  }),
  maxConcurrentStreams: option(wholeNumber(1, 1 << 20), {
    flag: "max-concurrent-streams",
    env: "MAX_CONCURRENT_STREAMS",
    default: 1000,
    doc: "HTTP/2 streams one connection may open at once (SETTINGS_MAX_CONCURRENT_STREAMS)",
  }),
  http2SessionMemoryMiB: option(wholeNumber(1, 4096), {
    flag: "http2-session-memory",
    env: "HTTP2_SESSION_MEMORY",
    default: 32,
    doc: "MiB of buffered data per HTTP/2 connection before Node refuses new streams",
  }),
  maxHeaderBytes: option(wholeNumber(1024, 1 << 20), {
    flag: "max-header-bytes",
    env: "MAX_HEADER_BYTES",
    default: 16_384,
    doc: "largest request head: HTTP/1.1 request line and headers (past it 431), HTTP/2 header list (SETTINGS_MAX_HEADER_LIST_SIZE; past it the stream is reset)",
  }),
  headersTimeoutMs: option(duration(10 * MINUTE), {
    flag: "headers-timeout",
    env: "HEADERS_TIMEOUT",
    default: 10_000,
    doc: "a connection that sends no complete request head in this time is closed",
  }),
  keepAliveTimeoutMs: option(duration(10 * MINUTE), {
    flag: "keep-alive-timeout",
    env: "KEEP_ALIVE_TIMEOUT",
    default: 5000,
    doc: "an idle HTTP/1.1 keep-alive connection is closed after this",
  }),
  h2IdleTimeoutMs: option(duration(24 * HOUR), {
    flag: "h2-idle-timeout",
    env: "H2_IDLE_TIMEOUT",
    default: MINUTE,
    doc: "an HTTP/2 connection with no open stream for this long gets GOAWAY and is closed; 0s never",
  }),
  h2PingIntervalMs: option(duration(24 * HOUR), {
    flag: "h2-ping-interval",
    env: "H2_PING_INTERVAL",
    default: 30_000,
    doc: "each HTTP/2 connection is sent a PING this often, and a second after it turns idle; 0s never",
  }),
  h2PingTimeoutMs: option(duration(10 * MINUTE, { positive: true }), {
    flag: "h2-ping-timeout",
    env: "H2_PING_TIMEOUT",
    default: 10_000,
    doc: "an HTTP/2 connection that leaves a PING unanswered this long is closed",
  }),
  maxConnectionAgeMs: option(duration(24 * HOUR), {
    flag: "max-connection-age",
    env: "MAX_CONNECTION_AGE",
    default: 0,
    doc: "an HTTP/2 connection this old (±10% jitter) gets GOAWAY, so its client reconnects (and rebalances); HTTP/1.1 gets Connection: close on its next response; 0s never",
  }),
  maxConnectionAgeGraceMs: option(duration(24 * HOUR), {
    flag: "max-connection-age-grace",
    env: "MAX_CONNECTION_AGE_GRACE",
    default: 30_000,
    doc: "after a max-age GOAWAY, streams still open then end with UNAVAILABLE (resuming clients go on) and the connection closes",
  }),
  h2MaxResets: option(wholeNumber(1, 1_000_000), {
    flag: "h2-max-resets",
    env: "H2_MAX_RESETS",
    default: 200,
    doc: "streams one HTTP/2 connection may reset within 10s; past that GOAWAY ENHANCE_YOUR_CALM and close",
  }),
  logLevel: option(oneOf<LogLevel>(["debug", "info", "warn", "error", "silent"]), {
    flag: "log-level",
    env: "LOG_LEVEL",
    default: "info",
    doc: "lowest level logged",
  }),
  logFormat: option(oneOf<LogFormat | "auto">(["json", "pretty", "auto"]), {
    flag: "log-format",
    env: "LOG_FORMAT",
    default: "auto",
    doc: "auto is pretty on a terminal, JSON otherwise",
  }),
  metrics: option(onOff, {
    flag: "metrics",
    env: "METRICS",
    default: true,
    doc: "count streams and serve GET /metrics; off lets a benchmark measure without them",
  }),
  corsOrigins: option(origins, {
    flag: "cors-origin",
    env: "CORS_ORIGINS",
    default: [],
    repeatable: true,
    doc: "browser origins allowed to call the RPC and GET /stream",
  }),
  authTokenFile: option(optionalText("a file, one token a line"), {
    flag: "auth-token-file",
    env: "AUTH_TOKEN_FILE",
    default: undefined,
    doc: "every RPC but health, and GET /stream, need Authorization: Bearer and one of these tokens; reread on SIGHUP",
  }),
  authMetrics: option(onOff, {
    flag: "auth-metrics",
    env: "AUTH_METRICS",
    default: false,
    doc: "GET /metrics needs a token too (with --auth-token-file)",
  }),
  heartbeatMs: option(duration(HOUR, { positive: true }), {
    flag: "heartbeat",
    env: "HEARTBEAT",
    default: 15_000,
    doc: "a Server-Sent Events stream that sent nothing for this long gets a `: heartbeat` comment",
  }),
  fastPath: option(onOff, {
    flag: "fast-path",
    env: "FAST_PATH",
    default: true,
    doc: "serve Stream over gRPC, gRPC-Web and Connect through the lean road (src/entries/lean-rpc/); off sends every request through connect-node but gRPC-Web text, which connect-node does not speak",
  }),
} as const;

type ValueOf<O> = O extends OptionSpec<infer T> ? T : never;
type Options = typeof options;

export type Config = { -readonly [K in keyof Options]: ValueOf<Options[K]> };

const entries = Object.entries(options) as [keyof Config, OptionSpec<unknown>][];

export const defaults: Config = Object.fromEntries(entries.map(([key, o]) => [key, o.default])) as Config;

/** Parses argv (without node and script) and env into a Config; throws ConfigError on any bad value. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config {
  let values: Record<string, string | string[] | boolean | boolean[] | undefined>;
  try {
    values = parseArgs({
      args: argv,
      options: Object.fromEntries(
        entries.map(([, o]) => [o.flag, { type: "string", multiple: o.repeatable === true } as const]),
      ),
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    throw new ConfigError(e instanceof Error ? e.message : String(e));
  }
  const config: Record<string, unknown> = {};
  for (const [key, o] of entries) {
    const given = values[o.flag];
    // A repeated flag arrives as an array; it reads like its comma-separated environment form.
    const raw = Array.isArray(given) ? given.join(",") : typeof given === "string" ? given : env[o.env];
    config[key] = raw === undefined ? o.default : o.kind.parse(raw, o.flag);
  }
  const c = config as Config;
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) {
    throw new ConfigError("--tls-cert and --tls-key go together");
  }
  if (c.tlsClientCa !== undefined && c.tlsCert === undefined) {
    throw new ConfigError(
      "--tls-client-ca needs --tls-cert and --tls-key: client certificates are asked for in the TLS handshake",
    );
  }
  if (c.authMetrics && c.authTokenFile === undefined) {
    throw new ConfigError("--auth-metrics on needs --auth-token-file");
  }
  return c;
}

/** `npm start -- --help`. */
export function configHelp(): string {
  const lines = [
    "usage: npm start -- [--flag value]...",
    "",
    "Serves stream.v1.StreamService over gRPC, gRPC-Web, Connect and plain HTTP on one port.",
    "Each flag can also be set by its environment variable; the flag wins. A bad value stops",
    "the server before it listens, with exit status 2. Durations read 250ms, 2s, 1.5s, 1m30s or 1h.",
    "",
  ];
  for (const [, o] of entries) {
    const repeat = o.repeatable ? ", repeatable" : "";
    lines.push(`  --${o.flag} (env ${o.env}${repeat}; default ${o.kind.show(o.default)})`);
    lines.push(`      ${o.doc}`, `      values: ${o.kind.accepts}`);
  }
  return `${lines.join("\n")}\n`;
}
