import { parseArgs } from "node:util";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { createStreamClient, resumeStream } from "../packages/client/src/index.js";
import { createNodeTransport } from "../packages/client/src/node.js";
import { startClientTrace } from "./ops/client-trace.js";
import { createLogger } from "./ops/log.js";
import { type EnvTracer, TracingConfigError, tracerFromEnv } from "./ops/otel-env.js";
import { durationFromMs, parseDuration } from "./shared/duration.js";
import { serviceVersion } from "./shared/version.js";

// The client package (packages/client) as a command: its Node transport and
// its resuming stream, with flags, printing, and a trace around them.
//
// npm run client -- --name Alice [--url URL] [--protocol connect|grpc|grpcweb]
//                   [--interval 2s] [--limit N] [--start-at N] [--http-version 1.1|2]
//
// Every attempt carries one traceparent, so the server's spans of the whole
// stream share a trace; with OTEL_EXPORTER_OTLP_ENDPOINT set, the client's own
// span is exported too.

const usage =
  "usage: npm run client -- --name NAME [--url http://localhost:8080] [--protocol connect|grpc|grpcweb] [--interval 2s] [--limit N] [--start-at N] [--http-version 1.1|2]";

function fail(message: string, exitCode: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(exitCode);
}

let args: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      name: { type: "string", default: "" },
      url: { type: "string", default: "http://localhost:8080" },
      protocol: { type: "string", default: "connect" },
      interval: { type: "string" },
      limit: { type: "string", default: "0" },
      "start-at": { type: "string", default: "0" },
      "http-version": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}
try {
  args = parse();
} catch (e) {
  fail(`${e instanceof Error ? e.message : String(e)}\n${usage}`, 2);
}
if (args.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

const protocol = args.protocol;
if (protocol !== "connect" && protocol !== "grpc" && protocol !== "grpcweb") {
  fail(`--protocol: expected connect, grpc or grpcweb, got ${JSON.stringify(protocol)}\n${usage}`, 2);
}
const httpVersion = args["http-version"] ?? (protocol === "grpc" ? "2" : "1.1");
if (httpVersion !== "1.1" && httpVersion !== "2") fail(`--http-version: expected 1.1 or 2\n${usage}`, 2);
if (protocol === "grpc" && httpVersion !== "2") fail("--protocol grpc needs --http-version 2", 2);
const whole = (flag: string, raw: string) => {
  if (!/^\d+$/.test(raw)) fail(`--${flag}: expected a whole number, got ${JSON.stringify(raw)}\n${usage}`, 2);
  return BigInt(raw);
};
const limit = whole("limit", args.limit);
const startAt = whole("start-at", args["start-at"]);
let intervalMs: number | undefined;
if (args.interval !== undefined) {
  intervalMs = parseDuration(args.interval);
  if (intervalMs === undefined) fail(`--interval: expected a duration such as 500ms or 2s\n${usage}`, 2);
}

const client = createStreamClient(createNodeTransport({ baseUrl: args.url, protocol, httpVersion }));

let tracing: EnvTracer | undefined;
try {
  const logger = createLogger({ format: "pretty", level: "warn", write: (line) => process.stderr.write(line) });
  tracing = tracerFromEnv({ serviceName: "stream-client", serviceVersion, logger });
} catch (e) {
  if (!(e instanceof TracingConfigError)) throw e;
  fail(`configuration error: ${e.message}`, 2);
}
const trace = startClientTrace({ tracer: tracing?.tracer, protocol, url: args.url });
/** Ends the client's span and sends it (within 5 s) before the process exits. */
async function endTrace(error?: unknown): Promise<void> {
  trace.end(error);
  await tracing?.shutdown(5000);
}

const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

try {
  const request = {
    name: args.name,
    ...(intervalMs !== undefined ? { interval: durationFromMs(intervalMs) } : {}),
    limit,
    startAt,
  };
  const messages = resumeStream(client, request, {
    signal: stop.signal,
    headers: trace.headers,
    onStatus(status) {
      if (status.state === "reconnecting") {
        process.stderr.write(
          `connection lost (${status.error?.message}); reconnecting in ${status.delayMs} ms (attempt ${status.attempt})\n`,
        );
      }
    },
  });
  for await (const message of messages) {
    const at = message.timestamp ? timestampDate(message.timestamp).toISOString() : "-";
    process.stdout.write(`[${at}] ${message.message}\n`);
  }
  await endTrace();
  process.stderr.write(stop.signal.aborted ? "stopped\n" : "stream complete\n");
} catch (e) {
  const error = ConnectError.from(e);
  await endTrace(error);
  fail(`error: ${Code[error.code] ?? error.code}: ${error.rawMessage}`, 1);
}
