import { file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_stream_v1_stream, StreamService } from "../../gen/stream/v1/stream_pb.js";
import type { Config } from "../config/config.js";
import { HEAP_KIB_PER_STREAM, RSS_KIB_PER_STREAM, streamCapacity } from "../config/stream-capacity.js";
import { shutdownError } from "../core/errors.js";
import { GreetingStreams, type StreamObserver } from "../core/stream-service.js";
import { BearerTokens } from "../door/auth.js";
import { ClientAddresses } from "../door/client-address.js";
import { createFrontDoor } from "../door/front-door.js";
import type { PlainRoute } from "../http/plain-routes.js";
import { createHealthRoutes, createReadyzHandler, HealthStatus, handleHealthz } from "../ops/health.js";
import type { Logger } from "../ops/log.js";
import { Metrics, type MetricsGroup } from "../ops/metrics.js";
import type { EnvTracer } from "../ops/otel-env.js";
import { createReflectionRoutes, DescriptorIndex } from "../ops/reflection.js";
import { createStreamLog } from "../ops/stream-log.js";
import { createTracingObserver, wantsLegacyRpcAttributes } from "../ops/tracing.js";
import { connectionAgeError } from "./connection-age.js";
import { type Listener, listen, perClientShare } from "./listen.js";
import { shutdown } from "./shutdown.js";
import { readTokenFile } from "./token-file.js";

// Builds the whole server without binding it, so tests start it on port 0 and
// only main.ts listens on the configured port.

export interface Server {
  readonly streams: GreetingStreams;
  /** What grpc.health.v1.Health, /healthz and /readyz report. */
  readonly health: HealthStatus;
  /** Binds config.host:config.port and serves until shutdown(). */
  listen(): Promise<Listener>;
  /** Graceful shutdown; resolves true when nothing had to be cut. */
  shutdown(): Promise<boolean>;
  /**
   * Reads --auth-token-file again (on SIGHUP): true when the new tokens took
   * over; on a failure the old ones stay and a warning is logged. False when
   * there is no token file.
   */
  reloadTokens(): boolean;
}

export interface ServerOptions {
  /** Where stream spans go (tracerFromEnv()). Default none: no span is made, and tracing costs nothing. */
  tracing?: EnvTracer | undefined;
  /** The process group this server is a worker of (--workers): GET /metrics then shows the whole group. Default none. */
  metricsGroup?: MetricsGroup | undefined;
}

/** --max-streams, worked out from the memory when it is auto, and said so at start with the figures. */
function resolveMaxStreams(config: Config, logger: Logger): number {
  if (config.maxStreams !== "auto") return config.maxStreams;
  const c = streamCapacity(config.workers);
  logger.info("max streams from memory", {
    max_streams: c.maxStreams,
    memory_mib: Math.round(c.memoryBytes / 2 ** 20),
    memory_source: c.memorySource,
    workers: c.workers,
    heap_limit_mib: Math.round(c.heapLimitBytes / 2 ** 20),
    bound: c.bound,
    rss_kib_per_stream: RSS_KIB_PER_STREAM,
    heap_kib_per_stream: HEAP_KIB_PER_STREAM,
  });
  return c.maxStreams;
}

/** The streams, with what observes them (spans first, then logs) and counts them (metrics, unless --metrics off). */
function createStreams(
  config: Config,
  logger: Logger,
  tracing: EnvTracer | undefined,
  metricsGroup: MetricsGroup | undefined,
): { streams: GreetingStreams; metrics: Metrics | undefined } {
  const maxStreams = resolveMaxStreams(config, logger);
  const metrics: Metrics | undefined = config.metrics
    ? new Metrics({
        maxStreams,
        // Per stream, never per message: read only when /metrics is scraped.
        messagesSent: (): number => streams.messagesSent,
        group: metricsGroup,
      })
    : undefined;
  const observers: StreamObserver[] = [];
  // First: it gives the call the trace and span ids that the log lines carry.
  if (tracing) {
    observers.push(createTracingObserver({ tracer: tracing.tracer, legacyAttributes: wantsLegacyRpcAttributes() }));
  }
  observers.push(createStreamLog(logger));
  const streams = new GreetingStreams({
    defaultIntervalMs: config.defaultIntervalMs,
    maxStreams,
    maxStreamsPerClient: config.maxStreamsPerClient || perClientShare(maxStreams),
    maxDurationMs: config.maxStreamDurationMs,
    sendTimeoutMs: config.sendTimeoutMs,
    observers,
    // Plain numbers, told at once: a scrape reads them exact.
    counters: metrics ? [metrics] : [],
    onError: (e) => logger.error("stream bookkeeping failed", { error: e instanceof Error ? e.message : String(e) }),
  });
  return { streams, metrics };
}

