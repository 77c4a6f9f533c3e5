import cluster from "node:cluster";
import { type Config, ConfigError, configHelp, parseConfig } from "./config/config.js";
import { createLogger, type Logger } from "./ops/log.js";
import { type EnvTracer, TracingConfigError, tracerFromEnv } from "./ops/otel-env.js";
import { createServer } from "./server/server.js";
import { exitOnStopSignals } from "./server/shutdown.js";
import { joinPrimary } from "./server/worker-link.js";
import { runPrimary } from "./server/workers.js";
import { serviceVersion } from "./shared/version.js";

// The entry point: configuration, build, listen, signals. Nothing imports it.
// With --workers N (N > 1) it runs N + 1 times: once as the primary, which
// forks the workers and serves nothing, and once in each worker, as a server.

/** A bad value or an unusable file the configuration names: say so and exit 2, before anything listens. */
function configurationError(e: unknown): never {
  if (!(e instanceof ConfigError)) throw e;
  process.stderr.write(`configuration error: ${e.message}\n${configHelp().split("\n")[0]} (--help lists every flag)\n`);
  process.exit(2);
}

const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
  process.stdout.write(configHelp());
  process.exit(0);
}

let config: ReturnType<typeof parseConfig>;
try {
  config = parseConfig(argv);
} catch (e) {
  configurationError(e);
}

const primary = cluster.isPrimary && config.workers > 1;
const logger = createLogger({
  level: config.logLevel,
  format: config.logFormat === "auto" ? (process.stdout.isTTY ? "pretty" : "json") : config.logFormat,
  // Every process of a group writes to the same stdout: each line says which one it is.
  ...(cluster.worker
    ? { fields: { worker: cluster.worker.id, pid: process.pid }, sharedOutput: true }
    : primary
      ? { fields: { pid: process.pid }, sharedOutput: true }
      : {}),
});
if (primary) runPrimary(config, logger);
else await serve(config, logger);

async function serve(config: Config, logger: Logger): Promise<void> {
  // OpenTelemetry's own variables (OTEL_EXPORTER_OTLP_ENDPOINT, ...), as every OpenTelemetry SDK reads them.
  let tracing: EnvTracer | undefined;
  try {
    tracing = tracerFromEnv({ serviceName: "stream-service", serviceVersion, logger });
  } catch (e) {
    if (!(e instanceof TracingConfigError)) throw e;
    process.stderr.write(`configuration error: ${e.message}\n`);
    process.exit(2);
  }
  if (tracing) logger.info("tracing on", { protocol: tracing.protocol });
  const link = cluster.isWorker ? joinPrimary() : undefined;
  let server: ReturnType<typeof createServer>;
  try {
    // Reads the files the configuration names (--auth-token-file).
    server = createServer(config, logger, { tracing, metricsGroup: link?.metrics });
  } catch (e) {
    configurationError(e);
  }
  const listener = await server.listen();
  const { address, port } = listener.address();
  const scheme = config.tlsCert ? "https" : "http";
  const shown = address.includes(":") ? `[${address}]` : address;
  logger.info(`listening on ${scheme}://${shown}:${port}`, { address, port, tls: Boolean(config.tlsCert) });

  // A drain that had to cut streams at the end of the grace still ends as planned: 0.
  exitOnStopSignals(logger, () => server.shutdown().then(() => 0));
  // Only with a token file: otherwise SIGHUP keeps its default (the process ends), as before.
  // With --workers the primary passes its SIGHUP on to every worker.
  if (config.authTokenFile !== undefined) process.on("SIGHUP", () => server.reloadTokens());
  // The primary's drain: the same shutdown as a signal's, and not a second signal when the terminal sent SIGINT too.
  link?.serving(() => void server.shutdown().then(() => process.exit(0)));
}