/** /healthz, /readyz and, unless --metrics off, /metrics (behind the bearer token with --auth-metrics). */
function opsEndpoints(config: Config, health: HealthStatus, metrics: Metrics | undefined): PlainRoute[] {
  // Probes and scrapers read; nothing else has a meaning here (TRACE least of all).
  const readOnly = ["GET", "HEAD"];
  return [
    { path: "/healthz", handler: handleHealthz, methods: readOnly },
    { path: "/readyz", handler: createReadyzHandler(health), methods: readOnly },
    ...(metrics
      ? [
          {
            path: "/metrics",
            handler: metrics.handle,
            methods: readOnly,
            auth: config.authMetrics ? "bearer" : "open",
          } as const,
        ]
      : []),
  ];
}

/** Throws a ConfigError (before anything listens) when --auth-token-file cannot be read or holds no token. */
export function createServer(config: Config, logger: Logger, options: ServerOptions = {}): Server {
  const { tracing } = options;
  const tokenFile = config.authTokenFile;
  const tokens = tokenFile === undefined ? undefined : new BearerTokens(readTokenFile(tokenFile));
  const { streams, metrics } = createStreams(config, logger, tracing, options.metricsGroup);
  const health = new HealthStatus([StreamService.typeName]);
  // Aborted when shutdown starts, so reflection streams end then instead of holding the grace period.
  const draining = new AbortController();
  const reflection = new DescriptorIndex([
    file_stream_v1_stream,
    file_grpc_health_v1_health,
    file_grpc_reflection_v1_reflection,
    file_grpc_reflection_v1alpha_reflection,
  ]);
  const clients = new ClientAddresses(config.trustedProxies);
  const intake = createFrontDoor({
    config,
    streams,
    logger,
    clients,
    tokens,
    opsEndpoints: opsEndpoints(config, health, metrics),
    rpcServices: [createHealthRoutes(health), createReflectionRoutes(reflection, { stopping: draining.signal })],
  });
  let listener: Listener | undefined;
  let closing: Promise<boolean> | undefined;
  const onDraining = () => {
    health.drain();
    draining.abort(shutdownError);
  };
  return {
    streams,
    health,
    async listen() {
      listener = await listen(config, {
        intake,
        clients,
        logger,
        // A connection past its --max-connection-age grace: its streams end with UNAVAILABLE, and resuming clients go on.
        endStreams: (session) => streams.stopConnection(session, connectionAgeError),
        onAccept: () => streams.budget.press(),
      });
      return listener;
    },
    shutdown() {
      if (listener === undefined) return Promise.resolve(true);
      closing ??= shutdown({
        listener,
        streams,
        logger,
        graceMs: config.shutdownGraceMs,
        delayMs: config.shutdownDelayMs,
        onDraining,
        ...(tracing ? { flush: (timeoutMs: number) => tracing.shutdown(timeoutMs) } : {}),
      });
      return closing;
    },
    reloadTokens() {
      if (tokens === undefined || tokenFile === undefined) return false;
      try {
        tokens.replace(readTokenFile(tokenFile));
      } catch (e) {
        logger.warn("auth tokens not reloaded, the old ones stay", { error: (e as Error).message });
        return false;
      }
      logger.info("auth tokens reloaded", { tokens: tokens.size });
      return true;
    },
  };
}
